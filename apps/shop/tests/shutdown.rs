//! SIGTERM stops a service gracefully: it stops taking requests, finishes, flushes and
//! commits, and exits 0 within a bounded time.

mod support;

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use support::System;

async fn serve_then_terminate(system: &System, service: &str, extra: &[String]) {
    let port = shop_platform::ports::unused_one().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(["serve", service, "--http-host", "127.0.0.1", "--http-port", &port.to_string()])
        .args(["--instance-id", &format!("{service}-sigterm")])
        .args(["--data-dir", data.path().to_str().unwrap()])
        .args(["--secrets-dir", system.secrets().dir().to_str().unwrap()])
        .args(extra)
        .env("KAFKA_BROKERS", system.brokers())
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    support::eventually(&format!("{service} to be ready"), support::PATIENCE, || async {
        let ready = system.http.get(support::url(port, "/readyz")).send().await;
        ready.ok().filter(|r| r.status().is_success()).map(|_| ())
    })
    .await;
    terminate_cleanly(&mut child, service).await;
}

/// Sends `child` (the service `what`) SIGTERM; fails unless it exits 0 within 30 s.
async fn terminate_cleanly(child: &mut Child, what: &str) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = exit_within_30_s(child, &format!("{what} did not stop within 30 s of SIGTERM")).await;
    assert!(status.success(), "{what} exited with {status} on SIGTERM");
}

/// How `child` exited, once it has; kills it and fails with `otherwise` if it still runs 30 s on.
async fn exit_within_30_s(child: &mut Child, otherwise: &str) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{otherwise}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn services_exit_cleanly_on_sigterm() {
    let system = System::start().await;
    let payment_url = support::url(system.payment[0], "");
    serve_then_terminate(&system, "order", &["--payment-url".into(), payment_url]).await;
    serve_then_terminate(&system, "notification", &[]).await;
    serve_then_terminate(&system, "logging", &[]).await;
}

/// A service that cannot start exits at once with an error, also when started as `shop up`
/// starts it (watching its stdin for the parent going away): `shop up` restarts what exits,
/// so a process that printed its error and hung would leave its service down for good (the
/// fault campaign of 2026-12-04: logging killed while PostgreSQL restarted, its restart
/// refused by the database, its consumer group empty from then on).
#[tokio::test]
async fn a_service_that_cannot_start_exits_even_while_its_parent_watch_reads_stdin() {
    // Its HTTP port is taken: the service opens its database, then fails to listen.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let data = tempfile::tempdir().unwrap();
    let mut child = support::logging_with_no_broker(env!("CARGO_BIN_EXE_shop").as_ref(), port, data.path())
        .env(shop::PARENT_WATCH_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its parent is alive: stdin stays open.
    let _stdin = child.stdin.take();
    let status = exit_within_30_s(&mut child, "a service that failed to start was still running 30 s later").await;
    let mut error = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut error).unwrap();
    assert!(!status.success(), "it failed: {status}");
    assert!(error.contains("error:"), "it says why: {error}");
}

/// A service started while its broker cannot be reached (Kafka down, or not up yet) still
/// stops on SIGTERM, well within Kubernetes' 30 s grace: it used to wait out the timeouts of
/// its first requests to the broker (a minute or more) before it looked at the signal.
#[tokio::test]
async fn a_service_with_no_broker_to_reach_stops_on_sigterm() {
    let port = shop_platform::ports::unused_one().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut child = support::logging_with_no_broker(env!("CARGO_BIN_EXE_shop").as_ref(), port, data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    support::until_alive(port).await;
    terminate_cleanly(&mut child, "logging with no broker").await;
}
