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
use crate::Shutdown;

/// A decoded record handed to a handler.
#[derive(Debug)]
pub struct Incoming {
    pub topic: Topic,
    pub envelope: RawEnvelope,
    pub event: Event,
    /// This record's consumer span ("<topic> process"), continuing the trace of whoever
    /// produced the record: what the handler does for it, and what it writes to the outbox,
    /// belongs under it (`handle` runs in it; `handle_batch` should instrument each record's
    /// work with it).
    pub span: tracing::Span,
}

/// Why a record was not handled. The first field is the reason in a word or two
/// (`storage`, `mailbox`, `illegal_transition`): the `reason` label of the retries and dead
/// letters counted in the metrics, so one of a few per service, never a value from the record;
/// the second says what happened, for the log and the dead letter's header.
#[derive(Clone, Debug, thiserror::Error)]
pub enum HandleError {
    /// Retrying cannot help: the record goes to the dead-letter topic.
    #[error("{1}")]
    Permanent(&'static str, String),
    /// Retrying may help: the same record is tried again after a pause.
    #[error("{1}")]
    Transient(&'static str, String),
}

impl From<sqlx::Error> for HandleError {
    fn from(error: sqlx::Error) -> Self {
        if crate::db::is_transient(&error) {
            HandleError::Transient("storage", error.to_string())
        } else {
            HandleError::Permanent("storage", format!("storage refused the effect: {error}"))
        }
    }
}

/// The reason a record that cannot be decoded is set aside for.
const UNDECODABLE: &str = "undecodable";

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
    /// The service's metrics: what the group consumed, retried and set aside, and its lag.
    pub metrics: crate::metrics::Metrics,
}

/// What a service's consumers are waiting for: per group and partition (each partition's worker
/// retries on its own), the failure of a dependency a record is being retried on (the mailbox
/// unreachable, the database busy), and since when. `/readyz` shows it while it lasts; the log
/// says it at every retry.
#[derive(Clone, Default)]
pub struct Waits(Arc<std::sync::Mutex<std::collections::BTreeMap<Waiter, Waiting>>>);

/// What a partition's worker waits for (the dependency), the failure's words, and since when.
type Waiting = (&'static str, String, std::time::Instant);

/// A consumer group's worker of one partition.
type Waiter = (&'static str, String, i32);

/// One partition's wait, as `/readyz` shows it.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Wait {
    pub group: &'static str,
    pub topic: String,
    pub partition: i32,
    /// What it is retrying on: the dependency (`mobile`, `mailbox`, `storage`, …).
    pub waiting_for: &'static str,
    /// The last failure in the dependency's own words, for the operator only (it may name
    /// internal addresses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub since_seconds: u64,
}

impl Waits {
    fn waiting(&self, waiter: Waiter, why: &'static str, detail: &str) {
        let mut waits = self.0.lock().expect("waits lock");
        let since = waits.get(&waiter).map_or_else(std::time::Instant::now, |(_, _, since)| *since);
        waits.insert(waiter, (why, detail.to_owned(), since));
    }

    fn done(&self, waiter: &Waiter) {
        self.0.lock().expect("waits lock").remove(waiter);
    }

    /// Every partition waiting now; with each failure's words where `detailed`.
    pub fn now(&self, detailed: bool) -> Vec<Wait> {
        let waits = self.0.lock().expect("waits lock");
        waits
            .iter()
            .map(|((group, topic, partition), (why, detail, since))| Wait {
                group,
                topic: topic.clone(),
                partition: *partition,
                waiting_for: why,
                detail: detailed.then(|| detail.clone()),
                since_seconds: since.elapsed().as_secs(),
            })
            .collect()
    }
}

/// How many records may wait for one partition's worker before the loop waits for it.
const QUEUE_PER_PARTITION: usize = 64;

/// How often the loop asks whether its consumer failed for good.
const FATAL_CHECK_EVERY: Duration = Duration::from_secs(1);

/// At most this many waiting records of a partition go to `Handler::handle_batch` at once.
const BATCH: usize = 32;

/// Runs the loop until `shutdown`. Each partition gets its own worker, so records of
/// different partitions are handled concurrently (a slow push or a busy database holds up
/// only its own partition) while each partition's records keep their order and their offsets
/// are stored in order. On `shutdown` every worker finishes the record in hand (or leaves it
/// for redelivery), and the stored offsets are committed before it returns.
///
/// A consumer that failed for good (one of librdkafka's fatal errors: a static member fenced
/// by a newer session of its own name after its session timed out, say) is replaced by a new
/// one, which resumes from the group's committed offsets; what the old one handled past them
/// comes again, and the inbox makes it a no-op.
pub async fn run(
    subscription: Subscription,
    handler: Arc<dyn Handler>,
    producer: Producer,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let counts = subscription.metrics.records().clone();
    let make =
        move |s: &Subscription| kafka::consumer_reporting_lag(&s.brokers, &s.client_id, s.group, &counts).map(Arc::new);
    run_with(subscription, handler, producer, shutdown, make).await
}

/// As [`run`], with the consumers `make` makes (a new one each time the last failed for good).
pub async fn run_with(
    subscription: Subscription,
    handler: Arc<dyn Handler>,
    producer: Producer,
    shutdown: Shutdown,
    make: impl Fn(&Subscription) -> Result<Arc<GroupConsumer>, rdkafka::error::KafkaError>,
) -> anyhow::Result<()> {
    let dead_letters: Vec<String> = subscription.topics.iter().map(|t| t.dead_letter_name()).collect();
    let group = subscription.group;
    // With no broker to answer, each of its requests waits out its timeout: a minute or two in
    // which a SIGTERM would otherwise go unheeded.
    tokio::select! {
        () = ensure_dead_letter_topics(&subscription.brokers, &dead_letters) => {}
        () = shutdown.wait() => {
            tracing::info!(group, "Consumer stopped before it started");
            return Ok(());
        }
    }
    loop {
        let consumer = make(&subscription)?;
        let Some(why) = consume(&subscription, &handler, &producer, &shutdown, consumer).await? else {
            tracing::info!(group, "Consumer stopped");
            return Ok(());
        };
        tracing::error!(
            group,
            why,
            "The consumer failed for good; consuming with a new one from the committed offsets"
        );
        tokio::select! { _ = tokio::time::sleep(Duration::from_secs(1)) => {}, _ = shutdown.wait() => return Ok(()) }
    }
}

/// Consumes with `consumer` until `shutdown` (None) or until it fails for good (why).
async fn consume(
    subscription: &Subscription,
    handler: &Arc<dyn Handler>,
    producer: &Producer,
    shutdown: &Shutdown,
    consumer: Arc<GroupConsumer>,
) -> anyhow::Result<Option<String>> {
    let names: Vec<&str> = subscription.topics.iter().map(|t| t.name()).collect();
    let failed_for_good = || consumer.client().fatal_error().map(|(code, reason)| format!("{code:?}: {reason}"));
    if let Err(error) = kafka::subscribe(&consumer, &names) {
        return failed_for_good().map(Some).ok_or_else(|| error.into());
    }
    tracing::info!(group = subscription.group, topics = ?names, "Consuming");
    let group = subscription.group;
    let counts = subscription.metrics.records();
    // The workers of this consumer stop on shutdown, or when it failed for good.
    let stop = Shutdown::new();
    let mut failed = None;
    let mut queues: HashMap<(String, i32), mpsc::Sender<OwnedMessage>> = HashMap::new();
    let mut workers = JoinSet::new();
    // A consumer failed for good need not say so with an error: it may just stop delivering.
    let mut check = tokio::time::interval(FATAL_CHECK_EVERY);
    loop {
        let message = tokio::select! {
            message = consumer.recv() => message,
            _ = check.tick() => match failed_for_good() {
                Some(why) => {
                    failed = Some(why);
                    break;
                }
                None => continue,
            },
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
                        shutdown: stop.clone(),
                        waits: subscription.waits.clone(),
                        records: counts.clone(),
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
                    stop.trigger();
                    anyhow::bail!("the worker of {}/{} stopped unexpectedly", lost.topic(), lost.partition());
                }
            }
            Err(error) => {
                if let Some(why) = failed_for_good() {
                    failed = Some(why);
                    break;
                }
                tracing::warn!(%error, group, "Kafka consumer error");
                tokio::select! { _ = tokio::time::sleep(Duration::from_millis(200)) => {}, _ = shutdown.wait() => {} }
            }
        }
    }
    stop.trigger();
    drop(queues);
    while workers.join_next().await.is_some() {}
    if failed.is_none() {
        if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored since the last auto-commit is not an error worth more than a note.
            tracing::debug!(%error, group, "Final offset commit");
        }
    }
    Ok(failed)
}

