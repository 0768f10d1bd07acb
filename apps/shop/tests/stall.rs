//! Consumers frozen past their session timeout (SIGSTOP, as a stalled machine freezes them)
//! while orders move: the broker expires them, the group's other member takes their
//! partitions, and once they run again they rejoin, every group is stable with all its members
//! and every order completes, each stage once. The embedded broker's coordinator once left
//! groups mid-rebalance for good after such a stall.

mod support;

use std::time::Duration;

use support::{eventually, kafka, System};

/// The services' session timeout is 10 s: how long the broker may take to notice, with room
/// for a busy machine.
const SESSION_ENDS: Duration = Duration::from_secs(60);

#[tokio::test]
async fn consumers_frozen_past_their_session_are_expired_and_rejoin_and_every_order_completes() {
    let system = System::start().await;
    let mut orders = Vec::new();
    // An order shipped before the stall, delivered after it.
    let (order_id, payment_id) = system.create_order(system.order[0], "before-stall@example.com", None).await;
    let (code, answer) = system.pay(system.payment[0], &payment_id).await;
    assert_eq!(code, 200, "{answer}");
    system.wait_for_status(&order_id, "shipping").await;
    system.courier(&order_id, "shipped").await;
    orders.push((order_id, payment_id));

    // One of order-service's two members, and delivery-service's only one.
    let order = system.pause_service("order-2");
    let delivery = system.pause_service("delivery-1");
    let mut frozen = Vec::new();
    for i in 0..3 {
        let (order_id, payment_id) =
            system.create_order(system.order[0], &format!("during-stall{i}@example.com"), None).await;
        let (code, answer) = system.pay(system.payment[i % 2], &payment_id).await;
        assert_eq!(code, 200, "{answer}");
        frozen.push((order_id, payment_id));
    }
    // Their sessions end: the broker removes them, and order-1 takes order-2's partitions.
    let brokers = system.brokers();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let groups_become = |what: &'static str, expected: Vec<(&'static str, &'static str, &'static [&'static str])>| {
        let (brokers, seen) = (brokers.clone(), seen.clone());
        eventually(what, SESSION_ENDS, move || {
            let (brokers, expected, seen) = (brokers.clone(), expected.clone(), seen.clone());
            async move {
                let groups = tokio::task::spawn_blocking(move || kafka::groups(&brokers)).await.unwrap();
                let matches = expected.iter().all(|(group, state, members)| {
                    groups.iter().any(|(g, s, m)| g == group && s == state && m == members)
                });
                // Each new view of the groups, for the report of a failure.
                let mut seen = seen.lock().unwrap();
                if *seen != groups {
                    eprintln!("groups: {groups:?}");
                    *seen = groups;
                }
                matches.then_some(())
            }
        })
    };
    groups_become(
        "the frozen members to be expired",
        vec![("order-service", "Stable", &["order-1"]), ("delivery-service", "Empty", &[])],
    )
    .await;
    // Every payment reaches its order, which is then ready to ship (the courier's side is
    // still frozen).
    for (order_id, _) in &frozen {
        system.wait_for_status(order_id, "readyToShip").await;
    }
    order.resume();
    delivery.resume();

    groups_become(
        "every group stable with all its members again",
        vec![
            ("delivery-service", "Stable", &["delivery-1"]),
            ("logging-service", "Stable", &["logging-1"]),
            ("notification-email", "Stable", &["notification-1-email"]),
            ("notification-mobile", "Stable", &["notification-1-push"]),
            ("order-service", "Stable", &["order-1", "order-2"]),
        ],
    )
    .await;

    for (order_id, _) in &frozen {
        system.wait_for_status(order_id, "shipping").await;
        system.courier(order_id, "shipped").await;
    }
    orders.extend(frozen);
    system.deliver_all_and_check_each_once(&orders).await;
    system.assert_each_stage_published_once(&orders).await;
}
