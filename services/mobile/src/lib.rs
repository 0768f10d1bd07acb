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
use axum::Json;
use serde::Serialize;
use shop_platform::config::{HttpConfig, StorageConfig};
use shop_platform::db::Pool;
use shop_platform::host::ServiceHost;
use shop_platform::http::{limits, routes, static_asset, Api, UtoipaMethodRouterExt};
use shop_platform::{db, http as web, Shutdown};
use tokio::sync::broadcast;

pub const SERVICE: &str = shop_events::service::MOBILE;

/// This service's OpenAPI description, as its `/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    shop_platform::http::document(SERVICE, api())
}

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
        let router = web::finish(api().with_state(state), vec![web::storage_check(pool)], Default::default(), &web);
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

/// The app, the sign-in and the pushes, documented (`/openapi.json`).
pub fn api() -> Api<AppState> {
    let limited = || limits::per_client("sign-ins", SIGN_IN_EVERY, SIGN_IN_BURST);
    Api::new()
        .routes(routes!(app_page))
        .routes(routes!(app_style))
        .routes(routes!(app_script))
        .routes(routes!(app_config))
        .routes(routes!(accounts::key_set))
        .routes(routes!(accounts::register).layer(limited()))
        .routes(routes!(accounts::sign_in).layer(limited()))
        .routes(routes!(accounts::staff_sign_in).layer(limited()))
        .routes(routes!(pushes::receive))
        .routes(routes!(pushes::receive_many))
        .routes(routes!(pushes::list))
        .routes(routes!(pushes::stream))
}

/// The routes of `api`, serving with `state`.
pub fn router(state: AppState) -> Api {
    api().with_state(state)
}

/// The customer's app (a shell: its data needs a sign-in).
#[utoipa::path(get, path = "/", responses((status = 200, content_type = "text/html; charset=utf-8", body = String)))]
async fn app_page() -> Html<&'static str> {
    Html(include_str!("web/index.html"))
}

/// The app's style.
#[utoipa::path(get, path = "/app.css", responses((status = 200, content_type = "text/css; charset=utf-8", body = String)))]
async fn app_style() -> axum::response::Response {
    static_asset("text/css; charset=utf-8", include_str!("web/app.css"))
}

/// The app's script.
#[utoipa::path(get, path = "/app.js",
    responses((status = 200, content_type = "text/javascript; charset=utf-8", body = String)))]
async fn app_script() -> axum::response::Response {
    static_asset("text/javascript; charset=utf-8", include_str!("web/app.js"))
}

/// Where the app finds what it calls.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct AppConfig {
    /// The order API's address.
    order_url: String,
}

/// What the front end needs to know about its surroundings: where the order API is.
#[utoipa::path(get, path = "/api/config", responses((status = 200, body = AppConfig)))]
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
