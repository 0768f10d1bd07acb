//! Keys for a test: a fresh secrets folder with every key and credential, the web settings a
//! router under test is finished with, and tokens for any caller. Removed when dropped.

use std::path::PathBuf;
use std::time::Duration;

use super::{customer_subject, Role, SigningKey, Verifier, PEOPLE_ISSUER};
use crate::http::Web;
use crate::secrets::Secrets;

/// The issuers of a system: mobile for people, order and notification for their calls.
const ISSUERS: [&str; 3] = [PEOPLE_ISSUER, shop_events::service::ORDER, shop_events::service::NOTIFICATION];

pub struct TestKeys {
    dir: PathBuf,
    secrets: Secrets,
}

impl TestKeys {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("shop-test-secrets-{}", uuid::Uuid::new_v4()));
        let secrets = Secrets::new(&dir);
        secrets.generate(&ISSUERS).expect("test secrets are written");
        Self { dir, secrets }
    }

    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// What `service`'s router is finished with, allowing `origins` and signing in at `sign_in_url`.
    pub fn web(&self, service: &str, origins: &[&str]) -> Web {
        let verifier = Verifier::load(&self.secrets, service).expect("the test key set loads");
        let origins: Vec<String> = origins.iter().map(|o| (*o).to_owned()).collect();
        Web::with_verifier(service, verifier, &origins, "http://localhost:8080").expect("test web settings")
    }

    /// `Bearer <token>` of a customer.
    pub fn customer(&self, email: &str) -> String {
        self.person(&customer_subject(email), Role::Customer)
    }

    /// `Bearer <token>` of the courier or the operator.
    pub fn staff(&self, role: Role) -> String {
        self.person(role.as_str(), role)
    }

    fn person(&self, subject: &str, role: Role) -> String {
        let key = SigningKey::load(&self.secrets, PEOPLE_ISSUER).expect("the people key loads");
        format!("Bearer {}", key.mint_person(subject, role, Duration::from_secs(600)).expect("a token"))
    }

    /// `Bearer <token>` of `service` calling `audience`.
    pub fn service(&self, service: &str, audience: &str) -> String {
        let key = SigningKey::load(&self.secrets, service).expect("the service's key loads");
        format!("Bearer {}", key.mint(service, Role::Service, audience, Duration::from_secs(600)).expect("a token"))
    }
}

impl Default for TestKeys {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestKeys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
