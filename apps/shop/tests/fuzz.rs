//! Each service's API fuzzed against its own OpenAPI description by schemathesis, on a running
//! `shop up`: every operation, with the token of a role it documents (a customer's, the
//! courier's, the operator's, or the calling service's own), its requests generated from the
//! description (valid ones and invalid ones), its answers checked: no 5xx, only the statuses
//! the description lists, the content type and the body it describes, the headers it names,
//! invalid requests refused, a missing or wrong token refused (see `LEFT_OUT` for the one
//! check that is not run).
//!
//! Left out: the Server-Sent Events streams (`text/event-stream`), which answer as long as
//! they are open (their refusals are checked by the security tests).
//!
//! Needs schemathesis: `SHOP_TEST_SCHEMATHESIS=/path/to/schemathesis` (`.ci/fuzz` installs it
//! with `dev/schemathesis install`). `SHOP_FUZZ_EXAMPLES` sets the examples per operation (50).

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;
use support::System;

/// Every check of schemathesis runs (server errors; statuses, content types, bodies and headers
/// as described; invalid requests refused; an operation's auth not ignored; methods not
/// described answered 405; …) but one: that every request the description allows is accepted.
/// The rules no schema states refuse some (a SKU not in the catalogue, a price not its price,
/// a payment nobody opened), with a 4xx the description lists.
const LEFT_OUT: &str = "positive_data_acceptance";

#[tokio::test]
#[ignore = "needs schemathesis: SHOP_TEST_SCHEMATHESIS=/path/to/schemathesis (.ci/fuzz)"]
async fn every_service_holds_to_its_description_under_fuzzing() {
    let Some(schemathesis) = std::env::var_os("SHOP_TEST_SCHEMATHESIS") else {
        panic!("set SHOP_TEST_SCHEMATHESIS to schemathesis's path (dev/schemathesis install prints it)");
    };
    let examples = std::env::var("SHOP_FUZZ_EXAMPLES").unwrap_or_else(|_| "50".into());
    let system = System::start().await;
    let work = tempfile::tempdir().unwrap();
    let mut cases = BTreeMap::new();
    let mut failed = Vec::new();
    // One instance of each service (the replicas serve the same API).
    for (service, port) in system.instances() {
        if cases.contains_key(service) {
            continue;
        }
        let base = format!("http://127.0.0.1:{port}");
        let document: Value = reqwest::get(format!("{base}/openapi.json")).await.unwrap().json().await.unwrap();
        let (config, streams) = config(&system, service, &document);
        let config_path = work.path().join(format!("{service}.toml"));
        std::fs::write(&config_path, config).unwrap();
        let report = work.path().join(format!("{service}-report.json"));
        let mut command = Command::new(&schemathesis);
        // Its caches (`.schemathesis/`) go to the temporary folder, not the working tree.
        command.current_dir(work.path());
        command
            .arg("--config-file")
            .arg(&config_path)
            .arg("--no-color")
            .arg("run")
            .arg(format!("{base}/openapi.json"))
            .args(["--checks", "all", "--exclude-checks", LEFT_OUT])
            .args(["--max-examples", &examples])
            .args(["--seed", "20261204"])
            .args(["--request-timeout", "10"])
            .args(["--workers", "1"])
            .args(["--warnings", "off"])
            // No example database: each run starts from the seed alone.
            .args(["--generation-database", "none"])
            .arg("--report-json-path")
            .arg(&report);
        for name in &streams {
            command.args(["--exclude-name", name]);
        }
        let output = tokio::task::spawn_blocking(move || command.output()).await.unwrap().expect("schemathesis runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let generated = generated_cases(&stdout);
        println!(
            "{service}: schemathesis generated {generated} test cases ({} operations left out: streams)",
            streams.len()
        );
        cases.insert(service, generated);
        if !output.status.success() {
            println!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
            failed.push(service);
        }
    }
    let total: u64 = cases.values().sum();
    println!("schemathesis: {total} generated test cases in all: {cases:?}");
    assert!(failed.is_empty(), "schemathesis found defects in {failed:?} (their reports are above)");
    for (service, count) in &cases {
        assert!(*count > 0, "schemathesis generated no test case for {service}: did it run at all?");
    }
}

/// The schemathesis configuration for `service`: each protected operation with the token of
/// the first role it documents; and the names of the streams, left out.
fn config(system: &System, service: &str, document: &Value) -> (String, Vec<String>) {
    let mut config = String::new();
    let mut streams = Vec::new();
    for (method, path, operation) in support::openapi_operations(document) {
        let name = format!("{method} {path}");
        if operation["responses"]["200"]["content"].get("text/event-stream").is_some() {
            streams.push(name);
            continue;
        }
        let role = operation["security"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|requirement| requirement["bearer"].as_array()?.first()?.as_str().map(str::to_owned));
        let Some(role) = role else { continue };
        let token = match role.as_str() {
            "customer" => system.customer("fuzz@example.com"),
            "courier" => system.courier_token(),
            "operator" => system.operator(),
            other => {
                let caller = other.strip_prefix("service:").expect("a role a token can have");
                system.service_token(caller, service)
            }
        };
        config.push_str(&format!(
            "[[operations]]\ninclude-name = \"{name}\"\nheaders = {{ Authorization = \"{token}\" }}\n\n"
        ));
    }
    (config, streams)
}

/// `N generated` from schemathesis's summary (`Test cases:\n  N generated, …`).
fn generated_cases(stdout: &str) -> u64 {
    let Some(at) = stdout.find("Test cases:") else { return 0 };
    stdout[at..]
        .split_whitespace()
        .skip(2)
        .zip(stdout[at..].split_whitespace().skip(3))
        .find_map(|(number, word)| (word.starts_with("generated")).then(|| number.parse().ok()).flatten())
        .unwrap_or(0)
}
