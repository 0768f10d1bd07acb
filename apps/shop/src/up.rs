//! `shop up`: the whole system on one machine. Starts the embedded broker (unless
//! `--kafka-brokers` names a cluster), creates the 11 topics, starts every service as its own
//! process (`shop serve <service>`, order and payment twice), waits until each is ready,
//! prints the URLs, restarts a service that dies, and on Ctrl-C or SIGTERM stops the
//! services, then the broker.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::cli::UpArgs;
use crate::serve::PARENT_WATCH_ENV;

/// How long services get to stop before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(15);
const READY_WITHIN: Duration = Duration::from_secs(90);

/// One process to start: `shop serve <service>` with its environment.
#[derive(Clone)]
struct Plan {
    instance: String,
    service: &'static str,
    port: u16,
    env: Vec<(&'static str, String)>,
}

struct Running {
    plan: Plan,
    child: Child,
    /// Restarts in a row that ended within a minute: a service that keeps dying stops all.
    quick_restarts: u32,
    started: tokio::time::Instant,
}

/// A service that dies this many times in a row, each within a minute, stops the system.
const MAX_QUICK_RESTARTS: u32 = 5;

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.order_ports.len() == 2, "--order-ports takes two ports, one per replica");
    anyhow::ensure!(args.payment_ports.len() == 2, "--payment-ports takes two ports, one per replica");
    crate::credentials::prepare(&args.data_dir)?;
    let (brokers, broker) = start_broker(&args).await?;
    crate::topics::ensure(&brokers, args.partitions, args.replication_factor).await?;
    println!("Topics: the 11 topics are there ({} partitions each).", args.partitions);

    let mut running = Vec::new();
    let mut plans = plans(&args, &brokers);
    // Pinned only beside the embedded broker: with the brokers in other processes (on the same
    // cores, as dev/kafka-cluster runs them) the kernel places everything better; pinned, the
    // email channel fell behind in six runs of six (docs/performance.md).
    let pin = !args.no_cpu_pinning && args.kafka_brokers.is_none();
    let cpus = if pin { crate::cpus::allowed() } else { Vec::new() };
    let weights: Vec<u32> = plans.iter().map(|plan| crate::cpus::weight(plan.service)).collect();
    let assigned = crate::cpus::assign(&cpus, &weights);
    for (plan, cpu) in plans.iter_mut().zip(assigned) {
        if let Some(cpu) = cpu {
            // The process pins itself to it first thing (`cpus::pin_from_env`); a restart keeps it.
            plan.env.push((crate::cpus::CPU_ENV, cpu.to_string()));
        }
    }
    if cpus.len() >= 2 {
        println!("CPUs: each service process runs on one of CPUs {cpus:?}, spread by load (--no-cpu-pinning: the kernel places them).");
    }
    for plan in plans {
        match spawn(plan) {
            Ok(child) => running.push(child),
            Err(error) => {
                stop_all(&mut running).await;
                return Err(error);
            }
        }
    }
    let outcome = tokio::select! {
        ready = wait_until_ready(&args.host, &mut running) => ready,
        _ = shop_platform::shutdown::wait_for_signal() => Err(anyhow::anyhow!("interrupted while starting")),
    };
    if let Err(error) = outcome {
        stop_all(&mut running).await;
        return Err(error);
    }
    print_urls(&args, &brokers, broker.is_some());

    let outcome = tokio::select! {
        _ = shop_platform::shutdown::wait_for_signal() => {
            println!("Stopping…");
            Ok(())
        }
        failed = supervise(&mut running) => Err(failed),
    };
    stop_all(&mut running).await;
    if let Some(broker) = broker {
        stop_broker(broker);
    }
    println!("Stopped.");
    outcome
}

#[cfg(feature = "embedded-broker")]
type Broker = shop_embedded_broker::EmbeddedBroker;
#[cfg(not(feature = "embedded-broker"))]
type Broker = std::convert::Infallible;

async fn start_broker(args: &UpArgs) -> anyhow::Result<(String, Option<Broker>)> {
    if let Some(brokers) = &args.kafka_brokers {
        println!("Kafka: using the cluster at {brokers}");
        wait_for_cluster(brokers).await?;
        return Ok((brokers.clone(), None));
    }
    #[cfg(feature = "embedded-broker")]
    {
        use shop_embedded_broker::Storage;
        let storage = match args.broker_storage {
            crate::cli::BrokerStorage::Disk => Storage::Disk(args.data_dir.join("broker")),
            crate::cli::BrokerStorage::Memory => Storage::Memory,
        };
        let broker = shop_embedded_broker::EmbeddedBroker::start(
            &args.host,
            args.peer_host(),
            args.broker_port,
            &storage,
            &shop_embedded_broker::Retention { ms: args.broker_retention_ms, bytes: args.broker_retention_bytes },
        )
        .await?;
        let brokers = broker.bootstrap_servers().to_owned();
        wait_for_cluster(&brokers).await?;
        println!("Kafka: embedded broker at {brokers}");
        Ok((brokers, Some(broker)))
    }
    #[cfg(not(feature = "embedded-broker"))]
    anyhow::bail!("this build has no embedded broker: pass --kafka-brokers HOST:PORT")
}

