//! How far behind each consumer group is, read from Kafka: for every partition of the
//! topics a group consumes, the group's committed offset against the partition's high
//! watermark. The probe never joins a group: a consumer per group only asks for that
//! group's committed offsets, so measuring never causes a rebalance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use shop_events::{group, Topic};
use shop_platform::auth::Operator;
use shop_platform::db::{now_millis, rfc3339};
use shop_platform::http::ApiError;

use crate::AppState;

/// How long one question to Kafka may take.
const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LagReport {
    pub measured_at: String,
    pub groups: Vec<GroupLag>,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupLag {
    pub group: &'static str,
    /// Records on the group's topics it has not committed yet; None when it could not be read.
    pub lag: Option<i64>,
    pub topics: Vec<TopicLag>,
    pub error: Option<String>,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicLag {
    pub topic: &'static str,
    pub lag: i64,
    pub partitions: Vec<PartitionLag>,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionLag {
    pub partition: i32,
    /// The group's committed offset; None before it committed on this partition.
    pub committed: Option<i64>,
    pub low: i64,
    pub high: i64,
    /// `high - committed`, or `high - low` (all there is) before a first commit.
    pub lag: i64,
}

/// Kafka clients kept between measurements: one consumer per group (never subscribed).
pub struct LagProbe {
    brokers: String,
    consumers: Mutex<HashMap<&'static str, BaseConsumer>>,
}

impl LagProbe {
    pub fn new(brokers: &str) -> Self {
        Self { brokers: brokers.to_owned(), consumers: Mutex::new(HashMap::new()) }
    }

    fn consumer(&self, group: &str) -> Result<BaseConsumer, KafkaError> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", format!("logging-lag-probe-{group}"))
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("reconnect.backoff.max.ms", "2000")
            .create()
    }

    /// Measures every group. Blocking: call it from `spawn_blocking`.
    pub fn measure(&self) -> Result<LagReport, KafkaError> {
        let mut consumers = self.consumers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (group, _) in group::SUBSCRIPTIONS {
            if !consumers.contains_key(group) {
                consumers.insert(group, self.consumer(group)?);
            }
        }
        // Serve whatever the idle clients queued (errors, logs), so nothing piles up.
        for consumer in consumers.values() {
            let _ = consumer.poll(Duration::ZERO);
        }
        let any = &consumers[group::LOGGING_SERVICE];
        let mut watermarks: HashMap<Topic, Vec<(i32, i64, i64)>> = HashMap::new();
        for (_, topics) in group::SUBSCRIPTIONS {
            for &topic in topics {
                if watermarks.contains_key(&topic) {
                    continue;
                }
                let metadata = any.fetch_metadata(Some(topic.name()), TIMEOUT)?;
                let mut partitions = Vec::new();
                for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
                    let (low, high) = any.fetch_watermarks(topic.name(), partition.id(), TIMEOUT)?;
                    partitions.push((partition.id(), low, high));
                }
                watermarks.insert(topic, partitions);
            }
        }
        let groups = group::SUBSCRIPTIONS
            .iter()
            .map(|&(group, topics)| group_lag(&consumers[group], group, topics, &watermarks))
            .collect();
        Ok(LagReport { measured_at: rfc3339(now_millis()), groups })
    }
}

fn group_lag(
    consumer: &BaseConsumer,
    group: &'static str,
    topics: &[Topic],
    watermarks: &HashMap<Topic, Vec<(i32, i64, i64)>>,
) -> GroupLag {
    let mut wanted = TopicPartitionList::new();
    for topic in topics {
        for &(partition, _, _) in &watermarks[topic] {
            wanted.add_partition(topic.name(), partition);
        }
    }
    let committed = match consumer.committed_offsets(wanted, TIMEOUT) {
        Ok(committed) => committed,
        Err(error) => {
            return GroupLag {
                group,
                lag: None,
                topics: Vec::new(),
                error: Some(format!("cannot read the committed offsets: {error}")),
            }
        }
    };
    let topics: Vec<TopicLag> = topics
        .iter()
        .map(|topic| {
            let partitions: Vec<PartitionLag> = watermarks[topic]
                .iter()
                .map(|&(partition, low, high)| {
                    let committed = match committed.find_partition(topic.name(), partition).map(|e| e.offset()) {
                        Some(Offset::Offset(offset)) => Some(offset),
                        _ => None,
                    };
                    let lag = (high - committed.unwrap_or(low)).max(0);
                    PartitionLag { partition, committed, low, high, lag }
                })
                .collect();
            TopicLag { topic: topic.name(), lag: partitions.iter().map(|p| p.lag).sum(), partitions }
        })
        .collect();
    GroupLag { group, lag: Some(topics.iter().map(|t| t.lag).sum()), topics, error: None }
}

/// How often the lag is sampled for its history, and how many samples are kept (an hour).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const SAMPLES_KEPT: usize = 360;

/// Every group's lag over the last hour, sampled in the background (`sample`).
#[derive(Default)]
pub struct LagHistory {
    samples: Mutex<std::collections::VecDeque<LagSample>>,
}

#[derive(Serialize, Debug, Clone, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LagSample {
    pub at: String,
    /// Each group's lag; None when it could not be read (Kafka down).
    #[schema(value_type = std::collections::BTreeMap<String, Option<i64>>)]
    pub groups: std::collections::BTreeMap<&'static str, Option<i64>>,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LagHistoryReport {
    pub every_seconds: u64,
    /// Oldest first.
    pub samples: Vec<LagSample>,
}

