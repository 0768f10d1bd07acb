//! A fault campaign: customers start orders at a steady rate and take each through every stage
//! while faults strike at random moments, chosen from a seed: a service process killed
//! (SIGKILL; `shop up` starts it again), the mailbox or mobile unresponsive for a while
//! (SIGSTOP, then SIGCONT), any service frozen for a moment; and a quarter of the way in (then every further
//! minute) the whole system at once, `shop up` and every service SIGKILLed, and `shop up`
//! started again on its data folder and ports. Afterwards every order must have
//! reached `delivered` with each stage once, exactly 7 pushes and 7 mails, its 10 audit records
//! once each, each stage event published once, and nothing of it in a dead-letter topic.
//!
//! `SHOP_FAULTS_SEED` replays a campaign (a failing run prints its seed first);
//! `SHOP_FAULTS_SECONDS` sets how long faults strike (30 s by default; as long as asked by hand);
//! `SHOP_FAULTS_OUTAGE_SECONDS` how long the mailbox or mobile may stay down (8 s by default).
//! With `SHOP_TEST_KAFKA_BROKERS` and `SHOP_TEST_DATABASE_URL` it runs on the real cluster and
//! PostgreSQL of `dev/kafka-cluster` and `dev/postgres` (see `support`), and strikes them too:
//! one broker of the three killed for a while (never two at once: replication factor 3 with
//! `min.insync.replicas=2` takes one), PostgreSQL stopped and started again.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::System;

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
    /// One Kafka broker of the real cluster killed (SIGKILL) and started again after a while.
    BrokerDown(u8, Duration),
    /// PostgreSQL stopped (fast shutdown: every connection cut) and started again.
    DatabaseRestart,
    /// `shop up` itself and every service SIGKILLed at once (a machine losing power), and
    /// `shop up` started again on the same data folder and ports.
    Restart,
}

/// What a campaign may strike beyond the services (the real engine's parts, when it runs on them), how long the
/// mailbox or mobile may stay down, and whether a broker or the database is down now (one at a time).
#[derive(Clone, Default)]
struct Engine {
    /// How long the mailbox or mobile may stay down.
    outage: Duration,
    cluster: bool,
    postgres: bool,
    broker_down: Arc<std::sync::atomic::AtomicBool>,
    database_down: Arc<std::sync::atomic::AtomicBool>,
}

/// The next fault. A service is killed again only a minute after its last kill: `shop up`
/// takes a service that dies again and again right after each start for a crash loop and
/// stops everything, as a supervisor should.
fn pick(rng: &mut StdRng, killed: &mut HashMap<&'static str, Instant>, engine: &Engine) -> Fault {
    use std::sync::atomic::Ordering::SeqCst;
    let instance = SERVICES[rng.random_range(0..SERVICES.len())];
    match rng.random_range(0..12) {
        0..=5 if killed.get(instance).is_none_or(|at| at.elapsed() > Duration::from_secs(61)) => {
            killed.insert(instance, Instant::now());
            Fault::Kill(instance)
        }
        6..=7 => {
            let longest = engine.outage.as_millis().max(2_001) as u64;
            Fault::Down(DEPENDENCIES[rng.random_range(0..2)], Duration::from_millis(rng.random_range(2_000..longest)))
        }
        10 if engine.cluster && !engine.broker_down.swap(true, SeqCst) => {
            Fault::BrokerDown(rng.random_range(1..=3), Duration::from_millis(rng.random_range(3_000..15_000)))
        }
        11 if engine.postgres && !engine.database_down.swap(true, SeqCst) => Fault::DatabaseRestart,
        _ => Fault::Freeze(instance, Duration::from_millis(rng.random_range(200..2_000))),
    }
}

/// A number from the environment, if set.
fn setting(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|value| value.parse().ok())
}

/// How many of `faults` are of a kind.
fn struck(faults: &[Fault], kind: fn(&Fault) -> bool) -> usize {
    faults.iter().filter(|fault| kind(fault)).count()
}

