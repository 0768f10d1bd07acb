//! Configuration shared by every service. Each service's own `Config` flattens these, so the
//! same flag and environment variable names hold everywhere (and in the Kubernetes manifests).

use std::path::PathBuf;

/// Where the Kafka cluster is.
#[derive(clap::Args, Clone, Debug)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port` separated by commas.
    #[arg(long = "kafka-brokers", env = "KAFKA_BROKERS", default_value = "localhost:9092")]
    pub brokers: String,
}

/// Where a service keeps its state.
#[derive(clap::Args, Clone, Debug)]
pub struct StorageConfig {
    /// `sqlite://...` or `postgres://...`; by default a SQLite file `<service>.db` in the data dir.
    #[arg(long = "database-url", env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Folder of the embedded SQLite databases.
    #[arg(long = "data-dir", env = "DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
}

impl StorageConfig {
    pub fn database_url(&self, service: &str) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}?mode=rwc", self.data_dir.join(format!("{service}.db")).display()),
        }
    }
}

/// How a service serves HTTP and names itself.
#[derive(clap::Args, Clone, Debug)]
pub struct HttpConfig {
    /// Address to listen on.
    #[arg(long = "http-host", env = "HTTP_HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// The name of this replica in logs, audit records and Kafka client ids (e.g. `order-2`).
    #[arg(long = "instance-id", env = "INSTANCE_ID")]
    pub instance_id: Option<String>,
}

impl HttpConfig {
    pub fn instance(&self, service: &str) -> String {
        self.instance_id.clone().unwrap_or_else(|| format!("{service}-1"))
    }
}
