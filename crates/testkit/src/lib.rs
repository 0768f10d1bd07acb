//! What every in-process test of a service needs, after zero2prod's `spawn_app`: a fresh
//! system of its own — an embedded broker on a free port with every topic, a temporary data
//! folder (so each service gets a fresh SQLite database), a secrets folder with every key
//! ([`TestKeys`], which also mints the callers' tokens) — into which the test builds its
//! services with their own `Service::build` on port 0, exactly as `shop serve` would from
//! flags. The test then talks to them as their clients do: over HTTP, and through their
//! topics, producing records as the other services' relays would and reading back what the
//! service under test published.
//!
//! Nothing here sleeps for a fixed time: every wait is for a condition, under [`DEADLINE`].

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;
use shop_embedded_broker::EmbeddedBroker;
use shop_events::{EventType, OrderId, RawEnvelope, Topic};
use shop_platform::auth::TestKeys;
use shop_platform::{kafka, Shutdown};
use tokio::task::JoinHandle;

/// How long any wait of a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// How often a condition is looked at again while waiting for it.
const POLL: Duration = Duration::from_millis(50);

/// Any service's configuration (its `Config`, a `clap::Args`), parsed from flags as
/// `shop serve` parses them.
#[derive(clap::Parser)]
pub struct Flags<C: clap::Args> {
    #[command(flatten)]
    pub config: C,
}

/// `C` from `args` (flags, without the program name), and from nothing else: the environment
/// variables every flag also reads (`DATABASE_URL`, `KAFKA_BROKERS`...) are ignored, so a
/// variable set in the shell cannot point a test at a shared database or cluster. Panics with
/// clap's message when the flags are not `C`'s.
pub fn config<C: clap::Args>(args: &[String]) -> C {
    use clap::{CommandFactory, FromArgMatches};
    let command = Flags::<C>::command().mut_args(|arg| arg.env(None));
    let argv = std::iter::once("test".to_owned()).chain(args.iter().cloned());
    let matches = command.try_get_matches_from(argv).unwrap_or_else(|e| panic!("flags {args:?}: {e}"));
    Flags::<C>::from_arg_matches(&matches).unwrap_or_else(|e| panic!("flags {args:?}: {e}")).config
}

/// A port nothing listens on now, for what cannot be given port 0 (the broker, an SMTP port);
/// outside the ephemeral range, so no outgoing connection takes it first
/// ([`shop_platform::ports`]).
pub fn free_port() -> u16 {
    shop_platform::ports::unused_one().expect("a free local port")
}

/// A fresh system for one test: a broker with every topic, a data folder, keys, and the
/// services the test runs in it ([`System::run`]). Stop it with [`System::stop`], which
/// fails the test unless every service stops cleanly.
pub struct System {
    keys: TestKeys,
    data: tempfile::TempDir,
    broker: Option<EmbeddedBroker>,
    brokers: String,
    producer: kafka::Producer,
    shutdown: Shutdown,
    services: Vec<JoinHandle<anyhow::Result<()>>>,
    http: reqwest::Client,
}

impl System {
    /// Starts the broker on a free port and creates the 11 topics (3 partitions each, as the
    /// topic job does); no service runs yet.
    pub async fn start() -> System {
        let keys = TestKeys::new();
        let data = tempfile::tempdir().expect("a temporary data folder");
        let broker = EmbeddedBroker::start(
            "127.0.0.1",
            "127.0.0.1",
            free_port(),
            &shop_embedded_broker::Storage::Memory,
            &Default::default(),
        )
        .await
        .expect("the embedded broker");
        let brokers = broker.bootstrap_servers().to_owned();
        let topics: Vec<String> = Topic::ALL.iter().map(|t| t.name().to_owned()).collect();
        kafka::create_topics(&brokers, &topics, 3, 1).await.expect("the topics are created");
        let producer = kafka::producer(&brokers, "testkit-producer").expect("the test's producer");
        System {
            keys,
            data,
            broker: Some(broker),
            brokers,
            producer,
            shutdown: Shutdown::new(),
            services: Vec::new(),
            http: reqwest::Client::builder()
                .pool_idle_timeout(shop_platform::http::CLIENT_IDLE_TIMEOUT)
                .build()
                .expect("an HTTP client"),
        }
    }

