//! `shop up` killed with SIGKILL — itself and every service, all at once — while orders
//! move, then started again on the same data folder, three times in a row: every order in
//! flight completes, each stage once, with 7 pushes and 7 mails. The embedded broker keeps its
//! records in the data folder, so nothing it acknowledged is lost.

mod support;

use support::System;

const ROUNDS: usize = 3;
const ORDERS_PER_ROUND: usize = 4;

#[tokio::test]
async fn orders_in_flight_complete_once_each_after_shop_up_is_killed_and_started_again() {
    let data = std::sync::Arc::new(tempfile::tempdir().expect("a temporary folder"));
    let mut system = System::start_with(data.clone()).await;
    let mut orders: Vec<(String, String)> = Vec::new();
    let mut shipping: Vec<String> = Vec::new();
    for round in 0..ROUNDS {
        // New orders, paid at once: their stage events are in flight when the kill comes.
        let mut fresh = Vec::new();
        for i in 0..ORDERS_PER_ROUND {
            let email = format!("restart{round}-{i}@example.com");
            let (order_id, payment_id) = system.create_order(system.order[i % 2], &email, None).await;
            fresh.push((order_id, payment_id));
        }
        for (i, (_, payment_id)) in fresh.iter().enumerate() {
            let (code, answer) = system.pay(system.payment[i % 2], payment_id).await;
            assert_eq!(code, 200, "{answer}");
        }
        // The orders of the round before reached shipping: the courier ships them, in flight too.
        for order_id in shipping.drain(..) {
            system.courier(&order_id, "shipped").await;
        }
        orders.extend(fresh.iter().cloned());
        let owners = system.owners();
        system.kill_everything();

        system = System::start_with(data.clone()).await;
        for (id, email) in &owners {
            system.remember(id, email);
        }
        for (order_id, _) in &fresh {
            system.wait_for_status(order_id, "shipping").await;
            shipping.push(order_id.clone());
        }
    }
    for order_id in &shipping {
        system.courier(order_id, "shipped").await;
    }
    system.deliver_all_and_check_each_once(&orders).await;

    system.assert_each_stage_published_once(&orders).await;
}
