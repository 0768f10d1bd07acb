//! The phone's push inbox: pushes arrive from the notification service, are stored once
//! each (the sender's id makes a resend land once), listed per order, and streamed live to
//! the app as Server-Sent Events.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Json;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use shop_events::{OrderId, Stage};
use shop_platform::db::{now_millis, rfc3339, Pool};
use shop_platform::http::{ApiError, ApiJson, ApiQuery};
use sqlx::Row;
use tokio::sync::broadcast;

use crate::AppState;

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
pub async fn receive(State(state): State<AppState>, ApiJson(push): ApiJson<Push>) -> Result<StatusCode, ApiError> {
    if push.title.trim().is_empty() || push.title.len() > 200 || push.body.len() > 4000 {
        return Err(ApiError::unprocessable(
            "a push needs a title (at most 200 bytes) and a body of at most 4000 bytes",
        ));
    }
    let received_at = now_millis();
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
    .bind(received_at)
    .execute(&state.pool)
    .await?;
    if inserted.rows_affected() == 1 {
        tracing::info!(order_id = %push.order_id, stage = %push.stage, "Push received");
        // No open stream is no error: the push is stored and listed all the same.
        let _ = state.arrivals.send(Received { push, received_at: rfc3339(received_at) });
        Ok(StatusCode::CREATED)
    } else {
        Ok(StatusCode::OK)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationQuery {
    order_id: OrderId,
}

/// The pushes of one order, in the order they arrived.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<NotificationQuery>,
) -> Result<Json<Vec<Received>>, ApiError> {
    Ok(Json(stored(&state.pool, query.order_id).await?))
}

async fn stored(pool: &Pool, order_id: OrderId) -> Result<Vec<Received>, ApiError> {
    let rows = sqlx::query(
        "SELECT id, order_id, stage, title, body, sent_at, received_at FROM pushes WHERE order_id = $1 ORDER BY received_at, id",
    )
    .bind(order_id.to_string())
    .fetch_all(pool)
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
    Ok(received)
}

/// `GET /api/notifications/stream?orderId=`: the order's pushes as `push` events, those
/// already here first, then each as it arrives. The stream subscribes before it reads the
/// stored ones, so a push arriving in between is sent too; ids sent are remembered, so none
/// is sent twice.
pub async fn stream(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<NotificationQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let arrivals = state.arrivals.subscribe();
    let backlog = stored(&state.pool, query.order_id).await?;
    let follower = Follower {
        pool: state.pool.clone(),
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
                    if received.push.order_id == self.order_id && self.sent.insert(received.push.id) {
                        self.pending.push_back(received);
                    }
                }
                // Too slow to keep up with every arrival: read the order's pushes again.
                Err(broadcast::error::RecvError::Lagged(_)) => match stored(&self.pool, self.order_id).await {
                    Ok(all) => {
                        let fresh = all.into_iter().filter(|r| !self.sent.contains(&r.push.id)).collect::<Vec<_>>();
                        self.sent.extend(fresh.iter().map(|r| r.push.id));
                        self.pending.extend(fresh);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "Cannot read pushes for a live stream; ending it");
                        return None;
                    }
                },
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
