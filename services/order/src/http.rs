//! The order API: the catalogue (anyone), and for the signed-in customer: create an order
//! (with `Idempotency-Key`, the customer's own), read it, list their orders, and follow its
//! stages live as Server-Sent Events. Another customer's order is a 404, as an unknown one.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::Stream;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shop_events::{Customer as Buyer, DeliveryId, Event, LineItem, Money, OrderCreated, OrderId, PaymentId, Stage};
use shop_platform::auth::Customer;
use shop_platform::db::{now_millis, rfc3339, Pool};
use shop_platform::http::{limits, routes, Api, ErrorDoc, UtoipaMethodRouterExt};
use shop_platform::http::{ApiError, ApiJson, ApiPath, ApiQuery};
use shop_platform::outbox::{Audit, Outbox};

use crate::catalogue;
use crate::live::{Follow, Followers};
use crate::new_order::{CreateOrderRequest, NewOrder};
use crate::payment_client::{PaymentClient, PaymentError};
use crate::status::OrderStatus;
use crate::store::{self, Order};

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Orders one customer may place at once, and how soon they may place one more.
const ORDER_BURST: u32 = 20;
const ORDER_EVERY: Duration = Duration::from_millis(500);
/// How soon a live stream reads the history again after the database failed it.
const HISTORY_RETRY: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub outbox: Outbox,
    pub instance: String,
    pub payments: PaymentClient,
    /// The live streams open on this replica, woken when their order changes.
    pub followers: Followers,
}

/// The order API, documented (`/openapi.json`).
pub fn api() -> Api<AppState> {
    let limit = limits::per_client("orders", ORDER_EVERY, ORDER_BURST);
    Api::new()
        .routes(routes!(products))
        .routes(routes!(create_order).layer(limit))
        .routes(routes!(list_orders))
        .routes(routes!(get_order))
        .routes(routes!(order_events))
}

/// The catalogue: what can be ordered, at what price.
#[utoipa::path(get, path = "/products", responses((status = 200, body = Vec<catalogue::ProductView>)))]
async fn products() -> Json<Vec<catalogue::ProductView>> {
    Json(catalogue::views())
}

/// An order as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    order_id: OrderId,
    status: OrderStatus,
    customer: Buyer,
    items: Vec<LineItem>,
    total: Money,
    payment_id: PaymentId,
    /// Where the customer pays (payment's page).
    payment_url: String,
    /// The parcel, once delivery opened it.
    delivery_id: Option<DeliveryId>,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339.
    updated_at: String,
    /// Each stage reached, in order.
    history: Vec<HistoryEntry>,
}

/// A stage the order reached, and when.
#[derive(Serialize, Clone, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct HistoryEntry {
    stage: Stage,
    /// The stage's number, 1 to 7.
    step: u8,
    /// RFC 3339.
    at: String,
}

fn entry((stage, at): (Stage, i64)) -> HistoryEntry {
    HistoryEntry { stage, step: stage.number(), at: rfc3339(at) }
}

fn view(order: Order, history: Vec<(Stage, i64)>) -> OrderView {
    let history = history.into_iter().map(entry).collect();
    OrderView {
        order_id: order.id,
        status: order.status,
        customer: order.customer,
        items: order.items,
        total: order.total,
        payment_id: order.payment_id,
        payment_url: order.payment_url,
        delivery_id: order.delivery_id,
        created_at: rfc3339(order.created_at),
        updated_at: rfc3339(order.updated_at),
        history,
    }
}

/// The order as the API shows it, its history read from storage.
async fn read_view(pool: &Pool, order: Order) -> Result<OrderView, ApiError> {
    let history = store::history(pool, order.id).await?;
    Ok(view(order, history))
}

/// Creates an order.
///
/// Creates an order for the signed-in customer. With an `Idempotency-Key`, the key is first
/// reserved for a fresh order id, so a retry (even a concurrent one) finds the same order and
/// the same payment; the same key with another body is a 422.
#[utoipa::path(post, path = "/orders", security(("bearer" = ["customer"])), request_body = CreateOrderRequest,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 200,
        description = "1 to 200 visible ASCII characters: a retry with the same key and body answers the same order")),
    responses(
        (status = 201, description = "Created, or (`Idempotent-Replayed: true`) the order this key made before.",
            body = OrderView, headers(("Idempotent-Replayed" = String, description = "`true` on a retry's answer"))),
        (status = 400, description = "A malformed `Idempotency-Key` or body.", body = ErrorDoc),
        (status = 422, description = "Not an order that can be placed (an unknown product, a wrong price, an \
            email not the customer's), or the key was used with another body.", body = ErrorDoc),
        (status = 429, description = "Too many orders at once: try again shortly.", body = ErrorDoc),
        (status = 502, description = "The payment service cannot open the payment now: try again.", body = ErrorDoc),
    ))]
