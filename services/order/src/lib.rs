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

/// This service's OpenAPI description, as its `/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    shop_platform::http::document(SERVICE, http::api())
}

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
        count_orders_by_status(&parts);
        let (brokers, client_id) = (parts.brokers().to_owned(), format!("{}-live", parts.instance));
        let host = parts
            .host(http::api().with_state(state))
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

/// `shop_orders{status}`: the orders at each status, read from the database at each scrape
/// (both replicas read the same table: take the max, not the sum).
fn count_orders_by_status(parts: &Parts) {
    use prometheus_client::metrics::{family::Family, gauge::Gauge};
    let orders = Family::<StatusLabel, Gauge>::default();
    parts.web.metrics().register(
        "orders",
        "Orders at each status now (the same figure on every replica)",
        orders.clone(),
    );
    let pool = parts.pool.clone();
    parts.web.metrics().on_scrape(move || {
        let (pool, orders) = (pool.clone(), orders.clone());
        async move {
            match store::count_by_status(&pool).await {
                Ok(counts) => {
                    for status in OrderStatus::ALL {
                        let name: &'static str = status.into();
                        let count = counts.iter().find(|(s, _)| s == name).map_or(0, |(_, n)| *n);
                        orders.get_or_create(&StatusLabel { status: name }).set(count);
                    }
                }
                Err(error) => tracing::warn!(%error, "Cannot count the orders for the metrics"),
            }
        }
    });
}
