//! What every service's router gets around its own routes: health routes, JSON 404/405, the
//! body limit and request timeout, a request id, error logging, the caller's token checked,
//! CORS for the system's own pages only (never `*`), and the headers that harden every page
//! and answer (a Content-Security-Policy without `unsafe-inline`, no framing, no sniffing, no
//! referrer, no caching of what is not meant to be cached).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;

use super::{health_routes, log_errors, ApiError, ReadinessCheck, BODY_LIMIT};
use crate::auth::{authenticate, Verifier};
use crate::config::HttpConfig;
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
    verifier: Arc<Verifier>,
    origins: Vec<HeaderValue>,
    sign_in_url: String,
    /// The origins the pages may call: `'self'`, the sign-in page's, and the peers given.
    connect: Vec<String>,
}

impl Web {
    /// The web settings of `service`: its verifier from the secrets folder, its allowed
    /// origins and sign-in URL from its configuration.
    pub fn new(config: &HttpConfig, secrets: &Secrets, service: &str) -> anyhow::Result<Self> {
        Self::with_verifier(Verifier::load(secrets, service)?, &config.allowed_origins, &config.sign_in_url)
    }

    pub fn with_verifier(verifier: Verifier, allowed_origins: &[String], sign_in_url: &str) -> anyhow::Result<Self> {
        let mut origins = Vec::new();
        for origin in allowed_origins.iter().map(|o| o.trim()).filter(|o| !o.is_empty()) {
            origins.push(origin_of(origin).map_err(|problem| anyhow::anyhow!("ALLOWED_ORIGINS: {problem}"))?);
        }
        let sign_in_url = sign_in_url.trim().trim_end_matches('/').to_owned();
        let web = Self { verifier: Arc::new(verifier), origins, sign_in_url, connect: vec!["'self'".to_owned()] };
        if web.sign_in_url.is_empty() {
            return Ok(web);
        }
        let url = web.sign_in_url.clone();
        web.calling(&url).map_err(|problem| anyhow::anyhow!("SIGN_IN_URL: {problem}"))
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

/// Adds what every service's router has around `router`.
pub fn finish(router: Router, checks: Vec<ReadinessCheck>, waits: crate::consumer::Waits, web: &Web) -> Router {
    let site = serde_json::json!({ "signInUrl": web.sign_in_url });
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(web.origins.clone()))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([CONTENT_TYPE, AUTHORIZATION, HeaderName::from_static("idempotency-key")])
        .max_age(Duration::from_secs(600));
    router
        .merge(health_routes(checks, waits))
        .route(UI_SCRIPT_PATH, get(ui_script))
        .route(SITE_PATH, get(move || async move { Json(site) }))
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
