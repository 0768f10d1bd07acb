//! Conformance of the deployment files with the code. The Kubernetes manifests (deploy/k8s)
//! and the compose file (deploy/compose) are read as YAML and held against what the `shop`
//! binary's command line declares (`shop::cli::Cli::command()`, clap's `CommandFactory`): its
//! subcommands, their flags, the environment variables they read, their defaults, and the
//! ports it listens on; and against the code's own
//! constants: the health paths, the 11 topics and the secret files each service reads
//! (`shop_<service>::secret_files()`). Rename a variable, a subcommand, a path or a secret
//! file in the code and these tests name the manifest that is now wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::CommandFactory;
use serde_yaml::Value;
use shop_platform::http::{LIVENESS_PATH, READINESS_PATH};

/// Read by the logging set-up of every subcommand, not by clap, so absent from the command line;
/// the test `the_log_variables_the_manifests_set_change_what_the_binary_prints` proves
/// the binary reads them.
const LOG_VARIABLES: [&str; 2] = ["RUST_LOG", "LOG_FORMAT"];
/// The ports a service listens on besides its HTTP port: (service, variable, port name).
const OTHER_LISTENERS: [(&str, &str, &str); 1] = [("email", "SMTP_PORT", "smtp")];
/// Services that run as two replicas; every other one runs once.
const REPLICATED: [&str; 2] = ["order", "payment"];
const KAFKA_IMAGE: &str = "confluentinc/cp-kafka";
const ZOOKEEPER_IMAGE: &str = "confluentinc/cp-zookeeper";
const POSTGRES_IMAGE: &str = "postgres";
/// The Secret the kustomization generates from the secrets folder, and where the pods mount it.
const SECRET_NAME: &str = "shop-secrets";
/// The folder of files the kustomization's secretGenerator reads, relative to deploy/k8s.
const SECRETS_FOLDER: &str = "secrets";
/// The files of that folder that are committed: everything else there is a secret.
const COMMITTED_IN_SECRETS_FOLDER: [&str; 2] = [".gitignore", "README.md"];
/// The pages that sign people in from the browser (at mobile, SIGN_IN_URL), so mobile must
/// allow their origins; the app itself (mobile's page) calls order.
const SIGN_IN_PAGES: [&str; 4] = ["payment", "delivery", "logging", "email"];

/// The files of the secrets folder a service reads: what its crate says.
fn secret_files(service: &str) -> BTreeSet<String> {
    let files = match service {
        "order" => shop_order::secret_files(),
        "payment" => shop_payment::secret_files(),
        "delivery" => shop_delivery::secret_files(),
        "notification" => shop_notification::secret_files(),
        "logging" => shop_logging::secret_files(),
        "mobile" => shop_mobile::secret_files(),
        "email" => shop_email::secret_files(),
        other => panic!("no secret_files() known for the service {other}: add it here"),
    };
    let set: BTreeSet<String> = files.iter().cloned().collect();
    assert_eq!(set.len(), files.len(), "{service}: secret_files() names a file twice: {files:?}");
    set
}

/// Every file any service reads.
fn all_secret_files() -> BTreeSet<String> {
    binary().services.keys().flat_map(|service| secret_files(service)).collect()
}

// ---------------------------------------------------------------------------------------
// What the binary says about itself

/// One option of a subcommand, as its command line declares it and `--help` shows it.
#[derive(Debug, Clone)]
struct Opt {
    flag: String,
    env: Option<String>,
    default: Option<String>,
}

#[derive(Debug, Default)]
struct Options(Vec<Opt>);

impl Options {
    fn by_env(&self, name: &str) -> Option<&Opt> {
        self.0.iter().find(|o| o.env.as_deref() == Some(name))
    }
    fn by_flag(&self, flag: &str) -> Option<&Opt> {
        self.0.iter().find(|o| o.flag == flag)
    }
    fn env_names(&self) -> BTreeSet<String> {
        self.0.iter().filter_map(|o| o.env.clone()).collect()
    }
    /// Variables the binary reads, including the log variables clap does not declare and
    /// OpenTelemetry's standard `OTEL_*` ones (read by its SDK; apps/shop/tests/tracing.rs
    /// proves `OTEL_EXPORTER_OTLP_ENDPOINT` turns tracing on), which an overlay may set.
    fn reads(&self, name: &str) -> bool {
        self.by_env(name).is_some() || LOG_VARIABLES.contains(&name) || name.starts_with("OTEL_")
    }
}

struct Binary {
    /// `shop serve <service>` for each service.
    services: BTreeMap<String, Options>,
    topics_create: Options,
    secrets_generate: Options,
}

/// Runs the binary in a clean environment and insists that it succeeds.
fn shop(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(args)
        .env_clear()
        .output()
        .unwrap_or_else(|e| panic!("cannot run shop {args:?}: {e}"));
    assert!(output.status.success(), "shop {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("the output is UTF-8")
}

/// The subcommands a command lists (without `help`, which clap adds to every one).
fn subcommands(command: &clap::Command) -> Vec<String> {
    command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
        .map(|sub| sub.get_name().to_owned())
        .collect()
}

fn subcommand<'a>(command: &'a clap::Command, name: &str) -> &'a clap::Command {
    command.find_subcommand(name).unwrap_or_else(|| panic!("`{}` has no subcommand {name}", command.get_name()))
}

/// The options of one (built) subcommand that take a `--flag`: each with its variable and
/// its default, as `--help` shows them (hidden options, variables and defaults left out, and
/// no default for a switch).
fn options(command: &clap::Command) -> Options {
    let opts = command
        .get_arguments()
        .filter(|arg| !arg.is_hide_set())
        .filter_map(|arg| {
            let flag = format!("--{}", arg.get_long()?);
            let env = arg.get_env().filter(|_| !arg.is_hide_env_set()).map(|e| e.to_string_lossy().into_owned());
            let defaults: Vec<String> =
                arg.get_default_values().iter().map(|value| value.to_string_lossy().into_owned()).collect();
            let shown = !defaults.is_empty() && !arg.is_hide_default_value_set() && arg.get_action().takes_values();
            Some(Opt { flag, env, default: shown.then(|| defaults.join(" ")) })
        })
        .collect();
    Options(opts)
}

fn binary() -> &'static Binary {
    static BINARY: OnceLock<Binary> = OnceLock::new();
    BINARY.get_or_init(|| {
        let mut cli = shop::cli::Cli::command();
        // As clap completes it before parsing: `--help` on every subcommand, checks of the
        // definitions (a duplicate flag or variable panics here).
        cli.build();
        let serve = subcommand(&cli, "serve");
        let services: BTreeMap<String, Options> = subcommands(serve)
            .into_iter()
            .map(|service| (service.clone(), options(subcommand(serve, &service))))
            .collect();
        let topics = subcommand(&cli, "topics");
        assert!(subcommands(topics).contains(&"create".to_owned()));
        let topics_create = options(subcommand(topics, "create"));
        let secrets = subcommand(&cli, "secrets");
        assert!(subcommands(secrets).contains(&"generate".to_owned()));
        let secrets_generate = options(subcommand(secrets, "generate"));
        Binary { services, topics_create, secrets_generate }
    })
}

// ---------------------------------------------------------------------------------------
// Reading the files

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn documents(path: &Path) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(&read(path))
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display())))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// A scalar as the text Kubernetes or compose would see.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or("")
}

fn seq(value: &Value) -> &[Value] {
    value.as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

fn strings(value: &Value) -> Vec<String> {
    seq(value).iter().filter_map(text).collect()
}

/// An image reference without its tag: `confluentinc/cp-kafka:7.7.1` -> `confluentinc/cp-kafka`.
fn image_name(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

fn is_shop_image(image: &str) -> bool {
    image_name(image).rsplit('/').next() == Some("shop")
}

/// What a shop container runs, from its command line.
#[derive(Debug, Clone, PartialEq)]
enum Run {
    Serve(String),
    TopicsCreate,
    SecretsGenerate,
}

#[derive(Debug)]
struct Invocation {
    run: Run,
    /// `--flag value` pairs after the subcommand.
    flags: BTreeMap<String, String>,
}

/// Parses `[shop] serve <service> [--flag value]...`, `[shop] topics create [...]` or
/// `[shop] secrets generate [...]`, failing on anything the binary does not have.
fn invocation(words: &[String], place: &str) -> Invocation {
    let bin = binary();
    let rest = match words.first().map(String::as_str) {
        Some("shop") => &words[1..],
        _ => words,
    };
    let (run, options, flags) = match rest {
        [serve, service, flags @ ..] if serve == "serve" => {
            let options = bin.services.get(service).unwrap_or_else(|| {
                panic!("{place}: `shop serve {service}` is no service of the binary ({:?})", bin.services.keys())
            });
            (Run::Serve(service.clone()), options, flags)
        }
        [topics, create, flags @ ..] if topics == "topics" && create == "create" => {
            (Run::TopicsCreate, &bin.topics_create, flags)
        }
        [secrets, generate, flags @ ..] if secrets == "secrets" && generate == "generate" => {
            (Run::SecretsGenerate, &bin.secrets_generate, flags)
        }
        _ => panic!(
            "{place}: {words:?} is none of `shop serve <service>`, `shop topics create`, `shop secrets generate`"
        ),
    };
    let mut parsed = BTreeMap::new();
    let mut i = 0;
    while i < flags.len() {
        let (flag, value) = match flags[i].split_once('=') {
            Some((flag, value)) => (flag.to_owned(), value.to_owned()),
            None => {
                i += 1;
                let value = flags.get(i).unwrap_or_else(|| panic!("{place}: {} has no value", flags[i - 1]));
                (flags[i - 1].clone(), value.clone())
            }
        };
        assert!(options.by_flag(&flag).is_some(), "{place}: the binary has no option {flag} for {run:?}");
        parsed.insert(flag, value);
        i += 1;
    }
    Invocation { run, flags: parsed }
}

fn options_of(run: &Run) -> &'static Options {
    match run {
        Run::Serve(service) => &binary().services[service],
        Run::TopicsCreate => &binary().topics_create,
        Run::SecretsGenerate => &binary().secrets_generate,
    }
}

/// A variable's value for a container: `Some(Some(v))` when known, `Some(None)` when set from
/// somewhere only the cluster knows (a field of the pod), `None` when not set.
type Env = BTreeMap<String, Option<String>>;

/// The value an option takes: its flag, else its variable, else its default.
fn effective(inv: &Invocation, env: &Env, var: &str) -> Option<String> {
    let opt = options_of(&inv.run).by_env(var).unwrap_or_else(|| panic!("the binary reads no {var}"));
    inv.flags.get(&opt.flag).cloned().or_else(|| env.get(var).cloned().flatten()).or_else(|| opt.default.clone())
}

/// Every variable a container sets must be one its subcommand reads.
fn assert_reads_all(inv: &Invocation, env: &Env, place: &str) {
    let options = options_of(&inv.run);
    for name in env.keys() {
        assert!(
            options.reads(name),
            "{place} sets {name}, which `{:?}` does not read; it reads {:?} and {LOG_VARIABLES:?}",
            inv.run,
            options.env_names()
        );
    }
}

/// Options whose default only works when everything runs on one machine must be set.
fn assert_sets_cluster_addresses(inv: &Invocation, env: &Env, place: &str) {
    for opt in &options_of(&inv.run).0 {
        let local = opt.default.as_deref().is_some_and(|d| d.contains("localhost") || d.contains("127.0.0.1"));
        if let (true, Some(var)) = (local, &opt.env) {
            assert!(
                env.contains_key(var) || inv.flags.contains_key(&opt.flag),
                "{place} leaves {var} at its default {:?}, which points at the container itself",
                opt.default
            );
        }
    }
}

fn port_of(inv: &Invocation, env: &Env, var: &str, place: &str) -> u16 {
    let value = effective(inv, env, var).unwrap_or_else(|| panic!("{place}: {var} has no value"));
    value.parse().unwrap_or_else(|_| panic!("{place}: {var}={value} is not a port"))
}

/// The ports a serving container listens on, by port name: `http` and any other listener.
fn listeners(inv: &Invocation, env: &Env, place: &str) -> BTreeMap<&'static str, u16> {
    let Run::Serve(service) = &inv.run else { return BTreeMap::new() };
    let mut ports = BTreeMap::from([("http", port_of(inv, env, "HTTP_PORT", place))]);
    for (svc, var, name) in OTHER_LISTENERS {
        if svc == service {
            ports.insert(name, port_of(inv, env, var, place));
        }
    }
    ports
}

