//! The payment API and the hosted payment page. Only the order service opens payments; a
//! payment is seen and paid by its customer (their token) or by whoever holds its link (the
//! secret the link carries). Anyone else gets a 404, as for a payment that does not exist.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use shop_events::{api, service, Customer, Event, Money, OrderId, PaymentCreated, PaymentId, PaymentMade};
use shop_platform::auth::{AuthError, Caller, Role, ServiceCaller};
use shop_platform::db::{now_millis, rfc3339, Pool};
use shop_platform::http::{routes, static_asset, Api, ApiError, ApiJson, ApiPath, ApiQuery, ErrorDoc, OptionalJson};
use shop_platform::outbox::{Audit, Outbox};

use crate::link::LinkKey;
use crate::store::{self, Payment};
use crate::PaymentStatus;

#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub outbox: Outbox,
    pub instance: String,
    pub public_url: String,
    /// The customer's app, where the payment page returns after paying.
    pub app_url: String,
    pub links: LinkKey,
}

/// The payment API and page, documented (`/openapi.json`).
pub fn api() -> Api<AppState> {
    Api::new()
        .routes(routes!(create_payment))
        .routes(routes!(get_payment))
        .routes(routes!(pay))
        .routes(routes!(payment_page))
        .routes(routes!(pay_script))
        .routes(routes!(pay_style))
}

/// The payment page's script.
#[utoipa::path(get, path = "/assets/pay.js",
    responses((status = 200, content_type = "text/javascript; charset=utf-8", body = String)))]
async fn pay_script() -> Response {
    static_asset("text/javascript; charset=utf-8", include_str!("pay.js"))
}

/// The payment page's style.
#[utoipa::path(get, path = "/assets/pay.css", responses((status = 200, content_type = "text/css; charset=utf-8", body = String)))]
async fn pay_style() -> Response {
    static_asset("text/css; charset=utf-8", include_str!("pay.css"))
}

/// A payment as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct PaymentView {
    payment_id: PaymentId,
    order_id: OrderId,
    amount: Money,
    status: PaymentStatus,
    /// The payment's link: its page, with the secret that opens it.
    payment_url: String,
    customer: Customer,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339, once paid.
    paid_at: Option<String>,
}

impl AppState {
    /// The payment's link: the page, with the secret that opens it.
    fn payment_url(&self, id: PaymentId) -> String {
        format!("{}/pay/{id}?secret={}", self.public_url, self.links.secret(id))
    }

    fn view(&self, payment: Payment) -> PaymentView {
        PaymentView {
            payment_url: self.payment_url(payment.id),
            payment_id: payment.id,
            order_id: payment.order_id,
            amount: payment.amount,
            status: payment.status,
            customer: payment.customer,
            created_at: rfc3339(payment.created_at),
            paid_at: payment.paid_at.map(rfc3339),
        }
    }
}

/// Opens an order's payment.
///
/// Opens the payment of an order, for the order service only. Idempotent per order: asking
/// again returns the same one.
#[utoipa::path(post, path = "/payments", security(("bearer" = ["service:order"])), request_body = api::OpenPayment,
    responses(
        (status = 201, description = "Opened.", body = PaymentView),
        (status = 200, description = "The order's payment, opened before.", body = PaymentView),
        (status = 409, description = "The order already has a payment of another amount.", body = ErrorDoc),
        (status = 422, description = "Not a payment that can be opened (an amount of 0, say).", body = ErrorDoc),
    ))]
#[tracing::instrument(skip_all, fields(order_id))]
async fn create_payment(
    State(state): State<AppState>,
    caller: ServiceCaller,
    ApiJson(request): ApiJson<api::OpenPayment>,
) -> Result<Response, ApiError> {
    caller.require(service::ORDER).map_err(ApiError::from)?;
    tracing::Span::current().record("order_id", tracing::field::display(request.order_id));
    if request.amount.cents() == 0 {
        return Err(ApiError::unprocessable("amount must be more than 0"));
    }
    let payment = Payment {
        id: PaymentId::new(),
        order_id: request.order_id,
        amount: request.amount,
        status: PaymentStatus::Created,
        customer: request.customer,
        created_at: now_millis(),
        paid_at: None,
    };
    let mut tx = state.pool.begin().await?;
    if !store::insert(&mut tx, &payment).await? {
        let existing = store::find_by_order(&mut *tx, payment.order_id)
            .await?
            .ok_or_else(|| ApiError::unavailable("payment changed concurrently, try again"))?;
        tx.rollback().await?;
        if existing.amount != payment.amount {
            return Err(ApiError::conflict(format!(
                "order {} already has a payment of {}, not {}",
                payment.order_id, existing.amount, payment.amount
            )));
        }
        return Ok((StatusCode::OK, Json(state.view(existing))).into_response());
    }
    let event = Event::PaymentCreated(PaymentCreated {
        payment_id: payment.id,
        amount: payment.amount,
        payment_url: state.payment_url(payment.id),
        customer: payment.customer.clone(),
    });
    let message = format!("Payment {} of {} created", payment.id, payment.amount);
    let audit = Audit { instance: &state.instance, action: "payment.created", message };
    state.outbox.enqueue(&mut tx, payment.order_id, &event, audit, &tracing::Span::current()).await?;
    state.outbox.commit(tx).await?;
    tracing::debug!(payment_id = %payment.id, amount = %payment.amount, "Payment created");
    Ok((StatusCode::CREATED, Json(state.view(payment))).into_response())
}

