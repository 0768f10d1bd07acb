//! How long a write waits for another replica's write on one SQLite file: two processes on one
//! file (as the two order replicas on a laptop), each committing short write transactions with
//! pauses between them, for a few seconds; the commits' durations with the busy handler every
//! connection now has (vendor/sqlx-sqlite, a try every quarter millisecond) against SQLite's
//! own (`PRAGMA busy_timeout`: 1, 2, 5, 10... ms between tries).
//!
//!   cargo run --release -p shop-platform --example busy_wait [SECONDS]

use std::time::{Duration, Instant};

use shop_platform::db;

/// One replica: commits for `seconds`, then prints each commit's duration in microseconds.
async fn replica(url: &str, sqlite_handler: bool, seconds: u64) {
    let pool = db::open(url, sqlx::migrate::Migrator::DEFAULT).await.expect("open");
    if sqlite_handler {
        sqlx::query("PRAGMA busy_timeout = 5000").execute(&pool).await.expect("pragma");
    }
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut took = Vec::new();
    let mut turn = 0_u64;
    while Instant::now() < until {
        let started = Instant::now();
        // Five statements, as a consumer's transaction (inbox, update, history, outbox...),
        // with the async thread free in between as when the handler awaits other work.
        let mut tx = pool.begin().await.expect("begin");
        for _ in 0..5 {
            sqlx::query("INSERT INTO notes (body) VALUES ($1)")
                .bind("x".repeat(200))
                .execute(&mut *tx)
                .await
                .expect("insert");
            tokio::task::yield_now().await;
        }
        tx.commit().await.expect("commit");
        took.push(started.elapsed().as_micros().to_string());
        turn += 1;
        // A pause of 0-1 ms between writes, as a replica's writes come at load.
        tokio::time::sleep(Duration::from_micros(turn * 7919 % 1000)).await;
    }
    println!("{}", took.join(" "));
    pool.close().await;
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[i] as f64 / 1000.0
}

/// Two replicas at once on a new file, with one handler or the other.
async fn compare(sqlite_handler: bool, seconds: u64) {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let url = format!("sqlite://{}?mode=rwc", folder.path().join("shared.db").display());
    let pool = db::open(&url, sqlx::migrate::Migrator::DEFAULT).await.expect("open");
    sqlx::query("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .execute(&pool)
        .await
        .expect("create");
    pool.close().await;
    let me = std::env::current_exe().expect("this program");
    let start = || {
        tokio::process::Command::new(&me)
            .args(["replica", &url, if sqlite_handler { "sqlite" } else { "vendored" }, &seconds.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("a replica")
    };
    let (first, second) = (start(), start());
    let (first, second) = tokio::join!(first.wait_with_output(), second.wait_with_output());
    let mut took: Vec<u64> = [first.expect("first"), second.expect("second")]
        .iter()
        .flat_map(|out| {
            String::from_utf8_lossy(&out.stdout).split_whitespace().map(|t| t.parse().unwrap()).collect::<Vec<_>>()
        })
        .collect();
    took.sort();
    println!(
        "{:<40} {:>6} commits/s  p50 {:6.2} ms  p90 {:6.2} ms  p99 {:6.2} ms  max {:6.2} ms",
        if sqlite_handler { "SQLite's handler (PRAGMA busy_timeout)" } else { "the vendored handler (250 µs tries)" },
        took.len() as u64 / seconds,
        percentile(&took, 0.5),
        percentile(&took, 0.9),
        percentile(&took, 0.99),
        took.last().map_or(0.0, |&t| t as f64 / 1000.0),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("replica") {
        return replica(&args[2], args[3] == "sqlite", args[4].parse().expect("seconds")).await;
    }
    let seconds = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    for _ in 0..2 {
        compare(true, seconds).await;
        compare(false, seconds).await;
    }
}
