//! The embedded broker serves fetches and offsets as a Kafka broker would where tansu 0.6
//! needed a patch (vendor/README.md): a group resuming at an offset inside a producer's batch
//! gets the rest of that batch, and each later batch once; the high watermark is the offset
//! after the last record; a topic deleted and created again starts empty (the broker keeps
//! each partition's watermark in memory, not in its store). On disk, records, watermarks and
//! committed offsets outlive the broker (offsets in one log, a commit cut short at its end cut
//! off, the log rewritten once long, an offset committed as a file by an earlier version still
//! read), and a batch whose offsets were taken but which was never stored (the process killed
//! in between) neither stops a consumer nor is reused.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use shop_embedded_broker::{EmbeddedBroker, Retention, Storage};

#[macro_use]
mod support;

on_each_storage!(
    a_waiting_fetch_is_answered_as_soon_as_a_record_is_stored,
    retention_by_size_and_by_age_moves_the_log_start_and_drops_the_batches,
    a_group_resuming_inside_a_batch_gets_the_rest_of_it,
    a_topic_deleted_and_created_again_starts_empty,
    a_time_after_every_record_finds_no_offset_rather_than_the_first,
);

const TOPIC: &str = "batches";
const DEADLINE: Duration = Duration::from_secs(30);

/// A broker on `storage` with the test topic created.
async fn broker(storage: &Storage) -> EmbeddedBroker {
    let broker = start_broker(storage).await;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", broker.bootstrap_servers()).create().unwrap();
    let topic = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(1));
    admin.create_topics([&topic], &AdminOptions::new()).await.unwrap();
    broker
}

/// Sends `values` so that the producer puts them in one batch (one request, long linger).
async fn send_one_batch(brokers: &str, values: &[String]) {
    send_one_batch_to(brokers, TOPIC, values).await
}

async fn send_one_batch_to(brokers: &str, topic: &str, values: &[String]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "200")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let sends: Vec<_> = values
        .iter()
        .map(|value| producer.send_result(FutureRecord::to(topic).key("k").payload(value)).unwrap())
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
            // A dropped connection is the client's to mend (it reconnects and fetches again from
            // where it was); what it then reads is still checked, and the deadline still holds.
            Ok(Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown,
            ))) => eprintln!("consumer: a connection to the broker dropped; the client reconnects"),
            Ok(Err(error)) => panic!("consumer error: {error}"),
            Err(_) => break,
        }
    }
    read
}

/// The partition's low and high watermarks, asked again while the client's metadata does not
/// know the partition yet (just after the topic was created again), until the deadline.
async fn watermarks(consumer: &StreamConsumer) -> (i64, i64) {
    watermarks_of(consumer, TOPIC).await
}

async fn watermarks_of(consumer: &StreamConsumer, topic: &str) -> (i64, i64) {
    let until = Instant::now() + DEADLINE;
    loop {
        match consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)) {
            Ok(watermarks) => return watermarks,
            Err(error) if Instant::now() < until => {
                eprintln!("watermarks not known yet ({error}); asking again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("no watermarks of {topic}/0 within {DEADLINE:?}: {error}"),
        }
    }
}

async fn a_group_resuming_inside_a_batch_gets_the_rest_of_it(storage: Storage) {
    let broker = broker(&storage).await;
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
    stop(broker, [second]);
}

async fn a_topic_deleted_and_created_again_starts_empty(storage: Storage) {
    let broker = broker(&storage).await;
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
    stop(broker, [watcher, fresh]);
}

