//! Starts the real system for a test: `shop up` (the binary users run) with its embedded
//! broker, on free ports, with a fresh data folder, and stops it when the test ends.
//! Service logs are shown live when `TEST_LOG` is set; otherwise they go to a file in the data
//! folder, whose last lines are printed when the test fails.
//!
//! Callers authenticate as users do: tokens are minted with the key `shop up` generated in
//! the data folder (what `shop token` does), one per customer, plus the courier's and the
//! operator's.
//!
//! With `SHOP_TEST_KAFKA_BROKERS` set, the system runs on that Kafka cluster instead (the
//! topics must exist; run such tests one at a time, as they share topics and groups); with
//! `SHOP_TEST_DATABASE_URL` (`postgres://user:password@host:port`), on PostgreSQL, with fresh
//! databases per test.

#![allow(dead_code)]

use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use shop_platform::auth::{Role, SigningKey};

pub struct System {
    child: std::sync::Mutex<Child>,
    /// How `shop up` is started, again after `kill_and_start_again`.
    launch: Launch,
    /// How often `shop up` was started: as often, its log says it is up.
    starts: std::sync::atomic::AtomicUsize,
    data: std::sync::Arc<tempfile::TempDir>,
    pub http: reqwest::Client,
    brokers: String,
    pub order: [u16; 2],
    pub payment: [u16; 2],
    pub delivery: u16,
    pub notification: u16,
    pub logging: u16,
    pub mobile: u16,
    pub email: u16,
    pub smtp: u16,
    /// The customer (email) of every order and payment created through `create_order`.
    owners: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

/// `shop up` with its arguments, the variables it must not inherit, and its log file (the
/// terminal when None): what starts it, the first time and again.
struct Launch {
    args: Vec<String>,
    unset: Vec<&'static str>,
    env: Vec<(String, String)>,
    log: Option<std::path::PathBuf>,
}

impl Launch {
    fn spawn(&self) -> Child {
        let log_file = self.log.as_ref().map(|path| {
            std::fs::OpenOptions::new().create(true).append(true).open(path).expect("a log file in the data folder")
        });
        let output = || match &log_file {
            Some(file) => Stdio::from(file.try_clone().expect("the log file opens twice")),
            None => Stdio::inherit(),
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_shop"));
        for name in &self.unset {
            command.env_remove(name);
        }
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        command.args(&self.args).stdout(output()).stderr(output()).spawn().expect("shop up starts")
    }
}

/// The ports a system listens on: its embedded broker and every service.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
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

impl Ports {
    /// Ports free now and taken by nothing else of this process.
    pub fn unused() -> Ports {
        let [broker, o1, o2, p1, p2, delivery, notification, logging, mobile, email, smtp] =
            shop_platform::ports::unused::<11>().expect("11 free ports");
        Ports { broker, order: [o1, o2], payment: [p1, p2], delivery, notification, logging, mobile, email, smtp }
    }
}

/// A service process stopped with SIGSTOP.
pub struct Paused {
    pid: i32,
}

impl Paused {
    /// Lets the process run on (SIGCONT); nothing if it was killed meanwhile.
    pub fn resume(self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), nix::sys::signal::Signal::SIGCONT);
    }
}

/// What `shop up` prints once every service answers.
const UP_LINE: &str = "Shop is up.";

impl System {
    pub async fn start() -> System {
        Self::start_with(std::sync::Arc::new(tempfile::tempdir().expect("a temporary folder"))).await
    }

    /// Starts on an existing data folder, e.g. the one of a system stopped before.
    pub async fn start_with(data: std::sync::Arc<tempfile::TempDir>) -> System {
        Self::start_on(data, Ports::unused(), &[]).await
    }

    /// Starts on `ports`, with more arguments for `shop up` (e.g. `--advertised-host`).
    pub async fn start_on(data: std::sync::Arc<tempfile::TempDir>, ports: Ports, more: &[&str]) -> System {
        Self::start_with_env(data, ports, more, &[]).await
    }

