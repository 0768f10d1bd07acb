//! The outbox relay on a real (embedded) broker and a real SQLite database: a producer that
//! failed for good (one of librdkafka's fatal errors, as an idempotent producer fenced by a
//! newer epoch of itself gets) is replaced, and the rows still in the outbox go out with the
//! new one instead of being retried for ever with the dead one.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::Producer as _;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Message, Offset, TopicPartitionList};
use shop_embedded_broker::EmbeddedBroker;
use shop_platform::outbox::{Outbox, Relay};
use shop_platform::{db, kafka, Shutdown};
use uuid::Uuid;

const TOPIC: &str = "relay-test";
const DEADLINE: Duration = Duration::from_secs(60);

/// The payloads on partition 0 of the topic, read from its start until `count` came.
fn read(brokers: &str, count: usize) -> Vec<String> {
    let reader: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "relay-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut from_start = TopicPartitionList::new();
    from_start.add_partition_offset(TOPIC, 0, Offset::Beginning).unwrap();
    reader.assign(&from_start).unwrap();
    let deadline = Instant::now() + DEADLINE;
    let mut payloads = Vec::new();
    while payloads.len() < count && Instant::now() < deadline {
        if let Some(Ok(message)) = reader.poll(Duration::from_millis(200)) {
            payloads.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
        }
    }
    payloads
}

#[tokio::test(flavor = "multi_thread")]
async fn a_producer_failed_for_good_is_replaced_and_the_outbox_still_goes_out() {
    let [port] = shop_platform::ports::unused::<1>().unwrap();
    let broker = EmbeddedBroker::start(
        "127.0.0.1",
        "127.0.0.1",
        port,
        &shop_embedded_broker::Storage::Memory,
        &Default::default(),
    )
    .await
    .unwrap();
    let brokers = broker.bootstrap_servers().to_owned();
    kafka::create_topics(&brokers, &[TOPIC.to_owned()], 1, 1).await.unwrap();
    let file = std::env::temp_dir().join(format!("shop-relay-{}.db", Uuid::new_v4().simple()));
    let pool =
        db::open(&format!("sqlite://{}?mode=rwc", file.display()), sqlx::migrate::Migrator::DEFAULT).await.unwrap();
    for payload in ["first", "second"] {
        sqlx::query("INSERT INTO outbox (id, topic, record_key, payload, created_at) VALUES ($1, $2, 'k', $3, 0)")
            .bind(Uuid::now_v7().to_string())
            .bind(TOPIC)
            .bind(payload)
            .execute(&pool)
            .await
            .unwrap();
    }

    let producer = kafka::producer(&brokers, "relay-test").unwrap();
    // What librdkafka does to an idempotent producer fenced by the broker: from here on it
    // fails every send with this error.
    let raised = producer.client().raise_fatal_error_for_test(RDKafkaRespErr::RD_KAFKA_RESP_ERR__FENCED, "the test");
    assert_eq!(raised, RDKafkaErrorCode::NoError);
    assert!(producer.client().fatal_error().is_some(), "the producer has failed for good");

    let stop = Shutdown::new();
    let relay = Relay::new(pool.clone(), producer, &brokers, &Outbox::new("test"), "relay-test-1");
    let relaying = tokio::spawn(relay.run(stop.clone()));
    assert_eq!(read(&brokers, 2), ["first", "second"], "the rows go out, in order, with a new producer");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox").fetch_one(&pool).await.unwrap();
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} rows are still in the outbox");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    stop.trigger();
    relaying.await.unwrap();
    pool.close().await;
    broker.stop();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
}
