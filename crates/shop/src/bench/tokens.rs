//! The bench's callers sign in as users do: it mints their tokens with the system's key for
//! people (as `shop token` does), a new customer for each journey, the courier and the
//! operator once.

use std::time::Duration;

use shop_platform::auth::{customer_subject, Role, SigningKey, PEOPLE_ISSUER};
use shop_platform::secrets::Secrets;

/// Long enough for any run.
const TTL: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug)]
pub struct Tokens {
    key: SigningKey,
    courier: String,
    operator: String,
}

impl Tokens {
    pub fn load(secrets: &Secrets) -> anyhow::Result<Self> {
        let key = SigningKey::load(secrets, PEOPLE_ISSUER)?;
        let courier = format!("Bearer {}", key.mint_person(Role::Courier.as_str(), Role::Courier, TTL)?);
        let operator = format!("Bearer {}", key.mint_person(Role::Operator.as_str(), Role::Operator, TTL)?);
        Ok(Self { key, courier, operator })
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
