//! The payment service on its own, in this process (`shop_testkit`): built with
//! `Service::build` on port 0 with a fresh SQLite database and the embedded broker, and
//! called as its clients call it — order opens payments with its service token, the customer
//! reads and pays theirs with their token or with the secret of the payment's link. What it
//! publishes is read back from `payments-created`, `payments-made` and the audit trail
//! (`logging-events`).

use serde_json::Value;
use shop_events::api::OpenPayment;
use shop_events::{Customer, Event, EventType, Money, OrderId, RawEnvelope, Topic};
use shop_platform::auth::Role;
use shop_testkit::{config, System};

struct Payments {
    system: System,
    port: u16,
}

impl Payments {
    async fn start() -> Payments {
        let mut system = System::start().await;
        let payment = shop_payment::Service::build(config(&system.kafka_args(&[]))).await.unwrap();
        let port = system.run(payment.port(), |stop| payment.run_until_stopped(stop));
        Payments { system, port }
    }

    /// Order asking for the payment of `order`, as its payment client does.
    async fn open(&self, order: OrderId, email: &str, cents: i64) -> shop_testkit::Reply {
        let order_token = self.system.keys().service("order", "payment");
        self.open_as(Some(&order_token), order, email, cents).await
    }

    async fn open_as(&self, token: Option<&str>, order: OrderId, email: &str, cents: i64) -> shop_testkit::Reply {
        let body = serde_json::to_value(OpenPayment {
            order_id: order,
            amount: Money::from_cents(cents).unwrap(),
            customer: Customer::parse("Ada Lovelace", email, "+44 20 7946 0000").unwrap(),
        })
        .unwrap();
        self.system.post(self.port, "/payments", token, Some(&body)).await
    }

    async fn pay_with_secret(&self, payment_id: &str, secret: &str) -> shop_testkit::Reply {
        let body = serde_json::json!({ "secret": secret });
        self.system.post(self.port, &format!("/payments/{payment_id}/pay"), None, Some(&body)).await
    }
}

/// The secret a payment link carries (`…/pay/{id}?secret=…`).
fn secret_of(payment_url: &Value) -> String {
    let url = payment_url.as_str().expect("a payment URL");
    url.split_once("?secret=").map(|(_, secret)| secret.to_owned()).unwrap_or_else(|| panic!("no secret in {url}"))
}

/// The envelopes of `order` among `envelopes`.
fn of(order: OrderId, envelopes: &[RawEnvelope]) -> Vec<&RawEnvelope> {
    envelopes.iter().filter(|e| e.order_id == order).collect()
}

