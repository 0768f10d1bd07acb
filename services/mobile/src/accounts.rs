//! Signing people in: the mobile service is the system's identity provider (it needs no
//! eighth service). Customers register and sign in with their email and a password (Argon2id
//! hashes, never the password, are stored); the courier and the operator sign in with the
//! passwords of the secrets folder. Each gets a short-lived signed token every service
//! verifies; the public keys are at `/.well-known/jwks.json`.

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use shop_platform::auth::{customer_subject, Role, SigningKey, PERSON_TOKEN_TTL};
use shop_platform::db::{now_millis, Pool};
use shop_platform::http::{ApiError, ApiJson};
use shop_platform::secrets::{self, Secrets};
use subtle::ConstantTimeEq;

use crate::AppState;

const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = 128;

/// Argon2id with 7 MiB and 5 passes, one of OWASP's equivalent settings (the 19 MiB one would
/// put the service over its memory budget with a few sign-ins at once).
fn argon2() -> Argon2<'static> {
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(7 * 1024, 5, 1, None).expect("valid Argon2 parameters"),
    )
}

/// Passwords hashed at once: each hash holds its memory while it runs.
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Runs `work` (a hash or a check) on the blocking pool, two at most at a time.
async fn hashing<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    let _turn = HASHING.acquire().await.map_err(|e| ApiError::internal(e.to_string()))?;
    tokio::task::spawn_blocking(work).await.map_err(|e| ApiError::internal(e.to_string()))
}

/// What signing in needs: the key people's tokens are signed with, the staff's passwords,
/// the published key set, and a hash to check unknown emails against (so that a wrong email
/// takes as long as a wrong password and tells nothing).
pub struct Identity {
    key: SigningKey,
    courier_password: String,
    operator_password: String,
    key_set: serde_json::Value,
    decoy: String,
}

impl Identity {
    pub fn load(secrets: &Secrets) -> anyhow::Result<Self> {
        let key_set = serde_json::from_slice(&secrets.read(secrets::JWKS)?)?;
        let decoy = hash(&secrets::random_text(16)?)?;
        Ok(Self {
            key: SigningKey::load(secrets, shop_platform::auth::PEOPLE_ISSUER)?,
            courier_password: secrets.read_text(secrets::COURIER_PASSWORD)?,
            operator_password: secrets.read_text(secrets::OPERATOR_PASSWORD)?,
            key_set,
            decoy,
        })
    }

    fn token(&self, subject: &str, role: Role) -> Result<SignedIn, ApiError> {
        let token = self
            .key
            .mint_person(subject, role, PERSON_TOKEN_TTL)
            .map_err(|e| ApiError::internal(format!("cannot sign a token: {e}")))?;
        Ok(SignedIn {
            token,
            token_type: "Bearer",
            expires_in: PERSON_TOKEN_TTL.as_secs(),
            role,
            subject: subject.to_owned(),
        })
    }
}

fn hash(password: &str) -> anyhow::Result<String> {
    argon2()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash a password: {e}"))
}

fn verifies(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A token, as the client gets it (OAuth 2.0 names in camelCase).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedIn {
    /// The JWT to send as `Authorization: Bearer <token>`.
    token: String,
    /// `Bearer`.
    token_type: &'static str,
    /// Seconds it stays good.
    expires_in: u64,
    role: Role,
    /// Whom it names: the customer's email, or the staff role.
    subject: String,
}

/// A customer's email and password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerCredentials {
    email: String,
    /// 8 to 128 characters when opening an account.
    password: String,
}

/// The courier's or the operator's sign-in.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffCredentials {
    /// `courier` or `operator`.
    username: String,
    password: String,
}

fn refused() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "wrong email or password")
}

