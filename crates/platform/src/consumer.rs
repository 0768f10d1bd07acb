//! The consumer loop, written once: receive, decode, call the service's handler, and only
//! then store the offset (rdkafka's at-least-once pattern). A record that cannot be decoded
//! or whose handling fails permanently is set aside on `<topic>.dlq` with the error and its
//! origin in headers, and the loop goes on. A transient failure (database busy, broker
//! unreachable) is retried with backoff and never skipped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset, TopicPartitionList};
use shop_events::{Event, RawEnvelope, Topic, TRACEPARENT_HEADER};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::kafka::{self, GroupConsumer, Producer};
use crate::trace::TraceParent;
use crate::Shutdown;

/// A decoded record handed to a handler.
#[derive(Debug)]
pub struct Incoming {
    pub topic: Topic,
    pub envelope: RawEnvelope,
    pub event: Event,
    pub trace: TraceParent,
}

#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Retrying cannot help: the record goes to the dead-letter topic.
    #[error("{0}")]
    Permanent(String),
    /// Retrying may help: the same record is tried again after a pause.
    #[error("{0}")]
    Transient(String),
}

impl From<sqlx::Error> for HandleError {
    fn from(error: sqlx::Error) -> Self {
        if crate::db::is_transient(&error) {
            HandleError::Transient(error.to_string())
        } else {
            HandleError::Permanent(format!("storage refused the effect: {error}"))
        }
    }
}

/// What a service implements to consume events.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, incoming: &Incoming) -> Result<(), HandleError>;

    /// Handles several records of one partition that were waiting together (under load),
    /// sharing work between them (one query for many). It may do part of the work and fail:
    /// the records are then handled again one by one with `handle`, with its retries and
    /// dead-lettering, so it must leave each record's effect as idempotent as `handle` does.
    /// The default handles them one by one.
    async fn handle_batch(&self, batch: &[Incoming]) -> Result<(), HandleError> {
        for incoming in batch {
            self.handle(incoming).await?;
        }
        Ok(())
    }
}

/// Which group consumes which topics, and where.
pub struct Subscription {
    pub brokers: String,
    pub group: &'static str,
    pub topics: Vec<Topic>,
    pub client_id: String,
    /// Where the consumer says what it is waiting for, for `/readyz`.
    pub waits: Waits,
}

/// What a service's consumers are waiting for: per group and partition (each partition's worker
/// retries on its own), the failure of a dependency a record is being retried on (the mailbox
/// unreachable, the database busy), and since when. `/readyz` shows it while it lasts; the log
/// says it at every retry.
#[derive(Clone, Default)]
pub struct Waits(Arc<std::sync::Mutex<std::collections::BTreeMap<Waiter, (String, std::time::Instant)>>>);

/// A consumer group's worker of one partition.
type Waiter = (&'static str, String, i32);

/// One partition's wait, as `/readyz` shows it.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Wait {
    pub group: &'static str,
    pub topic: String,
    pub partition: i32,
    /// The last failure it is retrying on.
    pub waiting_for: String,
    pub since_seconds: u64,
}

impl Waits {
    fn waiting(&self, waiter: Waiter, reason: &str) {
        let mut waits = self.0.lock().expect("waits lock");
        let since = waits.get(&waiter).map_or_else(std::time::Instant::now, |(_, since)| *since);
        waits.insert(waiter, (reason.to_owned(), since));
    }

    fn done(&self, waiter: &Waiter) {
        self.0.lock().expect("waits lock").remove(waiter);
    }

    /// Every partition waiting now.
    pub fn now(&self) -> Vec<Wait> {
        let waits = self.0.lock().expect("waits lock");
        waits
            .iter()
            .map(|((group, topic, partition), (reason, since))| Wait {
                group,
                topic: topic.clone(),
                partition: *partition,
                waiting_for: reason.clone(),
                since_seconds: since.elapsed().as_secs(),
            })
            .collect()
    }
}

/// How many records may wait for one partition's worker before the loop waits for it.
const QUEUE_PER_PARTITION: usize = 64;

/// At most this many waiting records of a partition go to `Handler::handle_batch` at once.
const BATCH: usize = 32;

