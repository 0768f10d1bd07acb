//! Tracing set up once per process: human-readable lines by default, JSON lines with
//! `LOG_FORMAT=json`, levels from `RUST_LOG`.

use tracing_subscriber::{fmt, EnvFilter};

const DEFAULT_FILTER: &str =
    "info,rdkafka=warn,sqlx=warn,tansu=warn,tansu_broker=warn,tansu_storage=warn,tansu_sans_io=warn,tower_http=warn";

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = fmt().with_env_filter(filter).with_target(false);
    // A second init (tests in one process) keeps the first subscriber.
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}
