//! HTTP plumbing: the one JSON error shape (`{"error": "..."}`) with the right status, JSON,
//! path and query extractors that answer bad input in that shape, health routes, what every
//! router gets (`web`: callers, browser hardening, limits) and the server (`server`).

pub mod limits;
pub mod openapi;
mod server;
mod web;

pub use openapi::{routes, Api, ErrorBody as ErrorDoc, UtoipaMethodRouterExt, BEARER};
pub use server::{serve, CLIENT_IDLE_TIMEOUT, HEADER_READ_TIMEOUT};
pub use web::{document, finish, static_asset, Web, REQUEST_ID, SITE_PATH, UI_SCRIPT_PATH};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;

/// Liveness: the process answers.
pub const LIVENESS_PATH: &str = "/healthz";
/// Readiness: storage and Kafka answer.
pub const READINESS_PATH: &str = "/readyz";

/// The largest request body any endpoint takes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// An error answered to an HTTP client: a status and a message saying what was wrong. A
/// server-side failure also carries its detail, which goes to the log only: the client gets
/// a generic message and the request id to quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    detail: Option<String>,
    /// The `WWW-Authenticate` challenge of a 401.
    challenge: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), detail: None, challenge: None }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, message)
    }
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, message)
    }
    /// A failure of this service: the client reads "internal error"; `detail` is logged.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").with_detail(detail)
    }
    /// What the log gets besides the message (never the client).
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(error: crate::auth::AuthError) -> Self {
        use crate::auth::{AuthError, BEARER_CHALLENGE};
        let (status, challenge) = match &error {
            AuthError::Forbidden(_) => (StatusCode::FORBIDDEN, None),
            AuthError::Missing => (StatusCode::UNAUTHORIZED, Some(BEARER_CHALLENGE.to_owned())),
            AuthError::Invalid(_) => {
                (StatusCode::UNAUTHORIZED, Some(format!("{BEARER_CHALLENGE}, error=\"invalid_token\"")))
            }
        };
        let mut api = ApiError::new(status, error.to_string());
        api.challenge = challenge;
        api
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if crate::db::is_transient(&error) {
            ApiError::unavailable("storage is busy, try again").with_detail(error.to_string())
        } else {
            ApiError::internal(format!("storage error: {error}"))
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(rename = "requestId", skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: &self.message, request_id: None };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(challenge) = self.challenge.as_deref().and_then(|c| axum::http::HeaderValue::from_str(c).ok()) {
            response.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, challenge);
        }
        // The logging middleware reads it back; the response itself stays free of side effects.
        response.extensions_mut().insert(Arc::new(self));
        response
    }
}

/// Logs refused and failed requests once, from the error the handler returned, with the
/// request id; a server-side failure's answer carries that id so its log line can be found.
async fn log_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let request_id =
        request.headers().get(web::REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let response = next.run(request).await;
    let Some(error) = response.extensions().get::<Arc<ApiError>>().cloned() else { return response };
    let (status, detail) = (error.status.as_u16(), error.detail().unwrap_or_default());
    if !error.status.is_server_error() {
        tracing::debug!(%method, %path, %request_id, status, error = %error.message, %detail, "Request refused");
        return response;
    }
    tracing::warn!(%method, %path, %request_id, status, error = %error.message, %detail, "Request failed");
    let body = ErrorBody { error: &error.message, request_id: Some(&request_id) };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let json = serde_json::to_vec(&body).expect("an error body serializes");
    Response::from_parts(parts, axum::body::Body::from(json))
}

/// `Json<T>` whose rejections are `ApiError`s naming the problem.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let message = match &rejection {
        JsonRejection::JsonDataError(e) => format!("invalid request body: {}", source_text(e)),
        JsonRejection::JsonSyntaxError(e) => format!("malformed JSON: {}", source_text(e)),
        JsonRejection::MissingJsonContentType(_) => "expected a body with Content-Type: application/json".into(),
        JsonRejection::BytesRejection(_) => format!("request body too large or unreadable (limit {BODY_LIMIT} bytes)"),
        other => other.body_text(),
    };
    ApiError::new(rejection.status(), message)
}

fn source_text(error: &dyn std::error::Error) -> String {
    let mut inner: &dyn std::error::Error = error;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

/// `Path<T>` answering a malformed id with a 400 in the service's shape.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|rejection: PathRejection| {
                ApiError::bad_request(format!("invalid path: {}", rejection.body_text()))
            })
    }
}

/// `Query<T>` answering bad parameters with a 400 in the service's shape.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection: QueryRejection| {
                ApiError::bad_request(format!("invalid query: {}", rejection.body_text()))
            })
    }
}

/// A readiness check: resolves to `Err(what is wrong)` when the service cannot work.
pub type ReadinessCheck = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// What `GET /readyz` asks: the service's checks, and what its consumers wait for.
#[derive(Clone)]
struct Readiness {
    checks: Vec<ReadinessCheck>,
    waits: crate::consumer::Waits,
}

