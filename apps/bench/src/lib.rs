//! `shop bench`: the whole journey under load, measured against the broker's own limit.
//!
//! Starts the system (`shop up` as a child, on free ports, fresh data) or targets a running
//! one, lets many customers run complete journeys through the public APIs, and reports
//! journeys and Kafka records per second, client-side latencies, the latency of every event
//! hop (from the services' own times), what each process costs, and, in the same run, how
//! many records per second the broker moves for a bare producer and consumer.
//! docs/performance.md explains the method and the latest figures.
//!
//! The `shop` binary runs it as `shop bench` ([`run`]); it depends on this crate, not the
//! other way round, so what the bench needs of it comes in as arguments: the bench starts
//! `shop up` as the binary it runs in (`std::env::current_exe`), and is handed how that
//! binary makes a data folder's secrets ([`PrepareSecrets`]).

mod args;
mod ceiling;
mod customer;
pub mod duration;
mod harvest;
mod hops;
mod latency;
mod processes;
mod report;
mod schedule;
mod system;
mod tokens;
mod watermarks;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use shop_platform::secrets::Secrets;

pub use args::BenchArgs;
use customer::{Customer, Outcome};
use latency::Latencies;
use report::{HarvestNotes, Journeys, Kafka, Machine, Report, Row, Settings};
use schedule::{Length, Schedule};
use system::System;

/// Failures listed in the report; the rest are counted.
const FAILURES_SHOWN: usize = 5;

/// Makes what is missing in the secrets folder of a data folder, as `shop up` does on that
/// folder, and returns it: the bench makes them before it starts `shop up` there, to sign its
/// callers' tokens with the same keys.
pub type PrepareSecrets = fn(data_dir: &std::path::Path) -> anyhow::Result<Secrets>;

/// `shop bench`: measures, prints the report (and writes it as JSON with `--json`), and fails
/// when a journey failed or none completed in the window.
pub async fn run(args: BenchArgs, prepare_secrets: PrepareSecrets) -> anyhow::Result<()> {
    anyhow::ensure!(args.customers > 0, "--customers must be at least 1");
    anyhow::ensure!(args.journeys != Some(0), "--journeys must be at least 1");
    let load_before = load_average();
    let system = System::start_or_attach(&args, prepare_secrets).await?;
    let outcome = tokio::select! {
        report = measure(&args, &system, load_before) => report,
        _ = shop_platform::shutdown::wait_for_signal() => Err(anyhow::anyhow!("interrupted")),
    };
    system.stop().await;
    let report = outcome?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("cannot write {}", path.display()))?;
        println!("\nFigures written to {}", path.display());
    }
    anyhow::ensure!(report.journeys.failed == 0, "{} journey(s) failed", report.journeys.failed);
    anyhow::ensure!(report.journeys.completed_in_window > 0, "no journey completed in the measured window");
    Ok(())
}

/// What is read at each end of the window.
struct Snapshot {
    at: Instant,
    watermarks: Option<watermarks::Watermarks>,
    processes: BTreeMap<String, processes::Reading>,
}

async fn snapshot(system: &System) -> anyhow::Result<Snapshot> {
    let before = Instant::now();
    let watermarks = match &system.endpoints.brokers {
        Some(brokers) => Some(watermarks::read_async(brokers).await?),
        None => None,
    };
    let at = before + (Instant::now() - before) / 2;
    let family = processes::family(system.up_pid, &system.up_label);
    Ok(Snapshot { at, watermarks, processes: processes::read_all(&family) })
}

