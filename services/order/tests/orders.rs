//! The order service in this process (`shop_testkit`), with the one service it calls while
//! taking an order, payment (`POST /payments`), each built with `Service::build` on port 0
//! with a fresh SQLite database and the embedded broker. Customers order through order's API
//! with their tokens; payment's and delivery's events are produced onto their topics as
//! those services' relays would; what order publishes is read back from its topics and the
//! audit trail (`logging-events`).

use serde_json::{json, Value};
use shop_events::{
    Customer, DeliveryId, DeliveryProgressed, Event, EventType, Money, OrderId, PaymentId, PaymentMade, RawEnvelope,
    Topic,
};
use shop_platform::auth::Role;
use shop_testkit::{config, send, wait_until, Reply, System};

struct Orders {
    system: System,
    order: u16,
    payment: u16,
}

impl Orders {
    async fn start() -> Orders {
        let mut system = System::start().await;
        let payment = shop_payment::Service::build(config(&system.kafka_args(&[]))).await.unwrap();
        let payment = system.run(payment.port(), |stop| payment.run_until_stopped(stop));
        let payment_url = format!("http://127.0.0.1:{payment}");
        let order =
            shop_order::Service::build(config(&system.kafka_args(&["--payment-url", &payment_url]))).await.unwrap();
        let order = system.run(order.port(), |stop| order.run_until_stopped(stop));
        Orders { system, order, payment }
    }

    /// `POST /orders` with `token` and, if given, an `Idempotency-Key`.
    async fn create(&self, token: Option<&str>, key: Option<&str>, body: &Value) -> Reply {
        let mut request = self.system.http().post(self.system.url(self.order, "/orders")).json(body);
        if let Some(token) = token {
            request = request.header("authorization", token);
        }
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        send(request).await
    }

    /// A customer's order, created; the order as order answered it.
    async fn create_as(&self, email: &str, key: Option<&str>) -> Value {
        let created = self.create(Some(&self.system.keys().customer(email)), key, &tea_and_a_mug()).await;
        assert_eq!(created.status, 201, "{created:?}");
        created.body
    }

    async fn get(&self, path: &str, email: &str) -> Reply {
        self.system.get(self.order, path, Some(&self.system.keys().customer(email))).await
    }

    /// The order once it is `status`, as its customer reads it.
    async fn wait_for_status(&self, order: OrderId, email: &str, status: &str) -> Value {
        let path = format!("/orders/{order}");
        let path = path.as_str();
        wait_until(&format!("order {order} to be {status}"), || async move {
            let reply = self.get(path, email).await;
            if reply.body["status"] == status {
                Ok(reply.body)
            } else {
                Err(reply)
            }
        })
        .await
    }
}

/// Two teas and a mug, as the app sends it: no email (the token's), no prices (the catalogue's).
fn tea_and_a_mug() -> Value {
    json!({
        "customer": {"name": "Ada Lovelace", "phone": "+44 20 7946 0000"},
        "items": [{"sku": "TEA-01", "quantity": 2}, {"sku": "MUG-03", "quantity": 1}]
    })
}

fn order_id(order: &Value) -> OrderId {
    OrderId::parse(order["orderId"].as_str().expect("an order id")).unwrap()
}

fn stages(order: &Value) -> Vec<&str> {
    order["history"].as_array().expect("a history").iter().map(|h| h["stage"].as_str().unwrap()).collect()
}

