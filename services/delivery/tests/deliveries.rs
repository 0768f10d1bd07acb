//! The delivery service on its own, in this process (`shop_testkit`): built with
//! `Service::build` on port 0 with a fresh SQLite database and the embedded broker. Orders
//! ready to ship are produced onto `orders-ready-to-ship` as order's relay would; the courier
//! works through delivery's API with the courier's token; what delivery publishes is read
//! back from `delivery-shipping`, `delivery-shipped`, `delivery-delivered` and the audit trail
//! (`logging-events`).

use serde_json::Value;
use shop_events::{
    group, Customer, Event, EventType, LineItem, Money, OrderId, OrderReadyToShip, PaymentId, RawEnvelope, Topic,
};
use shop_platform::auth::Role;
use shop_testkit::{config, wait_until, Reply, System};

struct Deliveries {
    system: System,
    port: u16,
    courier: String,
}

impl Deliveries {
    async fn start() -> Deliveries {
        let mut system = System::start().await;
        let delivery = shop_delivery::Service::build(config(&system.kafka_args(&[]))).await.unwrap();
        let port = system.run(delivery.port(), |stop| delivery.run_until_stopped(stop));
        let courier = system.keys().staff(Role::Courier);
        Deliveries { system, port, courier }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.system.get(self.port, path, token).await
    }

    /// The courier marking the delivery of `order` `action` (`shipped`, `delivered`).
    async fn mark(&self, order: OrderId, action: &str, token: Option<&str>) -> Reply {
        self.system.post(self.port, &format!("/deliveries/{order}/{action}"), token, None).await
    }

    /// The delivery of `order` as the courier's list shows it, once it is there.
    async fn wait_for_delivery(&self, order: OrderId) -> Value {
        wait_until(&format!("a delivery for order {order}"), || async {
            let list = self.get("/deliveries", Some(&self.courier)).await;
            let found = list.body.as_array().and_then(|l| l.iter().find(|d| d["orderId"] == order.to_string()));
            found.cloned().ok_or(list)
        })
        .await
    }

    /// Delivery's audit trail, once it tells `action` of `order`.
    async fn trail_until(&self, order: OrderId, action: &str) -> Vec<RawEnvelope> {
        let trail = self.system.read_until(Topic::LoggingEvents.name(), |e| {
            e.order_id == order && matches!(e.event(), Ok(Event::AuditRecorded(a)) if a.action == action)
        });
        trail.await
    }
}

/// What order publishes once `order` is paid.
fn ready(order: OrderId, email: &str) -> RawEnvelope {
    let event = Event::OrderReadyToShip(OrderReadyToShip {
        customer: Customer::parse("Ada Lovelace", email, "+44 20 7946 0000").unwrap(),
        items: vec![LineItem { sku: "TEA-01".into(), quantity: 2, unit_price: Money::from_cents(1250).unwrap() }],
        total: Money::from_cents(2500).unwrap(),
        payment_id: PaymentId::new(),
    });
    RawEnvelope::wrap(order, "order", &event)
}

/// The audit actions of `order`, in the order they were published.
fn actions(order: OrderId, trail: &[RawEnvelope]) -> Vec<String> {
    trail
        .iter()
        .filter(|e| e.order_id == order)
        .map(|e| match e.event().unwrap() {
            Event::AuditRecorded(audit) => audit.action,
            other => panic!("not an audit record: {other:?}"),
        })
        .collect()
}

