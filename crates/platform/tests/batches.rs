//! The consumer loop on a real (embedded) broker: records that wait together in a partition
//! reach the handler as one batch, and a batch that cannot be handled whole (an undecodable
//! record in it, or a handler failing it) is handled record by record: every good record is
//! applied once, the bad one is set aside on the dead-letter topic, the partition goes on.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::producer::FutureRecord;
use shop_events::{AuditRecorded, Event, OrderId, RawEnvelope, Topic};
use shop_platform::consumer::{self, HandleError, Handler, Incoming, Subscription};
use shop_platform::{kafka, Shutdown};

const TOPIC: Topic = Topic::LoggingEvents;
const DEADLINE: Duration = Duration::from_secs(60);
/// A record whose message starts so holds its worker a moment: the records after it queue up.
const PAUSE: &str = "pause";
/// A batch holding a record with this message fails as a whole (the record alone succeeds).
const FAILS_A_BATCH: &str = "fails a batch";
const UNDECODABLE: &[u8] = b"this is not an envelope";

#[derive(Default)]
struct Recorder {
    /// Messages applied, like an inbox: applying one again has no effect.
    applied: Mutex<HashSet<String>>,
    effects: Mutex<usize>,
    /// The size of each batch `handle_batch` got, and whether it failed it.
    batches: Mutex<Vec<(usize, bool)>>,
}

fn message(incoming: &Incoming) -> &str {
    match &incoming.event {
        Event::AuditRecorded(record) => &record.message,
        other => panic!("only audit records here, not {}", other.event_type()),
    }
}

impl Recorder {
    async fn apply(&self, incoming: &Incoming) {
        if message(incoming).starts_with(PAUSE) {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        if self.applied.lock().unwrap().insert(message(incoming).to_owned()) {
            *self.effects.lock().unwrap() += 1;
        }
    }

    fn applied(&self) -> usize {
        self.applied.lock().unwrap().len()
    }
}

struct Recording(Arc<Recorder>);

#[async_trait]
impl Handler for Recording {
    async fn handle(&self, incoming: &Incoming) -> Result<(), HandleError> {
        self.0.apply(incoming).await;
        Ok(())
    }

    async fn handle_batch(&self, batch: &[Incoming]) -> Result<(), HandleError> {
        let fails = batch.iter().any(|incoming| message(incoming) == FAILS_A_BATCH);
        self.0.batches.lock().unwrap().push((batch.len(), fails));
        for incoming in batch {
            if message(incoming) == FAILS_A_BATCH {
                return Err(HandleError::Transient("test", "this batch fails on purpose".into()));
            }
            self.0.apply(incoming).await;
        }
        Ok(())
    }
}

fn audit(message: &str) -> Vec<u8> {
    let event = Event::AuditRecorded(AuditRecorded {
        action: "test.recorded".into(),
        message: message.into(),
        instance: "test-1".into(),
    });
    serde_json::to_vec(&RawEnvelope::wrap(OrderId::new(), "test", &event)).unwrap()
}

async fn send(producer: &kafka::Producer, payloads: &[Vec<u8>]) {
    for payload in payloads {
        let record = FutureRecord::to(TOPIC.name()).key("one-partition").payload(payload);
        producer.send(record, Duration::from_secs(10)).await.map_err(|(error, _)| error).unwrap();
    }
}

async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "not within {DEADLINE:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_records_go_as_a_batch_and_a_bad_batch_goes_record_by_record() {
    let broker = support::broker_with(&[TOPIC.name()]).await;
    let brokers = broker.bootstrap_servers().to_owned();
    let producer = kafka::producer(&brokers, "test-producer").unwrap();
    let recorder = Arc::new(Recorder::default());
    let shutdown = Shutdown::new();
    let subscription = Subscription {
        brokers: brokers.clone(),
        group: "batch-test",
        topics: vec![TOPIC],
        client_id: "test-1".into(),
        waits: Default::default(),
        metrics: Default::default(),
    };
    let handler = Arc::new(Recording(recorder.clone()));
    let consuming = tokio::spawn(consumer::run(subscription, handler, producer.clone(), shutdown.clone()));

    // 1. Nine records queue behind a pause: they reach handle_batch together.
    let mut sent: Vec<String> = vec![PAUSE.into()];
    sent.extend((1..10).map(|i| format!("first {i}")));
    send(&producer, &sent.iter().map(|m| audit(m)).collect::<Vec<_>>()).await;
    until("the first ten records are applied", || recorder.applied() == 10).await;
    let batches = recorder.batches.lock().unwrap().clone();
    assert!(batches.iter().any(|(size, failed)| *size > 1 && !failed), "no whole batch was handled: {batches:?}");

    // 2. A batch the handler fails: its records are then handled one by one.
    let second: Vec<String> = [format!("{PAUSE} again"), "second 1".into(), FAILS_A_BATCH.into(), "second 3".into()]
        .into_iter()
        .chain((4..8).map(|i| format!("second {i}")))
        .collect();
    send(&producer, &second.iter().map(|m| audit(m)).collect::<Vec<_>>()).await;
    sent.extend(second);
    until("the second records are applied", || recorder.applied() == 18).await;
    assert!(recorder.batches.lock().unwrap().iter().any(|(_, failed)| *failed), "the failing batch was not tried");

    // 3. A batch with an undecodable record: the others are applied, that one is set aside.
    let third: Vec<String> =
        std::iter::once(format!("{PAUSE} a third time")).chain((1..5).map(|i| format!("third {i}"))).collect();
    let mut payloads: Vec<Vec<u8>> = third.iter().map(|m| audit(m)).collect();
    payloads.insert(2, UNDECODABLE.to_vec());
    send(&producer, &payloads).await;
    sent.extend(third);
    until("the third records are applied", || recorder.applied() == 23).await;

    assert_eq!(*recorder.applied.lock().unwrap(), sent.iter().cloned().collect::<HashSet<_>>());
    assert_eq!(*recorder.effects.lock().unwrap(), sent.len(), "each record took effect once");
    let dead = tokio::task::spawn_blocking(move || {
        support::read_from_start(&brokers, &TOPIC.dead_letter_name(), 1, DEADLINE).into_iter().next()
    })
    .await
    .unwrap();
    assert_eq!(dead.as_deref(), Some(UNDECODABLE), "the undecodable record is set aside");

    shutdown.trigger();
    consuming.await.unwrap().unwrap();
    broker.stop();
}
