//! A fault campaign: customers start orders at a steady rate and take each through every stage
//! while faults strike at random moments, chosen from a seed: a service process killed
//! (SIGKILL; `shop up` starts it again), the mailbox or mobile unresponsive for a while
//! (SIGSTOP, then SIGCONT), any service frozen for a moment. Afterwards every order must have
//! reached `delivered` with each stage once, exactly 7 pushes and 7 mails, its 10 audit records
//! once each, each stage event published once, and nothing of it in a dead-letter topic.
//!
//! `SHOP_FAULTS_SEED` replays a campaign (a failing run prints its seed first);
//! `SHOP_FAULTS_SECONDS` sets how long faults strike (30 s by default; as long as asked by hand).
//! With `SHOP_TEST_KAFKA_BROKERS` and `SHOP_TEST_DATABASE_URL` it runs on the real cluster and
//! PostgreSQL (see `support`).

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use support::{eventually, kafka, order_for, url, System, PATIENCE};

/// Every service process `shop up` runs.
const SERVICES: [&str; 9] = [
    "order-1",
    "order-2",
    "payment-1",
    "payment-2",
    "delivery-1",
    "notification-1",
    "logging-1",
    "mobile-1",
    "email-1",
];
/// The receivers notification depends on.
const DEPENDENCIES: [&str; 2] = ["email-1", "mobile-1"];
/// One new order this often.
const EVERY: Duration = Duration::from_millis(400);

