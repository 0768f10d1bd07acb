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

use shop_platform::host::ServiceHost;
use shop_platform::outbox::{Outbox, Relay};
use shop_platform::{db, http as web, kafka, Shutdown};

pub const SERVICE: &str = shop_events::service::PAYMENT;

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
        let instance = config.http.instance(SERVICE);
        let secrets = config.storage.secrets();
        let web = web::Web::new(&config.http, &secrets, SERVICE)?;
        let links = link::LinkKey::new(&secrets.read(shop_platform::secrets::PAYMENT_LINK_KEY)?);
        let pool = db::open(&config.storage.database_url(SERVICE), sqlx::migrate!("./migrations")).await?;
        let producer = kafka::producer(&config.kafka.brokers, &instance)?;
        let outbox = Outbox::new(SERVICE);
        let listener = web::bind(&config.http.host, config.http_port).await?;
        let state = http::AppState {
            pool: pool.clone(),
            outbox: outbox.clone(),
            instance: instance.clone(),
            public_url: config.public_url.trim_end_matches('/').to_owned(),
            app_url: config.app_url.clone(),
            links,
        };
        let router = web::finish(http::router(state), web::standard_checks(pool.clone(), producer.clone()), &web);
        let host = ServiceHost::new(listener, router).with_relay(Relay::new(pool, producer, &outbox, &instance));
        Ok(Service { host })
    }

    pub fn port(&self) -> u16 {
        self.host.port()
    }

    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.host.run_until_stopped(shutdown).await
    }
}
