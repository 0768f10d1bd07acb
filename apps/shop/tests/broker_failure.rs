//! A broker of the real three-broker cluster dies (SIGKILL) with orders in flight and comes
//! back: every order still completes, nothing lost, nothing doubled. Needs the cluster of
//! `dev/kafka-cluster` and `SHOP_TEST_KAFKA_BROKERS`; `.ci/run` runs it.

mod support;

use std::process::Command;

use support::System;

fn cluster(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../dev/kafka-cluster");
    let status = Command::new(script).args(args).status().expect("dev/kafka-cluster runs");
    assert!(status.success(), "dev/kafka-cluster {args:?} failed");
}

#[tokio::test]
#[ignore = "needs the real Kafka cluster of dev/kafka-cluster (run by .ci/run)"]
async fn every_order_completes_once_while_a_broker_is_killed_and_restarted() {
    assert!(std::env::var_os("SHOP_TEST_KAFKA_BROKERS").is_some(), "set SHOP_TEST_KAFKA_BROKERS to the cluster");
    let system = System::start().await;
    let mut orders = Vec::new();
    for i in 0..10 {
        orders.push(system.create_order(system.order[i % 2], &format!("broker{i}@example.com"), None).await);
    }
    for (i, (_, payment_id)) in orders.iter().enumerate() {
        if i == 4 {
            cluster(&["kill-broker", "2"]);
        }
        let (code, answer) = system.pay(system.payment[i % 2], payment_id).await;
        assert_eq!(code, 200, "{answer}");
    }
    for (order_id, _) in &orders {
        system.wait_for_status(order_id, "shipping").await;
        system.courier(order_id, "shipped").await;
    }
    cluster(&["start-broker", "2"]);
    system.deliver_all_and_check_each_once(&orders).await;
}
