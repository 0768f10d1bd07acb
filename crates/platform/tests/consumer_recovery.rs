//! The consumer loop on a real (embedded) broker: a consumer that failed for good (one of
//! librdkafka's fatal errors, as a static member fenced by a newer session of its own name
//! gets after its session timed out in a broker's outage) is replaced by a new one, and the
//! records go on being handled, instead of the loop asking the dead consumer for ever while
//! the group stays empty.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::consumer::Consumer as _;
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaRespErr;
use shop_events::{AuditRecorded, Event, OrderId, RawEnvelope, Topic};
use shop_platform::consumer::{self, HandleError, Handler, Incoming, Subscription};
use shop_platform::{kafka, Shutdown};

const TOPIC: Topic = Topic::LoggingEvents;
const DEADLINE: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

#[async_trait]
impl Handler for Seen {
    async fn handle(&self, incoming: &Incoming) -> Result<(), HandleError> {
        if let Event::AuditRecorded(record) = &incoming.event {
            let mut seen = self.0.lock().unwrap();
            if !seen.contains(&record.message) {
                seen.push(record.message.clone());
            }
        }
        Ok(())
    }
}

async fn send(producer: &kafka::Producer, message: &str) {
    let event = Event::AuditRecorded(AuditRecorded {
        action: "test.recorded".into(),
        message: message.into(),
        instance: "test-1".into(),
    });
    let payload = serde_json::to_vec(&RawEnvelope::wrap(OrderId::new(), "test", &event)).unwrap();
    let record = FutureRecord::to(TOPIC.name()).key("k").payload(&payload);
    producer.send(record, Duration::from_secs(10)).await.map_err(|(error, _)| error).unwrap();
}

/// Waits until `count` records were handled.
async fn until(seen: &Seen, made: &Mutex<Vec<Arc<kafka::GroupConsumer>>>, count: usize) {
    let deadline = Instant::now() + DEADLINE;
    while seen.0.lock().unwrap().len() < count {
        let consumers = made.lock().unwrap().len();
        assert!(Instant::now() < deadline, "only {:?} handled, with {consumers} consumers", seen.0.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_failed_for_good_is_replaced_and_the_records_are_still_handled() {
    let broker = support::broker_with(&[TOPIC.name()]).await;
    let brokers = broker.bootstrap_servers().to_owned();
    let producer = kafka::producer(&brokers, "test-producer").unwrap();
    send(&producer, "before").await;

    let seen = Arc::new(Seen::default());
    let made: Arc<Mutex<Vec<Arc<kafka::GroupConsumer>>>> = Arc::default();
    let subscription = Subscription {
        brokers: brokers.clone(),
        group: "recovery-test",
        topics: vec![TOPIC],
        client_id: "test-1".into(),
        waits: Default::default(),
        metrics: Default::default(),
    };
    let consumers = made.clone();
    let make = move |s: &Subscription| {
        let consumer = Arc::new(kafka::consumer(&s.brokers, &s.client_id, s.group)?);
        consumers.lock().unwrap().push(consumer.clone());
        Ok(consumer)
    };
    let shutdown = Shutdown::new();
    let consuming =
        tokio::spawn(consumer::run_with(subscription, seen.clone(), producer.clone(), shutdown.clone(), make));
    until(&seen, &made, 1).await;

    // The consumer fails for good while it runs, as librdkafka fails a fenced static member.
    let first = made.lock().unwrap()[0].clone();
    first.client().raise_fatal_error_for_test(RDKafkaRespErr::RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID, "the test");
    assert!(first.client().fatal_error().is_some(), "the first consumer has failed for good");
    send(&producer, "after").await;
    until(&seen, &made, 2).await;
    assert_eq!(*seen.0.lock().unwrap(), ["before", "after"]);
    assert_eq!(made.lock().unwrap().len(), 2, "one consumer failed for good, its replacement consumed");

    shutdown.trigger();
    consuming.await.unwrap().unwrap();
    broker.stop();
}
