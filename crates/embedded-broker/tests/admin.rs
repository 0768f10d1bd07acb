//! Administration as Kafka's clients do it, where tansu 0.6 could not (vendor/README.md):
//! partitions are added to a topic (CreatePartitions) and take records at once, and stay on
//! disk after a restart; a topic's configs are described with its overrides and the defaults
//! the broker goes by (what `kafka-configs --describe --all` lists).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use shop_embedded_broker::{EmbeddedBroker, Retention, Storage};

#[macro_use]
mod support;

on_each_storage!(partitions_are_added_to_a_topic_and_take_records, a_topics_configs_are_described_with_the_defaults);

async fn start(storage: &Storage) -> EmbeddedBroker {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    EmbeddedBroker::start("127.0.0.1", "127.0.0.1", port, storage, &Retention::default()).await.unwrap()
}

fn admin(brokers: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap()
}

/// The topic's partition count and each partition's watermarks, as a client sees them.
fn partitions(brokers: &str, topic: &str) -> Vec<(i64, i64)> {
    let client: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let metadata = client.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let count = metadata.topics()[0].partitions().len() as i32;
    (0..count).map(|p| client.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap()).collect()
}

async fn partitions_are_added_to_a_topic_and_take_records(storage: Storage) {
    let broker = start(&storage).await;
    let brokers = broker.bootstrap_servers().to_owned();
    let options = AdminOptions::new();
    let topic = NewTopic::new("growing", 1, TopicReplication::Fixed(1));
    admin(&brokers).create_topics([&topic], &options).await.unwrap();

    let added = admin(&brokers).create_partitions([&NewPartitions::new("growing", 3)], &options).await.unwrap();
    assert!(added[0].is_ok(), "{added:?}");
    assert_eq!(partitions(&brokers, "growing"), [(0, 0); 3], "three empty partitions");
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let record = FutureRecord::to("growing").partition(2).key("k").payload("in a new partition");
    let delivered = producer.send(record, Duration::from_secs(10)).await.unwrap();
    assert_eq!((delivered.partition, delivered.offset), (2, 0));

    let fewer = admin(&brokers).create_partitions([&NewPartitions::new("growing", 2)], &options).await.unwrap();
    assert!(
        matches!(fewer[0], Err((_, RDKafkaErrorCode::InvalidPartitions))),
        "partitions are never removed: {fewer:?}"
    );
    let unknown = admin(&brokers).create_partitions([&NewPartitions::new("never-was", 2)], &options).await.unwrap();
    assert!(matches!(unknown[0], Err((_, RDKafkaErrorCode::UnknownTopicOrPartition))), "{unknown:?}");

    if matches!(storage, Storage::Disk(_)) {
        drop(producer);
        broker.stop();
        let broker = start(&storage).await;
        assert_eq!(
            partitions(broker.bootstrap_servers(), "growing"),
            [(0, 0), (0, 0), (0, 1)],
            "the added partitions and their records are there after a restart"
        );
        broker.stop();
    } else {
        assert_eq!(partitions(&brokers, "growing"), [(0, 0), (0, 0), (0, 1)]);
        broker.stop();
    }
}

async fn a_topics_configs_are_described_with_the_defaults(storage: Storage) {
    let broker = start(&storage).await;
    let brokers = broker.bootstrap_servers();
    let options = AdminOptions::new();
    let topic = NewTopic::new("configured", 1, TopicReplication::Fixed(1)).set("retention.ms", "3600000");
    admin(brokers).create_topics([&topic], &options).await.unwrap();

    let described = admin(brokers).describe_configs([&ResourceSpecifier::Topic("configured")], &options).await.unwrap();
    let resource = described[0].as_ref().unwrap();
    // The value, the source (as rdkafka names it) and whether it is a default.
    let entry = |name: &str| -> (String, String, bool) {
        let entry = resource.get(name).unwrap_or_else(|| panic!("{name} is described: {:?}", resource.entries));
        (entry.value.clone().unwrap_or_default(), format!("{:?}", entry.source), entry.is_default)
    };
    assert_eq!(entry("retention.ms"), ("3600000".into(), "DynamicTopic".into(), false), "the override");
    let day = Retention::default();
    assert_eq!(entry("retention.bytes"), (day.bytes.to_string(), "Default".into(), true), "the broker's default");
    assert_eq!(entry("cleanup.policy"), ("delete".into(), "Default".into(), true));
    broker.stop();
}
