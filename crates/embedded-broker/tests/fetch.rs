//! The embedded broker serves fetches and offsets as a Kafka broker would where tansu 0.6
//! needed a patch (vendor/README.md): a group resuming at an offset inside a producer's batch
//! gets the rest of that batch, and each later batch once; the high watermark is the offset
//! after the last record; a topic deleted and created again starts empty (the broker keeps
//! each partition's watermark in memory, not in its store).

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use shop_embedded_broker::EmbeddedBroker;

const TOPIC: &str = "batches";
const DEADLINE: Duration = Duration::from_secs(30);

async fn broker() -> EmbeddedBroker {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let broker = EmbeddedBroker::start("127.0.0.1", "127.0.0.1", port).await.unwrap();
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", broker.bootstrap_servers()).create().unwrap();
    let topic = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(1));
    admin.create_topics([&topic], &AdminOptions::new()).await.unwrap();
    broker
}

/// Sends `values` so that the producer puts them in one batch (one request, long linger).
async fn send_one_batch(brokers: &str, values: &[String]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "200")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let sends: Vec<_> = values
        .iter()
        .map(|value| producer.send_result(FutureRecord::to(TOPIC).key("k").payload(value)).unwrap())
        .collect();
    for send in sends {
        send.await.unwrap().unwrap();
    }
}

fn consumer(brokers: &str, group: &str) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[TOPIC]).unwrap();
    consumer
}

/// Reads until `count` records came (or the deadline passed): their offsets and values.
async fn read(consumer: &StreamConsumer, count: usize) -> Vec<(i64, String)> {
    let until = Instant::now() + DEADLINE;
    let mut read = Vec::new();
    while read.len() < count {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(m)) => read.push((m.offset(), String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())),
            Ok(Err(error)) => panic!("consumer error: {error}"),
            Err(_) => break,
        }
    }
    read
}

/// The partition's low and high watermarks, asked again while the client's metadata does not
/// know the partition yet (just after the topic was created again), until the deadline.
async fn watermarks(consumer: &StreamConsumer) -> (i64, i64) {
    let until = Instant::now() + DEADLINE;
    loop {
        match consumer.fetch_watermarks(TOPIC, 0, Duration::from_secs(10)) {
            Ok(watermarks) => return watermarks,
            Err(error) if Instant::now() < until => {
                eprintln!("watermarks not known yet ({error}); asking again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("no watermarks of {TOPIC}/0 within {DEADLINE:?}: {error}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_resuming_inside_a_batch_gets_the_rest_of_it() {
    let broker = broker().await;
    let brokers = broker.bootstrap_servers().to_owned();
    let values: Vec<String> = (0..5).map(|i| format!("record {i}")).collect();
    send_one_batch(&brokers, &values).await;

    let first = consumer(&brokers, "resumes");
    let (low, high) = first.fetch_watermarks(TOPIC, 0, Duration::from_secs(10)).unwrap();
    assert_eq!((low, high), (0, 5), "the high watermark is past the last record of the batch");
    let read_first = read(&first, 2).await;
    assert_eq!(read_first, vec![(0, values[0].clone()), (1, values[1].clone())]);
    let mut resume_at = TopicPartitionList::new();
    resume_at.add_partition_offset(TOPIC, 0, Offset::Offset(2)).unwrap();
    first.commit(&resume_at, CommitMode::Sync).unwrap();
    drop(first);

    let second = consumer(&brokers, "resumes");
    let rest = read(&second, 3).await;
    let expected: Vec<(i64, String)> = (2..5).map(|i| (i, values[i as usize].clone())).collect();
    assert_eq!(rest, expected, "the group must resume at offset 2, inside the batch of 0..5");

    // Caught up at the end of that batch, the group gets each later batch once.
    let more: Vec<String> = (5..8).map(|i| format!("record {i}")).collect();
    send_one_batch(&brokers, &more).await;
    send_one_batch(&brokers, &["end".to_owned()]).await;
    let later = read(&second, 4).await;
    let expected: Vec<(i64, String)> =
        (5..8).map(|i| (i, more[i as usize - 5].clone())).chain([(8, "end".into())]).collect();
    assert_eq!(later, expected);
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_deleted_and_created_again_starts_empty() {
    let broker = broker().await;
    let brokers = broker.bootstrap_servers().to_owned();
    let old: Vec<String> = (0..3).map(|i| format!("old {i}")).collect();
    send_one_batch(&brokers, &old).await;
    let watcher = consumer(&brokers, "watcher");
    assert_eq!(watermarks(&watcher).await, (0, 3));

    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let deleted = admin.delete_topics(&[TOPIC], &AdminOptions::new()).await.unwrap();
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    let created = admin
        .create_topics([&NewTopic::new(TOPIC, 1, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    assert_eq!(watermarks(&watcher).await, (0, 0));

    send_one_batch(&brokers, &["new".to_owned()]).await;
    let fresh = consumer(&brokers, "after-recreate");
    assert_eq!(read(&fresh, 1).await, vec![(0, "new".to_owned())], "only the new record, at offset 0");
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_time_after_every_record_finds_no_offset_rather_than_the_first() {
    let broker = broker().await;
    let brokers = broker.bootstrap_servers().to_owned();
    send_one_batch(&brokers, &["record 0".to_owned(), "record 1".to_owned()]).await;
    let consumer = consumer(&brokers, "by-time");
    assert_eq!(watermarks(&consumer).await, (0, 2));

    let at = |millis: i64| {
        let mut times = TopicPartitionList::new();
        times.add_partition_offset(TOPIC, 0, Offset::Offset(millis)).unwrap();
        let found = consumer.offsets_for_times(times, Duration::from_secs(10)).unwrap();
        found.find_partition(TOPIC, 0).unwrap().offset()
    };
    let now = now_millis();
    // Kafka answers -1 (librdkafka's End) when no record is at or after the time: a client
    // seeking there waits for new records instead of replaying the partition from 0.
    assert_eq!(at(now + 3_600_000), Offset::End, "an hour from now");
    assert_eq!(at(now - 3_600_000), Offset::Offset(0), "an hour ago: the first record");
    broker.stop();
}

fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}