/// `host:port` pairs in a comma-separated list of URLs or addresses.
fn addresses(value: &str) -> Vec<(String, u16)> {
    value
        .split(',')
        .map(|item| {
            let item = item.trim();
            let item = item.split_once("://").map_or(item, |(_, rest)| rest);
            let item = item.rsplit_once('@').map_or(item, |(_, rest)| rest);
            let authority = item.split(['/', '?']).next().unwrap_or(item);
            let (host, port) = authority.rsplit_once(':').unwrap_or_else(|| panic!("{value}: no port in {authority}"));
            (host.to_owned(), port.parse().unwrap_or_else(|_| panic!("{value}: bad port {port}")))
        })
        .collect()
}

/// The database a `postgres://` URL names.
fn database_of(url: &str) -> String {
    assert!(url.starts_with("postgres://"), "{url} is not a PostgreSQL URL");
    let path = url.split_once("://").unwrap().1.split_once('/').map(|(_, p)| p).unwrap_or("");
    path.split('?').next().unwrap_or("").to_owned()
}

/// The databases a PostgreSQL init script creates.
fn created_databases(sql: &str) -> BTreeSet<String> {
    sql.lines()
        .filter_map(|line| line.trim().strip_prefix("CREATE DATABASE "))
        .map(|rest| rest.trim_end_matches(';').trim().trim_matches('"').to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Kubernetes

struct Cluster {
    /// (file, document) for every resource.
    resources: Vec<(String, Value)>,
}

/// A container of a workload with everything the tests look at.
struct Container<'a> {
    place: String,
    workload: &'a Value,
    pod: &'a Value,
    container: &'a Value,
}

fn k8s_dir() -> PathBuf {
    root().join("deploy/k8s")
}

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let mut files: Vec<PathBuf> = std::fs::read_dir(k8s_dir())
            .expect("deploy/k8s exists")
            .map(|e| e.expect("readable entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml") && !p.ends_with("kustomization.yaml"))
            .collect();
        files.sort();
        let resources = files
            .iter()
            .flat_map(|path| {
                let file = path.file_name().unwrap().to_string_lossy().into_owned();
                documents(path).into_iter().map(move |doc| (file.clone(), doc))
            })
            .collect();
        Cluster { resources }
    })
}