/// The records of `order` among `envelopes`.
fn of(order: OrderId, envelopes: &[RawEnvelope]) -> Vec<&RawEnvelope> {
    envelopes.iter().filter(|e| e.order_id == order).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_ready_to_ship_gets_one_delivery_that_only_the_courier_sees() {
    let deliveries = Deliveries::start().await;
    let system = &deliveries.system;
    let keys = system.keys();
    let ada = keys.customer("ada@example.com");

    // The deliveries are the courier's: nobody else's.
    assert_eq!(deliveries.get("/deliveries", None).await.status, 401);
    let customer = deliveries.get("/deliveries", Some(&ada)).await;
    assert_eq!(customer.status, 403, "{customer:?}");
    let operator = deliveries.get("/deliveries", Some(&keys.staff(Role::Operator))).await;
    assert_eq!(operator.status, 403, "{operator:?}");
    let page = deliveries.get("/courier", None).await;
    assert_eq!(page.status, 200, "the courier's page is a static shell anyone may load: {page:?}");

    let order = OrderId::new();
    let envelope = ready(order, "ada@example.com");
    system.publish(&envelope).await;
    let delivery = deliveries.wait_for_delivery(order).await;
    assert_eq!(delivery["status"], "shipping", "a delivery opens shipping: {delivery}");
    assert_eq!(delivery["customer"]["email"], "ada@example.com");
    assert_eq!(delivery["items"][0]["sku"], "TEA-01");
    let delivery_id = delivery["deliveryId"].as_str().expect("a delivery id").to_owned();
    assert!(shop_events::DeliveryId::parse(&delivery_id).is_ok(), "{delivery_id}");

    // One delivery: its own path for the courier; a 403 for the customer, a 404 for no order.
    let path = format!("/deliveries/{order}");
    let read = deliveries.get(&path, Some(&deliveries.courier)).await;
    assert_eq!((read.status, &read.body), (200, &delivery), "{read:?}");
    assert_eq!(deliveries.get(&path, Some(&ada)).await.status, 403);
    assert_eq!(deliveries.get(&path, None).await.status, 401);
    let unknown = deliveries.get(&format!("/deliveries/{}", OrderId::new()), Some(&deliveries.courier)).await;
    assert_eq!(unknown.status, 404, "{unknown:?}");

    // The same record again, and another ready-to-ship of the same order: no second delivery.
    system.publish(&envelope).await;
    system.publish(&ready(order, "ada@example.com")).await;
    system.wait_until_consumed(group::DELIVERY_SERVICE).await;
    let list = deliveries.get("/deliveries", Some(&deliveries.courier)).await;
    assert_eq!(list.body.as_array().map(Vec::len), Some(1), "one delivery per order: {list:?}");
    assert_eq!(deliveries.get(&path, Some(&deliveries.courier)).await.body, delivery, "unchanged");

    // delivery-shipping once, naming the delivery; the trail says it was opened once, and the
    // courier's step after the redeliveries comes next.
    let shipped = deliveries.mark(order, "shipped", Some(&deliveries.courier)).await;
    assert_eq!(shipped.status, 202, "{shipped:?}");
    let trail = deliveries.trail_until(order, "delivery.shipped").await;
    assert_eq!(actions(order, &trail), ["delivery.opened", "delivery.shipped"]);
    let opened = system.wait_for_event(EventType::DeliveryOpened, order).await;
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(opened[0].source, "delivery");
    assert_eq!(opened[0].payload["deliveryId"], delivery_id.as_str());
    deliveries.system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_courier_ships_then_delivers_each_step_once() {
    let deliveries = Deliveries::start().await;
    let system = &deliveries.system;
    let keys = system.keys();
    let courier = Some(deliveries.courier.as_str());
    let (order, later) = (OrderId::new(), OrderId::new());
    system.publish(&ready(order, "ada@example.com")).await;
    system.publish(&ready(later, "grace@example.com")).await;
    let delivery = deliveries.wait_for_delivery(order).await;
    deliveries.wait_for_delivery(later).await;

    // Only the courier moves a delivery, and only one step at a time.
    assert_eq!(deliveries.mark(order, "shipped", None).await.status, 401);
    let by_customer = deliveries.mark(order, "shipped", Some(&keys.customer("ada@example.com"))).await;
    assert_eq!(by_customer.status, 403, "{by_customer:?}");
    let early = deliveries.mark(order, "delivered", courier).await;
    assert_eq!(early.status, 409, "delivered before shipped: {early:?}");
    let unknown = deliveries.mark(OrderId::new(), "shipped", courier).await;
    assert_eq!(unknown.status, 404, "{unknown:?}");

    let shipped = deliveries.mark(order, "shipped", courier).await;
    assert_eq!(shipped.status, 202, "{shipped:?}");
    assert_eq!(shipped.body["status"], "shipped");
    let again = deliveries.mark(order, "shipped", courier).await;
    assert_eq!(again.status, 409, "shipped twice: {again:?}");
    let events = system.wait_for_event(EventType::DeliveryShipped, order).await;
    assert_eq!(of(order, &events).len(), 1, "{events:?}");
    assert_eq!(events[0].payload["deliveryId"], delivery["deliveryId"]);

    let delivered = deliveries.mark(order, "delivered", courier).await;
    assert_eq!(delivered.status, 202, "{delivered:?}");
    assert_eq!(delivered.body["status"], "delivered");
    let again = deliveries.mark(order, "delivered", courier).await;
    assert_eq!(again.status, 409, "delivered twice: {again:?}");
    assert_eq!(deliveries.mark(order, "shipped", courier).await.status, 409, "no step back");
    let read = deliveries.get(&format!("/deliveries/{order}"), courier).await;
    assert_eq!(read.body["status"], "delivered", "{read:?}");

    // After all that, the other order's delivery is shipped: by then the trail tells each
    // step of the first once, and nothing for the refused ones.
    assert_eq!(deliveries.mark(later, "shipped", courier).await.status, 202);
    let trail = deliveries.trail_until(later, "delivery.shipped").await;
    assert_eq!(actions(order, &trail), ["delivery.opened", "delivery.shipped", "delivery.delivered"]);
    let events = system.wait_for_event(EventType::DeliveryShipped, later).await;
    assert_eq!(of(order, &events).len(), 1, "shipped once: {events:?}");
    let events = system.wait_for_event(EventType::DeliveryDelivered, order).await;
    assert_eq!(events.len(), 1, "delivered once: {events:?}");
    assert_eq!(events[0].payload["deliveryId"], delivery["deliveryId"]);
    deliveries.system.stop().await;
}
