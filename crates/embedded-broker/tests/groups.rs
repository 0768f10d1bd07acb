//! The embedded broker coordinates consumer groups as Kafka does (crates/embedded-broker
//! src/groups.rs): members share a topic's partitions, a static member that stops
//! heartbeating is expired after its session timeout and its partitions go to the others, and
//! groups are described (state, assignor, each member's client id, host and assignment),
//! listed with their state, and deleted only when empty. Checked with librdkafka, the client
//! the services use; .ci/kafka-tools checks the same with Kafka's own command-line tools.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::groups::GroupInfo;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use shop_embedded_broker::{EmbeddedBroker, Retention, Storage};

#[macro_use]
mod support;

const TOPIC: &str = "shared";
const PARTITIONS: i32 = 4;
const DEADLINE: Duration = Duration::from_secs(60);

async fn broker() -> EmbeddedBroker {
    broker_on(&Storage::Memory).await
}

async fn broker_on(storage: &Storage) -> EmbeddedBroker {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let broker = EmbeddedBroker::start("127.0.0.1", "127.0.0.1", port, storage, &Retention::default()).await.unwrap();
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1));
    admin(broker.bootstrap_servers()).create_topics([&topic], &AdminOptions::new()).await.unwrap();
    broker
}

fn admin(brokers: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap()
}

/// A consumer of the topic in `group`, as the services make them: a static member when
/// `instance` is given, round-robin assignment, the shortest session Kafka allows.
fn member(brokers: &str, group: &str, instance: Option<&str>) -> StreamConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("client.id", instance.unwrap_or("dynamic"))
        .set("partition.assignment.strategy", "roundrobin")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("enable.auto.commit", "false");
    if let Some(instance) = instance {
        config.set("group.instance.id", instance);
    }
    let consumer: StreamConsumer = config.create().unwrap();
    consumer.subscribe(&[TOPIC]).unwrap();
    consumer
}

/// Polls the consumers (so that they heartbeat and take part in rebalances) until `done`
/// holds for their assignments' sizes, or panics at the deadline.
async fn poll_until(consumers: &[&StreamConsumer], what: &str, done: impl Fn(&[usize]) -> bool) {
    let until = Instant::now() + DEADLINE;
    loop {
        for consumer in consumers {
            let _ = tokio::time::timeout(Duration::from_millis(20), consumer.recv()).await;
        }
        let sizes: Vec<usize> = consumers.iter().map(|c| c.assignment().map_or(0, |a| a.count())).collect();
        if done(&sizes) {
            return;
        }
        assert!(Instant::now() < until, "{what}: assignments still {sizes:?}");
    }
}

/// A member as described: member id, client id, host and the size of its assignment.
type Described = (String, String, String, usize);

/// The group as the broker describes it (librdkafka's ListGroups + DescribeGroups): state,
/// assignor and members.
fn describe(consumer: &StreamConsumer, group: &str) -> (String, String, Vec<Described>) {
    let list = consumer.fetch_group_list(Some(group), Duration::from_secs(10)).unwrap();
    let info: &GroupInfo = list.groups().iter().find(|g| g.name() == group).expect("the group is described");
    let members = info
        .members()
        .iter()
        .map(|m| {
            (
                m.id().to_owned(),
                m.client_id().to_owned(),
                m.client_host().to_owned(),
                m.assignment().map_or(0, <[u8]>::len),
            )
        })
        .collect();
    (info.state().to_owned(), info.protocol().to_owned(), members)
}