impl Cluster {
    fn of_kind<'a>(&'a self, kind: &str) -> impl Iterator<Item = &'a Value> + 'a {
        let kind = kind.to_owned();
        self.resources.iter().map(|(_, doc)| doc).filter(move |doc| str_of(doc, "kind") == kind)
    }

    fn named(&self, kind: &str, name: &str) -> Option<&Value> {
        self.of_kind(kind).find(|doc| str_of(&doc["metadata"], "name") == name)
    }

    fn workloads(&self) -> impl Iterator<Item = &Value> {
        self.resources
            .iter()
            .map(|(_, doc)| doc)
            .filter(|doc| matches!(str_of(doc, "kind"), "Deployment" | "StatefulSet" | "Job"))
    }

    /// Every container, init containers included.
    fn containers(&self) -> Vec<Container<'_>> {
        let mut all = Vec::new();
        for workload in self.workloads() {
            let pod = &workload["spec"]["template"]["spec"];
            for list in ["initContainers", "containers"] {
                for container in seq(&pod[list]) {
                    let place = format!(
                        "{} {} container {}",
                        str_of(workload, "kind"),
                        str_of(&workload["metadata"], "name"),
                        str_of(container, "name")
                    );
                    all.push(Container { place, workload, pod, container });
                }
            }
        }
        all
    }

    fn shop_containers(&self) -> Vec<(Container<'_>, Invocation, Env)> {
        self.containers()
            .into_iter()
            .filter(|c| is_shop_image(str_of(c.container, "image")))
            .map(|c| {
                let command = strings(&c.container["command"]);
                assert!(
                    command.is_empty() || command == ["shop"],
                    "{}: command {command:?} bypasses the image's entrypoint `shop`",
                    c.place
                );
                let inv = invocation(&strings(&c.container["args"]), &c.place);
                let env = self.env_of(&c);
                (c, inv, env)
            })
            .collect()
    }

    /// The variables a container gets from envFrom and env, with their values where known.
    fn env_of(&self, c: &Container) -> Env {
        let mut env = Env::new();
        for source in seq(&c.container["envFrom"]) {
            let prefix = str_of(source, "prefix");
            if let Some(name) = source["configMapRef"]["name"].as_str() {
                let map = self
                    .named("ConfigMap", name)
                    .unwrap_or_else(|| panic!("{}: envFrom names ConfigMap {name}, which does not exist", c.place));
                for (key, value) in map["data"].as_mapping().into_iter().flatten() {
                    env.insert(format!("{prefix}{}", text(key).unwrap()), text(value));
                }
            }
            if let Some(name) = source["secretRef"]["name"].as_str() {
                let secret = self
                    .named("Secret", name)
                    .unwrap_or_else(|| panic!("{}: envFrom names Secret {name}, which does not exist", c.place));
                for (key, value) in secret["stringData"].as_mapping().into_iter().flatten() {
                    env.insert(format!("{prefix}{}", text(key).unwrap()), text(value));
                }
            }
        }
        for var in seq(&c.container["env"]) {
            let name = str_of(var, "name").to_owned();
            let value = if let Some(value) = text(&var["value"]) {
                Some(value)
            } else if var["valueFrom"]["configMapKeyRef"].is_mapping() {
                let r = &var["valueFrom"]["configMapKeyRef"];
                let map = self
                    .named("ConfigMap", str_of(r, "name"))
                    .unwrap_or_else(|| panic!("{}: {name} names a ConfigMap that does not exist", c.place));
                let value = text(&map["data"][str_of(r, "key")]);
                assert!(value.is_some(), "{}: {name} names key {} the ConfigMap lacks", c.place, str_of(r, "key"));
                value
            } else if var["valueFrom"]["secretKeyRef"].is_mapping() {
                let r = &var["valueFrom"]["secretKeyRef"];
                let secret = self
                    .named("Secret", str_of(r, "name"))
                    .unwrap_or_else(|| panic!("{}: {name} names a Secret that does not exist", c.place));
                let value = text(&secret["stringData"][str_of(r, "key")]);
                assert!(value.is_some(), "{}: {name} names key {} the Secret lacks", c.place, str_of(r, "key"));
                value
            } else {
                None
            };
            env.insert(name, value);
        }
        env
    }

    /// The workload whose pods a Service selects.
    fn selected_by(&self, service: &Value) -> Vec<&Value> {
        let selector = service["spec"]["selector"].as_mapping().cloned().unwrap_or_default();
        assert!(!selector.is_empty(), "Service {} selects nothing", str_of(&service["metadata"], "name"));
        self.workloads()
            .filter(|w| {
                let labels = &w["spec"]["template"]["metadata"]["labels"];
                selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .collect()
    }

    /// The Service an address `host:port` reaches, checking the port is one it has.
    fn service_at(&self, host: &str, port: u16, place: &str) -> &Value {
        let name = host.split('.').next().unwrap_or(host);
        let service =
            self.named("Service", name).unwrap_or_else(|| panic!("{place}: {host} is no Service of the manifests"));
        let ports: Vec<u64> = seq(&service["spec"]["ports"]).iter().filter_map(|p| p["port"].as_u64()).collect();
        assert!(ports.contains(&u64::from(port)), "{place}: Service {name} has ports {ports:?}, not {port}");
        service
    }

    /// The shop services (`serve <name>`) of the pods behind a Service.
    fn shop_services_behind(&self, service: &Value) -> BTreeSet<String> {
        self.selected_by(service)
            .into_iter()
            .flat_map(|w| seq(&w["spec"]["template"]["spec"]["containers"]))
            .filter(|c| is_shop_image(str_of(c, "image")))
            .filter_map(|c| match invocation(&strings(&c["args"]), "service backend").run {
                Run::Serve(name) => Some(name),
                Run::TopicsCreate | Run::SecretsGenerate => None,
            })
            .collect()
    }

    fn images_behind(&self, service: &Value) -> BTreeSet<String> {
        self.selected_by(service)
            .into_iter()
            .flat_map(|w| seq(&w["spec"]["template"]["spec"]["containers"]))
            .map(|c| image_name(str_of(c, "image")).to_owned())
            .collect()
    }
}

/// A port reference of a probe or Service (`http` or `8081`) as a number, through the
/// container's named ports.
fn resolve_port(container: &Value, port: &Value, place: &str) -> u16 {
    if let Some(number) = port.as_u64() {
        return u16::try_from(number).expect("a port fits u16");
    }
    let name = port.as_str().unwrap_or_else(|| panic!("{place}: port {port:?} is neither name nor number"));
    seq(&container["ports"])
        .iter()
        .find(|p| str_of(p, "name") == name)
        .and_then(|p| p["containerPort"].as_u64())
        .map(|p| u16::try_from(p).expect("a port fits u16"))
        .unwrap_or_else(|| panic!("{place}: the container has no port named {name}"))
}

fn container_ports(container: &Value) -> BTreeMap<String, u16> {
    seq(&container["ports"])
        .iter()
        .map(|p| (str_of(p, "name").to_owned(), u16::try_from(p["containerPort"].as_u64().unwrap()).unwrap()))
        .collect()
}

fn replicas(workload: &Value) -> u64 {
    workload["spec"]["replicas"].as_u64().unwrap_or(1)
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    seq(&container["env"]).iter().find(|v| str_of(v, "name") == name).and_then(|v| v["value"].as_str())
}

#[test]
fn every_shop_container_in_kubernetes_runs_a_real_subcommand() {
    let containers = cluster().shop_containers();
    let serves: BTreeSet<String> = containers
        .iter()
        .filter_map(|(_, inv, _)| match &inv.run {
            Run::Serve(service) => Some(service.clone()),
            Run::TopicsCreate | Run::SecretsGenerate => None,
        })
        .collect();
    let all: BTreeSet<String> = binary().services.keys().cloned().collect();
    assert_eq!(serves, all, "the manifests must serve each service of the binary");
    assert!(containers.iter().any(|(_, inv, _)| inv.run == Run::TopicsCreate), "no container creates the topics");
}

#[test]
fn every_variable_a_shop_container_sets_in_kubernetes_is_one_the_binary_reads() {
    for (c, inv, env) in cluster().shop_containers() {
        assert_reads_all(&inv, &env, &c.place);
        assert_sets_cluster_addresses(&inv, &env, &c.place);
    }
}

#[test]
fn every_config_map_key_is_read_by_every_shop_container_that_loads_it() {
    // A key no container reads is a setting that silently does nothing.
    let cluster = cluster();
    for map in cluster.of_kind("ConfigMap") {
        let name = str_of(&map["metadata"], "name");
        let users: Vec<_> = cluster
            .shop_containers()
            .into_iter()
            .filter(|(c, _, _)| seq(&c.container["envFrom"]).iter().any(|s| str_of(&s["configMapRef"], "name") == name))
            .collect();
        for (c, inv, _) in users {
            for key in map["data"].as_mapping().into_iter().flatten().filter_map(|(k, _)| text(k)) {
                assert!(
                    options_of(&inv.run).reads(&key),
                    "ConfigMap {name} sets {key}, which {} does not read",
                    c.place
                );
            }
        }
    }
}

#[test]
fn every_shop_container_port_and_probe_matches_the_port_the_service_listens_on() {
    for (c, inv, env) in cluster().shop_containers() {
        let listening = listeners(&inv, &env, &c.place);
        let declared = container_ports(c.container);
        if let Run::Serve(_) = inv.run {
            let expected: BTreeMap<String, u16> = listening.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
            assert_eq!(declared, expected, "{}: containerPorts against the ports the binary listens on", c.place);
            for (probe, path) in
                [("livenessProbe", LIVENESS_PATH), ("readinessProbe", READINESS_PATH), ("startupProbe", LIVENESS_PATH)]
            {
                let get = &c.container[probe]["httpGet"];
                if probe != "startupProbe" {
                    assert!(get.is_mapping(), "{} has no HTTP {probe}", c.place);
                }
                if get.is_mapping() {
                    assert_eq!(str_of(get, "path"), path, "{}: {probe} path", c.place);
                    let port = resolve_port(c.container, &get["port"], &c.place);
                    assert_eq!(port, listening["http"], "{}: {probe} port against HTTP_PORT", c.place);
                }
            }
        } else {
            assert!(declared.is_empty(), "{}: {:?} listens on nothing", c.place, inv.run);
        }
    }
}

#[test]
fn every_service_targets_a_port_its_pods_listen_on() {
    let cluster = cluster();
    for service in cluster.of_kind("Service") {
        let name = str_of(&service["metadata"], "name");
        let workloads = cluster.selected_by(service);
        assert!(!workloads.is_empty(), "Service {name} selects no pods");
        for port in seq(&service["spec"]["ports"]) {
            let target = if port["targetPort"].is_null() { &port["port"] } else { &port["targetPort"] };
            for workload in &workloads {
                let found = seq(&workload["spec"]["template"]["spec"]["containers"]).iter().any(|c| match target {
                    Value::Number(n) => container_ports(c).values().any(|p| Some(u64::from(*p)) == n.as_u64()),
                    _ => container_ports(c).contains_key(target.as_str().unwrap_or("")),
                });
                assert!(
                    found,
                    "Service {name}: no container of {} listens on {target:?}",
                    str_of(&workload["metadata"], "name")
                );
            }
        }
    }
}

#[test]
fn every_address_a_shop_container_is_given_leads_to_the_right_component() {
    let cluster = cluster();
    for (c, inv, env) in cluster.shop_containers() {
        let get = |var: &str| effective(&inv, &env, var).unwrap_or_else(|| panic!("{}: {var} unset", c.place));
        let reads = |var: &str| options_of(&inv.run).by_env(var).is_some();
        if reads("KAFKA_BROKERS") {
            for (host, port) in addresses(&get("KAFKA_BROKERS")) {
                let service = cluster.service_at(&host, port, &c.place);
                assert!(cluster.images_behind(service).contains(KAFKA_IMAGE), "{}: {host} is not Kafka", c.place);
            }
        }
        for (var, target) in [("PAYMENT_URL", "payment"), ("MOBILE_URL", "mobile")] {
            if reads(var) {
                for (host, port) in addresses(&get(var)) {
                    let service = cluster.service_at(&host, port, &c.place);
                    let behind = cluster.shop_services_behind(service);
                    assert_eq!(behind, BTreeSet::from([target.to_owned()]), "{}: {var} -> {host}", c.place);
                }
            }
        }
        if reads("SMTP_HOST") {
            let port: u16 = get("SMTP_PORT").parse().expect("SMTP_PORT is a port");
            let service = cluster.service_at(&get("SMTP_HOST"), port, &c.place);
            assert_eq!(cluster.shop_services_behind(service), BTreeSet::from(["email".to_owned()]), "{}", c.place);
        }
    }
}

#[test]
fn every_shop_service_keeps_its_state_in_its_own_postgres_database() {
    let cluster = cluster();
    let init = cluster.named("ConfigMap", "postgres-init").expect("ConfigMap postgres-init");
    let created: BTreeSet<String> = init["data"]
        .as_mapping()
        .into_iter()
        .flatten()
        .flat_map(|(_, sql)| created_databases(&text(sql).unwrap()))
        .collect();
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    for (c, inv, env) in cluster.shop_containers() {
        let Run::Serve(service) = &inv.run else { continue };
        let url = env
            .get("DATABASE_URL")
            .cloned()
            .flatten()
            .unwrap_or_else(|| panic!("{}: DATABASE_URL unset: replicas would not share state", c.place));
        let database = database_of(&url);
        assert!(created.contains(&database), "{}: database {database} is not created by postgres-init", c.place);
        let (host, port) = addresses(&url)[0].clone();
        let postgres = cluster.service_at(&host, port, &c.place);
        assert!(cluster.images_behind(postgres).contains(POSTGRES_IMAGE), "{}: {host} is not PostgreSQL", c.place);
        if let Some(other) = owners.insert(database.clone(), service.clone()) {
            assert_eq!(&other, service, "{} and {service} share the database {database}", other);
        }
        let from_secret = seq(&c.container["env"])
            .iter()
            .any(|v| str_of(v, "name") == "DATABASE_URL" && v["valueFrom"]["secretKeyRef"].is_mapping());
        assert!(from_secret, "{}: DATABASE_URL must come from a Secret", c.place);
    }
}

#[test]
fn every_shop_container_runs_locked_down_with_writable_data_and_tmp_folders() {
    for (c, inv, env) in cluster().shop_containers() {
        let pod_sc = &c.pod["securityContext"];
        let sc = &c.container["securityContext"];
        let non_root = sc["runAsNonRoot"].as_bool().or(pod_sc["runAsNonRoot"].as_bool());
        assert_eq!(non_root, Some(true), "{}: runAsNonRoot", c.place);
        let uid = sc["runAsUser"].as_u64().or(pod_sc["runAsUser"].as_u64());
        assert!(uid.is_some_and(|u| u >= 10000), "{}: runAsUser {uid:?} should be a high UID", c.place);
        assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true), "{}: readOnlyRootFilesystem", c.place);
        assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false), "{}: allowPrivilegeEscalation", c.place);
        assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{}: capabilities drop ALL", c.place);
        for resource in ["cpu", "memory"] {
            for kind in ["requests", "limits"] {
                assert!(!c.container["resources"][kind][resource].is_null(), "{}: no {kind}.{resource}", c.place);
            }
        }
        let mut writable = vec!["/tmp".to_owned()];
        if options_of(&inv.run).by_env("DATA_DIR").is_some() {
            writable.push(effective(&inv, &env, "DATA_DIR").expect("DATA_DIR has a default"));
        }
        for path in writable {
            let mount = seq(&c.container["volumeMounts"])
                .iter()
                .find(|m| str_of(m, "mountPath") == path)
                .unwrap_or_else(|| panic!("{}: nothing mounted at {path} on a read-only root", c.place));
            let volume = seq(&c.pod["volumes"]).iter().find(|v| str_of(v, "name") == str_of(mount, "name"));
            assert!(volume.is_some_and(|v| v["emptyDir"].is_mapping()), "{}: {path} should be an emptyDir", c.place);
        }
    }
}

#[test]
fn order_and_payment_run_twice_and_every_other_service_once() {
    for (c, inv, _) in cluster().shop_containers() {
        let Run::Serve(service) = &inv.run else { continue };
        let expected = if REPLICATED.contains(&service.as_str()) { 2 } else { 1 };
        assert_eq!(replicas(c.workload), expected, "{}: replicas", c.place);
        assert_eq!(str_of(c.workload, "kind"), "Deployment", "{}: services are Deployments", c.place);
    }
}

