//! The operations routes, through the finished router with `oneshot`, a fresh SQLite file and
//! fresh keys per test: for the operator only.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use futures::StreamExt;
use shop_logging::{router, AppState, LogRecord};
use shop_platform::auth::{Role, TestKeys};
use tower::ServiceExt;

/// The state on a fresh SQLite file in a folder removed when the returned guard is dropped.
async fn state(brokers: &str) -> (AppState, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", data.path().join("logging.db").display());
    let pool = shop_platform::db::open(&url, sqlx::migrate!("./migrations")).await.expect("the database opens");
    (AppState::new(pool, brokers, Vec::new()).expect("the state is made"), data)
}

fn record(order_id: uuid::Uuid, action: &str) -> LogRecord {
    LogRecord {
        event_id: uuid::Uuid::now_v7(),
        order_id: shop_events::OrderId(order_id),
        source: "order".into(),
        instance: "order-1".into(),
        action: action.into(),
        message: format!("{action} happened"),
        occurred_at: "2026-01-01T00:00:00.000Z".into(),
        trace_id: None,
    }
}

async fn store(state: &AppState, record: &LogRecord) {
    sqlx::query(
        "INSERT INTO audit_log (event_id, order_id, source, instance, action, message, occurred_at, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(record.event_id.to_string())
    .bind(record.order_id.to_string())
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

/// The service's router as it serves, with the keys its callers' tokens are signed with.
fn app(state: AppState) -> (Router, TestKeys) {
    let keys = TestKeys::new();
    let web = keys.web(shop_logging::SERVICE, &[]);
    (shop_platform::http::finish(router(state), Vec::new(), Default::default(), &web), keys)
}

/// A GET as `authorization` (None: anonymous).
async fn get_as(app: &Router, uri: &str, authorization: Option<&str>) -> axum::response::Response {
    let mut request = Request::get(uri);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
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
    let (state, _data) = state("127.0.0.1:1").await;
    let (app, _keys) = app(state);
    let response = get_as(&app, "/", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    assert!(String::from_utf8(page.to_vec()).unwrap().contains("/assets/ops.js"));
    let script =
        axum::body::to_bytes(get_as(&app, "/assets/ops.js", None).await.into_body(), usize::MAX).await.unwrap();
    let script = String::from_utf8(script.to_vec()).unwrap();
    assert!(script.contains("/logs/stream") && script.contains("/api/lag") && script.contains("/api/services"));
}

#[tokio::test]
async fn the_audit_trail_and_the_lag_are_for_the_operator_only() {
    let (state, _data) = state("127.0.0.1:1").await;
    let (app, keys) = app(state);
    for uri in ["/logs", "/logs/stream", "/api/lag", "/api/services"] {
        assert_eq!(get_as(&app, uri, None).await.status(), StatusCode::UNAUTHORIZED, "{uri} anonymous");
        let courier = keys.staff(Role::Courier);
        assert_eq!(get_as(&app, uri, Some(&courier)).await.status(), StatusCode::FORBIDDEN, "{uri} as the courier");
        let customer = keys.customer("ada@example.com");
        assert_eq!(get_as(&app, uri, Some(&customer)).await.status(), StatusCode::FORBIDDEN, "{uri} as a customer");
    }
    let operator = keys.staff(Role::Operator);
    assert_eq!(get_as(&app, "/logs", Some(&operator)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_order_stream_sends_its_stored_records_then_each_new_one_once() {
    let (state, _data) = state("127.0.0.1:1").await;
    let (app, keys) = app(state.clone());
    let operator = keys.staff(Role::Operator);
    let (order, other) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let created = record(order, "order.created");
    store(&state, &created).await;

    let response = get_as(&app, &format!("/logs/stream?orderId={order}"), Some(&operator)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body().into_data_stream();
    let mut received = String::new();
    read_until(&mut body, &mut received, &created.event_id.to_string()).await;

    let paid = record(order, "payment.made");
    state.arrivals.send(created.clone()).unwrap();
    state.arrivals.send(record(other, "order.created")).unwrap();
    state.arrivals.send(paid.clone()).unwrap();
    read_until(&mut body, &mut received, &paid.event_id.to_string()).await;

    assert_eq!(received.matches("event: record").count(), 2, "{received}");
    assert!(!received.contains(&other.to_string()), "another order's record leaked: {received}");
}

#[tokio::test]
async fn a_stream_of_a_malformed_order_id_is_a_json_400() {
    let (state, _data) = state("127.0.0.1:1").await;
    let (app, keys) = app(state);
    let response = get_as(&app, "/logs/stream?orderId=not-an-id", Some(&keys.staff(Role::Operator))).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()["content-type"], "application/json");
}

/// The path parameters of the order view and of a replay are read by the service's own
/// extractor: a malformed one is a JSON 400, as the OpenAPI description says (axum's own `Path`
/// answered it in plain text).
#[tokio::test]
async fn malformed_path_parameters_are_json_400s() {
    let (state, _data) = state("127.0.0.1:1").await;
    let (app, keys) = app(state);
    let operator = keys.staff(Role::Operator);
    let response = get_as(&app, "/api/orders/not-an-id/timeline", Some(&operator)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()["content-type"], "application/json");
    let request = Request::post("/api/dead-letters/orders-created.dlq/first/0/replay")
        .header("authorization", &operator)
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()["content-type"], "application/json");
}

#[tokio::test]
async fn lag_is_a_503_naming_kafka_when_no_broker_answers() {
    let (state, _data) = state("127.0.0.1:1").await;
    let (app, keys) = app(state);
    let started = Instant::now();
    let response = get_as(&app, "/api/lag", Some(&keys.staff(Role::Operator))).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(body["error"].as_str().unwrap().contains("Kafka"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(10), "it gives up in bounded time");
}