impl LagHistory {
    fn add(&self, sample: LagSample) {
        let mut samples = self.samples.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        samples.push_back(sample);
        while samples.len() > SAMPLES_KEPT {
            samples.pop_front();
        }
    }

    fn all(&self) -> Vec<LagSample> {
        self.samples.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter().cloned().collect()
    }
}

/// Measures every group's lag every `SAMPLE_EVERY` into `history`, until `shutdown`.
pub async fn sample(
    probe: Arc<LagProbe>,
    history: Arc<LagHistory>,
    shutdown: shop_platform::Shutdown,
) -> anyhow::Result<()> {
    loop {
        let measuring = Arc::clone(&probe);
        let at = rfc3339(now_millis());
        let groups = match tokio::task::spawn_blocking(move || measuring.measure()).await? {
            Ok(report) => report.groups.iter().map(|g| (g.group, g.lag)).collect(),
            Err(error) => {
                tracing::debug!(%error, "Lag not sampled: Kafka does not answer");
                group::SUBSCRIPTIONS.iter().map(|(g, _)| (*g, None)).collect()
            }
        };
        history.add(LagSample { at, groups });
        tokio::select! {
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
            _ = shutdown.wait() => return Ok(()),
        }
    }
}

/// Every group's lag over the last hour.
///
/// Sampled every 10 s, oldest first.
#[utoipa::path(get, path = "/api/lag/history", security(("bearer" = ["operator"])), responses((status = 200, body = LagHistoryReport)))]
pub async fn history(State(state): State<AppState>, _: Operator) -> Json<LagHistoryReport> {
    Json(LagHistoryReport { every_seconds: SAMPLE_EVERY.as_secs(), samples: state.lag_history.all() })
}

/// Every group's lag now.
///
/// Per topic and partition; 503 when Kafka does not answer.
#[utoipa::path(get, path = "/api/lag", security(("bearer" = ["operator"])), responses(
    (status = 200, body = LagReport),
))]
pub async fn report(State(state): State<AppState>, _: Operator) -> Result<Json<LagReport>, ApiError> {
    let probe = Arc::clone(&state.lag);
    tokio::task::spawn_blocking(move || probe.measure())
        .await
        .map_err(|error| ApiError::internal(format!("the lag measurement failed: {error}")))?
        .map(Json)
        .map_err(|error| ApiError::unavailable("Kafka does not answer").with_detail(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_keeps_the_last_hour() {
        let history = LagHistory::default();
        for n in 0..SAMPLES_KEPT + 5 {
            history.add(LagSample { at: n.to_string(), groups: Default::default() });
        }
        let kept = history.all();
        assert_eq!(kept.len(), SAMPLES_KEPT);
        assert_eq!(kept[0].at, "5", "the oldest went first");
        assert_eq!(kept.last().unwrap().at, (SAMPLES_KEPT + 4).to_string());
    }

    #[test]
    fn every_consumer_group_is_measured_on_the_topics_it_consumes() {
        let groups: Vec<&str> = group::SUBSCRIPTIONS.iter().map(|(group, _)| *group).collect();
        assert_eq!(groups, group::ALL);
        for (group, topics) in group::SUBSCRIPTIONS {
            assert!(!topics.is_empty(), "{group}");
        }
    }
}
