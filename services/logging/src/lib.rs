//! The logging service: the audit trail of every service. It consumes `logging-events`
//! (group `logging-service`), stores each record once, answers `GET /logs?orderId=`, streams
//! new records live (`GET /logs/stream`), measures every consumer group's lag in Kafka
//! (`GET /api/lag`) and serves the operations page that shows both (`GET /`).

mod audit;
mod lag;

pub use audit::{AuditHandler, LogRecord};
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
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    /// Every audit record stored for the first time, for the live streams.
    pub arrivals: broadcast::Sender<LogRecord>,
    pub lag: Arc<LagProbe>,
    /// Triggered on shutdown so open streams end and the server can stop.
    pub streams: Shutdown,
}

impl AppState {
    pub fn new(pool: Pool, brokers: &str) -> Self {
        let (arrivals, _) = broadcast::channel(1024);
        Self { pool, arrivals, lag: Arc::new(LagProbe::new(brokers)), streams: Shutdown::new() }
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
        let state = AppState::new(parts.pool.clone(), &config.kafka.brokers);
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
        .with_state(state)
}