    /// The system's keys: pass `keys().secrets().dir()` as `--secrets-dir` (the common args
    /// do), and get any caller's `Bearer` token from it.
    pub fn keys(&self) -> &TestKeys {
        &self.keys
    }

    /// The broker's bootstrap servers, for `--kafka-brokers`.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// The data folder the services keep their databases in.
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// What stops everything [`System::run`] started; for a task of the test's own.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The flags every service takes: on 127.0.0.1, port 0 (the system picks), this
    /// system's data folder and secrets folder.
    pub fn common_args(&self) -> Vec<String> {
        [
            "--http-host",
            "127.0.0.1",
            "--http-port",
            "0",
            "--data-dir",
            &self.data.path().display().to_string(),
            "--secrets-dir",
            &self.keys.secrets().dir().display().to_string(),
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// The common flags, this system's broker (`--kafka-brokers`), then `extra`: what a
    /// service that uses Kafka is started with.
    pub fn kafka_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = self.common_args();
        args.extend(["--kafka-brokers", &self.brokers].map(str::to_owned));
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        args
    }

    /// Runs a built service until the system stops, and returns `port`, the port it serves
    /// on. `run` gets the shutdown to run until:
    /// `system.run(service.port(), |stop| service.run_until_stopped(stop))`.
    pub fn run<F>(&mut self, port: u16, run: impl FnOnce(Shutdown) -> F) -> u16
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.services.push(tokio::spawn(run(self.shutdown.clone())));
        port
    }

    /// Stops the services as `shop up` does (all at once, each finishing what it has in
    /// hand), fails unless each of them stopped cleanly, then stops the broker.
    pub async fn stop(mut self) {
        self.shutdown.trigger();
        for (n, service) in std::mem::take(&mut self.services).into_iter().enumerate() {
            let stopped = service.await.unwrap_or_else(|e| panic!("service #{} (in start order) panicked: {e}", n + 1));
            if let Err(error) = stopped {
                panic!("service #{} (in start order) did not stop cleanly: {error:#}", n + 1);
            }
        }
        if let Some(broker) = self.broker.take() {
            broker.stop();
        }
    }

