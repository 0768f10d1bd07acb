//! The courier API, for the courier only: read deliveries and mark them shipped, then
//! delivered; and the courier's page (`/` and `/courier`, a static shell anyone may load,
//! whose data needs the courier's sign-in) that does the same in a browser.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, Response};
use axum::Json;
use serde::Serialize;
use shop_events::{Customer, DeliveryId, DeliveryProgressed, Event, LineItem, OrderId};
use shop_platform::auth::Courier;
use shop_platform::db::{now_millis, rfc3339, Pool};
use shop_platform::http::{routes, static_asset, Api, ApiError, ApiPath, ErrorDoc};
use shop_platform::outbox::{Audit, Outbox};

use crate::status::{CourierAction, DeliveryStatus};
use crate::store::{self, Delivery};

#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub outbox: Outbox,
    pub instance: String,
}

/// The courier API and page, documented (`/openapi.json`).
pub fn api() -> Api<AppState> {
    Api::new()
        .routes(routes!(home))
        .routes(routes!(courier_page))
        .routes(routes!(courier_script))
        .routes(routes!(courier_style))
        .routes(routes!(list_deliveries))
        .routes(routes!(get_delivery))
        .routes(routes!(mark_shipped))
        .routes(routes!(mark_delivered))
}

/// The courier's page (a shell: its data needs the courier's sign-in).
#[utoipa::path(get, path = "/", responses((status = 200, content_type = "text/html; charset=utf-8", body = String)))]
async fn home() -> Html<&'static str> {
    Html(include_str!("courier.html"))
}

/// The courier's page, by its name.
#[utoipa::path(get, path = "/courier", responses((status = 200, content_type = "text/html; charset=utf-8", body = String)))]
async fn courier_page() -> Html<&'static str> {
    Html(include_str!("courier.html"))
}

/// The courier page's script.
#[utoipa::path(get, path = "/assets/courier.js",
    responses((status = 200, content_type = "text/javascript; charset=utf-8", body = String)))]
async fn courier_script() -> Response {
    static_asset("text/javascript; charset=utf-8", include_str!("courier.js"))
}

/// The courier page's style.
#[utoipa::path(get, path = "/assets/courier.css",
    responses((status = 200, content_type = "text/css; charset=utf-8", body = String)))]
async fn courier_style() -> Response {
    static_asset("text/css; charset=utf-8", include_str!("courier.css"))
}

/// A parcel as the courier sees it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct DeliveryView {
    order_id: OrderId,
    delivery_id: DeliveryId,
    status: DeliveryStatus,
    customer: Customer,
    items: Vec<LineItem>,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339.
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

/// The latest 200 deliveries, newest first.
#[utoipa::path(get, path = "/deliveries", security(("bearer" = ["courier"])),
    responses((status = 200, body = Vec<DeliveryView>)))]
async fn list_deliveries(State(state): State<AppState>, _: Courier) -> Result<Json<Vec<DeliveryView>>, ApiError> {
    Ok(Json(store::recent(&state.pool, 200).await?.into_iter().map(DeliveryView::from).collect()))
}

/// The delivery of an order.
#[utoipa::path(get, path = "/deliveries/{order_id}", security(("bearer" = ["courier"])), params(("order_id" = OrderId, Path, description = "The order the parcel is for")),
    responses(
        (status = 200, body = DeliveryView),
        (status = 404, description = "No delivery for this order.", body = ErrorDoc),
    ))]
async fn get_delivery(
    State(state): State<AppState>,
    _: Courier,
    ApiPath(order_id): ApiPath<OrderId>,
) -> Result<Json<DeliveryView>, ApiError> {
    let delivery = store::find(&state.pool, order_id).await?.ok_or_else(|| not_found(order_id))?;
    Ok(Json(delivery.into()))
}

/// The parcel left the warehouse.
#[utoipa::path(post, path = "/deliveries/{order_id}/shipped", security(("bearer" = ["courier"])), params(("order_id" = OrderId, Path, description = "The order the parcel is for")),
    responses(
        (status = 202, description = "Accepted: the order follows through Kafka.", body = DeliveryView),
        (status = 404, description = "No delivery for this order.", body = ErrorDoc),
        (status = 409, description = "The delivery is not waiting to ship.", body = ErrorDoc),
    ))]
async fn mark_shipped(
    state: State<AppState>,
    _: Courier,
    order_id: ApiPath<OrderId>,
) -> Result<(StatusCode, Json<DeliveryView>), ApiError> {
    courier(state, order_id, CourierAction::MarkShipped).await
}

/// The parcel reached the customer.
#[utoipa::path(post, path = "/deliveries/{order_id}/delivered", security(("bearer" = ["courier"])), params(("order_id" = OrderId, Path, description = "The order the parcel is for")),
    responses(
        (status = 202, description = "Accepted: the order follows through Kafka.", body = DeliveryView),
        (status = 404, description = "No delivery for this order.", body = ErrorDoc),
        (status = 409, description = "The delivery is not shipped yet, or delivered already.", body = ErrorDoc),
    ))]
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
    state.outbox.enqueue(&mut tx, order_id, &event, audit, &tracing::Span::current()).await?;
    state.outbox.commit(tx).await?;
    tracing::debug!(status = to.as_str(), "Courier action accepted");
    Ok((StatusCode::ACCEPTED, Json(delivery.into())))
}

fn not_found(order_id: OrderId) -> ApiError {
    ApiError::not_found(format!("no delivery for order {order_id}"))
}
