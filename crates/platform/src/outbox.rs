//! The transactional outbox. A service writes its events into the `outbox` table in the same
//! database transaction as the state change, so a crash can neither lose an event whose change
//! committed nor publish one whose change rolled back. One relay per database (whichever
//! replica holds the lease) publishes the rows in order with the idempotent producer and
//! deletes them once the brokers have acknowledged them. A crash between the two republishes
//! a row with the same event id, which every consumer's inbox then ignores.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use shop_events::{Event, OrderId, RawEnvelope, TRACEPARENT_HEADER};
use sqlx::Row;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::db::{now_millis, placeholders, Pool, Transaction};
use crate::kafka::Producer;
use crate::metrics::{Metrics, Records};
use crate::Shutdown;

const LEASE: Duration = Duration::from_secs(5);
/// How soon the relay looks at its table again after finding less than a full batch: `POLL`
/// while rows keep coming, `IDLE_POLL` once none came for `QUIET`. Rows committed in this
/// process wake the relay at once; rows another replica committed (it shares the database
/// but not the lease) wait for the next look. An idle relay so looks 10 times a second, not
/// 100, and under load nothing waits longer than before.
const POLL: Duration = Duration::from_millis(10);
const IDLE_POLL: Duration = Duration::from_millis(100);
const QUIET: Duration = Duration::from_secs(1);
const BATCH: i64 = 256;

/// What a service did, for the audit trail: written with the event it published.
pub struct Audit<'a> {
    pub instance: &'a str,
    pub action: &'a str,
    pub message: String,
}

/// Writes events into the outbox, and commits them waking the relay of this process.
#[derive(Clone)]
pub struct Outbox {
    source: &'static str,
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new(source: &'static str) -> Self {
        Self { source, wake: Arc::new(Notify::new()) }
    }

    /// Adds `event` about `order_id` to the outbox within `tx`, with the audit record
    /// (`logging-events`) that accompanies it: both rows in one statement.
    pub async fn enqueue(
        &self,
        tx: &mut Transaction<'_>,
        order_id: OrderId,
        event: &Event,
        audit: Audit<'_>,
        span: &tracing::Span,
    ) -> Result<(), sqlx::Error> {
        // The context of the work that wrote the rows: the relay's publish span continues it.
        let traceparent = crate::trace::traceparent(span);
        let audit = Event::AuditRecorded(shop_events::AuditRecorded {
            action: audit.action.to_owned(),
            message: audit.message,
            instance: audit.instance.to_owned(),
        });
        let now = now_millis();
        let mut query = sqlx::query(
            "INSERT INTO outbox (id, topic, record_key, payload, traceparent, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6), ($7, $8, $9, $10, $11, $12)",
        );
        // The event first: envelope ids are time-ordered, and the relay publishes in id order.
        for event in [event, &audit] {
            let envelope = RawEnvelope::wrap(order_id, self.source, event);
            let payload = serde_json::to_string(&envelope).expect("an envelope always serializes");
            query = query
                .bind(envelope.id.to_string())
                .bind(event.topic().name())
                .bind(order_id.to_string())
                .bind(payload)
                .bind(traceparent.clone())
                .bind(now);
        }
        query.execute(&mut **tx).await?;
        Ok(())
    }

    /// Commits `tx`, which holds rows enqueued here, and tells the relay of this process
    /// they are there. The one way to commit them: a relay left untold would find them only
    /// at its next poll.
    pub async fn commit(&self, tx: Transaction<'_>) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        self.wake.notify_one();
        Ok(())
    }
}

/// Publishes the outbox. Runs until `stop` triggers, then drains what is left (bounded).
pub struct Relay {
    pool: Pool,
    producer: Producer,
    /// Where a new producer connects, as whom: the one given is replaced after a fatal error.
    brokers: String,
    client_id: String,
    owner: String,
    wake: Arc<Notify>,
    records: Records,
}

struct Pending {
    id: String,
    topic: String,
    key: String,
    payload: String,
    traceparent: Option<String>,
    created_at: i64,
}

