//! The app's routes, through the finished router with `oneshot`, a fresh SQLite file and
//! fresh keys per test: the pages, signing in, and the push inbox that only notification
//! feeds and only a push's customer reads.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use futures::StreamExt;
use serde_json::{json, Value};
use shop_mobile::{router, AppState, Identity};
use shop_platform::auth::{Role, TestKeys, Verifier};
use tower::ServiceExt;

/// The router under test, its keys, and the folder of its database (removed when dropped).
async fn app() -> (Router, TestKeys, tempfile::TempDir) {
    let keys = TestKeys::new();
    let data = tempfile::tempdir().expect("a data folder");
    let file = data.path().join("mobile.db");
    let pool =
        shop_platform::db::open(&format!("sqlite://{}?mode=rwc", file.display()), sqlx::migrate!("./migrations"))
            .await
            .expect("the database opens");
    let identity = Identity::load(keys.secrets()).expect("the identity loads");
    let router = router(AppState::new(pool, "http://orders.example:8081/", identity));
    let web = keys.web(shop_mobile::SERVICE, &[]);
    (shop_platform::http::finish(router, Vec::new(), Default::default(), &web), keys, data)
}

async fn call(app: &Router, request: Request<Body>) -> (StatusCode, String, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, content_type, String::from_utf8(body.to_vec()).unwrap())
}

fn get_as(uri: &str, authorization: Option<&str>) -> Request<Body> {
    let mut request = Request::get(uri);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    request.body(Body::empty()).unwrap()
}

fn post_json(uri: &str, authorization: Option<&str>, body: &Value) -> Request<Body> {
    let mut request = Request::post(uri).header("content-type", "application/json");
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    request.body(Body::from(body.to_string())).unwrap()
}

fn push(id: uuid::Uuid, order_id: uuid::Uuid, to: &str, stage: &str) -> Value {
    json!({
        "id": id, "orderId": order_id, "to": to, "stage": stage, "title": format!("Stage {stage}"),
        "body": "Something happened to your order.", "sentAt": "2026-01-01T00:00:00Z",
    })
}

