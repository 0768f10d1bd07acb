//! What the platform's tests on a real broker share.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use shop_embedded_broker::EmbeddedBroker;
use shop_platform::kafka;

/// An embedded broker keeping its records in memory, on a port no outgoing connection can take
/// first (`shop_platform::ports`), with `topics` created (one partition each).
pub async fn broker_with(topics: &[&str]) -> EmbeddedBroker {
    let port = shop_platform::ports::unused_one().expect("a free port");
    let broker = EmbeddedBroker::start(
        "127.0.0.1",
        "127.0.0.1",
        port,
        &shop_embedded_broker::Storage::Memory,
        &Default::default(),
    )
    .await
    .expect("the embedded broker");
    let topics: Vec<String> = topics.iter().map(|topic| (*topic).to_owned()).collect();
    kafka::create_topics(broker.bootstrap_servers(), &topics, 1, 1).await.expect("the topics are created");
    broker
}

/// Up to `count` payloads of partition 0 of `topic`, read from its start (by a reader of no
/// group's commits), for at most `within`.
#[allow(dead_code)] // not every test binary reads a topic back
pub fn read_from_start(brokers: &str, topic: &str, count: usize, within: Duration) -> Vec<Vec<u8>> {
    let reader: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a reader");
    let mut from_start = TopicPartitionList::new();
    from_start.add_partition_offset(topic, 0, Offset::Beginning).expect("partition 0");
    reader.assign(&from_start).expect("the reader is assigned");
    let deadline = Instant::now() + within;
    let mut payloads = Vec::new();
    while payloads.len() < count && Instant::now() < deadline {
        if let Some(Ok(message)) = reader.poll(Duration::from_millis(200)) {
            payloads.push(message.payload().unwrap_or_default().to_vec());
        }
    }
    payloads
}