impl Relay {
    /// The relay of `outbox` in `pool`. It counts what it publishes in `metrics`, and adds
    /// the outbox's size and the age of its oldest row there, read at each scrape.
    pub fn new(
        pool: Pool,
        producer: Producer,
        brokers: &str,
        outbox: &Outbox,
        instance: &str,
        metrics: &Metrics,
    ) -> Self {
        let owner = format!("{instance}/{}", Uuid::new_v4().simple());
        let rows = Gauge::<i64>::default();
        let oldest = Gauge::<f64, AtomicU64>::default();
        metrics.register("outbox_rows", "Events in the outbox waiting to be published", rows.clone());
        metrics.register(
            "outbox_oldest_row_age_seconds",
            "Age of the oldest event waiting in the outbox (0 when it is empty)",
            oldest.clone(),
        );
        let scraped = pool.clone();
        metrics.on_scrape(move || {
            let (pool, rows, oldest) = (scraped.clone(), rows.clone(), oldest.clone());
            async move {
                let read: Result<(i64, Option<i64>), _> =
                    sqlx::query_as("SELECT COUNT(*), MIN(created_at) FROM outbox").fetch_one(&pool).await;
                match read {
                    Ok((count, first)) => {
                        rows.set(count);
                        oldest.set(first.map_or(0.0, |at| (now_millis() - at).max(0) as f64 / 1000.0));
                    }
                    Err(error) => tracing::warn!(%error, "Cannot read the outbox's size for the metrics"),
                }
            }
        });
        Self {
            pool,
            producer,
            brokers: brokers.to_owned(),
            client_id: instance.to_owned(),
            owner,
            wake: outbox.wake.clone(),
            records: metrics.records().clone(),
        }
    }

    /// An idempotent producer can fail for good: librdkafka's "fatal" errors, or fenced by a
    /// newer epoch of itself (after the process was frozen past its delivery timeout librdkafka
    /// bumps the epoch, and the embedded broker then refuses every send as `ProducerFenced`
    /// without librdkafka calling it fatal). Nothing it sends will go through again, and
    /// librdkafka's advice is a new producer. The rows it did not get acknowledged are still in
    /// the outbox and go out with the new one.
    fn replace_producer_if_failed_for_good(&mut self, error: &anyhow::Error) {
        use rdkafka::error::{KafkaError, RDKafkaErrorCode};
        use rdkafka::producer::Producer as _;
        let fenced = matches!(
            error.downcast_ref::<KafkaError>(),
            Some(KafkaError::MessageProduction(RDKafkaErrorCode::ProducerFenced))
        );
        let why = match self.producer.client().fatal_error() {
            Some((code, reason)) => format!("{code:?}: {reason}"),
            None if fenced => "fenced".to_owned(),
            None => return,
        };
        match crate::kafka::producer(&self.brokers, &self.client_id) {
            Ok(fresh) => {
                tracing::error!(why, "The outbox's producer failed for good; publishing with a new one");
                self.producer = fresh;
            }
            Err(error) => tracing::error!(%error, "The outbox's producer failed for good and no new one can be made"),
        }
    }