/// Runs the loop until `shutdown`. Each partition gets its own worker, so records of
/// different partitions are handled concurrently (a slow push or a busy database holds up
/// only its own partition) while each partition's records keep their order and their offsets
/// are stored in order. On `shutdown` every worker finishes the record in hand (or leaves it
/// for redelivery), and the stored offsets are committed before it returns.
pub async fn run(
    subscription: Subscription,
    handler: Arc<dyn Handler>,
    producer: Producer,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let dead_letters: Vec<String> = subscription.topics.iter().map(|t| t.dead_letter_name()).collect();
    ensure_dead_letter_topics(&subscription.brokers, &dead_letters).await;
    let consumer = Arc::new(kafka::consumer(&subscription.brokers, &subscription.client_id, subscription.group)?);
    let names: Vec<&str> = subscription.topics.iter().map(|t| t.name()).collect();
    kafka::subscribe(&consumer, &names)?;
    tracing::info!(group = subscription.group, topics = ?names, "Consuming");
    let group = subscription.group;
    let mut queues: HashMap<(String, i32), mpsc::Sender<OwnedMessage>> = HashMap::new();
    let mut workers = JoinSet::new();
    loop {
        let message = tokio::select! {
            message = consumer.recv() => message,
            _ = shutdown.wait() => break,
        };
        match message {
            Ok(message) => {
                let message = message.detach();
                let queue = queues.entry((message.topic().to_owned(), message.partition())).or_insert_with(|| {
                    let (queue, records) = mpsc::channel(QUEUE_PER_PARTITION);
                    let worker = Worker {
                        consumer: consumer.clone(),
                        handler: handler.clone(),
                        producer: producer.clone(),
                        group,
                        shutdown: shutdown.clone(),
                        waits: subscription.waits.clone(),
                    };
                    workers.spawn(worker.run(records).in_current_span());
                    queue
                });
                let sent = tokio::select! {
                    sent = queue.send(message) => sent,
                    _ = shutdown.wait() => break,
                };
                if let Err(mpsc::error::SendError(lost)) = sent {
                    // Only a panic ends a worker before shutdown. Its partition would stall:
                    // stop the loop (and the service) instead; the record is redelivered.
                    anyhow::bail!("the worker of {}/{} stopped unexpectedly", lost.topic(), lost.partition());
                }
            }
            Err(error) => {
                tracing::warn!(%error, group, "Kafka consumer error");
                tokio::select! { _ = tokio::time::sleep(Duration::from_millis(200)) => {}, _ = shutdown.wait() => {} }
            }
        }
    }
    drop(queues);
    while workers.join_next().await.is_some() {}
    if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last auto-commit is not an error worth more than a note.
        tracing::debug!(%error, group, "Final offset commit");
    }
    tracing::info!(group, "Consumer stopped");
    Ok(())
}

/// Handles one partition's records, one at a time, in order.
struct Worker {
    consumer: Arc<GroupConsumer>,
    handler: Arc<dyn Handler>,
    producer: Producer,
    group: &'static str,
    shutdown: Shutdown,
    waits: Waits,
}

impl Worker {
    /// Stores the offset after `message`, to be committed: where this group resumes.
    /// (`store_offsets` takes the offset as given; librdkafka's single-partition
    /// `store_offset` adds one itself.)
    fn store_next_offset(&self, message: &OwnedMessage) {
        let mut next = TopicPartitionList::new();
        let stored = next
            .add_partition_offset(message.topic(), message.partition(), Offset::Offset(message.offset() + 1))
            .and_then(|()| self.consumer.store_offsets(&next));
        if let Err(error) = stored {
            tracing::info!(%error, topic = message.topic(), partition = message.partition(),
                "Cannot store offset; the record may be redelivered");
        }
    }

    async fn run(self, mut records: mpsc::Receiver<OwnedMessage>) {
        let mut waiting = Vec::with_capacity(BATCH);
        loop {
            let message = tokio::select! {
                biased;
                _ = self.shutdown.wait() => return,
                message = records.recv() => match message { Some(message) => message, None => return },
            };
            waiting.push(message);
            while waiting.len() < BATCH {
                match records.try_recv() {
                    Ok(message) => waiting.push(message),
                    Err(_) => break,
                }
            }
            // A record queued before a rebalance took its partition away is still handled
            // here, but its offset can no longer be stored: its new owner gets it too (from
            // the committed offset), and the inbox makes whichever comes second a no-op.
            if waiting.len() > 1 && self.process_batch(&waiting).await {
                self.store_next_offset(waiting.last().expect("the batch is not empty"));
            } else {
                for message in &waiting {
                    if !process(message, self.handler.as_ref(), &self.producer, self.group, &self.waits, &self.shutdown)
                        .await
                    {
                        break;
                    }
                    self.store_next_offset(message);
                }
            }
            waiting.clear();
        }
    }

    /// Hands the records to `handle_batch` if they all decode. Returns true when all were
    /// handled; false when they must be handled one by one (an undecodable record, a failure).
    async fn process_batch(&self, batch: &[OwnedMessage]) -> bool {
        let Ok(decoded) = batch.iter().map(decode).collect::<Result<Vec<_>, _>>() else { return false };
        let first = batch.first().expect("the batch is not empty");
        let span = tracing::info_span!(
            "consume_batch",
            group = self.group,
            topic = first.topic(),
            partition = first.partition(),
            records = batch.len(),
        );
        match self.handler.handle_batch(&decoded).instrument(span.clone()).await {
            Ok(()) => true,
            Err(error) => {
                span.in_scope(|| tracing::info!(%error, "Batch not handled; handling its records one by one"));
                false
            }
        }
    }
}

