//! The delivery service: owns deliveries. It opens one per order ready to ship and lets the
//! courier mark it shipped, then delivered; each step is published through the outbox.

mod config;
mod handler;
mod http;
mod status;
mod store;

pub use config::Config;
pub use status::{CourierAction, DeliveryStatus, IllegalTransition};

use shop_events::group;
use shop_platform::host::{Parts, ServiceHost};
use shop_platform::outbox::Outbox;
use shop_platform::transactional::InTransaction;
use shop_platform::Shutdown;

pub const SERVICE: &str = shop_events::service::DELIVERY;

/// This service's OpenAPI description, as its `/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    shop_platform::http::document(SERVICE, http::api())
}

/// The files of the secrets folder this service reads, and no others (each deployment mounts
/// exactly these).
pub fn secret_files() -> Vec<String> {
    use shop_platform::secrets;
    vec![secrets::JWKS.to_owned()]
}

pub struct Service {
    host: ServiceHost,
}

impl Service {
    pub async fn build(config: Config) -> anyhow::Result<Service> {
        let parts =
            Parts::open(SERVICE, &config.http, config.http_port, &config.storage, &config.kafka, sqlx::migrate!())
                .await?;
        let outbox = Outbox::new(SERVICE);
        let state =
            http::AppState { pool: parts.pool.clone(), outbox: outbox.clone(), instance: parts.instance.clone() };
        let apply = handler::DeliveryHandler { outbox: outbox.clone(), instance: parts.instance.clone() };
        let handler = InTransaction { pool: parts.pool.clone(), apply, outbox: Some(outbox.clone()) };
        let consumer = parts.consumer(group::DELIVERY_SERVICE, handler);
        let relay = parts.relay(&outbox);
        let host = parts.host(http::api().with_state(state)).with_consumer(consumer).with_relay(relay);
        Ok(Service { host })
    }

    pub fn port(&self) -> u16 {
        self.host.port()
    }

    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.host.run_until_stopped(shutdown).await
    }
}