/// May `caller` see and pay `payment`? Its customer may, and the order service may see it;
/// another customer gets a 404 (nothing confirms the payment exists), staff a 403.
fn allowed(caller: &Caller, payment: Option<Payment>, id: PaymentId) -> Result<Payment, ApiError> {
    match caller.role() {
        Role::Customer => {
            let customer = caller.customer().map_err(ApiError::from)?;
            payment.filter(|p| customer.owns(p.customer.email())).ok_or_else(|| not_found(id))
        }
        Role::Service if caller.subject() == service::ORDER => payment.ok_or_else(|| not_found(id)),
        _ => Err(ApiError::new(StatusCode::FORBIDDEN, "only the payment's customer or its link may see it")),
    }
}

/// A payment, for its customer or the order service.
#[utoipa::path(get, path = "/payments/{payment_id}",
    security(("bearer" = ["customer"]), ("bearer" = ["service:order"])),
    params(("payment_id" = PaymentId, Path, description = "The payment")),
    responses(
        (status = 200, body = PaymentView),
        (status = 404, description = "No such payment of this customer's.", body = ErrorDoc),
    ))]
async fn get_payment(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<PaymentId>,
) -> Result<Json<PaymentView>, ApiError> {
    let payment = allowed(&caller, store::get(&state.pool, id).await?, id)?;
    Ok(Json(state.view(payment)))
}

/// What a payment link's holder sends to pay.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PayRequest {
    /// The secret of the payment's link (its `secret` parameter), when paying without a token.
    #[serde(default)]
    secret: Option<String>,
}

/// Pays a payment.
///
/// Pays once: the first call wins (200), every later or concurrent one gets a 409 and
/// publishes nothing. The customer's token or the link's secret (`{"secret": ...}`) is needed.
#[utoipa::path(post, path = "/payments/{payment_id}/pay", security(("bearer" = ["customer"]), ()),
    params(("payment_id" = PaymentId, Path, description = "The payment")),
    request_body(content = Option<PayRequest>, description = "The link's secret, where no token is sent."),
    responses(
        (status = 200, description = "Paid now.", body = PaymentView),
        (status = 404, description = "No such payment of this customer's, or a secret that does not open it.",
            body = ErrorDoc),
        (status = 409, description = "Paid before.", body = ErrorDoc),
    ))]
#[tracing::instrument(skip_all, fields(payment_id = %id, order_id))]
async fn pay(
    State(state): State<AppState>,
    caller: Option<Caller>,
    ApiPath(id): ApiPath<PaymentId>,
    OptionalJson(body): OptionalJson<PayRequest>,
) -> Result<Json<PaymentView>, ApiError> {
    match (&caller, &body) {
        (Some(caller), _) => {
            if caller.role() != Role::Customer {
                return Err(ApiError::new(StatusCode::FORBIDDEN, "only the payment's customer or its link may pay"));
            }
            allowed(caller, store::get(&state.pool, id).await?, id)?;
        }
        (None, Some(PayRequest { secret: Some(secret) })) if state.links.opens(id, secret) => {}
        (None, Some(PayRequest { secret: Some(_) })) => return Err(not_found(id)),
        (None, _) => return Err(AuthError::Missing.into()),
    }
    let mut tx = state.pool.begin().await?;
    let Some(payment) = store::mark_made(&mut tx, id).await? else {
        let existing = store::find(&mut *tx, id).await?;
        tx.rollback().await?;
        return Err(match existing {
            None => not_found(id),
            Some(payment) => ApiError::conflict(format!("payment {id} is already {}", payment.status.as_str())),
        });
    };
    tracing::Span::current().record("order_id", tracing::field::display(payment.order_id));
    let event = Event::PaymentMade(PaymentMade {
        payment_id: payment.id,
        amount: payment.amount,
        customer: payment.customer.clone(),
    });
    let message = format!("Payment {} of {} made", payment.id, payment.amount);
    let audit = Audit { instance: &state.instance, action: "payment.made", message };
    state.outbox.enqueue(&mut tx, payment.order_id, &event, audit, &tracing::Span::current()).await?;
    state.outbox.commit(tx).await?;
    tracing::debug!(order_id = %payment.order_id, "Payment made");
    Ok(Json(state.view(payment)))
}