async fn a_waiting_fetch_is_answered_as_soon_as_a_record_is_stored(storage: Storage) {
    let broker = broker(&storage).await;
    let brokers = broker.bootstrap_servers().to_owned();
    // Each fetch may wait five minutes for records: only an answer as soon as one is stored
    // brings it within the test's deadline (tansu held every fetch for half its wait at least).
    let long_wait = |topic: &str| -> StreamConsumer {
        let reader: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", format!("long-wait-{topic}"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "300000")
            .create()
            .unwrap();
        reader.subscribe(&[topic]).unwrap();
        reader
    };
    let reader = long_wait(TOPIC);
    // After the first record, the reader's next fetch finds nothing and waits.
    for round in 0..3 {
        let value = format!("round {round}");
        send_one_batch(&brokers, std::slice::from_ref(&value)).await;
        assert_eq!(read(&reader, 1).await, vec![(round, value)], "each record comes while the fetch waits");
    }

    // A fetch of several partitions waits on each of them: a record on any answers it.
    const OTHER: &str = "three-partitions";
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    admin.create_topics([&NewTopic::new(OTHER, 3, TopicReplication::Fixed(1))], &AdminOptions::new()).await.unwrap();
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let send_to = async |partition: i32, value: &str| {
        let record = FutureRecord::to(OTHER).partition(partition).key("k").payload(value);
        producer.send(record, Duration::from_secs(10)).await.unwrap();
    };
    let other = long_wait(OTHER);
    // First a record from every partition, so that every one is being fetched: a partition
    // the consumer starts on after its first fetch went out is left out of that fetch, which
    // then waits its five minutes, until a record on a partition in it ends the wait. So a
    // record to every partition, again, until one of each has come back.
    let mut started = std::collections::BTreeSet::new();
    let until = Instant::now() + DEADLINE;
    while started.len() < 3 {
        assert!(Instant::now() < until, "records came back from partitions {started:?} only");
        for partition in 0..3 {
            send_to(partition, &format!("start {partition}")).await;
        }
        while let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(1), other.recv()).await {
            _ = started.insert(message.partition());
        }
    }
    for partition in [2, 0, 1] {
        let value = format!("partition {partition}");
        send_to(partition, &value).await;
        let values: Vec<String> = read(&other, 1).await.into_iter().map(|(_, value)| value).collect();
        assert_eq!(values, vec![value], "a record on any partition comes while the fetch waits");
    }
    stop(broker, [reader, other]);
}

async fn a_time_after_every_record_finds_no_offset_rather_than_the_first(storage: Storage) {
    let broker = broker(&storage).await;
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
    stop(broker, [consumer]);
}

fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The batches of partition 0 of the test topic as the broker keeps them on disk: appended to
/// segment files, each batch framed by its base offset (8 bytes) and its length (4 bytes).
/// Oldest first, with the segment each is in.
fn stored_batches(folder: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let segments = folder.join(format!("clusters/shop/topics/{TOPIC}/partitions/0000000000/segments"));
    let mut files: Vec<_> = std::fs::read_dir(segments).unwrap().map(|entry| entry.unwrap().path()).collect();
    files.sort();
    let mut batches = vec![];
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        let mut at = 0;
        while at < bytes.len() {
            let len = u32::from_be_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
            batches.push((file.clone(), bytes[at..at + 12 + len].to_vec()));
            at += 12 + len;
        }
    }
    batches
}

/// Closes the consumers, then stops the broker. In that order: a consumer closing after its
/// broker went can wait for ever (its group's rebalance callback asks the client's own
/// thread, which waits for the broker).
fn stop<const N: usize>(broker: EmbeddedBroker, consumers: [StreamConsumer; N]) {
    drop(consumers);
    broker.stop();
}