    /// Produces `envelope` onto the topic of its type as a service's relay does: keyed by
    /// its order id, with its id in the `event-id` header. Producing the same envelope again
    /// is a redelivery.
    pub async fn publish(&self, envelope: &RawEnvelope) {
        let payload = serde_json::to_string(envelope).expect("an envelope serializes");
        let id = envelope.id.to_string();
        let key = envelope.order_id.to_string();
        let record = FutureRecord::to(envelope.event_type.topic().name())
            .key(&key)
            .payload(&payload)
            .headers(OwnedHeaders::new().insert(Header { key: "event-id", value: Some(&id) }));
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(error, _)| error)
            .unwrap_or_else(|e| panic!("cannot publish {} of order {key}: {e}", envelope.event_type));
    }

    /// Reads `topic` from its beginning until a record `until` accepts has come; then on, up
    /// to the end every partition had at that moment. Returns every envelope read, each
    /// partition's in its order: whatever was on the topic by the time the awaited record
    /// was, so counting a record's copies after waiting for a later one on the same
    /// partition (a later event of the same order) is exact. Fails after [`DEADLINE`], or if
    /// a record is not an envelope keyed by its order id with its id in `event-id`, as every
    /// record of this system is.
    ///
    /// The reader is a consumer as the services configure theirs (`kafka::consumer`), of a
    /// fresh group of its own, so it starts at the group's committed offsets, which are none:
    /// at the earliest (`auto.offset.reset`). It is assigned every partition rather than
    /// joining the group: joining costs seconds a test would spend waiting, and it leaves the
    /// services' groups alone either way.
    pub async fn read_until(&self, topic: &str, mut until: impl FnMut(&RawEnvelope) -> bool) -> Vec<RawEnvelope> {
        let group = format!("testkit-{}", uuid::Uuid::new_v4().simple());
        let consumer = Arc::new(kafka::consumer(&self.brokers, &group, &group).expect("a test consumer"));
        let mut assignment = TopicPartitionList::new();
        for partition in high_watermarks(&self.brokers, topic).await.into_keys() {
            assignment.add_partition_offset(topic, partition, Offset::Stored).expect("a partition to read");
        }
        consumer.assign(&assignment).unwrap_or_else(|e| panic!("cannot read {topic}: {e}"));
        let deadline = Instant::now() + DEADLINE;
        let mut read = Vec::new();
        let mut next: HashMap<i32, i64> = HashMap::new();
        let mut ends: Option<HashMap<i32, i64>> = None;
        let read_to_the_ends = |ends: &HashMap<i32, i64>, next: &HashMap<i32, i64>| {
            ends.iter().all(|(p, end)| next.get(p).unwrap_or(&0) >= end)
        };
        while !ends.as_ref().is_some_and(|ends| read_to_the_ends(ends, &next)) {
            let message = match tokio::time::timeout_at(deadline.into(), consumer.recv()).await {
                Ok(Ok(message)) => message,
                Ok(Err(error)) => {
                    // Passing trouble (the broker busy): librdkafka retries by itself.
                    eprintln!("testkit: reading {topic}: {error}");
                    tokio::time::sleep(POLL).await;
                    continue;
                }
                Err(_) => {
                    let types: Vec<String> =
                        read.iter().map(|e: &RawEnvelope| format!("{} of {}", e.event_type, e.order_id)).collect();
                    match &ends {
                        None => panic!("no awaited record on {topic} within {DEADLINE:?}; there were {types:?}"),
                        Some(ends) => panic!("{topic} not read to {ends:?} within {DEADLINE:?}, only to {next:?}"),
                    }
                }
            };
            let position = next.entry(message.partition()).or_insert(0);
            if message.offset() < *position {
                continue; // read already (a fetch answered again)
            }
            *position = message.offset() + 1;
            let envelope = RawEnvelope::decode(topic, message.payload().unwrap_or_default())
                .unwrap_or_else(|e| panic!("record {} of {topic}/{}: {e}", message.offset(), message.partition()));
            let key = message.key().map(String::from_utf8_lossy);
            assert_eq!(key.as_deref(), Some(envelope.order_id.to_string().as_str()), "the key of {envelope:?}");
            let event_id = message
                .headers()
                .and_then(|headers| headers.iter().find(|h| h.key == "event-id"))
                .and_then(|h| h.value)
                .map(String::from_utf8_lossy);
            assert_eq!(event_id.as_deref(), Some(envelope.id.to_string().as_str()), "the event-id of {envelope:?}");
            if ends.is_none() && until(&envelope) {
                ends = Some(high_watermarks(&self.brokers, topic).await);
            }
            read.push(envelope);
        }
        // Closing a consumer blocks its thread until the broker has answered.
        let closed = tokio::task::spawn_blocking(move || drop(consumer));
        closed.await.expect("the test consumer closes");
        read
    }

    /// Waits until the `event_type` event of `order` is on its topic; returns every envelope
    /// on that topic then (see [`System::read_until`]).
    pub async fn wait_for_event(&self, event_type: EventType, order: OrderId) -> Vec<RawEnvelope> {
        self.read_until(event_type.topic().name(), |e| e.event_type == event_type && e.order_id == order).await
    }

    /// Waits until the consumer group `group` (a service's, `shop_events::group`) has
    /// committed the end of every partition of the topics it consumes: it has handled
    /// everything published to them so far, including records that changed nothing (a
    /// redelivery), whose handling nothing else shows.
    pub async fn wait_until_consumed(&self, group: &str) {
        let topics = shop_events::group::topics(group);
        assert!(!topics.is_empty(), "{group} is no consumer group of the system");
        let check = || {
            let (brokers, group) = (self.brokers.clone(), group.to_owned());
            async move {
                let behind = tokio::task::spawn_blocking(move || behind(&brokers, &group, topics));
                match behind.await.expect("the group's offsets are asked for") {
                    Ok(behind) if behind.is_empty() => Ok(()),
                    Ok(behind) => Err(behind.join(", ")),
                    Err(error) => Err(error.to_string()),
                }
            }
        };
        wait_until(&format!("{group} to have consumed {topics:?}"), check).await
    }

    pub fn url(&self, port: u16, path: &str) -> String {
        format!("http://127.0.0.1:{port}{path}")
    }

    /// `GET path` on the service at `port`, with `token` (an `Authorization` value) if any.
    pub async fn get(&self, port: u16, path: &str, token: Option<&str>) -> Reply {
        send(authorized(self.http.get(self.url(port, path)), token)).await
    }

    /// `POST path` on the service at `port`, with `token` if any, and `body` as JSON if any.
    pub async fn post(&self, port: u16, path: &str, token: Option<&str>, body: Option<&Value>) -> Reply {
        let mut request = authorized(self.http.post(self.url(port, path)), token);
        if let Some(body) = body {
            request = request.json(body);
        }
        send(request).await
    }
}

