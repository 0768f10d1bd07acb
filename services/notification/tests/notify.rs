//! The notification service on its own, in this process: built with `Service::build` on port 0
//! with a fresh SQLite database, a real (embedded) broker, and the real receivers it talks to,
//! mobile (pushes over HTTP, with notification's service token) and email (mail over SMTP,
//! with SMTP AUTH), each built the same way. Stage events are produced onto their topics as
//! order, payment and delivery would; what arrives is read back through mobile's and the
//! mailbox's own APIs, as the customer and the operator read it.

use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::Value;
use shop_embedded_broker::EmbeddedBroker;
use shop_events::{Customer, Event, LineItem, Money, OrderCreated, OrderId, PaymentId, RawEnvelope, Stage, Topic};
use shop_platform::auth::{Role, TestKeys};
use shop_platform::{kafka, Shutdown};

const DEADLINE: Duration = Duration::from_secs(60);

/// Any service's configuration, parsed from its flags as `shop serve` parses them.
#[derive(Parser)]
struct Flags<C: clap::Args> {
    #[command(flatten)]
    config: C,
}

fn config<C: clap::Args>(args: &[String]) -> C {
    Flags::<C>::parse_from(std::iter::once("test".to_owned()).chain(args.iter().cloned())).config
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// notification, mobile and email, running on a fresh broker with fresh databases.
struct System {
    keys: TestKeys,
    _data: tempfile::TempDir,
    broker: EmbeddedBroker,
    services: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    brokers: String,
    mobile: u16,
    email: u16,
    notification: u16,
    shutdown: Shutdown,
    http: reqwest::Client,
}

impl System {
    async fn start() -> System {
        let keys = TestKeys::new();
        let data = tempfile::tempdir().unwrap();
        let broker = EmbeddedBroker::start("127.0.0.1", "127.0.0.1", free_port()).await.unwrap();
        let brokers = broker.bootstrap_servers().to_owned();
        let topics: Vec<String> = Topic::ALL.iter().map(|t| t.name().to_owned()).collect();
        kafka::create_topics(&brokers, &topics, 3, 1).await.unwrap();
        let common = |port: u16| {
            vec![
                "--http-host".to_owned(),
                "127.0.0.1".to_owned(),
                "--http-port".to_owned(),
                port.to_string(),
                "--data-dir".to_owned(),
                data.path().display().to_string(),
                "--secrets-dir".to_owned(),
                keys.secrets().dir().display().to_string(),
            ]
        };
        let shutdown = Shutdown::new();

        let mobile = shop_mobile::Service::build(config(&common(0))).await.unwrap();
        let mobile_port = mobile.port();
        let mut services = vec![tokio::spawn(mobile.run_until_stopped(shutdown.clone()))];

        let mut email_args = common(0);
        email_args.extend(["--smtp-port".to_owned(), free_port().to_string()]);
        let email = shop_email::Service::build(config(&email_args)).await.unwrap();
        let (email_port, smtp_port) = (email.port(), email.smtp_port());
        services.push(tokio::spawn(email.run_until_stopped(shutdown.clone())));

        let mut args = common(0);
        args.extend([
            "--kafka-brokers".to_owned(),
            brokers.clone(),
            "--mobile-url".to_owned(),
            format!("http://127.0.0.1:{mobile_port}"),
            "--smtp-host".to_owned(),
            "127.0.0.1".to_owned(),
            "--smtp-port".to_owned(),
            smtp_port.to_string(),
        ]);
        let notification = shop_notification::Service::build(config(&args)).await.unwrap();
        let notification_port = notification.port();
        services.push(tokio::spawn(notification.run_until_stopped(shutdown.clone())));

        System {
            keys,
            _data: data,
            broker,
            services,
            brokers,
            mobile: mobile_port,
            email: email_port,
            notification: notification_port,
            shutdown,
            http: reqwest::Client::new(),
        }
    }

    /// Produces `event` about `order_id` onto its topic as its service's relay would; returns
    /// the envelope, to produce it again.
    async fn publish(&self, envelope: &RawEnvelope) {
        let producer = kafka::producer(&self.brokers, "test-producer").unwrap();
        let payload = serde_json::to_string(envelope).unwrap();
        let id = envelope.id.to_string();
        let key = envelope.order_id.to_string();
        let topic = envelope.event_type.topic().name();
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&payload)
            .headers(OwnedHeaders::new().insert(Header { key: "event-id", value: Some(&id) }));
        producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
    }

    async fn get(&self, port: u16, path: &str, token: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("http://127.0.0.1:{port}{path}"))
            .header("authorization", token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The pushes and mails about `order` as its customer reads them, once there are
    /// `count` of each; fails after the deadline with what there was.
    async fn wait_for(&self, order: OrderId, email: &str, count: usize) -> (Vec<Value>, Vec<Value>) {
        let token = self.keys.customer(email);
        let started = Instant::now();
        loop {
            let (_, pushes) = self.get(self.mobile, &format!("/api/notifications?orderId={order}"), &token).await;
            let (_, mails) = self.get(self.email, &format!("/api/emails?orderId={order}"), &token).await;
            let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
            let (pushes, mails) = (list(&pushes), list(&mails));
            if pushes.len() >= count && mails.len() >= count {
                return (pushes, mails);
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{} pushes and {} mails of {count} within {DEADLINE:?}",
                pushes.len(),
                mails.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl System {
    /// Stops the services as `shop up` does, then the broker they were using.
    async fn stop(self) {
        self.shutdown.trigger();
        for service in self.services {
            service.await.expect("the service task").expect("the service stops cleanly");
        }
        self.broker.stop();
    }
}

fn created(order: OrderId, email: &str) -> RawEnvelope {
    let event = Event::OrderCreated(OrderCreated {
        customer: Customer::parse("Ada Lovelace", email, "+44 20 7946 0000").unwrap(),
        items: vec![LineItem { sku: "TEA-01".into(), quantity: 2, unit_price: Money::from_cents(1250).unwrap() }],
        total: Money::from_cents(2500).unwrap(),
        payment_id: PaymentId::new(),
        payment_url: "http://localhost:8082/pay/x?secret=y".into(),
    });
    RawEnvelope::wrap(order, "order", &event)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_event_becomes_one_push_and_one_mail_for_its_customer_only_even_when_redelivered() {
    let system = System::start().await;
    let order = OrderId::new();
    let envelope = created(order, "ada@example.com");
    system.publish(&envelope).await;

    let (pushes, mails) = system.wait_for(order, "ada@example.com", 1).await;
    let push = &pushes[0];
    assert_eq!(push["orderId"], order.to_string());
    assert_eq!(push["to"], "ada@example.com");
    assert_eq!(push["stage"], Stage::Created.as_str());
    assert_eq!(push["title"], format!("Order {} received", order.short()));
    let mail = &mails[0];
    assert_eq!(mail["subject"], push["title"], "the mail and the push tell the same");
    assert!(mail["to"].to_string().contains("ada@example.com"), "{mail}");

    // The same record again (a redelivery after a crash, a producer's retry): nothing new.
    system.publish(&envelope).await;
    // A second order's event goes through after it, on the same topic: by then the
    // redelivery was handled.
    let later = OrderId::new();
    system.publish(&created(later, "ada@example.com")).await;
    system.wait_for(later, "ada@example.com", 1).await;
    let (pushes, mails) = system.wait_for(order, "ada@example.com", 1).await;
    assert_eq!((pushes.len(), mails.len()), (1, 1), "a redelivered event is told once");

    // Nobody else reads them: another customer sees nothing of the order.
    let grace = system.keys.customer("grace@example.com");
    let (_, theirs) = system.get(system.mobile, &format!("/api/notifications?orderId={order}"), &grace).await;
    assert_eq!(theirs, Value::Array(vec![]), "another customer's pushes");
    let (_, theirs) = system.get(system.email, &format!("/api/emails?orderId={order}"), &grace).await;
    assert_eq!(theirs, Value::Array(vec![]), "another customer's mail");

    // The operator's metrics count what was sent: two of each.
    let operator = system.keys.staff(Role::Operator);
    let metrics = system
        .http
        .get(format!("http://127.0.0.1:{}/metrics", system.notification))
        .header("authorization", &operator)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("shop_notifications_sent_total{channel=\"push\"} 2"), "{text}");
    assert!(text.contains("shop_notifications_sent_total{channel=\"email\"} 2"), "{text}");
    let anonymous = system.http.get(format!("http://127.0.0.1:{}/metrics", system.notification)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401, "metrics are the operator's");
    system.stop().await;
}
