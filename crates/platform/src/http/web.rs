//! What every service's router gets around its own routes: health routes, JSON 404/405, the
//! body limit and request timeout, a request id, error logging, a server span per request
//! (continuing the caller's `traceparent`), the caller's token checked,
//! CORS for the system's own pages only (never `*`), and the headers that harden every page
//! and answer (a Content-Security-Policy without `unsafe-inline`, no framing, no sniffing, no
//! referrer, no caching of what is not meant to be cached).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;

use super::openapi::{describe, to_pretty_json, Api, Described, OpenApi};
use super::{log_errors, routes, ApiError, ReadinessCheck, UtoipaMethodRouterExt, BODY_LIMIT};
use crate::auth::{authenticate, Operator, Verifier};
use crate::config::HttpConfig;
use crate::metrics::Metrics;
use crate::secrets::Secrets;

/// The header carrying each request's id, set when the client sent none, and answered back.
pub const REQUEST_ID: &str = "x-request-id";
/// The small script every page of the services shares.
pub const UI_SCRIPT_PATH: &str = "/assets/ui.js";
/// What a page needs to know about the system: where people sign in.
pub const SITE_PATH: &str = "/assets/site.json";

/// How a service meets callers and browsers: the token verifier, the origins of the system's
/// own pages, and where people sign in.
#[derive(Clone)]
pub struct Web {
    /// The service's name, as its document's title says it.
    service: String,
    verifier: Arc<Verifier>,
    origins: Vec<HeaderValue>,
    sign_in_url: String,
    /// The origins the pages may call: `'self'`, the sign-in page's, and the peers given.
    connect: Vec<String>,
    metrics: Metrics,
}

impl Web {
    /// The web settings of `service`: its verifier from the secrets folder, its allowed
    /// origins and sign-in URL from its configuration.
    pub fn new(config: &HttpConfig, secrets: &Secrets, service: &str) -> anyhow::Result<Self> {
        Self::with_verifier(service, Verifier::load(secrets, service)?, &config.allowed_origins, &config.sign_in_url)
    }

    pub fn with_verifier(
        service: &str,
        verifier: Verifier,
        allowed_origins: &[String],
        sign_in_url: &str,
    ) -> anyhow::Result<Self> {
        let mut origins = Vec::new();
        for origin in allowed_origins.iter().map(|o| o.trim()).filter(|o| !o.is_empty()) {
            origins.push(origin_of(origin).map_err(|problem| anyhow::anyhow!("ALLOWED_ORIGINS: {problem}"))?);
        }
        let sign_in_url = sign_in_url.trim().trim_end_matches('/').to_owned();
        let web = Self {
            service: service.to_owned(),
            verifier: Arc::new(verifier),
            origins,
            sign_in_url,
            connect: vec!["'self'".to_owned()],
            metrics: Metrics::new(),
        };
        if web.sign_in_url.is_empty() {
            return Ok(web);
        }
        let url = web.sign_in_url.clone();
        web.calling(&url).map_err(|problem| anyhow::anyhow!("SIGN_IN_URL: {problem}"))
    }

    /// This service's metrics (`GET /metrics`): a service registers its own families here.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Lets this service's pages call `url`'s origin from the browser (the policy's
    /// `connect-src`), as the app calls order's API.
    pub fn calling(mut self, url: &str) -> anyhow::Result<Self> {
        let origin = origin_of(url).map_err(|problem| anyhow::anyhow!(problem))?;
        let origin = origin.to_str().expect("an ASCII origin").to_owned();
        if !self.connect.contains(&origin) {
            self.connect.push(origin);
        }
        Ok(self)
    }

    /// The Content-Security-Policy of every response: the pages load only their own files
    /// and call only their own origin and the peers they were given.
    fn policy(&self) -> HeaderValue {
        let policy = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src {}; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            self.connect.join(" ")
        );
        HeaderValue::from_str(&policy).expect("origins are ASCII")
    }
}

/// `scheme://host[:port]` of `url`, which must be nothing more: an origin, never `*`.
fn origin_of(text: &str) -> Result<HeaderValue, String> {
    let url = url::Url::parse(text).map_err(|_| format!("{text:?} is not an origin like http://localhost:8080"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{text:?} is not an http(s) origin"));
    }
    let origin = url.origin().ascii_serialization();
    HeaderValue::from_str(&origin).map_err(|_| format!("{text:?} is not an origin"))
}

/// The router of a service whose routes are `api`: the platform's routes beside them, its
/// description at `/openapi.json`, and what every service's router has around them.
pub fn finish(api: Api, checks: Vec<ReadinessCheck>, waits: crate::consumer::Waits, web: &Web) -> Router {
    let site = Site { sign_in_url: web.sign_in_url.clone() };
    let document = Described::default();
    let (router, operations) = api.merge(common(checks, waits, web.metrics.clone(), site, document.clone())).split();
    document.0.set(to_pretty_json(&describe(&web.service, operations)).into()).expect("described once");
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(web.origins.clone()))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([CONTENT_TYPE, AUTHORIZATION, HeaderName::from_static("idempotency-key")])
        .max_age(Duration::from_secs(600));
    router
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route")
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(from_fn_with_state(web.verifier.clone(), authenticate))
        .layer(from_fn(log_errors))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(15)))
        .layer(PropagateRequestIdLayer::new(HeaderName::from_static(REQUEST_ID)))
        .layer(SetRequestIdLayer::new(HeaderName::from_static(REQUEST_ID), MakeRequestUuid))
        .layer(cors)
        .layer(from_fn_with_state(web.policy(), harden))
        .layer(from_fn_with_state(web.metrics.clone(), observe_request))
}

