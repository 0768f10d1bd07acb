//! The guarantees of the design, each shown on the real system: duplicates and replays change
//! nothing twice, poison records are set aside without blocking, concurrent pays and retried
//! creates have one effect, and killed services lose and double nothing.

mod support;

use std::collections::BTreeSet;

use serde_json::{json, Value};
use shop_events::Topic;
use support::kafka::{self, Record};
use support::{assert_once_each, observed, order_for, System};

async fn records(system: &System, topic: &str, key: &str) -> Vec<Record> {
    let (brokers, topic, key) = (system.brokers(), topic.to_owned(), key.to_owned());
    tokio::task::spawn_blocking(move || kafka::records_for(&brokers, &topic, &key)).await.unwrap()
}

#[tokio::test]
async fn a_duplicated_or_replayed_event_changes_nothing_twice() {
    let system = System::start().await;
    let (order_id, payment_id) = system.create_order(system.order[0], "dup@example.com", None).await;
    system.complete(&order_id, &payment_id).await;
    system.notifications(&order_id, 7).await;
    system.wait_until_consumed().await;
    let before = observed(&system, &order_id).await;
    let published_before = records(&system, "orders-shipped", &order_id).await.len();

    // Replay every record of the order on every topic, twice over.
    for topic in Topic::ALL.map(Topic::name) {
        for record in records(&system, topic, &order_id).await {
            kafka::produce(&system.brokers(), topic, &record).await;
            kafka::produce(&system.brokers(), topic, &record).await;
        }
    }
    system.wait_until_consumed().await;

    let after = observed(&system, &order_id).await;
    assert_eq!(after.0["history"], before.0["history"], "history unchanged");
    assert_once_each(&after.0, after.1, after.2, &after.3);
    // Re-applying nothing means publishing nothing new (only the 3 copies of the replay).
    assert_eq!(records(&system, "orders-shipped", &order_id).await.len(), published_before * 3);
}

#[tokio::test]
async fn a_poison_record_is_set_aside_and_the_next_one_is_handled() {
    let system = System::start().await;
    let (order_id, payment_id) = system.create_order(system.order[0], "poison@example.com", None).await;
    let wrong_schema = json!({"id": "x", "type": "PaymentMade", "version": 1}).to_string();
    for topic in Topic::ALL.map(Topic::name) {
        for payload in ["this is not json", wrong_schema.as_str()] {
            let record =
                Record { key: Some(order_id.clone()), payload: Some(payload.as_bytes().to_vec()), headers: vec![] };
            kafka::produce(&system.brokers(), topic, &record).await;
        }
    }
    // The same partitions keep flowing: the order completes with every notification.
    system.complete(&order_id, &payment_id).await;
    let (pushes, emails) = system.notifications(&order_id, 7).await;
    assert_eq!((pushes.len(), emails.len()), (7, 7));
    system.wait_until_consumed().await;

    for topic in Topic::ALL.map(Topic::name) {
        let dead = records(&system, &format!("{topic}.dlq"), &order_id).await;
        assert!(dead.len() >= 2, "{topic}.dlq has {} records", dead.len());
        for record in &dead {
            assert_eq!(record.header("dlq-source-topic"), Some(topic));
            assert!(record.header("dlq-error").is_some_and(|e| !e.is_empty()));
            assert!(record.header("dlq-consumer-group").is_some());
        }
    }
}

#[tokio::test]
async fn only_one_of_many_concurrent_pays_succeeds() {
    let system = System::start().await;
    let (order_id, payment_id) = system.create_order(system.order[0], "pay@example.com", None).await;
    let pays = (0..20).map(|i| {
        let (system, payment_id) = (&system, &payment_id);
        async move { system.pay(system.payment[i % 2], payment_id).await.0 }
    });
    let mut codes = futures::future::join_all(pays).await;
    codes.sort();
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 409).count(), 19, "{codes:?}");
    system.wait_for_status(&order_id, "shipping").await;
    system.wait_until_consumed().await;
    assert_eq!(records(&system, "payments-made", &order_id).await.len(), 1);
}

#[tokio::test]
async fn concurrent_creates_with_one_idempotency_key_make_one_order() {
    let system = System::start().await;
    let key = "checkout-7f3a";
    let customer = system.customer("same@example.com");
    let creates = (0..10).map(|i| {
        let (system, customer) = (&system, &customer);
        async move {
            let response = system
                .http
                .post(support::url(system.order[i % 2], "/orders"))
                .header("authorization", customer)
                .header("Idempotency-Key", key)
                .json(&order_for("same@example.com"))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    });
    let answers = futures::future::join_all(creates).await;
    let ids: BTreeSet<String> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 201, "{body}");
            body["orderId"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one order for one key: {ids:?}");
    let order_id = ids.into_iter().next().unwrap();
    system.remember(&order_id, "same@example.com");
    let (_, orders) = system.get_as(system.order[1], "/orders", &customer).await;
    assert_eq!(orders.as_array().unwrap().len(), 1);
    // The key is the customer's own: another customer using it gets an order of their own.
    let other = system.create_order(system.order[0], "other@example.com", Some(key)).await;
    assert_ne!(other.0, order_id);

    let (status, refused) = {
        let mut other = order_for("same@example.com");
        other["items"][0]["quantity"] = json!(3);
        let response = system
            .http
            .post(support::url(system.order[0], "/orders"))
            .header("authorization", &customer)
            .header("Idempotency-Key", key)
            .json(&other)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 422, "{refused}");

    system.notifications(&order_id, 2).await;
    system.wait_until_consumed().await;
    assert_eq!(records(&system, "orders-created", &order_id).await.len(), 1);
    assert_eq!(records(&system, "payments-created", &order_id).await.len(), 1);
}

#[tokio::test]
async fn orders_complete_exactly_once_while_services_are_killed_and_restarted() {
    let system = System::start().await;
    let mut orders = Vec::new();
    for i in 0..12 {
        orders.push(system.create_order(system.order[i % 2], &format!("crash{i}@example.com"), None).await);
    }
    // Pay everything, killing services while payments-made and the stage events are in flight.
    for (i, (_, payment_id)) in orders.iter().enumerate() {
        // Like a load balancer: a replica that is down is skipped.
        let code = match system.try_pay(system.payment[i % 2], payment_id).await {
            Some(code) => code,
            None => system.pay(system.payment[(i + 1) % 2], payment_id).await.0,
        };
        assert_eq!(code, 200);
        match i {
            3 => drop(system.kill_service("order-1")),
            6 => drop(system.kill_service("notification-1")),
            9 => drop(system.kill_service("payment-2")),
            _ => {}
        }
    }
    for (order_id, _) in &orders {
        system.wait_for_status(order_id, "shipping").await;
    }
    system.kill_service("order-2");
    system.kill_service("delivery-1");
    for (order_id, _) in &orders {
        system.courier(order_id, "shipped").await;
    }
    system.kill_service("notification-1");
    system.deliver_all_and_check_each_once(&orders).await;
    system.assert_each_stage_published_once(&orders).await;
}