/// The audit actions of `order`, in the order they were published.
fn actions(order: OrderId, trail: &[RawEnvelope]) -> Vec<String> {
    of(order, trail)
        .into_iter()
        .map(|e| match e.event().unwrap() {
            Event::AuditRecorded(audit) => audit.action,
            other => panic!("not an audit record: {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_opens_one_payment_per_order_and_only_its_customer_sees_it() {
    let payments = Payments::start().await;
    let system = &payments.system;
    let keys = system.keys();
    let order = OrderId::new();

    // Only the order service opens payments: nobody else, not even another service.
    let anonymous = payments.open_as(None, order, "ada@example.com", 2500).await;
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    assert!(anonymous.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "{anonymous:?}");
    let customer = payments.open_as(Some(&keys.customer("ada@example.com")), order, "ada@example.com", 2500).await;
    assert_eq!(customer.status, 403, "{customer:?}");
    let notification = keys.service("notification", "payment");
    let other_service = payments.open_as(Some(&notification), order, "ada@example.com", 2500).await;
    assert_eq!(other_service.status, 403, "{other_service:?}");

    let opened = payments.open(order, "ada@example.com", 2500).await;
    assert_eq!(opened.status, 201, "{opened:?}");
    let payment = opened.body;
    let payment_id = payment["paymentId"].as_str().expect("a payment id").to_owned();
    assert_eq!(payment["orderId"], order.to_string());
    assert_eq!(payment["status"], "created");
    assert_eq!(serde_json::from_value::<Money>(payment["amount"].clone()).unwrap(), Money::from_cents(2500).unwrap());
    assert!(payment["paidAt"].is_null(), "{payment}");
    let link = payment["paymentUrl"].as_str().unwrap();
    assert!(link.starts_with(&format!("http://localhost:8082/pay/{payment_id}?secret=")), "{link}");

    // Asked again (order retrying after a timeout): the same payment, and no second one.
    let again = payments.open(order, "ada@example.com", 2500).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.body["paymentId"], payment_id.as_str());
    assert_eq!(again.body["paymentUrl"], payment["paymentUrl"], "the same link, recomputed");
    // Asked again with another amount: refused, the order already has its payment.
    let other_amount = payments.open(order, "ada@example.com", 9900).await;
    assert_eq!(other_amount.status, 409, "{other_amount:?}");

    // Its customer sees it; so does order; another customer gets a 404, as for no payment.
    let path = format!("/payments/{payment_id}");
    let owner = system.get(payments.port, &path, Some(&keys.customer("ada@example.com"))).await;
    assert_eq!((owner.status, &owner.body), (200, &payment), "the owner reads what was opened");
    let by_order = system.get(payments.port, &path, Some(&keys.service("order", "payment"))).await;
    assert_eq!(by_order.status, 200, "{by_order:?}");
    let grace = system.get(payments.port, &path, Some(&keys.customer("grace@example.com"))).await;
    assert_eq!(grace.status, 404, "{grace:?}");
    let unknown = system.get(payments.port, &format!("/payments/{}", shop_events::PaymentId::new()), None).await;
    assert_eq!(unknown.status, 401, "{unknown:?}");
    let courier = system.get(payments.port, &path, Some(&keys.staff(Role::Courier))).await;
    assert_eq!(courier.status, 403, "{courier:?}");
    assert_eq!(system.get(payments.port, &path, None).await.status, 401);

    // One payments-created for the order, telling its link, keyed by the order.
    let created = system.wait_for_event(EventType::PaymentCreated, order).await;
    let created = of(order, &created);
    assert_eq!(created.len(), 1, "one payments-created for one payment: {created:?}");
    assert_eq!(created[0].source, "payment");
    let Event::PaymentCreated(event) = created[0].event().unwrap() else { panic!("{:?}", created[0]) };
    assert_eq!(event.payment_id.to_string(), payment_id);
    assert_eq!(event.payment_url, link, "the link the customer is told is the one that pays");
    assert_eq!(event.amount, Money::from_cents(2500).unwrap());
    assert_eq!(event.customer.email(), "ada@example.com");

    // The audit trail has one opening: the repeated and the refused requests left nothing.
    let trail = system.wait_for_event(EventType::AuditRecorded, order).await;
    assert_eq!(actions(order, &trail), ["payment.created"]);
    payments.system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_is_paid_once_with_its_links_secret_or_by_its_customer() {
    let payments = Payments::start().await;
    let system = &payments.system;
    let keys = system.keys();
    let (order, later) = (OrderId::new(), OrderId::new());
    let opened = payments.open(order, "ada@example.com", 2500).await;
    assert_eq!(opened.status, 201, "{opened:?}");
    let payment_id = opened.body["paymentId"].as_str().unwrap().to_owned();
    let secret = secret_of(&opened.body["paymentUrl"]);
    let other = payments.open(later, "grace@example.com", 990).await;
    assert_eq!(other.status, 201, "{other:?}");
    let other_id = other.body["paymentId"].as_str().unwrap().to_owned();

    // A wrong secret, or another payment's, opens nothing: a 404, as for no payment.
    for wrong in ["not-the-secret", &secret_of(&other.body["paymentUrl"])] {
        let paid = payments.pay_with_secret(&payment_id, wrong).await;
        assert_eq!(paid.status, 404, "{paid:?}");
        let page = system.get(payments.port, &format!("/pay/{payment_id}?secret={wrong}"), None).await;
        assert_eq!(page.status, 404, "{page:?}");
    }
    // Neither a secret nor a token: sign in first.
    let nothing = system.post(payments.port, &format!("/payments/{payment_id}/pay"), None, None).await;
    assert_eq!(nothing.status, 401, "{nothing:?}");
    let page = system.get(payments.port, &format!("/pay/{payment_id}?secret={secret}"), None).await;
    assert_eq!(page.status, 200, "the link opens its page: {page:?}");

    // The link's holder pays, once; paying again is a 409.
    let paid = payments.pay_with_secret(&payment_id, &secret).await;
    assert_eq!(paid.status, 200, "{paid:?}");
    assert_eq!(paid.body["status"], "made");
    assert!(paid.body["paidAt"].is_string(), "{paid:?}");
    let again = payments.pay_with_secret(&payment_id, &secret).await;
    assert_eq!(again.status, 409, "{again:?}");
    let owner = system
        .post(payments.port, &format!("/payments/{payment_id}/pay"), Some(&keys.customer("ada@example.com")), None)
        .await;
    assert_eq!(owner.status, 409, "paid is paid, whoever asks: {owner:?}");
    let read =
        system.get(payments.port, &format!("/payments/{payment_id}"), Some(&keys.customer("ada@example.com"))).await;
    assert_eq!(read.body["status"], "made", "{read:?}");

    // The other payment: not by another customer nor the courier; by its customer's token.
    let pay_other = format!("/payments/{other_id}/pay");
    let by_ada = system.post(payments.port, &pay_other, Some(&keys.customer("ada@example.com")), None).await;
    assert_eq!(by_ada.status, 404, "{by_ada:?}");
    let by_courier = system.post(payments.port, &pay_other, Some(&keys.staff(Role::Courier)), None).await;
    assert_eq!(by_courier.status, 403, "{by_courier:?}");
    let by_grace = system.post(payments.port, &pay_other, Some(&keys.customer("grace@example.com")), None).await;
    assert_eq!(by_grace.status, 200, "{by_grace:?}");

    // payments-made once for the first order, by the time the later one's is there (the
    // relay publishes in the order things happened).
    let made = system.wait_for_event(EventType::PaymentMade, later).await;
    let ours = of(order, &made);
    assert_eq!(ours.len(), 1, "paid once, published once: {ours:?}");
    let Event::PaymentMade(event) = ours[0].event().unwrap() else { panic!("{:?}", ours[0]) };
    assert_eq!(event.payment_id.to_string(), payment_id);
    assert_eq!(event.amount, Money::from_cents(2500).unwrap());
    assert_eq!(event.customer.email(), "ada@example.com");
    assert_eq!(of(later, &made).len(), 1);
    assert_eq!(made.len(), 2, "nothing else was paid: {made:?}");

    // The audit trail of each order, in order: opened, then paid, and nothing for the refusals.
    let trail = system.read_until(Topic::LoggingEvents.name(), |e| {
        e.order_id == later && matches!(e.event(), Ok(Event::AuditRecorded(a)) if a.action == "payment.made")
    });
    let trail = trail.await;
    assert_eq!(actions(order, &trail), ["payment.created", "payment.made"]);
    assert_eq!(actions(later, &trail), ["payment.created", "payment.made"]);
    payments.system.stop().await;
}