/// `POST /auth/customers`: opens an account and signs it in (201); 409 if the email has one.
#[utoipa::path(post, path = "/auth/customers", request_body = CustomerCredentials, responses(
    (status = 201, description = "Opened and signed in.", body = SignedIn),
    (status = 409, description = "This email has an account already.", body = shop_platform::http::ErrorDoc),
    (status = 422, description = "Not an email address, or a password not 8 to 128 characters.", body = shop_platform::http::ErrorDoc),
    (status = 429, description = "Too many tries from this client: wait.", body = shop_platform::http::ErrorDoc),
))]
pub async fn register(
    State(state): State<AppState>,
    ApiJson(credentials): ApiJson<CustomerCredentials>,
) -> Result<Response, ApiError> {
    let email = shop_events::Customer::parse_email(&credentials.email)
        .map(|email| customer_subject(&email))
        .map_err(|_| ApiError::unprocessable("email must be an address like name@example.com"))?;
    let length = credentials.password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&length) {
        return Err(ApiError::unprocessable(format!("password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")));
    }
    let password = credentials.password;
    let hashed = hashing(move || hash(&password)).await?.map_err(|e| ApiError::internal(e.to_string()))?;
    let inserted = sqlx::query(
        "INSERT INTO accounts (email, password_hash, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(&email)
    .bind(hashed)
    .bind(now_millis())
    .execute(&state.pool)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::conflict("this email has an account already: sign in"));
    }
    tracing::debug!("Customer account opened");
    Ok((StatusCode::CREATED, Json(state.identity.token(&email, Role::Customer)?)).into_response())
}

/// `POST /auth/sign-in`: a customer's token for their email and password.
#[utoipa::path(post, path = "/auth/sign-in", request_body = CustomerCredentials, responses(
    (status = 200, description = "Signed in.", body = SignedIn),
    (status = 401, description = "Wrong email or password.", body = shop_platform::http::ErrorDoc),
    (status = 429, description = "Too many tries from this client: wait.", body = shop_platform::http::ErrorDoc),
))]
pub async fn sign_in(
    State(state): State<AppState>,
    ApiJson(credentials): ApiJson<CustomerCredentials>,
) -> Result<Json<SignedIn>, ApiError> {
    let email = customer_subject(&credentials.email);
    let stored = stored_hash(&state.pool, &email).await?;
    let identity = Arc::clone(&state.identity);
    let known = stored.is_some();
    let against = stored.unwrap_or_else(|| identity.decoy.clone());
    let password = credentials.password;
    let matches = hashing(move || verifies(&password, &against)).await?;
    if !(known && matches) {
        return Err(refused());
    }
    Ok(Json(state.identity.token(&email, Role::Customer)?))
}

async fn stored_hash(pool: &Pool, email: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT password_hash FROM accounts WHERE email = $1").bind(email).fetch_optional(pool).await
}

/// `POST /auth/staff/sign-in`: the courier's or the operator's token.
#[utoipa::path(post, path = "/auth/staff/sign-in", request_body = StaffCredentials, responses(
    (status = 200, description = "Signed in.", body = SignedIn),
    (status = 401, description = "Wrong username or password.", body = shop_platform::http::ErrorDoc),
    (status = 429, description = "Too many tries from this client: wait.", body = shop_platform::http::ErrorDoc),
))]
pub async fn staff_sign_in(
    State(state): State<AppState>,
    ApiJson(credentials): ApiJson<StaffCredentials>,
) -> Result<Json<SignedIn>, ApiError> {
    let identity = &state.identity;
    let (role, expected) = match credentials.username.trim() {
        "courier" => (Role::Courier, &identity.courier_password),
        "operator" => (Role::Operator, &identity.operator_password),
        _ => return Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong username or password")),
    };
    if !bool::from(credentials.password.as_bytes().ct_eq(expected.as_bytes())) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong username or password"));
    }
    tracing::info!(role = role.as_str(), "Staff signed in");
    Ok(Json(identity.token(role.as_str(), role)?))
}

/// `GET /.well-known/jwks.json`: the public keys tokens are verified with.
#[utoipa::path(get, path = "/.well-known/jwks.json", responses(
    (status = 200, description = "A JSON Web Key Set (RFC 7517) of Ed25519 keys.", body = Object),
))]
pub async fn key_set(State(state): State<AppState>) -> Response {
    ([(axum::http::header::CACHE_CONTROL, "max-age=300")], Json(state.identity.key_set.clone())).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_hash_only() {
        let stored = hash("correct horse").unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{stored}");
        assert!(verifies("correct horse", &stored));
        assert!(!verifies("correct horsf", &stored));
        assert!(!verifies("correct horse", "not a hash"));
    }
}