async fn send(app: &Router, keys: &TestKeys, push: &Value) -> StatusCode {
    let notification = keys.service("notification", "mobile");
    call(app, post_json("/api/push", Some(&notification), push)).await.0
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
    let (app, _keys, _data) = app().await;
    let (status, content_type, page) = call(&app, get_as("/", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(page.contains("/app.js") && page.contains("/app.css"));
    let (status, content_type, _) = call(&app, get_as("/app.js", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/javascript"), "{content_type}");
    let (_, content_type, _) = call(&app, get_as("/app.css", None)).await;
    assert!(content_type.starts_with("text/css"), "{content_type}");
}

#[tokio::test]
async fn the_page_learns_where_the_order_api_is() {
    let (app, _keys, _data) = app().await;
    let (status, _, config) = call(&app, get_as("/api/config", None)).await;
    assert_eq!(status, StatusCode::OK);
    let config: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["orderUrl"], "http://orders.example:8081");
}

#[tokio::test]
async fn a_customer_registers_once_then_signs_in_and_gets_a_token_every_service_accepts() {
    let (app, keys, _data) = app().await;
    let credentials = json!({"email": "Ada@Example.com", "password": "correct horse"});
    let (status, _, body) = call(&app, post_json("/auth/customers", None, &credentials)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _, _) = call(&app, post_json("/auth/customers", None, &credentials)).await;
    assert_eq!(status, StatusCode::CONFLICT, "one account per email");

    let same = json!({"email": "ada@example.com", "password": "correct horse"});
    let (status, _, body) = call(&app, post_json("/auth/sign-in", None, &same)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let signed_in: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (signed_in["role"].as_str(), signed_in["subject"].as_str()),
        (Some("customer"), Some("ada@example.com"))
    );
    let claims = Verifier::load(keys.secrets(), "order").unwrap().verify(signed_in["token"].as_str().unwrap()).unwrap();
    assert_eq!((claims.role, claims.sub.as_str()), (Role::Customer, "ada@example.com"));

    for wrong in [
        json!({"email": "ada@example.com", "password": "correct horsf"}),
        json!({"email": "bob@example.com", "password": "correct horse"}),
    ] {
        let (status, _, body) = call(&app, post_json("/auth/sign-in", None, &wrong)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(body.contains("wrong email or password"), "the same answer for a wrong email and a wrong password");
    }
    let short = json!({"email": "carol@example.com", "password": "short"});
    assert_eq!(call(&app, post_json("/auth/customers", None, &short)).await.0, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn staff_sign_in_with_the_passwords_of_the_secrets_folder() {
    let (app, keys, _data) = app().await;
    let password = keys.secrets().read_text(shop_platform::secrets::COURIER_PASSWORD).unwrap();
    let (status, _, body) =
        call(&app, post_json("/auth/staff/sign-in", None, &json!({"username": "courier", "password": password}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(r#""role":"courier""#), "{body}");
    let wrong = json!({"username": "operator", "password": password});
    assert_eq!(call(&app, post_json("/auth/staff/sign-in", None, &wrong)).await.0, StatusCode::UNAUTHORIZED);
    let (_, _, set) = call(&app, get_as("/.well-known/jwks.json", None)).await;
    assert_eq!(serde_json::from_str::<Value>(&set).unwrap()["keys"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn sign_ins_are_limited_per_client_with_a_429_saying_when_to_try_again() {
    let (app, _keys, _data) = app().await;
    let wrong = json!({"email": "ada@example.com", "password": "guess guess"});
    let mut statuses = Vec::new();
    for _ in 0..15 {
        let response = app.clone().oneshot(post_json("/auth/sign-in", None, &wrong)).await.unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(response.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
        }
        statuses.push(response.status());
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count(), 10, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count(), 5, "{statuses:?}");
}

#[tokio::test]
async fn only_notification_may_push() {
    let (app, keys, _data) = app().await;
    let body = push(uuid::Uuid::new_v4(), uuid::Uuid::new_v4(), "ada@example.com", "created");
    let cases = [
        (None, StatusCode::UNAUTHORIZED),
        (Some(keys.customer("ada@example.com")), StatusCode::FORBIDDEN),
        (Some(keys.service("order", "mobile")), StatusCode::FORBIDDEN),
        (Some(keys.service("notification", "payment")), StatusCode::UNAUTHORIZED),
        (Some("Bearer not.a.token".to_owned()), StatusCode::UNAUTHORIZED),
    ];
    let many = json!({ "pushes": [{ "push": body, "traceparent": null }] });
    for (authorization, expected) in cases {
        let (status, _, answer) = call(&app, post_json("/api/push", authorization.as_deref(), &body)).await;
        assert_eq!(status, expected, "{authorization:?}: {answer}");
        let (status, _, answer) = call(&app, post_json("/api/pushes", authorization.as_deref(), &many)).await;
        assert_eq!(status, expected, "many, {authorization:?}: {answer}");
    }
    assert_eq!(send(&app, &keys, &body).await, StatusCode::CREATED);
}

#[tokio::test]
async fn many_pushes_in_one_request_are_each_stored_once_and_a_bad_one_refused_alone() {
    let (app, keys, _data) = app().await;
    let notification = keys.service("notification", "mobile");
    let order = uuid::Uuid::new_v4();
    let first = push(uuid::Uuid::new_v4(), order, "ada@example.com", "created");
    let second = push(uuid::Uuid::new_v4(), order, "ada@example.com", "paymentCreated");
    let mut bad = push(uuid::Uuid::new_v4(), order, "not an address", "paymentMade");
    bad["title"] = json!("");
    assert_eq!(send(&app, &keys, &first).await, StatusCode::CREATED, "one of them arrived before");
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let many = json!({ "pushes": [
        { "push": first, "traceparent": traceparent },
        { "push": bad, "traceparent": null },
        { "push": second, "traceparent": traceparent },
    ] });
    let (status, _, answer) = call(&app, post_json("/api/pushes", Some(&notification), &many)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    let outcomes: Vec<&str> = answer.as_array().unwrap().iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["duplicate", "refused", "stored"], "{answer}");
    assert_eq!(answer[0]["id"], first["id"]);
    assert!(answer[1]["error"].as_str().unwrap().contains("email"), "{answer}");

    let ada = keys.customer("ada@example.com");
    let (_, _, listed) = call(&app, get_as(&format!("/api/notifications?orderId={order}"), Some(&ada))).await;
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let mut stages: Vec<&str> = listed.as_array().unwrap().iter().map(|p| p["stage"].as_str().unwrap()).collect();
    stages.sort();
    assert_eq!(stages, ["created", "paymentCreated"], "each once, the bad one not at all");

    for empty_or_too_many in [json!({ "pushes": [] }), json!({ "pushes": vec![json!({ "push": second }); 101] })] {
        let (status, _, answer) = call(&app, post_json("/api/pushes", Some(&notification), &empty_or_too_many)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert!(answer.contains("between 1 and 100"), "{answer}");
    }
}

#[tokio::test]
async fn the_live_stream_sends_stored_pushes_then_each_new_one_once_to_their_customer_only() {
    let (app, keys, _data) = app().await;
    let ada = keys.customer("ada@example.com");
    let (order, other_order) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let (first, second) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    assert_eq!(send(&app, &keys, &push(first, order, "ada@example.com", "created")).await, StatusCode::CREATED);

    let response =
        app.clone().oneshot(get_as(&format!("/api/notifications/stream?orderId={order}"), Some(&ada))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body().into_data_stream();
    let mut received = String::new();
    read_until(&mut body, &mut received, &first.to_string()).await;

    assert_eq!(
        send(&app, &keys, &push(first, order, "ada@example.com", "created")).await,
        StatusCode::OK,
        "a resend is kept once"
    );
    assert_eq!(
        send(&app, &keys, &push(uuid::Uuid::new_v4(), other_order, "ada@example.com", "created")).await,
        StatusCode::CREATED
    );
    let stranger = uuid::Uuid::new_v4();
    assert_eq!(send(&app, &keys, &push(stranger, order, "eve@example.com", "created")).await, StatusCode::CREATED);
    assert_eq!(send(&app, &keys, &push(second, order, "ADA@example.com", "paymentCreated")).await, StatusCode::CREATED);
    read_until(&mut body, &mut received, &second.to_string()).await;

    assert_eq!(received.matches("event: push").count(), 2, "{received}");
    assert!(!received.contains(&other_order.to_string()), "another order's push leaked: {received}");
    assert!(!received.contains(&stranger.to_string()), "another customer's push leaked: {received}");

    let (status, _, listed) = call(&app, get_as(&format!("/api/notifications?orderId={order}"), Some(&ada))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_str::<Value>(&listed).unwrap().as_array().unwrap().len(), 2);
    let eve = keys.customer("eve@example.com");
    let (_, _, listed) = call(&app, get_as(&format!("/api/notifications?orderId={order}"), Some(&eve))).await;
    assert_eq!(serde_json::from_str::<Value>(&listed).unwrap().as_array().unwrap().len(), 1, "eve sees her own only");
    let anonymous = call(&app, get_as(&format!("/api/notifications?orderId={order}"), None)).await.0;
    assert_eq!(anonymous, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_stream_without_an_order_is_a_json_400() {
    let (app, keys, _data) = app().await;
    let (status, content_type, body) =
        call(&app, get_as("/api/notifications/stream", Some(&keys.customer("ada@example.com")))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(content_type.starts_with("application/json"));
    assert!(body.contains("error"));
}
