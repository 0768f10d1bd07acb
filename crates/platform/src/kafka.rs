//! Kafka clients configured once: an idempotent producer with acks=all for the outbox relay
//! and dead letters, consumers that store offsets only after the effect is durable, and the
//! admin calls that create topics.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;

pub type Producer = FutureProducer<Context>;
pub type GroupConsumer = StreamConsumer<Context>;

/// Routes librdkafka's own log lines and errors into tracing at levels that fit this system:
/// a lost connection to one broker is retried by librdkafka and is a warning, not an error.
/// A service's consumer also hands librdkafka's statistics to its metrics (the lag).
#[derive(Clone, Default)]
pub struct Context {
    lag: Option<(String, crate::metrics::Records)>,
}

/// How often a service's consumer reports its lag (librdkafka's `statistics.interval.ms`):
/// a few times per default scrape interval (15 s), at a cost nobody measures.
const STATISTICS_EVERY: &str = "5000";

/// The part of librdkafka's statistics (its STATISTICS.md) the lag is read from.
#[derive(serde::Deserialize)]
struct Statistics {
    #[serde(default)]
    topics: std::collections::HashMap<String, TopicStatistics>,
}

#[derive(serde::Deserialize)]
struct TopicStatistics {
    partitions: std::collections::HashMap<String, PartitionStatistics>,
}

#[derive(serde::Deserialize)]
struct PartitionStatistics {
    partition: i32,
    /// In this consumer's assignment.
    desired: bool,
    /// The end minus the group's committed offset; -1 while either is unknown.
    consumer_lag: i64,
    /// The partition's first and next offsets (-1 unknown).
    lo_offset: i64,
    hi_offset: i64,
}

impl PartitionStatistics {
    /// The records the group has not committed: from its committed offset to the end, or,
    /// where it has committed nothing, all that the partition holds (it starts from the
    /// earliest). None until the end is known.
    fn lag(&self) -> Option<i64> {
        if self.consumer_lag >= 0 {
            Some(self.consumer_lag)
        } else if self.lo_offset >= 0 && self.hi_offset >= self.lo_offset {
            Some(self.hi_offset - self.lo_offset)
        } else {
            None
        }
    }
}

impl rdkafka::ClientContext for Context {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel::*;
        match level {
            Emerg | Alert | Critical => tracing::error!(target: "librdkafka", facility, "{message}"),
            Error if !is_retried_by_librdkafka(facility) => {
                tracing::error!(target: "librdkafka", facility, "{message}")
            }
            Error | Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
            Notice | Info => tracing::info!(target: "librdkafka", facility, "{message}"),
            Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let transient = matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown)
        );
        if transient {
            tracing::warn!(target: "librdkafka", %error, "{reason}");
        } else {
            tracing::error!(target: "librdkafka", %error, "{reason}");
        }
    }

    fn stats_raw(&self, statistics: &[u8]) {
        let Some((group, records)) = &self.lag else { return };
        match serde_json::from_slice::<Statistics>(statistics) {
            Ok(statistics) => records.lag(
                group,
                statistics.topics.into_iter().flat_map(|(topic, stats)| {
                    stats
                        .partitions
                        .into_values()
                        .filter(|p| p.partition >= 0 && p.desired)
                        .filter_map(move |p| Some((topic.clone(), p.partition, p.lag()?)))
                }),
            ),
            Err(error) => tracing::debug!(%error, "librdkafka's statistics not understood"),
        }
    }
}

impl rdkafka::consumer::ConsumerContext for Context {}

/// Connection failures (`FAIL`) are retried with backoff by librdkafka itself.
fn is_retried_by_librdkafka(facility: &str) -> bool {
    matches!(facility, "FAIL" | "BROKERFAIL" | "CONNECT" | "REQTMOUT")
}

fn base(brokers: &str, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("client.id", client_id)
        // Find a restarted or re-elected broker quickly.
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "2000")
        .set("topic.metadata.refresh.interval.ms", "10000");
    config
}