#[test]
fn kafka_is_three_brokers_with_stable_names_replicating_every_record_three_times() {
    let cluster = cluster();
    let brokers: Vec<&Value> = cluster
        .of_kind("StatefulSet")
        .filter(|s| {
            seq(&s["spec"]["template"]["spec"]["containers"])
                .iter()
                .any(|c| image_name(str_of(c, "image")) == KAFKA_IMAGE)
        })
        .collect();
    assert_eq!(brokers.len(), 1, "one Kafka StatefulSet");
    let kafka = brokers[0];
    assert_eq!(replicas(kafka), 3, "three brokers");
    assert!(!seq(&kafka["spec"]["volumeClaimTemplates"]).is_empty(), "brokers keep their logs on volumes");
    let headless = cluster.named("Service", str_of(&kafka["spec"], "serviceName")).expect("the StatefulSet's Service");
    assert_eq!(str_of(&headless["spec"], "clusterIP"), "None", "the brokers' Service is headless");
    let container = &kafka["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(env_value(container, "KAFKA_DEFAULT_REPLICATION_FACTOR"), Some("3"));
    assert_eq!(env_value(container, "KAFKA_MIN_INSYNC_REPLICAS"), Some("2"));
    assert_eq!(container_ports(container).values().copied().collect::<Vec<_>>(), [9092]);
    let client = cluster.service_at("kafka", 9092, "the Kafka client Service");
    assert!(cluster.images_behind(client).contains(KAFKA_IMAGE));
    let zookeeper = env_value(container, "KAFKA_ZOOKEEPER_CONNECT").expect("brokers name ZooKeeper");
    for (host, port) in addresses(zookeeper) {
        let service = cluster.service_at(&host, port, "KAFKA_ZOOKEEPER_CONNECT");
        assert!(cluster.images_behind(service).contains(ZOOKEEPER_IMAGE), "{host} is not ZooKeeper");
    }
}

#[test]
fn there_is_exactly_one_zookeeper_on_port_2181() {
    let cluster = cluster();
    let nodes: u64 = cluster
        .workloads()
        .filter(|w| {
            seq(&w["spec"]["template"]["spec"]["containers"])
                .iter()
                .any(|c| image_name(str_of(c, "image")) == ZOOKEEPER_IMAGE)
        })
        .map(replicas)
        .sum();
    assert_eq!(nodes, 1);
    let service = cluster.service_at("zookeeper", 2181, "the ZooKeeper Service");
    assert!(cluster.images_behind(service).contains(ZOOKEEPER_IMAGE));
}

#[test]
fn the_topic_job_creates_the_eleven_topics_with_replication_factor_three_once_the_brokers_are_up() {
    let cluster = cluster();
    assert_eq!(shop_events::Topic::ALL.len(), 11, "the design's 11 topics");
    let creators: Vec<_> =
        cluster.shop_containers().into_iter().filter(|(_, inv, _)| inv.run == Run::TopicsCreate).collect();
    assert_eq!(creators.len(), 1, "one container creates the topics");
    let (c, inv, env) = &creators[0];
    assert_eq!(str_of(c.workload, "kind"), "Job", "{}: topics are created by a Job", c.place);
    // `shop topics create` creates exactly shop_events::Topic::ALL; what the manifest decides
    // is where and how.
    assert_eq!(effective(inv, env, "TOPIC_REPLICATION_FACTOR").as_deref(), Some("3"), "{}", c.place);
    for (host, port) in addresses(&effective(inv, env, "KAFKA_BROKERS").unwrap()) {
        cluster.service_at(&host, port, &c.place);
    }
    let waits = seq(&c.pod["initContainers"]).iter().any(|init| {
        let command = strings(&init["command"]);
        command.iter().any(|w| w == "kafka-ready") && command.iter().any(|w| w == "3")
    });
    assert!(waits, "{}: an init container waits for the three brokers", c.place);
}

/// One path of the Ingress and the shop service behind it.
struct Route {
    path: String,
    exact: bool,
    service: String,
}

/// The Ingress's paths, each checked to lead to a port of its Service and to one shop service.
fn ingress_routes(cluster: &Cluster) -> Vec<Route> {
    let ingress = cluster.of_kind("Ingress").next().expect("an Ingress");
    let mut routes = Vec::new();
    for rule in seq(&ingress["spec"]["rules"]) {
        for path in seq(&rule["http"]["paths"]) {
            let backend = &path["backend"]["service"];
            let service = cluster.named("Service", str_of(backend, "name")).expect("the backend Service exists");
            let port = &backend["port"];
            let has_port = seq(&service["spec"]["ports"])
                .iter()
                .any(|p| (port["name"].is_string() && p["name"] == port["name"]) || p["port"] == port["number"]);
            assert!(has_port, "Ingress backend {backend:?} names a port its Service lacks");
            let behind = cluster.shop_services_behind(service);
            assert_eq!(behind.len(), 1, "{backend:?} leads to one service");
            let exact = match str_of(path, "pathType") {
                "Exact" => true,
                "Prefix" => false,
                other => panic!("Ingress path {path:?}: pathType {other:?}; Exact or Prefix mean the same everywhere"),
            };
            routes.push(Route {
                path: str_of(path, "path").to_owned(),
                exact,
                service: behind.into_iter().next().unwrap(),
            });
        }
    }
    routes
}

/// The service a request path reaches, as Kubernetes defines it: an Exact path matches
/// itself; a Prefix path matches whole path elements; the longest match wins, Exact over
/// Prefix when they are as long.
fn route<'a>(routes: &'a [Route], request: &str) -> Option<&'a str> {
    let elements = |p: &str| p.split('/').filter(|e| !e.is_empty()).map(str::to_owned).collect::<Vec<_>>();
    routes
        .iter()
        .filter(|r| {
            if r.exact {
                r.path == request
            } else {
                let (prefix, path) = (elements(&r.path), elements(request));
                path.len() >= prefix.len() && path[..prefix.len()] == prefix[..]
            }
        })
        .max_by_key(|r| (r.path.trim_end_matches('/').len(), r.exact))
        .map(|r| r.service.as_str())
}

/// The files a page loads from its own origin: `src="/..."` and `href="/..."`.
fn page_assets(html_file: &str) -> Vec<String> {
    let html = read(&root().join(html_file));
    let mut assets = Vec::new();
    for attribute in ["src=\"/", "href=\"/"] {
        for (i, _) in html.match_indices(attribute) {
            let value = &html[i + attribute.len() - 1..];
            assets.push(value[..value.find('"').unwrap()].to_owned());
        }
    }
    assert!(!assets.is_empty(), "{html_file} loads nothing: is it still the page?");
    assets
}

#[test]
fn the_ingress_sends_the_public_endpoints_to_the_services_that_serve_them() {
    use shop_platform::http::{SITE_PATH, UI_SCRIPT_PATH};
    let routes = ingress_routes(cluster());
    let mut public: Vec<(String, &str)> = [
        // The catalogue, the order API and its live stages (the app calls them).
        ("/products", "order"),
        ("/orders", "order"),
        ("/orders/0190d5a4-0000-7000-8000-000000000000", "order"),
        ("/orders/0190d5a4-0000-7000-8000-000000000000/events", "order"),
        // The payment link's page, and paying.
        ("/pay/0190d5a4-0000-7000-8000-000000000000", "payment"),
        ("/payments/0190d5a4-0000-7000-8000-000000000000/pay", "payment"),
        // The app, what it asks mobile, and signing in with the keys that check it.
        ("/", "mobile"),
        ("/api/config", "mobile"),
        ("/api/notifications", "mobile"),
        ("/api/notifications/stream", "mobile"),
        ("/auth/customers", "mobile"),
        ("/auth/sign-in", "mobile"),
        ("/auth/staff/sign-in", "mobile"),
        ("/.well-known/jwks.json", "mobile"),
        (SITE_PATH, "mobile"),
        (UI_SCRIPT_PATH, "mobile"),
    ]
    .into_iter()
    .map(|(path, service)| (path.to_owned(), service))
    .collect();
    // What the app's and the payment page's HTML load, from the service that serves the page
    // (or from any service: the assets every service serves alike).
    for (page, service) in
        [("services/mobile/src/web/index.html", "mobile"), ("services/payment/src/pay.html", "payment")]
    {
        public.extend(page_assets(page).into_iter().map(|asset| (asset, service)));
    }
    for (path, service) in &public {
        let reached = route(&routes, path);
        let shared = [SITE_PATH, UI_SCRIPT_PATH].contains(&path.as_str());
        assert!(
            reached == Some(*service) || (shared && reached.is_some()),
            "Ingress: {path} reaches {reached:?}, not {service}"
        );
    }
    // What stays inside the cluster: the courier's and the operator's pages and APIs, the
    // mailbox, every service's metrics, and mobile's push inbox (notification's only).
    for path in [
        "/api/push",
        "/api/pushes",
        "/courier",
        "/deliveries",
        "/deliveries/0190d5a4-0000-7000-8000-000000000000/shipped",
        "/logs",
        "/logs/stream",
        "/api/lag",
        "/api/services",
        "/api/emails",
        "/metrics",
    ] {
        assert_eq!(route(&routes, path), None, "Ingress: {path} should stay inside the cluster");
    }
}

// ---------------------------------------------------------------------------------------
// Kubernetes: the keys and passwords

/// The kustomization.
fn kustomization() -> &'static Value {
    static KUSTOMIZATION: OnceLock<Value> = OnceLock::new();
    KUSTOMIZATION.get_or_init(|| documents(&k8s_dir().join("kustomization.yaml")).remove(0))
}

/// The volume of a pod that mounts `secret`, if any.
fn secret_volumes<'a>(pod: &'a Value, secret: &str) -> Vec<&'a Value> {
    seq(&pod["volumes"])
        .iter()
        .filter(|v| str_of(&v["secret"], "secretName") == secret)
        .chain(
            seq(&pod["volumes"])
                .iter()
                .filter(|v| seq(&v["projected"]["sources"]).iter().any(|s| str_of(&s["secret"], "name") == secret)),
        )
        .collect()
}

