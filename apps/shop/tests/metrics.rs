//! Every service's metrics, scraped by a real Prometheus. `shop up` runs on the embedded
//! broker; a Prometheus of this test's own scrapes all nine processes every second with the
//! operator's token (`authorization.credentials_file`). Then:
//!
//! - the mailbox's database is locked while an order is created, so its first mail is refused
//!   (451) and retried (a dependency's failure), then unlocked; the order goes on to delivered;
//! - an undecodable record is written to `orders-created`, so each group consuming it sets it
//!   aside;
//!
//! and PromQL queries assert each family: every target up, HTTP requests and their durations
//! on every service, records consumed and handler durations per group, records produced per
//! topic, the mail's retry (`reason="mailbox"`), the dead letters (`reason="undecodable"`),
//! the outboxes empty, the relays' publish latency, each group's lag back to 0 on every
//! partition, notifications sent per channel and outcome, and the order at `delivered`.
//!
//! Needs Prometheus: `SHOP_TEST_PROMETHEUS=/path/to/prometheus` (`.ci/metrics` builds it with
//! `dev/prometheus build`).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Connection;
use support::{eventually, kafka, Ports, System};

/// Long enough for a few scrapes of a busy machine.
const WITHIN: Duration = Duration::from_secs(90);

/// A Prometheus of this test's own on a port of its own, its data in a temporary folder;
/// stopped with the test.
struct Prometheus {
    child: Child,
    port: u16,
    http: reqwest::Client,
    _data: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One sample of a query's answer: its labels and value.
type Sample = (BTreeMap<String, String>, f64);

impl Prometheus {
    /// Scrapes every job's targets (`job` → ports on 127.0.0.1) every second, as the operator.
    async fn start(jobs: &[(&str, Vec<u16>)], operator_token: &str) -> Prometheus {
        let binary = std::env::var("SHOP_TEST_PROMETHEUS")
            .expect("SHOP_TEST_PROMETHEUS names Prometheus (.ci/metrics builds it)");
        let data = tempfile::tempdir().expect("a temporary folder");
        let token = data.path().join("operator.token");
        std::fs::write(&token, operator_token).expect("the token is written");
        let scrape_configs: Vec<Value> = jobs
            .iter()
            .map(|(job, ports)| {
                json!({
                    "job_name": job,
                    "authorization": { "type": "Bearer", "credentials_file": token },
                    "static_configs": [{ "targets": ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>() }],
                })
            })
            .collect();
        // JSON is YAML.
        let config = json!({
            "global": { "scrape_interval": "1s", "scrape_timeout": "1s" },
            "scrape_configs": scrape_configs,
        });
        let config_file = data.path().join("prometheus.yml");
        std::fs::write(&config_file, config.to_string()).expect("the config is written");
        let port = shop_platform::ports::unused_one().expect("a free port");
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--storage.tsdb.path={}", data.path().join("tsdb").display()))
            .args(["--scrape.discovery-reload-interval=1s", "--log.level=warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("Prometheus starts from {binary}: {e}"));
        let prometheus = Prometheus { child, port, http: reqwest::Client::new(), _data: data };
        eventually("Prometheus to answer", Duration::from_secs(30), || async {
            let ready = prometheus.http.get(prometheus.url("/-/ready")).send().await.ok()?;
            ready.status().is_success().then_some(())
        })
        .await;
        prometheus
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The samples of an instant query.
    async fn query(&self, promql: &str) -> Vec<Sample> {
        let answer: Value = self
            .http
            .get(self.url("/api/v1/query"))
            .query(&[("query", promql)])
            .send()
            .await
            .expect("Prometheus answers")
            .json()
            .await
            .expect("Prometheus answers JSON");
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
        answer["data"]["result"]
            .as_array()
            .expect("a vector")
            .iter()
            .map(|sample| {
                let labels = sample["metric"]
                    .as_object()
                    .expect("labels")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect();
                let value = sample["value"][1].as_str().expect("a value").parse().expect("a number");
                (labels, value)
            })
            .collect()
    }

    /// Waits until `promql` answers samples that `holds` accepts, and returns them.
    async fn until(&self, promql: &str, holds: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
        eventually(&format!("Prometheus to answer {promql} as expected"), WITHIN, || async {
            let samples = self.query(promql).await;
            holds(&samples).then_some(samples)
        })
        .await
    }

    /// Waits until `promql` answers one sample per value of `label` in `expected`, each
    /// accepted by `holds`.
    async fn each(&self, promql: &str, label: &str, expected: &[&str], holds: impl Fn(f64) -> bool) {
        let samples = self
            .until(promql, |samples| {
                let found: BTreeMap<&str, f64> =
                    samples.iter().filter_map(|(l, v)| Some((l.get(label)?.as_str(), *v))).collect();
                expected.iter().all(|e| found.get(e).is_some_and(|v| holds(*v)))
            })
            .await;
        println!("{promql}: {}", show(&samples));
    }
}

fn show(samples: &[Sample]) -> String {
    let shown: Vec<String> = samples.iter().map(|(labels, value)| format!("{labels:?} = {value}")).collect();
    shown.join("; ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus: SHOP_TEST_PROMETHEUS=/path/to/prometheus (.ci/metrics)"]
async fn prometheus_scrapes_every_family_from_every_service() {
    let data = Arc::new(tempfile::tempdir().unwrap());
    let ports = Ports::unused();
    let system = System::start_on(data.clone(), ports, &[]).await;
    let jobs = [
        ("order", ports.order.to_vec()),
        ("payment", ports.payment.to_vec()),
        ("delivery", vec![ports.delivery]),
        ("notification", vec![ports.notification]),
        ("logging", vec![ports.logging]),
        ("mobile", vec![ports.mobile]),
        ("email", vec![ports.email]),
    ];
    let operator = system.operator();
    let prometheus = Prometheus::start(&jobs, operator.trim_start_matches("Bearer ")).await;
    let services: Vec<&str> = jobs.iter().map(|(job, _)| *job).collect();
    prometheus.until("up", |samples| samples.len() == 9 && samples.iter().all(|(_, up)| *up == 1.0)).await;

    // The mailbox cannot store mail while its database is locked: it answers 451, and
    // notification tries the mail again until the lock is gone.
    let mailbox_db = format!("sqlite://{}", data.path().join("email.db").display());
    let mut lock = sqlx::SqliteConnection::connect(&mailbox_db).await.expect("the mailbox's database opens");
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut lock).await.expect("the mailbox's database is locked");
    let (order_id, payment_id) = system.create_order(system.order[0], "metrics@example.com", None).await;
    prometheus
        .until(r#"shop_consumer_retries_total{job="notification",group="notification-email",reason="mailbox"}"#, |s| {
            s.iter().any(|(_, retries)| *retries >= 1.0)
        })
        .await;
    sqlx::query("COMMIT").execute(&mut lock).await.expect("the lock is released");
    drop(lock);
    system.complete(&order_id, &payment_id).await;
    system.notifications(&order_id, 7).await;

    // A record nobody can read: each group consuming the topic sets it aside.
    let unreadable =
        kafka::Record { key: Some(order_id.clone()), payload: Some(b"not an event".to_vec()), headers: vec![] };
    kafka::produce(&system.brokers(), "orders-created", &unreadable).await;
    system.wait_until_consumed().await;

    let groups: Vec<&str> = shop_events::group::SUBSCRIPTIONS.iter().map(|(group, _)| *group).collect();
    let readers: Vec<&str> = shop_events::group::SUBSCRIPTIONS
        .iter()
        .filter(|(_, topics)| topics.iter().any(|t| t.name() == "orders-created"))
        .map(|(group, _)| *group)
        .collect();
    let positive = |v: f64| v > 0.0;

    prometheus.each("sum by (job) (shop_http_requests_total)", "job", &services, positive).await;
    prometheus
        .each(
            r#"sum by (route) (shop_http_request_duration_seconds_count{method="POST"})"#,
            "route",
            &[
                "/orders",
                "/payments/{payment_id}/pay",
                "/deliveries/{order_id}/shipped",
                "/deliveries/{order_id}/delivered",
            ],
            positive,
        )
        .await;
    prometheus.each("sum by (group) (shop_records_consumed_total)", "group", &groups, positive).await;
    prometheus.each("sum by (group) (shop_handler_duration_seconds_count)", "group", &groups, positive).await;
    prometheus
        .each(
            "sum by (topic) (shop_records_produced_total)",
            "topic",
            &[
                "orders-created",
                "payments-made",
                "orders-ready-to-ship",
                "delivery-delivered",
                "logging-events",
                "orders-created.dlq",
            ],
            positive,
        )
        .await;
    prometheus
        .each(
            "sum by (job) (shop_relay_publish_latency_seconds_count)",
            "job",
            &["order", "payment", "delivery"],
            positive,
        )
        .await;
    prometheus
        .each(
            r#"sum by (group) (shop_dead_letters_total{topic="orders-created",reason="undecodable"})"#,
            "group",
            &readers,
            |v| v == 1.0,
        )
        .await;
    prometheus.each("max by (job) (shop_outbox_rows)", "job", &["order", "payment", "delivery"], |v| v == 0.0).await;
    prometheus
        .each("max by (job) (shop_outbox_oldest_row_age_seconds)", "job", &["order", "payment", "delivery"], |v| {
            v == 0.0
        })
        .await;
    prometheus
        .each(
            r#"sum by (outcome) (shop_notifications_sent_total{channel="email"})"#,
            "outcome",
            &["sent", "retried"],
            positive,
        )
        .await;
    prometheus
        .each(
            r#"sum by (channel) (shop_notifications_sent_total{outcome="sent"})"#,
            "channel",
            &["push", "email"],
            |v| v == 7.0,
        )
        .await;
    prometheus.each("max by (status) (shop_orders)", "status", &["delivered"], |v| v == 1.0).await;

    // Each group's lag, from librdkafka's statistics: every partition of every topic it
    // consumes has a series, and all are back to 0.
    let lag = prometheus
        .until("shop_consumer_lag", |samples| {
            groups.iter().all(|group| {
                let topics = shop_events::group::topics(group).len();
                let partitions: BTreeSet<(&str, &str)> = samples
                    .iter()
                    .filter(|(l, _)| l["group"] == *group)
                    .map(|(l, _)| (l["topic"].as_str(), l["partition"].as_str()))
                    .collect();
                partitions.len() == topics * 3
            }) && samples.iter().all(|(_, lag)| *lag == 0.0)
        })
        .await;
    println!("shop_consumer_lag: {} series, all 0", lag.len());
}
