//! Dependencies out for a minute, and the broker's connections slowed and cut, through a real
//! proxy (toxiproxy) while orders flow. `shop up` runs with `--advertised-host 127.0.0.2`, so
//! every connection from one process to another (to the embedded broker, the mailbox, mobile,
//! payment) goes to 127.0.0.2, where toxiproxy listens on the same port and forwards to the
//! process on 127.0.0.1. Then, with a new order every 400 ms:
//!
//! - the mailbox refuses every connection for a minute (its proxy disabled: the mailbox's port
//!   is closed to notification, as for a mailbox that is stopped, not frozen);
//! - mobile refuses every connection for a minute, overlapping;
//!   meanwhile notification's `/readyz` and the operations page (logging's `/api/services`)
//!   say it waits for both;
//! - every connection to the broker slowed (300 ms ± 100 ms each way) for 15 s;
//! - every connection to the broker cut (reset) and refused for 15 s; meanwhile order's
//!   `/readyz` and the operations page say it is not ready.
//!
//! Afterwards every order must have reached `delivered` with each stage once, exactly 7 pushes
//! and 7 mails, each audit record once, and nothing in a dead-letter topic.
//!
//! Needs toxiproxy's server: `SHOP_TEST_TOXIPROXY=/path/to/toxiproxy-server` (`.ci/outages`
//! builds it: `go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0`). Runs on the
//! embedded broker only. `SHOP_OUTAGE_SECONDS` sets the outages of the mailbox and mobile (60).

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{eventually, url, Ports, System};

/// One new order this often.
const EVERY: Duration = Duration::from_millis(400);
/// Where the processes reach each other (toxiproxy), and where they listen.
const PROXIED: &str = "127.0.0.2";
const DIRECT: &str = "127.0.0.1";

/// A toxiproxy server of this test's own, stopped with it.
struct Toxiproxy {
    child: Child,
    api: String,
    http: reqwest::Client,
}

impl Drop for Toxiproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Toxiproxy {
    async fn start() -> Toxiproxy {
        let binary = std::env::var("SHOP_TEST_TOXIPROXY")
            .expect("SHOP_TEST_TOXIPROXY names toxiproxy's server (.ci/outages builds it)");
        let port = shop_platform::ports::unused_one().expect("a free port");
        let child = Command::new(&binary)
            .args(["-host", DIRECT, "-port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("toxiproxy starts from {binary}: {e}"));
        let toxiproxy = Toxiproxy { child, api: format!("http://{DIRECT}:{port}"), http: reqwest::Client::new() };
        let version = format!("{}/version", toxiproxy.api);
        eventually("toxiproxy to answer", Duration::from_secs(30), || async {
            toxiproxy.http.get(&version).send().await.ok().filter(|r| r.status().is_success()).map(|_| ())
        })
        .await;
        toxiproxy
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.api));
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.expect("toxiproxy answers");
        let status = response.status();
        assert!(
            status.is_success(),
            "toxiproxy: {method} {path} {body:?}: {status} {}",
            response.text().await.unwrap()
        );
    }

    /// `name` listens on `PROXIED:port` and forwards to `DIRECT:port`.
    async fn forward(&self, name: &str, port: u16) {
        let proxy =
            json!({"name": name, "listen": format!("{PROXIED}:{port}"), "upstream": format!("{DIRECT}:{port}")});
        self.call(reqwest::Method::POST, "/proxies", Some(proxy)).await;
    }

    /// Disabled, a proxy closes its connections and its port refuses new ones.
    async fn enable(&self, name: &str, enabled: bool) {
        self.call(reqwest::Method::POST, &format!("/proxies/{name}"), Some(json!({"enabled": enabled}))).await;
    }

    /// Every byte through `name`, both ways, late by `latency` ± `jitter` ms.
    async fn slow(&self, name: &str, latency: u32, jitter: u32) {
        for stream in ["upstream", "downstream"] {
            let toxic = json!({"name": format!("slow-{stream}"), "type": "latency", "stream": stream,
                "attributes": {"latency": latency, "jitter": jitter}});
            self.call(reqwest::Method::POST, &format!("/proxies/{name}/toxics"), Some(toxic)).await;
        }
    }

