//! The notification service: turns the seven stage events into customer messages and sends
//! them on two channels. Each channel is its own consumer group (`notification-mobile`,
//! `notification-email`) with its own offsets, so a slow mail server never delays a push.
//! An event is marked sent per channel only after the send succeeded; a resend after a
//! crash carries the same id and lands once at the receiver.

mod channels;
mod messages;

pub use messages::{notice, Notice};

use std::sync::Arc;

use async_trait::async_trait;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use shop_events::group;
use shop_platform::auth::{ServiceCredential, SigningKey};
use shop_platform::config::{HttpConfig, KafkaConfig, StorageConfig};
use shop_platform::consumer::{HandleError, Handler, Incoming};
use shop_platform::db::Pool;
use shop_platform::host::{Parts, ServiceHost};
use shop_platform::{inbox, Shutdown};

use crate::channels::{Channel, Outgoing};

pub const SERVICE: &str = shop_events::service::NOTIFICATION;

/// The id of what `channel` sends for the event `event_id` (the push's id, the mail's
/// Message-ID): the same for every redelivery of the event, so the receiver keeps it once. Its
/// last 74 bits are the event id and channel hashed (as a v5 id); its first 48 are the event's
/// time (a v7 event id's milliseconds, as `Envelope::wrap` makes them), so the receivers' keys
/// grow at their end, one page for many messages, instead of each landing on a page of its own
/// anywhere in the index. An event id without a time gives the plain v5 id.
fn outgoing_id(event_id: &uuid::Uuid, channel: &str) -> uuid::Uuid {
    let hashed = uuid::Uuid::new_v5(event_id, channel.as_bytes());
    if event_id.get_version() != Some(uuid::Version::SortRand) {
        return hashed;
    }
    let mut bytes = *hashed.as_bytes();
    bytes[..6].copy_from_slice(&event_id.as_bytes()[..6]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// This service's OpenAPI description, as its `/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    shop_platform::http::document(SERVICE, shop_platform::http::Api::<()>::new())
}

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

/// Notices per channel and how they went: `sent`, `set_aside` (refused as they are),
/// `retried` (the receiver's failure; tried again).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Sent {
    channel: &'static str,
    outcome: &'static str,
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
        let counters = Family::<Sent, Counter>::default();
        parts.web.metrics().register("notifications_sent", "Notices per channel and outcome", counters.clone());
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
        let router = shop_platform::http::Api::new();
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
    counters: Family<Sent, Counter>,
}

#[async_trait]
impl Handler for NotifyHandler {
    /// A record alone is a batch of one: the same query, send and record.
    async fn handle(&self, incoming: &Incoming) -> Result<(), HandleError> {
        self.handle_batch(std::slice::from_ref(incoming)).await
    }

    /// Under load: one query for which were sent already, the others sent together (each to
    /// a different order: a partition of a stage topic holds one event per order; the channel
    /// decides how: pushes in one request, mails several at once), and one statement recording
    /// those that went. A failed send fails the batch after the successful ones are recorded;
    /// the consumer then handles the rest one by one.
    async fn handle_batch(&self, batch: &[Incoming]) -> Result<(), HandleError> {
        let ids: Vec<uuid::Uuid> = batch.iter().map(|incoming| incoming.envelope.id).collect();
        let done = inbox::applied_among(&self.pool, self.group, &ids).await?;
        let mut notices = Vec::with_capacity(batch.len());
        for incoming in batch {
            if done.contains(&incoming.envelope.id) {
                tracing::debug!(event_id = %incoming.envelope.id, "Already sent on this channel; skipping the redelivery");
                continue;
            }
            let envelope = &incoming.envelope;
            let Some((_, customer)) = incoming.event.stage() else {
                return Err(HandleError::Permanent(
                    "unexpected_event",
                    format!("{} is not a stage event", envelope.event_type),
                ));
            };
            let notice = notice(envelope.order_id, &incoming.event).expect("every stage event has a notice");
            notices.push((incoming, customer, notice));
        }
        let outgoing: Vec<Outgoing> = notices
            .iter()
            .map(|(incoming, customer, notice)| Outgoing {
                id: outgoing_id(&incoming.envelope.id, self.channel.name()),
                order_id: incoming.envelope.order_id,
                customer,
                notice,
                span: incoming.span.clone(),
            })
            .collect();
        let sends = self.channel.send_all(&outgoing).await;
        let mut sent = Vec::with_capacity(sends.len());
        let mut failure = None;
        for ((incoming, _, notice), result) in notices.iter().zip(sends) {
            let outcome = match &result {
                Ok(()) => "sent",
                Err(HandleError::Permanent(..)) => "set_aside",
                Err(HandleError::Transient(..)) => "retried",
            };
            self.counters.get_or_create(&Sent { channel: self.channel.name(), outcome }).inc();
            match result {
                Ok(()) => {
                    incoming.span.in_scope(|| {
                        tracing::debug!(channel = self.channel.name(), stage = %notice.stage,
                            order_id = %incoming.envelope.order_id, "Customer notified")
                    });
                    sent.push(incoming.envelope.id);
                }
                Err(error) => _ = failure.get_or_insert(error),
            }
        }
        inbox::record_applied(&self.pool, self.group, &sent).await?;
        failure.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::outgoing_id;

    #[test]
    fn an_events_message_keeps_its_id_per_channel_and_follows_the_events_time() {
        let earlier = uuid::Uuid::now_v7();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = uuid::Uuid::now_v7();
        let id = outgoing_id(&earlier, "email");
        assert_eq!(id, outgoing_id(&earlier, "email"), "a redelivery gets the same id");
        assert_ne!(id, outgoing_id(&earlier, "mobile"), "each channel its own");
        assert_eq!(id.get_version(), Some(uuid::Version::Custom));
        assert_eq!(id.as_bytes()[..6], earlier.as_bytes()[..6], "the event's milliseconds first");
        for channel in ["email", "mobile"] {
            // As the receivers store it: text, ordered as the bytes are.
            assert!(outgoing_id(&later, channel).to_string() > outgoing_id(&earlier, "email").to_string());
        }
        // An event id without a time: the id is the v5 hash alone.
        let untimed = uuid::Uuid::new_v4();
        assert_eq!(outgoing_id(&untimed, "email"), uuid::Uuid::new_v5(&untimed, b"email"));
    }
}