/// Handles one partition's records, one at a time, in order.
struct Worker {
    consumer: Arc<GroupConsumer>,
    handler: Arc<dyn Handler>,
    producer: Producer,
    group: &'static str,
    shutdown: Shutdown,
    waits: Waits,
    records: crate::metrics::Records,
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
                    if !self.process(message).await {
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
        let Ok(decoded) = batch.iter().map(|m| decode(m, self.group)).collect::<Result<Vec<_>, _>>() else {
            return false;
        };
        let started = std::time::Instant::now();
        match self.handler.handle_batch(&decoded).await {
            Ok(()) => {
                let each = started.elapsed() / batch.len() as u32;
                for message in batch {
                    self.records.consumed(self.group, message.topic(), each);
                }
                true
            }
            Err(error) => {
                let first = batch.first().expect("the batch is not empty");
                tracing::info!(%error, group = self.group, topic = first.topic(), partition = first.partition(),
                    records = batch.len(), "Batch not handled; handling its records one by one");
                false
            }
        }
    }
    /// Handles one record. Returns true when its offset may be stored (done or set aside),
    /// false when shutdown interrupted a retry and the record must be redelivered.
    async fn process(&self, message: &OwnedMessage) -> bool {
        let group = self.group;
        let started = std::time::Instant::now();
        let incoming = match decode(message, group) {
            Ok(incoming) => incoming,
            Err(error) => return self.dead_letter(message, UNDECODABLE, &error.to_string(), started).await,
        };
        let span = incoming.span.clone();
        let mut delays = crate::retry::delays(Duration::from_millis(100));
        let waiter = (group, message.topic().to_owned(), message.partition());
        let mut retried = false;
        loop {
            let outcome = self.handler.handle(&incoming).instrument(span.clone()).await;
            if retried && !matches!(outcome, Err(HandleError::Transient(..))) {
                self.waits.done(&waiter);
                span.in_scope(|| tracing::info!("Handled after waiting; going on"));
            }
            match outcome {
                Ok(()) => {
                    self.records.consumed(group, message.topic(), started.elapsed());
                    return true;
                }
                Err(HandleError::Permanent(why, reason)) => {
                    return self.dead_letter(message, why, &reason, started).instrument(span).await;
                }
                Err(HandleError::Transient(why, reason)) => {
                    let wait = delays.next().expect("retries never run out");
                    retried = true;
                    self.records.retried(group, message.topic(), why);
                    self.waits.waiting(waiter.clone(), why, &reason);
                    span.in_scope(|| tracing::warn!(%reason, retry_in = ?wait, "Handling failed, will retry"));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.shutdown.wait() => return false,
                    }
                }
            }
        }
    }

    /// Copies the record to `<topic>.dlq` with why and whence in headers. Retries until the
    /// broker has it, so a poison record is never dropped silently.
    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        why: &'static str,
        reason: &str,
        started: std::time::Instant,
    ) -> bool {
        let group = self.group;
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
            match self.producer.send(record, Duration::from_secs(10)).await {
                Ok(_) => {
                    self.records.dead_lettered(group, message.topic(), why);
                    self.records.produced(&topic, None);
                    self.records.consumed(group, message.topic(), started.elapsed());
                    return true;
                }
                Err((error, _)) => {
                    let wait = delays.next().expect("retries never run out");
                    tracing::error!(%error, dead_letter_topic = %topic, retry_in = ?wait, "Cannot set the record aside, will retry");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.shutdown.wait() => return false,
                    }
                }
            }
        }
    }
}

/// The record as a handler sees it, or why it cannot be decoded. Its span follows the
/// OpenTelemetry conventions for messaging (a consumer's "process" span).
fn decode(message: &OwnedMessage, group: &'static str) -> Result<Incoming, shop_events::DecodeError> {
    let envelope = RawEnvelope::decode(message.topic(), message.payload().unwrap_or_default())?;
    let event = envelope.event()?;
    let span = tracing::info_span!(
        "consume",
        otel.name = tracing::field::Empty,
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.destination.name = message.topic(),
        messaging.destination.partition.id = message.partition(),
        messaging.kafka.offset = message.offset(),
        messaging.consumer.group.name = group,
        messaging.message.id = %envelope.id,
        order_id = %envelope.order_id,
    );
    if crate::trace::enabled() {
        span.record("otel.name", format!("{} process", message.topic()));
        crate::trace::continue_from(&span, header(message, TRACEPARENT_HEADER));
    }
    Ok(Incoming { topic: event.topic(), envelope, event, span })
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