    pub async fn run(mut self, stop: Shutdown) {
        let mut lease_until = 0_i64;
        let first_retry = Duration::from_millis(50);
        let mut delays = crate::retry::delays(first_retry);
        let mut last_rows = tokio::time::Instant::now();
        loop {
            let stopping = stop.is_triggered();
            if lease_until - now_millis() < (LEASE.as_millis() / 2) as i64 {
                match self.take_lease().await {
                    Ok(true) => lease_until = now_millis() + LEASE.as_millis() as i64,
                    Ok(false) => {
                        lease_until = 0;
                        if stopping {
                            return;
                        }
                        // Another replica publishes; check again before its lease could lapse.
                        tokio::select! { _ = tokio::time::sleep(LEASE / 4) => {}, _ = stop.wait() => {} }
                        continue;
                    }
                    Err(error) => tracing::warn!(%error, "Cannot take the outbox lease"),
                }
            }
            match self.publish_batch().await {
                Ok(0) if stopping => break,
                // Fewer than a full batch: the table held no more when it was read. Rows
                // committed since then in this process have left a wake-up behind (`notify_one`
                // keeps it), so wait as after an empty read rather than read it again at once.
                Ok(published) if published < BATCH as usize && !stopping => {
                    delays = crate::retry::delays(first_retry);
                    if published > 0 {
                        last_rows = tokio::time::Instant::now();
                    }
                    let poll = if last_rows.elapsed() < QUIET { POLL } else { IDLE_POLL };
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(poll) => {}
                        _ = stop.wait() => {}
                    }
                }
                Ok(_) => delays = crate::retry::delays(first_retry),
                Err(error) => {
                    self.replace_producer_if_failed_for_good(&error);
                    let wait = delays.next().expect("retries never run out");
                    tracing::warn!(%error, retry_in = ?wait, "Outbox relay cannot publish yet");
                    if stopping {
                        tracing::error!(
                            "Stopping with unpublished events left in the outbox; they go out on next start"
                        );
                        break;
                    }
                    tokio::select! { _ = tokio::time::sleep(wait) => {}, _ = stop.wait() => {} }
                }
            }
        }
        self.release_lease().await;
        use rdkafka::producer::Producer as _;
        if let Err(error) = self.producer.flush(Duration::from_secs(5)) {
            tracing::warn!(%error, "Producer did not flush on shutdown");
        }
    }

    async fn take_lease(&self) -> Result<bool, sqlx::Error> {
        let now = now_millis();
        let until = now + LEASE.as_millis() as i64;
        sqlx::query(
            "INSERT INTO outbox_lease (name, owner, expires_at) VALUES ('relay', $1, $2) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&self.owner)
        .bind(until)
        .execute(&self.pool)
        .await?;
        let taken = sqlx::query(
            "UPDATE outbox_lease SET owner = $1, expires_at = $2 \
             WHERE name = 'relay' AND (owner = $1 OR expires_at < $3)",
        )
        .bind(&self.owner)
        .bind(until)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    async fn release_lease(&self) {
        let released = sqlx::query("UPDATE outbox_lease SET expires_at = 0 WHERE name = 'relay' AND owner = $1")
            .bind(&self.owner)
            .execute(&self.pool)
            .await;
        if let Err(error) = released {
            tracing::debug!(%error, "Outbox lease not released; it expires by itself");
        }
    }

    /// Publishes the oldest rows, in order, and deletes those the brokers acknowledged.
    async fn publish_batch(&self) -> anyhow::Result<usize> {
        let rows: Vec<Pending> = sqlx::query(
            "SELECT id, topic, record_key, payload, traceparent, created_at FROM outbox ORDER BY id LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|row| {
            Ok(Pending {
                id: row.try_get("id")?,
                topic: row.try_get("topic")?,
                key: row.try_get("record_key")?,
                payload: row.try_get("payload")?,
                traceparent: row.try_get("traceparent")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
        if rows.is_empty() {
            return Ok(0);
        }
        let deliveries: Vec<_> = rows
            .iter()
            .map(|row| {
                let mut headers = OwnedHeaders::new().insert(Header { key: "event-id", value: Some(&row.id) });
                // The producer's span of this record, under the work that wrote it; its
                // consumers' spans come under it.
                let span = if !crate::trace::enabled() {
                    tracing::Span::none()
                } else {
                    tracing::info_span!(
                    "publish",
                    otel.name = format!("{} publish", row.topic),
                    otel.kind = "producer",
                    messaging.system = "kafka",
                    messaging.operation.type = "send",
                    messaging.destination.name = %row.topic,
                    messaging.message.id = %row.id,
                    order_id = %row.key,
                    )
                };
                crate::trace::continue_from(&span, row.traceparent.as_deref());
                let traceparent = crate::trace::traceparent(&span).or_else(|| row.traceparent.clone());
                if let Some(trace) = &traceparent {
                    headers = headers.insert(Header { key: TRACEPARENT_HEADER, value: Some(trace) });
                }
                let record = FutureRecord::to(&row.topic).key(&row.key).payload(&row.payload).headers(headers);
                // Keep only the error; the rejected record itself is not needed.
                self.producer.send_result(record).map_err(|(error, _)| error)
            })
            .collect();
        // Delete only the acknowledged prefix: a later row must not go out before an earlier one.
        let mut acknowledged = Vec::new();
        let mut failure = None;
        for (row, delivery) in rows.iter().zip(deliveries) {
            let outcome = match delivery {
                Ok(future) => future
                    .await
                    .map_err(|_| anyhow::anyhow!("producer went away"))
                    .and_then(|r| r.map(|_| ()).map_err(|(error, _)| anyhow::anyhow!(error))),
                Err(error) => Err(anyhow::anyhow!(error)),
            };
            if outcome.is_ok() {
                let since_commit = (now_millis() - row.created_at).max(0) as u64;
                self.records.produced(&row.topic, Some(Duration::from_millis(since_commit)));
            }
            match outcome {
                Ok(()) if failure.is_none() => acknowledged.push(row.id.as_str()),
                Ok(()) => {}
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        if !acknowledged.is_empty() {
            // One statement for the batch (SQLite allows 32,766 parameters, PostgreSQL 65,535).
            let ids: Vec<String> = placeholders(1, acknowledged.len()).collect();
            let delete = format!("DELETE FROM outbox WHERE id IN ({})", ids.join(", "));
            let mut query = sqlx::query(&delete);
            for id in &acknowledged {
                query = query.bind(*id);
            }
            query.execute(&self.pool).await?;
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(acknowledged.len()),
        }
    }
}