    /// As `start_on`, with more environment variables for `shop up` and its services.
    pub async fn start_with_env(
        data: std::sync::Arc<tempfile::TempDir>,
        ports: Ports,
        more: &[&str],
        env: &[(&str, &str)],
    ) -> System {
        let Ports { broker, order: [o1, o2], payment: [p1, p2], delivery, notification, logging, mobile, email, smtp } =
            ports;
        let log = std::env::var_os("TEST_LOG").is_none().then(|| data.path().join(format!("shop-up-{broker}.log")));
        let mut args: Vec<String> = vec!["up".into()];
        let mut unset = vec![];
        let brokers = match std::env::var("SHOP_TEST_KAFKA_BROKERS") {
            Ok(external) => {
                args.extend(["--kafka-brokers".into(), external.clone()]);
                external
            }
            Err(_) => {
                args.extend(["--broker-port".into(), broker.to_string()]);
                unset.push("KAFKA_BROKERS");
                format!("127.0.0.1:{broker}")
            }
        };
        match std::env::var("SHOP_TEST_DATABASE_URL") {
            Ok(server) => {
                let name: String = data
                    .path()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .collect();
                let url = format!("{}/t{}", server.trim_end_matches('/'), name.to_lowercase());
                args.extend(["--database-url".into(), url]);
            }
            Err(_) => unset.push("DATABASE_URL"),
        }
        for (flag, value) in [
            ("--data-dir", data.path().to_str().unwrap().to_owned()),
            ("--order-ports", format!("{o1},{o2}")),
            ("--payment-ports", format!("{p1},{p2}")),
            ("--delivery-port", delivery.to_string()),
            ("--notification-port", notification.to_string()),
            ("--logging-port", logging.to_string()),
            ("--mobile-port", mobile.to_string()),
            ("--email-port", email.to_string()),
            ("--smtp-port", smtp.to_string()),
        ] {
            args.extend([flag.into(), value]);
        }
        args.extend(more.iter().map(|arg| (*arg).to_owned()));
        let env = env.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
        let launch = Launch { args, unset, env, log };
        let system = System {
            child: std::sync::Mutex::new(launch.spawn()),
            launch,
            starts: std::sync::atomic::AtomicUsize::new(1),
            data,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_idle_timeout(shop_platform::http::CLIENT_IDLE_TIMEOUT)
                .build()
                .unwrap(),
            brokers,
            order: [o1, o2],
            payment: [p1, p2],
            delivery,
            notification,
            logging,
            mobile,
            email,
            smtp,
            owners: Default::default(),
        };
        system.wait_until_ready().await;
        system
    }

    /// `shop up` and every service SIGKILLed at once (`kill_everything`), then `shop up` started
    /// again as before: on the same ports and data folder, so clients carry on where they were.
    pub async fn kill_and_start_again(&self) {
        self.kill_everything();
        *self.child.lock().unwrap() = self.launch.spawn();
        self.starts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.wait_until_ready().await;
    }

    fn try_wait(&self) -> Option<std::process::ExitStatus> {
        self.child.lock().unwrap().try_wait().unwrap()
    }

    fn pid(&self) -> i32 {
        self.child.lock().unwrap().id() as i32
    }

    /// Every service instance's HTTP port, with the name of its service (order and payment
    /// twice: their two replicas).
    pub fn instances(&self) -> Vec<(&'static str, u16)> {
        vec![
            ("order", self.order[0]),
            ("order", self.order[1]),
            ("payment", self.payment[0]),
            ("payment", self.payment[1]),
            ("delivery", self.delivery),
            ("notification", self.notification),
            ("logging", self.logging),
            ("mobile", self.mobile),
            ("email", self.email),
        ]
    }

