//! The notification service: turns the seven stage events into customer messages and sends
//! them on two channels. Each channel is its own consumer group (`notification-mobile`,
//! `notification-email`) with its own offsets, so a slow mail server never delays a push.
//! An event is marked sent per channel only after the send succeeded; a resend after a
//! crash carries the same id and lands once at the receiver.

mod channels;
mod messages;

pub use messages::{notice, Notice};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use shop_events::group;
use shop_platform::auth::{Operator, ServiceCredential, SigningKey};
use shop_platform::config::{HttpConfig, KafkaConfig, StorageConfig};
use shop_platform::consumer::{HandleError, Handler, Incoming};
use shop_platform::db::Pool;
use shop_platform::host::{Parts, ServiceHost};
use shop_platform::{inbox, Shutdown};

use crate::channels::{Channel, Outgoing};

pub const SERVICE: &str = shop_events::service::NOTIFICATION;

/// The files of the secrets folder this service reads, and no others (each deployment mounts
/// exactly these).
pub fn secret_files() -> Vec<String> {
    use shop_platform::secrets;
    vec![secrets::JWKS.to_owned(), secrets::signing_key(SERVICE), secrets::SMTP_PASSWORD.to_owned()]
}

#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    /// HTTP port of health and metrics.
    #[arg(long = "http-port", env = "HTTP_PORT", default_value_t = 8084)]
    pub http_port: u16,
    /// Base URL of the mobile service, where pushes go.
    #[arg(long = "mobile-url", env = "MOBILE_URL", default_value = "http://localhost:8080")]
    pub mobile_url: String,
    /// Host of the SMTP server mail goes to.
    #[arg(long = "smtp-host", env = "SMTP_HOST", default_value = "localhost")]
    pub smtp_host: String,
    /// Port of the SMTP server mail goes to.
    #[arg(long = "smtp-port", env = "SMTP_PORT", default_value_t = 2525)]
    pub smtp_port: u16,
    /// The sender of every mail.
    #[arg(long = "mail-from", env = "MAIL_FROM", default_value = "Shop <notifications@shop.example>")]
    pub mail_from: String,
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub kafka: KafkaConfig,
    #[command(flatten)]
    pub storage: StorageConfig,
}

pub struct Service {
    host: ServiceHost,
}

#[derive(Default)]
struct Counters {
    push: AtomicU64,
    email: AtomicU64,
}

impl Service {
    pub async fn build(config: Config) -> anyhow::Result<Service> {
        let parts = Parts::open(
            SERVICE,
            &config.http,
            config.http_port,
            &config.storage,
            &config.kafka,
            sqlx::migrate::Migrator::DEFAULT,
        )
        .await?;
        let push_credential =
            ServiceCredential::new(SigningKey::load(&parts.secrets, SERVICE)?, shop_events::service::MOBILE);
        let smtp_password = parts.secrets.read_text(shop_platform::secrets::SMTP_PASSWORD)?;
        let counters = Arc::new(Counters::default());
        let channels: [(&'static str, Arc<dyn Channel>); 2] = [
            (group::NOTIFICATION_MOBILE, Arc::new(channels::Push::new(&config.mobile_url, push_credential))),
            (
                group::NOTIFICATION_EMAIL,
                Arc::new(channels::Mail::new(
                    &config.smtp_host,
                    config.smtp_port,
                    &config.mail_from,
                    SERVICE,
                    smtp_password,
                )?),
            ),
        ];
        let consumers: Vec<_> = channels
            .into_iter()
            .map(|(group, channel)| {
                let client_id = format!("{}-{}", parts.instance, channel.name());
                let handler = NotifyHandler { pool: parts.pool.clone(), group, channel, counters: counters.clone() };
                let mut consumer = parts.consumer(group, handler);
                consumer.subscription.client_id = client_id;
                consumer
            })
            .collect();
        let router = Router::new().route("/metrics", get(metrics)).with_state(counters);
        let host = consumers.into_iter().fold(parts.host(router), ServiceHost::with_consumer);
        Ok(Service { host })
    }

    pub fn port(&self) -> u16 {
        self.host.port()
    }

    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.host.run_until_stopped(shutdown).await
    }
}

struct NotifyHandler {
    pool: Pool,
    group: &'static str,
    channel: Arc<dyn Channel>,
    counters: Arc<Counters>,
}

impl NotifyHandler {
    /// Sends the notice of `incoming` on this handler's channel (not recording it).
    async fn send(&self, incoming: &Incoming) -> Result<(), HandleError> {
        let envelope = &incoming.envelope;
        let Some((_, customer)) = incoming.event.stage() else {
            return Err(HandleError::Permanent(format!("{} is not a stage event", envelope.event_type)));
        };
        let notice = notice(envelope.order_id, &incoming.event).expect("every stage event has a notice");
        let id = uuid::Uuid::new_v5(&envelope.id, self.channel.name().as_bytes());
        let outgoing = Outgoing { id, order_id: envelope.order_id, customer, notice: &notice };
        self.channel.send(&outgoing).await?;
        let counter = if self.channel.name() == "push" { &self.counters.push } else { &self.counters.email };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(channel = self.channel.name(), stage = %notice.stage, order_id = %envelope.order_id, "Customer notified");
        Ok(())
    }
}

/// At most this many notices of one batch are on their way at once.
const SENDS_IN_FLIGHT: usize = 8;

#[async_trait]
impl Handler for NotifyHandler {
    /// A record alone is a batch of one: the same query, send and record.
    async fn handle(&self, incoming: &Incoming) -> Result<(), HandleError> {
        self.handle_batch(std::slice::from_ref(incoming)).await
    }

    /// Under load: one query for which were sent already, the others sent several at once
    /// (each to a different order: a partition of a stage topic holds one event per order),
    /// and one statement recording those that went. A failed send fails the batch after the
    /// successful ones are recorded; the consumer then handles the rest one by one.
    async fn handle_batch(&self, batch: &[Incoming]) -> Result<(), HandleError> {
        let ids: Vec<uuid::Uuid> = batch.iter().map(|incoming| incoming.envelope.id).collect();
        let done = inbox::applied_among(&self.pool, self.group, &ids).await?;
        let mut sends = Vec::with_capacity(batch.len());
        for incoming in batch {
            if done.contains(&incoming.envelope.id) {
                tracing::debug!(event_id = %incoming.envelope.id, "Already sent on this channel; skipping the redelivery");
                continue;
            }
            sends.push(async move { self.send(incoming).await.map(|()| incoming.envelope.id) });
        }
        let sends: Vec<_> = futures::stream::iter(sends).buffer_unordered(SENDS_IN_FLIGHT).collect().await;
        let sent: Vec<uuid::Uuid> = sends.iter().filter_map(|sent| sent.as_ref().ok().copied()).collect();
        inbox::record_applied(&self.pool, self.group, &sent).await?;
        sends.into_iter().find_map(Result::err).map_or(Ok(()), Err)
    }
}

/// Prometheus text, for the operator: notifications sent per channel since start.
async fn metrics(State(counters): State<Arc<Counters>>, _: Operator) -> String {
    format!(
        "# TYPE shop_notifications_sent_total counter\n\
         shop_notifications_sent_total{{channel=\"push\"}} {}\n\
         shop_notifications_sent_total{{channel=\"email\"}} {}\n",
        counters.push.load(Ordering::Relaxed),
        counters.email.load(Ordering::Relaxed)
    )
}
