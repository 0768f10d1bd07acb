//! The dead letters on the embedded broker: listed with why and whence, replayed once to their
//! topic by the operator, and the replay in the audit trail.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;
use shop_logging::{router, AppState, REPLAYED_FROM};
use shop_platform::auth::{Role, TestKeys};
use tower::ServiceExt;

async fn call(app: &Router, method: &str, uri: &str, authorization: &str) -> (StatusCode, Value) {
    let request = Request::builder().method(method).uri(uri).header("authorization", authorization);
    let response = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// A record as read: key, value, headers.
type Read = (Option<String>, Vec<u8>, Vec<(String, String)>);

/// The records of partition `partition` of `topic` from `from`, with their headers.
fn read(brokers: &str, topic: &str, partition: i32, from: i64) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "dead-letters-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let (_, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)).unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(from)).unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut records = Vec::new();
    while (records.len() as i64) < high - from {
        assert!(Instant::now() < deadline, "{topic}/{partition} not read to {high}");
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.unwrap();
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                        .collect()
                })
                .unwrap_or_default();
            let key = message.key().map(|k| String::from_utf8_lossy(k).into_owned());
            records.push((key, message.payload().unwrap_or_default().to_vec(), headers));
        }
    }
    records
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_is_listed_replayed_once_to_its_topic_and_audited() {
    let system = shop_testkit::System::start().await;
    let brokers = system.brokers().to_owned();
    shop_platform::kafka::create_topics(&brokers, &["orders-created.dlq".to_owned()], 1, 1).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("logging.db");
    let pool =
        shop_platform::db::open(&format!("sqlite://{}?mode=rwc", file.display()), sqlx::migrate!("./migrations"))
            .await
            .unwrap();
    let state = AppState::new(pool, &brokers, Vec::new()).unwrap();
    let keys = TestKeys::new();
    let web = keys.web(shop_logging::SERVICE, &[]);
    let app = shop_platform::http::finish(router(state.clone()), Vec::new(), Default::default(), &web);
    let operator = keys.staff(Role::Operator);

    // What the consumer loop writes when it sets a record aside.
    let order = uuid::Uuid::now_v7().to_string();
    let event = uuid::Uuid::now_v7().to_string();
    let headers = OwnedHeaders::new()
        .insert(Header { key: "event-id", value: Some(&event) })
        .insert(Header { key: "dlq-error", value: Some("expected value at line 1 column 1") })
        .insert(Header { key: "dlq-source-topic", value: Some("orders-created") })
        .insert(Header { key: "dlq-source-partition", value: Some("2") })
        .insert(Header { key: "dlq-source-offset", value: Some("41") })
        .insert(Header { key: "dlq-consumer-group", value: Some("notification-email") });
    let set_aside = FutureRecord::to("orders-created.dlq").key(&order).payload("not an event").headers(headers);
    state.producer.send(set_aside, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();

    let (status, report) = call(&app, "GET", "/api/dead-letters", &operator).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let topics = report["topics"].as_array().unwrap();
    assert_eq!(topics.len(), 11, "every topic's dead letters: {report}");
    let created = topics.iter().find(|t| t["topic"] == "orders-created.dlq").unwrap();
    assert_eq!(created["source"], "orders-created");
    assert_eq!(created["count"], 1);
    let letter = &created["records"][0];
    assert_eq!(letter["key"], order.as_str());
    assert_eq!(letter["error"], "expected value at line 1 column 1");
    assert_eq!(letter["group"], "notification-email");
    assert_eq!((letter["sourcePartition"].as_i64(), letter["sourceOffset"].as_i64()), (Some(2), Some(41)));
    assert_eq!(letter["eventId"], event.as_str());
    assert_eq!(letter["payload"], "not an event");
    assert!(letter["replayed"].is_null());
    assert!(topics.iter().filter(|t| t["topic"] != "orders-created.dlq").all(|t| t["count"] == 0), "{report}");

    let partition = letter["partition"].as_i64().unwrap();
    let offset = letter["offset"].as_i64().unwrap();
    let replay = format!("/api/dead-letters/orders-created.dlq/{partition}/{offset}/replay");
    let (status, replayed) = call(&app, "POST", &replay, &operator).await;
    assert_eq!(status, StatusCode::OK, "{replayed}");
    assert_eq!(replayed["toTopic"], "orders-created");
    let (to_partition, to_offset) = (replayed["toPartition"].as_i64().unwrap(), replayed["toOffset"].as_i64().unwrap());

    // The copy: same key, value and event id, none of the dlq headers but where it came from.
    let copy = read(&brokers, "orders-created", to_partition as i32, to_offset).remove(0);
    assert_eq!(copy.0.as_deref(), Some(order.as_str()));
    assert_eq!(copy.1, b"not an event");
    let header = |name: &str| copy.2.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(header("event-id").as_deref(), Some(event.as_str()));
    assert_eq!(header(REPLAYED_FROM), Some(format!("orders-created.dlq/{partition}/{offset}")));
    assert!(copy.2.iter().all(|(k, _)| k == REPLAYED_FROM || !k.starts_with("dlq-")), "{:?}", copy.2);

    // Once only.
    let (status, again) = call(&app, "POST", &replay, &operator).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert!(again["error"].as_str().unwrap().contains("replayed already"), "{again}");
    assert_eq!(read(&brokers, "orders-created", to_partition as i32, to_offset).len(), 1, "no second copy");

    // In the audit trail, and on the list.
    let (_, records) = call(&app, "GET", &format!("/logs?orderId={order}"), &operator).await;
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["action"], "deadLetter.replayed");
    assert!(records[0]["message"].as_str().unwrap().contains("set aside by notification-email"), "{records:?}");
    let (_, report) = call(&app, "GET", "/api/dead-letters", &operator).await;
    let listed = report["topics"].as_array().unwrap().iter().find(|t| t["topic"] == "orders-created.dlq").unwrap();
    assert_eq!(listed["records"][0]["replayed"]["toOffset"], to_offset);

    // What is not there is a 404 with a JSON error; any other role a 403.
    for uri in [
        format!("/api/dead-letters/orders-created.dlq/{partition}/{}/replay", offset + 1),
        "/api/dead-letters/orders-created/0/0/replay".to_owned(),
        "/api/dead-letters/elsewhere.dlq/0/0/replay".to_owned(),
    ] {
        let (status, body) = call(&app, "POST", &uri, &operator).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {body}");
        assert!(body["error"].is_string(), "{uri}: {body}");
    }
    let (status, _) = call(&app, "POST", &replay, &keys.staff(Role::Courier)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    system.stop().await;
}
