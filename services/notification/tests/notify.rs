//! The notification service on its own, in this process: built with `Service::build` on port 0
//! with a fresh SQLite database, a real (embedded) broker, and the real receivers it talks to,
//! mobile (pushes over HTTP, with notification's service token) and email (mail over SMTP,
//! with SMTP AUTH), each built the same way (`shop_testkit`). Stage events are produced onto
//! their topics as order, payment and delivery would; what arrives is read back through
//! mobile's and the mailbox's own APIs, as the customer and the operator read it.

use serde_json::Value;
use shop_events::{Customer, Event, LineItem, Money, OrderCreated, OrderId, PaymentId, RawEnvelope, Stage};
use shop_platform::auth::Role;
use shop_testkit::{config, free_port, wait_until, System};

/// notification, mobile and email, running on a fresh broker with fresh databases.
struct Notify {
    system: System,
    mobile: u16,
    email: u16,
    notification: u16,
}

impl Notify {
    async fn start() -> Notify {
        let mut system = System::start().await;

        let mobile = shop_mobile::Service::build(config(&system.common_args())).await.unwrap();
        let mobile = system.run(mobile.port(), |stop| mobile.run_until_stopped(stop));

        let mut email_args = system.common_args();
        email_args.extend(["--smtp-port".to_owned(), free_port().to_string()]);
        let email = shop_email::Service::build(config(&email_args)).await.unwrap();
        let smtp_port = email.smtp_port().to_string();
        let email = system.run(email.port(), |stop| email.run_until_stopped(stop));

        let mobile_url = format!("http://127.0.0.1:{mobile}");
        let args =
            system.kafka_args(&["--mobile-url", &mobile_url, "--smtp-host", "127.0.0.1", "--smtp-port", &smtp_port]);
        let notification = shop_notification::Service::build(config(&args)).await.unwrap();
        let notification = system.run(notification.port(), |stop| notification.run_until_stopped(stop));

        Notify { system, mobile, email, notification }
    }

    /// The pushes and mails about `order` as its customer reads them, once there are
    /// `count` of each; fails after the deadline with what there was.
    async fn wait_for(&self, order: OrderId, email: &str, count: usize) -> (Vec<Value>, Vec<Value>) {
        let token = self.system.keys().customer(email);
        let token = Some(token.as_str());
        let (pushes, mails) = (format!("/api/notifications?orderId={order}"), format!("/api/emails?orderId={order}"));
        let (pushes, mails) = (pushes.as_str(), mails.as_str());
        wait_until(&format!("{count} pushes and {count} mails of order {order}"), || async move {
            let list = |v: Value| v.as_array().cloned().unwrap_or_default();
            let pushes = list(self.system.get(self.mobile, pushes, token).await.body);
            let mails = list(self.system.get(self.email, mails, token).await.body);
            if pushes.len() >= count && mails.len() >= count {
                Ok((pushes, mails))
            } else {
                Err(format!("{} pushes and {} mails of {count}", pushes.len(), mails.len()))
            }
        })
        .await
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
    let notify = Notify::start().await;
    let system = &notify.system;
    let order = OrderId::new();
    let envelope = created(order, "ada@example.com");
    system.publish(&envelope).await;

    let (pushes, mails) = notify.wait_for(order, "ada@example.com", 1).await;
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
    notify.wait_for(later, "ada@example.com", 1).await;
    let (pushes, mails) = notify.wait_for(order, "ada@example.com", 1).await;
    assert_eq!((pushes.len(), mails.len()), (1, 1), "a redelivered event is told once");

    // Nobody else reads them: another customer sees nothing of the order.
    let grace = system.keys().customer("grace@example.com");
    let theirs = system.get(notify.mobile, &format!("/api/notifications?orderId={order}"), Some(&grace)).await;
    assert_eq!(theirs.body, Value::Array(vec![]), "another customer's pushes");
    let theirs = system.get(notify.email, &format!("/api/emails?orderId={order}"), Some(&grace)).await;
    assert_eq!(theirs.body, Value::Array(vec![]), "another customer's mail");

    // The operator's metrics count what was sent: two of each.
    let operator = system.keys().staff(Role::Operator);
    let metrics = system.get(notify.notification, "/metrics", Some(&operator)).await;
    assert_eq!(metrics.status, 200);
    let text = metrics.body.as_str().unwrap_or_default();
    assert!(text.contains("shop_notifications_sent_total{channel=\"push\",outcome=\"sent\"} 2"), "{metrics:?}");
    assert!(text.contains("shop_notifications_sent_total{channel=\"email\",outcome=\"sent\"} 2"), "{metrics:?}");
    // Every service counts its HTTP requests by route and status (the scrape before included).
    let again = system.get(notify.notification, "/metrics", Some(&operator)).await;
    let text = again.body.as_str().unwrap_or_default();
    let scraped = "shop_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"200\"} 1";
    assert!(text.contains(scraped), "{again:?}");
    assert!(
        text.contains("shop_http_request_duration_seconds_count{method=\"GET\",route=\"/metrics\"} 1"),
        "{again:?}"
    );
    let anonymous = system.get(notify.notification, "/metrics", None).await;
    assert_eq!(anonymous.status, 401, "metrics are the operator's");
    notify.system.stop().await;
}

/// International addresses (SMTPUTF8 end to end) and names with the punctuation mail headers
/// reserve are delivered, not set aside nor retried for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_international_address_and_a_name_with_punctuation_get_their_push_and_mail() {
    let notify = Notify::start().await;
    let system = &notify.system;
    let mut orders = Vec::new();
    for (name, email) in
        [("Smith (Jr): \"Foo\"; [Bar] @ \\", "user@münchen.de"), ("Zoë Ünal", "δοκιμή@παράδειγμα.δοκιμή")]
    {
        let order = OrderId::new();
        let mut envelope = created(order, email);
        let Ok(Event::OrderCreated(mut event)) = envelope.event() else { unreachable!() };
        event.customer = Customer::parse(name, email, "+49 89 1234567").unwrap();
        envelope = RawEnvelope::wrap(order, "order", &Event::OrderCreated(event));
        system.publish(&envelope).await;
        orders.push((order, name, email));
    }
    for (order, name, email) in orders {
        let (pushes, mails) = notify.wait_for(order, email, 1).await;
        assert_eq!(pushes[0]["to"], email, "{name}");
        assert_eq!(mails[0]["to"], email, "{name}: the envelope's recipient, as the customer wrote it");
        assert_eq!(mails[0]["subject"], pushes[0]["title"]);
    }
    notify.system.stop().await;
}

