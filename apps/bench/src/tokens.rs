//! The bench's callers sign in as users do: it mints their tokens with the system's key for
//! people (as `shop token` does), a new customer for each journey, the courier and the
//! operator once.

use std::time::Duration;

use shop_platform::auth::{customer_subject, Role, SigningKey, Verifier, PEOPLE_ISSUER};
use shop_platform::secrets::Secrets;

/// Long enough for any run.
const TTL: Duration = Duration::from_secs(6 * 3600);

/// What one token check costs, in microseconds.
#[derive(Clone, Copy, Debug)]
pub struct CheckTimes {
    /// A token the service has not seen: the signature is checked.
    pub first: f64,
    /// A token it has checked before: looked up.
    pub again: f64,
}

#[derive(Debug)]
pub struct Tokens {
    key: SigningKey,
    courier: String,
    operator: String,
    /// What a service checks tokens with, to time a check here.
    verifier: Verifier,
}

impl Tokens {
    pub fn load(secrets: &Secrets) -> anyhow::Result<Self> {
        let key = SigningKey::load(secrets, PEOPLE_ISSUER)?;
        let courier = format!("Bearer {}", key.mint_person(Role::Courier.as_str(), Role::Courier, TTL)?);
        let operator = format!("Bearer {}", key.mint_person(Role::Operator.as_str(), Role::Operator, TTL)?);
        let verifier = Verifier::load(secrets, shop_events::service::ORDER)?;
        Ok(Self { key, courier, operator, verifier })
    }

    /// Microseconds a token check takes on this machine now, as a service makes it (the same
    /// verifier code and keys): the first check of a token (the signature), timed over many
    /// customers' tokens, and a check of a token already checked (remembered), over one
    /// token checked many times.
    pub fn time_a_check(&self) -> anyhow::Result<CheckTimes> {
        const TOKENS: u32 = 1000;
        let tokens = (0..TOKENS)
            .map(|i| {
                Ok(self.customer(&format!("timing-{i}@bench.example.com"))?.trim_start_matches("Bearer ").to_owned())
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let check =
            |token: &str| self.verifier.verify(token).map_err(|e| anyhow::anyhow!("the bench's own token: {e}"));
        let started = std::time::Instant::now();
        for token in &tokens {
            check(token)?;
        }
        let first = started.elapsed().as_secs_f64() * 1e6 / f64::from(TOKENS);
        let started = std::time::Instant::now();
        for _ in 0..TOKENS {
            check(&tokens[0])?;
        }
        let again = started.elapsed().as_secs_f64() * 1e6 / f64::from(TOKENS);
        Ok(CheckTimes { first, again })
    }

    /// `Bearer <token>` of the customer `email`.
    pub fn customer(&self, email: &str) -> anyhow::Result<String> {
        Ok(format!("Bearer {}", self.key.mint_person(&customer_subject(email), Role::Customer, TTL)?))
    }

    pub fn courier(&self) -> &str {
        &self.courier
    }

    pub fn operator(&self) -> &str {
        &self.operator
    }
}