#[tokio::test(flavor = "multi_thread")]
async fn static_members_share_the_partitions_and_are_described_with_their_hosts() {
    let broker = broker().await;
    let brokers = broker.bootstrap_servers();
    let a = member(brokers, "pair", Some("pair-a"));
    let b = member(brokers, "pair", Some("pair-b"));
    poll_until(&[&a, &b], "both members get half of the partitions", |sizes| sizes == [2, 2]).await;

    let (state, protocol, members) = describe(&a, "pair");
    assert_eq!(state, "Stable");
    assert_eq!(protocol, "roundrobin");
    assert_eq!(members.len(), 2, "{members:?}");
    let mut clients: Vec<&str> = members.iter().map(|(_, client, _, _)| client.as_str()).collect();
    clients.sort();
    assert_eq!(clients, ["pair-a", "pair-b"]);
    for (id, _, host, assignment) in &members {
        assert!(
            id.starts_with("pair-a-") || id.starts_with("pair-b-"),
            "a static member's id names its instance: {id}"
        );
        assert_eq!(host, "/127.0.0.1", "the member's host, as Kafka shows it");
        assert!(*assignment > 0, "a stable group's members are described with their assignment");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_static_member_that_stops_heartbeating_is_expired_and_its_partitions_move() {
    let broker = broker().await;
    let brokers = broker.bootstrap_servers();
    let a = member(brokers, "stall", Some("stall-a"));
    let b = member(brokers, "stall", Some("stall-b"));
    poll_until(&[&a, &b], "both members get half of the partitions", |sizes| sizes == [2, 2]).await;

    // A static member leaves no word when it goes (KIP-345): only its session ends it.
    drop(a);
    poll_until(&[&b], "the remaining member gets every partition", |sizes| sizes == [PARTITIONS as usize]).await;
    let (state, _, members) = describe(&b, "stall");
    assert_eq!(state, "Stable");
    assert_eq!(members.len(), 1, "the silent member was removed: {members:?}");
    assert_eq!(members[0].1, "stall-b");
}

on_each_storage!(groups_are_listed_with_their_state_and_deleted_only_when_empty);

async fn groups_are_listed_with_their_state_and_deleted_only_when_empty(storage: Storage) {
    let broker = broker_on(&storage).await;
    let brokers = broker.bootstrap_servers();
    let consumer = member(brokers, "short-lived", None);
    poll_until(&[&consumer], "the member gets every partition", |sizes| sizes == [PARTITIONS as usize]).await;
    // Committed offsets: what the storage knows the group by, and deletes with it.
    let mut offsets = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        offsets.add_partition_offset(TOPIC, partition, Offset::Offset(0)).unwrap();
    }
    consumer.commit(&offsets, CommitMode::Sync).unwrap();

    let options = AdminOptions::new();
    let deleted = admin(brokers).delete_groups(&["short-lived"], &options).await.unwrap();
    assert!(
        matches!(deleted[0], Err((_, RDKafkaErrorCode::NonEmptyGroup))),
        "a group with members is not deleted: {deleted:?}"
    );

    let observer = member(brokers, "observer", None);
    poll_until(&[&observer], "the observer gets every partition", |sizes| sizes == [PARTITIONS as usize]).await;
    let listed = observer.fetch_group_list(None, Duration::from_secs(10)).unwrap();
    let mut listed: Vec<(&str, &str)> = listed.groups().iter().map(|g| (g.name(), g.state())).collect();
    listed.sort();
    assert_eq!(listed, [("observer", "Stable"), ("short-lived", "Stable")], "groups are listed with their state");

    // A dynamic member leaves the group when it closes: the group is then Empty.
    drop(consumer);
    let until = Instant::now() + DEADLINE;
    loop {
        let (state, _, members) = describe(&observer, "short-lived");
        if state == "Empty" {
            assert!(members.is_empty());
            break;
        }
        assert!(Instant::now() < until, "the group never became empty: {state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deleted = admin(brokers).delete_groups(&["short-lived"], &options).await.unwrap();
    assert!(deleted[0].is_ok(), "an empty group is deleted: {deleted:?}");
    let listed = observer.fetch_group_list(None, Duration::from_secs(10)).unwrap();
    let listed: Vec<(&str, &str)> = listed.groups().iter().map(|g| (g.name(), g.state())).collect();
    assert!(!listed.iter().any(|(name, _)| *name == "short-lived"), "a deleted group is gone: {listed:?}");

    let deleted = admin(brokers).delete_groups(&["never-was"], &options).await.unwrap();
    assert!(matches!(deleted[0], Err((_, RDKafkaErrorCode::GroupIdNotFound))), "{deleted:?}");
}
