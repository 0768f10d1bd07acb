//! An in-process, Kafka-compatible broker for one laptop and the tests: tansu with its
//! object-store engine on a folder of the local disk (records, watermarks and committed
//! offsets kept across restarts, also when the process is killed) or in memory (records live
//! as long as the process). Only `shop` and the tests depend on this crate (behind the default
//! `embedded-broker` feature), so the services build and run against any Kafka cluster
//! without it.

use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use tansu_broker::broker::Broker;
use tansu_storage::StorageContainer;
use tokio::sync::oneshot;
use tokio::time::Instant;
use url::Url;

pub mod groups;

/// Where the broker keeps its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Storage {
    /// In memory, for as long as the process lives.
    Memory,
    /// In a folder on disk, as files the broker alone writes, found again after a restart
    /// (also after the process was killed); see vendor/README.md.
    Disk(std::path::PathBuf),
}

impl Storage {
    fn url(&self, retention: &Retention) -> anyhow::Result<Url> {
        let mut url = match self {
            Storage::Memory => Url::parse("memory://tansu/")?,
            Storage::Disk(path) => {
                std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
                let path = std::fs::canonicalize(path).with_context(|| format!("cannot resolve {}", path.display()))?;
                Url::from_directory_path(&path)
                    .map_err(|()| anyhow::anyhow!("{} is not a usable folder", path.display()))?
            }
        };
        url.query_pairs_mut()
            .append_pair("retention.ms", &retention.ms.to_string())
            .append_pair("retention.bytes", &retention.bytes.to_string())
            .append_pair("maintenance_interval", MAINTENANCE_INTERVAL);
        Ok(url)
    }
}

/// How long and how much the broker keeps of each partition of a topic that does not set its
/// own `retention.ms` / `retention.bytes` (Kafka's names and meaning; -1: no bound).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub ms: i64,
    pub bytes: i64,
}

impl Default for Retention {
    /// For a laptop: a day, and 64 MiB per partition (about 2 GiB for the system's 33).
    fn default() -> Self {
        Self { ms: 24 * 60 * 60 * 1000, bytes: 64 * 1024 * 1024 }
    }
}

/// How often the broker enforces retention.
const MAINTENANCE_INTERVAL: &str = "5s";

/// A running broker. It serves on a runtime of its own, on its own thread, so that its
/// clients in the same process cannot starve it: librdkafka's consumer close blocks its
/// thread until the broker answers the LeaveGroup, and two such closes on a two-thread
/// runtime the broker shared would wait on it forever. One worker thread: a second one cost
/// more in wake-ups and hand-offs between the two than it served (docs/performance.md,
/// "One thread for the embedded broker").
pub struct EmbeddedBroker {
    bootstrap_servers: String,
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl EmbeddedBroker {
    /// Starts the broker on `host:port`, advertised to clients as `advertised_host:port`.
    pub async fn start(
        host: &str,
        advertised_host: &str,
        port: u16,
        storage: &Storage,
        retention: &Retention,
    ) -> anyhow::Result<Self> {
        let storage = storage.url(retention)?;
        // Fail early and clearly when the port is taken (tansu would only log it).
        drop(
            std::net::TcpListener::bind((host, port))
                .with_context(|| format!("port {port} is taken; pick another with --broker-port"))?,
        );
        let listener = Url::parse(&format!("tcp://{host}:{port}"))?;
        let advertised = Url::parse(&format!("tcp://{advertised_host}:{port}"))?;
        let (ready, built) = oneshot::channel::<anyhow::Result<()>>();
        let (stop, stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("embedded-broker")
            .enable_all()
            .build()
            .context("cannot start the embedded broker's runtime")?;
        let thread = std::thread::Builder::new().name("embedded-broker".into()).spawn(move || {
            runtime.block_on(async move {
                let built = Broker::<groups::Coordinator<StorageContainer>, StorageContainer>::builder()
                    .node_id(tansu_broker::NODE_ID)
                    .cluster_id("shop")
                    .incarnation_id(uuid::Uuid::now_v7())
                    .advertised_listener(advertised)
                    .storage(storage)
                    .listener(listener)
                    .silent(true)
                    .build_with(|storage| Ok(groups::Coordinator::new(storage, groups::Settings::default())))
                    .await;
                let mut broker = match built {
                    Ok(broker) => broker,
                    Err(e) => {
                        let _ = ready.send(Err(anyhow::anyhow!("cannot build the embedded broker: {e:?}")));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                tokio::select! {
                    served = broker.serve(Instant::now()) => if let Err(error) = served {
                        tracing::error!(?error, "The embedded broker stopped");
                    },
                    _ = stopped => {}
                }
            });
            // Connections still open are dropped, not waited for.
            runtime.shutdown_timeout(Duration::from_secs(1));
        })?;
        built.await.context("the embedded broker's thread ended while it started")??;
        Ok(Self { bootstrap_servers: format!("{advertised_host}:{port}"), stop, thread })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// Stops serving and waits until the broker's threads have ended.
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}