/// Runs a `dev/` script (`kafka-cluster`, `postgres`) and insists it succeeds.
fn dev(script: &str, args: &[&str]) {
    let path = format!("{}/../../dev/{script}", env!("CARGO_MANIFEST_DIR"));
    let output = std::process::Command::new(&path).args(args).output().expect("a dev/ script runs");
    assert!(output.status.success(), "dev/{script} {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_complete_once_each_while_faults_strike_at_random() {
    let seed = setting("SHOP_FAULTS_SEED").unwrap_or_else(rand::random);
    let seconds = setting("SHOP_FAULTS_SECONDS").unwrap_or(30);
    let outage = setting("SHOP_FAULTS_OUTAGE_SECONDS").unwrap_or(8);
    println!(
        "fault campaign: SHOP_FAULTS_SEED={seed} SHOP_FAULTS_SECONDS={seconds} SHOP_FAULTS_OUTAGE_SECONDS={outage}"
    );
    let system = Arc::new(System::start().await);
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);

    let mut journeys = tokio::task::JoinSet::new();
    let mut next_order = started;
    let mut next_fault = started + Duration::from_millis(rng.random_range(1_000..3_000));
    let mut faults = Vec::new();
    let mut killed = HashMap::new();
    let engine = Engine {
        outage: Duration::from_secs(outage),
        cluster: std::env::var_os("SHOP_TEST_KAFKA_BROKERS").is_some(),
        postgres: std::env::var_os("SHOP_TEST_DATABASE_URL").is_some(),
        ..Engine::default()
    };
    let mut recoveries = tokio::task::JoinSet::new();
    let mut number = 0;
    // The whole system is killed and started again a quarter of the way in (before the broker
    // and the database are struck, whose recovery can take most of a short campaign), and
    // every further minute.
    let mut next_restart = started + Duration::from_secs(seconds) / 4;
    while Instant::now() < until {
        let now = Instant::now();
        if now >= next_order {
            number += 1;
            journeys.spawn(support::journey(system.clone(), format!("fault{number}-{seed}@example.com")));
            next_order += EVERY;
        }
        let engine_up = !engine.broker_down.load(std::sync::atomic::Ordering::SeqCst)
            && !engine.database_down.load(std::sync::atomic::Ordering::SeqCst);
        // A restart of the whole system that is due waits, with every other fault, until a
        // struck broker or the database is back.
        if now >= next_fault && (now < next_restart || engine_up) {
            // Each part of the engine that can be struck is, at least once: the broker after a
            // third of the campaign, the database after two thirds.
            let third = Duration::from_secs(seconds) / 3;
            let never = |kind: fn(&Fault) -> bool| struck(&faults, kind) == 0;
            let fault = if now >= next_restart {
                next_restart += Duration::from_secs(60);
                Fault::Restart
            } else if engine.cluster
                && now > started + third
                && never(|f| matches!(f, Fault::BrokerDown(..)))
                && !engine.broker_down.swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                Fault::BrokerDown(rng.random_range(1..=3), Duration::from_secs(10))
            } else if engine.postgres
                && now > started + third * 2
                && never(|f| matches!(f, Fault::DatabaseRestart))
                && !engine.database_down.swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                Fault::DatabaseRestart
            } else {
                pick(&mut rng, &mut killed, &engine)
            };
            println!("{:>6.1} s  {fault:?}", started.elapsed().as_secs_f64());
            if let Fault::Restart = fault {
                // Nothing else strikes meanwhile: the next fault waits until it is up again.
                system.kill_and_start_again().await;
                println!("{:>6.1} s  up again", started.elapsed().as_secs_f64());
            } else {
                strike(&system, &fault, &engine, &mut recoveries);
            }
            faults.push(fault);
            next_fault = Instant::now() + Duration::from_millis(rng.random_range(1_000..4_000));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The broker and the database are back before anything is checked.
    while let Some(recovered) = recoveries.join_next().await {
        recovered.expect("a struck part of the engine comes back");
    }
    let (mut orders, mut took) = (Vec::new(), Vec::new());
    while let Some(done) = journeys.join_next().await {
        let (order, payment, time) = done.expect("a journey completes (its failure is printed above)");
        orders.push((order, payment));
        took.push(time);
    }
    took.sort();
    let count = |kind: fn(&Fault) -> bool| struck(&faults, kind);
    println!(
        "{} orders; faults: {} kills, {} dependencies down, {} freezes, {} brokers down, {} database restarts, \
         {} restarts of the whole system; \
         journeys took {:.1} s (median) to {:.1} s (longest)",
        orders.len(),
        count(|f| matches!(f, Fault::Kill(_))),
        count(|f| matches!(f, Fault::Down(..))),
        count(|f| matches!(f, Fault::Freeze(..))),
        count(|f| matches!(f, Fault::BrokerDown(..))),
        count(|f| matches!(f, Fault::DatabaseRestart)),
        count(|f| matches!(f, Fault::Restart)),
        took[took.len() / 2].as_secs_f64(),
        took.last().unwrap().as_secs_f64(),
    );
    support::assert_every_order_once(&system, &orders).await;
    println!("every order delivered, each stage, push, mail and audit record once, nothing set aside");
}

/// Strikes `fault` and returns at once; what comes back later (a paused process, a broker, the
/// database) does so in a task of its own, those of the engine in `recoveries`.
fn strike(system: &System, fault: &Fault, engine: &Engine, recoveries: &mut tokio::task::JoinSet<()>) {
    use std::sync::atomic::Ordering::SeqCst;
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
        Fault::BrokerDown(broker, how_long) => {
            let (broker, how_long, down) = (broker.to_string(), *how_long, engine.broker_down.clone());
            recoveries.spawn(async move {
                let id = broker.clone();
                tokio::task::spawn_blocking(move || dev("kafka-cluster", &["kill-broker", &id])).await.unwrap();
                tokio::time::sleep(how_long).await;
                tokio::task::spawn_blocking(move || dev("kafka-cluster", &["start-broker", &broker])).await.unwrap();
                down.store(false, SeqCst);
            });
        }
        Fault::Restart => unreachable!("the campaign's loop restarts the system itself"),
        Fault::DatabaseRestart => {
            let down = engine.database_down.clone();
            recoveries.spawn(async move {
                tokio::task::spawn_blocking(|| {
                    dev("postgres", &["down"]);
                    dev("postgres", &["up"]);
                })
                .await
                .unwrap();
                down.store(false, SeqCst);
            });
        }
    }
}