#[derive(Debug)]
enum Fault {
    Kill(&'static str),
    /// A dependency unresponsive for a while.
    Down(&'static str, Duration),
    /// A service frozen for a moment (a stalled machine, a long GC pause elsewhere).
    Freeze(&'static str, Duration),
}

/// The next fault. A service is killed again only a minute after its last kill: `shop up`
/// takes a service that dies again and again right after each start for a crash loop and
/// stops everything, as a supervisor should.
fn pick(rng: &mut StdRng, killed: &mut HashMap<&'static str, Instant>) -> Fault {
    let instance = SERVICES[rng.random_range(0..SERVICES.len())];
    match rng.random_range(0..10) {
        0..=5 if killed.get(instance).is_none_or(|at| at.elapsed() > Duration::from_secs(61)) => {
            killed.insert(instance, Instant::now());
            Fault::Kill(instance)
        }
        6..=7 => {
            Fault::Down(DEPENDENCIES[rng.random_range(0..2)], Duration::from_millis(rng.random_range(2_000..8_000)))
        }
        _ => Fault::Freeze(instance, Duration::from_millis(rng.random_range(200..2_000))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_complete_once_each_while_faults_strike_at_random() {
    let seed: u64 = std::env::var("SHOP_FAULTS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    let seconds: u64 = std::env::var("SHOP_FAULTS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    println!("fault campaign: SHOP_FAULTS_SEED={seed} SHOP_FAULTS_SECONDS={seconds}");
    let system = Arc::new(System::start().await);
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);

    let mut journeys = tokio::task::JoinSet::new();
    let mut next_order = started;
    let mut next_fault = started + Duration::from_millis(rng.random_range(1_000..3_000));
    let mut faults = Vec::new();
    let mut killed = HashMap::new();
    let mut number = 0;
    while Instant::now() < until {
        let now = Instant::now();
        if now >= next_order {
            number += 1;
            journeys.spawn(journey(system.clone(), format!("fault{number}-{seed}@example.com")));
            next_order += EVERY;
        }
        if now >= next_fault {
            let fault = pick(&mut rng, &mut killed);
            println!("{:>6.1} s  {fault:?}", started.elapsed().as_secs_f64());
            strike(&system, &fault).await;
            faults.push(fault);
            next_fault = Instant::now() + Duration::from_millis(rng.random_range(1_000..4_000));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (mut orders, mut took) = (Vec::new(), Vec::new());
    while let Some(done) = journeys.join_next().await {
        let (order, payment, time) = done.expect("a journey completes (its failure is printed above)");
        orders.push((order, payment));
        took.push(time);
    }
    took.sort();
    let count = |kind: fn(&Fault) -> bool| faults.iter().filter(|f| kind(f)).count();
    println!(
        "{} orders; faults: {} kills, {} dependencies down, {} freezes; journeys took {:.1} s (median) to {:.1} s (longest)",
        orders.len(),
        count(|f| matches!(f, Fault::Kill(_))),
        count(|f| matches!(f, Fault::Down(..))),
        count(|f| matches!(f, Fault::Freeze(..))),
        took[took.len() / 2].as_secs_f64(),
        took.last().unwrap().as_secs_f64(),
    );
    for (order_id, _) in &orders {
        system.notifications(order_id, 7).await;
    }
    system.wait_until_consumed().await;
    for (order_id, _) in &orders {
        let (order, pushes, emails, actions) = support::observed(&system, order_id).await;
        support::assert_once_each(&order, pushes, emails, &actions);
    }
    system.assert_each_stage_published_once(&orders).await;
    let brokers = system.brokers();
    let ids: Vec<String> = orders.iter().map(|(order_id, _)| order_id.clone()).collect();
    let set_aside = tokio::task::spawn_blocking(move || {
        shop_events::Topic::ALL
            .iter()
            .flat_map(|topic| kafka::read_all(&brokers, &topic.dead_letter_name()))
            .filter(|record| record.key.as_ref().is_some_and(|key| ids.contains(key)))
            .count()
    })
    .await
    .unwrap();
    assert_eq!(set_aside, 0, "records of the campaign's orders were set aside");
    println!("every order delivered, each stage, push, mail and audit record once, nothing set aside");
}

/// Strikes `fault` and returns at once; a paused process is resumed later by a task of its own.
async fn strike(system: &System, fault: &Fault) {
    match fault {
        Fault::Kill(instance) => drop(system.kill_service(instance)),
        Fault::Down(instance, how_long) | Fault::Freeze(instance, how_long) => {
            let paused = system.pause_service(instance);
            let how_long = *how_long;
            tokio::spawn(async move {
                tokio::time::sleep(how_long).await;
                paused.resume();
            });
        }
    }
}

/// One customer's order from creation to delivered, through the public APIs as a client
/// behind a load balancer would use them: a replica that does not answer is skipped, and a
/// call that may have been done before its answer was lost is made again (the order with the
/// same `Idempotency-Key`; a pay or courier step already done answers 409).
async fn journey(system: Arc<System>, email: String) -> (String, String, Duration) {
    let started = Instant::now();
    let token = system.customer(&email);
    let key = uuid_like(&email);
    let mut attempt = 0;
    let created: Value = eventually(&format!("{email}'s order to be created"), PATIENCE, || {
        attempt += 1;
        let request = system
            .http
            .post(url(system.order[attempt % 2], "/orders"))
            .header("authorization", &token)
            .header("idempotency-key", &key)
            .json(&order_for(&email));
        async move {
            let response = request.send().await.ok()?;
            (response.status() == 201).then_some(response.json().await.ok()?)
        }
    })
    .await;
    let order_id = created["orderId"].as_str().unwrap().to_owned();
    let payment_id = created["paymentId"].as_str().unwrap().to_owned();
    system.remember(&order_id, &email);
    system.remember(&payment_id, &email);

    let pay = format!("/payments/{payment_id}/pay");
    eventually(&format!("{payment_id} to be paid"), PATIENCE, || {
        attempt += 1;
        let request = system.http.post(url(system.payment[attempt % 2], &pay)).header("authorization", &token);
        async move { request.send().await.ok().filter(|r| matches!(r.status().as_u16(), 200 | 409)).map(|_| ()) }
    })
    .await;
    system.wait_for_status(&order_id, "shipping").await;
    for (action, status) in [("shipped", "shipped"), ("delivered", "delivered")] {
        let path = format!("/deliveries/{order_id}/{action}");
        let courier = system.courier_token();
        eventually(&format!("courier {action} of {order_id}"), PATIENCE, || {
            let request = system.http.post(url(system.delivery, &path)).header("authorization", &courier);
            async move { request.send().await.ok().filter(|r| matches!(r.status().as_u16(), 202 | 409)).map(|_| ()) }
        })
        .await;
        system.wait_for_status(&order_id, status).await;
    }
    (order_id, payment_id, started.elapsed())
}

/// An idempotency key of the journey, the same on every retry.
fn uuid_like(email: &str) -> String {
    format!("journey-{email}")
}
