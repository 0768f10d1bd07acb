//! The order service: owns orders and their status. It creates orders (calling payment
//! synchronously for the payment link), follows payment and delivery events to move each
//! order through its stages, and publishes every change through the outbox.

mod catalogue;
mod config;
mod handler;
mod http;
mod live;
mod new_order;
mod payment_client;
mod status;
mod store;

pub use catalogue::{Product, CATALOGUE};
pub use config::Config;
pub use new_order::{CreateOrderRequest, NewOrder};
pub use status::{IllegalTransition, OrderStatus, OrderTrigger};

use shop_events::{group, service};
use shop_platform::auth::{ServiceCredential, SigningKey};
use shop_platform::host::{Parts, ServiceHost};
use shop_platform::outbox::Outbox;
use shop_platform::transactional::InTransaction;
use shop_platform::Shutdown;

pub const SERVICE: &str = shop_events::service::ORDER;

/// The files of the secrets folder this service reads, and no others (each deployment mounts
/// exactly these).
pub fn secret_files() -> Vec<String> {
    use shop_platform::secrets;
    vec![secrets::JWKS.to_owned(), secrets::signing_key(SERVICE)]
}

pub struct Service {
    host: ServiceHost,
}

impl Service {
    pub async fn build(config: Config) -> anyhow::Result<Service> {
        let parts =
            Parts::open(SERVICE, &config.http, config.http_port, &config.storage, &config.kafka, sqlx::migrate!())
                .await?;
        let credential = ServiceCredential::new(SigningKey::load(&parts.secrets, SERVICE)?, service::PAYMENT);
        let outbox = Outbox::new(SERVICE);
        let followers = live::Followers::default();
        let state = http::AppState {
            pool: parts.pool.clone(),
            outbox: outbox.clone(),
            instance: parts.instance.clone(),
            payments: payment_client::PaymentClient::new(config.payment_urls.clone(), credential),
            followers: followers.clone(),
        };
        let apply = handler::OrderHandler {
            outbox: outbox.clone(),
            instance: parts.instance.clone(),
            followers: followers.clone(),
        };
        let handler = InTransaction { pool: parts.pool.clone(), apply, outbox: Some(outbox.clone()) };
        let consumer = parts.consumer(group::ORDER_SERVICE, handler);
        let relay = parts.relay(&outbox);
        let (brokers, client_id) = (parts.brokers().to_owned(), format!("{}-live", parts.instance));
        let host = parts
            .host(http::router(state))
            .with_consumer(consumer)
            .with_relay(relay)
            .with_task(move |shutdown| followers.hear_stages(brokers, client_id, shutdown));
        Ok(Service { host })
    }

    pub fn port(&self) -> u16 {
        self.host.port()
    }

    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.host.run_until_stopped(shutdown).await
    }
}
