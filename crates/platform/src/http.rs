//! HTTP plumbing: the one JSON error shape (`{"error": "..."}`) with the right status, JSON
//! and path extractors that answer bad input in that shape, health routes, and a server
//! with a body limit, a request timeout and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;

use crate::Shutdown;

/// Liveness: the process answers.
pub const LIVENESS_PATH: &str = "/healthz";
/// Readiness: storage and Kafka answer.
pub const READINESS_PATH: &str = "/readyz";

/// The largest request body any endpoint takes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// An error answered to an HTTP client: a status and a message saying what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
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
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
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
            ApiError::unavailable(format!("storage is busy, try again: {error}"))
        } else {
            ApiError::internal(format!("storage error: {error}"))
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(ErrorBody { error: &self.message })).into_response();
        // The logging middleware reads it back; the response itself stays free of side effects.
        response.extensions_mut().insert(Arc::new(self));
        response
    }
}

/// Logs server-side failures once, from the error the handler returned.
async fn log_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    if let Some(error) = response.extensions().get::<Arc<ApiError>>() {
        if error.status.is_server_error() {
            tracing::warn!(%method, %path, status = error.status.as_u16(), error = %error.message, "Request failed");
        } else {
            tracing::debug!(%method, %path, status = error.status.as_u16(), error = %error.message, "Request refused");
        }
    }
    response
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

/// `GET /healthz` (the process answers) and `GET /readyz` (every check passes).
pub fn health_routes(checks: Vec<ReadinessCheck>) -> Router {
    Router::new().route(LIVENESS_PATH, get(|| async { axum::Json(serde_json::json!({"status": "ok"})) })).route(
        READINESS_PATH,
        get(move || {
            let checks = checks.clone();
            async move {
                let mut problems = Vec::new();
                for check in &checks {
                    if let Err(problem) = check().await {
                        problems.push(problem);
                    }
                }
                if problems.is_empty() {
                    axum::Json(serde_json::json!({"status": "ready"})).into_response()
                } else {
                    ApiError::unavailable(format!("not ready: {}", problems.join("; "))).into_response()
                }
            }
        }),
    )
}

/// Readiness of the database and of the Kafka cluster seen through the service's producer.
pub fn standard_checks(pool: crate::db::Pool, producer: crate::kafka::Producer) -> Vec<ReadinessCheck> {
    vec![storage_check(pool), kafka_check(producer)]
}

/// Ready when the database answers.
pub fn storage_check(pool: crate::db::Pool) -> ReadinessCheck {
    Arc::new(move || {
        let pool = pool.clone();
        Box::pin(async move { crate::db::ping(&pool).await.map_err(|e| format!("storage: {e}")) })
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

/// Adds what every service's router has: health routes, JSON 404/405, the body limit, the
/// request timeout, error logging and CORS.
pub fn finish(router: Router, checks: Vec<ReadinessCheck>) -> Router {
    router
        .merge(health_routes(checks))
        .route(UI_SCRIPT_PATH, get(ui_script))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route")
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(log_errors))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(15)))
        // The browser pages of one service call the APIs of others (the app calls order from
        // another port), so any origin may GET and POST JSON with an Idempotency-Key.
        .layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(tower_http::cors::Any)
                .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
                .allow_headers([
                    axum::http::header::CONTENT_TYPE,
                    axum::http::HeaderName::from_static("idempotency-key"),
                ]),
        )
}

/// The small script every page of the services shares.
pub const UI_SCRIPT_PATH: &str = "/assets/ui.js";

async fn ui_script() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("ui.js"))
}

/// Binds `host:port` (port 0 picks a free one).
pub async fn bind(host: &str, port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind((host, port)).await
}

/// Serves until `shutdown`, then lets in-flight requests finish.
pub async fn serve(listener: TcpListener, router: Router, shutdown: Shutdown) -> std::io::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await
}
