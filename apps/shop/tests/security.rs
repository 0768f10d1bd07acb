//! The system tried as an attacker would, on the real `shop up`: every attack of the
//! "Identity and access" review and its obvious neighbours, each refused with the right status
//! (401 without or with bad credentials, 403 for the wrong role, 404 for what is another
//! customer's) and changing nothing. Each test starts its own system.

mod support;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};
use shop_platform::auth::{Claims, Role, SigningKey};
use support::{url, System, PATIENCE};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Every route that shows or changes someone's data, with a sample path.
fn protected_routes(system: &System, order: &str, payment: &str) -> Vec<(u16, &'static str, String)> {
    vec![
        (system.order[0], "GET", "/orders".into()),
        (system.order[0], "GET", "/orders?email=victim@example.com".into()),
        (system.order[0], "POST", "/orders".into()),
        (system.order[0], "GET", format!("/orders/{order}")),
        (system.order[0], "GET", format!("/orders/{order}/events")),
        (system.payment[0], "POST", "/payments".into()),
        (system.payment[0], "GET", format!("/payments/{payment}")),
        (system.payment[0], "POST", format!("/payments/{payment}/pay")),
        (system.delivery, "GET", "/deliveries".into()),
        (system.delivery, "GET", format!("/deliveries/{order}")),
        (system.delivery, "POST", format!("/deliveries/{order}/shipped")),
        (system.delivery, "POST", format!("/deliveries/{order}/delivered")),
        (system.email, "GET", "/api/emails".into()),
        (system.email, "GET", format!("/api/emails?orderId={order}")),
        (system.logging, "GET", "/logs".into()),
        (system.logging, "GET", "/logs/stream".into()),
        (system.logging, "GET", "/api/lag".into()),
        (system.logging, "GET", "/api/services".into()),
        (system.logging, "GET", "/api/dead-letters".into()),
        (system.logging, "GET", "/api/lag/history".into()),
        (system.logging, "GET", format!("/api/orders/{order}/timeline")),
        (system.logging, "POST", "/api/dead-letters/orders-created.dlq/0/0/replay".into()),
        (system.mobile, "GET", format!("/api/notifications?orderId={order}")),
        (system.mobile, "GET", format!("/api/notifications/stream?orderId={order}")),
        (system.mobile, "POST", "/api/push".into()),
        (system.mobile, "POST", "/api/pushes".into()),
        (system.notification, "GET", "/metrics".into()),
        (system.order[0], "GET", "/metrics".into()),
        (system.payment[0], "GET", "/metrics".into()),
        (system.delivery, "GET", "/metrics".into()),
        (system.logging, "GET", "/metrics".into()),
        (system.mobile, "GET", "/metrics".into()),
        (system.email, "GET", "/metrics".into()),
    ]
}

async fn send(system: &System, port: u16, method: &str, path: &str, authorization: Option<&str>) -> reqwest::Response {
    let mut request = match method {
        "GET" => system.http.get(url(port, path)),
        _ => system.http.post(url(port, path)).json(&json!({})),
    };
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    request.send().await.expect("the service answers")
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.unwrap_or(Value::Null)
}

/// The state of one order as its customer, the courier and the operator see it.
async fn snapshot(system: &System, order: &str, payment: &str) -> Vec<Value> {
    let customer = system.owner_token(order);
    vec![
        system.get_as(system.order[0], &format!("/orders/{order}"), &customer).await.1,
        system.get_as(system.payment[0], &format!("/payments/{payment}"), &customer).await.1,
        system.get_as(system.mobile, &format!("/api/notifications?orderId={order}"), &customer).await.1,
        system.get_as(system.email, &format!("/api/emails?orderId={order}"), &customer).await.1,
        system.get_as(system.delivery, &format!("/deliveries/{order}"), &system.courier_token()).await.1,
    ]
}

/// `Bearer <token>` with exactly these claims, signed by `key`.
fn signed(key: &SigningKey, iss: &str, sub: &str, aud: &str, role: Role, exp_in: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let claims =
        Claims { iss: iss.into(), sub: sub.into(), aud: aud.into(), role, iat: now as u64, exp: (now + exp_in) as u64 };
    format!("Bearer {}", key.sign(&claims).unwrap())
}