#[tracing::instrument(skip_all, fields(order_id))]
async fn create_order(
    State(state): State<AppState>,
    customer: Customer,
    headers: HeaderMap,
    ApiJson(request): ApiJson<CreateOrderRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let new_order = NewOrder::parse(&request, &customer.email).map_err(ApiError::unprocessable)?;
    let order_id = match &key {
        Some(key) => {
            let hash = request_hash(&request);
            let (id, first) =
                store::reserve_key(&state.pool, &customer.email, key, OrderId::new(), &hash, now_millis()).await?;
            if first != hash {
                return Err(ApiError::unprocessable("this Idempotency-Key was used with a different request body"));
            }
            if let Some(existing) = store::find(&state.pool, id).await? {
                return replay(&state, existing).await;
            }
            id
        }
        None => OrderId::new(),
    };
    tracing::Span::current().record("order_id", tracing::field::display(order_id));
    let payment = state.payments.open_payment(order_id, new_order.total, &new_order.customer).await?;
    // The order is created, and enters its first stages, when its transaction stores it: after
    // the payment was opened (the time `orders-created` is produced, as the hops measure it).
    let now = now_millis();
    let order = Order {
        id: order_id,
        owner: customer.email.clone(),
        status: OrderStatus::Created,
        customer: new_order.customer,
        items: new_order.items,
        total: new_order.total,
        payment_id: payment.payment_id,
        payment_url: payment.payment_url,
        delivery_id: None,
        created_at: now,
        updated_at: now,
    };
    let mut tx = state.pool.begin().await?;
    if !store::insert(&mut tx, &order).await? {
        // A concurrent retry with the same key got there first.
        tx.rollback().await?;
        let existing = store::find(&state.pool, order_id)
            .await?
            .ok_or_else(|| ApiError::unavailable("order vanished, try again"))?;
        return replay(&state, existing).await;
    }
    store::add_history(&mut tx, order.id, OrderStatus::Created.stages_on_entry(), now).await?;
    let event = Event::OrderCreated(OrderCreated {
        customer: order.customer.clone(),
        items: order.items.clone(),
        total: order.total,
        payment_id: order.payment_id,
        payment_url: order.payment_url.clone(),
    });
    let message =
        format!("Order created: {} item(s), total {}, payment {}", order.items.len(), order.total, order.payment_id);
    let audit = Audit { instance: &state.instance, action: "order.created", message };
    state.outbox.enqueue(&mut tx, order.id, &event, audit, &tracing::Span::current()).await?;
    state.outbox.commit(tx).await?;
    tracing::debug!(total = %order.total, "Order created");
    let history = OrderStatus::Created.stages_on_entry().iter().map(|stage| (*stage, now)).collect();
    Ok((StatusCode::CREATED, Json(view(order, history))).into_response())
}

/// The answer to a retried create: the order the key made.
async fn replay(state: &AppState, existing: Order) -> Result<Response, ApiError> {
    let mut response = (StatusCode::CREATED, Json(read_view(&state.pool, existing).await?)).into_response();
    response.headers_mut().insert("idempotent-replayed", "true".parse().expect("valid header"));
    Ok(response)
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else { return Ok(None) };
    let key = value.to_str().map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))?.trim();
    if key.is_empty() || key.len() > 200 {
        return Err(ApiError::bad_request("Idempotency-Key must be 1 to 200 characters"));
    }
    Ok(Some(key.to_owned()))
}

/// A digest of the request as parsed, independent of key order and whitespace.
fn request_hash(request: &CreateOrderRequest) -> String {
    let canonical =
        serde_json::to_vec(&serde_json::to_value(request).expect("request serializes")).expect("value serializes");
    Sha256::digest(canonical).iter().map(|b| format!("{b:02x}")).collect()
}

/// The order and its history if `customer` placed it; a 404 if not, as for an order that does
/// not exist.
async fn owned(pool: &Pool, customer: &Customer, id: OrderId) -> Result<(Order, Vec<(Stage, i64)>), ApiError> {
    let found = store::find_with_history(pool, id).await?;
    found.filter(|(order, _)| customer.owns(&order.owner)).ok_or_else(|| not_found(id))
}

