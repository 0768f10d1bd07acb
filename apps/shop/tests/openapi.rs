//! The HTTP contract: each service's OpenAPI description (`GET /openapi.json`, committed under
//! `docs/openapi/`). A router is built only from documented handlers (`shop_platform::http::Api`
//! takes nothing but `routes!` of handlers with `#[utoipa::path]`), so every route it serves is
//! in its description; these tests check the rest:
//!
//! - the committed files are what the code describes (run with `UPDATE_OPENAPI=1` to rewrite
//!   them after a deliberate change, as `UPDATE_SCHEMAS=1` does for the event schemas);
//! - every operation but the public ones names the role it needs, and every error answer is
//!   the one JSON error body;
//! - each running service serves its committed description, and every operation in it (none
//!   answers the router's "no such route" or "method not allowed").

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;
use support::{openapi_operations as operations, System};

fn committed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi")
}

fn committed(service: &str) -> String {
    let path = committed_dir().join(format!("{service}.json"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} is missing ({e}); run with UPDATE_OPENAPI=1", path.display()))
}

#[test]
fn the_committed_descriptions_are_what_the_code_describes() {
    let update = std::env::var_os("UPDATE_OPENAPI").is_some();
    let mut expected = BTreeSet::new();
    for (service, document) in shop::openapi_documents() {
        let generated = shop_platform::http::openapi::to_pretty_json(&document);
        let path = committed_dir().join(format!("{service}.json"));
        expected.insert(format!("{service}.json"));
        if update {
            std::fs::create_dir_all(committed_dir()).unwrap();
            std::fs::write(&path, &generated).unwrap();
        } else {
            assert_eq!(committed(service), generated, "{} is stale; run with UPDATE_OPENAPI=1", path.display());
        }
    }
    let present: BTreeSet<String> = std::fs::read_dir(committed_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    assert_eq!(present, expected, "docs/openapi/ holds a description of no service");
}

/// What anyone may call: pages and their files, health, the descriptions, the catalogue, the
/// app's settings and the public keys, signing in, and a payment's page and paying by its
/// link (the link's secret instead of a token).
const PUBLIC: &[&str] = &[
    "GET /",
    "GET /courier",
    "GET /app.css",
    "GET /app.js",
    "GET /assets/courier.css",
    "GET /assets/courier.js",
    "GET /assets/mailbox.css",
    "GET /assets/mailbox.js",
    "GET /assets/ops.css",
    "GET /assets/ops.js",
    "GET /assets/pay.css",
    "GET /assets/pay.js",
    "GET /assets/site.json",
    "GET /assets/ui.js",
    "GET /healthz",
    "GET /readyz",
    "GET /openapi.json",
    "GET /products",
    "GET /api/config",
    "GET /.well-known/jwks.json",
    "POST /auth/customers",
    "POST /auth/sign-in",
    "POST /auth/staff/sign-in",
    "GET /pay/{payment_id}",
];

#[test]
fn every_operation_but_the_public_ones_names_the_role_it_needs() {
    for (service, document) in shop::openapi_documents() {
        let document = serde_json::to_value(&document).unwrap();
        for (method, path, operation) in operations(&document) {
            let name = format!("{method} {path}");
            let requirements = operation["security"].as_array().cloned().unwrap_or_default();
            let roles: Vec<&Value> = requirements.iter().filter_map(|r| r.get("bearer")).collect();
            if PUBLIC.contains(&name.as_str()) {
                assert!(roles.is_empty(), "{service}: {name} is public, yet documented with roles {roles:?}");
                continue;
            }
            assert!(!roles.is_empty(), "{service}: {name} names no role (deny by default)");
            for role in roles.iter().flat_map(|r| r.as_array().cloned().unwrap_or_default()) {
                let role = role.as_str().unwrap_or_default();
                let known = ["customer", "courier", "operator"].contains(&role)
                    || role.strip_prefix("service:").is_some_and(|s| shop_events::service::ALL.contains(&s));
                assert!(known, "{service}: {name} names the role {role:?}, which no token has");
            }
            for status in ["401", "403"] {
                assert!(operation["responses"].get(status).is_some(), "{service}: {name} does not list {status}");
            }
        }
    }
}

#[test]
fn every_error_answer_is_the_error_body() {
    for (service, document) in shop::openapi_documents() {
        let document = serde_json::to_value(&document).unwrap();
        for (method, path, operation) in operations(&document) {
            for (status, response) in operation["responses"].as_object().expect("responses") {
                if !(status.starts_with('4') || status.starts_with('5')) {
                    continue;
                }
                let response = match response["$ref"].as_str() {
                    Some(reference) => {
                        let name = reference.trim_start_matches("#/components/responses/");
                        document["components"]["responses"][name].clone()
                    }
                    None => response.clone(),
                };
                let schema = &response["content"]["application/json"]["schema"];
                assert_eq!(
                    schema["$ref"], "#/components/schemas/Error",
                    "{service}: {method} {path} answers {status} with something else than the error body: {response}"
                );
            }
        }
    }
}

/// A path of the description with its parameters filled in.
fn concrete(path: &str) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    path.replace("{order_id}", &id)
        .replace("{payment_id}", &id)
        .replace("{topic}", "orders-created.dlq")
        .replace("{partition}", "0")
        .replace("{offset}", "0")
}

#[tokio::test]
async fn each_service_serves_its_description_and_every_operation_in_it() {
    let system = System::start().await;
    let http = reqwest::Client::new();
    for (service, port) in system.instances() {
        let base = format!("http://127.0.0.1:{port}");
        let response = http.get(format!("{base}/openapi.json")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{service}'s /openapi.json");
        assert_eq!(response.headers()["content-type"], "application/json");
        let served = response.text().await.unwrap();
        assert_eq!(served, committed(service), "{service} serves another description than docs/openapi/{service}.json");
        let document: Value = serde_json::from_str(&served).unwrap();
        let operations = operations(&document);
        assert!(operations.len() >= 6, "{service} describes only {} operations", operations.len());
        for (method, path, _) in operations {
            let url = format!("{base}{}", concrete(&path));
            let request = http.request(method.parse().unwrap(), &url);
            let response = request.send().await.unwrap_or_else(|e| panic!("{service}: {method} {path}: {e}"));
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            let fallback = (status == 404 && body.contains("no such route")) || status == 405;
            assert!(!fallback, "{service} documents {method} {path} but does not serve it: {status} {body}");
        }
    }
}
