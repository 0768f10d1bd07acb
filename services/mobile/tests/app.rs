//! The app's routes, through the router with `oneshot` and a fresh SQLite file per test.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use futures::StreamExt;
use shop_mobile::{router, AppState};
use tower::ServiceExt;

async fn app() -> Router {
    let file = std::env::temp_dir().join(format!("shop-mobile-test-{}.db", uuid::Uuid::new_v4()));
    let pool =
        shop_platform::db::open(&format!("sqlite://{}?mode=rwc", file.display()), sqlx::migrate!("./migrations"))
            .await
            .expect("the database opens");
    router(AppState::new(pool, "http://orders.example:8081/"))
}

async fn get(app: &Router, uri: &str) -> (StatusCode, String, String) {
    let response = app.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, content_type, String::from_utf8(body.to_vec()).unwrap())
}

fn push(id: uuid::Uuid, order_id: uuid::Uuid, stage: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id, "orderId": order_id, "stage": stage, "title": format!("Stage {stage}"),
        "body": "Something happened to your order.", "sentAt": "2026-01-01T00:00:00Z",
    })
}

async fn send(app: &Router, push: &serde_json::Value) -> StatusCode {
    let request = Request::post("/api/push")
        .header("content-type", "application/json")
        .body(Body::from(push.to_string()))
        .unwrap();
    app.clone().oneshot(request).await.unwrap().status()
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
async fn the_app_and_its_assets_are_served_from_the_binary() {
    let app = app().await;
    let (status, content_type, page) = get(&app, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(page.contains("/app.js") && page.contains("/app.css"));
    let (status, content_type, script) = get(&app, "/app.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/javascript"), "{content_type}");
    assert!(script.contains("EventSource"));
    let (_, content_type, _) = get(&app, "/app.css").await;
    assert!(content_type.starts_with("text/css"), "{content_type}");
}

#[tokio::test]
async fn the_page_learns_where_the_order_api_is_and_what_is_for_sale() {
    let app = app().await;
    let (status, _, config) = get(&app, "/api/config").await;
    assert_eq!(status, StatusCode::OK);
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["orderUrl"], "http://orders.example:8081");
    let (_, _, products) = get(&app, "/api/products").await;
    let products: Vec<serde_json::Value> = serde_json::from_str(&products).unwrap();
    assert!(products.len() >= 3);
    assert!(products.iter().all(|p| p["sku"].is_string() && p["name"].is_string() && p["price"].is_number()));
}

#[tokio::test]
async fn the_live_stream_sends_stored_pushes_then_each_new_one_once() {
    let app = app().await;
    let (order, other_order) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let (first, second) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    assert_eq!(send(&app, &push(first, order, "created")).await, StatusCode::CREATED);

    let response = app
        .clone()
        .oneshot(Request::get(format!("/api/notifications/stream?orderId={order}")).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body().into_data_stream();
    let mut received = String::new();
    read_until(&mut body, &mut received, &first.to_string()).await;

    assert_eq!(send(&app, &push(first, order, "created")).await, StatusCode::OK, "a resend is kept once");
    assert_eq!(send(&app, &push(uuid::Uuid::new_v4(), other_order, "created")).await, StatusCode::CREATED);
    assert_eq!(send(&app, &push(second, order, "paymentCreated")).await, StatusCode::CREATED);
    read_until(&mut body, &mut received, &second.to_string()).await;

    assert_eq!(received.matches("event: push").count(), 2, "{received}");
    assert!(!received.contains(&other_order.to_string()), "another order's push leaked: {received}");
}

#[tokio::test]
async fn a_stream_without_an_order_is_a_json_400() {
    let app = app().await;
    let (status, content_type, body) = get(&app, "/api/notifications/stream").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(content_type.starts_with("application/json"));
    assert!(body.contains("error"));
}