fn not_found(id: PaymentId) -> ApiError {
    ApiError::not_found(format!("no payment {id}"))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct LinkQuery {
    /// The link's secret.
    #[serde(default)]
    secret: String,
}

/// A payment's page.
///
/// The gateway's hosted page behind every payment link: amount, order, a Pay button, and
/// the way back to the order in the customer's app.
#[utoipa::path(get, path = "/pay/{payment_id}",
    params(("payment_id" = PaymentId, Path, description = "The payment"), LinkQuery),
    responses(
        (status = 200, description = "The page.", content_type = "text/html; charset=utf-8", body = String),
        (status = 404, description = "No such payment, or a secret that does not open it.", body = ErrorDoc),
    ))]
async fn payment_page(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<PaymentId>,
    ApiQuery(link): ApiQuery<LinkQuery>,
) -> Result<Html<String>, ApiError> {
    if !state.links.opens(id, &link.secret) {
        return Err(not_found(id));
    }
    let payment = store::get(&state.pool, id).await?.ok_or_else(|| not_found(id))?;
    Ok(Html(page(&payment, &state.app_url)))
}

/// The payment page: askama fills `src/pay.html` and escapes every value for HTML.
#[derive(askama::Template)]
#[template(path = "pay.html")]
struct PayPage {
    state: &'static str,
    status_text: &'static str,
    paid_at: String,
    amount: String,
    order_short: String,
    order: String,
    payment: String,
    return_url: String,
    customer: String,
}

fn page(payment: &Payment, app_url: &str) -> String {
    use askama::Template;
    let order = payment.order_id.to_string();
    let paid = payment.status == PaymentStatus::Made;
    let page = PayPage {
        state: if paid { "paid" } else { "open" },
        status_text: if paid { "Paid" } else { "Awaiting payment" },
        paid_at: payment.paid_at.map(rfc3339).unwrap_or_default(),
        amount: payment.amount.to_string(),
        order_short: payment.order_id.short(),
        return_url: format!("{}/#/orders/{order}", app_url.trim_end_matches('/')),
        order,
        payment: payment.id.to_string(),
        customer: format!("{} · {}", payment.customer.name(), payment.customer.email()),
    };
    // Rendering plain strings into a template checked at compile time cannot fail.
    page.render().expect("the payment page renders")
}

#[cfg(test)]
mod tests {
    use super::*;
    use shop_events::Customer;

    fn payment(status: PaymentStatus) -> Payment {
        Payment {
            id: PaymentId::new(),
            order_id: OrderId::new(),
            amount: Money::from_cents(2550).unwrap(),
            status,
            customer: Customer::parse("Ada <b>Lovelace</b>", "ada@example.com", "+44 20 7946 0000").unwrap(),
            created_at: 0,
            paid_at: (status == PaymentStatus::Made).then_some(1_000),
        }
    }

    #[test]
    fn the_page_shows_the_amount_and_returns_to_the_order_in_the_app() {
        let payment = payment(PaymentStatus::Created);
        let html = page(&payment, "http://localhost:8080/");
        assert!(html.contains("Pay €25.50"));
        assert!(html.contains(&format!("href=\"http://localhost:8080/#/orders/{}\"", payment.order_id)));
        assert!(html.contains(&format!(r#"data-payment="{}""#, payment.id)));
        assert!(html.contains("/assets/pay.js") && !html.contains("<script>"), "no inline script");
        assert!(html.contains(r#"data-state="open""#));
        assert!(!html.contains("{{"), "every placeholder is filled");
    }

    #[test]
    fn a_paid_payment_says_so_and_customer_text_is_escaped() {
        let html = page(&payment(PaymentStatus::Made), "http://localhost:8080");
        assert!(html.contains(r#"data-state="paid""#));
        assert!(html.contains("Ada &#60;b&#62;Lovelace&#60;/b&#62;"), "escaped as askama escapes");
        assert!(!html.contains("<b>Lovelace"));
    }
}
