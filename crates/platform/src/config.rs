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
    /// Folder of the keys and credentials (one file each); by default `secrets` in the data dir.
    #[arg(long = "secrets-dir", env = "SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
}

impl StorageConfig {
    pub fn secrets(&self) -> crate::secrets::Secrets {
        crate::secrets::Secrets::new(self.secrets_dir.clone().unwrap_or_else(|| self.data_dir.join("secrets")))
    }

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
    /// Origins of the system's own pages that browsers may call this service from
    /// (`http://host:port`, comma-separated); none by default.
    #[arg(long = "allowed-origins", env = "ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Where the pages send people to sign in: the mobile service as the browser reaches it.
    #[arg(long = "sign-in-url", env = "SIGN_IN_URL", default_value = "http://localhost:8080")]
    pub sign_in_url: String,
}

impl HttpConfig {
    pub fn instance(&self, service: &str) -> String {
        self.instance_id.clone().unwrap_or_else(|| format!("{service}-1"))
    }
}