#[test]
fn every_shop_container_mounts_exactly_the_secret_files_its_service_reads_read_only_at_secrets_dir() {
    let cluster = cluster();
    let mut mounted = BTreeSet::new();
    for (c, inv, env) in cluster.shop_containers() {
        let volumes = secret_volumes(c.pod, SECRET_NAME);
        let Run::Serve(service) = &inv.run else {
            assert!(
                volumes.is_empty(),
                "{}: {:?} reads no secret file but its pod mounts {SECRET_NAME}",
                c.place,
                inv.run
            );
            continue;
        };
        // The default, <DATA_DIR>/secrets, is an empty folder here: SECRETS_DIR must be set.
        let dir = env
            .get("SECRETS_DIR")
            .cloned()
            .flatten()
            .unwrap_or_else(|| panic!("{}: SECRETS_DIR is not set to where the Secret is mounted", c.place));
        let mounts: Vec<&Value> =
            seq(&c.container["volumeMounts"]).iter().filter(|m| str_of(m, "mountPath") == dir).collect();
        assert_eq!(mounts.len(), 1, "{}: one volume mounted at SECRETS_DIR={dir}", c.place);
        let mount = mounts[0];
        assert_eq!(mount["readOnly"].as_bool(), Some(true), "{}: the secrets are mounted read-only", c.place);
        assert!(mount["subPath"].is_null(), "{}: a subPath mount never sees a new Secret", c.place);
        let volume = seq(&c.pod["volumes"])
            .iter()
            .find(|v| str_of(v, "name") == str_of(mount, "name"))
            .unwrap_or_else(|| panic!("{}: no volume {}", c.place, str_of(mount, "name")));
        let secret = &volume["secret"];
        assert_eq!(str_of(secret, "secretName"), SECRET_NAME, "{}: {dir} holds the Secret {SECRET_NAME}", c.place);
        assert_eq!(volumes.len(), 1, "{}: the pod mounts {SECRET_NAME} once", c.place);
        assert_ne!(secret["optional"].as_bool(), Some(true), "{}: a missing Secret must stop the pod", c.place);
        // Least privilege: exactly the files the service reads, under their own names.
        let mut keys = BTreeSet::new();
        for item in seq(&secret["items"]) {
            let key = str_of(item, "key").to_owned();
            assert_eq!(str_of(item, "path"), key, "{}: the file {key} keeps its name", c.place);
            assert!(item["mode"].is_null(), "{}: {key} has a mode of its own; defaultMode is the one", c.place);
            assert!(keys.insert(key.clone()), "{}: {key} listed twice", c.place);
        }
        assert_eq!(keys, secret_files(service), "{}: items against shop_{service}::secret_files()", c.place);
        // Readable by the service's user only through the pod's group: kubelet makes the files
        // root:<fsGroup> and, the volume being read-only, at most 0440.
        let mode = secret["defaultMode"].as_u64().unwrap_or(0o644);
        assert!(mode == 0o400 || mode == 0o440, "{}: defaultMode {mode:#o}, want 0400 or 0440", c.place);
        let pod_sc = &c.pod["securityContext"];
        assert!(
            pod_sc["fsGroup"].as_u64().is_some() && pod_sc["fsGroup"] == pod_sc["runAsGroup"],
            "{}: fsGroup must be the service's group, or it cannot read its files",
            c.place
        );
        // Never as environment variables.
        for var in seq(&c.container["env"]) {
            assert_ne!(str_of(&var["valueFrom"]["secretKeyRef"], "name"), SECRET_NAME, "{}: {var:?}", c.place);
        }
        for source in seq(&c.container["envFrom"]) {
            assert_ne!(str_of(&source["secretRef"], "name"), SECRET_NAME, "{}: envFrom {SECRET_NAME}", c.place);
        }
        mounted.insert(service.clone());
    }
    let services: BTreeSet<String> = binary().services.keys().cloned().collect();
    assert_eq!(mounted, services, "every service mounts its secret files");
    // No other workload (Kafka, ZooKeeper, PostgreSQL, the Job's init container) mounts them.
    for workload in cluster.workloads() {
        let pod = &workload["spec"]["template"]["spec"];
        let serves = seq(&pod["containers"]).iter().any(|c| is_shop_image(str_of(c, "image")));
        if !serves {
            assert!(
                secret_volumes(pod, SECRET_NAME).is_empty(),
                "{} mounts {SECRET_NAME}",
                str_of(&workload["metadata"], "name")
            );
        }
    }
}

#[test]
fn the_kustomization_generates_the_secret_from_the_files_the_code_names_and_they_are_never_committed() {
    let generators: Vec<&Value> = seq(&kustomization()["secretGenerator"]).iter().collect();
    let ours: Vec<&&Value> = generators.iter().filter(|g| str_of(g, "name") == SECRET_NAME).collect();
    assert_eq!(ours.len(), 1, "kustomization.yaml: one secretGenerator named {SECRET_NAME}");
    let generator = ours[0];
    for key in ["literals", "envs", "env"] {
        assert!(generator[key].is_null(), "secretGenerator {SECRET_NAME}: {key} would put secrets in the repository");
    }
    assert_ne!(
        generator["options"]["disableNameSuffixHash"].as_bool(),
        Some(true),
        "secretGenerator {SECRET_NAME}: the hash in its name is what restarts the pods on new secrets"
    );
    let mut keys = BTreeSet::new();
    for entry in strings(&generator["files"]) {
        let (key, path) =
            entry.split_once('=').unwrap_or((Path::new(&entry).file_name().unwrap().to_str().unwrap(), &entry));
        let key = key.to_owned();
        assert_eq!(path, format!("{SECRETS_FOLDER}/{key}"), "secretGenerator {SECRET_NAME}: {entry}");
        assert!(keys.insert(key), "secretGenerator {SECRET_NAME}: {entry} twice");
    }
    assert_eq!(keys, all_secret_files(), "secretGenerator {SECRET_NAME} against every service's secret_files()");

    // Those are exactly the files `shop secrets generate` makes, as docs/deploy.md says to run it.
    let dir = tempfile::tempdir().expect("a temporary folder");
    let target = dir.path().join(SECRETS_FOLDER);
    shop(&["secrets", "generate", "--dir", target.to_str().unwrap()]);
    let made: BTreeSet<String> = std::fs::read_dir(&target)
        .expect("shop secrets generate made the folder")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    assert_eq!(made, keys, "shop secrets generate against the secretGenerator's files");
    let docs = read(&root().join("docs/deploy.md"));
    assert!(docs.contains("-- secrets generate --dir deploy/k8s/secrets"), "docs/deploy.md: how to fill the folder");

    // The folder keeps nothing but its .gitignore and README in the repository.
    let ignore = read(&k8s_dir().join(SECRETS_FOLDER).join(".gitignore"));
    let lines: BTreeSet<&str> =
        ignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let expected: BTreeSet<String> =
        std::iter::once("*".to_owned()).chain(COMMITTED_IN_SECRETS_FOLDER.iter().map(|f| format!("!{f}"))).collect();
    assert_eq!(lines, expected.iter().map(String::as_str).collect(), "deploy/k8s/secrets/.gitignore");
    let git = |args: &[&str]| Command::new("git").arg("-C").arg(root()).args(args).output().ok();
    if let Some(tracked) = git(&["ls-files", "deploy/k8s/secrets"]).filter(|o| o.status.success()) {
        for file in String::from_utf8_lossy(&tracked.stdout).lines() {
            let name = file.rsplit('/').next().unwrap();
            assert!(COMMITTED_IN_SECRETS_FOLDER.contains(&name), "{file} is committed: it is a secret");
        }
        for name in &keys {
            let path = format!("deploy/k8s/{SECRETS_FOLDER}/{name}");
            let ignored = git(&["check-ignore", "-q", &path]).is_some_and(|o| o.status.success());
            assert!(ignored, "git does not ignore {path}");
        }
    }
}

/// Every file under `dir`, recursively, except the generated secrets of deploy/k8s/secrets.
fn repository_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            repository_files(&path, files);
        } else if path.parent() != Some(&k8s_dir().join(SECRETS_FOLDER))
            || COMMITTED_IN_SECRETS_FOLDER.iter().any(|f| path.ends_with(f))
        {
            files.push(path);
        }
    }
}

