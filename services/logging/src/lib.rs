//! The logging service: the audit trail of every service. It consumes `logging-events`
//! (group `logging-service`), stores each record once, answers `GET /logs?orderId=`, streams
//! new records live (`GET /logs/stream`), measures every consumer group's lag in Kafka
//! (`GET /api/lag`), gathers what every service says of its readiness and waits
//! (`GET /api/services`), lists the dead letters and replays one (`GET /api/dead-letters`,
//! `POST /api/dead-letters/{topic}/{partition}/{offset}/replay`), keeps the lag of the last hour
//! (`GET /api/lag/history`), puts one order on one timeline (`GET /api/orders/{id}/timeline`),
//! and serves the operations
//! page that shows all of it (`GET /`).

mod audit;
mod dead_letters;
mod health;
mod lag;
mod order_view;

pub use audit::{AuditHandler, LogRecord};
pub use dead_letters::{DeadLetter, DeadLetterReport, DeadLetterTopic, Replayed, REPLAYED_FROM};
pub use health::{parse_watched, HealthReport, ServiceHealth, Watched};
pub use lag::{GroupLag, LagHistory, LagProbe, LagReport, LagSample};
pub use order_view::{Entry, StageReached, Timeline};

use std::sync::Arc;

use axum::response::Html;
use shop_events::group;
use shop_platform::config::{HttpConfig, KafkaConfig, StorageConfig};
use shop_platform::db::Pool;
use shop_platform::host::{Parts, ServiceHost};
use shop_platform::http::{routes, static_asset, Api};
use shop_platform::transactional::InTransaction;
use shop_platform::Shutdown;
use tokio::sync::broadcast;

pub const SERVICE: &str = shop_events::service::LOGGING;

/// This service's OpenAPI description, as its `/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    shop_platform::http::document(SERVICE, api())
}

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
    /// A trace UI (Jaeger's, e.g. `http://localhost:16686`) the operations page links each
    /// trace id to (`/trace/{id}`) and an order's traces to (`/search?tags=`); no links without.
    #[arg(long = "trace-ui-url", env = "TRACE_UI_URL")]
    pub trace_ui: Option<String>,
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    /// Every audit record stored for the first time, for the live streams.
    pub arrivals: broadcast::Sender<LogRecord>,
    pub lag: Arc<LagProbe>,
    /// Every group's lag over the last hour.
    pub lag_history: Arc<LagHistory>,
    /// Where trace ids link to (`TRACE_UI_URL`), without a trailing slash.
    pub trace_ui: Option<String>,
    /// Where the dead letters are read, and replayed with `producer`.
    pub brokers: String,
    pub producer: shop_platform::kafka::Producer,
    /// This instance's name, in the audit records it writes itself (a replay).
    pub instance: String,
    /// The services `GET /api/services` asks, and how.
    pub watched: Arc<[Watched]>,
    pub http: reqwest::Client,
    /// Triggered on shutdown so open streams end and the server can stop.
    pub streams: Shutdown,
}

impl AppState {
    pub fn new(pool: Pool, brokers: &str, watched: Vec<Watched>) -> anyhow::Result<Self> {
        let (arrivals, _) = broadcast::channel(1024);
        Ok(Self {
            pool,
            arrivals,
            lag: Arc::new(LagProbe::new(brokers)),
            lag_history: Arc::default(),
            trace_ui: None,
            brokers: brokers.to_owned(),
            producer: shop_platform::kafka::producer(brokers, "logging-replay")?,
            instance: SERVICE.to_owned(),
            watched: watched.into(),
            http: reqwest::Client::builder()
                .pool_idle_timeout(shop_platform::http::CLIENT_IDLE_TIMEOUT)
                .build()
                .expect("an HTTP client builds"),
            streams: Shutdown::new(),
        })
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
        let mut state = AppState::new(parts.pool.clone(), &config.kafka.brokers, config.watched.clone())?;
        state.instance = parts.instance.clone();
        state.producer = parts.producer.clone();
        state.trace_ui = config.trace_ui.as_deref().map(|url| url.trim_end_matches('/').to_owned());
        let handler = InTransaction {
            pool: parts.pool.clone(),
            apply: AuditHandler { arrivals: state.arrivals.clone() },
            outbox: None,
        };
        let streams = state.streams.clone();
        let consumer = parts.consumer(group::LOGGING_SERVICE, handler);
        let (probe, history) = (state.lag.clone(), state.lag_history.clone());
        let host = parts
            .host(router(state))
            .with_consumer(consumer)
            .with_task(move |shutdown| lag::sample(probe, history, shutdown));
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

/// The operations API and page, documented (`/openapi.json`).
pub fn api() -> Api<AppState> {
    Api::new()
        .routes(routes!(ops_page))
        .routes(routes!(ops_script))
        .routes(routes!(ops_style))
        .routes(routes!(audit::list))
        .routes(routes!(audit::stream))
        .routes(routes!(lag::report))
        .routes(routes!(lag::history))
        .routes(routes!(order_view::timeline))
        .routes(routes!(health::report))
        .routes(routes!(dead_letters::report))
        .routes(routes!(dead_letters::replay))
}

/// The operator's own `Authorization`, to ask the other services as them (their pushes, mails
/// and readiness details are the operator's to see, not logging's).
fn operator_authorization(headers: &axum::http::HeaderMap) -> &str {
    headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// The routes of `api`, serving with `state`.
pub fn router(state: AppState) -> Api {
    api().with_state(state)
}

/// The operations page (a shell: its data needs the operator's sign-in).
#[utoipa::path(get, path = "/", responses((status = 200, content_type = "text/html; charset=utf-8", body = String)))]
async fn ops_page() -> Html<&'static str> {
    Html(include_str!("ops.html"))
}

/// The operations page's script.
#[utoipa::path(get, path = "/assets/ops.js",
    responses((status = 200, content_type = "text/javascript; charset=utf-8", body = String)))]
async fn ops_script() -> axum::response::Response {
    static_asset("text/javascript; charset=utf-8", include_str!("ops.js"))
}

/// The operations page's style.
#[utoipa::path(get, path = "/assets/ops.css", responses((status = 200, content_type = "text/css; charset=utf-8", body = String)))]
async fn ops_style() -> axum::response::Response {
    static_asset("text/css; charset=utf-8", include_str!("ops.css"))
}