impl Drop for System {
    /// A test that failed midway leaves no service running into the next one.
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// The end (the offset after the last record) of every partition of `topic`.
/// Asked with a client of its own: one that is fetching would send the question behind its
/// fetch, which the broker holds until records come or its wait (500 ms) is over.
async fn high_watermarks(brokers: &str, topic: &str) -> HashMap<i32, i64> {
    let (brokers, name) = (brokers.to_owned(), topic.to_owned());
    let ends = tokio::task::spawn_blocking(move || {
        let client: BaseConsumer<kafka::Context> =
            ClientConfig::new().set("bootstrap.servers", &brokers).create_with_context(kafka::Context::default())?;
        ends(&client, &name)
    });
    ends.await.expect("the watermarks are asked for").unwrap_or_else(|e| panic!("the watermarks of {topic}: {e}"))
}

/// The same, blocking.
fn ends<C: Consumer<kafka::Context>>(consumer: &C, topic: &str) -> KafkaResult<HashMap<i32, i64>> {
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions = metadata.topics().iter().flat_map(|t| t.partitions()).map(|p| p.id());
    partitions.map(|p| consumer.fetch_watermarks(topic, p, timeout).map(|(_, high)| (p, high))).collect()
}

/// Where one partition of a group's topics stands.
#[derive(Clone, Debug)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset, if it committed one.
    pub committed: Option<i64>,
    /// The high watermark: one past the last record.
    pub end: i64,
}

impl Position {
    /// Has the group committed exactly the end? (Past it would skip the next record after a
    /// restart; an empty partition needs nothing.)
    pub fn caught_up(&self) -> bool {
        self.end == 0 || self.committed == Some(self.end)
    }
}

/// `group`'s position on every partition of `topics`, asked without joining the group; on
/// the embedded broker as on a real cluster (the system tests use it too).
pub fn positions(brokers: &str, group: &str, topics: &[&str], timeout: Duration) -> KafkaResult<Vec<Position>> {
    let consumer: BaseConsumer<kafka::Context> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create_with_context(kafka::Context::default())?;
    let mut wanted = TopicPartitionList::new();
    let mut all_ends = Vec::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()).map(|p| p.id()) {
            let (_, end) = consumer.fetch_watermarks(topic, partition, timeout)?;
            wanted.add_partition(topic, partition);
            all_ends.push((topic.to_string(), partition, end));
        }
    }
    let committed = consumer.committed_offsets(wanted, timeout)?;
    let positions = all_ends.into_iter().map(|(topic, partition, end)| {
        let committed = match committed.find_partition(&topic, partition).map(|e| e.offset()) {
            Some(Offset::Offset(offset)) => Some(offset),
            _ => None,
        };
        Position { topic, partition, committed, end }
    });
    Ok(positions.collect())
}

/// Where `group` stands on `topics`: the partitions it has not committed the end of yet,
/// with what it committed and the end.
fn behind(brokers: &str, group: &str, topics: &[Topic]) -> KafkaResult<Vec<String>> {
    let names: Vec<&str> = topics.iter().map(|t| t.name()).collect();
    let positions = positions(brokers, group, &names, Duration::from_secs(10))?;
    let behind = positions
        .iter()
        .filter(|p| !p.caught_up())
        .map(|p| format!("{}/{}: at {:?} of {}", p.topic, p.partition, p.committed, p.end));
    Ok(behind.collect())
}

fn authorized(request: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(token) => request.header("authorization", token),
        None => request,
    }
}

/// What a service answered: the status, the headers, and the body as JSON (a JSON string of
/// the text when it is not JSON, `null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// A header's value, if it is there and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `request` (any the test built on [`System::http`]) and reads the [`Reply`].
pub async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("the service answers");
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let text = response.text().await.expect("the service's answer is read");
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    Reply { status, headers, body }
}

/// Calls `check` until it returns `Ok`, every 50 ms, and returns what it returned; fails
/// after [`DEADLINE`] with `what` and the last `Err` (what there was instead).
pub async fn wait_until<T, E, F, Fut>(what: &str, mut check: F) -> T
where
    E: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => panic!("{what}: not within {DEADLINE:?}; last {last:?}"),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}