/// While the mailbox is down, notification says what it waits for at `/readyz` (still ready:
/// pushes go on); once the mailbox is up, the mail goes out and the wait is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_mailbox_is_down_readiness_says_so_and_the_mail_goes_out_once_it_is_back() {
    let mut system = System::start().await;
    let mobile = shop_mobile::Service::build(config(&system.common_args())).await.unwrap();
    let mobile = system.run(mobile.port(), |stop| mobile.run_until_stopped(stop));
    let smtp_port = free_port().to_string();
    let mobile_url = format!("http://127.0.0.1:{mobile}");
    let args = system.kafka_args(&["--mobile-url", &mobile_url, "--smtp-host", "127.0.0.1", "--smtp-port", &smtp_port]);
    let notification = shop_notification::Service::build(config(&args)).await.unwrap();
    let notification = system.run(notification.port(), |stop| notification.run_until_stopped(stop));

    let order = OrderId::new();
    system.publish(&created(order, "ada@example.com")).await;
    let waiting = wait_until("notification to say it waits for the mailbox", || async {
        let ready = system.get(notification, "/readyz", None).await;
        match ready.body["waiting"].as_array() {
            Some(waiting) if ready.status == 200 && !waiting.is_empty() => Ok(waiting.clone()),
            _ => Err(ready),
        }
    })
    .await;
    assert_eq!(waiting[0]["group"], "notification-email", "{waiting:?}");
    assert_eq!(waiting[0]["topic"], "orders-created", "{waiting:?}");
    assert_eq!(waiting[0]["waitingFor"], "mailbox", "{waiting:?}");
    assert!(waiting[0].get("detail").is_none(), "the failure's words are the operator's only: {waiting:?}");
    let operator = system.keys().staff(Role::Operator);
    let detailed = system.get(notification, "/readyz", Some(&operator)).await;
    let waits = detailed.body["waiting"].as_array().cloned().unwrap_or_default();
    assert!(
        waits.iter().any(|w| w["detail"].as_str().is_some_and(|detail| detail.contains("unreachable"))),
        "the operator gets the failure's words: {waits:?}"
    );
    assert!(waiting[0]["sinceSeconds"].is_u64());
    let ada = system.keys().customer("ada@example.com");
    one_listed(&system, mobile, &format!("/api/notifications?orderId={order}"), &ada, "the push, meanwhile").await;

    let mut email_args = system.common_args();
    email_args.extend(["--smtp-port".to_owned(), smtp_port]);
    let email = shop_email::Service::build(config(&email_args)).await.unwrap();
    let email = system.run(email.port(), |stop| email.run_until_stopped(stop));
    one_listed(&system, email, &format!("/api/emails?orderId={order}"), &ada, "the mail, once the mailbox is up").await;
    let ready = system.get(notification, "/readyz", None).await;
    assert_eq!((ready.status, &ready.body["waiting"]), (200, &serde_json::json!([])), "{ready:?}");
    system.stop().await;
}

/// Waits until `path` on `port` lists one item for the caller `token`.
async fn one_listed(system: &System, port: u16, path: &str, token: &str, what: &str) {
    wait_until(what, || async {
        let listed = system.get(port, path, Some(token)).await;
        if listed.body.as_array().is_some_and(|items| items.len() == 1) {
            Ok(())
        } else {
            Err(listed)
        }
    })
    .await
}