fn stop_broker(broker: Broker) {
    #[cfg(feature = "embedded-broker")]
    broker.stop();
    #[cfg(not(feature = "embedded-broker"))]
    match broker {}
}

async fn wait_for_cluster(brokers: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !shop_platform::kafka::cluster_answers(brokers, Duration::from_secs(2)).await {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no Kafka broker answers at {brokers}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

fn plans(args: &UpArgs, brokers: &str) -> Vec<Plan> {
    let host = &args.host;
    let peer = args.peer_host();
    let data_dir = args.data_dir.display().to_string();
    let url = |port: u16| format!("http://{peer}:{port}");
    let public = |port: u16| format!("http://localhost:{port}");
    // The pages that call other services from the browser: the app (order's API), and the
    // staff's pages and the payment page (sign-in), as the browser names them.
    let page_ports = [args.mobile_port, args.payment_ports[0], args.delivery_port, args.logging_port, args.email_port];
    let origins: Vec<String> = page_ports
        .iter()
        .flat_map(|port| [format!("http://localhost:{port}"), format!("http://127.0.0.1:{port}")])
        .collect();
    let origins = origins.join(",");
    let sign_in_url = public(args.mobile_port);
    let plan = |service: &'static str, replica: usize, port: u16, extra: Vec<(&'static str, String)>| {
        let instance = format!("{service}-{replica}");
        let mut env = vec![
            ("HTTP_HOST", host.clone()),
            ("HTTP_PORT", port.to_string()),
            ("KAFKA_BROKERS", brokers.to_owned()),
            ("DATA_DIR", data_dir.clone()),
            ("ALLOWED_ORIGINS", origins.clone()),
            ("SIGN_IN_URL", sign_in_url.clone()),
        ];
        if let Some(url) = service_database_url(args.database_url.as_deref(), service) {
            env.push(("DATABASE_URL", url));
        }
        env.extend(extra);
        Plan { instance, service, port, env }
    };
    let payment_urls = args.payment_ports.iter().map(|p| url(*p)).collect::<Vec<_>>().join(",");
    let mut plans = vec![
        plan("email", 1, args.email_port, vec![("SMTP_PORT", args.smtp_port.to_string())]),
        plan("mobile", 1, args.mobile_port, vec![("ORDER_URL", public(args.order_ports[0]))]),
        plan("logging", 1, args.logging_port, vec![]),
    ];
    for (i, port) in args.payment_ports.iter().enumerate() {
        plans.push(plan(
            "payment",
            i + 1,
            *port,
            vec![("PUBLIC_URL", public(args.payment_ports[0])), ("APP_URL", public(args.mobile_port))],
        ));
    }
    plans.push(plan("delivery", 1, args.delivery_port, vec![]));
    plans.push(plan(
        "notification",
        1,
        args.notification_port,
        vec![
            ("MOBILE_URL", url(args.mobile_port)),
            ("SMTP_HOST", peer.to_owned()),
            ("SMTP_PORT", args.smtp_port.to_string()),
        ],
    ));
    for (i, port) in args.order_ports.iter().enumerate() {
        plans.push(plan("order", i + 1, *port, vec![("PAYMENT_URL", payment_urls.clone())]));
    }
    // The operations page shows what every service says of its readiness and waits.
    let watched: Vec<String> = plans.iter().map(|p| format!("{}={}", p.instance, url(p.port))).collect();
    if let Some(logging) = plans.iter_mut().find(|p| p.service == "logging") {
        logging.env.push(("WATCHED_SERVICES", watched.join(",")));
    }
    plans
}

/// One database per service on the server `--database-url` names: `NAME_<service>`.
fn service_database_url(base: Option<&str>, service: &str) -> Option<String> {
    let mut url = url::Url::parse(base?).ok()?;
    let name = url.path().trim_start_matches('/').to_owned();
    url.set_path(&if name.is_empty() { service.to_owned() } else { format!("{name}_{service}") });
    Some(url.to_string())
}

fn spawn(plan: Plan) -> anyhow::Result<Running> {
    let exe = std::env::current_exe().context("cannot find the shop binary")?;
    let mut child = Command::new(exe)
        .args(["serve", plan.service, "--instance-id", &plan.instance])
        .envs(plan.env.iter().map(|(k, v)| (*k, v.as_str())))
        .env(PARENT_WATCH_ENV, "1")
        // Each process names itself in its spans, whatever the name `shop up` was given.
        .env("OTEL_SERVICE_NAME", plan.service)
        // Their lines come through pipes, to be shown as this process's: coloured if it shows
        // them on a terminal.
        .envs(
            std::io::IsTerminal::is_terminal(&std::io::stdout())
                .then_some((shop_platform::telemetry::FORCE_COLOR, "1")),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", plan.instance))?;
    let stdout = child.stdout.take().map(|s| Box::new(s) as Output);
    let stderr = child.stderr.take().map(|s| Box::new(s) as Output);
    for stream in [stdout, stderr].into_iter().flatten() {
        let prefix = format!("{:>14} | ", plan.instance);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                println!("{prefix}{line}");
            }
        });
    }
    Ok(Running { plan, child, quick_restarts: 0, started: tokio::time::Instant::now() })
}