/// One of the signed-in customer's orders.
#[utoipa::path(get, path = "/orders/{order_id}", security(("bearer" = ["customer"])),
    params(("order_id" = OrderId, Path, description = "The order")),
    responses(
        (status = 200, body = OrderView),
        (status = 404, description = "No such order of this customer's.", body = ErrorDoc),
    ))]
async fn get_order(
    State(state): State<AppState>,
    customer: Customer,
    ApiPath(id): ApiPath<OrderId>,
) -> Result<Json<OrderView>, ApiError> {
    let (order, history) = owned(&state.pool, &customer, id).await?;
    Ok(Json(view(order, history)))
}

/// `GET /orders` takes no parameters: it lists the caller's own orders.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {}

/// The signed-in customer's orders, newest first (at most 50).
#[utoipa::path(get, path = "/orders", security(("bearer" = ["customer"])),
    responses((status = 200, body = Vec<OrderView>)))]
async fn list_orders(
    State(state): State<AppState>,
    customer: Customer,
    ApiQuery(ListQuery {}): ApiQuery<ListQuery>,
) -> Result<Json<Vec<OrderView>>, ApiError> {
    let mut views = Vec::new();
    for order in store::list_by_owner(&state.pool, &customer.email, 50).await? {
        views.push(read_view(&state.pool, order).await?);
    }
    Ok(Json(views))
}

fn not_found(id: OrderId) -> ApiError {
    ApiError::not_found(format!("no order {id}"))
}

/// An order's stages as they come (Server-Sent Events).
///
/// Streams each stage the order reaches, from the first, as a `stage` event, and ends after
/// `delivered`. A stage either replica writes is seen at once (`live`).
#[utoipa::path(get, path = "/orders/{order_id}/events", security(("bearer" = ["customer"])),
    params(("order_id" = OrderId, Path, description = "The order")),
    responses(
        (status = 200, description = "Server-Sent Events: one `stage` event per stage (`id` the step), its data \
            `{\"orderId\", \"stage\", \"step\", \"at\", \"done\"}`; the stream ends after `delivered`.",
            content_type = "text/event-stream", body = String),
        (status = 404, description = "No such order of this customer's.", body = ErrorDoc),
    ))]
async fn order_events(
    State(state): State<AppState>,
    customer: Customer,
    ApiPath(id): ApiPath<OrderId>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    // Follow before the first look, so nothing changed between the two goes unheard.
    let follow = state.followers.follow(id);
    let (_, history) = owned(&state.pool, &customer, id).await?;
    struct Cursor {
        pool: Pool,
        id: OrderId,
        sent: usize,
        pending: VecDeque<HistoryEntry>,
        follow: Follow,
        /// Whether to read the stored history before waiting for news.
        look: bool,
    }
    let pending: VecDeque<HistoryEntry> = history.into_iter().map(entry).collect();
    let cursor = Cursor { pool: state.pool.clone(), id, sent: pending.len(), pending, follow, look: false };
    let stream = futures::stream::unfold(cursor, |mut cursor| async move {
        loop {
            if let Some(next) = cursor.pending.pop_front() {
                let done = next.stage == Stage::Delivered;
                let data = serde_json::json!({"orderId": cursor.id, "stage": next.stage, "step": next.step, "at": next.at, "done": done});
                let event = SseEvent::default().event("stage").id(next.step.to_string()).data(data.to_string());
                return Some((Ok(event), cursor));
            }
            if cursor.sent == Stage::ALL.len() {
                return None;
            }
            if cursor.look {
                match store::history(&cursor.pool, cursor.id).await {
                    Ok(history) => {
                        cursor.look = false;
                        cursor.pending.extend(history.into_iter().skip(cursor.sent).map(entry));
                        cursor.sent += cursor.pending.len();
                    }
                    Err(error) => {
                        tracing::warn!(%error, "Cannot read order history for a live stream; trying again");
                        tokio::time::sleep(HISTORY_RETRY).await;
                    }
                }
                continue;
            }
            // What this replica stored comes with the news; anything else is read.
            let update = cursor.follow.changed().await.for_stream(cursor.sent);
            cursor.sent += update.stages.len();
            cursor.pending.extend(update.stages.into_iter().map(entry));
            cursor.look = update.look;
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

impl From<PaymentError> for ApiError {
    /// The customer is told to try again; what payment said goes to the log only.
    fn from(error: PaymentError) -> Self {
        match error {
            PaymentError::Credential(_) => ApiError::internal(error.to_string()),
            _ => ApiError::bad_gateway("the payment service cannot open the payment now; try again")
                .with_detail(error.to_string()),
        }
    }
}