    async fn wait_until_ready(&self) {
        let within = Duration::from_secs(180);
        let deadline = Instant::now() + within;
        let services: Vec<(String, String)> =
            self.instances().into_iter().map(|(name, port)| (name.to_owned(), url(port, ""))).collect();
        shop_platform::http::wait_until_ready(&services, within, |_| match self.try_wait() {
            Some(status) => anyhow::bail!("shop up exited while starting: {status}"),
            None => Ok(()),
        })
        .await
        .expect("every service becomes ready");
        // `shop up` checks every service itself before it says it is up, and a service that
        // exits before then (a test killing it) stops the whole system as a failed start. So
        // wait for its word too (when its output goes to the log file; with TEST_LOG it goes to
        // the terminal and cannot be watched).
        let Some(log) = &self.launch.log else { return };
        loop {
            let starts = self.starts.load(std::sync::atomic::Ordering::SeqCst);
            if std::fs::read_to_string(log).is_ok_and(|text| text.matches(UP_LINE).count() >= starts) {
                return;
            }
            if let Some(status) = self.try_wait() {
                panic!("shop up exited while starting: {status}");
            }
            assert!(Instant::now() < deadline, "shop up never said {UP_LINE:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The secrets folder `shop up` generated in the data folder.
    pub fn secrets(&self) -> shop_platform::secrets::Secrets {
        shop_platform::secrets::Secrets::new(self.data.path().join("secrets"))
    }

    /// `Bearer <token>` for a person: a customer by email, or the courier or the operator.
    pub fn bearer(&self, role: Role, email: Option<&str>) -> String {
        let key = SigningKey::load(&self.secrets(), shop_platform::auth::PEOPLE_ISSUER).expect("the people key");
        let subject = email.map_or_else(|| role.as_str().to_owned(), shop_platform::auth::customer_subject);
        format!("Bearer {}", key.mint_person(&subject, role, Duration::from_secs(3600)).expect("a token"))
    }

    /// `Bearer <token>` of `service` calling `audience`, signed with the service's own key.
    pub fn service_token(&self, service: &str, audience: &str) -> String {
        let key = SigningKey::load(&self.secrets(), service).expect("the service's key");
        format!("Bearer {}", key.mint(service, Role::Service, audience, Duration::from_secs(600)).expect("a token"))
    }

    pub fn customer(&self, email: &str) -> String {
        self.bearer(Role::Customer, Some(email))
    }

    pub fn courier_token(&self) -> String {
        self.bearer(Role::Courier, None)
    }

    pub fn operator(&self) -> String {
        self.bearer(Role::Operator, None)
    }

    /// Notes that `id` (an order or a payment) is the customer `email`'s.
    pub fn remember(&self, id: &str, email: &str) {
        self.owners.lock().unwrap().insert(id.to_owned(), email.to_owned());
    }

    /// The customer who created `id` (an order or a payment) through `create_order`.
    pub fn owner(&self, id: &str) -> String {
        let owners = self.owners.lock().unwrap();
        owners.get(id).cloned().unwrap_or_else(|| panic!("{id} was not created through create_order"))
    }

    /// The token of the customer who created `id`.
    pub fn owner_token(&self, id: &str) -> String {
        self.customer(&self.owner(id))
    }

    /// An anonymous GET.
    pub async fn get(&self, port: u16, path: &str) -> (u16, Value) {
        let response = self.http.get(url(port, path)).send().await.expect("GET answered");
        read(response).await
    }

    /// A GET with `authorization` (a `Bearer …` value).
    pub async fn get_as(&self, port: u16, path: &str, authorization: &str) -> (u16, Value) {
        let response =
            self.http.get(url(port, path)).header("authorization", authorization).send().await.expect("GET answered");
        read(response).await
    }

    /// A GET that may find the service down (being restarted): None then.
    pub async fn try_get_as(&self, port: u16, path: &str, authorization: &str) -> Option<(u16, Value)> {
        Some(read(self.http.get(url(port, path)).header("authorization", authorization).send().await.ok()?).await)
    }

    /// An anonymous POST.
    pub async fn post(&self, port: u16, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.post(url(port, path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("POST answered")).await
    }

    /// A POST with `authorization` (a `Bearer …` value).
    pub async fn post_as(&self, port: u16, path: &str, body: Option<Value>, authorization: &str) -> (u16, Value) {
        let mut request = self.http.post(url(port, path)).header("authorization", authorization);
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("POST answered")).await
    }

    /// Pays `payment_id` as its customer, on the payment replica at `port`.
    pub async fn pay(&self, port: u16, payment_id: &str) -> (u16, Value) {
        self.post_as(port, &format!("/payments/{payment_id}/pay"), None, &self.owner_token(payment_id)).await
    }

    /// `pay`, or None when the replica is down (being restarted).
    pub async fn try_pay(&self, port: u16, payment_id: &str) -> Option<u16> {
        let path = format!("/payments/{payment_id}/pay");
        let request = self.http.post(url(port, &path)).header("authorization", self.owner_token(payment_id));
        Some(request.send().await.ok()?.status().as_u16())
    }

    pub fn data(&self) -> std::sync::Arc<tempfile::TempDir> {
        self.data.clone()
    }

    pub fn brokers(&self) -> String {
        self.brokers.clone()
    }

    /// The processes this system's `shop up` started: pid and command line.
    fn children(&self) -> Vec<(i32, Vec<String>)> {
        let parent = self.pid().to_string();
        let mut children = vec![];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
            if !status.lines().any(|l| l.strip_prefix("PPid:").is_some_and(|p| p.trim() == parent)) {
                continue;
            }
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            children.push((pid.parse().unwrap(), args));
        }
        children
    }

    /// SIGKILLs the service process `instance` (e.g. `order-1`) that this system's `shop up`
    /// started; `shop up` then restarts it. Returns the pid killed.
    pub fn kill_service(&self, instance: &str) -> i32 {
        let pid = self.service_pid(instance);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        pid
    }

    /// Freezes the service process `instance` with SIGSTOP, as a machine stalling would, until
    /// `resume` (or the end of the test: the system's end kills it stopped or not).
    pub fn pause_service(&self, instance: &str) -> Paused {
        let pid = self.service_pid(instance);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGSTOP).unwrap();
        Paused { pid }
    }

    /// The pid of `instance`, waiting while `shop up` is still starting it again (it was just
    /// killed); fails after 30 s.
    fn service_pid(&self, instance: &str) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = self
                .children()
                .into_iter()
                .find(|(_, args)| args.windows(2).any(|w| w[0] == "--instance-id" && w[1] == instance));
            match found {
                Some((pid, _)) => return pid,
                None if Instant::now() > deadline => panic!("no running {instance} under shop up"),
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// SIGKILLs `shop up` and every service process it started, all at once (as when the
    /// machine's power goes, short of the page cache), and waits until `shop up` is gone.
    pub fn kill_everything(&self) {
        let mut pids = vec![self.pid()];
        pids.extend(self.children().into_iter().map(|(pid, _)| pid));
        for pid in &pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGKILL);
        }
        self.child.lock().unwrap().wait().unwrap();
        // The services were killed too; wait until none is left holding a port or a file.
        for pid in &pids[1..] {
            let path = format!("/proc/{pid}");
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::path::Path::new(&path).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The customers of the orders this system created, for a system started again on its
    /// data folder (`remember`).
    pub fn owners(&self) -> Vec<(String, String)> {
        self.owners.lock().unwrap().iter().map(|(id, email)| (id.clone(), email.clone())).collect()
    }

    /// Creates an order as the customer `email` and returns (orderId, paymentId).
    pub async fn create_order(&self, port: u16, email: &str, key: Option<&str>) -> (String, String) {
        let mut request =
            self.http.post(url(port, "/orders")).header("authorization", self.customer(email)).json(&order_for(email));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let (code, created) = read(request.send().await.unwrap()).await;
        assert_eq!(code, 201, "{created}");
        let ids = (created["orderId"].as_str().unwrap().to_owned(), created["paymentId"].as_str().unwrap().to_owned());
        let mut owners = self.owners.lock().unwrap();
        owners.insert(ids.0.clone(), email.to_owned());
        owners.insert(ids.1.clone(), email.to_owned());
        ids
    }

    pub async fn wait_for_status(&self, order_id: &str, status: &str) {
        let path = format!("/orders/{order_id}");
        let token = self.owner_token(order_id);
        let mut attempt = 0;
        eventually(&format!("order {order_id} to be {status}"), PATIENCE, || {
            // Ask either replica, as a client behind a load balancer would.
            attempt += 1;
            let (port, path, token) = (self.order[attempt % 2], path.clone(), token.clone());
            async move {
                let (code, order) = self.try_get_as(port, &path, &token).await?;
                (code == 200 && order["status"] == status).then_some(())
            }
        })
        .await
    }

    /// Takes an order from payment to delivered through the public APIs.
    pub async fn complete(&self, order_id: &str, payment_id: &str) {
        let (code, answer) = self.pay(self.payment[0], payment_id).await;
        assert_eq!(code, 200, "{answer}");
        self.wait_for_status(order_id, "shipping").await;
        self.courier(order_id, "shipped").await;
        self.wait_for_status(order_id, "shipped").await;
        self.courier(order_id, "delivered").await;
        self.wait_for_status(order_id, "delivered").await;
    }

    /// A courier action, retried while the system is catching up (e.g. after a restart).
    pub async fn courier(&self, order_id: &str, action: &str) {
        let path = format!("/deliveries/{order_id}/{action}");
        let token = self.courier_token();
        eventually(&format!("courier {action} of {order_id}"), PATIENCE, || async {
            let request = self.http.post(url(self.delivery, &path)).header("authorization", &token);
            request.send().await.ok().filter(|r| r.status() == 202).map(|_| ())
        })
        .await
    }

    /// Marks every shipped order delivered, then checks each reached every stage once, with
    /// 7 pushes, 7 emails and no doubled audit record, once every group has caught up.
    pub async fn deliver_all_and_check_each_once(&self, orders: &[(String, String)]) {
        for (order_id, _) in orders {
            self.wait_for_status(order_id, "shipped").await;
            self.courier(order_id, "delivered").await;
        }
        for (order_id, _) in orders {
            self.wait_for_status(order_id, "delivered").await;
            self.notifications(order_id, 7).await;
        }
        self.wait_until_consumed().await;
        for (order_id, _) in orders {
            let (order, pushes, emails, actions) = observed(self, order_id).await;
            assert_once_each(&order, pushes, emails, &actions);
        }
    }

    /// Each stage event of each order was published once (an event id at most repeated).
    pub async fn assert_each_stage_published_once(&self, orders: &[(String, String)]) {
        for topic in shop_events::Topic::STAGES.map(shop_events::Topic::name) {
            let (brokers, t) = (self.brokers(), topic.to_owned());
            let all = tokio::task::spawn_blocking(move || kafka::read_all(&brokers, &t)).await.unwrap();
            for (order_id, _) in orders {
                let ids: BTreeSet<&str> = all
                    .iter()
                    .filter(|r| r.key.as_deref() == Some(order_id.as_str()))
                    .filter_map(|r| r.header("event-id"))
                    .collect();
                assert_eq!(ids.len(), 1, "{topic} has {} distinct events for {order_id}", ids.len());
            }
        }
    }

    /// Waits for `count` pushes and emails for the order and returns what arrived.
    pub async fn notifications(&self, order_id: &str, count: usize) -> (Vec<Value>, Vec<Value>) {
        let token = self.owner_token(order_id);
        let list = |port: u16, path: String| {
            let token = token.clone();
            async move {
                let (_, items) = self.try_get_as(port, &path, &token).await.unwrap_or_default();
                items.as_array().cloned().unwrap_or_default()
            }
        };
        let pushes = eventually(&format!("{count} pushes for {order_id}"), PATIENCE, || async {
            let items = list(self.mobile, format!("/api/notifications?orderId={order_id}")).await;
            (items.len() >= count).then_some(items)
        })
        .await;
        let emails = eventually(&format!("{count} emails for {order_id}"), PATIENCE, || async {
            let items = list(self.email, format!("/api/emails?orderId={order_id}")).await;
            (items.len() >= count).then_some(items)
        })
        .await;
        (pushes, emails)
    }

    /// Waits until every consumer group has committed up to the end of its topics.
    pub async fn wait_until_consumed(&self) {
        let brokers = self.brokers();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let check = brokers.clone();
            let done = tokio::task::spawn_blocking(move || {
                shop_events::group::SUBSCRIPTIONS.iter().all(|(group, topics)| {
                    let names: Vec<&str> = topics.iter().map(|t| t.name()).collect();
                    kafka::caught_up(&check, group, &names)
                })
            })
            .await
            .unwrap();
            if done {
                return;
            }
            if Instant::now() >= deadline {
                let report = tokio::task::spawn_blocking(move || kafka::report(&brokers)).await.unwrap();
                panic!("timed out waiting for every consumer group to catch up\n{report}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops `shop up` the way Ctrl-C does and reports whether it exited cleanly.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.pid());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let mut child = self.child.lock().unwrap();
                let _ = child.kill();
                return child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for System {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if self.child.lock().unwrap().try_wait().ok().flatten().is_none() {
            if failed {
                eprintln!("--- consumer groups when the test failed ---\n{}", kafka::report(&self.brokers));
            }
            self.stop();
        }
        if let (true, Some(log)) = (failed, &self.launch.log) {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
            eprintln!("--- last {} lines of the system's log ({}) ---\n{}", tail.len(), log.display(), tail.join("\n"));
        }
    }
}

/// How much of the system's log a failed test shows.
const LOG_TAIL: usize = 1500;

use std::collections::BTreeSet;

/// What the customer and the operator can see of one order.
pub async fn observed(system: &System, order_id: &str) -> (Value, usize, usize, Vec<String>) {
    let customer = system.owner_token(order_id);
    let (_, order) = system.get_as(system.order[0], &format!("/orders/{order_id}"), &customer).await;
    let (_, pushes) = system.get_as(system.mobile, &format!("/api/notifications?orderId={order_id}"), &customer).await;
    let (_, emails) = system.get_as(system.email, &format!("/api/emails?orderId={order_id}"), &customer).await;
    let (_, logs) = system.get_as(system.logging, &format!("/logs?orderId={order_id}"), &system.operator()).await;
    let actions = logs.as_array().unwrap().iter().map(|l| l["action"].as_str().unwrap().to_owned()).collect();
    (order, pushes.as_array().unwrap().len(), emails.as_array().unwrap().len(), actions)
}

pub fn assert_once_each(order: &Value, pushes: usize, emails: usize, actions: &[String]) {
    assert_eq!(order["status"], "delivered");
    let history: Vec<&str> =
        order["history"].as_array().unwrap().iter().map(|h| h["stage"].as_str().unwrap()).collect();
    assert_eq!(history.len(), 7, "{history:?}");
    assert_eq!(history.iter().collect::<BTreeSet<_>>().len(), 7, "a stage doubled: {history:?}");
    assert_eq!((pushes, emails), (7, 7), "pushes and emails");
    let distinct: BTreeSet<&String> = actions.iter().collect();
    assert_eq!(distinct.len(), actions.len(), "an audit record doubled: {actions:?}");
    assert_eq!(actions.len(), 10, "{actions:?}");
}

pub const PATIENCE: Duration = Duration::from_secs(120);

/// An order body as the app sends it for the customer `email`: one tea, at the catalogue's price.
pub fn order_for(email: &str) -> Value {
    serde_json::json!({
        "customer": {"name": "Grace Hopper", "email": email, "phone": "+1 555 0100"},
        "items": [{"sku": "TEA-01", "quantity": 1}]
    })
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

/// Each operation of an OpenAPI description: (method in upper case, path, the operation).
pub fn openapi_operations(document: &Value) -> Vec<(String, String, Value)> {
    let mut all = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            all.push((method.to_uppercase(), path.clone(), operation.clone()));
        }
    }
    all
}

/// Kafka access for tests: read a topic, write raw records, see what a group has done.
pub mod kafka {
    use std::time::{Duration, Instant};

    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Header, Headers, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::types::RDKafkaErrorCode;
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

    #[derive(Clone, Debug)]
    pub struct Record {
        pub key: Option<String>,
        pub payload: Option<Vec<u8>>,
        pub headers: Vec<(String, String)>,
    }

    impl Record {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
        }
    }

    fn reader(brokers: &str, group: &str) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("a test consumer")
    }

    /// The low and high watermark of every partition of `topic`. A real cluster answers "not
    /// leader" for a while after a broker came back and leadership moves to it again; that is
    /// asked again until a deadline, any other error fails at once.
    fn watermarks(consumer: &BaseConsumer, topic: &str) -> Vec<(i32, i64, i64)> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).and_then(|metadata| {
                let partitions = metadata.topics()[0].partitions().iter().map(|p| p.id());
                partitions
                    .map(|p| {
                        consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).map(|(low, high)| (p, low, high))
                    })
                    .collect::<Result<Vec<_>, _>>()
            });
            match answer {
                Ok(watermarks) => return watermarks,
                Err(e) if e.rdkafka_error_code().is_some_and(leadership_moving) && Instant::now() < deadline => {
                    eprintln!("watermarks of {topic}: {e}; asking again");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("watermarks of {topic}: {e}"),
            }
        }
    }

    fn leadership_moving(code: RDKafkaErrorCode) -> bool {
        matches!(
            code,
            RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
        )
    }

    /// Every record now on `topic` (all partitions), read without joining any group.
    pub fn read_all(brokers: &str, topic: &str) -> Vec<Record> {
        let consumer = reader(brokers, "shop-test-reader");
        let watermarks = watermarks(&consumer, topic);
        let partitions: Vec<i32> = watermarks.iter().map(|&(p, _, _)| p).collect();
        let mut assignment = TopicPartitionList::new();
        let mut ends = std::collections::HashMap::new();
        let mut next = std::collections::HashMap::new();
        for &(p, low, high) in &watermarks {
            ends.insert(p, high);
            next.insert(p, low);
            assignment.add_partition_offset(topic, p, Offset::Beginning).unwrap();
        }
        consumer.assign(&assignment).unwrap();
        let mut records = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let done = |next: &std::collections::HashMap<i32, i64>| partitions.iter().all(|p| next[p] >= ends[p]);
        while !done(&next) && Instant::now() < deadline {
            let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) else { continue };
            let position = next.get_mut(&message.partition()).unwrap();
            if message.offset() < *position {
                continue; // seen already
            }
            *position = message.offset() + 1;
            records.push(Record {
                key: message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                payload: message.payload().map(<[u8]>::to_vec),
                headers: message
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
        assert!(done(&next), "could not read all of {topic}: at {next:?} of {ends:?}");
        records
    }

    pub fn records_for(brokers: &str, topic: &str, key: &str) -> Vec<Record> {
        read_all(brokers, topic).into_iter().filter(|r| r.key.as_deref() == Some(key)).collect()
    }

    pub async fn produce(brokers: &str, topic: &str, record: &Record) {
        let producer: FutureProducer =
            ClientConfig::new().set("bootstrap.servers", brokers).create().expect("a test producer");
        let mut headers = OwnedHeaders::new();
        for (key, value) in &record.headers {
            headers = headers.insert(Header { key, value: Some(value) });
        }
        let mut out = FutureRecord::to(topic).headers(headers);
        if let Some(key) = &record.key {
            out = out.key(key);
        }
        if let Some(payload) = &record.payload {
            out = out.payload(payload);
        }
        producer.send(out, Duration::from_secs(10)).await.map_err(|(e, _)| e).expect("record produced");
    }

    pub use shop_testkit::{positions, Position};

    /// Every consumer group of the system as the broker describes it: its state and its
    /// members' client ids, sorted.
    pub fn groups(brokers: &str) -> Vec<(String, String, Vec<String>)> {
        let client = reader(brokers, "groups-observer");
        let mut groups: Vec<(String, String, Vec<String>)> = shop_events::group::SUBSCRIPTIONS
            .iter()
            .map(|(group, _)| {
                let list = client.fetch_group_list(Some(group), Duration::from_secs(10)).expect("groups described");
                let info = list.groups().iter().find(|g| g.name() == *group);
                let state = info.map_or("absent", |g| g.state()).to_owned();
                let mut members: Vec<String> =
                    info.map(|g| g.members().iter().map(|m| m.client_id().to_owned()).collect()).unwrap_or_default();
                members.sort();
                ((*group).to_owned(), state, members)
            })
            .collect();
        groups.sort();
        groups
    }

    /// Every group's position, one line per partition. For a failed test's report.
    /// Partitions behind first (with their groups' states and members), so the start of a
    /// long report, which is what a truncated CI log keeps, says what is stuck.
    pub fn report(brokers: &str) -> String {
        let (mut behind, mut done) = (Vec::new(), 0);
        for (group, topics) in shop_events::group::SUBSCRIPTIONS {
            let names: Vec<&str> = topics.iter().map(|t| t.name()).collect();
            match positions(brokers, group, &names, Duration::from_secs(2)) {
                Ok(positions) => {
                    for p in positions {
                        if p.caught_up() {
                            done += 1;
                        } else {
                            behind.push(format!(
                                "{group} {}/{}: committed {:?}, end {}",
                                p.topic, p.partition, p.committed, p.end
                            ));
                        }
                    }
                }
                Err(error) => behind.push(format!("{group}: the cluster did not answer: {error}")),
            }
        }
        let states = std::panic::catch_unwind(|| groups(brokers)).map_or_else(
            |_| "the groups could not be described".to_owned(),
            |groups| {
                let lines: Vec<String> =
                    groups.iter().map(|(group, state, members)| format!("{group}: {state} {members:?}")).collect();
                lines.join("\n")
            },
        );
        format!("behind:\n{}\n({done} partitions caught up)\ngroups:\n{states}", behind.join("\n"))
    }

    /// Has `group` committed offsets up to the end of every partition of `topics`? Exactly up
    /// to it: a committed offset past the end would skip the next record after a restart.
    pub fn caught_up(brokers: &str, group: &str, topics: &[&str]) -> bool {
        let Ok(positions) = positions(brokers, group, topics, Duration::from_secs(10)) else { return false };
        positions.iter().all(Position::caught_up)
    }
}

/// One customer's order from creation to delivered, through the public APIs as a client
/// behind a load balancer would use them: a replica that does not answer is skipped, and a
/// call that may have been done before its answer was lost is made again (the order with the
/// same `Idempotency-Key`; a pay or courier step already done answers 409).
pub async fn journey(system: std::sync::Arc<System>, email: String) -> (String, String, Duration) {
    let started = Instant::now();
    let token = system.customer(&email);
    let key = idempotency_key(&email);
    let mut attempt = 0;
    let created: Value = eventually(&format!("{email}'s order to be created"), PATIENCE, || {
        attempt += 1;
        let request = system
            .http
            .post(url(system.order[attempt % 2], "/orders"))
            .header("authorization", &token)
            .header("idempotency-key", &key)
            .json(&order_for(&email));
        async move {
            let response = request.send().await.ok()?;
            (response.status() == 201).then_some(response.json().await.ok()?)
        }
    })
    .await;
    let order_id = created["orderId"].as_str().unwrap().to_owned();
    let payment_id = created["paymentId"].as_str().unwrap().to_owned();
    system.remember(&order_id, &email);
    system.remember(&payment_id, &email);

    let pay = format!("/payments/{payment_id}/pay");
    eventually(&format!("{payment_id} to be paid"), PATIENCE, || {
        attempt += 1;
        let request = system.http.post(url(system.payment[attempt % 2], &pay)).header("authorization", &token);
        async move { request.send().await.ok().filter(|r| matches!(r.status().as_u16(), 200 | 409)).map(|_| ()) }
    })
    .await;
    system.wait_for_status(&order_id, "shipping").await;
    for (action, status) in [("shipped", "shipped"), ("delivered", "delivered")] {
        let path = format!("/deliveries/{order_id}/{action}");
        let courier = system.courier_token();
        eventually(&format!("courier {action} of {order_id}"), PATIENCE, || {
            let request = system.http.post(url(system.delivery, &path)).header("authorization", &courier);
            async move { request.send().await.ok().filter(|r| matches!(r.status().as_u16(), 202 | 409)).map(|_| ()) }
        })
        .await;
        system.wait_for_status(&order_id, status).await;
    }
    (order_id, payment_id, started.elapsed())
}

/// An idempotency key of the journey, the same on every retry.
fn idempotency_key(email: &str) -> String {
    format!("journey-{email}")
}

/// What every order of a campaign must show in the end: `delivered` with each stage once,
/// exactly 7 pushes and 7 mails, its audit records once each, each stage event on its topic
/// once, and nothing of it in a dead-letter topic. `orders` are (order id, payment id).
pub async fn assert_every_order_once(system: &System, orders: &[(String, String)]) {
    for (order_id, _) in orders {
        system.notifications(order_id, 7).await;
    }
    system.wait_until_consumed().await;
    for (order_id, _) in orders {
        let (order, pushes, emails, actions) = observed(system, order_id).await;
        assert_once_each(&order, pushes, emails, &actions);
    }
    system.assert_each_stage_published_once(orders).await;
    let brokers = system.brokers();
    let ids: Vec<String> = orders.iter().map(|(order_id, _)| order_id.clone()).collect();
    let set_aside = tokio::task::spawn_blocking(move || {
        shop_events::Topic::ALL
            .iter()
            .flat_map(|topic| kafka::read_all(&brokers, &topic.dead_letter_name()))
            .filter(|record| record.key.as_ref().is_some_and(|key| ids.contains(key)))
            .count()
    })
    .await
    .unwrap();
    assert_eq!(set_aside, 0, "records of the campaign's orders were set aside");
}

/// `<shop> serve logging` on `port`, its data and a fresh secrets folder in `data`, and a broker
/// address nothing answers at: it opens its database and listens, while its Kafka clients keep
/// trying.
pub fn logging_with_no_broker(shop: &std::path::Path, port: u16, data: &std::path::Path) -> Command {
    let secrets = data.join("secrets");
    let made = Command::new(shop).args(["secrets", "generate", "--dir", secrets.to_str().unwrap()]).output().unwrap();
    assert!(made.status.success(), "{made:?}");
    let mut command = Command::new(shop);
    command
        .args(["serve", "logging", "--http-host", "127.0.0.1", "--http-port", &port.to_string()])
        .args(["--data-dir", data.to_str().unwrap()])
        .args(["--secrets-dir", secrets.to_str().unwrap()])
        .env("KAFKA_BROKERS", "127.0.0.1:1")
        .env_remove("DATABASE_URL");
    command
}

/// Waits until whatever listens on `port` answers `/healthz`.
pub async fn until_alive(port: u16) {
    let http = reqwest::Client::new();
    eventually(&format!("port {port} to answer /healthz"), PATIENCE, || async {
        let health = http.get(url(port, "/healthz")).send().await;
        health.ok().filter(|r| r.status().is_success()).map(|_| ())
    })
    .await;
}