/// A child's stdout or stderr, read alike.
type Output = Box<dyn tokio::io::AsyncRead + Unpin + Send>;

/// Waits until every service answers `/readyz`; fails if one exits first.
async fn wait_until_ready(host: &str, running: &mut [Running]) -> anyhow::Result<()> {
    let services: Vec<(String, String)> = running
        .iter()
        .map(|service| (service.plan.instance.clone(), format!("http://{host}:{}", service.plan.port)))
        .collect();
    shop_platform::http::wait_until_ready(&services, READY_WITHIN, |i| {
        let service = &mut running[i];
        match service.child.try_wait()? {
            Some(status) => anyhow::bail!("{} exited while starting ({status})", service.plan.instance),
            None => Ok(()),
        }
    })
    .await
}

/// Restarts a service that exits by itself, as a process supervisor would; resolves only
/// when one keeps failing right after each start.
async fn supervise(running: &mut [Running]) -> anyhow::Error {
    loop {
        for service in running.iter_mut() {
            let Ok(Some(status)) = service.child.try_wait() else { continue };
            let quick = service.started.elapsed() < Duration::from_secs(60);
            service.quick_restarts = if quick { service.quick_restarts + 1 } else { 1 };
            if service.quick_restarts > MAX_QUICK_RESTARTS {
                return anyhow::anyhow!(
                    "{} exited {MAX_QUICK_RESTARTS} times in a row ({status}); stopped everything",
                    service.plan.instance
                );
            }
            eprintln!("{} exited ({status}); restarting it", service.plan.instance);
            tokio::time::sleep(Duration::from_millis(250 * u64::from(service.quick_restarts))).await;
            match spawn(service.plan.clone()) {
                Ok(restarted) => {
                    service.child = restarted.child;
                    service.started = restarted.started;
                }
                Err(error) => return error,
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGTERM to every service, then SIGKILL to those still running after the grace period.
async fn stop_all(running: &mut [Running]) {
    for service in running.iter() {
        if let Some(pid) = service.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    for service in running.iter_mut() {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(remaining, service.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("{} did not stop in time; killing it", service.plan.instance);
                let _ = service.child.kill().await;
            }
        }
    }
}

fn print_urls(args: &UpArgs, brokers: &str, embedded: bool) {
    let h = "localhost";
    println!();
    println!(
        "Shop is up. Kafka at {brokers}{}; data in {}.",
        if embedded { " (embedded)" } else { "" },
        args.data_dir.display()
    );
    println!();
    println!("  customer app      http://{h}:{}", args.mobile_port);
    println!("  order API         http://{h}:{}  http://{h}:{}", args.order_ports[0], args.order_ports[1]);
    println!("  payment API       http://{h}:{}  http://{h}:{}", args.payment_ports[0], args.payment_ports[1]);
    println!("  courier page      http://{h}:{}  (delivery API)", args.delivery_port);
    println!("  notification      http://{h}:{}/metrics", args.notification_port);
    println!("  operations        http://{h}:{}  (audit trail, consumer lag)", args.logging_port);
    println!("  mailbox           http://{h}:{}  (SMTP {h}:{})", args.email_port, args.smtp_port);
    println!();
    let secrets = args.data_dir.join("secrets");
    println!("Sign in: customers register in the app. The courier page and the mailbox's all-mail view");
    println!("and operations take the staff's usernames, courier and operator, with the passwords in");
    println!("{0}/courier-password and {0}/operator-password.", secrets.display());
    println!(
        "Scripts: TOKEN=$(shop token --role customer --email you@example.com --data-dir {})",
        args.data_dir.display()
    );
    println!();
    println!("Press Ctrl-C to stop.");
}

#[cfg(test)]
mod tests {
    use super::service_database_url;

    #[test]
    fn each_service_gets_its_own_database_on_the_server() {
        assert_eq!(
            service_database_url(Some("postgres://shop:pw@db:5432/shop"), "order").as_deref(),
            Some("postgres://shop:pw@db:5432/shop_order")
        );
        assert_eq!(
            service_database_url(Some("postgres://shop:pw@db:5432"), "payment").as_deref(),
            Some("postgres://shop:pw@db:5432/payment")
        );
        assert_eq!(service_database_url(None, "order"), None);
    }
}
