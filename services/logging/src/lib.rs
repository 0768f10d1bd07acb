//! The logging service: the audit trail of every service. It consumes `logging-events`
//! (group `logging-service`), stores each record once, and answers `GET /logs?orderId=`.

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use shop_events::{group, Event, OrderId, Topic};
use shop_platform::config::{HttpConfig, KafkaConfig, StorageConfig};
use shop_platform::consumer::{HandleError, Handler, Incoming, Subscription};
use shop_platform::db::{now_millis, rfc3339, Pool};
use shop_platform::host::ServiceHost;
use shop_platform::http::{ApiError, ApiQuery};
use shop_platform::{db, http as web, kafka, Shutdown};
use sqlx::Row;

pub const SERVICE: &str = "logging";

#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    /// HTTP port of the audit trail API.
    #[arg(long = "http-port", env = "HTTP_PORT", default_value_t = 8085)]
    pub http_port: u16,
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub kafka: KafkaConfig,
    #[command(flatten)]
    pub storage: StorageConfig,
}

pub struct Service {
    host: ServiceHost,
}

impl Service {
    pub async fn build(config: Config) -> anyhow::Result<Service> {
        let instance = config.http.instance(SERVICE);
        let pool = db::open(&config.storage.database_url(SERVICE), sqlx::migrate!("./migrations")).await?;
        let producer = kafka::producer(&config.kafka.brokers, &instance)?;
        let router = Router::new().route("/logs", get(list_logs)).with_state(pool.clone());
        let router = web::finish(router, web::standard_checks(pool.clone(), producer.clone()));
        let listener = web::bind(&config.http.host, config.http_port).await?;
        let subscription = Subscription {
            brokers: config.kafka.brokers.clone(),
            group: group::LOGGING_SERVICE,
            topics: vec![Topic::LoggingEvents],
            client_id: instance,
        };
        let host =
            ServiceHost::new(listener, router).with_consumer(subscription, Arc::new(AuditHandler { pool }), producer);
        Ok(Service { host })
    }

    pub fn port(&self) -> u16 {
        self.host.port()
    }

    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.host.run_until_stopped(shutdown).await
    }
}

struct AuditHandler {
    pool: Pool,
}

#[async_trait]
impl Handler for AuditHandler {
    async fn handle(&self, incoming: &Incoming) -> Result<(), HandleError> {
        let Event::AuditRecorded(record) = &incoming.event else {
            return Err(HandleError::Permanent(format!("logging does not handle {}", incoming.event.event_type())));
        };
        let envelope = &incoming.envelope;
        sqlx::query(
            "INSERT INTO audit_log (event_id, order_id, source, instance, action, message, occurred_at, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(envelope.id.to_string())
        .bind(envelope.order_id.to_string())
        .bind(&envelope.source)
        .bind(&record.instance)
        .bind(&record.action)
        .bind(&record.message)
        .bind(envelope.occurred_at.timestamp_millis())
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    order_id: Option<OrderId>,
    #[serde(default = "default_limit")]
    limit: i64,
}

fn default_limit() -> i64 {
    200
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LogRecord {
    event_id: String,
    order_id: String,
    source: String,
    instance: String,
    action: String,
    message: String,
    occurred_at: String,
}

/// The audit records of one order (oldest first), or the latest of all orders.
async fn list_logs(
    State(pool): State<Pool>,
    ApiQuery(query): ApiQuery<LogQuery>,
) -> Result<Json<Vec<LogRecord>>, ApiError> {
    if !(1..=1000).contains(&query.limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    const COLUMNS: &str = "event_id, order_id, source, instance, action, message, occurred_at";
    let rows = match query.order_id {
        Some(order_id) => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM audit_log WHERE order_id = $1 ORDER BY occurred_at, event_id LIMIT $2"
            ))
            .bind(order_id.to_string())
            .bind(query.limit)
            .fetch_all(&pool)
            .await?
        }
        None => {
            sqlx::query(&format!("SELECT {COLUMNS} FROM audit_log ORDER BY occurred_at DESC, event_id DESC LIMIT $1"))
                .bind(query.limit)
                .fetch_all(&pool)
                .await?
        }
    };
    let records = rows
        .into_iter()
        .map(|row| {
            Ok(LogRecord {
                event_id: row.try_get(0)?,
                order_id: row.try_get(1)?,
                source: row.try_get(2)?,
                instance: row.try_get(3)?,
                action: row.try_get(4)?,
                message: row.try_get(5)?,
                occurred_at: rfc3339(row.try_get(6)?),
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(Json(records))
}
