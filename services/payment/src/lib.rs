//! The payment service: the gateway that owns payments. Order opens a payment per order
//! (`POST /payments`, idempotent per order), the customer pays it once
//! (`POST /payments/{id}/pay`), and each change is published through the outbox.

mod config;
mod http;
mod link;
mod status;
mod store;

pub use config::Config;
pub use status::{AlreadyPaid, PaymentStatus};

use shop_platform::host::{Parts, ServiceHost};
use shop_platform::outbox::Outbox;
use shop_platform::Shutdown;

pub const SERVICE: &str = shop_events::service::PAYMENT;

/// This service's OpenAPI description, as its `/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    shop_platform::http::document(SERVICE, http::api())
}

/// The files of the secrets folder this service reads, and no others (each deployment mounts
/// exactly these).
pub fn secret_files() -> Vec<String> {
    use shop_platform::secrets;
    vec![secrets::JWKS.to_owned(), secrets::PAYMENT_LINK_KEY.to_owned()]
}

pub struct Service {
    host: ServiceHost,
}

impl Service {
    pub async fn build(config: Config) -> anyhow::Result<Service> {
        let parts =
            Parts::open(SERVICE, &config.http, config.http_port, &config.storage, &config.kafka, sqlx::migrate!())
                .await?;
        let links = link::LinkKey::new(&parts.secrets.read(shop_platform::secrets::PAYMENT_LINK_KEY)?);
        let outbox = Outbox::new(SERVICE);
        let state = http::AppState {
            pool: parts.pool.clone(),
            outbox: outbox.clone(),
            instance: parts.instance.clone(),
            public_url: config.public_url.trim_end_matches('/').to_owned(),
            app_url: config.app_url.clone(),
            links,
        };
        let relay = parts.relay(&outbox);
        let host = parts.host(http::api().with_state(state)).with_relay(relay);
        Ok(Service { host })
    }

    pub fn port(&self) -> u16 {
        self.host.port()
    }

    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.host.run_until_stopped(shutdown).await
    }
}
