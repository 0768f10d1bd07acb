//! One order on one timeline, for the operator asking "why has order X not shipped?": the
//! stages it reached (from the audit trail), every audit record, and every push and mail about
//! it, asked of mobile and email (the watched instances named `mobile…` and `email…`) with the
//! operator's own token, each entry with its trace where tracing is on, linked to a trace UI
//! when one is configured (`TRACE_UI_URL`).

use std::time::Duration;

use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use shop_events::{OrderId, Stage};
use shop_platform::auth::Operator;
use shop_platform::http::ApiError;
use shop_platform::http::ApiPath;

use crate::AppState;

/// How long mobile or email may take to answer.
const TIMEOUT: Duration = Duration::from_secs(3);

/// The audit action that records each stage.
const STAGE_ACTIONS: [(&str, Stage); 7] = [
    ("order.created", Stage::Created),
    ("payment.created", Stage::PaymentCreated),
    ("payment.made", Stage::PaymentMade),
    ("order.readyToShip", Stage::ReadyToShip),
    ("order.shipping", Stage::Shipping),
    ("order.shipped", Stage::Shipped),
    ("order.delivered", Stage::Delivered),
];

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    pub order_id: OrderId,
    /// The seven stages, each with when it was reached (None: not yet).
    pub stages: Vec<StageReached>,
    /// Audit records, pushes and mails, oldest first.
    pub entries: Vec<Entry>,
    /// What could not be asked (mobile or email unreachable): the rest is shown all the same.
    pub problems: Vec<String>,
    /// The order's traces in the trace UI (a search by `order_id`), when one is configured.
    pub traces_url: Option<String>,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageReached {
    pub stage: Stage,
    pub at: Option<String>,
    pub trace_id: Option<String>,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub at: String,
    /// `audit`, `push` or `mail`.
    pub kind: &'static str,
    /// Who wrote it (an instance), or who received it (mobile, email).
    pub by: String,
    pub title: String,
    pub detail: String,
    pub trace_id: Option<String>,
    pub trace_url: Option<String>,
}

/// The watched instance whose name is `service` or `service-…`.
fn url_of(state: &AppState, service: &str) -> Option<String> {
    state
        .watched
        .iter()
        .find(|w| w.instance == service || w.instance.strip_prefix(service).is_some_and(|rest| rest.starts_with('-')))
        .map(|w| w.url.clone())
}

/// Asks `service` for `path` as the caller; the list it answers, or why not.
async fn ask(state: &AppState, service: &str, path: &str, authorization: &str) -> Result<Vec<Value>, String> {
    let base = url_of(state, service).ok_or_else(|| format!("{service}: not among WATCHED_SERVICES"))?;
    let response = state
        .http
        .get(format!("{base}{path}"))
        .header(AUTHORIZATION, authorization)
        .timeout(TIMEOUT)
        .send()
        .await
        .map_err(|error| format!("{service} did not answer: {error}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("{service} answered {status}"));
    }
    response.json().await.map_err(|error| format!("{service} answered something else than a list: {error}"))
}

fn text(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_default().to_owned()
}

/// `GET /api/orders/{order_id}/timeline`.
#[utoipa::path(get, path = "/api/orders/{order_id}/timeline", security(("bearer" = ["operator"])),
    params(("order_id" = OrderId, Path, description = "The order")),
    responses((status = 200, description = "The order's stages, records, pushes and mails (nothing yet for an \
        order not known).", body = Timeline)))]
pub async fn timeline(
    State(state): State<AppState>,
    _: Operator,
    headers: HeaderMap,
    ApiPath(order_id): ApiPath<OrderId>,
) -> Result<Json<Timeline>, ApiError> {
    let authorization = crate::operator_authorization(&headers);
    let (pushes, mails) = (format!("/api/notifications?orderId={order_id}"), format!("/api/emails?orderId={order_id}"));
    let (records, pushes, mails) = tokio::join!(
        crate::audit::stored(&state.pool, Some(order_id), 1000),
        ask(&state, "mobile", &pushes, authorization),
        ask(&state, "email", &mails, authorization),
    );
    let records = records?;
    let trace_url =
        |trace: &Option<String>| Some(format!("{}/trace/{}", state.trace_ui.as_deref()?, trace.as_deref()?));
    let stages = STAGE_ACTIONS
        .iter()
        .map(|(action, stage)| {
            let record = records.iter().find(|r| r.action == *action);
            StageReached {
                stage: *stage,
                at: record.map(|r| r.occurred_at.clone()),
                trace_id: record.and_then(|r| r.trace_id.clone()),
            }
        })
        .collect();
    let mut entries: Vec<Entry> = records
        .iter()
        .map(|r| Entry {
            at: r.occurred_at.clone(),
            kind: "audit",
            by: r.instance.clone(),
            title: r.action.clone(),
            detail: r.message.clone(),
            trace_url: trace_url(&r.trace_id),
            trace_id: r.trace_id.clone(),
        })
        .collect();
    let mut problems = Vec::new();
    match pushes {
        Ok(pushes) => entries.extend(pushes.iter().map(|p| Entry {
            at: text(p, "receivedAt"),
            kind: "push",
            by: "mobile".to_owned(),
            title: text(p, "title"),
            detail: format!("{} · to {}", text(p, "stage"), text(p, "to")),
            trace_id: None,
            trace_url: None,
        })),
        Err(problem) => problems.push(problem),
    }
    match mails {
        Ok(mails) => entries.extend(mails.iter().map(|m| Entry {
            at: text(m, "receivedAt"),
            kind: "mail",
            by: "email".to_owned(),
            title: text(m, "subject"),
            detail: format!("to {}", text(m, "to")),
            trace_id: None,
            trace_url: None,
        })),
        Err(problem) => problems.push(problem),
    }
    // RFC 3339 in UTC with a fixed number of digits sorts as text.
    entries.sort_by(|a, b| a.at.cmp(&b.at));
    let traces_url = state.trace_ui.as_ref().map(|base| {
        let tags = url::form_urlencoded::byte_serialize(format!("{{\"order_id\":\"{order_id}\"}}").as_bytes())
            .collect::<String>();
        format!("{base}/search?service=order&tags={tags}")
    });
    Ok(Json(Timeline { order_id, stages, entries, problems, traces_url }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_has_the_action_that_records_it() {
        let stages: Vec<Stage> = STAGE_ACTIONS.iter().map(|(_, s)| *s).collect();
        assert_eq!(stages, Stage::ALL);
    }
}