/// The producer of a service: idempotent (no duplicates from its own retries, order kept
/// per partition), acks from all in-sync replicas, and a short linger so a single event
/// leaves within milliseconds while bursts still batch.
pub fn producer(brokers: &str, client_id: &str) -> Result<Producer, KafkaError> {
    let mut config = base(brokers, client_id);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "30000");
    config.extend(tuning("SHOP_KAFKA_PRODUCER"));
    config.create_with_context(Context::default())
}

/// A consumer in `group`, a static member named `client_id`. Offsets are stored by the consumer loop after each record's
/// effect is committed, and auto-committed from there; nothing is stored ahead of the work.
pub fn consumer(brokers: &str, client_id: &str, group: &str) -> Result<GroupConsumer, KafkaError> {
    consumer_config(brokers, client_id, group).create_with_context(Context::default())
}

/// A service's consumer: as `consumer`, reporting its lag per assigned partition to `records`.
pub fn consumer_reporting_lag(
    brokers: &str,
    client_id: &str,
    group: &str,
    records: &crate::metrics::Records,
) -> Result<GroupConsumer, KafkaError> {
    let mut config = consumer_config(brokers, client_id, group);
    config.set("statistics.interval.ms", STATISTICS_EVERY);
    config.create_with_context(Context { lag: Some((group.to_owned(), records.clone())) })
}

fn consumer_config(brokers: &str, client_id: &str, group: &str) -> ClientConfig {
    let mut config = base(brokers, client_id);
    config
        .set("group.id", group)
        // Static membership: a replica restarted under the same name takes its partitions
        // back at once instead of waiting for its old session to expire.
        .set("group.instance.id", client_id)
        // Spread partitions of several topics evenly over the replicas (range would give
        // one replica two thirds of them).
        .set("partition.assignment.strategy", "roundrobin")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "500")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("enable.partition.eof", "false");
    config.extend(tuning("SHOP_KAFKA_CONSUMER"));
    config
}

/// librdkafka properties an operator sets in the environment variable `var`, as
/// `name=value,name=value`, over the ones above: to tune the clients for a cluster
/// (`SHOP_KAFKA_CONSUMER="fetch.min.bytes=4096,fetch.wait.max.ms=20"`) without a rebuild.
/// librdkafka refuses an unknown name or a bad value when the client is made.
fn tuning(var: &str) -> Vec<(String, String)> {
    std::env::var(var).map(|value| parse_tuning(&value)).unwrap_or_default()
}

fn parse_tuning(value: &str) -> Vec<(String, String)> {
    value
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect()
}

pub fn admin(brokers: &str) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
    base(brokers, "shop-admin").create()
}

/// Creates each topic unless it exists. Idempotent.
pub async fn create_topics(
    brokers: &str,
    names: &[String],
    partitions: i32,
    replication_factor: i32,
) -> Result<Vec<String>, KafkaError> {
    let admin = admin(brokers)?;
    let topics: Vec<NewTopic> =
        names.iter().map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(replication_factor))).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let mut created = Vec::new();
    for result in admin.create_topics(&topics, &options).await? {
        match result {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaError::AdminOp(code))
                    .inspect_err(|_| tracing::error!(topic = %name, %code, "Cannot create topic"));
            }
        }
    }
    Ok(created)
}

/// Asks the cluster for its metadata: true when it answers within `timeout`.
pub async fn cluster_answers(brokers: &str, timeout: Duration) -> bool {
    let brokers = brokers.to_owned();
    tokio::task::spawn_blocking(move || {
        let Ok(consumer) = base(&brokers, "shop-probe").create::<rdkafka::consumer::BaseConsumer>() else {
            return false;
        };
        consumer.fetch_metadata(None, timeout).is_ok_and(|m| !m.brokers().is_empty())
    })
    .await
    .unwrap_or(false)
}

