//! The logging service: the audit trail of every service. It consumes `logging-events`
//! (group `logging-service`), stores each record once, answers `GET /logs?orderId=`, streams
//! new records live (`GET /logs/stream`), measures every consumer group's lag in Kafka
//! (`GET /api/lag`), gathers what every service says of its readiness and waits
//! (`GET /api/services`), and serves the operations page that shows all of it (`GET /`).

mod audit;
mod health;
mod lag;

pub use audit::{AuditHandler, LogRecord};
pub use health::{parse_watched, HealthReport, ServiceHealth, Watched};
pub use lag::{GroupLag, LagProbe, LagReport};

use std::sync::Arc;

use axum::response::Html;
use axum::routing::get;
use axum::Router;
use shop_events::group;
use shop_platform::config::{HttpConfig, KafkaConfig, StorageConfig};
use shop_platform::db::Pool;
use shop_platform::host::{Parts, ServiceHost};
use shop_platform::http::static_asset;
use shop_platform::transactional::InTransaction;
use shop_platform::Shutdown;
use tokio::sync::broadcast;

pub const SERVICE: &str = shop_events::service::LOGGING;

/// The files of the secrets folder this service reads, and no others (each deployment mounts
/// exactly these).
pub fn secret_files() -> Vec<String> {
    use shop_platform::secrets;
    vec![secrets::JWKS.to_owned()]
}

#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    /// HTTP port of the audit trail API and the operations page.
    #[arg(long = "http-port", env = "HTTP_PORT", default_value_t = 8085)]
    pub http_port: u16,
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub kafka: KafkaConfig,
    #[command(flatten)]
    pub storage: StorageConfig,
    /// The service instances whose readiness, and what their consumers wait for, the
    /// operations page shows: `instance=url,...` (e.g. `order-1=http://127.0.0.1:8081`).
    #[arg(long = "watched-services", env = "WATCHED_SERVICES", value_delimiter = ',', value_parser = parse_watched)]
    pub watched: Vec<Watched>,
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    /// Every audit record stored for the first time, for the live streams.
    pub arrivals: broadcast::Sender<LogRecord>,
    pub lag: Arc<LagProbe>,
    /// The services `GET /api/services` asks, and how.
    pub watched: Arc<[Watched]>,
    pub http: reqwest::Client,
    /// Triggered on shutdown so open streams end and the server can stop.
    pub streams: Shutdown,
}

impl AppState {
    pub fn new(pool: Pool, brokers: &str, watched: Vec<Watched>) -> Self {
        let (arrivals, _) = broadcast::channel(1024);
        Self {
            pool,
            arrivals,
            lag: Arc::new(LagProbe::new(brokers)),
            watched: watched.into(),
            http: reqwest::Client::new(),
            streams: Shutdown::new(),
        }
    }
}

pub struct Service {
    host: ServiceHost,
    streams: Shutdown,
}

impl Service {
    pub async fn build(config: Config) -> anyhow::Result<Service> {
        let parts =
            Parts::open(SERVICE, &config.http, config.http_port, &config.storage, &config.kafka, sqlx::migrate!())
                .await?;
        let state = AppState::new(parts.pool.clone(), &config.kafka.brokers, config.watched.clone());
        let handler = InTransaction {
            pool: parts.pool.clone(),
            apply: AuditHandler { arrivals: state.arrivals.clone() },
            outbox: None,
        };
        let streams = state.streams.clone();
        let consumer = parts.consumer(group::LOGGING_SERVICE, handler);
        let host = parts.host(router(state)).with_consumer(consumer);
        Ok(Service { host, streams })
    }

    pub fn port(&self) -> u16 {
        self.host.port()
    }

    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let (stop, streams) = (shutdown.clone(), self.streams);
        tokio::spawn(async move {
            stop.wait().await;
            streams.trigger();
        });
        self.host.run_until_stopped(shutdown).await
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { Html(include_str!("ops.html")) }))
        .route(
            "/assets/ops.js",
            get(|| async { static_asset("text/javascript; charset=utf-8", include_str!("ops.js")) }),
        )
        .route("/assets/ops.css", get(|| async { static_asset("text/css; charset=utf-8", include_str!("ops.css")) }))
        .route("/logs", get(audit::list))
        .route("/logs/stream", get(audit::stream))
        .route("/api/lag", get(lag::report))
        .route("/api/services", get(health::report))
        .with_state(state)
}
