//! Runs the parts of one service together and stops them in the right order: on shutdown
//! the HTTP server and the consumers stop taking work and finish what they hold; only then
//! does the outbox relay drain what they wrote, and the producer flush.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::config::{HttpConfig, KafkaConfig, StorageConfig};
use crate::consumer::{self, Handler, Subscription};
use crate::db::Pool;
use crate::http::Web;
use crate::kafka::Producer;
use crate::outbox::{Outbox, Relay};
use crate::secrets::Secrets;
use crate::Shutdown;

type Task = Box<dyn FnOnce(Shutdown) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> + Send>;

/// How long the relay may take to publish what is left after intake stopped.
const DRAIN: Duration = Duration::from_secs(10);

/// What every service on the broker (order, payment, delivery, notification, logging) is
/// built from, opened the same way: its instance name, secrets, web settings, database,
/// producer and HTTP listener. `host` turns them into the running parts.
pub struct Parts {
    pub instance: String,
    pub secrets: Secrets,
    pub web: Web,
    pub pool: Pool,
    pub producer: Producer,
    brokers: String,
    listener: TcpListener,
    waits: consumer::Waits,
}

impl Parts {
    pub async fn open(
        service: &'static str,
        http: &HttpConfig,
        http_port: u16,
        storage: &StorageConfig,
        kafka: &KafkaConfig,
        migrations: sqlx::migrate::Migrator,
    ) -> anyhow::Result<Parts> {
        let instance = http.instance(service);
        let secrets = storage.secrets();
        let web = Web::new(http, &secrets, service)?;
        let pool = crate::db::open(&storage.database_url(service), migrations).await?;
        let producer = crate::kafka::producer(&kafka.brokers, &instance)?;
        let listener = crate::http::bind(&http.host, http_port).await?;
        let brokers = kafka.brokers.clone();
        Ok(Parts { instance, secrets, web, pool, producer, brokers, listener, waits: consumer::Waits::default() })
    }

    /// `handler` consuming what `group` consumes, as this instance, setting records aside
    /// with this service's producer.
    pub fn consumer(&self, group: &'static str, handler: impl Handler + 'static) -> Consumer {
        let subscription = Subscription {
            brokers: self.brokers.clone(),
            group,
            topics: shop_events::group::topics(group).to_vec(),
            client_id: self.instance.clone(),
            waits: self.waits.clone(),
            metrics: self.web.metrics().clone(),
        };
        Consumer { subscription, handler: Arc::new(handler), producer: self.producer.clone() }
    }

    /// The bootstrap servers of the service's Kafka cluster.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// The relay publishing what `outbox` holds in this service's database.
    pub fn relay(&self, outbox: &Outbox) -> Relay {
        Relay::new(self.pool.clone(), self.producer.clone(), &self.brokers, outbox, &self.instance, self.web.metrics())
    }

    /// The host serving `api` with the standard readiness checks (storage and broker) and
    /// the web settings, pruning the inbox of the database while it runs.
    pub fn host(self, api: crate::http::Api) -> ServiceHost {
        let checks = crate::http::standard_checks(self.pool.clone(), self.producer.clone());
        let router = crate::http::finish(api, checks, self.waits, &self.web);
        ServiceHost::new(self.listener, router).with_inbox_pruning(self.pool)
    }
}

/// A consumer of a service: what it subscribes to, what handles each record, and the
/// producer it sets records aside with.
pub struct Consumer {
    pub subscription: Subscription,
    pub handler: Arc<dyn Handler>,
    pub producer: Producer,
}

pub struct ServiceHost {
    listener: TcpListener,
    router: Router,
    relay: Option<Relay>,
    consumers: Vec<Consumer>,
    tasks: Vec<Task>,
}

impl ServiceHost {
    pub fn new(listener: TcpListener, router: Router) -> Self {
        Self { listener, router, relay: None, consumers: Vec::new(), tasks: Vec::new() }
    }

    pub fn with_relay(mut self, relay: Relay) -> Self {
        self.relay = Some(relay);
        self
    }

    pub fn with_consumer(mut self, consumer: Consumer) -> Self {
        self.consumers.push(consumer);
        self
    }

    /// Another task that runs until shutdown (e.g. the SMTP server of the email service).
    pub fn with_task<F, Fut>(mut self, task: F) -> Self
    where
        F: FnOnce(Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.tasks.push(Box::new(move |shutdown| Box::pin(task(shutdown))));
        self
    }

    /// Prunes the inbox (`processed_events`) of this service's database while it runs.
    pub fn with_inbox_pruning(self, pool: crate::db::Pool) -> Self {
        self.with_task(move |shutdown| crate::inbox::prune(pool, shutdown))
    }

    /// The port the HTTP server listens on (useful when it was bound to port 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let relay_stop = Shutdown::new();
        let relay = self.relay.map(|relay| tokio::spawn(relay.run(relay_stop.clone())));
        let mut intake = JoinSet::new();
        intake.spawn(crate::http::serve(self.listener, self.router, shutdown.clone()).map_into());
        for Consumer { subscription, handler, producer } in self.consumers {
            intake.spawn(consumer::run(subscription, handler, producer, shutdown.clone()));
        }
        for task in self.tasks {
            intake.spawn(task(shutdown.clone()));
        }
        let mut outcome = Ok(());
        while let Some(joined) = intake.join_next().await {
            let result = joined.map_err(anyhow::Error::from).and_then(|r| r);
            if let Err(error) = result {
                tracing::error!(%error, "A part of the service failed; stopping the rest");
                shutdown.trigger();
                outcome = Err(error);
            } else if !shutdown.is_triggered() {
                tracing::error!("A part of the service stopped by itself; stopping the rest");
                shutdown.trigger();
            }
        }
        relay_stop.trigger();
        if let Some(relay) = relay {
            if tokio::time::timeout(DRAIN, relay).await.is_err() {
                tracing::error!("The outbox relay did not drain in time; the rest goes out on next start");
            }
        }
        outcome
    }
}

trait MapInto {
    fn map_into(self) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;
}

impl<F: Future<Output = std::io::Result<()>> + Send + 'static> MapInto for F {
    fn map_into(self) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> {
        Box::pin(async move { self.await.map_err(anyhow::Error::from) })
    }
}
