//! The mobile service: the customer's app. It serves the app's web front end (catalogue,
//! cart, checkout, the order's live timeline), receives push notifications from the
//! notification service (`POST /api/push`), keeps them once each, lists them
//! (`GET /api/notifications?orderId=`) and streams them live to the app.

mod catalogue;
mod pushes;

pub use catalogue::{Product, CATALOGUE};
pub use pushes::{Push, Received};

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use shop_platform::config::{HttpConfig, StorageConfig};
use shop_platform::db::Pool;
use shop_platform::host::ServiceHost;
use shop_platform::{db, http as web, Shutdown};
use tokio::sync::broadcast;

pub const SERVICE: &str = "mobile";

#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    /// HTTP port of the app and its push inbox.
    #[arg(long = "http-port", env = "HTTP_PORT", default_value_t = 8080)]
    pub http_port: u16,
    /// Base URL of the order API as the customer's browser reaches it.
    #[arg(long = "order-url", env = "ORDER_URL", default_value = "http://localhost:8081")]
    pub order_url: String,
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub storage: StorageConfig,
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    /// Every push stored for the first time, for the live streams.
    pub arrivals: broadcast::Sender<Received>,
    /// The order API's base URL as the browser sees it.
    pub order_url: String,
    /// Triggered on shutdown so open streams end and the server can stop.
    pub streams: Shutdown,
}

impl AppState {
    pub fn new(pool: Pool, order_url: &str) -> Self {
        let (arrivals, _) = broadcast::channel(256);
        Self { pool, arrivals, order_url: order_url.trim_end_matches('/').to_owned(), streams: Shutdown::new() }
    }
}

pub struct Service {
    host: ServiceHost,
    streams: Shutdown,
}

impl Service {
    pub async fn build(config: Config) -> anyhow::Result<Service> {
        let pool = db::open(&config.storage.database_url(SERVICE), sqlx::migrate!("./migrations")).await?;
        let state = AppState::new(pool.clone(), &config.order_url);
        let streams = state.streams.clone();
        let router = web::finish(router(state), vec![web::storage_check(pool)]);
        let listener = web::bind(&config.http.host, config.http_port).await?;
        Ok(Service { host: ServiceHost::new(listener, router), streams })
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
        .route("/", get(|| async { Html(include_str!("web/index.html")) }))
        .route("/app.css", get(|| async { asset("text/css; charset=utf-8", include_str!("web/app.css")) }))
        .route("/app.js", get(|| async { asset("text/javascript; charset=utf-8", include_str!("web/app.js")) }))
        .route("/api/config", get(app_config))
        .route("/api/products", get(|| async { Json(CATALOGUE) }))
        .route("/api/push", post(pushes::receive))
        .route("/api/notifications", get(pushes::list))
        .route("/api/notifications/stream", get(pushes::stream))
        .with_state(state)
}

/// A file of the front end, embedded in the binary.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    ([(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")], body)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AppConfig {
    order_url: String,
}

/// What the front end needs to know about its surroundings: where the order API is.
async fn app_config(State(state): State<AppState>) -> Json<AppConfig> {
    Json(AppConfig { order_url: state.order_url })
}
