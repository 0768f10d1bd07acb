//! A service's credential for calling another: a short-lived token it signs for itself with
//! its own key, addressed to the one service it calls, kept and renewed before it expires.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Role, SigningKey};

/// How long a service token lasts.
const TTL: Duration = Duration::from_secs(300);
/// A kept token is renewed when less than this is left of it.
const RENEW_WITHIN: Duration = Duration::from_secs(60);

pub struct ServiceCredential {
    key: SigningKey,
    audience: String,
    kept: Mutex<Option<(String, Instant)>>,
}

impl ServiceCredential {
    /// The credential of the service `key` belongs to for calling `audience`.
    pub fn new(key: SigningKey, audience: &str) -> Self {
        Self { key, audience: audience.to_owned(), kept: Mutex::new(None) }
    }

    /// The `Authorization` header value for the next call.
    pub fn authorization(&self) -> anyhow::Result<String> {
        let mut kept = self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((token, expires)) = kept.as_ref() {
            if expires.saturating_duration_since(Instant::now()) > RENEW_WITHIN {
                return Ok(format!("Bearer {token}"));
            }
        }
        let token = self.key.mint(self.key.issuer(), Role::Service, &self.audience, TTL)?;
        *kept = Some((token.clone(), Instant::now() + TTL));
        Ok(format!("Bearer {token}"))
    }
}
