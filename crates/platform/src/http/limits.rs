//! Per-client rate limits (tower-governor, a token bucket per client): a signed-in caller is
//! known by their token's subject, anyone else by their address. Over the limit a request is
//! answered 429 with `Retry-After` and a JSON error, and never reaches the handler.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, Request};
use axum::response::{IntoResponse, Response};
use governor::clock::QuantaInstant;
use governor::middleware::NoOpMiddleware;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
use tower_governor::{GovernorError, GovernorLayer};

use super::ApiError;
use crate::auth::Caller;

/// Who a limit counts requests of.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// A caller with a good token, by its subject (a customer's email, `courier`, ...).
    Subject(String),
    /// Anyone else, by address.
    Peer(std::net::IpAddr),
    /// A request that came with no address (served in-process, as in tests): all such together.
    Unknown,
}

/// Keys requests by the caller's subject when the token checked out, by peer address otherwise.
#[derive(Clone, Copy, Debug)]
pub struct ByClient;

impl KeyExtractor for ByClient {
    type Key = ClientKey;

    fn extract<T>(&self, request: &Request<T>) -> Result<Self::Key, GovernorError> {
        if let Some(subject) = Caller::subject_of(request.extensions()) {
            return Ok(ClientKey::Subject(subject.to_owned()));
        }
        Ok(request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(ClientKey::Unknown, |ConnectInfo(address)| ClientKey::Peer(address.ip())))
    }
}

/// A limit layer: `burst` requests at once per client, then one more every `every`. `what`
/// names the requests in the 429's message ("orders", "sign-ins").
pub fn per_client(
    what: &'static str,
    every: Duration,
    burst: u32,
) -> GovernorLayer<ByClient, NoOpMiddleware<QuantaInstant>, Body> {
    let config = GovernorConfigBuilder::default()
        .period(every)
        .burst_size(burst)
        .key_extractor(ByClient)
        .finish()
        .expect("a rate limit has a non-zero period and burst");
    let limiter = config.limiter().clone();
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        // Forget clients whose bucket is full again, so the table does not grow forever.
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(60));
            loop {
                ticks.tick().await;
                limiter.retain_recent();
            }
        });
    }
    GovernorLayer::new(config).error_handler(move |error| refused(what, error))
}

fn refused(what: &str, error: GovernorError) -> Response {
    match error {
        GovernorError::TooManyRequests { wait_time, .. } => {
            let wait = wait_time.max(1);
            let mut response =
                ApiError::too_many_requests(format!("too many {what}: try again in {wait} s")).into_response();
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(wait));
            response
        }
        other => ApiError::internal(format!("rate limit: {other}")).into_response(),
    }
}