/// `GET /healthz`: the process answers.
#[utoipa::path(get, path = "/healthz", responses(
    (status = 200, description = "The process answers.", body = Object, example = json!({"status": "ok"})),
))]
async fn liveness() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Readiness.
///
/// `GET /readyz`: every check passes (storage and Kafka answer); it also lists what the
/// service's consumers are waiting for (`waiting`: the dependency whose failure they retry on;
/// with the failure's words, `detail`, for the operator only, as they may name internal
/// addresses). Waiting is not unready: the service still serves what does not need it.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "Ready; `waiting` names what its consumers retry on.", body = Object,
        example = json!({"status": "ready", "waiting": []})),
    (status = 503, description = "Not ready: the error says why.", body = openapi::ErrorBody),
))]
async fn readiness(
    axum::extract::State(readiness): axum::extract::State<Readiness>,
    caller: Option<crate::auth::Caller>,
) -> Response {
    let operator = caller.is_some_and(|caller| caller.role() == crate::auth::Role::Operator);
    let mut problems = Vec::new();
    for check in &readiness.checks {
        if let Err(problem) = check().await {
            problems.push(problem);
        }
    }
    if problems.is_empty() {
        axum::Json(serde_json::json!({"status": "ready", "waiting": readiness.waits.now(operator)})).into_response()
    } else {
        ApiError::unavailable(format!("not ready: {}", problems.join("; "))).into_response()
    }
}

/// Readiness of the database and of the Kafka cluster seen through the service's producer.
pub fn standard_checks(pool: crate::db::Pool, producer: crate::kafka::Producer) -> Vec<ReadinessCheck> {
    vec![storage_check(pool), kafka_check(producer)]
}

/// Ready when the database answers.
pub fn storage_check(pool: crate::db::Pool) -> ReadinessCheck {
    Arc::new(move || {
        let pool = pool.clone();
        Box::pin(async move {
            crate::db::ping(&pool).await.map_err(|error| {
                tracing::warn!(%error, "Storage does not answer");
                "storage does not answer".to_owned()
            })
        })
    })
}

/// Ready when a Kafka broker answers the producer.
pub fn kafka_check(producer: crate::kafka::Producer) -> ReadinessCheck {
    Arc::new(move || {
        let producer = producer.clone();
        Box::pin(async move {
            if crate::kafka::producer_ready(&producer).await {
                Ok(())
            } else {
                Err("kafka: no broker answers".to_owned())
            }
        })
    })
}

/// How often [`wait_until_ready`] asks again.
const READY_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Waits until each of `services`, named and at a base URL (`http://host:port`), answers
/// `GET /readyz` with a success, one after the other, asking every 200 ms until `within` has
/// passed. Before each try `started(i)` says whether what should answer for `services[i]` is
/// still running: its error ends the wait at once, so a process that exited while starting is
/// reported as such rather than at the deadline.
pub async fn wait_until_ready(
    services: &[(String, String)],
    within: std::time::Duration,
    mut started: impl FnMut(usize) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(3)).build()?;
    let deadline = tokio::time::Instant::now() + within;
    for (i, (name, base)) in services.iter().enumerate() {
        let url = format!("{base}{READINESS_PATH}");
        loop {
            started(i)?;
            if http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "{name} is not ready at {url} after {within:?}");
            tokio::time::sleep(READY_POLL).await;
        }
    }
    Ok(())
}

/// Binds `host:port` (port 0 picks a free one).
pub async fn bind(host: &str, port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind((host, port)).await
}

/// An optional JSON body: `None` when the request has no body, otherwise as `ApiJson`.
pub struct OptionalJson<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body too large (limit {BODY_LIMIT} bytes)"))
        })?;
        if bytes.is_empty() {
            return Ok(OptionalJson(None));
        }
        let request = Request::from_parts(parts, axum::body::Body::from(bytes));
        ApiJson::<T>::from_request(request, state).await.map(|ApiJson(value)| OptionalJson(Some(value)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;

    /// A server whose `/readyz` answers 503 to its first `not_yet` calls, then 200.
    async fn ready_after(not_yet: u32) -> String {
        let calls = Arc::new(AtomicU32::new(0));
        let router = axum::Router::new().route(
            READINESS_PATH,
            axum::routing::get(move || {
                let calls = calls.clone();
                async move {
                    if calls.fetch_add(1, Ordering::SeqCst) < not_yet {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        );
        let listener = bind("127.0.0.1", 0).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        base
    }

    #[tokio::test]
    async fn waits_for_each_service_to_say_it_is_ready() {
        let services = [("a".to_owned(), ready_after(2).await), ("b".to_owned(), ready_after(0).await)];
        let mut asked = [0, 0];
        wait_until_ready(&services, Duration::from_secs(60), |i| {
            asked[i] += 1;
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(asked, [3, 1], "a is asked until its third answer, b once");
    }

    #[tokio::test]
    async fn a_service_that_stopped_ends_the_wait_with_its_error() {
        let services = [("a".to_owned(), ready_after(u32::MAX).await)];
        let mut tries = 0;
        let error = wait_until_ready(&services, Duration::from_secs(60), |_| {
            tries += 1;
            anyhow::ensure!(tries < 3, "a exited while starting");
            Ok(())
        })
        .await
        .unwrap_err();
        assert_eq!(error.to_string(), "a exited while starting");
    }

    #[tokio::test]
    async fn a_service_never_ready_is_named_at_the_deadline() {
        let base = ready_after(u32::MAX).await;
        let services = [("a".to_owned(), base.clone())];
        let error = wait_until_ready(&services, Duration::ZERO, |_| Ok(())).await.unwrap_err();
        assert_eq!(error.to_string(), format!("a is not ready at {base}/readyz after 0ns"));
    }
}
