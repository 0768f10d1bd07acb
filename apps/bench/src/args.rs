//! The options of `shop bench`, each with its flag; `shop`'s command line takes them as they
//! are (`Command::Bench`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// `shop bench`: starts the system (`shop up` on free ports, fresh data, embedded broker unless
/// `--kafka-brokers`) or targets a running one (`--order-url` ...), and drives customers
/// through complete journeys. See docs/performance.md.
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Concurrent customers, each running one journey after another.
    #[arg(long, default_value_t = 32)]
    pub customers: usize,
    /// Length of the measured window, after the warm-up (e.g. 30s, 2m).
    #[arg(long, value_parser = crate::duration::parse, default_value = "30s")]
    pub duration: Duration,
    /// Measure this many journeys instead of a fixed duration.
    #[arg(long, conflicts_with = "duration")]
    pub journeys: Option<u64>,
    /// Load before the window opens; journeys started then are not measured.
    #[arg(long, value_parser = crate::duration::parse, default_value = "5s")]
    pub warmup: Duration,
    /// Start at most this many journeys per second, all customers together (default: each
    /// customer starts the next journey as soon as the last one ends).
    #[arg(long)]
    pub rate: Option<f64>,
    /// How a waiting customer follows the order: through its event stream, as the app does
    /// (`GET /orders/{id}/events`), or by asking `GET /orders/{id}` every `--poll-interval`.
    #[arg(long, value_enum, default_value_t = Follow::Stream)]
    pub follow: Follow,
    /// How often a waiting customer asks `GET /orders/{id}` for the status (`--follow poll`).
    #[arg(long = "poll-interval", value_parser = crate::duration::parse, default_value = "10ms")]
    pub poll_interval: Duration,
    /// A journey not delivered within this long fails.
    #[arg(long = "journey-timeout", value_parser = crate::duration::parse, default_value = "60s")]
    pub journey_timeout: Duration,
    /// After the window, how long to wait for the last pushes, mails and audit records.
    #[arg(long, value_parser = crate::duration::parse, default_value = "60s")]
    pub settle: Duration,
    /// How long a bare producer and consumer measure the broker's ceiling (0s to skip).
    #[arg(long = "ceiling-duration", value_parser = crate::duration::parse, default_value = "5s")]
    pub ceiling_duration: Duration,
    /// Also write the figures to this file as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Kafka cluster: passed to the `shop up` started here, or where a running system's
    /// topics are (for records/s and the ceiling).
    #[arg(long = "kafka-brokers")]
    pub kafka_brokers: Option<String>,
    /// PostgreSQL for the `shop up` started here (`postgres://user:password@host:port/NAME`).
    #[arg(long = "database-url")]
    pub database_url: Option<String>,
    /// Partitions of each topic the `shop up` started here creates.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// Passed to the `shop up` started here: the kernel places its service processes.
    #[arg(long = "no-cpu-pinning")]
    pub no_cpu_pinning: bool,
    /// Passed to the `shop up` started here: where its embedded broker keeps its records.
    #[arg(long = "broker-storage", default_value = "disk", value_parser = ["disk", "memory"])]
    pub broker_storage: String,
    /// `RUST_LOG` for the `shop up` started here (default: the services' own default, info).
    #[arg(long = "rust-log")]
    pub rust_log: Option<String>,
    /// Show the system's output instead of keeping it in a log file.
    #[arg(long = "show-logs")]
    pub show_logs: bool,
    /// Keep the data folder and the log of the `shop up` started here.
    #[arg(long = "keep-data")]
    pub keep_data: bool,
    /// A running system instead: its order replicas (comma-separated).
    #[arg(long = "order-url", value_delimiter = ',')]
    pub order_urls: Vec<String>,
    /// The running system's payment replicas (comma-separated).
    #[arg(long = "payment-url", value_delimiter = ',')]
    pub payment_urls: Vec<String>,
    /// The running system's delivery service.
    #[arg(long = "delivery-url")]
    pub delivery_url: Option<String>,
    /// The running system's logging service (audit times for the hops).
    #[arg(long = "logging-url")]
    pub logging_url: Option<String>,
    /// The running system's mobile service (push times).
    #[arg(long = "mobile-url")]
    pub mobile_url: Option<String>,
    /// The running system's mailbox (mail times).
    #[arg(long = "email-url")]
    pub email_url: Option<String>,
    /// The running system's secrets folder (`secrets` in its data folder): the bench signs its
    /// callers' tokens with its key for people.
    #[arg(long = "secrets-dir")]
    pub secrets_dir: Option<PathBuf>,
    /// The pid of the running system's `shop up`, to read its processes' CPU and memory.
    #[arg(long = "up-pid")]
    pub up_pid: Option<u32>,
}

/// How a customer learns that the order moved on.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Follow {
    /// One `GET /orders/{id}/events` per journey, read as stages come.
    Stream,
    /// `GET /orders/{id}` every `--poll-interval`.
    Poll,
}
