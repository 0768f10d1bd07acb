//! The audit trail: one row per `logging-events` record (the event id makes a redelivery a
//! no-op), listed per order or latest first, and streamed live as Server-Sent Events.

use std::collections::HashSet;
use std::convert::Infallible;

use async_trait::async_trait;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Json;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use shop_events::{Event, OrderId};
use shop_platform::auth::Operator;
use shop_platform::consumer::{HandleError, Incoming};
use shop_platform::db::{now_millis, rfc3339, Pool, Transaction};
use shop_platform::http::{ApiError, ApiQuery};
use shop_platform::transactional::Apply;
use sqlx::Row;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::AppState;

/// Stores each audit record once and tells the live streams about the new ones.
pub struct AuditHandler {
    pub arrivals: broadcast::Sender<LogRecord>,
}

#[async_trait]
impl Apply for AuditHandler {
    type Applied = LogRecord;

    async fn apply(&self, tx: &mut Transaction<'_>, incoming: &Incoming) -> Result<Option<LogRecord>, HandleError> {
        let Event::AuditRecorded(record) = &incoming.event else {
            return Err(HandleError::Permanent(
                "unexpected_event",
                format!("logging does not handle {}", incoming.event.event_type()),
            ));
        };
        let envelope = &incoming.envelope;
        let occurred_at = envelope.occurred_at.timestamp_millis();
        // The record's consumer span continues the trace of the work that wrote it.
        let trace_id = shop_platform::trace::trace_id(&incoming.span);
        let record = LogRecord {
            event_id: envelope.id,
            order_id: envelope.order_id,
            source: envelope.source.clone(),
            instance: record.instance.clone(),
            action: record.action.clone(),
            message: record.message.clone(),
            occurred_at: rfc3339(occurred_at),
            trace_id,
        };
        // The event id is the inbox here: a redelivery inserts nothing.
        Ok(insert(tx, &record, occurred_at).await?.then_some(record))
    }

    fn committed(&self, applied: Vec<LogRecord>) {
        for record in applied {
            // No open stream is no error: the record is stored and listed all the same.
            let _ = self.arrivals.send(record);
        }
    }
}

/// Stores `record`, which occurred at `occurred_at` (ms); false when its event id is stored
/// already.
pub(crate) async fn insert(
    tx: &mut Transaction<'_>,
    record: &LogRecord,
    occurred_at: i64,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO audit_log \
         (event_id, order_id, source, instance, action, message, occurred_at, received_at, trace_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(record.event_id.to_string())
    .bind(record.order_id.to_string())
    .bind(&record.source)
    .bind(&record.instance)
    .bind(&record.action)
    .bind(&record.message)
    .bind(occurred_at)
    .bind(now_millis())
    .bind(record.trace_id.clone())
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Only this order's records (oldest first).
    order_id: Option<OrderId>,
    /// At most this many, 1 to 1000 (200 when not given).
    #[serde(default = "default_limit")]
    #[param(minimum = 1, maximum = 1000)]
    limit: i64,
}

fn default_limit() -> i64 {
    200
}

#[derive(Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogRecord {
    pub event_id: Uuid,
    pub order_id: OrderId,
    pub source: String,
    pub instance: String,
    pub action: String,
    pub message: String,
    pub occurred_at: String,
    /// The trace of the work that wrote the record, where it was traced (docs/observability.md).
    pub trace_id: Option<String>,
}

/// The audit records.
///
/// `GET /logs`: the audit records of one order (oldest first), or the latest of all orders
/// (newest first).
#[utoipa::path(get, path = "/logs", security(("bearer" = ["operator"])), params(LogQuery), responses(
    (status = 200, body = Vec<LogRecord>),
    (status = 400, description = "A limit not between 1 and 1000.", body = shop_platform::http::ErrorDoc),
))]
pub async fn list(
    State(state): State<AppState>,
    _: Operator,
    ApiQuery(query): ApiQuery<LogQuery>,
) -> Result<Json<Vec<LogRecord>>, ApiError> {
    if !(1..=1000).contains(&query.limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    Ok(Json(stored(&state.pool, query.order_id, query.limit).await?))
}

pub(crate) async fn stored(pool: &Pool, order_id: Option<OrderId>, limit: i64) -> Result<Vec<LogRecord>, sqlx::Error> {
    const COLUMNS: &str = "event_id, order_id, source, instance, action, message, occurred_at, trace_id";
    let rows = match order_id {
        Some(order_id) => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM audit_log WHERE order_id = $1 ORDER BY occurred_at, event_id LIMIT $2"
            ))
            .bind(order_id.to_string())
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
        None => {
            sqlx::query(&format!("SELECT {COLUMNS} FROM audit_log ORDER BY occurred_at DESC, event_id DESC LIMIT $1"))
                .bind(limit)
                .fetch_all(pool)
                .await?
        }
    };
    rows.into_iter()
        .map(|row| {
            let id = |column: &str| {
                let text: String = row.try_get(column)?;
                Uuid::parse_str(&text)
                    .map_err(|_| sqlx::Error::Decode(format!("stored audit record has a bad {column}").into()))
            };
            Ok(LogRecord {
                event_id: id("event_id")?,
                order_id: OrderId(id("order_id")?),
                source: row.try_get("source")?,
                instance: row.try_get("instance")?,
                action: row.try_get("action")?,
                message: row.try_get("message")?,
                occurred_at: rfc3339(row.try_get("occurred_at")?),
                trace_id: row.try_get("trace_id")?,
            })
        })
        .collect()
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Only this order's records.
    order_id: Option<OrderId>,
}

/// How many of the latest records a stream of every order starts with.
const BACKLOG: i64 = 200;

/// The audit records as they are stored (Server-Sent Events).
///
/// `GET /logs/stream[?orderId=]`: `record` events, oldest first: the stored records (one
/// order's, or the latest 200), then each new one as it is stored. It subscribes before
/// reading, so nothing stored in between is missed, and skips what the backlog already
/// sent. A stream that falls too far behind ends; the browser reconnects and starts over.
#[utoipa::path(get, path = "/logs/stream", security(("bearer" = ["operator"])), params(StreamQuery), responses(
    (status = 200, description = "Server-Sent Events: a `record` event per audit record (data a `LogRecord`).",
        content_type = "text/event-stream", body = String),
))]
pub async fn stream(
    State(state): State<AppState>,
    _: Operator,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let arrivals = state.arrivals.subscribe();
    let mut backlog = match query.order_id {
        Some(order_id) => stored(&state.pool, Some(order_id), 1000).await?,
        None => stored(&state.pool, None, BACKLOG).await?,
    };
    if query.order_id.is_none() {
        backlog.reverse();
    }
    let already_sent: HashSet<Uuid> = backlog.iter().map(|r| r.event_id).collect();
    let wanted = query.order_id;
    let live = futures::stream::unfold(arrivals, |mut arrivals| async move {
        match arrivals.recv().await {
            Ok(record) => Some((Some(record), arrivals)),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "A live audit stream fell behind; ending it so the page starts over");
                None
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    })
    .filter_map(move |record| {
        let keep = record.filter(|r| wanted.is_none_or(|id| r.order_id == id) && !already_sent.contains(&r.event_id));
        async move { keep }
    });
    let stop = state.streams.clone();
    let events = futures::stream::iter(backlog)
        .chain(live)
        .map(|record| {
            let data = serde_json::to_string(&record).expect("an audit record serializes");
            Ok(SseEvent::default().event("record").id(record.event_id.to_string()).data(data))
        })
        .take_until(async move { stop.wait().await });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
