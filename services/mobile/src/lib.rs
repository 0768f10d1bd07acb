//! The mobile service: the customer's app. It receives push notifications from the
//! notification service (`POST /api/push`), keeps them once each, lists them
//! (`GET /api/notifications?orderId=`), and serves the app's web front end.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use shop_events::{OrderId, Stage};
use shop_platform::config::{HttpConfig, StorageConfig};
use shop_platform::db::{now_millis, rfc3339, Pool};
use shop_platform::host::ServiceHost;
use shop_platform::http::{ApiError, ApiJson, ApiQuery};
use shop_platform::{db, http as web, Shutdown};
use sqlx::Row;

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

pub struct Service {
    host: ServiceHost,
}

impl Service {
    pub async fn build(config: Config) -> anyhow::Result<Service> {
        let pool = db::open(&config.storage.database_url(SERVICE), sqlx::migrate!("./migrations")).await?;
        let router = web::finish(router(pool.clone()), vec![web::storage_check(pool)]);
        let listener = web::bind(&config.http.host, config.http_port).await?;
        Ok(Service { host: ServiceHost::new(listener, router) })
    }

    pub fn port(&self) -> u16 {
        self.host.port()
    }

    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.host.run_until_stopped(shutdown).await
    }
}

pub fn router(pool: Pool) -> Router {
    Router::new()
        .route("/", get(|| async { Html(include_str!("app.html")) }))
        .route("/api/push", post(receive_push))
        .route("/api/notifications", get(list_notifications))
        .with_state(pool)
}

/// A push notification as the notification service sends it.
#[derive(Deserialize, Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Push {
    pub id: uuid::Uuid,
    pub order_id: OrderId,
    pub stage: Stage,
    pub title: String,
    pub body: String,
    pub sent_at: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Received {
    #[serde(flatten)]
    push: Push,
    received_at: String,
}

/// Stores a push once: 201 when new, 200 when it had already arrived.
async fn receive_push(State(pool): State<Pool>, ApiJson(push): ApiJson<Push>) -> Result<StatusCode, ApiError> {
    if push.title.trim().is_empty() || push.title.len() > 200 || push.body.len() > 4000 {
        return Err(ApiError::unprocessable(
            "a push needs a title (at most 200 bytes) and a body of at most 4000 bytes",
        ));
    }
    let inserted = sqlx::query(
        "INSERT INTO pushes (id, order_id, stage, title, body, sent_at, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(push.id.to_string())
    .bind(push.order_id.to_string())
    .bind(push.stage.as_str())
    .bind(&push.title)
    .bind(&push.body)
    .bind(&push.sent_at)
    .bind(now_millis())
    .execute(&pool)
    .await?;
    if inserted.rows_affected() == 1 {
        tracing::info!(order_id = %push.order_id, stage = %push.stage, "Push received");
        Ok(StatusCode::CREATED)
    } else {
        Ok(StatusCode::OK)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NotificationQuery {
    order_id: OrderId,
}

async fn list_notifications(
    State(pool): State<Pool>,
    ApiQuery(query): ApiQuery<NotificationQuery>,
) -> Result<Json<Vec<Received>>, ApiError> {
    let rows = sqlx::query(
        "SELECT id, order_id, stage, title, body, sent_at, received_at FROM pushes WHERE order_id = $1 ORDER BY received_at, id",
    )
    .bind(query.order_id.to_string())
    .fetch_all(&pool)
    .await?;
    let mut received = Vec::with_capacity(rows.len());
    for row in rows {
        let bad = || ApiError::internal("a stored push is corrupt");
        received.push(Received {
            push: Push {
                id: uuid::Uuid::parse_str(row.try_get::<String, _>(0)?.as_str()).map_err(|_| bad())?,
                order_id: OrderId::parse(row.try_get::<String, _>(1)?.as_str()).map_err(|_| bad())?,
                stage: Stage::parse(row.try_get::<String, _>(2)?.as_str()).ok_or_else(bad)?,
                title: row.try_get(3)?,
                body: row.try_get(4)?,
                sent_at: row.try_get(5)?,
            },
            received_at: rfc3339(row.try_get(6)?),
        });
    }
    Ok(Json(received))
}