#[test]
fn no_key_or_generated_secret_is_in_the_repositorys_deployment_files() {
    let mut files = Vec::new();
    repository_files(&root().join("deploy"), &mut files);
    for path in &files {
        let Ok(content) = std::fs::read_to_string(path) else { continue };
        for marker in ["PRIVATE KEY-----", "\"d\":"] {
            assert!(!content.contains(marker), "{} holds private key material ({marker})", path.display());
        }
    }
    // No manifest carries the generated Secret itself, or a secret file by name in another one.
    let names = all_secret_files();
    for (file, doc) in &cluster().resources {
        if str_of(doc, "kind") != "Secret" {
            continue;
        }
        let name = str_of(&doc["metadata"], "name");
        assert!(!name.starts_with(SECRET_NAME), "{file}: the Secret {name} must come from the secretGenerator");
        for field in ["data", "stringData"] {
            for (key, _) in doc[field].as_mapping().into_iter().flatten() {
                let key = text(key).unwrap();
                assert!(!names.contains(&key), "{file}: Secret {name} holds {key}, a file of the secrets folder");
            }
        }
    }
    // And no compose service is given one of them as a value.
    for (name, service) in compose_services() {
        for (var, _) in compose_env(service) {
            let lower = var.to_lowercase().replace('_', "-");
            assert!(
                !names.iter().any(|f| lower.contains(f.trim_end_matches(".pem").trim_end_matches(".json"))),
                "compose service {name} sets {var}: secrets come from the secrets volume"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Origins: what the browser calls across origins

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> String {
    url::Url::parse(url).unwrap_or_else(|e| panic!("{url} is not a URL: {e}")).origin().ascii_serialization()
}

/// The origins of an ALLOWED_ORIGINS value, each checked to be a bare http(s) origin.
fn allowed_origins(value: Option<String>, place: &str) -> BTreeSet<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| {
            assert_ne!(o, "*", "{place}: ALLOWED_ORIGINS never allows every origin");
            assert!(o.starts_with("http://") || o.starts_with("https://"), "{place}: {o} is not an http(s) origin");
            assert_eq!(origin(o), o, "{place}: {o} is more than an origin");
            o.to_owned()
        })
        .collect()
}

/// What the browser needs, given where it reaches each service (`at`, an origin per service)
/// and each service's settings: pages sign in at mobile, so mobile lets their origins call it,
/// and the app calls order, so order lets the app's origin call it (the app's connect-src
/// names ORDER_URL's origin by itself: `Web::calling`).
fn assert_browser_calls_allowed(
    settings: &BTreeMap<String, Vec<(String, Invocation, Env)>>,
    at: &BTreeMap<String, String>,
    what: &str,
) {
    let get = |inv: &Invocation, env: &Env, var: &str| effective(inv, env, var).unwrap_or_default();
    let mobile_at = &at["mobile"];
    for (service, replicas) in settings {
        for (place, inv, env) in replicas {
            let sign_in = get(inv, env, "SIGN_IN_URL");
            assert_eq!(&origin(&sign_in), mobile_at, "{place}: SIGN_IN_URL is mobile as the browser reaches it");
            let allowed = allowed_origins(env.get("ALLOWED_ORIGINS").cloned().flatten(), place);
            let reaches = |target: &str| {
                &origin(target) == at.get(service.as_str()).unwrap() || allowed.contains(&origin(target))
            };
            match service.as_str() {
                "order" => assert!(reaches(mobile_at), "{place}: ALLOWED_ORIGINS lacks the app's origin {mobile_at}"),
                "mobile" => {
                    for page in SIGN_IN_PAGES {
                        let page_at = &at[page];
                        assert!(reaches(page_at), "{place}: ALLOWED_ORIGINS lacks {page}'s page at {page_at} ({what})");
                    }
                }
                _ => {}
            }
        }
    }
}

#[test]
fn the_browser_may_make_the_cross_origin_calls_of_the_pages_in_kubernetes() {
    let cluster = cluster();
    let routes = ingress_routes(cluster);
    let mut settings: BTreeMap<String, Vec<(String, Invocation, Env)>> = BTreeMap::new();
    for (c, inv, env) in cluster.shop_containers() {
        if let Run::Serve(service) = &inv.run {
            settings.entry(service.clone()).or_default().push((c.place.clone(), inv, env));
        }
    }
    // Behind the Ingress everything shares one origin, PUBLIC_URL's; the rest is reached with
    // kubectl port-forward on its own port (docs/deploy.md).
    let (_, payment, payment_env) = &settings["payment"][0];
    let public = origin(&effective(payment, payment_env, "PUBLIC_URL").unwrap());
    let mut at = BTreeMap::new();
    for (service, replicas) in &settings {
        let (place, inv, env) = &replicas[0];
        let behind_ingress = routes.iter().any(|r| &r.service == service);
        let port = listeners(inv, env, place)["http"];
        at.insert(service.clone(), if behind_ingress { public.clone() } else { format!("http://localhost:{port}") });
    }
    assert_browser_calls_allowed(&settings, &at, "a port-forward");
    // The app reaches order through the Ingress, as /orders.
    let (_, mobile, mobile_env) = &settings["mobile"][0];
    assert_eq!(origin(&effective(mobile, mobile_env, "ORDER_URL").unwrap()), public, "ORDER_URL: the Ingress");
}

#[test]
fn the_browser_may_make_the_cross_origin_calls_of_the_pages_in_compose() {
    let mut settings: BTreeMap<String, Vec<(String, Invocation, Env)>> = BTreeMap::new();
    let mut at: BTreeMap<String, String> = BTreeMap::new();
    for (name, service, inv, env) in compose_shop_services() {
        let Run::Serve(serves) = &inv.run else { continue };
        let http = listeners(&inv, &env, &name)["http"];
        let published = strings(&service["ports"]).into_iter().find_map(|mapping| {
            let mut parts = mapping.rsplit(':');
            let inside: u16 = parts.next()?.parse().ok()?;
            (inside == http).then(|| parts.next().map(str::to_owned)).flatten()
        });
        if let Some(host_port) = published {
            // The first replica published is the one the links and the app use.
            at.entry(serves.clone()).or_insert(format!("http://localhost:{host_port}"));
        }
        settings.entry(serves.clone()).or_default().push((format!("compose service {name}"), inv, env));
    }
    let (_, payment, payment_env) = &settings["payment"][0];
    assert_eq!(origin(&effective(payment, payment_env, "PUBLIC_URL").unwrap()), at["payment"], "PUBLIC_URL");
    assert_browser_calls_allowed(&settings, &at, "a published port");
}

// ---------------------------------------------------------------------------------------
// Kubernetes: who may connect to whom

/// Whether a label selector selects `labels` (matchLabels and matchExpressions; an empty
/// selector selects everything).
fn selects(selector: &Value, labels: &Value) -> bool {
    let label = |key: &Value| labels.get(key).and_then(text);
    let by_labels = selector["matchLabels"].as_mapping().into_iter().flatten().all(|(k, v)| label(k) == text(v));
    let by_expressions = seq(&selector["matchExpressions"]).iter().all(|e| {
        let value = label(&e["key"]);
        let values = strings(&e["values"]);
        match str_of(e, "operator") {
            "In" => value.is_some_and(|v| values.contains(&v)),
            "NotIn" => !value.is_some_and(|v| values.contains(&v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => panic!("unknown selector operator {other}"),
        }
    });
    by_labels && by_expressions
}

/// Where a connection comes from: a pod of this namespace (its labels), a pod of another
/// namespace (the Ingress controller's), or a pod of another namespace with these labels
/// (Prometheus).
enum Peer<'a> {
    Here(&'a Value),
    Elsewhere,
    ElsewhereLabelled(&'a Value),
}

/// Whether a selector certainly selects something whose labels are unknown: only `{}` does.
fn selects_anything(selector: &Value) -> bool {
    selector.as_mapping().is_some_and(|m| {
        m.iter()
            .all(|(k, v)| matches!(text(k).as_deref(), Some("matchLabels" | "matchExpressions")) && seq_or_map_empty(v))
    })
}

fn seq_or_map_empty(value: &Value) -> bool {
    match value {
        Value::Mapping(m) => m.is_empty(),
        Value::Sequence(s) => s.is_empty(),
        Value::Null => true,
        _ => false,
    }
}

/// The labels of the namespace `shop`, as the API server sets them.
fn namespace_labels(cluster: &Cluster) -> Value {
    let namespace = cluster.of_kind("Namespace").next().expect("the Namespace");
    let mut labels = namespace["metadata"]["labels"].as_mapping().cloned().unwrap_or_default();
    labels.insert("kubernetes.io/metadata.name".into(), str_of(&namespace["metadata"], "name").into());
    Value::Mapping(labels)
}

/// Whether the network policies let `from` connect to `port` of a pod of `workload`
/// (policies only add: a pod no policy selects takes everything).
fn admitted(cluster: &Cluster, from: &Peer, workload: &Value, port: u16) -> bool {
    let pod = &workload["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    let here = namespace_labels(cluster);
    let container_port = |name: &str| {
        seq(&pod["spec"]["containers"])
            .iter()
            .flat_map(|c| seq(&c["ports"]))
            .find(|p| str_of(p, "name") == name)
            .and_then(|p| p["containerPort"].as_u64())
    };
    let policies: Vec<&Value> = cluster
        .of_kind("NetworkPolicy")
        .filter(|p| selects(&p["spec"]["podSelector"], labels))
        .filter(|p| {
            strings(&p["spec"]["policyTypes"]).iter().any(|t| t == "Ingress") || !p["spec"]["ingress"].is_null()
        })
        .collect();
    if policies.is_empty() {
        return true;
    }
    policies.iter().flat_map(|p| seq(&p["spec"]["ingress"])).any(|rule| {
        let peers = seq(&rule["from"]);
        let from_ok = peers.is_empty()
            || peers.iter().any(|peer| {
                assert!(peer["ipBlock"].is_null(), "ipBlock peers are not modelled here");
                let (pods, namespaces) = (&peer["podSelector"], &peer["namespaceSelector"]);
                match from {
                    // No namespaceSelector: the policy's own namespace.
                    Peer::Here(source) => {
                        (namespaces.is_null() || selects(namespaces, &here))
                            && (pods.is_null() || selects(pods, source))
                    }
                    Peer::Elsewhere => {
                        !namespaces.is_null()
                            && selects_anything(namespaces)
                            && (pods.is_null() || selects_anything(pods))
                    }
                    Peer::ElsewhereLabelled(source) => {
                        !namespaces.is_null()
                            && selects_anything(namespaces)
                            && (pods.is_null() || selects(pods, source))
                    }
                }
            });
        let ports = seq(&rule["ports"]);
        let port_ok = ports.is_empty()
            || ports.iter().any(|p| match &p["port"] {
                Value::Number(n) => n.as_u64() == Some(u64::from(port)),
                Value::String(name) => container_port(name) == Some(u64::from(port)),
                _ => true,
            });
        from_ok && port_ok
    })
}

/// The pods behind a Service's port (a number, or a name of its ports), with the port each
/// listens on.
fn pods_behind<'a>(cluster: &'a Cluster, service: &'a Value, port: &Value, place: &str) -> Vec<(&'a Value, u16)> {
    let entry = seq(&service["spec"]["ports"])
        .iter()
        .find(|p| (port.is_string() && p["name"] == *port) || (port.is_number() && p["port"] == *port))
        .unwrap_or_else(|| panic!("{place}: Service {} has no port {port:?}", str_of(&service["metadata"], "name")));
    let target = if entry["targetPort"].is_null() { &entry["port"] } else { &entry["targetPort"] };
    cluster
        .selected_by(service)
        .into_iter()
        .map(|workload| {
            let container = &workload["spec"]["template"]["spec"]["containers"][0];
            (workload, resolve_port(container, target, place))
        })
        .collect()
}

/// Prometheus finds every service by its pod's annotations (`prometheus.io/scrape`, `port`,
/// `path`), naming the port the service listens on and `/metrics`; the network policies let a
/// Prometheus pod of any namespace reach that port, and nothing else.
#[test]
fn prometheus_finds_and_reaches_every_service_and_nothing_else() {
    let cluster = cluster();
    let prometheus: Value = serde_yaml::from_str("app.kubernetes.io/name: prometheus").unwrap();
    let scraped: Vec<String> = cluster
        .shop_containers()
        .into_iter()
        .filter(|(_, inv, _)| matches!(inv.run, Run::Serve(_)))
        .map(|(c, inv, env)| {
            let annotations = &c.workload["spec"]["template"]["metadata"]["annotations"];
            assert_eq!(text(&annotations["prometheus.io/scrape"]).as_deref(), Some("true"), "{}: not scraped", c.place);
            assert_eq!(text(&annotations["prometheus.io/path"]).as_deref(), Some("/metrics"), "{}", c.place);
            let port: u16 = text(&annotations["prometheus.io/port"])
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("{}: no prometheus.io/port", c.place));
            assert_eq!(Some(&port), listeners(&inv, &env, &c.place).get("http"), "{}: the annotation's port", c.place);
            assert!(
                admitted(cluster, &Peer::ElsewhereLabelled(&prometheus), c.workload, port),
                "{}: Prometheus is blocked",
                c.place
            );
            c.place.clone()
        })
        .collect();
    assert_eq!(scraped.len(), 7, "every service is scraped: {scraped:?}");
    for name in ["kafka", "zookeeper", "postgres"] {
        let workload = cluster.named("StatefulSet", name).unwrap_or_else(|| panic!("the {name} StatefulSet"));
        for container in seq(&workload["spec"]["template"]["spec"]["containers"]) {
            for port in container_ports(container).values() {
                assert!(
                    !admitted(cluster, &Peer::ElsewhereLabelled(&prometheus), workload, *port),
                    "Prometheus reaches {name}:{port}"
                );
            }
        }
    }
}

#[test]
fn the_network_policies_let_through_every_connection_the_system_makes_and_keep_the_rest_inside() {
    let cluster = cluster();
    let labels_of = |w: &'static Value| &w["spec"]["template"]["metadata"]["labels"];
    // (what, from whose pods, to which pods, on which port)
    let mut flows: Vec<(String, &Value, &Value, u16)> = Vec::new();
    let mut connect = |place: &str, from: &'static Value, host: &str, port: u16| {
        let service = cluster.service_at(host, port, place);
        for (workload, pod_port) in pods_behind(cluster, service, &Value::from(port), place) {
            flows.push((format!("{place} -> {host}:{port}"), labels_of(from), workload, pod_port));
        }
    };
    for (c, inv, env) in cluster.shop_containers() {
        let reads = |var: &str| options_of(&inv.run).by_env(var).is_some();
        let get = |var: &str| effective(&inv, &env, var).unwrap_or_else(|| panic!("{}: {var} unset", c.place));
        for var in ["KAFKA_BROKERS", "PAYMENT_URL", "MOBILE_URL", "DATABASE_URL"] {
            if reads(var) {
                for (host, port) in addresses(&get(var)) {
                    connect(&c.place, c.workload, &host, port);
                }
            }
        }
        if reads("SMTP_HOST") {
            connect(&c.place, c.workload, &get("SMTP_HOST"), get("SMTP_PORT").parse().expect("a port"));
        }
    }
    let kafka = cluster.named("StatefulSet", "kafka").expect("the Kafka StatefulSet");
    let broker = &kafka["spec"]["template"]["spec"]["containers"][0];
    for (host, port) in addresses(env_value(broker, "KAFKA_ZOOKEEPER_CONNECT").expect("brokers name ZooKeeper")) {
        connect("kafka", kafka, &host, port);
    }
    connect("kafka (replication)", kafka, "kafka", 9092);
    for (what, from, to, port) in &flows {
        assert!(admitted(cluster, &Peer::Here(from), to, *port), "the network policies block {what}");
    }

    // The Ingress controller, in a namespace of its own, reaches every backend of the Ingress.
    let ingress = cluster.of_kind("Ingress").next().expect("an Ingress");
    let mut public: Vec<&Value> = Vec::new();
    for path in seq(&ingress["spec"]["rules"]).iter().flat_map(|r| seq(&r["http"]["paths"])) {
        let backend = &path["backend"]["service"];
        let service = cluster.named("Service", str_of(backend, "name")).expect("the backend Service");
        let port =
            if backend["port"]["name"].is_string() { &backend["port"]["name"] } else { &backend["port"]["number"] };
        for (workload, pod_port) in pods_behind(cluster, service, port, str_of(path, "path")) {
            assert!(
                admitted(cluster, &Peer::Elsewhere, workload, pod_port),
                "the Ingress controller cannot reach {} for {}",
                str_of(&workload["metadata"], "name"),
                str_of(path, "path")
            );
            public.push(workload);
        }
    }
    // Nothing else is reachable from outside the namespace: the internal services, the
    // brokers, ZooKeeper, the database.
    for workload in cluster.workloads().filter(|w| !public.iter().any(|p| std::ptr::eq(*p, *w))) {
        for container in seq(&workload["spec"]["template"]["spec"]["containers"]) {
            for port in container_ports(container).values() {
                assert!(
                    !admitted(cluster, &Peer::Elsewhere, workload, *port),
                    "{}:{port} is reachable from other namespaces",
                    str_of(&workload["metadata"], "name")
                );
            }
        }
    }
    // And the database only from the services: not from the topics Job, nor from Kafka.
    let postgres = cluster.named("StatefulSet", "postgres").expect("the PostgreSQL StatefulSet");
    for other in cluster.workloads().filter(|w| matches!(str_of(w, "kind"), "Job" | "StatefulSet")) {
        if !std::ptr::eq(other, postgres) {
            assert!(
                !admitted(cluster, &Peer::Here(labels_of(other)), postgres, 5432),
                "{} may connect to PostgreSQL",
                str_of(&other["metadata"], "name")
            );
        }
    }
}

#[test]
fn every_resource_lives_in_the_shop_namespace_and_the_kustomization_lists_every_file() {
    for (file, doc) in &cluster().resources {
        if str_of(doc, "kind") == "Namespace" {
            assert_eq!(str_of(&doc["metadata"], "name"), "shop");
        } else {
            assert_eq!(str_of(&doc["metadata"], "namespace"), "shop", "{file}: {} namespace", str_of(doc, "kind"));
        }
    }
    let kustomization = &documents(&k8s_dir().join("kustomization.yaml"))[0];
    assert_eq!(str_of(kustomization, "namespace"), "shop");
    let listed: BTreeSet<String> = strings(&kustomization["resources"]).into_iter().collect();
    let files: BTreeSet<String> = cluster().resources.iter().map(|(file, _)| file.clone()).collect();
    assert_eq!(listed, files, "kustomization.yaml resources against the files in deploy/k8s");
}

// ---------------------------------------------------------------------------------------
// docker compose

fn compose() -> &'static Value {
    static COMPOSE: OnceLock<Value> = OnceLock::new();
    COMPOSE.get_or_init(|| {
        let mut doc = documents(&root().join("deploy/compose/docker-compose.yml")).remove(0);
        doc.apply_merge().expect("merge keys resolve");
        doc
    })
}

fn compose_services() -> Vec<(String, &'static Value)> {
    compose()["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .map(|(name, service)| (text(name).unwrap(), service))
        .collect()
}

fn compose_env(service: &Value) -> Env {
    match &service["environment"] {
        Value::Mapping(map) => map.iter().map(|(k, v)| (text(k).unwrap(), text(v))).collect(),
        Value::Sequence(list) => list
            .iter()
            .filter_map(text)
            .map(|item| match item.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (item, None),
            })
            .collect(),
        _ => Env::new(),
    }
}

/// The shop services of the compose file: (name, service, invocation, environment).
fn compose_shop_services() -> Vec<(String, &'static Value, Invocation, Env)> {
    compose_services()
        .into_iter()
        .filter(|(_, s)| is_shop_image(str_of(s, "image")))
        .map(|(name, s)| {
            let place = format!("compose service {name}");
            assert!(s["entrypoint"].is_null(), "{place}: the image's entrypoint is `shop`");
            let inv = invocation(&strings(&s["command"]), &place);
            (name, s, inv, compose_env(s))
        })
        .collect()
}

fn compose_services_with_image(image: &str) -> Vec<(String, &'static Value)> {
    compose_services().into_iter().filter(|(_, s)| image_name(str_of(s, "image")) == image).collect()
}

#[test]
fn every_shop_service_in_compose_runs_a_real_subcommand_with_variables_the_binary_reads() {
    let services = compose_shop_services();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (name, _, inv, env) in &services {
        let place = format!("compose service {name}");
        assert_reads_all(inv, env, &place);
        assert_sets_cluster_addresses(inv, env, &place);
        if let Run::Serve(service) = &inv.run {
            *counts.entry(service.clone()).or_default() += 1;
        }
    }
    for service in binary().services.keys() {
        let expected = if REPLICATED.contains(&service.as_str()) { 2 } else { 1 };
        assert_eq!(counts.get(service).copied().unwrap_or(0), expected, "compose replicas of {service}");
    }
}

#[test]
fn every_shop_service_in_compose_publishes_and_health_checks_the_ports_it_listens_on() {
    for (name, service, inv, env) in compose_shop_services() {
        let place = format!("compose service {name}");
        let listening = listeners(&inv, &env, &place);
        if let Run::Serve(_) = inv.run {
            let check = strings(&service["healthcheck"]["test"]).join(" ");
            let http = listening["http"];
            assert!(check.contains(&format!("/dev/tcp/127.0.0.1/{http} ")), "{place}: health check port, want {http}");
            assert!(check.contains(&format!("GET {READINESS_PATH} ")), "{place}: health check path");
        }
        for mapping in strings(&service["ports"]) {
            let inside: u16 = mapping.rsplit(':').next().unwrap().parse().expect("a port number");
            assert!(listening.values().any(|p| *p == inside), "{place}: publishes {inside}, listens on {listening:?}");
        }
    }
}

#[test]
fn every_address_a_shop_service_is_given_in_compose_leads_to_the_right_component() {
    let services: BTreeMap<String, &Value> = compose_services().into_iter().collect();
    let shop: BTreeMap<String, (Invocation, Env)> =
        compose_shop_services().into_iter().map(|(name, _, inv, env)| (name, (inv, env))).collect();
    let serving = |host: &str, port: u16| -> Option<String> {
        let (inv, env) = shop.get(host)?;
        let Run::Serve(service) = &inv.run else { return None };
        listeners(inv, env, host).values().any(|p| *p == port).then(|| service.clone())
    };
    let init = read(&root().join("deploy/compose/postgres/create-databases.sql"));
    let created = created_databases(&init);
    for (name, (inv, env)) in &shop {
        let get = |var: &str| effective(inv, env, var).unwrap_or_else(|| panic!("{name}: {var} unset"));
        let reads = |var: &str| options_of(&inv.run).by_env(var).is_some();
        if reads("KAFKA_BROKERS") {
            let brokers = addresses(&get("KAFKA_BROKERS"));
            assert_eq!(brokers.len(), 3, "{name}: bootstrap from the three brokers");
            for (host, port) in brokers {
                let broker = services.get(&host).unwrap_or_else(|| panic!("{name}: no service {host}"));
                assert_eq!(image_name(str_of(broker, "image")), KAFKA_IMAGE, "{name}: {host}");
                assert_eq!(port, 9092);
            }
        }
        for (var, target) in [("PAYMENT_URL", "payment"), ("MOBILE_URL", "mobile")] {
            if reads(var) {
                for (host, port) in addresses(&get(var)) {
                    assert_eq!(serving(&host, port).as_deref(), Some(target), "{name}: {var} -> {host}:{port}");
                }
            }
        }
        if reads("SMTP_HOST") {
            let port: u16 = get("SMTP_PORT").parse().unwrap();
            let host = get("SMTP_HOST");
            let (email_inv, email_env) = shop.get(&host).unwrap_or_else(|| panic!("{name}: no service {host}"));
            assert_eq!(email_inv.run, Run::Serve("email".into()));
            assert_eq!(port_of(email_inv, email_env, "SMTP_PORT", &host), port, "{name}: SMTP_PORT");
        }
        if let Run::Serve(_) = inv.run {
            let url = get("DATABASE_URL");
            assert!(created.contains(&database_of(&url)), "{name}: {url} names a database the init script lacks");
            let (host, _) = addresses(&url)[0].clone();
            assert_eq!(image_name(str_of(services[&host], "image")), POSTGRES_IMAGE, "{name}: {host}");
        }
    }
    let k8s_init = cluster().named("ConfigMap", "postgres-init").expect("postgres-init");
    let k8s_created: BTreeSet<String> = k8s_init["data"]
        .as_mapping()
        .into_iter()
        .flatten()
        .flat_map(|(_, s)| created_databases(&text(s).unwrap()))
        .collect();
    assert_eq!(created, k8s_created, "compose and Kubernetes create the same databases");
}

#[test]
fn compose_runs_three_brokers_one_zookeeper_and_creates_the_topics_before_the_services_start() {
    let brokers: Vec<_> = compose_services_with_image(KAFKA_IMAGE)
        .into_iter()
        .filter(|(_, s)| compose_env(s).contains_key("KAFKA_BROKER_ID"))
        .collect();
    assert_eq!(brokers.len(), 3, "three brokers");
    let ids: BTreeSet<Option<String>> =
        brokers.iter().map(|(_, s)| compose_env(s)["KAFKA_BROKER_ID"].clone()).collect();
    assert_eq!(ids.len(), 3, "distinct broker ids");
    for (name, broker) in &brokers {
        let env = compose_env(broker);
        assert_eq!(env["KAFKA_DEFAULT_REPLICATION_FACTOR"].as_deref(), Some("3"), "{name}");
        assert_eq!(env["KAFKA_MIN_INSYNC_REPLICAS"].as_deref(), Some("2"), "{name}");
        assert_eq!(env["KAFKA_ADVERTISED_LISTENERS"].as_deref(), Some(format!("PLAINTEXT://{name}:9092").as_str()));
    }
    assert_eq!(compose_services_with_image(ZOOKEEPER_IMAGE).len(), 1, "one ZooKeeper");

    let creators: Vec<_> =
        compose_shop_services().into_iter().filter(|(_, _, inv, _)| inv.run == Run::TopicsCreate).collect();
    assert_eq!(creators.len(), 1, "one service creates the topics");
    let (topics, _, inv, env) = &creators[0];
    assert_eq!(effective(inv, env, "TOPIC_REPLICATION_FACTOR").as_deref(), Some("3"));
    for (name, service, inv, _) in compose_shop_services() {
        if let Run::Serve(_) = inv.run {
            let after_topics = &service["depends_on"][topics.as_str()]["condition"];
            let after_storage = &service["depends_on"]["postgres"]["condition"];
            assert_eq!(after_storage.as_str(), Some("service_healthy"), "{name} waits for PostgreSQL");
            if options_of(&inv.run).by_env("KAFKA_BROKERS").is_some() {
                assert_eq!(
                    after_topics.as_str(),
                    Some("service_completed_successfully"),
                    "{name} waits for the topics"
                );
            }
        }
    }
}

/// A volume of a compose service: (source, target, read-only), from the short syntax
/// `source:target[:ro]` or the long one.
fn compose_mounts(service: &Value) -> Vec<(String, String, bool)> {
    seq(&service["volumes"])
        .iter()
        .map(|volume| match volume {
            Value::String(short) => {
                let parts: Vec<&str> = short.split(':').collect();
                let read_only = parts.get(2).is_some_and(|o| o.split(',').any(|o| o == "ro"));
                (parts[0].to_owned(), parts.get(1).copied().unwrap_or(parts[0]).to_owned(), read_only)
            }
            long => (
                str_of(long, "source").to_owned(),
                str_of(long, "target").to_owned(),
                long["read_only"].as_bool().unwrap_or(false),
            ),
        })
        .collect()
}

#[test]
fn every_shop_service_in_compose_reads_the_secrets_a_one_shot_service_generates_first() {
    let services = compose_shop_services();
    let generators: Vec<_> = services.iter().filter(|(_, _, inv, _)| inv.run == Run::SecretsGenerate).collect();
    assert_eq!(generators.len(), 1, "one compose service runs `shop secrets generate`");
    let (generator, service, inv, _) = generators[0];
    let dir = inv.flags.get("--dir").unwrap_or_else(|| panic!("{generator}: secrets generate --dir"));
    let (volume, _, read_only) = compose_mounts(service)
        .into_iter()
        .find(|(_, target, _)| target == dir)
        .unwrap_or_else(|| panic!("{generator}: nothing mounted at {dir}, where it writes"));
    assert!(!read_only, "{generator}: it writes into {volume}");
    assert!(
        compose()["volumes"].as_mapping().is_some_and(|m| m.contains_key(volume.as_str())),
        "{generator}: {volume} should be a named volume (no host folder holds the secrets)"
    );
    let restart = str_of(service, "restart");
    assert!(matches!(restart, "no" | "on-failure"), "{generator}: restart {restart:?} never lets it complete");
    for (name, service, inv, env) in &services {
        let mounts = compose_mounts(service);
        let Run::Serve(serves) = &inv.run else {
            if inv.run != Run::SecretsGenerate {
                assert!(
                    mounts.iter().all(|(source, _, _)| *source != volume),
                    "{name} reads no secrets, mounts {volume}"
                );
            }
            continue;
        };
        let place = format!("compose service {name}");
        let secrets_dir = env.get("SECRETS_DIR").cloned().flatten();
        let secrets_dir = secrets_dir.unwrap_or_else(|| panic!("{place}: SECRETS_DIR is not set"));
        let mount = mounts.iter().find(|(_, target, _)| *target == secrets_dir);
        let (source, _, read_only) = mount.unwrap_or_else(|| panic!("{place}: nothing mounted at SECRETS_DIR"));
        assert_eq!(source, &volume, "{place}: SECRETS_DIR={secrets_dir} holds the generated volume");
        assert!(read_only, "{place}: the secrets are mounted read-only");
        assert_eq!(
            service["depends_on"][generator.as_str()]["condition"].as_str(),
            Some("service_completed_successfully"),
            "{place} starts once {generator} made the files of shop_{serves}::secret_files()"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The checks' skips and the docs

#[test]
fn every_checkov_finding_left_unfixed_is_justified_in_the_deploy_docs() {
    let docs = read(&root().join("docs/deploy.md"));
    let script = read(&root().join(".ci/deploy-checks"));
    let mut skipped: BTreeSet<String> = BTreeSet::new();
    let in_list = script.split("CHECKOV_SKIP=(").nth(1).and_then(|rest| rest.split(')').next()).expect("CHECKOV_SKIP");
    for line in in_list.lines() {
        if let Some(id) = line.split_whitespace().next().filter(|w| w.starts_with("CKV")) {
            skipped.insert(id.to_owned());
        }
    }
    for (_, doc) in &cluster().resources {
        for (key, value) in doc["metadata"]["annotations"].as_mapping().into_iter().flatten() {
            if text(key).is_some_and(|k| k.starts_with("checkov.io/skip")) {
                skipped.insert(text(value).unwrap().split('=').next().unwrap().to_owned());
            }
        }
    }
    assert!(!skipped.is_empty());
    for id in skipped {
        assert!(docs.contains(&id), "docs/deploy.md does not justify skipping {id}");
    }
}

// ---------------------------------------------------------------------------------------
// The variables clap does not declare

#[test]
fn the_log_variables_the_manifests_set_change_what_the_binary_prints() {
    // LOG_FORMAT=json must turn every line into JSON, and RUST_LOG=trace must let through
    // events below the default level `info`.
    let data = std::env::temp_dir().join(format!("shop-manifests-{}", std::process::id()));
    // Its keys and passwords, where it looks for them by default (<DATA_DIR>/secrets).
    shop(&["secrets", "generate", "--dir", data.join("secrets").to_str().unwrap()]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(["serve", "mobile"])
        .env_clear()
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "trace")
        .env("HTTP_HOST", "127.0.0.1")
        .env("HTTP_PORT", "0")
        .env("DATA_DIR", &data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("shop serve mobile starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut levels = BTreeSet::new();
    let mut started = false;
    while !started {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Ok(line)) = rx.recv_timeout(left) else { break };
        let event: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("LOG_FORMAT=json printed a non-JSON line: {line}"));
        levels.insert(event["level"].as_str().unwrap_or("").to_owned());
        started = event["fields"]["message"] == "Service started";
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&data);
    assert!(started, "the service did not log that it started; levels seen: {levels:?}");
    assert!(levels.contains("TRACE") || levels.contains("DEBUG"), "RUST_LOG=trace changed nothing: {levels:?}");
}

// ---------------------------------------------------------------------------------------
// The readers themselves

#[test]
fn the_command_reader_finds_flags_variables_and_defaults() {
    use clap::{Arg, ArgAction};
    let mut command = clap::Command::new("x")
        .arg(Arg::new("http_port").long("http-port").env("HTTP_PORT").default_value("8081").help("HTTP port"))
        .arg(Arg::new("partitions").long("partitions").value_name("P").env("TOPIC_PARTITIONS").default_value("3"))
        .arg(Arg::new("secret").long("secret").env("SECRET").hide(true))
        .arg(Arg::new("verbose").long("verbose").action(ArgAction::SetTrue));
    command.build();
    let opts = options(&command);
    let port = opts.by_env("HTTP_PORT").unwrap();
    assert_eq!((port.flag.as_str(), port.default.as_deref()), ("--http-port", Some("8081")));
    let partitions = opts.by_env("TOPIC_PARTITIONS").unwrap();
    assert_eq!((partitions.flag.as_str(), partitions.default.as_deref()), ("--partitions", Some("3")));
    assert!(opts.by_flag("--help").is_some_and(|o| o.env.is_none()));
    assert!(opts.by_flag("--secret").is_none() && opts.by_env("SECRET").is_none(), "hidden, as in --help");
    assert!(opts.by_flag("--verbose").is_some_and(|o| o.default.is_none()), "a switch shows no default");
    // And on the binary's own command line.
    let order = &binary().services["order"];
    assert!(order.by_env("HTTP_PORT").is_some_and(|o| o.flag == "--http-port" && o.default.as_deref() == Some("8081")));
    assert_eq!(binary().topics_create.by_env("TOPIC_PARTITIONS").map(|o| o.flag.as_str()), Some("--partitions"));
    assert_eq!(addresses("postgres://u:p@postgres:5432/order?sslmode=disable"), [("postgres".to_owned(), 5432)]);
    assert_eq!(addresses("a:1,http://b:2/x"), [("a".to_owned(), 1), ("b".to_owned(), 2)]);
    assert_eq!(image_name("confluentinc/cp-kafka:7.7.1"), KAFKA_IMAGE);
    assert_eq!(image_name("registry:5000/shop"), "registry:5000/shop");
    assert!(is_shop_image("registry.example.com/team/shop:0.1.0"));
}
