//! Who is calling. Every request may carry a signed JWT (`Authorization: Bearer`), verified
//! by every service against the system's public keys (`jwks.json` in the secrets folder).
//! People (customers, the courier, the operator) get theirs from the mobile service, which
//! signs people in; a service calling another signs its own short-lived token with a key of
//! its own. Handlers state the role they need by the extractor they take (`Customer`,
//! `Courier`, `Operator`, `ServiceCaller`): without a token that is a 401, with another role
//! a 403.

mod extract;
mod keys;
mod service_token;
mod test_keys;

pub use extract::{authenticate, AuthError, Caller, Courier, Customer, Operator, ServiceCaller, BEARER_CHALLENGE};
pub use keys::{SigningKey, Verifier};
pub use service_token::ServiceCredential;
pub use test_keys::TestKeys;

use serde::{Deserialize, Serialize};

/// The issuer of every person's token: the mobile service signs people in.
pub const PEOPLE_ISSUER: &str = shop_events::service::MOBILE;
/// The audience of every person's token: the whole system.
pub const PEOPLE_AUDIENCE: &str = "shop";
/// How long a person's token lasts.
pub const PERSON_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// What a token lets its holder do.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::VariantArray,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Role {
    /// Orders, pays and follows their own orders; the subject is their email.
    Customer,
    /// Sees deliveries and marks them shipped and delivered.
    Courier,
    /// The operations page, the audit trail, consumer lag, all mail, metrics.
    Operator,
    /// One of the services calling another; the subject is the caller's name.
    Service,
}

impl Role {
    /// The role's name, as serde spells it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether a token of this role may come from `issuer`: people's roles only from the
    /// people issuer, the service role only from a service signing for itself.
    fn issued_by(self, issuer: &str, subject: &str) -> bool {
        match self {
            Role::Customer | Role::Courier | Role::Operator => issuer == PEOPLE_ISSUER,
            Role::Service => issuer != PEOPLE_ISSUER && subject == issuer,
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        <Role as strum::VariantArray>::VARIANTS
            .iter()
            .copied()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| format!("no role {text:?}: customer, courier, operator or service"))
    }
}

/// What a token says, as signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who signed it: `mobile` for people, the calling service for services.
    pub iss: String,
    /// Who holds it: a customer's email (lower case), `courier`, `operator`, a service's name.
    pub sub: String,
    /// Who it is for: `shop` for people, the called service for services.
    pub aud: String,
    pub role: Role,
    /// Issued at and expires at, in seconds since the epoch.
    pub iat: u64,
    pub exp: u64,
}

/// A customer's identity: their email, compared case-insensitively (stored lower case).
pub fn customer_subject(email: &str) -> String {
    email.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_is_named_as_serde_names_it_and_parses_back() {
        for role in <Role as strum::VariantArray>::VARIANTS.iter().copied() {
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("admin".parse::<Role>().unwrap_err().contains("customer, courier, operator or service"));
    }
}
