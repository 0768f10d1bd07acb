//! The order service: owns orders and their status. It creates orders (calling payment
//! synchronously for the payment link), follows payment and delivery events to move each
//! order through its stages, and publishes every change through the outbox.

mod catalogue;
mod config;
mod handler;
mod http;
mod new_order;
mod payment_client;
mod status;
mod store;

pub use catalogue::{Product, CATALOGUE};
pub use config::Config;
pub use new_order::{CreateOrderRequest, NewOrder};
pub use status::{IllegalTransition, OrderStatus, OrderTrigger};

use std::sync::Arc;

use shop_events::{group, service};
use shop_platform::auth::{ServiceCredential, SigningKey};
use shop_platform::consumer::Subscription;
use shop_platform::host::ServiceHost;
use shop_platform::outbox::{Outbox, Relay};
use shop_platform::transactional::InTransaction;
use shop_platform::{db, http as web, kafka, Shutdown};

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
        let instance = config.http.instance(SERVICE);
        let secrets = config.storage.secrets();
        let web = web::Web::new(&config.http, &secrets, SERVICE)?;
        let credential = ServiceCredential::new(SigningKey::load(&secrets, SERVICE)?, service::PAYMENT);
        let pool = db::open(&config.storage.database_url(SERVICE), sqlx::migrate!("./migrations")).await?;
        let producer = kafka::producer(&config.kafka.brokers, &instance)?;
        let outbox = Outbox::new(SERVICE);
        let (changes, _) = tokio::sync::watch::channel(0);
        let state = http::AppState {
            pool: pool.clone(),
            outbox: outbox.clone(),
            instance: instance.clone(),
            payments: payment_client::PaymentClient::new(config.payment_urls.clone(), credential),
            changes: changes.clone(),
        };
        let router = web::finish(http::router(state), web::standard_checks(pool.clone(), producer.clone()), &web);
        let listener = web::bind(&config.http.host, config.http_port).await?;
        let apply = handler::OrderHandler { outbox: outbox.clone(), instance: instance.clone(), changes };
        let handler = InTransaction { pool: pool.clone(), apply, outbox: Some(outbox.clone()) };
        let subscription = Subscription {
            brokers: config.kafka.brokers.clone(),
            group: group::ORDER_SERVICE,
            topics: group::topics(group::ORDER_SERVICE).to_vec(),
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