/// What order did to `order`, as its audit records tell, in the order they were published.
fn actions(order: OrderId, trail: &[RawEnvelope]) -> Vec<String> {
    trail
        .iter()
        .filter(|e| e.order_id == order && e.source == "order")
        .map(|e| match e.event().unwrap() {
            Event::AuditRecorded(audit) => audit.action,
            other => panic!("not an audit record: {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_orders_at_the_catalogues_prices_once_per_idempotency_key_and_sees_only_their_own() {
    let orders = Orders::start().await;
    let system = &orders.system;
    let keys = system.keys();
    let ada = keys.customer("ada@example.com");

    // The catalogue is open to anyone; ordering needs a customer.
    let products = system.get(orders.order, "/products", None).await;
    assert_eq!(products.status, 200, "{products:?}");
    let tea = products.body.as_array().unwrap().iter().find(|p| p["sku"] == "TEA-01").cloned().unwrap();
    assert_eq!(serde_json::from_value::<Money>(tea["price"].clone()).unwrap(), Money::from_cents(1250).unwrap());
    let anonymous = orders.create(None, None, &tea_and_a_mug()).await;
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    let courier = orders.create(Some(&keys.staff(Role::Courier)), None, &tea_and_a_mug()).await;
    assert_eq!(courier.status, 403, "{courier:?}");

    // The server's catalogue decides: an unknown sku, or a price of the client's, is a 422.
    let mut unknown = tea_and_a_mug();
    unknown["items"][0]["sku"] = json!("BOOK-7");
    let refused = orders.create(Some(&ada), None, &unknown).await;
    assert_eq!(refused.status, 422, "{refused:?}");
    let mut cheap = tea_and_a_mug();
    cheap["items"][0]["unitPrice"] = json!(0.01);
    let refused = orders.create(Some(&ada), None, &cheap).await;
    assert_eq!(refused.status, 422, "{refused:?}");

    let created = orders.create(Some(&ada), Some("ada-1"), &tea_and_a_mug()).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.header("idempotent-replayed"), None);
    let order = created.body;
    let id = order_id(&order);
    assert_eq!(order["status"], "created");
    assert_eq!(order["customer"]["email"], "ada@example.com", "the token's email");
    assert_eq!(serde_json::from_value::<Money>(order["total"].clone()).unwrap(), Money::from_cents(3490).unwrap());
    assert_eq!(order["items"][0]["unitPrice"], tea["price"]);
    assert_eq!(stages(&order), ["created", "paymentCreated"]);
    let payment_id = order["paymentId"].as_str().unwrap();
    let link = order["paymentUrl"].as_str().unwrap();
    assert!(link.contains(&format!("/pay/{payment_id}?secret=")), "{link}");

    // The same key again (a retry): the same order, said to be a replay; with another body, a 422.
    let again = orders.create(Some(&ada), Some("ada-1"), &tea_and_a_mug()).await;
    assert_eq!(again.status, 201, "{again:?}");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!((&again.body["orderId"], &again.body["paymentId"]), (&order["orderId"], &order["paymentId"]));
    let mut more = tea_and_a_mug();
    more["items"][0]["quantity"] = json!(3);
    let other_body = orders.create(Some(&ada), Some("ada-1"), &more).await;
    assert_eq!(other_body.status, 422, "{other_body:?}");

    // The key is the customer's own: Grace using it gets an order of her own.
    let graces = orders.create_as("grace@example.com", Some("ada-1")).await;
    assert_ne!(graces["orderId"], order["orderId"]);
    let later = orders.create_as("ada@example.com", None).await;

    // Only its customer sees an order; to anyone else it does not exist.
    let path = format!("/orders/{id}");
    let read = orders.get(&path, "ada@example.com").await;
    assert_eq!((read.status, &read.body["status"]), (200, &json!("created")), "{read:?}");
    assert_eq!(orders.get(&path, "grace@example.com").await.status, 404);
    assert_eq!(system.get(orders.order, &path, None).await.status, 401);
    let listed = |reply: Reply| -> Vec<Value> {
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.body.as_array().unwrap().iter().map(|o| o["orderId"].clone()).collect()
    };
    let adas = listed(orders.get("/orders", "ada@example.com").await);
    assert_eq!(adas, [later["orderId"].clone(), order["orderId"].clone()], "Ada's own, newest first");
    let grace = listed(orders.get("/orders", "grace@example.com").await);
    assert_eq!(grace, [graces["orderId"].clone()]);

    // One orders-created for the order (the replay published nothing) by the time of the
    // orders placed after it, telling the payment order opened for it.
    let created = system.wait_for_event(EventType::OrderCreated, order_id(&later)).await;
    let ours: Vec<_> = created.iter().filter(|e| e.order_id == id).collect();
    assert_eq!(ours.len(), 1, "one order, one orders-created: {ours:?}");
    assert_eq!(ours[0].source, "order");
    let Event::OrderCreated(event) = ours[0].event().unwrap() else { panic!("{:?}", ours[0]) };
    assert_eq!(event.payment_id.to_string(), payment_id);
    assert_eq!(event.payment_url, link);
    assert_eq!(event.total, Money::from_cents(3490).unwrap());
    assert_eq!(event.customer.email(), "ada@example.com");
    assert_eq!(created.len(), 3, "Ada's two and Grace's one: {created:?}");

    // Payment opened exactly one payment for it: the one the order names.
    let opened = system.wait_for_event(EventType::PaymentCreated, order_id(&later)).await;
    let ours: Vec<_> = opened.iter().filter(|e| e.order_id == id).collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(ours[0].payload["paymentId"], payment_id);
    let payment = system.get(orders.payment, &format!("/payments/{payment_id}"), Some(&ada)).await;
    assert_eq!((payment.status, &payment.body["orderId"]), (200, &order["orderId"]), "{payment:?}");
    orders.system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_order_becomes_ready_to_ship_once_however_often_the_payment_is_told() {
    let orders = Orders::start().await;
    let system = &orders.system;
    let order = orders.create_as("ada@example.com", None).await;
    let id = order_id(&order);

    // Payment's relay publishes that the order's payment was made.
    let customer = Customer::parse("Ada Lovelace", "ada@example.com", "+44 20 7946 0000").unwrap();
    let payment_made = Event::PaymentMade(PaymentMade {
        payment_id: PaymentId::parse(order["paymentId"].as_str().unwrap()).unwrap(),
        amount: serde_json::from_value(order["total"].clone()).unwrap(),
        customer,
    });
    let made = RawEnvelope::wrap(id, "payment", &payment_made);
    system.publish(&made).await;
    let ready = orders.wait_for_status(id, "ada@example.com", "readyToShip").await;
    assert_eq!(stages(&ready), ["created", "paymentCreated", "paymentMade", "readyToShip"]);

    let published = system.wait_for_event(EventType::OrderReadyToShip, id).await;
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0].source, "order");
    let Event::OrderReadyToShip(event) = published[0].event().unwrap() else { panic!("{:?}", published[0]) };
    assert_eq!(event.payment_id.to_string(), order["paymentId"].as_str().unwrap());
    assert_eq!(event.total, Money::from_cents(3490).unwrap());
    assert_eq!(event.items.len(), 2);
    assert_eq!(event.customer.email(), "ada@example.com");

    // The same record again (a redelivery): nothing. Another payment-made for the paid order
    // (a new event): an illegal transition, set aside on the dead-letter topic, after the
    // redelivery was handled (one partition, in order).
    system.publish(&made).await;
    let other = RawEnvelope::wrap(id, "payment", &payment_made);
    system.publish(&other).await;
    let set_aside = system.read_until(&Topic::PaymentsMade.dead_letter_name(), |e| e.id == other.id).await;
    assert_eq!(set_aside.iter().map(|e| e.id).collect::<Vec<_>>(), [other.id], "only the new event is set aside");
    let still = orders.get(&format!("/orders/{id}"), "ada@example.com").await;
    assert_eq!((&still.body["status"], stages(&still.body)), (&json!("readyToShip"), stages(&ready)));

    // The courier's first step, after all that: the audit trail of the order then tells each
    // step once, so neither the redelivery nor the new event published anything.
    let shipping = Event::DeliveryOpened(DeliveryProgressed { delivery_id: DeliveryId::new() });
    system.publish(&RawEnvelope::wrap(id, "delivery", &shipping)).await;
    orders.wait_for_status(id, "ada@example.com", "shipping").await;
    let trail = system.read_until(Topic::LoggingEvents.name(), |e| {
        e.order_id == id && matches!(e.event(), Ok(Event::AuditRecorded(a)) if a.action == "order.shipping")
    });
    let trail = trail.await;
    assert_eq!(actions(id, &trail), ["order.created", "order.readyToShip", "order.shipping"]);
    let published = system.wait_for_event(EventType::OrderReadyToShip, id).await;
    assert_eq!(published.len(), 1, "ready to ship once: {published:?}");
    orders.system.stop().await;
}

/// `GET /orders/{id}/events` on `port`, open (its answer's head read).
async fn open_stream(system: &System, port: u16, id: OrderId, email: &str) -> reqwest::Response {
    let url = system.url(port, &format!("/orders/{id}/events"));
    let response = system.http().get(url).header("authorization", system.keys().customer(email)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response
}

/// The stages a stream tells, and when each was reached, read until `last`.
async fn told_until(stream: reqwest::Response, last: &str) -> Vec<(String, String)> {
    use futures::StreamExt;
    let (mut body, mut text, mut stages) = (stream.bytes_stream(), String::new(), Vec::new());
    while let Some(chunk) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = text.find('\n') {
            let line: String = text.drain(..=end).collect();
            if let Some(data) = line.strip_prefix("data:") {
                let stage: Value = serde_json::from_str(data.trim()).unwrap();
                stages.push((stage["stage"].as_str().unwrap().to_owned(), stage["at"].as_str().unwrap().to_owned()));
                if stages.last().is_some_and(|(stage, _)| stage == last) {
                    return stages;
                }
            }
        }
    }
    panic!("the stream ended after {stages:?}, before {last}")
}

/// Either replica may move an order on (its partition decides which), and the customer's
/// stream may be open on the other: both replicas' streams tell the stage. Neither looks on a
/// timer, so a stream that only heard its own replica would wait past the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_either_replica_writes_is_told_by_the_streams_of_both() {
    let mut orders = Orders::start().await;
    let payment_url = format!("http://127.0.0.1:{}", orders.payment);
    let args = orders.system.kafka_args(&["--payment-url", &payment_url, "--instance-id", "order-2"]);
    let second = shop_order::Service::build(config(&args)).await.unwrap();
    let second = orders.system.run(second.port(), |stop| second.run_until_stopped(stop));
    let order = orders.create_as("ada@example.com", None).await;
    let id = order_id(&order);
    let system = &orders.system;
    let streams = [
        open_stream(system, orders.order, id, "ada@example.com").await,
        open_stream(system, second, id, "ada@example.com").await,
    ];

    let customer = Customer::parse("Ada Lovelace", "ada@example.com", "+44 20 7946 0000").unwrap();
    let payment_made = Event::PaymentMade(PaymentMade {
        payment_id: PaymentId::parse(order["paymentId"].as_str().unwrap()).unwrap(),
        amount: serde_json::from_value(order["total"].clone()).unwrap(),
        customer,
    });
    system.publish(&RawEnvelope::wrap(id, "payment", &payment_made)).await;
    let told = futures::future::join_all(streams.map(|stream| told_until(stream, "readyToShip")));
    let told = tokio::time::timeout(shop_testkit::DEADLINE, told).await.expect("both streams tell readyToShip");
    // Each stream tells the stages as stored, whether it read them or its replica stored them.
    let stored = orders.get(&format!("/orders/{id}"), "ada@example.com").await;
    let history = stored.body["history"].as_array().expect("a history");
    let expected: Vec<(String, String)> = history
        .iter()
        .map(|h| (h["stage"].as_str().unwrap().to_owned(), h["at"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        expected.iter().map(|(stage, _)| stage.as_str()).collect::<Vec<_>>(),
        ["created", "paymentCreated", "paymentMade", "readyToShip"]
    );
    assert_eq!(told, [expected.clone(), expected]);
    orders.system.stop().await;
}
