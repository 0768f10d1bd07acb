//! Starts the real system for a test: `shop up` (the binary users run) with its embedded
//! broker, on free ports, with a fresh data folder, and stops it when the test ends.
//! Service logs are shown only when `TEST_LOG` is set.

#![allow(dead_code)]

use std::future::Future;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct System {
    child: Child,
    _data: tempfile::TempDir,
    pub http: reqwest::Client,
    pub broker: u16,
    pub order: [u16; 2],
    pub payment: [u16; 2],
    pub delivery: u16,
    pub notification: u16,
    pub logging: u16,
    pub mobile: u16,
    pub email: u16,
    pub smtp: u16,
}

/// Free ports, all held at once while choosing so none is handed out twice.
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N).map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port")).collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

impl System {
    pub async fn start() -> System {
        let [broker, o1, o2, p1, p2, delivery, notification, logging, mobile, email, smtp] = free_ports::<11>();
        let data = tempfile::tempdir().expect("a temporary folder");
        let show_logs = std::env::var_os("TEST_LOG").is_some();
        let output = || if show_logs { Stdio::inherit() } else { Stdio::null() };
        let child = Command::new(env!("CARGO_BIN_EXE_shop"))
            .arg("up")
            .args(["--broker-port", &broker.to_string()])
            .args(["--data-dir", data.path().to_str().unwrap()])
            .args(["--order-ports", &format!("{o1},{o2}")])
            .args(["--payment-ports", &format!("{p1},{p2}")])
            .args(["--delivery-port", &delivery.to_string()])
            .args(["--notification-port", &notification.to_string()])
            .args(["--logging-port", &logging.to_string()])
            .args(["--mobile-port", &mobile.to_string()])
            .args(["--email-port", &email.to_string()])
            .args(["--smtp-port", &smtp.to_string()])
            .env_remove("KAFKA_BROKERS")
            .env_remove("DATABASE_URL")
            .stdout(output())
            .stderr(output())
            .spawn()
            .expect("shop up starts");
        let mut system = System {
            child,
            _data: data,
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap(),
            broker,
            order: [o1, o2],
            payment: [p1, p2],
            delivery,
            notification,
            logging,
            mobile,
            email,
            smtp,
        };
        system.wait_until_ready().await;
        system
    }

    fn ports(&self) -> Vec<u16> {
        vec![
            self.order[0],
            self.order[1],
            self.payment[0],
            self.payment[1],
            self.delivery,
            self.notification,
            self.logging,
            self.mobile,
            self.email,
        ]
    }

    async fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        for port in self.ports() {
            loop {
                if let Some(status) = self.child.try_wait().unwrap() {
                    panic!("shop up exited while starting: {status} (set TEST_LOG=1 to see why)");
                }
                let ready = self.http.get(url(port, "/readyz")).send().await;
                if ready.is_ok_and(|r| r.status().is_success()) {
                    break;
                }
                assert!(Instant::now() < deadline, "the service on port {port} never became ready");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    pub async fn get(&self, port: u16, path: &str) -> (u16, Value) {
        let response = self.http.get(url(port, path)).send().await.expect("GET answered");
        read(response).await
    }

    pub async fn post(&self, port: u16, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.post(url(port, path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("POST answered")).await
    }

    /// Stops `shop up` the way Ctrl-C does and reports whether it exited cleanly.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for System {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}

pub fn url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Polls `check` until it returns Some, or fails the test after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
