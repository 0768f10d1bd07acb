//! The outbox relay on a real (embedded) broker and a real SQLite database: a producer that
//! failed for good (one of librdkafka's fatal errors, as an idempotent producer fenced by a
//! newer epoch of itself gets) is replaced, and the rows still in the outbox go out with the
//! new one instead of being retried for ever with the dead one.

mod support;

use std::time::{Duration, Instant};

use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::Producer as _;
use rdkafka::types::RDKafkaRespErr;
use shop_platform::outbox::{Outbox, Relay};
use shop_platform::{db, kafka, Shutdown};
use uuid::Uuid;

const TOPIC: &str = "relay-test";
const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn a_producer_failed_for_good_is_replaced_and_the_outbox_still_goes_out() {
    let broker = support::broker_with(&[TOPIC]).await;
    let brokers = broker.bootstrap_servers().to_owned();
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("relay.db");
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
    let relay = Relay::new(pool.clone(), producer, &brokers, &Outbox::new("test"), "relay-test-1", &Default::default());
    let relaying = tokio::spawn(relay.run(stop.clone()));
    let read = support::read_from_start(&brokers, TOPIC, 2, DEADLINE);
    assert_eq!(read, [b"first".to_vec(), b"second".to_vec()], "the rows go out, in order, with a new producer");
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
}
