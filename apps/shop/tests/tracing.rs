//! One order followed through every service in a real trace backend. `shop up` runs with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a Jaeger v2 of this test's own; one order goes
//! from creation to delivered through the public APIs; then, through Jaeger's query API:
//!
//! - the trace of the payment (`POST /payments/{payment_id}/pay`, its one root) holds spans of
//!   payment, order, delivery, notification, mobile and email (every push and mail it caused),
//!   each span's parent in the same trace;
//! - searching by the order id (`order_id`) finds the traces of the four customer and courier
//!   actions: create, pay, shipped and delivered, each rooted at that action's request;
//! - each of the order's audit records (`GET /logs`) names the trace of the action that caused
//!   it, and those are the four traces.
//!
//! Needs Jaeger v2: `SHOP_TEST_JAEGER=/path/to/jaeger` (`.ci/tracing` builds it with
//! `dev/jaeger build`).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use support::{eventually, Ports, System};

/// A Jaeger of this test's own, on ports of its own, in memory; stopped with the test.
struct Jaeger {
    child: Child,
    otlp_http: u16,
    query: u16,
    http: reqwest::Client,
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Jaeger {
    async fn start() -> Jaeger {
        let binary =
            std::env::var("SHOP_TEST_JAEGER").expect("SHOP_TEST_JAEGER names Jaeger v2 (.ci/tracing builds it)");
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../dev/jaeger.yaml");
        let [otlp_http, otlp_grpc, query] = shop_platform::ports::unused::<3>().expect("free ports");
        let child = Command::new(binary)
            .args(["--config", config])
            .env("JAEGER_OTLP_HTTP_PORT", otlp_http.to_string())
            .env("JAEGER_OTLP_GRPC_PORT", otlp_grpc.to_string())
            .env("JAEGER_QUERY_HTTP_PORT", query.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("Jaeger starts");
        let jaeger = Jaeger { child, otlp_http, query, http: reqwest::Client::new() };
        eventually("Jaeger to answer", Duration::from_secs(30), || async {
            jaeger.http.get(jaeger.url("/api/services")).send().await.ok().filter(|r| r.status().is_success())
        })
        .await;
        jaeger
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.query)
    }

    /// The trace of the order rooted at `service`'s span `root`, once it is whole: every span's
    /// parent is in it (each process exports its spans on its own, so a child can arrive before
    /// its parent) and `complete` holds. Fails with what was there when it does not come.
    async fn whole_trace(&self, service: &str, root: &str, order_id: &str, complete: impl Fn(&Trace) -> bool) -> Trace {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let traces = self.traces_of_order(service, order_id).await;
            let found = traces.into_iter().find(|t| t.roots().iter().any(|r| r.service == service && r.name == root));
            match found {
                Some(trace) if trace.orphans().is_empty() && complete(&trace) => return trace,
                found if std::time::Instant::now() >= deadline => match found {
                    None => panic!("no trace rooted at {service}'s {root} for order {order_id}"),
                    Some(trace) => panic!(
                        "the trace of {root} is not whole: orphans {:?}, services {:?}\n{}",
                        trace.orphans(),
                        trace.services(),
                        trace.tree()
                    ),
                },
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The traces with a span of `service` whose `order_id` is `order_id`, each as its spans.
    async fn traces_of_order(&self, service: &str, order_id: &str) -> Vec<Trace> {
        let tags = serde_json::json!({ "order_id": order_id }).to_string();
        let answer: Value = self
            .http
            .get(self.url("/api/traces"))
            .query(&[("service", service), ("tags", tags.as_str()), ("limit", "100")])
            .send()
            .await
            .expect("Jaeger answers")
            .json()
            .await
            .expect("Jaeger answers JSON");
        answer["data"].as_array().cloned().unwrap_or_default().iter().map(Trace::read).collect()
    }
}

/// A span as Jaeger shows it.
#[derive(Debug)]
struct Span {
    id: String,
    parent: Option<String>,
    service: String,
    name: String,
    /// Microseconds since the epoch, and how long.
    start: i64,
    duration: i64,
}

#[derive(Debug)]
struct Trace {
    id: String,
    spans: Vec<Span>,
}

impl Trace {
    fn read(trace: &Value) -> Trace {
        let processes = &trace["processes"];
        let spans = trace["spans"]
            .as_array()
            .expect("a trace has spans")
            .iter()
            .map(|span| Span {
                id: span["spanID"].as_str().unwrap().to_owned(),
                parent: span["references"]
                    .as_array()
                    .and_then(|r| r.iter().find(|r| r["refType"] == "CHILD_OF"))
                    .map(|r| r["spanID"].as_str().unwrap().to_owned()),
                service: processes[span["processID"].as_str().unwrap()]["serviceName"].as_str().unwrap().to_owned(),
                name: span["operationName"].as_str().unwrap().to_owned(),
                start: span["startTime"].as_i64().unwrap_or_default(),
                duration: span["duration"].as_i64().unwrap_or_default(),
            })
            .collect();
        Trace { id: trace["traceID"].as_str().unwrap().to_owned(), spans }
    }

    /// The spans without a parent.
    fn roots(&self) -> Vec<&Span> {
        self.spans.iter().filter(|s| s.parent.is_none()).collect()
    }

    fn services(&self) -> BTreeSet<&str> {
        self.spans.iter().map(|s| s.service.as_str()).collect()
    }

    fn count(&self, service: &str) -> usize {
        self.spans.iter().filter(|s| s.service == service).count()
    }

    /// The spans as an indented tree, children in the order Jaeger gave them.
    fn tree(&self) -> String {
        fn below(trace: &Trace, parent: Option<&str>, depth: usize, out: &mut String) {
            for span in trace.spans.iter().filter(|s| s.parent.as_deref() == parent) {
                out.push_str(&format!("{}{} {}\n", "  ".repeat(depth), span.service, span.name));
                below(trace, Some(&span.id), depth + 1, out);
            }
        }
        let mut out = String::new();
        below(self, None, 0, &mut out);
        out
    }

    /// The trace as a picture (SVG): one row per span in tree order, indented by depth, its bar
    /// placed on the trace's time axis and coloured by service, as a trace UI draws it.
    fn waterfall(&self) -> String {
        fn rows<'a>(trace: &'a Trace, parent: Option<&str>, depth: usize, out: &mut Vec<(usize, &'a Span)>) {
            let mut children: Vec<&Span> = trace.spans.iter().filter(|s| s.parent.as_deref() == parent).collect();
            children.sort_by_key(|s| s.start);
            for span in children {
                out.push((depth, span));
                rows(trace, Some(&span.id), depth + 1, out);
            }
        }
        let mut ordered = Vec::new();
        rows(self, None, 0, &mut ordered);
        let begin = self.spans.iter().map(|s| s.start).min().unwrap_or_default();
        let end = self.spans.iter().map(|s| s.start + s.duration).max().unwrap_or(begin + 1).max(begin + 1);
        let (label, width, row) = (430.0, 1200.0, 22.0);
        let scale = (width - label - 20.0) / (end - begin) as f64;
        let colour = |service: &str| match service {
            "payment" => "#f59e0b",
            "order" => "#6366f1",
            "delivery" => "#10b981",
            "notification" => "#ec4899",
            "mobile" => "#8b5cf6",
            "email" => "#0ea5e9",
            "logging" => "#64748b",
            _ => "#94a3b8",
        };
        let height = 40.0 + row * ordered.len() as f64;
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"8\" y=\"20\" font-weight=\"bold\">trace {} · {} spans · {:.1} ms</text>\n",
            self.id,
            self.spans.len(),
            (end - begin) as f64 / 1000.0
        );
        for (n, (depth, span)) in ordered.iter().enumerate() {
            let y = 32.0 + row * n as f64;
            let x = label + (span.start - begin) as f64 * scale;
            let w = (span.duration as f64 * scale).max(1.5);
            let name = span.name.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
            svg.push_str(&format!(
                "<text x=\"{}\" y=\"{}\"><tspan fill=\"{}\" font-weight=\"bold\">{}</tspan> {name}</text>\n\
                 <rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"14\" rx=\"2\" fill=\"{}\"/>\n\
                 <text x=\"{:.1}\" y=\"{}\" fill=\"#475569\" font-size=\"10\">{:.2} ms</text>\n",
                8 + depth * 12,
                y + 11.0,
                colour(&span.service),
                span.service,
                y + 1.0,
                colour(&span.service),
                (x + w + 4.0).min(width - 50.0),
                y + 11.0,
                span.duration as f64 / 1000.0
            ));
        }
        svg.push_str("</svg>\n");
        svg
    }

    /// Spans whose parent is not in the trace.
    fn orphans(&self) -> Vec<&Span> {
        let ids: BTreeSet<&str> = self.spans.iter().map(|s| s.id.as_str()).collect();
        self.spans.iter().filter(|s| s.parent.as_deref().is_some_and(|p| !ids.contains(p))).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Jaeger v2: SHOP_TEST_JAEGER=/path/to/jaeger (.ci/tracing)"]
async fn an_order_is_one_trace_per_action_through_every_service() {
    let jaeger = Jaeger::start().await;
    let endpoint = format!("http://127.0.0.1:{}", jaeger.otlp_http);
    let data = Arc::new(tempfile::tempdir().unwrap());
    let ports = Ports::unused();
    let log = data.path().join(format!("shop-up-{}.log", ports.broker));
    let system = System::start_with_env(
        data,
        ports,
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "info,shop_notification=debug"),
        ],
    )
    .await;

    let (order_id, payment_id) = system.create_order(system.order[0], "tracy@example.com", None).await;
    system.complete(&order_id, &payment_id).await;
    system.notifications(&order_id, 7).await;

    // The pay trace: one root (payment's request), every span's parent in it, and the work of
    // every service under it, down to the pushes and mails of the stages it caused
    // (readyToShip, shipping; the payment-made stage too).
    let everyone = ["payment", "order", "delivery", "notification", "mobile", "email"];
    let pay = jaeger
        .whole_trace("payment", "POST /payments/{payment_id}/pay", &order_id, |t| {
            everyone.iter().all(|s| t.services().contains(s)) && t.count("email") >= 3 && t.count("mobile") >= 3
        })
        .await;
    let roots = pay.roots();
    assert_eq!(roots.len(), 1, "one root in the pay trace: {roots:?}");
    assert_eq!((roots[0].service.as_str(), roots[0].name.as_str()), ("payment", "POST /payments/{payment_id}/pay"));
    let by_service: BTreeMap<&str, usize> = everyone.iter().map(|s| (*s, pay.count(s))).collect();
    println!("pay trace {}: {} spans {by_service:?}\n{}", pay.id, pay.spans.len(), pay.tree());
    // Its picture, for the docs (docs/observability.md shows it).
    let picture = std::env::var("SCREENSHOTS_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/screenshots").to_owned());
    std::fs::write(format!("{picture}/trace.svg"), pay.waterfall()).expect("the trace's picture is written");
    // The push and the mail are each under a notification span, which is under a record.
    for (receiver, name) in [("mobile", "push stored"), ("email", "smtp BDAT")] {
        let received: Vec<&Span> = pay.spans.iter().filter(|s| s.service == receiver && s.name == name).collect();
        assert!(!received.is_empty(), "no {name} span of {receiver} in the pay trace");
        for span in received {
            let parent = pay.spans.iter().find(|p| Some(&p.id) == span.parent.as_ref()).expect("its parent is there");
            assert_eq!(parent.service, "notification", "{receiver}'s {name} comes under notification: {parent:?}");
        }
    }

    // Every action of the order is the root of a trace found by the order id.
    let mut actions = BTreeSet::new();
    for (service, action) in [
        ("order", "POST /orders"),
        ("payment", "POST /payments/{payment_id}/pay"),
        ("delivery", "POST /deliveries/{order_id}/shipped"),
        ("delivery", "POST /deliveries/{order_id}/delivered"),
    ] {
        // It caused a notification.
        let trace = jaeger.whole_trace(service, action, &order_id, |t| t.services().contains("notification")).await;
        actions.insert(trace.id);
    }
    assert_eq!(actions.len(), 4, "four actions, four traces");

    // Each audit record names the trace of the action that caused it.
    system.wait_until_consumed().await;
    let (code, records) = system.get_as(system.logging, &format!("/logs?orderId={order_id}"), &system.operator()).await;
    assert_eq!(code, 200, "{records}");
    let records = records.as_array().expect("a list of audit records");
    let traced: BTreeMap<&str, Vec<&str>> = records.iter().fold(BTreeMap::new(), |mut by_trace, record| {
        let trace = record["traceId"].as_str().unwrap_or_else(|| panic!("an audit record without a trace: {record}"));
        by_trace.entry(trace).or_default().push(record["action"].as_str().unwrap());
        by_trace
    });
    println!("audit records by trace: {traced:?}");
    let found: BTreeSet<&str> = traced.keys().copied().collect();
    assert_eq!(found, actions.iter().map(String::as_str).collect(), "the audit records' traces are the actions'");
    assert!(traced[pay.id.as_str()].len() >= 3, "the pay caused several audit records: {traced:?}");

    // A log line written in a span names its trace and span: notification's line for each
    // push and mail of the pay trace, with a span of that trace.
    let lines = std::fs::read_to_string(&log).expect("shop up's log (run without TEST_LOG)");
    let notified: Vec<Value> = lines
        .lines()
        .filter_map(|line| line.split_once(" | ").map(|(_, json)| json))
        .filter_map(|json| serde_json::from_str::<Value>(json).ok())
        .filter(|line| {
            line["fields"]["message"] == "Customer notified" && line["fields"]["order_id"] == order_id.as_str()
        })
        .collect();
    assert_eq!(notified.len(), 14, "a line for each push and mail of the order");
    let ids: BTreeSet<&str> = pay.spans.iter().map(|s| s.id.as_str()).collect();
    let of_pay: Vec<&Value> = notified.iter().filter(|l| l["openTelemetry"]["traceId"] == pay.id.as_str()).collect();
    assert_eq!(of_pay.len(), 6, "3 pushes and 3 mails of the pay trace: {notified:?}");
    for line in of_pay {
        let span = line["openTelemetry"]["spanId"].as_str().expect("a span id");
        assert!(ids.contains(span), "the line's span is a span of the trace: {line}");
    }
}
