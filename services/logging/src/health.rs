//! What every service says of itself, for the operations page: the logging service asks each
//! watched instance's `/readyz` (`WATCHED_SERVICES`) whether it is ready and what its consumers
//! wait for (a dependency they retry on, such as the mailbox or mobile unreachable), and answers
//! all of it in one report to the operator.

use std::time::Duration;

use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use shop_platform::auth::Operator;
use shop_platform::db::{now_millis, rfc3339};

use crate::AppState;

/// How long one service may take to answer.
const TIMEOUT: Duration = Duration::from_secs(2);

/// A service instance to ask, by name (`order-1`) and base URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watched {
    pub instance: String,
    pub url: String,
}

/// Reads `instance=url` (e.g. `order-1=http://127.0.0.1:8081`).
pub fn parse_watched(entry: &str) -> Result<Watched, String> {
    let (instance, url) = entry.split_once('=').ok_or_else(|| format!("{entry:?} is not instance=url"))?;
    let url = url.trim().trim_end_matches('/');
    let parsed = url::Url::parse(url).map_err(|e| format!("{entry:?}: {url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || instance.trim().is_empty() {
        return Err(format!("{entry:?} is not instance=http(s)://host:port"));
    }
    Ok(Watched { instance: instance.trim().to_owned(), url: url.to_owned() })
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    pub measured_at: String,
    pub services: Vec<ServiceHealth>,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceHealth {
    pub instance: String,
    /// Its `/readyz` answered 200.
    pub ready: bool,
    /// What its consumers wait for, as its `/readyz` lists them (group, topic, partition,
    /// waitingFor, sinceSeconds).
    #[schema(value_type = Vec<Object>)]
    pub waiting: Vec<Value>,
    /// Why it is not ready: its own words, or that it did not answer.
    pub problem: Option<String>,
}

/// Asks every watched service at once.
/// `authorization` is the operator's, for the failures' own words (`detail`) in each `/readyz`.
pub async fn measure(http: &reqwest::Client, watched: &[Watched], authorization: &str) -> HealthReport {
    let services = futures::future::join_all(watched.iter().map(|w| ask(http, w, authorization))).await;
    HealthReport { measured_at: rfc3339(now_millis()), services }
}

async fn ask(http: &reqwest::Client, watched: &Watched, authorization: &str) -> ServiceHealth {
    let health =
        |ready, waiting, problem| ServiceHealth { instance: watched.instance.clone(), ready, waiting, problem };
    let url = format!("{}{}", watched.url, shop_platform::http::READINESS_PATH);
    let answer = http.get(url).header(AUTHORIZATION, authorization).timeout(TIMEOUT).send().await;
    let response = match answer {
        Ok(response) => response,
        Err(error) if error.is_timeout() => return health(false, Vec::new(), Some("does not answer in time".into())),
        Err(_) => return health(false, Vec::new(), Some("cannot be reached".into())),
    };
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        let waiting = body["waiting"].as_array().cloned().unwrap_or_default();
        health(true, waiting, None)
    } else {
        let said = body["error"].as_str().map_or_else(|| format!("answers {status}"), str::to_owned);
        health(false, Vec::new(), Some(said))
    }
}

/// Every watched service: ready or not, and what its consumers wait for.
#[utoipa::path(get, path = "/api/services", security(("bearer" = ["operator"])), responses((status = 200, body = HealthReport)))]
pub async fn report(State(state): State<AppState>, _: Operator, headers: HeaderMap) -> Json<HealthReport> {
    Json(measure(&state.http, &state.watched, crate::operator_authorization(&headers)).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watched_service_is_a_name_and_an_http_url() {
        assert_eq!(
            parse_watched("order-1=http://127.0.0.1:8081/"),
            Ok(Watched { instance: "order-1".into(), url: "http://127.0.0.1:8081".into() })
        );
        // As a folded YAML value gives it (a space after a comma).
        assert_eq!(
            parse_watched(" email=http://email:8086"),
            Ok(Watched { instance: "email".into(), url: "http://email:8086".into() })
        );
        for bad in ["order-1", "=http://a:1", "order-1=ftp://a:1", "order-1=not a url"] {
            assert!(parse_watched(bad).is_err(), "{bad}");
        }
    }
}
