//! Each service's metrics, in the Prometheus text format (OpenMetrics) at `GET /metrics`, for
//! the operator: a registry per service (`prometheus-client`), so that services sharing a
//! process (the in-process tests) keep their own figures. What every service counts is here;
//! a service registers its own families with `register`, and figures read only when scraped
//! (a table's row count) with `on_scrape`. A service on the broker adds the families of its
//! records with `records` (consumed, produced, handled, retried, set aside, lag, outbox).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};

/// The content type of the exposition (Prometheus scrapes OpenMetrics).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Request {
    method: String,
    /// The route as declared (`/orders/{order_id}`), `unmatched` for any other path: one
    /// series per route, whatever clients send.
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    method: String,
    route: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Durations from 1 ms to about 16 s.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Reads figures into gauges when the service is scraped.
type Refresh = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// How long a scrape waits for the figures read on scrape (a busy database): the rest is
/// answered anyway, with what those gauges held before.
const REFRESH_WITHIN: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    requests: Family<Request, Counter>,
    request_seconds: Histograms<Route>,
    refreshes: Arc<Mutex<Vec<Refresh>>>,
    records: Arc<OnceLock<Records>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("shop");
        let requests = Family::<Request, Counter>::default();
        registry.register("http_requests", "HTTP requests answered, by route and status", requests.clone());
        let request_seconds: Histograms<Route> = Family::new_with_constructor(seconds);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            request_seconds.clone(),
        );
        Self {
            registry: Arc::new(Mutex::new(registry)),
            requests,
            request_seconds,
            refreshes: Arc::default(),
            records: Arc::default(),
        }
    }

    /// The families of a service's Kafka records, registered the first time they are asked for
    /// (services without Kafka do not show them).
    pub fn records(&self) -> &Records {
        self.records.get_or_init(|| Records::register(self))
    }

    /// `refresh` runs at every scrape, before the figures are written: for gauges read from
    /// somewhere else (a table's size), so that only a scrape pays for them.
    pub fn on_scrape<F, Fut>(&self, refresh: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let refresh: Refresh = Arc::new(move || Box::pin(refresh()));
        self.refreshes.lock().expect("the refresh lock is never poisoned").push(refresh);
    }

    /// Adds a service's own family (`name` gets the `shop_` prefix; a counter also `_total`).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry.lock().expect("the registry lock is never poisoned").register(name, help, metric);
    }

    /// One HTTP request answered.
    pub fn request(&self, method: &str, route: Option<&str>, status: u16, took: Duration) {
        let route = route.unwrap_or("unmatched").to_owned();
        let method = method.to_owned();
        self.request_seconds
            .get_or_create(&Route { method: method.clone(), route: route.clone() })
            .observe(took.as_secs_f64());
        self.requests.get_or_create(&Request { method, route, status }).inc();
    }

    /// Reads the figures read on scrape, then writes every family.
    pub async fn scrape(&self) -> String {
        let refreshes: Vec<Refresh> = self.refreshes.lock().expect("the refresh lock is never poisoned").clone();
        let all = futures::future::join_all(refreshes.iter().map(|refresh| refresh()));
        if tokio::time::timeout(REFRESH_WITHIN, all).await.is_err() {
            tracing::warn!("Some figures were not read in time for a scrape; their last values are shown");
        }
        self.encode()
    }

    /// The exposition of every family.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().expect("the registry lock is never poisoned");
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("writing to a String cannot fail");
        text
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupTopic {
    group: &'static str,
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Setback {
    group: &'static str,
    topic: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabel {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    group: String,
    topic: String,
    partition: i32,
}

/// What a service on the broker counts of its Kafka records: the consumer loop, the outbox
/// relay and librdkafka's statistics feed it. (The outbox's own gauges are the relay's.)
#[derive(Clone)]
pub struct Records {
    consumed: Family<GroupTopic, Counter>,
    handler_seconds: Histograms<GroupTopic>,
    retries: Family<Setback, Counter>,
    dead_letters: Family<Setback, Counter>,
    produced: Family<TopicLabel, Counter>,
    publish_seconds: Histograms<TopicLabel>,
    lag: Family<PartitionLabels, Gauge>,
    /// The lag series of each group, so that a partition no longer assigned loses its series.
    lagging: Arc<Mutex<std::collections::HashMap<String, Vec<PartitionLabels>>>>,
}

impl Records {
    fn register(metrics: &Metrics) -> Self {
        let records = Self {
            consumed: Family::default(),
            handler_seconds: Family::new_with_constructor(seconds),
            retries: Family::default(),
            dead_letters: Family::default(),
            produced: Family::default(),
            publish_seconds: Family::new_with_constructor(seconds),
            lag: Family::default(),
            lagging: Arc::default(),
        };
        metrics.register(
            "records_consumed",
            "Records a consumer group handled or set aside, by topic",
            records.consumed.clone(),
        );
        metrics.register(
            "handler_duration_seconds",
            "Time a consumer's handler took per record (a batch's time shared by its records), by group and topic",
            records.handler_seconds.clone(),
        );
        metrics.register(
            "consumer_retries",
            "Records whose handling failed on a dependency and is tried again, by group, topic and reason",
            records.retries.clone(),
        );
        metrics.register(
            "dead_letters",
            "Records set aside on <topic>.dlq, by group, source topic and reason",
            records.dead_letters.clone(),
        );
        metrics.register(
            "records_produced",
            "Records the brokers acknowledged, by topic (events from the outbox and dead letters)",
            records.produced.clone(),
        );
        metrics.register(
            "relay_publish_latency_seconds",
            "Time from an event's commit to the outbox until the brokers acknowledged it, by topic",
            records.publish_seconds.clone(),
        );
        metrics.register(
            "consumer_lag",
            "Records not yet committed by this instance's consumer, by group and assigned partition \
             (librdkafka's statistics, every few seconds)",
            records.lag.clone(),
        );
        records
    }

    /// A record handled (or set aside) by `group`, its handler taking `took`.
    pub fn consumed(&self, group: &'static str, topic: &str, took: Duration) {
        let labels = GroupTopic { group, topic: topic.to_owned() };
        self.handler_seconds.get_or_create(&labels).observe(took.as_secs_f64());
        self.consumed.get_or_create(&labels).inc();
    }

    /// A record's handling failed on a dependency (`reason`) and will be tried again.
    pub fn retried(&self, group: &'static str, topic: &str, reason: &'static str) {
        self.retries.get_or_create(&Setback { group, topic: topic.to_owned(), reason }).inc();
    }

    /// A record was set aside on its dead-letter topic for `reason`.
    pub fn dead_lettered(&self, group: &'static str, topic: &str, reason: &'static str) {
        self.dead_letters.get_or_create(&Setback { group, topic: topic.to_owned(), reason }).inc();
    }

    /// A record the brokers acknowledged; `since_commit` from its commit to the outbox, for
    /// the relay's events.
    pub fn produced(&self, topic: &str, since_commit: Option<Duration>) {
        let labels = TopicLabel { topic: topic.to_owned() };
        if let Some(latency) = since_commit {
            self.publish_seconds.get_or_create(&labels).observe(latency.as_secs_f64());
        }
        self.produced.get_or_create(&labels).inc();
    }

    /// The lag of `group` on each of its assigned partitions now (those not given have lost
    /// their series).
    pub fn lag(&self, group: &str, partitions: impl IntoIterator<Item = (String, i32, i64)>) {
        let mut lagging = self.lagging.lock().expect("the lag lock is never poisoned");
        let now: Vec<PartitionLabels> = partitions
            .into_iter()
            .map(|(topic, partition, lag)| {
                let labels = PartitionLabels { group: group.to_owned(), topic, partition };
                self.lag.get_or_create(&labels).set(lag);
                labels
            })
            .collect();
        for gone in lagging.get(group).into_iter().flatten().filter(|before| !now.contains(before)) {
            self.lag.remove(gone);
        }
        lagging.insert(group.to_owned(), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_no_longer_assigned_loses_its_lag_series() {
        let metrics = Metrics::new();
        let records = metrics.records();
        records.lag("g", [("t".to_owned(), 0, 5), ("t".to_owned(), 1, 0)]);
        records.lag("h", [("t".to_owned(), 2, 1)]);
        let text = metrics.encode();
        assert!(text.contains(r#"shop_consumer_lag{group="g",topic="t",partition="0"} 5"#), "{text}");
        assert!(text.contains(r#"shop_consumer_lag{group="g",topic="t",partition="1"} 0"#), "{text}");
        records.lag("g", [("t".to_owned(), 1, 3)]);
        let text = metrics.encode();
        assert!(!text.contains(r#"group="g",topic="t",partition="0""#), "partition 0 was taken away: {text}");
        assert!(text.contains(r#"shop_consumer_lag{group="g",topic="t",partition="1"} 3"#), "{text}");
        assert!(
            text.contains(r#"shop_consumer_lag{group="h",topic="t",partition="2"} 1"#),
            "another group's stay: {text}"
        );
    }

    #[test]
    fn counts_and_durations_are_labelled_by_group_topic_and_reason() {
        let metrics = Metrics::new();
        let records = metrics.records();
        records.consumed("g", "orders-created", Duration::from_millis(3));
        records.retried("g", "orders-created", "mailbox");
        records.dead_lettered("g", "orders-created", "undecodable");
        records.produced("orders-created", Some(Duration::from_millis(20)));
        let text = metrics.encode();
        for line in [
            r#"shop_records_consumed_total{group="g",topic="orders-created"} 1"#,
            r#"shop_handler_duration_seconds_count{group="g",topic="orders-created"} 1"#,
            r#"shop_consumer_retries_total{group="g",topic="orders-created",reason="mailbox"} 1"#,
            r#"shop_dead_letters_total{group="g",topic="orders-created",reason="undecodable"} 1"#,
            r#"shop_records_produced_total{topic="orders-created"} 1"#,
            r#"shop_relay_publish_latency_seconds_count{topic="orders-created"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
