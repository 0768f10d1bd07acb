//! The courier API, for the courier only: read deliveries and mark them shipped, then
//! delivered; and the courier's page (`/` and `/courier`, a static shell anyone may load,
//! whose data needs the courier's sign-in) that does the same in a browser.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use shop_events::{Customer, DeliveryId, DeliveryProgressed, Event, LineItem, OrderId};
use shop_platform::auth::Courier;
use shop_platform::db::{now_millis, rfc3339, Pool};
use shop_platform::http::{static_asset, ApiError, ApiPath};
use shop_platform::outbox::{Audit, Outbox};
use shop_platform::trace::TraceParent;

use crate::status::{CourierAction, DeliveryStatus};
use crate::store::{self, Delivery};

#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub outbox: Outbox,
    pub instance: String,
}

pub fn router(state: AppState) -> Router {
    let courier_page = || async { Html(include_str!("courier.html")) };
    Router::new()
        .route("/", get(courier_page))
        .route("/courier", get(courier_page))
        .route(
            "/assets/courier.js",
            get(|| async { static_asset("text/javascript; charset=utf-8", include_str!("courier.js")) }),
        )
        .route(
            "/assets/courier.css",
            get(|| async { static_asset("text/css; charset=utf-8", include_str!("courier.css")) }),
        )
        .route("/deliveries", get(list_deliveries))
        .route("/deliveries/{order_id}", get(get_delivery))
        .route("/deliveries/{order_id}/shipped", post(mark_shipped))
        .route("/deliveries/{order_id}/delivered", post(mark_delivered))
        .with_state(state)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryView {
    order_id: OrderId,
    delivery_id: DeliveryId,
    status: DeliveryStatus,
    customer: Customer,
    items: Vec<LineItem>,
    created_at: String,
    updated_at: String,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        DeliveryView {
            order_id: d.order_id,
            delivery_id: d.id,
            status: d.status,
            customer: d.customer,
            items: d.items,
            created_at: rfc3339(d.created_at),
            updated_at: rfc3339(d.updated_at),
        }
    }
}

async fn list_deliveries(State(state): State<AppState>, _: Courier) -> Result<Json<Vec<DeliveryView>>, ApiError> {
    Ok(Json(store::recent(&state.pool, 200).await?.into_iter().map(DeliveryView::from).collect()))
}

async fn get_delivery(
    State(state): State<AppState>,
    _: Courier,
    ApiPath(order_id): ApiPath<OrderId>,
) -> Result<Json<DeliveryView>, ApiError> {
    let delivery = store::find(&state.pool, order_id).await?.ok_or_else(|| not_found(order_id))?;
    Ok(Json(delivery.into()))
}

async fn mark_shipped(
    state: State<AppState>,
    _: Courier,
    order_id: ApiPath<OrderId>,
) -> Result<(StatusCode, Json<DeliveryView>), ApiError> {
    courier(state, order_id, CourierAction::MarkShipped).await
}

async fn mark_delivered(
    state: State<AppState>,
    _: Courier,
    order_id: ApiPath<OrderId>,
) -> Result<(StatusCode, Json<DeliveryView>), ApiError> {
    courier(state, order_id, CourierAction::MarkDelivered).await
}

/// Applies a courier action: 202 when accepted (the order follows through Kafka), 409 when
/// the delivery is not at the stage the action needs, 404 when there is no delivery.
#[tracing::instrument(skip_all, fields(order_id = %order_id, action = ?action))]
async fn courier(
    State(state): State<AppState>,
    ApiPath(order_id): ApiPath<OrderId>,
    action: CourierAction,
) -> Result<(StatusCode, Json<DeliveryView>), ApiError> {
    let (from, to) = (action.legal_source(), action.target());
    let now = now_millis();
    let trace = TraceParent::root();
    let mut tx = state.pool.begin().await?;
    let Some(delivery) = store::update_status(&mut tx, order_id, from, to, now).await? else {
        let current = store::find(&mut *tx, order_id).await?;
        tx.rollback().await?;
        return Err(match current {
            None => not_found(order_id),
            Some(delivery) => match delivery.status.transition(action) {
                Err(illegal) => ApiError::conflict(illegal.to_string()),
                Ok(_) => ApiError::unavailable("the delivery changed concurrently, try again"),
            },
        });
    };
    let progressed = DeliveryProgressed { delivery_id: delivery.id.clone() };
    let event = match action {
        CourierAction::MarkShipped => Event::DeliveryShipped(progressed),
        CourierAction::MarkDelivered => Event::DeliveryDelivered(progressed),
    };
    let action = format!("delivery.{}", to.as_str());
    let message = format!("Courier marked delivery {} {}", delivery.id, to.as_str());
    let audit = Audit { instance: &state.instance, action: &action, message };
    state.outbox.enqueue(&mut tx, order_id, &event, audit, Some(&trace)).await?;
    state.outbox.commit(tx).await?;
    tracing::debug!(status = to.as_str(), "Courier action accepted");
    Ok((StatusCode::ACCEPTED, Json(delivery.into())))
}

fn not_found(order_id: OrderId) -> ApiError {
    ApiError::not_found(format!("no delivery for order {order_id}"))
}