/// A broker on `storage`, e.g. again on the folder of one stopped before.
async fn start_broker(storage: &Storage) -> EmbeddedBroker {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    EmbeddedBroker::start("127.0.0.1", "127.0.0.1", port, storage, &Retention::default()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn on_disk_records_and_committed_offsets_outlive_the_broker() {
    let folder = tempfile::tempdir().unwrap();
    let storage = Storage::Disk(folder.path().to_owned());
    let broker = broker(&storage).await;
    let first: Vec<String> = (0..3).map(|i| format!("first {i}")).collect();
    let second: Vec<String> = (3..5).map(|i| format!("second {i}")).collect();
    send_one_batch(broker.bootstrap_servers(), &first).await;
    send_one_batch(broker.bootstrap_servers(), &second).await;
    let reader = consumer(broker.bootstrap_servers(), "survivor");
    assert_eq!(read(&reader, 4).await.len(), 4);
    let mut resume_at = TopicPartitionList::new();
    resume_at.add_partition_offset(TOPIC, 0, Offset::Offset(4)).unwrap();
    reader.commit(&resume_at, CommitMode::Sync).unwrap();
    drop(reader);
    broker.stop();

    let broker = start_broker(&storage).await;
    let brokers = broker.bootstrap_servers().to_owned();
    let fresh = consumer(&brokers, "fresh");
    assert_eq!(watermarks(&fresh).await, (0, 5), "the five records are there again");
    let all: Vec<(i64, String)> =
        first.iter().chain(&second).cloned().enumerate().map(|(i, v)| (i as i64, v)).collect();
    assert_eq!(read(&fresh, 5).await, all);
    let resumed = consumer(&brokers, "survivor");
    assert_eq!(read(&resumed, 1).await, vec![(4, "second 4".to_owned())], "the group resumes at its committed offset");
    send_one_batch(&brokers, &["after".to_owned()]).await;
    assert_eq!(read(&resumed, 1).await, vec![(5, "after".to_owned())], "new records follow the old ones");
    stop(broker, [fresh, resumed]);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_disk_offsets_taken_but_never_stored_are_passed_over_and_not_reused() {
    let folder = tempfile::tempdir().unwrap();
    let storage = Storage::Disk(folder.path().to_owned());
    let broker = broker(&storage).await;
    for batch in 0..4 {
        send_one_batch(broker.bootstrap_servers(), &[format!("{batch}a"), format!("{batch}b")]).await;
    }
    broker.stop();
    // As if the broker had been killed after taking the offsets of batches 1 and 3 and before
    // storing them (their producers were never answered), and the machine had stopped while
    // batch 3 was half written.
    let batches = stored_batches(folder.path());
    assert_eq!(batches.len(), 4);
    let (segment, _) = &batches[0];
    assert!(batches.iter().all(|(other, _)| other == segment), "four small batches, one segment");
    let kept = [&batches[0].1[..], &batches[2].1[..], &batches[3].1[..batches[3].1.len() / 2]].concat();
    std::fs::write(segment, kept).unwrap();

    let broker = start_broker(&storage).await;
    let brokers = broker.bootstrap_servers().to_owned();
    let reader = consumer(&brokers, "over-the-hole");
    assert_eq!(watermarks(&reader).await, (0, 6), "the end comes back to the last batch stored");
    send_one_batch(&brokers, &["after".to_owned()]).await;
    let expected: Vec<(i64, String)> =
        vec![(0, "0a".into()), (1, "0b".into()), (4, "2a".into()), (5, "2b".into()), (6, "after".into())];
    assert_eq!(read(&reader, 5).await, expected, "the hole at 2..4 is passed over; offset 6 is taken afresh");
    let batches = stored_batches(folder.path());
    assert_eq!(batches.len(), 3, "the half-written batch is cut off, the new one follows");
    stop(broker, [reader]);
}

/// The offsets' log: the broker keeps consumer groups' committed offsets appended to one file,
/// `offsets.log` in its folder, as a Kafka broker appends them to `__consumer_offsets`.
fn offsets_log(folder: &std::path::Path) -> std::path::PathBuf {
    folder.join("offsets.log")
}

/// Offset files under `folder` (what a commit made before the offsets' log).
fn offset_files(folder: &std::path::Path) -> Vec<std::path::PathBuf> {
    let groups = folder.join("clusters/shop/groups/consumers");
    let Ok(entries) = std::fs::read_dir(&groups) else { return vec![] };
    let mut files = vec![];
    for group in entries {
        let offsets = group.unwrap().path().join("offsets");
        for topic in std::fs::read_dir(offsets).into_iter().flatten() {
            let partitions = topic.unwrap().path().join("partitions");
            files.extend(std::fs::read_dir(partitions).into_iter().flatten().map(|file| file.unwrap().path()));
        }
    }
    files
}

fn commit(consumer: &StreamConsumer, offset: i64) {
    let mut at = TopicPartitionList::new();
    at.add_partition_offset(TOPIC, 0, Offset::Offset(offset)).unwrap();
    consumer.commit(&at, CommitMode::Sync).unwrap();
}

/// A broker on a new folder, its test topic holding `count` records (`record {i}`).
async fn on_disk_with_records(count: usize) -> (tempfile::TempDir, Storage, EmbeddedBroker) {
    let folder = tempfile::tempdir().unwrap();
    let storage = Storage::Disk(folder.path().to_owned());
    let broker = broker(&storage).await;
    let values: Vec<String> = (0..count).map(|i| format!("record {i}")).collect();
    send_one_batch(broker.bootstrap_servers(), &values).await;
    (folder, storage, broker)
}

/// A broker started again on `storage`: `group` resumes at `offset` (`why` not), then commits
/// `then` (if some) and the broker stops.
async fn resumes_at(storage: &Storage, group: &str, offset: i64, why: &str, then: Option<i64>) {
    let broker = start_broker(storage).await;
    let resumed = consumer(broker.bootstrap_servers(), group);
    assert_eq!(read(&resumed, 1).await, vec![(offset, format!("record {offset}"))], "{why}");
    if let Some(then) = then {
        commit(&resumed, then);
    }
    stop(broker, [resumed]);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_disk_commits_go_to_one_log_and_one_cut_short_at_its_end_is_cut_off() {
    let (folder, storage, broker) = on_disk_with_records(5).await;
    let reader = consumer(broker.bootstrap_servers(), "torn");
    assert_eq!(read(&reader, 5).await.len(), 5);
    commit(&reader, 2);
    let whole = std::fs::metadata(offsets_log(folder.path())).unwrap().len();
    commit(&reader, 4);
    stop(broker, [reader]);
    assert!(offset_files(folder.path()).is_empty(), "no file per commit: {:?}", offset_files(folder.path()));
    // As if the machine had stopped while the second commit was half written.
    let log = std::fs::OpenOptions::new().write(true).open(offsets_log(folder.path())).unwrap();
    let length = log.metadata().unwrap().len();
    assert!(length > whole, "the second commit was appended");
    log.set_len(whole + (length - whole) / 2).unwrap();

    resumes_at(&storage, "torn", 2, "the commit before the torn one stands", Some(3)).await;
    let length = std::fs::metadata(offsets_log(folder.path())).unwrap().len();
    assert!(length > whole, "the torn commit was cut off and the next one appended after it");
    resumes_at(&storage, "torn", 3, "the next commit follows the cut", None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_disk_the_offsets_log_is_rewritten_with_the_last_commits_once_long() {
    let (folder, storage, broker) = on_disk_with_records(10).await;
    let reader = consumer(broker.bootstrap_servers(), "many-commits");
    assert_eq!(read(&reader, 10).await.len(), 10);
    // Each commit is about 150 bytes in the log: past the 1 MiB from which it is rewritten.
    let mut longest = 0;
    for i in 0..9_000 {
        commit(&reader, i % 10);
        if i % 100 == 0 {
            longest = longest.max(std::fs::metadata(offsets_log(folder.path())).unwrap().len());
        }
    }
    commit(&reader, 7);
    stop(broker, [reader]);
    let length = std::fs::metadata(offsets_log(folder.path())).unwrap().len();
    assert!(longest < 1024 * 1024 + 64 * 1024, "the log grew to {longest} bytes");
    assert!(length < longest, "rewritten: {length} bytes at the end, {longest} at most");
    resumes_at(&storage, "many-commits", 7, "the last commit stands", None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_disk_an_offset_committed_as_a_file_before_the_log_is_read_until_committed_again() {
    let (folder, storage, broker) = on_disk_with_records(5).await;
    broker.stop();
    // What a broker before the offsets' log left for group `earlier`: offset 3 as a file.
    let partitions = folder.path().join(format!("clusters/shop/groups/consumers/earlier/offsets/{TOPIC}/partitions"));
    std::fs::create_dir_all(&partitions).unwrap();
    std::fs::write(
        partitions.join("0000000000.json"),
        r#"{"offset":3,"leader_epoch":null,"timestamp":null,"metadata":""}"#,
    )
    .unwrap();
    resumes_at(&storage, "earlier", 3, "the file's offset is read", Some(4)).await;
    resumes_at(&storage, "earlier", 4, "the commit in the log replaces it", None).await;
}

/// A topic's own `retention.bytes` and `retention.ms` are enforced (within the broker's
/// maintenance interval), as a Kafka broker's log cleaner does: the log start moves past the
/// batches dropped and a reader from the earliest offset gets only what is kept; a topic under
/// the broker's default retention keeps everything.
async fn retention_by_size_and_by_age_moves_the_log_start_and_drops_the_batches(storage: Storage) {
    let broker = broker(&storage).await;
    let brokers = broker.bootstrap_servers().to_owned();
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let by_size = NewTopic::new("by-size", 1, TopicReplication::Fixed(1)).set("retention.bytes", "1");
    let by_age = NewTopic::new("by-age", 1, TopicReplication::Fixed(1)).set("retention.ms", "1000");
    let created = admin.create_topics([&by_size, &by_age], &AdminOptions::new()).await.unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    for topic in [TOPIC, "by-size", "by-age"] {
        for batch in 0..3 {
            send_one_batch_to(&brokers, topic, &[format!("{batch}a"), format!("{batch}b")]).await;
        }
    }
    let watcher = consumer(&brokers, "retention");
    for topic in ["by-size", "by-age"] {
        let until = Instant::now() + DEADLINE;
        loop {
            let (low, high) = watermarks_of(&watcher, topic).await;
            assert_eq!(high, 6, "{topic}: retention never moves the end");
            if low == high {
                break;
            }
            assert!(Instant::now() < until, "{topic}: the log start is still {low} after {DEADLINE:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(watermarks(&watcher).await, (0, 6), "the default retention (a day, 64 MiB) keeps all");
    if let Storage::Disk(folder) = &storage {
        let partition = folder.join("clusters/shop/topics/by-size/partitions/0000000000");
        let files = |below: &str| std::fs::read_dir(partition.join(below)).map_or(0, |found| found.count());
        assert_eq!(files("segments"), 0, "the batches' segment is deleted with its last batch");
        assert_eq!(files("records"), 0, "no file per batch");
    }
    // New records after retention are kept (the newest is no older than a second).
    send_one_batch_to(&brokers, "by-age", &["fresh".to_owned()]).await;
    assert_eq!(watermarks_of(&watcher, "by-age").await, (6, 7));
    stop(broker, [watcher]);
}