/// The record as a handler sees it, or why it cannot be decoded.
fn decode(message: &OwnedMessage) -> Result<Incoming, shop_events::DecodeError> {
    let envelope = RawEnvelope::decode(message.topic(), message.payload().unwrap_or_default())?;
    let event = envelope.event()?;
    Ok(Incoming {
        topic: event.topic(),
        trace: header(message, TRACEPARENT_HEADER)
            .and_then(TraceParent::parse)
            .map(|t| t.child())
            .unwrap_or_else(TraceParent::root),
        envelope,
        event,
    })
}

/// Handles one record. Returns true when its offset may be stored (done or set aside),
/// false when shutdown interrupted a retry and the record must be redelivered.
async fn process(
    message: &OwnedMessage,
    handler: &dyn Handler,
    producer: &Producer,
    group: &'static str,
    waits: &Waits,
    shutdown: &Shutdown,
) -> bool {
    let incoming = match decode(message) {
        Ok(incoming) => incoming,
        Err(error) => return dead_letter(message, producer, group, &error.to_string(), shutdown).await,
    };
    let span = tracing::info_span!(
        "consume",
        group,
        topic = message.topic(),
        order_id = %incoming.envelope.order_id,
        event_id = %incoming.envelope.id,
        trace_id = %incoming.trace.trace_id(),
    );
    let mut delays = crate::retry::delays(Duration::from_millis(100));
    let waiter = (group, message.topic().to_owned(), message.partition());
    let mut retried = false;
    loop {
        let outcome = handler.handle(&incoming).instrument(span.clone()).await;
        if retried && !matches!(outcome, Err(HandleError::Transient(_))) {
            waits.done(&waiter);
            span.in_scope(|| tracing::info!("Handled after waiting; going on"));
        }
        match outcome {
            Ok(()) => return true,
            Err(HandleError::Permanent(reason)) => {
                return dead_letter(message, producer, group, &reason, shutdown).instrument(span).await;
            }
            Err(HandleError::Transient(reason)) => {
                let wait = delays.next().expect("retries never run out");
                retried = true;
                waits.waiting(waiter.clone(), &reason);
                span.in_scope(|| tracing::warn!(%reason, retry_in = ?wait, "Handling failed, will retry"));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.wait() => return false,
                }
            }
        }
    }
}

/// Copies the record to `<topic>.dlq` with why and whence in headers. Retries until the
/// broker has it, so a poison record is never dropped silently.
async fn dead_letter(
    message: &OwnedMessage,
    producer: &Producer,
    group: &str,
    reason: &str,
    shutdown: &Shutdown,
) -> bool {
    let topic = shop_events::dead_letter_topic(message.topic());
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    tracing::warn!(
        source_topic = message.topic(), partition = message.partition(), offset = message.offset(),
        group, %reason, dead_letter_topic = %topic, "Record set aside"
    );
    let mut delays = crate::retry::delays(Duration::from_millis(100));
    loop {
        let mut headers = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for h in original.iter() {
                headers = headers.insert(Header { key: h.key, value: h.value });
            }
        }
        let headers = headers
            .insert(Header { key: "dlq-error", value: Some(reason) })
            .insert(Header { key: "dlq-source-topic", value: Some(message.topic()) })
            .insert(Header { key: "dlq-source-partition", value: Some(&partition) })
            .insert(Header { key: "dlq-source-offset", value: Some(&offset) })
            .insert(Header { key: "dlq-consumer-group", value: Some(group) });
        let mut record = FutureRecord::to(&topic).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        match producer.send(record, Duration::from_secs(10)).await {
            Ok(_) => return true,
            Err((error, _)) => {
                let wait = delays.next().expect("retries never run out");
                tracing::error!(%error, dead_letter_topic = %topic, retry_in = ?wait, "Cannot set the record aside, will retry");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.wait() => return false,
                }
            }
        }
    }
}

fn header<'a>(message: &'a OwnedMessage, key: &str) -> Option<&'a str> {
    message.headers()?.iter().find(|h| h.key == key).and_then(|h| std::str::from_utf8(h.value?).ok())
}

/// Dead-letter topics are made by the consumers that may need them, not by the topic job:
/// one partition each, the cluster's default replication factor where it has one.
async fn ensure_dead_letter_topics(brokers: &str, names: &[String]) {
    if let Err(error) = kafka::create_topics(brokers, names, 1, -1).await {
        tracing::debug!(%error, "Broker has no default replication factor; using 1");
        if let Err(error) = kafka::create_topics(brokers, names, 1, 1).await {
            tracing::warn!(%error, "Cannot create dead-letter topics; they may be auto-created");
        }
    }
}