/// The topics the cluster knows, with their partition counts.
pub async fn describe_topics(brokers: &str, timeout: Duration) -> Result<Vec<(String, usize)>, KafkaError> {
    let brokers = brokers.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: rdkafka::consumer::BaseConsumer = base(&brokers, "shop-probe").create()?;
        let metadata = consumer.fetch_metadata(None, timeout)?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name().to_owned(), t.partitions().len()))
            .collect())
    })
    .await
    .map_err(|_| KafkaError::Canceled)?
}

/// Is the producer's cluster reachable? Used by `/readyz`.
pub async fn producer_ready(producer: &Producer) -> bool {
    use rdkafka::producer::Producer as _;
    let producer = producer.clone();
    tokio::task::spawn_blocking(move || {
        producer.client().fetch_metadata(None, Duration::from_secs(2)).is_ok_and(|m| !m.brokers().is_empty())
    })
    .await
    .unwrap_or(false)
}

/// A consumer of no group reading every partition of `topics` from its end, as records
/// arrive: for a process that wants to hear that something happened, not to process it (no
/// offsets stored, nothing committed, no group joined or balanced). The ends are looked up
/// before it returns, so every record produced after that is read. Partitions added to the
/// topics later are not followed until the process restarts.
pub async fn tail(brokers: &str, client_id: &str, topics: &[&str]) -> Result<GroupConsumer, KafkaError> {
    let consumer: GroupConsumer = base(brokers, client_id)
        // librdkafka assigns partitions only to a consumer with a group; this one never joins
        // it (no subscribe) and never commits, so the group stays unknown to the brokers.
        .set("group.id", client_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .create_with_context(Context::default())?;
    let consumer = Arc::new(consumer);
    let (probe, topics) = (consumer.clone(), topics.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>());
    let assignment = tokio::task::spawn_blocking(move || -> Result<_, KafkaError> {
        let timeout = Duration::from_secs(10);
        let mut assignment = rdkafka::TopicPartitionList::new();
        for topic in &topics {
            let metadata = probe.fetch_metadata(Some(topic), timeout)?;
            let partitions = metadata.topics().first().map(|t| (t.error(), t.partitions().len()));
            let Some((None, count)) = partitions.filter(|(_, count)| *count > 0) else {
                return Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition));
            };
            for partition in 0..count as i32 {
                let (_, end) = probe.fetch_watermarks(topic, partition, timeout)?;
                assignment.add_partition_offset(topic, partition, rdkafka::Offset::Offset(end))?;
            }
        }
        Ok(assignment)
    })
    .await
    .map_err(|_| KafkaError::Canceled)??;
    consumer.assign(&assignment)?;
    Ok(Arc::into_inner(consumer).expect("the lookup's handle is dropped"))
}

pub(crate) fn subscribe(consumer: &GroupConsumer, topics: &[&str]) -> Result<(), KafkaError> {
    consumer.subscribe(topics)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lag_is_from_the_committed_offset_or_from_the_start_when_nothing_is_committed() {
        let partition = |consumer_lag, lo_offset, hi_offset| super::PartitionStatistics {
            partition: 0,
            desired: true,
            consumer_lag,
            lo_offset,
            hi_offset,
        };
        assert_eq!(partition(4, 0, 10).lag(), Some(4));
        assert_eq!(partition(-1, 2, 10).lag(), Some(8), "nothing committed: all it holds");
        assert_eq!(partition(-1, 0, 0).lag(), Some(0), "empty");
        assert_eq!(partition(-1, -1, -1).lag(), None, "the end not known yet");
    }

    use super::*;

    #[test]
    fn tuning_is_read_as_name_value_pairs_and_librdkafka_judges_them() {
        let pairs = parse_tuning(" fetch.min.bytes=4096, fetch.wait.max.ms = 20 ,,");
        assert_eq!(
            pairs,
            [("fetch.min.bytes".to_owned(), "4096".to_owned()), ("fetch.wait.max.ms".to_owned(), "20".to_owned())]
        );
        let mut config = ClientConfig::new();
        config.extend(parse_tuning("no.such.property=1"));
        assert!(config.create::<rdkafka::consumer::BaseConsumer>().is_err(), "an unknown name is refused");
    }
}
