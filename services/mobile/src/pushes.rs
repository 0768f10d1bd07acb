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
use shop_events::api::{PushOutcome, PushResult, Pushes, TracedPush, MAX_PUSHES};
use shop_events::service;
use shop_events::{OrderId, Stage};
use shop_platform::auth::{Caller, Customer, Role, ServiceCaller};
use shop_platform::db::{now_millis, rfc3339, Pool};
use shop_platform::http::{ApiError, ApiJson, ApiQuery};
use sqlx::Row;
use tokio::sync::broadcast;
use tracing::Instrument;

use crate::AppState;

/// A push as the phone keeps it.
#[derive(Serialize, Clone, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Received {
    #[serde(flatten)]
    pub push: Push,
    /// RFC 3339.
    pub received_at: String,
}

/// Stores a push.
///
/// Stores a push once: 201 when new (and tells the live streams), 200 when it had already
/// arrived.
#[utoipa::path(post, path = "/api/push", security(("bearer" = ["service:notification"])), request_body = Push,
    responses(
        (status = 201, description = "Stored."),
        (status = 200, description = "It had arrived before."),
        (status = 422, description = "Not a push mobile can store (no customer's email, a title too long).",
            body = shop_platform::http::ErrorDoc),
    ))]
pub async fn receive(
    State(state): State<AppState>,
    caller: ServiceCaller,
    ApiJson(push): ApiJson<Push>,
) -> Result<StatusCode, ApiError> {
    caller.require(service::NOTIFICATION)?;
    let push = valid(push)?;
    let mut tx = state.pool.begin().await?;
    let stored = store(&mut tx, &push).await?;
    tx.commit().await?;
    match stored {
        Some(received) => {
            tell(&state, received);
            Ok(StatusCode::CREATED)
        }
        None => Ok(StatusCode::OK),
    }
}

/// Stores several pushes.
///
/// Stores each push once, all in one transaction: 200 with each one's outcome; a push refused
/// for itself does not stop the others.
#[utoipa::path(post, path = "/api/pushes", security(("bearer" = ["service:notification"])), request_body = Pushes,
    responses(
        (status = 200, description = "What became of each push, in the order sent.", body = Vec<PushResult>),
        (status = 422, description = "Not 1 to 100 pushes.", body = shop_platform::http::ErrorDoc),
    ))]
pub async fn receive_many(
    State(state): State<AppState>,
    caller: ServiceCaller,
    ApiJson(sent): ApiJson<Pushes>,
) -> Result<Json<Vec<PushResult>>, ApiError> {
    caller.require(service::NOTIFICATION)?;
    if sent.pushes.is_empty() || sent.pushes.len() > MAX_PUSHES {
        return Err(ApiError::unprocessable(format!("send between 1 and {MAX_PUSHES} pushes")));
    }
    let mut results = Vec::with_capacity(sent.pushes.len());
    let mut arrived = Vec::new();
    let mut tx = state.pool.begin().await?;
    for TracedPush { push, traceparent } in sent.pushes {
        let id = push.id;
        let push = match valid(push) {
            Ok(push) => push,
            Err(error) => {
                results.push(PushResult { id, outcome: PushOutcome::Refused, error: Some(error.message) });
                continue;
            }
        };
        let span = tracing::info_span!("push stored", order_id = %push.order_id);
        shop_platform::trace::continue_from(&span, traceparent.as_deref());
        let stored = store(&mut tx, &push).instrument(span).await?;
        let outcome = if stored.is_some() { PushOutcome::Stored } else { PushOutcome::Duplicate };
        arrived.extend(stored);
        results.push(PushResult { id, outcome, error: None });
    }
    tx.commit().await?;
    for received in arrived {
        tell(&state, received);
    }
    Ok(Json(results))
}

/// The push with its recipient as the subject of their tokens, or why it is refused.
fn valid(mut push: Push) -> Result<Push, ApiError> {
    push.to = shop_events::Customer::parse_email(&push.to)
        .map(|email| shop_platform::auth::customer_subject(&email))
        .map_err(|_| ApiError::unprocessable("a push needs the email of the customer it is for in `to`"))?;
    if push.title.trim().is_empty() || push.title.len() > 200 || push.body.len() > 4000 {
        return Err(ApiError::unprocessable(
            "a push needs a title (at most 200 bytes) and a body of at most 4000 bytes",
        ));
    }
    Ok(push)
}

/// Stores `push` within `tx`; what arrived, or None when it had arrived before.
async fn store(tx: &mut shop_platform::db::Transaction<'_>, push: &Push) -> Result<Option<Received>, ApiError> {
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
    .execute(&mut **tx)
    .await?;
    Ok((inserted.rows_affected() == 1).then(|| Received { push: push.clone(), received_at: rfc3339(received_at) }))
}

/// Tells the live streams of a push stored for the first time (once committed).
fn tell(state: &AppState, received: Received) {
    tracing::debug!(order_id = %received.push.order_id, stage = %received.push.stage, "Push received");
    // No open stream is no error: the push is stored and listed all the same.
    let _ = state.arrivals.send(received);
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NotificationQuery {
    /// The order.
    order_id: OrderId,
}

/// The pushes about one order.
///
/// The pushes about one order, in the order they arrived: a customer's own (none for an order
/// of someone else's, as for an order with no push yet); every push of it for the operator
/// (the order view of the operations page).
#[utoipa::path(get, path = "/api/notifications", security(("bearer" = ["customer"]), ("bearer" = ["operator"])),
    params(NotificationQuery), responses((status = 200, body = Vec<Received>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<NotificationQuery>,
) -> Result<Json<Vec<Received>>, ApiError> {
    let recipient = match caller.0.role {
        Role::Operator => None,
        _ => Some(caller.customer()?.email),
    };
    Ok(Json(stored(&state.pool, recipient.as_deref(), query.order_id).await?))
}

/// The pushes of `order_id` (to `recipient` only, when given).
async fn stored(pool: &Pool, recipient: Option<&str>, order_id: OrderId) -> Result<Vec<Received>, ApiError> {
    let rows = sqlx::query(
        "SELECT id, order_id, recipient, stage, title, body, sent_at, received_at FROM pushes \
         WHERE ($1 IS NULL OR recipient = $1) AND order_id = $2 ORDER BY received_at, id",
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

/// The pushes about one order as they arrive (Server-Sent Events).
///
/// `GET /api/notifications/stream?orderId=`: the order's pushes as `push` events, those
/// already here first, then each as it arrives. The stream subscribes before it reads the
/// stored ones, so a push arriving in between is sent too; ids sent are remembered, so none
/// is sent twice.
#[utoipa::path(get, path = "/api/notifications/stream", security(("bearer" = ["customer"])), params(NotificationQuery),
    responses(
        (status = 200, description = "Server-Sent Events: a `push` event per push (`id` the push's id, data a \
            `Received`), those already here first, then each as it arrives.", content_type = "text/event-stream",
            body = String),
    ))]
pub async fn stream(
    State(state): State<AppState>,
    customer: Customer,
    ApiQuery(query): ApiQuery<NotificationQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let arrivals = state.arrivals.subscribe();
    let backlog = stored(&state.pool, Some(&customer.email), query.order_id).await?;
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
                    match stored(&self.pool, Some(&self.recipient), self.order_id).await {
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
