//! The whole journey of the design, end to end, on the real binary with its embedded
//! broker: one order through the seven stages over HTTP, each call made by whom users make it
//! (the customer, the courier, the operator), with every status, the live stage stream, 7
//! pushes, 7 emails received over SMTP, and the audit trail.

mod support;

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use support::{eventually, url, System};

const PATIENCE: Duration = Duration::from_secs(60);
const STAGES: [&str; 7] =
    ["created", "paymentCreated", "paymentMade", "readyToShip", "shipping", "shipped", "delivered"];

fn order_body() -> Value {
    json!({
        "customer": {"name": "Ada Lovelace", "phone": "+44 20 7946 0000"},
        "items": [{"sku": "TEA-01", "quantity": 2}, {"sku": "MUG-03", "quantity": 1, "unitPrice": 9.9}]
    })
}

async fn wait_for_status(system: &System, port: u16, order_id: &str, status: &str, token: &str) -> Value {
    eventually(&format!("order {order_id} to be {status}"), PATIENCE, || async {
        let (code, order) = system.get_as(port, &format!("/orders/{order_id}"), token).await;
        (code == 200 && order["status"] == status).then_some(order)
    })
    .await
}

/// Collects the `stage` events of the order's live stream until it ends.
async fn follow_stages(http: reqwest::Client, stream_url: String, token: String) -> Vec<String> {
    let response = http
        .get(stream_url)
        .header("authorization", token)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .expect("stream opens");
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.expect("stream chunk")));
    }
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .map(|event| event["stage"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn an_order_goes_through_all_seven_stages_with_a_push_and_an_email_at_each() {
    let mut system = System::start().await;
    let [order_1, order_2] = system.order;
    let ada = system.customer("Ada@Example.com");
    let courier = system.courier_token();

    // 1. Create the order: it is stored, payment is opened, and the customer gets the link.
    // Prices are the catalogue's: 2 × 12.50 + 9.90.
    let (code, created) = system.post_as(order_1, "/orders", Some(order_body()), &ada).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["status"], "created");
    assert_eq!(created["total"], json!(34.9));
    assert_eq!(created["customer"]["email"], "ada@example.com", "the signed-in customer's email");
    let order_id = created["orderId"].as_str().unwrap().to_owned();
    let payment_id = created["paymentId"].as_str().unwrap().to_owned();
    let payment_url = created["paymentUrl"].as_str().unwrap().to_owned();
    assert!(payment_url.contains(&format!("/pay/{payment_id}?secret=")), "{payment_url}");
    let stream = url(order_2, &format!("/orders/{order_id}/events"));
    let stages = tokio::spawn(follow_stages(system.http.clone(), stream, ada.clone()));

    // 2. The payment exists at the gateway, created, for the order's total.
    let (code, payment) = system.get_as(system.payment[1], &format!("/payments/{payment_id}"), &ada).await;
    assert_eq!(code, 200);
    assert_eq!((payment["status"].clone(), payment["amount"].clone()), (json!("created"), json!(34.9)));
    // The payment link opens the gateway's page.
    let page = system.http.get(&payment_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("34.90"));

    // 3. Pay once (200), and again (409, nothing more published).
    let pay = format!("/payments/{payment_id}/pay");
    let (code, paid) = system.post_as(system.payment[1], &pay, None, &ada).await;
    assert_eq!((code, paid["status"].clone()), (200, json!("made")));
    let (code, again) = system.post_as(system.payment[0], &pay, None, &ada).await;
    assert_eq!(code, 409);
    assert!(again["error"].as_str().unwrap().contains("already"), "{again}");

    // 4-5. Order becomes readyToShip, delivery opens and acknowledges: shipping.
    wait_for_status(&system, order_2, &order_id, "shipping", &ada).await;
    let (code, delivery) = system.get_as(system.delivery, &format!("/deliveries/{order_id}"), &courier).await;
    assert_eq!((code, delivery["status"].clone()), (200, json!("shipping")));

    // The courier cannot deliver what has not shipped.
    let delivered = format!("/deliveries/{order_id}/delivered");
    let shipped = format!("/deliveries/{order_id}/shipped");
    let (code, refused) = system.post_as(system.delivery, &delivered, None, &courier).await;
    assert_eq!(code, 409, "{refused}");

    // 6. Shipped.
    let (code, _) = system.post_as(system.delivery, &shipped, None, &courier).await;
    assert_eq!(code, 202);
    wait_for_status(&system, order_1, &order_id, "shipped", &ada).await;
    let (code, _) = system.post_as(system.delivery, &shipped, None, &courier).await;
    assert_eq!(code, 409, "shipping twice is refused");

    // 7. Delivered.
    let (code, _) = system.post_as(system.delivery, &delivered, None, &courier).await;
    assert_eq!(code, 202);
    let order = wait_for_status(&system, order_2, &order_id, "delivered", &ada).await;
    let history: Vec<&str> =
        order["history"].as_array().unwrap().iter().map(|h| h["stage"].as_str().unwrap()).collect();
    assert_eq!(history, STAGES);

    // The live stream told every stage, in order, then ended.
    let streamed = tokio::time::timeout(PATIENCE, stages).await.expect("the stream ends after delivered").unwrap();
    assert_eq!(streamed, STAGES);

    // One push per stage, exactly.
    let pushes_path = format!("/api/notifications?orderId={order_id}");
    let pushes = eventually("7 pushes", PATIENCE, || async {
        let (_, pushes) = system.get_as(system.mobile, &pushes_path, &ada).await;
        let pushes = pushes.as_array().cloned().unwrap_or_default();
        (pushes.len() >= 7).then_some(pushes)
    })
    .await;
    let mut pushed: Vec<&str> = pushes.iter().map(|p| p["stage"].as_str().unwrap()).collect();
    pushed.sort_by_key(|stage| STAGES.iter().position(|s| s == stage));
    assert_eq!(pushed, STAGES);
    assert!(
        pushes.iter().any(|p| p["body"].as_str().unwrap().contains(&payment_url)),
        "a push carries the payment link"
    );

    // One email per stage, exactly, received over SMTP, addressed to the customer.
    let emails = eventually("7 emails", PATIENCE, || async {
        let (_, emails) = system.get_as(system.email, &format!("/api/emails?orderId={order_id}"), &ada).await;
        let emails = emails.as_array().cloned().unwrap_or_default();
        (emails.len() >= 7).then_some(emails)
    })
    .await;
    assert_eq!(emails.len(), 7);
    assert!(emails.iter().all(|e| e["to"].as_str().unwrap().contains("ada@example.com")));
    assert!(emails.iter().any(|e| e["subject"].as_str().unwrap().contains("delivered")));
    assert!(emails.iter().any(|e| e["body"].as_str().unwrap().contains(&payment_url)));

    // The audit trail has every service's part.
    let operator = system.operator();
    let actions = eventually("the audit trail", PATIENCE, || async {
        let (_, logs) = system.get_as(system.logging, &format!("/logs?orderId={order_id}"), &operator).await;
        let actions: Vec<String> =
            logs.as_array()?.iter().map(|l| l["action"].as_str().unwrap_or_default().to_owned()).collect();
        (actions.len() >= 10).then_some(actions)
    })
    .await;
    for action in [
        "order.created",
        "payment.created",
        "payment.made",
        "order.readyToShip",
        "delivery.opened",
        "order.shipping",
        "delivery.shipped",
        "order.shipped",
        "delivery.delivered",
        "order.delivered",
    ] {
        assert_eq!(actions.iter().filter(|a| *a == action).count(), 1, "{action} in {actions:?}");
    }

    // The operator's view of the order: its seven stages and every audit record, push and mail
    // on one timeline (logging asks mobile and email with the operator's token).
    let (code, timeline) = system.get_as(system.logging, &format!("/api/orders/{order_id}/timeline"), &operator).await;
    assert_eq!(code, 200, "{timeline}");
    assert_eq!(timeline["problems"], json!([]), "{timeline}");
    let stages = timeline["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 7);
    assert!(stages.iter().all(|s| s["at"].is_string()), "every stage reached: {stages:?}");
    let entries = timeline["entries"].as_array().unwrap();
    let kinds = |kind: &str| entries.iter().filter(|e| e["kind"] == kind).count();
    assert_eq!((kinds("audit"), kinds("push"), kinds("mail")), (10, 7, 7), "{entries:?}");
    let times: Vec<&str> = entries.iter().map(|e| e["at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first: {times:?}");
    let (code, _) = system.get_as(system.logging, &format!("/api/orders/{order_id}/timeline"), &ada).await;
    assert_eq!(code, 403, "the operator's only");
    let (code, history) = system.get_as(system.logging, "/api/lag/history", &operator).await;
    assert_eq!(code, 200, "{history}");
    assert!(!history["samples"].as_array().unwrap().is_empty(), "the lag is sampled from the start: {history}");

    // Nothing arrives twice later on.
    let (_, pushes) = system.get_as(system.mobile, &pushes_path, &ada).await;
    assert_eq!(pushes.as_array().unwrap().len(), 7);

    assert!(system.stop().success(), "shop up stops cleanly on SIGTERM");
}

#[tokio::test]
async fn bad_requests_get_a_json_error_and_change_nothing() {
    let system = System::start().await;
    let order = system.order[0];
    let unknown = "01a21288-1d8c-7666-97e3-9bd1cc0e5e8b";
    let (customer, courier, operator) = (system.customer("a@b.co"), system.courier_token(), system.operator());
    let order_service = system.service_token("order", "payment");
    let customer_body = |items: Value| json!({"customer": {"name": "A", "phone": "12345"}, "items": items});
    // (port, method, path, body, as whom, expected status)
    type Case<'a> = (u16, &'a str, String, Option<Value>, &'a str, u16);
    let cases: Vec<Case> = vec![
        (order, "POST", "/orders".to_owned(), Some(json!({"customer": {"name": "A"}, "items": []})), &customer, 422),
        (order, "POST", "/orders".to_owned(), Some(customer_body(json!([]))), &customer, 422),
        (
            order,
            "POST",
            "/orders".to_owned(),
            Some(
                json!({"customer": {"name": "A", "email": "nope", "phone": "12345"}, "items": [{"sku": "TEA-01", "quantity": 1}]}),
            ),
            &customer,
            422,
        ),
        (
            order,
            "POST",
            "/orders".to_owned(),
            Some(customer_body(json!([{"sku": "TEA-01", "quantity": -1}]))),
            &customer,
            422,
        ),
        (
            order,
            "POST",
            "/orders".to_owned(),
            Some(customer_body(json!([{"sku": "TEA-01", "quantity": "two"}]))),
            &customer,
            422,
        ),
        (
            order,
            "POST",
            "/orders".to_owned(),
            Some(customer_body(json!([{"sku": "NOPE-1", "quantity": 1}]))),
            &customer,
            422,
        ),
        (
            order,
            "POST",
            "/orders".to_owned(),
            Some(customer_body(json!([{"sku": "TEA-01", "quantity": 1, "unitPrice": 0.01}]))),
            &customer,
            422,
        ),
        (order, "GET", format!("/orders/{unknown}"), None, &customer, 404),
        (order, "GET", "/orders/not-a-uuid".to_owned(), None, &customer, 400),
        (order, "GET", "/orders?email=a@b.co".to_owned(), None, &customer, 400),
        (system.payment[0], "POST", format!("/payments/{unknown}/pay"), None, &customer, 404),
        (system.delivery, "POST", format!("/deliveries/{unknown}/shipped"), None, &courier, 404),
        (system.delivery, "GET", format!("/deliveries/{unknown}"), None, &courier, 404),
        (system.mobile, "GET", "/api/notifications".to_owned(), None, &customer, 400),
        (
            system.payment[1],
            "POST",
            "/payments".to_owned(),
            Some(
                json!({"orderId": unknown, "amount": -5, "customer": {"name": "A", "email": "a@b.co", "phone": "12345"}}),
            ),
            &order_service,
            422,
        ),
        (
            system.payment[1],
            "POST",
            "/payments".to_owned(),
            Some(
                json!({"orderId": "nope", "amount": 5, "customer": {"name": "A", "email": "a@b.co", "phone": "12345"}}),
            ),
            &order_service,
            422,
        ),
        (
            system.payment[1],
            "POST",
            "/payments".to_owned(),
            Some(json!({"orderId": unknown, "amount": 5})),
            &order_service,
            422,
        ),
        (system.payment[1], "GET", format!("/payments/{unknown}"), None, &customer, 404),
        (system.payment[1], "GET", "/payments/123".to_owned(), None, &customer, 400),
        (system.payment[1], "GET", format!("/pay/{unknown}?secret=guess"), None, &customer, 404),
        (system.delivery, "POST", format!("/deliveries/{unknown}/delivered"), None, &courier, 404),
        (system.delivery, "POST", "/deliveries/not-an-id/shipped".to_owned(), None, &courier, 400),
        (order, "GET", format!("/orders/{unknown}/events"), None, &customer, 404),
        (system.logging, "GET", "/logs?orderId=nope".to_owned(), None, &operator, 400),
        (system.email, "GET", "/api/emails?orderId=nope".to_owned(), None, &customer, 400),
        (order, "GET", "/no/such/route".to_owned(), None, &customer, 404),
    ];
    for (port, method, path, body, token, expected) in cases {
        let (code, answer) = match method {
            "GET" => system.get_as(port, &path, token).await,
            _ => system.post_as(port, &path, body.clone(), token).await,
        };
        assert_eq!(code, expected, "{method} {path} {body:?} answered {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{method} {path}: no JSON error in {answer}");
    }
    let malformed = system
        .http
        .post(url(order, "/orders"))
        .header("authorization", &customer)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let huge = customer_body(json!([{"sku": "X".repeat(100_000), "quantity": 1}]));
    let (code, answer) = system.post_as(order, "/orders", Some(huge), &customer).await;
    assert_eq!(code, 413, "{answer}");
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("too large")), "{answer}");
    let wrong_type =
        system.http.post(url(order, "/orders")).header("authorization", &customer).body("{}").send().await.unwrap();
    assert_eq!(wrong_type.status(), 415, "a body without a JSON content type is refused");
    let (_, orders) = system.get_as(order, "/orders", &customer).await;
    assert_eq!(orders, json!([]), "no bad request created an order");
}

#[tokio::test]
async fn restarting_on_the_same_data_keeps_every_order_payment_and_delivery() {
    let mut system = System::start().await;
    let (order_id, payment_id) = system.create_order(system.order[0], "again@example.com", None).await;
    let (code, _) = system.pay(system.payment[0], &payment_id).await;
    assert_eq!(code, 200);
    system.wait_for_status(&order_id, "shipping").await;
    assert!(system.stop().success());

    // The same data folder, so the same keys: the customer's token still works.
    let customer = system.customer("again@example.com");
    let system = System::start_with(system.data()).await;
    let (code, order) = system.get_as(system.order[1], &format!("/orders/{order_id}"), &customer).await;
    assert_eq!((code, order["status"].clone()), (200, json!("shipping")), "{order}");
    assert_eq!(order["history"].as_array().unwrap().len(), 5);
    let (code, payment) = system.get_as(system.payment[1], &format!("/payments/{payment_id}"), &customer).await;
    assert_eq!((code, payment["status"].clone()), (200, json!("made")));
    let courier = system.courier_token();
    let (code, delivery) = system.get_as(system.delivery, &format!("/deliveries/{order_id}"), &courier).await;
    assert_eq!((code, delivery["status"].clone()), (200, json!("shipping")));
    // The journey goes on after the restart.
    system.remember(&order_id, "again@example.com");
    system.courier(&order_id, "shipped").await;
    system.wait_for_status(&order_id, "shipped").await;
}
