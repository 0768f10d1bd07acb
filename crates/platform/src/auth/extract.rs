//! The caller of a request: the `authenticate` middleware verifies the bearer token once per
//! request (rate limits and handlers both read the result), and the extractors turn it into
//! the role a handler needs, or the 401/403 the caller gets instead.

use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Claims, Role, Verifier};
use crate::http::ApiError;

/// What a 401 asks for (RFC 6750).
pub const BEARER_CHALLENGE: &str = "Bearer realm=\"shop\"";

/// Why a request is refused for who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials at all: 401.
    #[error("sign in first: this needs Authorization: Bearer <token>")]
    Missing,
    /// Credentials that are not good: 401.
    #[error("{0}")]
    Invalid(String),
    /// Good credentials, wrong role: 403.
    #[error("{0}")]
    Forbidden(String),
}

impl AuthError {
    pub fn invalid(reason: impl Into<String>) -> Self {
        AuthError::Invalid(reason.into())
    }

    fn needs(role: &str, claims: &Claims) -> Self {
        AuthError::Forbidden(format!("this needs the {role} role; the token is for a {}", claims.role.as_str()))
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

/// The outcome of checking a request's credentials, kept in its extensions.
#[derive(Clone, Debug)]
struct Authentication(Result<Claims, AuthError>);

/// Verifies the bearer token of every request that carries one. Refuses nothing itself: a
/// request without credentials may be for a public route; the extractors decide.
pub async fn authenticate(State(verifier): State<Arc<Verifier>>, mut request: Request, next: Next) -> Response {
    if let Some(value) = request.headers().get(AUTHORIZATION) {
        let outcome = match value.to_str().ok().and_then(bearer_token) {
            Some(token) => verifier.verify(token),
            None => Err(AuthError::invalid("expected Authorization: Bearer <token>")),
        };
        request.extensions_mut().insert(Authentication(outcome));
    }
    next.run(request).await
}

fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Any caller with a good token.
#[derive(Clone, Debug)]
pub struct Caller(pub Claims);

impl Caller {
    /// The subject of a request's good token, if it carried one (for rate limits).
    pub fn subject_of(extensions: &axum::http::Extensions) -> Option<&str> {
        match extensions.get::<Authentication>() {
            Some(Authentication(Ok(claims))) => Some(&claims.sub),
            _ => None,
        }
    }

    pub fn role(&self) -> Role {
        self.0.role
    }

    pub fn subject(&self) -> &str {
        &self.0.sub
    }

    /// The caller as a customer, or a 403.
    pub fn customer(&self) -> Result<Customer, AuthError> {
        match self.0.role {
            Role::Customer => Ok(Customer { email: self.0.sub.clone() }),
            _ => Err(AuthError::needs("customer", &self.0)),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Authentication>() {
            Some(Authentication(Ok(claims))) => Ok(Caller(claims.clone())),
            Some(Authentication(Err(error))) => Err(error.clone()),
            None => Err(AuthError::Missing),
        }
    }
}

/// `Option<Caller>`: None without credentials, a 401 for bad ones.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Caller {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Option<Self>, Self::Rejection> {
        if parts.extensions.get::<Authentication>().is_none() {
            return Ok(None);
        }
        <Caller as FromRequestParts<S>>::from_request_parts(parts, state).await.map(Some)
    }
}

/// A signed-in customer, known by their email (lower case).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Customer {
    pub email: String,
}

impl Customer {
    /// Whether `email` (as stored with an order, a payment, a push or a mail) is this customer's.
    pub fn owns(&self, email: &str) -> bool {
        email.trim().eq_ignore_ascii_case(&self.email)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Customer {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        <Caller as FromRequestParts<S>>::from_request_parts(parts, state).await?.customer()
    }
}

/// The courier.
#[derive(Clone, Copy, Debug)]
pub struct Courier;

impl<S: Send + Sync> FromRequestParts<S> for Courier {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = <Caller as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        match caller.0.role {
            Role::Courier => Ok(Courier),
            _ => Err(AuthError::needs("courier", &caller.0)),
        }
    }
}

/// The operator.
#[derive(Clone, Copy, Debug)]
pub struct Operator;

impl<S: Send + Sync> FromRequestParts<S> for Operator {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = <Caller as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        match caller.0.role {
            Role::Operator => Ok(Operator),
            _ => Err(AuthError::needs("operator", &caller.0)),
        }
    }
}

/// Another service of the system, known by its name.
#[derive(Clone, Debug)]
pub struct ServiceCaller {
    pub name: String,
}

impl ServiceCaller {
    /// Only `service` may call this; any other service gets a 403.
    pub fn require(&self, service: &str) -> Result<(), AuthError> {
        if self.name == service {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!("only the {service} service may call this, not {}", self.name)))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ServiceCaller {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = <Caller as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        match caller.0.role {
            Role::Service => Ok(ServiceCaller { name: caller.0.sub }),
            _ => Err(AuthError::needs("service", &caller.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn only_a_bearer_scheme_with_a_token_is_read() {
        assert_eq!(bearer_token("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic dXNlcjpwdw=="), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