    async fn unslow(&self, name: &str) {
        for stream in ["upstream", "downstream"] {
            self.call(reqwest::Method::DELETE, &format!("/proxies/{name}/toxics/slow-{stream}"), None).await;
        }
    }
}

/// Polls `port`'s `/readyz` until `seen` holds for its status and body; panics after `within`.
async fn readiness_until(system: &System, port: u16, what: &str, within: Duration, seen: impl Fn(u16, &Value) -> bool) {
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        if let Ok(response) = system.http.get(url(port, "/readyz")).send().await {
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if seen(status, &body) {
                return;
            }
            last = Some((status, body));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{what} within {within:?}; last /readyz: {last:?}");
}

/// Asks logging's `GET /api/services` as the operator until `seen` holds for its services.
async fn services_until(system: &System, what: &str, seen: impl Fn(&[Value]) -> bool) {
    let operator = system.operator();
    eventually(what, Duration::from_secs(12), || async {
        let (status, report) = system.try_get_as(system.logging, "/api/services", &operator).await?;
        (status == 200 && seen(report["services"].as_array()?)).then_some(())
    })
    .await
}

/// Whether notification's `/readyz` lists a wait of `group` on the dependency it sends to
/// (the mailbox, mobile). Only the operator (the operations page's `/api/services`) also gets
/// the failure's words, `detail`: anyone else gets no internal address.
fn waits_for(body: &Value, group: &str) -> bool {
    let dependency = if group == "notification-email" { "mailbox" } else { "mobile" };
    body["waiting"].as_array().is_some_and(|waits| {
        waits.iter().any(|w| {
            let detail = w["detail"].as_str();
            w["group"] == group
                && w["waitingFor"] == dependency
                && detail.is_none_or(|detail| detail.contains("unreachable") || detail.contains("refused"))
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs toxiproxy (SHOP_TEST_TOXIPROXY): .ci/outages builds it and runs this"]
async fn orders_complete_once_each_through_a_minute_without_mailbox_or_mobile_and_a_slowed_and_cut_broker() {
    assert!(
        std::env::var_os("SHOP_TEST_KAFKA_BROKERS").is_none(),
        "this test puts toxiproxy in front of the embedded broker: unset SHOP_TEST_KAFKA_BROKERS"
    );
    let outage = Duration::from_secs(std::env::var("SHOP_OUTAGE_SECONDS").map_or(60, |s| s.parse().unwrap()));
    let toxiproxy = Toxiproxy::start().await;
    let ports = Ports::unused();
    for (name, port) in [
        ("broker", ports.broker),
        ("mailbox", ports.smtp),
        ("mobile", ports.mobile),
        ("payment-1", ports.payment[0]),
        ("payment-2", ports.payment[1]),
        ("order-1", ports.order[0]),
        ("order-2", ports.order[1]),
        ("delivery", ports.delivery),
        ("notification", ports.notification),
        ("logging", ports.logging),
        ("email", ports.email),
    ] {
        toxiproxy.forward(name, port).await;
    }
    let data = Arc::new(tempfile::tempdir().expect("a temporary folder"));
    let system = Arc::new(System::start_on(data, ports, &["--host", DIRECT, "--advertised-host", PROXIED]).await);

    // Orders start every 400 ms, from now until the last outage is over.
    let flowing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let customers = {
        let (system, flowing) = (system.clone(), flowing.clone());
        tokio::spawn(async move {
            let mut journeys = tokio::task::JoinSet::new();
            let mut number = 0;
            while flowing.load(std::sync::atomic::Ordering::SeqCst) {
                number += 1;
                journeys.spawn(support::journey(system.clone(), format!("outage{number}@example.com")));
                tokio::time::sleep(EVERY).await;
            }
            let mut orders = Vec::new();
            while let Some(done) = journeys.join_next().await {
                let (order, payment, took) = done.expect("a journey completes (its failure is printed above)");
                orders.push((order, payment, took));
            }
            orders
        })
    };
    let started = Instant::now();
    let say = |what: &str| println!("{:>6.1} s  {what}", started.elapsed().as_secs_f64());

    tokio::time::sleep(Duration::from_secs(5)).await;
    say(&format!("the mailbox refuses connections for {outage:?}"));
    toxiproxy.enable("mailbox", false).await;
    let mailbox_back = Instant::now() + outage;
    tokio::time::sleep(Duration::from_secs(5)).await;
    say(&format!("mobile refuses connections for {outage:?}"));
    toxiproxy.enable("mobile", false).await;
    let mobile_back = Instant::now() + outage;
    readiness_until(
        &system,
        system.notification,
        "notification to say it waits for both",
        outage / 2,
        |status, body| status == 200 && waits_for(body, "notification-email") && waits_for(body, "notification-mobile"),
    )
    .await;
    say("notification's /readyz says it waits for the mailbox and for mobile");
    services_until(&system, "the operations page to show notification-1 waiting for both", |services| {
        services.iter().any(|s| {
            s["instance"] == "notification-1"
                && s["ready"] == true
                && waits_for(s, "notification-email")
                && waits_for(s, "notification-mobile")
        })
    })
    .await;
    say("so does the operations page (logging's /api/services)");
    tokio::time::sleep(mailbox_back.saturating_duration_since(Instant::now())).await;
    toxiproxy.enable("mailbox", true).await;
    say("the mailbox is back");
    tokio::time::sleep(mobile_back.saturating_duration_since(Instant::now())).await;
    toxiproxy.enable("mobile", true).await;
    say("mobile is back");
    readiness_until(
        &system,
        system.notification,
        "notification to wait no more",
        Duration::from_secs(60),
        |status, body| status == 200 && body["waiting"].as_array().is_some_and(Vec::is_empty),
    )
    .await;
    say("notification waits no more");

    say("every connection to the broker slowed by 300 ± 100 ms each way for 15 s");
    toxiproxy.slow("broker", 300, 100).await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    toxiproxy.unslow("broker").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    say("every connection to the broker cut, and refused for 15 s");
    toxiproxy.enable("broker", false).await;
    let broker_back = Instant::now() + Duration::from_secs(15);
    readiness_until(
        &system,
        system.order[0],
        "order-1 to say it is not ready",
        Duration::from_secs(14),
        |status, _| status == 503,
    )
    .await;
    say("order-1's /readyz says it is not ready");
    services_until(&system, "the operations page to show order-1 not ready", |services| {
        services.iter().any(|s| s["instance"] == "order-1" && s["ready"] == false && s["problem"].is_string())
    })
    .await;
    say("so does the operations page");
    tokio::time::sleep(broker_back.saturating_duration_since(Instant::now())).await;
    toxiproxy.enable("broker", true).await;
    say("the broker is reachable again");
    tokio::time::sleep(Duration::from_secs(5)).await;
    flowing.store(false, std::sync::atomic::Ordering::SeqCst);

    let mut finished = customers.await.expect("the customers finish");
    finished.sort_by_key(|(_, _, took)| *took);
    say(&format!(
        "{} orders; journeys took {:.1} s (median) to {:.1} s (longest)",
        finished.len(),
        finished[finished.len() / 2].2.as_secs_f64(),
        finished.last().unwrap().2.as_secs_f64()
    ));
    let orders: Vec<(String, String)> = finished.into_iter().map(|(order, payment, _)| (order, payment)).collect();
    support::assert_every_order_once(&system, &orders).await;
    services_until(&system, "the operations page to show all nine ready, waiting for nothing", |services| {
        services.len() == 9 && services.iter().all(|s| s["ready"] == true && s["waiting"] == json!([]))
    })
    .await;
    say("every order delivered, each stage, push, mail and audit record once, nothing set aside");
}