async fn measure(args: &BenchArgs, system: &System, load_before: f64) -> anyhow::Result<Report> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(args.customers * 2)
        // The pool hands out the connection used last first, so under a steady load some
        // wait long enough for the service to close them.
        .pool_idle_timeout(shop_platform::http::CLIENT_IDLE_TIMEOUT)
        .build()?;
    let length = match args.journeys {
        Some(count) => Length::Journeys(count),
        None => Length::Duration(args.duration),
    };
    let check_times = system.endpoints.tokens.time_a_check()?;
    let schedule = Schedule::new(args.warmup, length, args.rate);
    println!(
        "Running {} customers: {:?} warm-up, then {}",
        args.customers,
        args.warmup,
        match length {
            Length::Journeys(n) => format!("{n} measured journeys"),
            Length::Duration(d) => format!("{d:?} measured"),
        }
    );
    let customers: Vec<_> = (0..args.customers)
        .map(|number| {
            let customer = Customer {
                number,
                http: http.clone(),
                endpoints: system.endpoints.clone(),
                follow: args.follow,
                poll_interval: args.poll_interval,
                journey_timeout: args.journey_timeout,
            };
            tokio::spawn(customer.run(schedule.clone()))
        })
        .collect();

    tokio::time::sleep_until(schedule.warmup_end().into()).await;
    let start = snapshot(system).await?;
    schedule.window_closed().await;
    let end = snapshot(system).await?;
    let window = (end.at - start.at).as_secs_f64();
    let backlog = consumer_lag(&http, &system.endpoints).await;

    let mut outcome = Outcome::default();
    let mut failed = 0;
    for customer in customers {
        let mut done = customer.await?;
        failed += done.failures.len() as u64;
        outcome.failures.extend(done.failures.drain(..).take(FAILURES_SHOWN));
        outcome.completions.extend(done.completions);
        outcome.measured.extend(done.measured);
        outcome.latencies.merge(done.latencies);
        outcome.polls += done.polls;
        outcome.streams += done.streams;
    }
    outcome.failures.truncate(FAILURES_SHOWN);
    let completed_in_window = outcome.completions.iter().filter(|t| **t >= start.at && **t <= end.at).count() as u64;
    let elapsed_total = schedule.warmup_end().elapsed().as_secs_f64() + args.warmup.as_secs_f64();
    println!(
        "Window over: {completed_in_window} journeys in {window:.1} s, {failed} failed; reading every measured order's hops…"
    );

    let harvest = harvest::collect(&http, &system.endpoints, &outcome.measured, args.settle).await;
    let load_after = load_average();

    let processes = processes::costs(&start.processes, &end.processes, window);
    let kafka = match (&system.endpoints.brokers, &start.watermarks, &end.watermarks) {
        (Some(brokers), Some(first), Some(last)) => {
            let by_topic = watermarks::growth(first, last);
            let records: i64 = by_topic.values().sum();
            let records_per_second = records as f64 / window;
            let (ceiling, ceiling_error) = if args.ceiling_duration.is_zero() {
                (None, None)
            } else {
                println!("Measuring the broker's own ceiling for {:?}…", args.ceiling_duration);
                match measure_ceiling(brokers, args.ceiling_duration).await {
                    Ok(ceiling) => (Some(ceiling), None),
                    Err(error) => {
                        eprintln!("The broker's ceiling could not be measured: {error:#}");
                        (None, Some(format!("{error:#}")))
                    }
                }
            };
            Some(Kafka {
                records,
                records_per_second,
                records_per_journey: if completed_in_window > 0 {
                    records as f64 / completed_in_window as f64
                } else {
                    0.0
                },
                ratio_to_ceiling: ceiling.as_ref().map(|c| records_per_second / c.records_per_second.max(1.0)),
                ceiling,
                ceiling_error,
                by_topic,
            })
        }
        _ => None,
    };

    let token_checks = token_checks(&outcome, &processes, completed_in_window, check_times);
    let mut report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        system: system.description.clone(),
        machine: Machine { cpus: std::thread::available_parallelism().map_or(0, |n| n.get()), load_before, load_after },
        settings: Settings {
            customers: args.customers,
            warmup_seconds: args.warmup.as_secs_f64(),
            window_seconds: window,
            rate: args.rate,
            follow: args.follow,
            poll_interval_ms: args.poll_interval.as_secs_f64() * 1000.0,
        },
        journeys: Journeys {
            completed_in_window,
            per_second: completed_in_window as f64 / window,
            measured: outcome.measured.len() as u64,
            failed,
            failures: outcome.failures,
            polls_per_second: outcome.polls as f64 / elapsed_total.max(1e-9),
        },
        kafka,
        client: rows(&outcome.latencies, &customer::CLIENT_METRICS),
        hops: rows(&harvest.latencies, &harvest::hop_names()),
        harvest: HarvestNotes {
            orders: harvest.orders,
            incomplete_orders: harvest.incomplete,
            negative_hops: harvest.negative,
            seconds: harvest.seconds,
        },
        token_checks,
        processes,
        backlog,
        goals: vec![],
    };
    report.judge();
    Ok(report)
}

/// Token checks per journey and their cost against the services' CPU per journey.
fn token_checks(
    outcome: &Outcome,
    processes: &[processes::Cost],
    completed_in_window: u64,
    times: tokens::CheckTimes,
) -> report::TokenChecks {
    /// create, pay, shipped, delivered; order → payment; notification → mobile, one per stage.
    const FIXED: f64 = 4.0 + 1.0 + shop_events::Stage::ALL.len() as f64;
    /// The journey's new customer token, first seen by each order replica and by the payment
    /// replica it calls: an upper bound.
    const FIRST: f64 = 3.0;
    let journeys = outcome.completions.len().max(1) as f64;
    let per_journey = FIXED + (outcome.polls + outcome.streams) as f64 / journeys;
    let first_per_journey = FIRST.min(per_journey);
    let cpu_ms_per_journey =
        (first_per_journey * times.first + (per_journey - first_per_journey) * times.again) / 1000.0;
    let services: f64 = processes.iter().filter(|p| p.is_service()).map(|p| p.cpu_seconds).sum();
    let services_ms_per_journey = services * 1000.0 / completed_in_window.max(1) as f64;
    report::TokenChecks {
        per_journey,
        first_per_journey,
        micros_first: times.first,
        micros_again: times.again,
        cpu_ms_per_journey,
        share_of_services_cpu: cpu_ms_per_journey / services_ms_per_journey.max(1e-9),
    }
}

/// Records each consumer group had not committed yet, as logging's `/api/lag` reads them
/// from Kafka: a group that cannot keep up shows a backlog that grows with the window.
async fn consumer_lag(http: &reqwest::Client, endpoints: &system::Endpoints) -> BTreeMap<String, Option<i64>> {
    let Some(logging) = &endpoints.logging else { return BTreeMap::new() };
    let request = http.get(format!("{logging}/api/lag")).header("authorization", endpoints.tokens.operator());
    let report: serde_json::Value = match request.send().await {
        Ok(response) => response.json().await.unwrap_or_default(),
        Err(_) => return BTreeMap::new(),
    };
    report["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| Some((g["group"].as_str()?.to_owned(), g["lag"].as_i64())))
        .collect()
}

async fn measure_ceiling(brokers: &str, seconds: Duration) -> anyhow::Result<ceiling::Ceiling> {
    let (partitions, replication) = {
        let brokers = brokers.to_owned();
        tokio::task::spawn_blocking(move || watermarks::topic_shape(&brokers)).await??
    };
    ceiling::measure(brokers, seconds, partitions, replication).await
}

fn rows(latencies: &Latencies, names: &[impl AsRef<str>]) -> Vec<Row> {
    names
        .iter()
        .map(AsRef::as_ref)
        .filter_map(|name| Some(Row { name: name.to_owned(), summary: latencies.summary(name)? }))
        .collect()
}

/// The 1-minute load average: how busy the machine was, this run and anything else.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}