/// The routes of every service besides its own, each documented.
fn common(
    checks: Vec<ReadinessCheck>,
    waits: crate::consumer::Waits,
    metrics: Metrics,
    site: Site,
    document: Described,
) -> Api {
    Api::new()
        .routes(routes!(super::liveness))
        .routes(routes!(super::readiness).with_state(super::Readiness { checks, waits }))
        .routes(routes!(ui_script))
        .routes(routes!(site_json).with_state(site))
        .routes(routes!(self::metrics).with_state(metrics))
        .routes(routes!(super::openapi::openapi_json).with_state(document))
}

/// The whole description of `service` whose own routes are `api`, as its `/openapi.json`
/// serves it (the committed files under `docs/openapi/` are made with it).
pub fn document<S: Clone + Send + Sync + 'static>(service: &str, api: Api<S>) -> OpenApi {
    let (_, mut operations) = api.split();
    let site = Site { sign_in_url: String::new() };
    let (_, platform) = common(Vec::new(), Default::default(), Metrics::new(), site, Default::default()).split();
    operations.merge(platform);
    describe(service, operations)
}

/// What a page needs to know about the system.
#[derive(Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Site {
    /// Where people sign in (mobile's address); empty where it is the page's own.
    sign_in_url: String,
}

/// `GET /assets/site.json`: where people sign in, for the pages.
#[utoipa::path(get, path = "/assets/site.json", responses((status = 200, body = Site)))]
async fn site_json(State(site): State<Site>) -> Json<Site> {
    Json(site)
}

/// `GET /metrics`: the service's metrics, for the operator (and the scraper with its token).
#[utoipa::path(get, path = "/metrics", security(("bearer" = ["operator"])), responses(
    (status = 200, description = "The metrics in the Prometheus text format.",
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String),
))]
async fn metrics(State(metrics): State<Metrics>, _: Operator) -> Response {
    ([(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], metrics.scrape().await).into_response()
}

/// Counts and times every request by route and status, and makes a server span per request,
/// named and described by the OpenTelemetry conventions for HTTP, continuing the trace of the
/// caller's `traceparent` (or starting one), where spans are exported. Probes of health and
/// metrics get no span: they are not work anyone follows.
async fn observe_request(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let route = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let method = request.method().clone();
    let path = request.uri().path();
    let response = if !crate::trace::enabled() || matches!(path, "/healthz" | "/readyz" | "/metrics") {
        next.run(request).await
    } else {
        traced(request, next, &method, route.as_deref()).await
    };
    metrics.request(method.as_str(), route.as_deref(), response.status().as_u16(), started.elapsed());
    response
}

async fn traced(request: Request, next: Next, method: &Method, route: Option<&str>) -> Response {
    let path = request.uri().path();
    let span = tracing::info_span!(
        "request",
        otel.name = format!("{method} {}", route.unwrap_or("")).trim_end(),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = route,
        url.path = path,
        http.response.status_code = tracing::field::Empty,
        order_id = tracing::field::Empty,
    );
    let traceparent = request.headers().get(crate::trace::TRACEPARENT).and_then(|v| v.to_str().ok());
    crate::trace::continue_from(&span, traceparent);
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}

/// The headers every answer carries; an answer that says nothing of caching is not cached
/// (most carry someone's personal data).
async fn harden(State(policy): State<HeaderValue>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, policy);
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.entry(CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// `GET /assets/ui.js`: the script every page shares.
#[utoipa::path(get, path = "/assets/ui.js", responses(
    (status = 200, description = "The script.", content_type = "text/javascript; charset=utf-8", body = String),
))]
async fn ui_script() -> impl IntoResponse {
    static_asset("text/javascript; charset=utf-8", include_str!("ui.js"))
}

/// A file of a page, embedded in the binary: revalidated, never stored stale.
pub fn static_asset(content_type: &'static str, body: &'static str) -> Response {
    ([(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::origin_of;

    #[test]
    fn only_plain_http_origins_are_allowed() {
        assert_eq!(origin_of("http://localhost:8080").unwrap(), "http://localhost:8080");
        assert_eq!(origin_of("https://shop.example/").unwrap(), "https://shop.example");
        assert!(origin_of("*").is_err());
        assert!(origin_of("localhost:8080").is_err());
        assert!(origin_of("file:///etc").is_err());
    }
}
