//! The mobile service: the customer's app, and the system's sign-in. It serves the app's web
//! front end (catalogue, cart, checkout, the order's live timeline), signs people in
//! (`/auth/...`, the tokens every service verifies), receives push notifications from the
//! notification service (`POST /api/push`), keeps them once each, and lists them to their
//! customer (`GET /api/notifications?orderId=`) and streams them live to the app.

mod accounts;
mod pushes;

pub use accounts::Identity;
pub use pushes::{Push, Received};

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use shop_platform::config::{HttpConfig, StorageConfig};
use shop_platform::db::Pool;
use shop_platform::host::ServiceHost;
use shop_platform::http::{limits, static_asset};
use shop_platform::{db, http as web, Shutdown};
use tokio::sync::broadcast;

pub const SERVICE: &str = shop_events::service::MOBILE;

/// The files of the secrets folder this service reads, and no others (each deployment mounts
/// exactly these).
pub fn secret_files() -> Vec<String> {
    use shop_platform::secrets;
    vec![
        secrets::JWKS.to_owned(),
        secrets::signing_key(SERVICE),
        secrets::COURIER_PASSWORD.to_owned(),
        secrets::OPERATOR_PASSWORD.to_owned(),
    ]
}

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
    /// Signs people in.
    pub identity: Arc<Identity>,
}

impl AppState {
    pub fn new(pool: Pool, order_url: &str, identity: Identity) -> Self {
        let (arrivals, _) = broadcast::channel(256);
        Self {
            pool,
            arrivals,
            order_url: order_url.trim_end_matches('/').to_owned(),
            streams: Shutdown::new(),
            identity: Arc::new(identity),
        }
    }
}

pub struct Service {
    host: ServiceHost,
    streams: Shutdown,
}

impl Service {
    pub async fn build(config: Config) -> anyhow::Result<Service> {
        let secrets = config.storage.secrets();
        // The app calls order's API from the browser.
        let web = web::Web::new(&config.http, &secrets, SERVICE)?
            .calling(&config.order_url)
            .map_err(|problem| anyhow::anyhow!("ORDER_URL: {problem}"))?;
        let identity = Identity::load(&secrets)?;
        let pool = db::open(&config.storage.database_url(SERVICE), sqlx::migrate!("./migrations")).await?;
        let state = AppState::new(pool.clone(), &config.order_url, identity);
        let streams = state.streams.clone();
        let router = web::finish(router(state), vec![web::storage_check(pool)], Default::default(), &web);
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

/// Sign-ins one address may try at once, and how soon it may try one more.
const SIGN_IN_BURST: u32 = 10;
const SIGN_IN_EVERY: Duration = Duration::from_secs(3);

pub fn router(state: AppState) -> Router {
    let limited = |route: axum::routing::MethodRouter<AppState>| {
        route.layer(limits::per_client("sign-ins", SIGN_IN_EVERY, SIGN_IN_BURST))
    };
    Router::new()
        .route("/", get(|| async { Html(include_str!("web/index.html")) }))
        .route("/app.css", get(|| async { static_asset("text/css; charset=utf-8", include_str!("web/app.css")) }))
        .route("/app.js", get(|| async { static_asset("text/javascript; charset=utf-8", include_str!("web/app.js")) }))
        .route("/api/config", get(app_config))
        .route("/.well-known/jwks.json", get(accounts::key_set))
        .route("/auth/customers", limited(post(accounts::register)))
        .route("/auth/sign-in", limited(post(accounts::sign_in)))
        .route("/auth/staff/sign-in", limited(post(accounts::staff_sign_in)))
        .route("/api/push", post(pushes::receive))
        .route("/api/notifications", get(pushes::list))
        .route("/api/notifications/stream", get(pushes::stream))
        .with_state(state)
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

#[cfg(test)]
mod tests {
    /// The app's timeline names the seven stages as crates/events does, in the same order:
    /// the pushes and the order's history carry those names, and the page matches on them.
    #[test]
    fn the_app_names_the_stages_as_the_events_do() {
        let script = include_str!("web/app.js");
        let table = &script[script.find("const STAGES = [").expect("the stage table")..];
        let table = &table[..table.find("];").expect("its end")];
        let named: Vec<&str> =
            table.split("stage: '").skip(1).map(|rest| &rest[..rest.find('\'').expect("a quoted name")]).collect();
        let stages: Vec<&str> = shop_events::Stage::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(named, stages);
    }
}