#[tokio::test]
async fn without_credentials_or_with_bad_ones_nothing_is_read_or_changed() {
    let system = System::start().await;
    let (order, payment) = system.create_order(system.order[0], "victim@example.com", None).await;
    // Its first two pushes and mails are in before the snapshot, so that none arrives between.
    system.notifications(&order, 2).await;
    let before = snapshot(&system, &order, &payment).await;

    // Forged and broken tokens, each for a role that would otherwise pass somewhere.
    let victim = system.owner_token(&order);
    let people = SigningKey::load(&system.secrets(), "mobile").unwrap();
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger_secrets = shop_platform::secrets::Secrets::new(stranger_dir.path());
    stranger_secrets.generate(&["mobile", "order"]).unwrap();
    let stranger = SigningKey::load(&stranger_secrets, "mobile").unwrap();
    let forged_kid = {
        // Another system's key, presenting this system's key id.
        let token = signed(&stranger, "mobile", "operator", "shop", Role::Operator, 600);
        let token = token.trim_start_matches("Bearer ");
        let (head, rest) = token.split_once('.').unwrap();
        let mut header: Value = serde_json::from_slice(&B64.decode(head).unwrap()).unwrap();
        header["kid"] = people.public_jwk().common.key_id.unwrap().into();
        format!("Bearer {}.{rest}", B64.encode(header.to_string()))
    };
    let tampered = {
        // The victim's own token with its role changed: the signature no longer matches.
        let token = victim.trim_start_matches("Bearer ");
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        claims["role"] = "operator".into();
        format!("Bearer {}.{}.{}", parts[0], B64.encode(claims.to_string()), parts[2])
    };
    let none = {
        let claims = json!({"iss": "mobile", "sub": "operator", "aud": "shop", "role": "operator", "iat": 0, "exp": 4_000_000_000u64});
        format!("Bearer {}.{}.", B64.encode(r#"{"alg":"none","typ":"JWT"}"#), B64.encode(claims.to_string()))
    };
    let hs256 = {
        // The classic confusion: HMAC keyed with the published public key.
        let jwk = people.public_jwk();
        let header = jsonwebtoken::Header {
            kid: jwk.common.key_id.clone(),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        };
        let claims = json!({"iss": "mobile", "sub": "operator", "aud": "shop", "role": "operator", "iat": 0, "exp": 4_000_000_000u64});
        let jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(ref okp) = jwk.algorithm else { unreachable!() };
        let key = jsonwebtoken::EncodingKey::from_secret(okp.x.as_bytes()).unwrap();
        format!("Bearer {}", jsonwebtoken::encode(&header, &claims, &key).unwrap())
    };
    let expired = signed(&people, "mobile", "operator", "shop", Role::Operator, -300);
    let service_as_people = signed(
        &SigningKey::load(&system.secrets(), "order").unwrap(),
        "order",
        "operator",
        "shop",
        Role::Operator,
        600,
    );
    let bad: [(&str, String); 8] = [
        ("another system's key", forged_kid),
        ("a tampered token", tampered),
        ("alg none", none),
        ("HS256 keyed with the public key", hs256),
        ("an expired token", expired),
        ("a service's key signing for people", service_as_people),
        ("a Basic credential", "Basic b3BlcmF0b3I6cGFzc3dvcmQ=".to_owned()),
        ("garbage", "Bearer not.a.token".to_owned()),
    ];
    for (port, method, path) in protected_routes(&system, &order, &payment) {
        let response = send(&system, port, method, &path, None).await;
        assert_eq!(response.status(), 401, "{method} {path} anonymous");
        assert!(response.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"), "{method} {path}");
        assert!(json_of(response).await["error"].is_string(), "{method} {path}: a JSON error");
        for (what, authorization) in &bad {
            let response = send(&system, port, method, &path, Some(authorization)).await;
            assert_eq!(response.status(), 401, "{method} {path} with {what}");
        }
    }
    // A plain cross-site form (no token, no JSON) cannot pay or ship either.
    for (port, path) in [
        (system.payment[0], format!("/payments/{payment}/pay")),
        (system.delivery, format!("/deliveries/{order}/shipped")),
    ] {
        let form =
            system.http.post(url(port, &path)).header("content-type", "application/x-www-form-urlencoded").body("a=1");
        let status = form.send().await.unwrap().status();
        assert!(status == 401 || status == 415, "a form POST to {path} answered {status}");
    }
    // Open to anyone: health, readiness, the catalogue, the key set, page shells.
    for (port, path) in [
        (system.order[0], "/products"),
        (system.order[0], "/healthz"),
        (system.payment[0], "/readyz"),
        (system.mobile, "/.well-known/jwks.json"),
        (system.mobile, "/"),
        (system.delivery, "/"),
        (system.logging, "/"),
        (system.email, "/"),
    ] {
        assert_eq!(send(&system, port, "GET", path, None).await.status(), 200, "{path} is public");
    }
    assert_eq!(snapshot(&system, &order, &payment).await, before, "nothing changed");
}

#[tokio::test]
async fn a_customer_sees_and_changes_only_their_own_and_every_role_only_its_part() {
    let system = System::start().await;
    let (order, payment) = system.create_order(system.order[0], "victim@example.com", None).await;
    let (own_order, _) = system.create_order(system.order[1], "mallory@example.com", None).await;
    let mallory = system.customer("Mallory@Example.COM");
    let victim_url = {
        let (_, view) = system.get_as(system.order[0], &format!("/orders/{order}"), &system.owner_token(&order)).await;
        view["paymentUrl"].as_str().unwrap().to_owned()
    };
    system.notifications(&order, 2).await;
    let before = snapshot(&system, &order, &payment).await;

    // Another customer's order, payment, pushes and mails: as if they did not exist.
    for (port, path) in [
        (system.order[0], format!("/orders/{order}")),
        (system.order[1], format!("/orders/{order}/events")),
        (system.payment[0], format!("/payments/{payment}")),
    ] {
        let (code, answer) = system.get_as(port, &path, &mallory).await;
        assert_eq!(code, 404, "{path}: {answer}");
    }
    let (code, _) = system.post_as(system.payment[1], &format!("/payments/{payment}/pay"), None, &mallory).await;
    assert_eq!(code, 404, "paying someone else's payment with one's own token");
    let (_, pushes) = system.get_as(system.mobile, &format!("/api/notifications?orderId={order}"), &mallory).await;
    assert_eq!(pushes, json!([]), "no push of another customer's order");
    let (_, mails) = system.get_as(system.email, &format!("/api/emails?orderId={order}"), &mallory).await;
    assert_eq!(mails, json!([]), "no mail of another customer's order");
    let (_, mails) = system.get_as(system.email, "/api/emails", &mallory).await;
    assert!(
        mails.as_array().unwrap().iter().all(|m| m["to"].as_str().unwrap().contains("mallory@example.com")),
        "{mails}"
    );
    // Emails compare case-insensitively: Mallory's own order is hers whatever the case.
    let (_, orders) = system.get_as(system.order[0], "/orders", &mallory).await;
    let listed: Vec<&str> = orders.as_array().unwrap().iter().map(|o| o["orderId"].as_str().unwrap()).collect();
    assert_eq!(listed, [own_order.as_str()]);

    // The payment link's secret: only the right one for the right payment opens it.
    let secret = victim_url.split("secret=").nth(1).unwrap().to_owned();
    let (_, other_payment) = system.create_order(system.order[0], "third@example.com", None).await;
    let pay = |id: &str| format!("/payments/{id}/pay");
    for (id, guess) in [
        (payment.as_str(), "A".repeat(43)),
        (other_payment.as_str(), secret.clone()),
        (payment.as_str(), String::new()),
    ] {
        let (code, _) = system.post(system.payment[0], &pay(id), Some(json!({"secret": guess}))).await;
        assert_eq!(code, 404, "paying {id} with a wrong secret");
        let page = system.http.get(url(system.payment[0], &format!("/pay/{id}?secret={guess}"))).send().await.unwrap();
        assert_eq!(page.status(), 404, "the page of {id} with a wrong secret");
    }
    let page = system.http.get(url(system.payment[0], &format!("/pay/{payment}"))).send().await.unwrap();
    assert_eq!(page.status(), 404, "the page without its secret");

    // Roles: each refused where it has no business, with a 403.
    let (courier, operator, victim) = (system.courier_token(), system.operator(), system.owner_token(&order));
    let notification = system.service_token("notification", "payment");
    let order_service = system.service_token("order", "payment");
    let forbidden: Vec<(u16, &str, String, &str)> = vec![
        (system.delivery, "GET", "/deliveries".into(), &mallory),
        (system.delivery, "POST", format!("/deliveries/{order}/shipped"), &mallory),
        (system.delivery, "POST", format!("/deliveries/{order}/delivered"), &operator),
        (system.logging, "GET", "/logs".into(), &mallory),
        (system.logging, "GET", "/logs/stream".into(), &courier),
        (system.logging, "GET", "/api/lag".into(), &mallory),
        (system.logging, "GET", "/api/services".into(), &courier),
        (system.logging, "GET", "/api/dead-letters".into(), &victim),
        (system.logging, "POST", "/api/dead-letters/orders-created.dlq/0/0/replay".into(), &courier),
        (system.notification, "GET", "/metrics".into(), &mallory),
        (system.order[0], "GET", "/metrics".into(), &victim),
        (system.mobile, "GET", "/metrics".into(), &courier),
        (system.email, "GET", "/api/emails".into(), &courier),
        (system.order[0], "GET", "/orders".into(), &courier),
        (system.order[0], "POST", "/orders".into(), &operator),
        (system.order[0], "GET", format!("/orders/{order}"), &operator),
        (system.payment[0], "POST", "/payments".into(), &victim),
        (system.payment[0], "POST", "/payments".into(), &courier),
        (system.payment[0], "POST", format!("/payments/{payment}/pay"), &courier),
        (system.mobile, "POST", "/api/push".into(), &victim),
        (system.mobile, "POST", "/api/pushes".into(), &operator),
        (system.mobile, "GET", format!("/api/notifications?orderId={order}"), &courier),
        (system.mobile, "GET", format!("/api/notifications/stream?orderId={order}"), &operator),
        (system.logging, "GET", format!("/api/orders/{order}/timeline"), &victim),
        (system.logging, "GET", "/api/lag/history".into(), &courier),
    ];
    for (port, method, path, who) in forbidden {
        let response = send(&system, port, method, &path, Some(who)).await;
        assert_eq!(response.status(), 403, "{method} {path}");
        assert!(json_of(response).await["error"].is_string());
    }
    // A service token is for the one service it names: notification's for payment is refused
    // there (only order opens payments), and order's for payment is no good on mobile.
    let open = json!({"orderId": uuid::Uuid::now_v7(), "amount": 1, "customer": {"name": "M", "email": "m@x.co", "phone": "12345"}});
    let (code, _) = system.post_as(system.payment[0], "/payments", Some(open.clone()), &notification).await;
    assert_eq!(code, 403);
    let (code, _) = system.post_as(system.mobile, "/api/push", Some(json!({})), &order_service).await;
    assert_eq!(code, 401, "a token for payment is not for mobile");

    // Fake notifications: a push with a phishing link is stored by nobody.
    let phishing = json!({"id": uuid::Uuid::new_v4(), "orderId": order, "to": "victim@example.com", "stage": "paymentCreated",
        "title": "Pay again", "body": "http://evil.example/pay", "sentAt": "2026-01-01T00:00:00Z"});
    for who in [None, Some(victim.as_str()), Some(order_service.as_str())] {
        let mut request = system.http.post(url(system.mobile, "/api/push")).json(&phishing);
        if let Some(who) = who {
            request = request.header("authorization", who);
        }
        assert!([401, 403].contains(&request.send().await.unwrap().status().as_u16()));
    }
    assert_eq!(snapshot(&system, &order, &payment).await, before, "nothing of the victim's changed");

    // The courier does what couriers do; the victim pays with their token; the link's secret pays too.
    let (code, _) = system.post_as(system.payment[0], &pay(&payment), None, &victim).await;
    assert_eq!(code, 200, "the customer pays their own payment");
    let (code, _) = system.post(system.payment[1], &pay(&other_payment), Some(json!({"secret": "x"}))).await;
    assert_eq!(code, 404);
    let (code, _) = system.get_as(system.delivery, "/deliveries", &courier).await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn prices_are_the_servers_and_an_idempotency_key_is_the_customers_own() {
    let system = System::start().await;
    let ada = system.customer("ada@example.com");
    let order = |items: Value| json!({"customer": {"name": "Ada", "phone": "12345"}, "items": items});
    let (code, cheap) = system
        .post_as(
            system.order[0],
            "/orders",
            Some(order(json!([{"sku": "TEA-01", "quantity": 1000, "unitPrice": 0.01}]))),
            &ada,
        )
        .await;
    assert_eq!(code, 422, "{cheap}");
    let (code, unknown) =
        system.post_as(system.order[0], "/orders", Some(order(json!([{"sku": "FREE-99", "quantity": 1}]))), &ada).await;
    assert_eq!(code, 422, "{unknown}");
    let (code, created) = system
        .post_as(system.order[0], "/orders", Some(order(json!([{"sku": "TEA-01", "quantity": 1000}]))), &ada)
        .await;
    assert_eq!((code, created["total"].clone()), (201, json!(12500.0)), "{created}");
    let (code, someone_else) = system
        .post_as(system.order[0], "/orders", Some(json!({"customer": {"name": "Ada", "email": "bob@example.com", "phone": "12345"}, "items": [{"sku": "TEA-01", "quantity": 1}]})), &ada)
        .await;
    assert_eq!(code, 422, "an order in someone else's name: {someone_else}");

    // The README's example key, used by two customers: each gets an order of their own.
    let key = "my-first-order";
    let first = system.create_order(system.order[0], "first@example.com", Some(key)).await;
    let second = system.create_order(system.order[1], "second@example.com", Some(key)).await;
    assert_ne!(first.0, second.0);
    assert_ne!(first.1, second.1);
    // And the order id does not derive from the key: a retry of the same key and body finds
    // the same order, but no one can name it in advance.
    let again = system.create_order(system.order[0], "first@example.com", Some(key)).await;
    assert_eq!(again, first);
    let derived = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("shop-order:{key}").as_bytes());
    assert_ne!(first.0, derived.to_string());
}

#[tokio::test]
async fn browsers_get_cors_only_for_the_systems_pages_and_every_answer_is_hardened() {
    let system = System::start().await;
    let own = format!("http://localhost:{}", system.mobile);
    for origin in ["https://evil.example", "null", &format!("http://localhost:{}", system.order[0])] {
        let preflight = system
            .http
            .request(reqwest::Method::OPTIONS, url(system.order[0], "/orders"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .send()
            .await
            .unwrap();
        assert!(preflight.headers().get("access-control-allow-origin").is_none(), "{origin} is not allowed");
    }
    let preflight = system
        .http
        .request(reqwest::Method::OPTIONS, url(system.order[0], "/orders"))
        .header("origin", &own)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type,idempotency-key")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.headers()["access-control-allow-origin"], own.as_str());

    let ada = system.customer("ada@example.com");
    let (order, payment) = system.create_order(system.order[0], "ada@example.com", None).await;
    let (_, view) = system.get_as(system.order[0], &format!("/orders/{order}"), &ada).await;
    let pages = [
        (system.mobile, "/".to_owned()),
        (system.delivery, "/".to_owned()),
        (system.logging, "/".to_owned()),
        (system.email, "/".to_owned()),
        (
            system.payment[0],
            view["paymentUrl"].as_str().unwrap().split(&format!(":{}", system.payment[0])).nth(1).unwrap().to_owned(),
        ),
    ];
    for (port, path) in pages {
        let page = system.http.get(url(port, &path)).send().await.unwrap();
        assert_eq!(page.status(), 200, "{path}");
        let headers = page.headers();
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(!policy.contains("unsafe-inline") && policy.contains("frame-ancestors 'none'"), "{policy}");
        assert!(policy.contains("script-src 'self'"), "{policy}");
        // A page calls its own service and signs in at mobile; only the app calls order too.
        let sign_in = format!("http://localhost:{}", system.mobile);
        let order_api = format!("http://localhost:{}", system.order[0]);
        let connect = policy.split(';').find_map(|d| d.trim().strip_prefix("connect-src ")).unwrap();
        let mut expected = vec!["'self'", sign_in.as_str()];
        if port == system.mobile {
            expected.push(&order_api);
        }
        assert_eq!(connect.split(' ').collect::<Vec<_>>(), expected, "{path}: {policy}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert!(!headers.contains_key("access-control-allow-origin"));
        let html = page.text().await.unwrap();
        assert!(
            !html.contains("<script>") && !html.contains("<style>") && !html.contains(" style="),
            "{path} has inline code"
        );
    }
    let personal = [
        (system.order[0], format!("/orders/{order}"), ada.clone()),
        (system.payment[0], format!("/payments/{payment}"), ada.clone()),
        (system.delivery, "/deliveries".to_owned(), system.courier_token()),
        (system.logging, "/logs".to_owned(), system.operator()),
        (system.email, "/api/emails".to_owned(), system.operator()),
    ];
    for (port, path, who) in personal {
        let response = system.http.get(url(port, &path)).header("authorization", who).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
        assert!(response.headers().contains_key("x-request-id"));
    }
}

#[tokio::test]
async fn floods_are_refused_at_the_door_and_the_service_keeps_answering() {
    let system = System::start().await;

    // 60 orders at once by one customer: the first ones pass, then 429 with Retry-After.
    let flood = system.customer("flood@example.com");
    let creates = (0..60).map(|_| {
        let (system, flood) = (&system, &flood);
        async move {
            let response = system
                .http
                .post(url(system.order[0], "/orders"))
                .header("authorization", flood)
                .json(&support::order_for("flood@example.com"))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.headers().get("retry-after").cloned())
        }
    });
    let answers = futures::future::join_all(creates).await;
    let limited: Vec<_> = answers.iter().filter(|(status, _)| *status == 429).collect();
    assert!(!limited.is_empty() && limited.len() < 60, "{answers:?}");
    assert!(limited.iter().all(|(_, retry)| retry.is_some()), "every 429 says when to retry");
    // Another customer is not held up by the flood.
    system.create_order(system.order[0], "calm@example.com", None).await;

    // Sign-in guesses from one address are limited too.
    let mut statuses = Vec::new();
    for _ in 0..14 {
        let response = system
            .http
            .post(url(system.mobile, "/auth/sign-in"))
            .json(&json!({"email": "calm@example.com", "password": "guess-guess"}))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert!(statuses.contains(&401) && statuses.contains(&429), "{statuses:?}");

    // Half-sent request headers: the connection is closed after the header deadline, and
    // meanwhile the service answers others.
    let mut half_open = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(("127.0.0.1", system.payment[0])).await.unwrap();
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
        half_open.push(stream);
    }
    let (code, _) = system.get(system.payment[0], "/healthz").await;
    assert_eq!(code, 200, "the service answers while 200 requests hang half-sent");
    let started = Instant::now();
    let mut first = half_open.swap_remove(0);
    let mut buffer = [0u8; 256];
    let read = tokio::time::timeout(PATIENCE, first.read(&mut buffer)).await;
    assert!(read.is_ok(), "the server closes a half-sent request (waited {:?})", started.elapsed());
    drop(half_open);

    // SMTP: no mail without the shop's credential, and a few unauthenticated sessions (kept
    // busy with NOOP) do not stop the shop's mail.
    let mut session = smtp(system.smtp).await;
    assert!(session.say("EHLO attacker").await.contains("AUTH PLAIN"));
    assert!(session.say("MAIL FROM:<shop@shop.example>").await.starts_with("530"), "mail before AUTH");
    let wrong = B64_STD.encode("\0notification\0guess");
    assert!(session.say(&format!("AUTH PLAIN {wrong}")).await.starts_with("535"));
    // A flood of sessions from one address: the oldest waiting ones give way to newer ones.
    let mut flood = Vec::new();
    for _ in 0..8 {
        flood.push(smtp(system.smtp).await);
    }
    let mut closed = 0;
    for session in flood.iter_mut().take(4) {
        closed += usize::from(session.try_say("NOOP").await.is_none_or(|reply| reply.starts_with("421")));
    }
    assert_eq!(closed, 4, "the four oldest of eight unauthenticated sessions are closed");
    // While the newest four wait, the shop's own mail goes through.
    let (order, payment) = system.create_order(system.order[0], "mail@example.com", None).await;
    system.complete(&order, &payment).await;
    let (_, mails) = system.notifications(&order, 7).await;
    assert_eq!(mails.len(), 7, "the shop's mail goes through");
    // A session that never authenticates is closed, however busy it keeps itself with NOOP.
    let mut noop = smtp(system.smtp).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        match noop.try_say("NOOP").await {
            Some(reply) if reply.starts_with("250") => {
                assert!(Instant::now() < deadline, "a NOOP-only session stayed open");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            _ => break,
        }
    }
}

const B64_STD: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

struct Smtp {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

async fn smtp(port: u16) -> Smtp {
    let (read, writer) = TcpStream::connect(("127.0.0.1", port)).await.unwrap().into_split();
    let mut reader = BufReader::new(read);
    let mut banner = String::new();
    reader.read_line(&mut banner).await.unwrap();
    assert!(banner.starts_with("220"), "{banner}");
    Smtp { reader, writer }
}

impl Smtp {
    /// Sends a command and returns the whole (multi-line) reply.
    async fn say(&mut self, command: &str) -> String {
        self.try_say(command).await.expect("the mailbox answers")
    }

    /// None when the connection is gone.
    async fn try_say(&mut self, command: &str) -> Option<String> {
        self.writer.write_all(format!("{command}\r\n").as_bytes()).await.ok()?;
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).await.ok()? == 0 {
                return (!reply.is_empty()).then_some(reply);
            }
            reply.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return Some(reply);
            }
        }
    }
}

#[tokio::test]
async fn shop_token_mints_what_the_system_accepts_and_nothing_it_should_not() {
    let system = System::start().await;
    let data = system.data();
    let token = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_shop"))
            .arg("token")
            .args(args)
            .args(["--data-dir", data.path().to_str().unwrap()])
            .output()
            .unwrap()
    };
    let minted = token(&["--role", "customer", "--email", "Script@Example.com"]);
    assert!(minted.status.success(), "{}", String::from_utf8_lossy(&minted.stderr));
    let bearer = format!("Bearer {}", String::from_utf8(minted.stdout).unwrap().trim());
    let (code, orders) = system.get_as(system.order[0], "/orders", &bearer).await;
    assert_eq!((code, orders), (200, json!([])));
    let courier = token(&["--role", "courier"]);
    let bearer = format!("Bearer {}", String::from_utf8(courier.stdout).unwrap().trim());
    assert_eq!(system.get_as(system.delivery, "/deliveries", &bearer).await.0, 200);
    for refused in [
        &["--role", "customer"][..],
        &["--role", "service"],
        &["--role", "courier", "--email", "a@b.co"],
        &["--role", "admin"],
    ] {
        assert!(!token(refused).status.success(), "shop token {refused:?} is refused");
    }
    // A token of another data folder's keys is not accepted here.
    let other = tempfile::tempdir().unwrap();
    shop_platform::secrets::Secrets::new(other.path().join("secrets")).generate(&["mobile"]).unwrap();
    let foreign = std::process::Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(["token", "--role", "operator", "--data-dir", other.path().to_str().unwrap()])
        .output()
        .unwrap();
    let bearer = format!("Bearer {}", String::from_utf8(foreign.stdout).unwrap().trim());
    assert_eq!(system.get_as(system.logging, "/logs", &bearer).await.0, 401);
}
