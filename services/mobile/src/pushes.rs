//! The phone's push inbox: pushes arrive from the notification service (only it may send
//! them), are stored once each (the sender's id makes a resend land once), and are listed
//! per order and streamed live as Server-Sent Events to the customer they are addressed to,
//! and to nobody else.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Json;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
pub use shop_events::api::Push;
use shop_events::service;
use shop_events::{OrderId, Stage};
use shop_platform::auth::{Customer, ServiceCaller};
use shop_platform::db::{now_millis, rfc3339, Pool};
use shop_platform::http::{ApiError, ApiJson, ApiQuery};
use sqlx::Row;
use tokio::sync::broadcast;

use crate::AppState;

/// A push as the phone keeps it.
#[derive(Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Received {
    #[serde(flatten)]
    pub push: Push,
    pub received_at: String,
}

/// Stores a push once: 201 when new (and tells the live streams), 200 when it had already
/// arrived.
pub async fn receive(
    State(state): State<AppState>,
    caller: ServiceCaller,
    ApiJson(mut push): ApiJson<Push>,
) -> Result<StatusCode, ApiError> {
    caller.require(service::NOTIFICATION)?;
    push.to = shop_events::Customer::parse_email(&push.to)
        .map(|email| shop_platform::auth::customer_subject(&email))
        .map_err(|_| ApiError::unprocessable("a push needs the email of the customer it is for in `to`"))?;
    if push.title.trim().is_empty() || push.title.len() > 200 || push.body.len() > 4000 {
        return Err(ApiError::unprocessable(
            "a push needs a title (at most 200 bytes) and a body of at most 4000 bytes",
        ));
    }
    let received_at = now_millis();
    let inserted = sqlx::query(
        "INSERT INTO pushes (id, order_id, recipient, stage, title, body, sent_at, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
    )
    .bind(push.id.to_string())
    .bind(push.order_id.to_string())
    .bind(&push.to)
    .bind(push.stage.as_str())
    .bind(&push.title)
    .bind(&push.body)
    .bind(&push.sent_at)
    .bind(received_at)
    .execute(&state.pool)
    .await?;
    if inserted.rows_affected() == 1 {
        tracing::debug!(order_id = %push.order_id, stage = %push.stage, "Push received");
        // No open stream is no error: the push is stored and listed all the same.
        let _ = state.arrivals.send(Received { push, received_at: rfc3339(received_at) });
        Ok(StatusCode::CREATED)
    } else {
        Ok(StatusCode::OK)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationQuery {
    order_id: OrderId,
}

/// The caller's pushes about one order, in the order they arrived (none for an order of
/// someone else's, as for an order with no push yet).
pub async fn list(
    State(state): State<AppState>,
    customer: Customer,
    ApiQuery(query): ApiQuery<NotificationQuery>,
) -> Result<Json<Vec<Received>>, ApiError> {
    Ok(Json(stored(&state.pool, &customer.email, query.order_id).await?))
}

async fn stored(pool: &Pool, recipient: &str, order_id: OrderId) -> Result<Vec<Received>, ApiError> {
    let rows = sqlx::query(
        "SELECT id, order_id, recipient, stage, title, body, sent_at, received_at FROM pushes \
         WHERE recipient = $1 AND order_id = $2 ORDER BY received_at, id",
    )
    .bind(recipient)
    .bind(order_id.to_string())
    .fetch_all(pool)
    .await?;
    let mut received = Vec::with_capacity(rows.len());
    for row in rows {
        let bad = || ApiError::internal("a stored push is corrupt");
        received.push(Received {
            push: Push {
                id: uuid::Uuid::parse_str(row.try_get::<String, _>("id")?.as_str()).map_err(|_| bad())?,
                order_id: OrderId::parse(row.try_get::<String, _>("order_id")?.as_str()).map_err(|_| bad())?,
                to: row.try_get("recipient")?,
                stage: Stage::parse(row.try_get::<String, _>("stage")?.as_str()).ok_or_else(bad)?,
                title: row.try_get("title")?,
                body: row.try_get("body")?,
                sent_at: row.try_get("sent_at")?,
            },
            received_at: rfc3339(row.try_get("received_at")?),
        });
    }
    Ok(received)
}

/// `GET /api/notifications/stream?orderId=`: the order's pushes as `push` events, those
/// already here first, then each as it arrives. The stream subscribes before it reads the
/// stored ones, so a push arriving in between is sent too; ids sent are remembered, so none
/// is sent twice.
pub async fn stream(
    State(state): State<AppState>,
    customer: Customer,
    ApiQuery(query): ApiQuery<NotificationQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let arrivals = state.arrivals.subscribe();
    let backlog = stored(&state.pool, &customer.email, query.order_id).await?;
    let follower = Follower {
        pool: state.pool.clone(),
        recipient: customer.email,
        order_id: query.order_id,
        sent: backlog.iter().map(|r| r.push.id).collect(),
        pending: backlog.into(),
        arrivals,
    };
    let stop = state.streams.clone();
    let events = futures::stream::unfold(follower, Follower::next)
        .map(|received| {
            let data = serde_json::to_string(&received).expect("a push serializes");
            Ok(SseEvent::default().event("push").id(received.push.id.to_string()).data(data))
        })
        .take_until(async move { stop.wait().await });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

struct Follower {
    pool: Pool,
    recipient: String,
    order_id: OrderId,
    sent: HashSet<uuid::Uuid>,
    pending: VecDeque<Received>,
    arrivals: broadcast::Receiver<Received>,
}

impl Follower {
    /// The next push of the order not sent yet; waits for one to arrive.
    async fn next(mut self) -> Option<(Received, Self)> {
        loop {
            if let Some(received) = self.pending.pop_front() {
                return Some((received, self));
            }
            match self.arrivals.recv().await {
                Ok(received) => {
                    if received.push.order_id == self.order_id
                        && received.push.to == self.recipient
                        && self.sent.insert(received.push.id)
                    {
                        self.pending.push_back(received);
                    }
                }
                // Too slow to keep up with every arrival: read the order's pushes again.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    match stored(&self.pool, &self.recipient, self.order_id).await {
                        Ok(all) => {
                            let fresh = all.into_iter().filter(|r| !self.sent.contains(&r.push.id)).collect::<Vec<_>>();
                            self.sent.extend(fresh.iter().map(|r| r.push.id));
                            self.pending.extend(fresh);
                        }
                        Err(error) => {
                            tracing::warn!(%error, "Cannot read pushes for a live stream; ending it");
                            return None;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
