//! The system under test: either started here, as `shop up` (this same binary) in a child
//! process on free ports with a fresh data folder, or a running one named by its URLs.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::{BenchArgs, PrepareSecrets};

const READY_WITHIN: Duration = Duration::from_secs(180);
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// Where the services answer.
#[derive(Clone, Debug)]
pub struct Endpoints {
    pub order: Vec<String>,
    pub payment: Vec<String>,
    pub delivery: String,
    pub logging: Option<String>,
    pub mobile: Option<String>,
    pub email: Option<String>,
    pub brokers: Option<String>,
    /// Signs the callers' tokens.
    pub tokens: std::sync::Arc<crate::tokens::Tokens>,
}

pub struct System {
    pub endpoints: Endpoints,
    /// The `shop up` whose children are the services, when known.
    pub up_pid: Option<u32>,
    /// What the `shop up` process is, for the report.
    pub up_label: String,
    pub description: String,
    started: Option<Started>,
}

struct Started {
    child: Child,
    data_dir: PathBuf,
    keep_data: bool,
}

impl System {
    pub async fn start_or_attach(args: &BenchArgs, prepare_secrets: PrepareSecrets) -> anyhow::Result<System> {
        if args.order_urls.is_empty() {
            return start(args, prepare_secrets).await;
        }
        anyhow::ensure!(
            !args.payment_urls.is_empty() && args.delivery_url.is_some(),
            "--order-url needs --payment-url and --delivery-url too"
        );
        let Some(secrets) = &args.secrets_dir else {
            anyhow::bail!(
                "--order-url needs --secrets-dir too: the running system's secrets, to sign its callers' tokens"
            )
        };
        let tokens = crate::tokens::Tokens::load(&shop_platform::secrets::Secrets::new(secrets))?;
        let trim = |url: &String| url.trim_end_matches('/').to_owned();
        Ok(System {
            endpoints: Endpoints {
                order: args.order_urls.iter().map(trim).collect(),
                payment: args.payment_urls.iter().map(trim).collect(),
                delivery: args.delivery_url.as_ref().map(trim).unwrap_or_default(),
                logging: args.logging_url.as_ref().map(trim),
                mobile: args.mobile_url.as_ref().map(trim),
                email: args.email_url.as_ref().map(trim),
                brokers: args.kafka_brokers.clone(),
                tokens: std::sync::Arc::new(tokens),
            },
            up_pid: args.up_pid,
            up_label: "shop up".to_owned(),
            description: format!(
                "a running system (order at {}, Kafka at {})",
                args.order_urls.join(","),
                args.kafka_brokers.as_deref().unwrap_or("unknown")
            ),
            started: None,
        })
    }

    /// Stops the `shop up` started here (SIGTERM, as Ctrl-C does) and removes its data.
    pub async fn stop(self) {
        let Some(mut started) = self.started else { return };
        if let Some(pid) = started.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        if tokio::time::timeout(STOP_WITHIN, started.child.wait()).await.is_err() {
            eprintln!("shop up did not stop within {STOP_WITHIN:?}; killing it");
            let _ = started.child.kill().await;
        }
        if started.keep_data {
            println!("Data and the system's log kept in {}", started.data_dir.display());
        } else if let Err(error) = std::fs::remove_dir_all(&started.data_dir) {
            eprintln!("cannot remove {}: {error}", started.data_dir.display());
        }
    }
}

async fn start(args: &BenchArgs, prepare_secrets: PrepareSecrets) -> anyhow::Result<System> {
    let [broker, o1, o2, p1, p2, delivery, notification, logging, mobile, email, smtp] =
        shop_platform::ports::unused::<11>()?;
    let data_dir = std::env::temp_dir().join(format!("shop-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    // The secrets the system will use, made here first so the bench can sign its callers' tokens.
    let secrets = prepare_secrets(&data_dir)?;
    let tokens = crate::tokens::Tokens::load(&secrets)?;
    let log_path = data_dir.join("shop-up.log");
    let (stdout, stderr) = if args.show_logs {
        (Stdio::inherit(), Stdio::inherit())
    } else {
        let log = std::fs::File::create(&log_path)?;
        (Stdio::from(log.try_clone()?), Stdio::from(log))
    };
    let mut command = Command::new(std::env::current_exe().context("cannot find the shop binary")?);
    command.arg("up").env_remove("KAFKA_BROKERS").env_remove("DATABASE_URL").env_remove("DATA_DIR");
    let brokers = match &args.kafka_brokers {
        Some(brokers) => {
            command.args(["--kafka-brokers", brokers]);
            brokers.clone()
        }
        None => {
            command.args(["--broker-port", &broker.to_string(), "--broker-storage", &args.broker_storage]);
            format!("127.0.0.1:{broker}")
        }
    };
    if let Some(url) = &args.database_url {
        command.args(["--database-url", url]);
    }
    if let Some(filter) = &args.rust_log {
        command.env("RUST_LOG", filter);
    }
    if args.no_cpu_pinning {
        command.arg("--no-cpu-pinning");
    }
    let port = |p: u16| p.to_string();
    command
        .args(["--partitions", &args.partitions.to_string()])
        .args(["--data-dir", &data_dir.display().to_string()])
        .args(["--order-ports", &format!("{o1},{o2}"), "--payment-ports", &format!("{p1},{p2}")])
        .args(["--delivery-port", &port(delivery), "--notification-port", &port(notification)])
        .args(["--logging-port", &port(logging), "--mobile-port", &port(mobile)])
        .args(["--email-port", &port(email), "--smtp-port", &port(smtp)])
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(true);
    let child = command.spawn().context("cannot start shop up")?;
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    let embedded = args.kafka_brokers.is_none();
    let mut system = System {
        endpoints: Endpoints {
            order: vec![url(o1), url(o2)],
            payment: vec![url(p1), url(p2)],
            delivery: url(delivery),
            logging: Some(url(logging)),
            mobile: Some(url(mobile)),
            email: Some(url(email)),
            brokers: Some(brokers.clone()),
            tokens: std::sync::Arc::new(tokens),
        },
        up_pid: child.id(),
        up_label: if embedded { "shop up (embedded broker)" } else { "shop up (supervisor)" }.to_owned(),
        description: format!(
            "shop up started here: {} broker at {brokers}, {}",
            if embedded { "embedded" } else { "Kafka" },
            if args.database_url.is_some() { "PostgreSQL" } else { "SQLite" }
        ),
        started: Some(Started { child, data_dir, keep_data: args.keep_data }),
    };
    println!("Starting {} (log: {})", system.description, log_path.display());
    let ports = [o1, o2, p1, p2, delivery, notification, logging, mobile, email];
    if let Err(error) = wait_until_ready(&mut system, &ports).await {
        let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(30).collect();
        system.stop().await;
        let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
        return Err(error.context(format!("shop up did not come up; the end of its log:\n{tail}")));
    }
    Ok(system)
}

async fn wait_until_ready(system: &mut System, ports: &[u16]) -> anyhow::Result<()> {
    let services: Vec<(String, String)> =
        ports.iter().map(|port| ("shop up's service".to_owned(), format!("http://127.0.0.1:{port}"))).collect();
    shop_platform::http::wait_until_ready(&services, READY_WITHIN, |_| match system.started.as_mut() {
        Some(started) => match started.child.try_wait()? {
            Some(status) => anyhow::bail!("shop up exited while starting ({status})"),
            None => Ok(()),
        },
        None => Ok(()),
    })
    .await
}
