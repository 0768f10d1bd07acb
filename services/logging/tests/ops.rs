//! The operations routes, through the router with `oneshot` and a fresh SQLite file per test.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use futures::StreamExt;
use shop_logging::{router, AppState, LogRecord};
use tower::ServiceExt;

async fn state(brokers: &str) -> AppState {
    let file = std::env::temp_dir().join(format!("shop-logging-test-{}.db", uuid::Uuid::new_v4()));
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let pool = shop_platform::db::open(&url, sqlx::migrate!("./migrations")).await.expect("the database opens");
    AppState::new(pool, brokers)
}

fn record(order_id: uuid::Uuid, action: &str) -> LogRecord {
    LogRecord {
        event_id: uuid::Uuid::now_v7().to_string(),
        order_id: order_id.to_string(),
        source: "order".into(),
        instance: "order-1".into(),
        action: action.into(),
        message: format!("{action} happened"),
        occurred_at: "2026-01-01T00:00:00.000Z".into(),
    }
}

async fn store(state: &AppState, record: &LogRecord) {
    sqlx::query(
        "INSERT INTO audit_log (event_id, order_id, source, instance, action, message, occurred_at, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&record.event_id)
    .bind(&record.order_id)
    .bind(&record.source)
    .bind(&record.instance)
    .bind(&record.action)
    .bind(&record.message)
    .bind(0_i64)
    .bind(0_i64)
    .execute(&state.pool)
    .await
    .unwrap();
}

async fn get(app: &Router, uri: &str) -> axum::response::Response {
    app.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap()
}

/// Reads the event stream into `received` until it contains `needle`.
async fn read_until(
    body: &mut (impl futures::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin),
    received: &mut String,
    needle: &str,
) {
    let arrived = tokio::time::timeout(Duration::from_secs(5), async {
        while !received.contains(needle) {
            let chunk = body.next().await.expect("the stream stays open").unwrap();
            received.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await;
    assert!(arrived.is_ok(), "{needle} did not arrive; got {received}");
}

#[tokio::test]
async fn the_operations_page_is_served_from_the_binary() {
    let app = router(state("127.0.0.1:1").await);
    let response = get(&app, "/").await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let page = String::from_utf8(page.to_vec()).unwrap();
    assert!(page.contains("/logs/stream") && page.contains("/api/lag"));
}

#[tokio::test]
async fn an_order_stream_sends_its_stored_records_then_each_new_one_once() {
    let state = state("127.0.0.1:1").await;
    let app = router(state.clone());
    let (order, other) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let created = record(order, "order.created");
    store(&state, &created).await;

    let response = get(&app, &format!("/logs/stream?orderId={order}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body().into_data_stream();
    let mut received = String::new();
    read_until(&mut body, &mut received, &created.event_id).await;

    let paid = record(order, "payment.made");
    state.arrivals.send(created.clone()).unwrap();
    state.arrivals.send(record(other, "order.created")).unwrap();
    state.arrivals.send(paid.clone()).unwrap();
    read_until(&mut body, &mut received, &paid.event_id).await;

    assert_eq!(received.matches("event: record").count(), 2, "{received}");
    assert!(!received.contains(&other.to_string()), "another order's record leaked: {received}");
}

#[tokio::test]
async fn a_stream_of_a_malformed_order_id_is_a_json_400() {
    let app = router(state("127.0.0.1:1").await);
    let response = get(&app, "/logs/stream?orderId=not-an-id").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()["content-type"], "application/json");
}

#[tokio::test]
async fn lag_is_a_503_naming_kafka_when_no_broker_answers() {
    let app = router(state("127.0.0.1:1").await);
    let started = Instant::now();
    let response = get(&app, "/api/lag").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(body["error"].as_str().unwrap().contains("Kafka"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(10), "it gives up in bounded time");
}
