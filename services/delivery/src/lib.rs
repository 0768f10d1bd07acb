//! The delivery service: owns deliveries. It opens one per order ready to ship and lets the
//! courier mark it shipped, then delivered; each step is published through the outbox.

mod config;
mod handler;
mod http;
mod status;
mod store;

pub use config::Config;
pub use status::{CourierAction, DeliveryStatus, IllegalTransition};

use std::sync::Arc;

use shop_events::group;
use shop_platform::consumer::Subscription;
use shop_platform::host::ServiceHost;
use shop_platform::outbox::{Outbox, Relay};
use shop_platform::transactional::InTransaction;
use shop_platform::{db, http as web, kafka, Shutdown};

pub const SERVICE: &str = shop_events::service::DELIVERY;

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
        let instance = config.http.instance(SERVICE);
        let web = web::Web::new(&config.http, &config.storage.secrets(), SERVICE)?;
        let pool = db::open(&config.storage.database_url(SERVICE), sqlx::migrate!("./migrations")).await?;
        let producer = kafka::producer(&config.kafka.brokers, &instance)?;
        let outbox = Outbox::new(SERVICE);
        let state = http::AppState { pool: pool.clone(), outbox: outbox.clone(), instance: instance.clone() };
        let router = web::finish(http::router(state), web::standard_checks(pool.clone(), producer.clone()), &web);
        let listener = web::bind(&config.http.host, config.http_port).await?;
        let apply = handler::DeliveryHandler { outbox: outbox.clone(), instance: instance.clone() };
        let handler = InTransaction { pool: pool.clone(), apply, outbox: Some(outbox.clone()) };
        let subscription = Subscription {
            brokers: config.kafka.brokers.clone(),
            group: group::DELIVERY_SERVICE,
            topics: group::topics(group::DELIVERY_SERVICE).to_vec(),
            client_id: instance.clone(),
        };
        let host = ServiceHost::new(listener, router)
            .with_consumer(subscription, Arc::new(handler), producer.clone())
            .with_inbox_pruning(pool.clone())
            .with_relay(Relay::new(pool, producer, &outbox, &instance));
        Ok(Service { host })
    }

    pub fn port(&self) -> u16 {
        self.host.port()
    }

    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.host.run_until_stopped(shutdown).await
    }
}
