//! An in-process, Kafka-compatible broker for one laptop and the tests: tansu with its
//! in-memory storage. Only `shop` and the tests depend on this crate (behind the default
//! `embedded-broker` feature), so the services build and run against any Kafka cluster
//! without it. Records live as long as the process: a restart starts with empty topics.

use tokio::time::Instant;

use anyhow::Context;
use tansu_broker::broker::Broker;
use tansu_broker::coordinator::group::administrator::Controller;
use tansu_storage::StorageContainer;
use tokio::task::JoinHandle;
use url::Url;

pub struct EmbeddedBroker {
    bootstrap_servers: String,
    task: JoinHandle<()>,
}

impl EmbeddedBroker {
    /// Starts the broker on `host:port`, advertised to clients as `advertised_host:port`.
    pub async fn start(host: &str, advertised_host: &str, port: u16) -> anyhow::Result<Self> {
        // Fail early and clearly when the port is taken (tansu would only log it).
        drop(
            std::net::TcpListener::bind((host, port))
                .with_context(|| format!("port {port} is taken; pick another with --broker-port"))?,
        );
        let listener = Url::parse(&format!("tcp://{host}:{port}"))?;
        let advertised = Url::parse(&format!("tcp://{advertised_host}:{port}"))?;
        let mut broker = Broker::<Controller<StorageContainer>, StorageContainer>::builder()
            .node_id(tansu_broker::NODE_ID)
            .cluster_id("shop")
            .incarnation_id(uuid::Uuid::now_v7())
            .advertised_listener(advertised)
            .storage(Url::parse("memory://tansu/")?)
            .listener(listener)
            .silent(true)
            .build()
            .await
            .map_err(|e| anyhow::anyhow!("cannot build the embedded broker: {e:?}"))?;
        let task = tokio::spawn(async move {
            if let Err(error) = broker.serve(Instant::now()).await {
                tracing::error!(?error, "The embedded broker stopped");
            }
        });
        Ok(Self { bootstrap_servers: format!("{advertised_host}:{port}"), task })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    pub fn stop(self) {
        self.task.abort();
    }
}
