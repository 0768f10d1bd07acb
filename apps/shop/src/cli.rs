//! The command line: every subcommand and its options, each also readable from the
//! environment under the name the Kubernetes manifests use.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "shop", version, about = "Shop: an event-driven e-commerce system on Kafka")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the whole system: broker (embedded unless --kafka-brokers), topics, every service.
    Up(UpArgs),
    /// Run one service.
    #[command(subcommand)]
    Serve(ServeCommand),
    /// Manage the 11 topics.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Measure whole journeys under load against the broker's own ceiling.
    Bench(shop_bench::BenchArgs),
    /// Print a bearer token that the `shop up` using this data folder accepts.
    Token(TokenArgs),
    /// Manage the keys and credentials the services need.
    #[command(subcommand)]
    Secrets(SecretsCommand),
}

#[derive(Args, Clone, Debug)]
pub struct TokenArgs {
    /// Whose token: customer, courier or operator.
    #[arg(long)]
    pub role: shop_platform::auth::Role,
    /// The customer's email (customers only).
    #[arg(long)]
    pub email: Option<String>,
    /// The data folder of the `shop up` that is to accept it.
    #[arg(long = "data-dir", env = "DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// The secrets folder, if not `secrets` in the data folder.
    #[arg(long = "secrets-dir", env = "SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// How long the token lasts (e.g. 15m, 1h).
    #[arg(long, value_parser = shop_bench::duration::parse, default_value = "1h")]
    pub ttl: Duration,
}

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Create every key and credential that is missing in a folder, leaving the others as
    /// they are (`shop up` does it in its data folder; for Kubernetes, make the Secret from it).
    Generate(SecretsArgs),
}

#[derive(Args, Clone, Debug)]
pub struct SecretsArgs {
    /// The folder to write them to.
    #[arg(long)]
    pub dir: PathBuf,
}

#[derive(Subcommand)]
pub enum ServeCommand {
    /// Orders and their status (REST 8081).
    Order(shop_order::Config),
    /// The payment gateway (REST 8082).
    Payment(shop_payment::Config),
    /// Deliveries and courier actions (REST 8083).
    Delivery(shop_delivery::Config),
    /// Pushes and emails at every stage (health and metrics 8084).
    Notification(shop_notification::Config),
    /// The audit trail (REST 8085).
    Logging(shop_logging::Config),
    /// The customer's app and push inbox (8080).
    Mobile(shop_mobile::Config),
    /// The customer's mailbox (HTTP 8086, SMTP 2525).
    Email(shop_email::Config),
}

impl ServeCommand {
    /// This replica's name (`order-2`).
    pub fn instance(&self) -> String {
        let (name, http) = self.parts();
        http.instance(name)
    }

    pub fn name(&self) -> &'static str {
        self.parts().0
    }

    /// The service's name and its HTTP settings.
    fn parts(&self) -> (&'static str, &shop_platform::config::HttpConfig) {
        match self {
            ServeCommand::Order(c) => (shop_order::SERVICE, &c.http),
            ServeCommand::Payment(c) => (shop_payment::SERVICE, &c.http),
            ServeCommand::Delivery(c) => (shop_delivery::SERVICE, &c.http),
            ServeCommand::Notification(c) => (shop_notification::SERVICE, &c.http),
            ServeCommand::Logging(c) => (shop_logging::SERVICE, &c.http),
            ServeCommand::Mobile(c) => (shop_mobile::SERVICE, &c.http),
            ServeCommand::Email(c) => (shop_email::SERVICE, &c.http),
        }
    }
}

#[derive(Subcommand)]
pub enum TopicsCommand {
    /// Create the 11 topics, leaving existing ones as they are.
    Create(TopicArgs),
    /// List the topics the cluster has, with their partitions.
    List(TopicArgs),
}

#[derive(Args, Clone)]
pub struct TopicArgs {
    /// Bootstrap servers of the Kafka cluster.
    #[arg(long = "kafka-brokers", env = "KAFKA_BROKERS", default_value = "localhost:9092")]
    pub kafka_brokers: String,
    /// Partitions per topic.
    #[arg(long, env = "TOPIC_PARTITIONS", default_value_t = 3)]
    pub partitions: i32,
    /// Replicas per partition (3 on the real cluster).
    #[arg(long = "replication-factor", env = "TOPIC_REPLICATION_FACTOR", default_value_t = 1)]
    pub replication_factor: i32,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerStorage {
    Disk,
    Memory,
}

#[derive(Args, Clone)]
pub struct UpArgs {
    /// Use this Kafka cluster instead of starting the embedded broker.
    #[arg(long = "kafka-brokers", env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Port of the embedded broker.
    #[arg(long = "broker-port", default_value_t = 9092)]
    pub broker_port: u16,
    /// Where the embedded broker keeps its records: `disk` (files in the data
    /// folder, `broker/`, kept across restarts, also when killed) or `memory` (gone when it stops).
    #[arg(long = "broker-storage", value_enum, default_value_t = BrokerStorage::Disk)]
    pub broker_storage: BrokerStorage,
    /// How long the embedded broker keeps a record, for a topic without its own `retention.ms`
    /// (milliseconds; -1: for ever). Default: a day.
    #[arg(long = "broker-retention-ms", default_value_t = 86_400_000, allow_negative_numbers = true)]
    pub broker_retention_ms: i64,
    /// How many bytes of records the embedded broker keeps per partition, for a topic without
    /// its own `retention.bytes` (-1: no bound). Default: 64 MiB (about 2 GiB for the 33).
    #[arg(long = "broker-retention-bytes", default_value_t = 67_108_864, allow_negative_numbers = true)]
    pub broker_retention_bytes: i64,
    /// Partitions of each topic it creates.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// Replication factor of each topic it creates.
    #[arg(long = "replication-factor", default_value_t = 1)]
    pub replication_factor: i32,
    /// PostgreSQL instead of SQLite: `postgres://user:password@host:port/NAME`; each service
    /// gets its own database `NAME_<service>`, created if missing.
    #[arg(long = "database-url", env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Folder of the services' SQLite databases, and of their keys and credentials
    /// (`secrets/`, generated on first start).
    #[arg(long = "data-dir", env = "DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Address every service listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The host name the processes reach each other at (the embedded broker's advertised
    /// listener, the services' URLs of each other), when not `--host`: e.g. `--host 0.0.0.0`
    /// with this machine's name, or a proxy in front of every service.
    #[arg(long = "advertised-host")]
    pub advertised_host: Option<String>,
    /// Ports of the two order replicas.
    #[arg(long = "order-ports", value_delimiter = ',', default_value = "8081,8091")]
    pub order_ports: Vec<u16>,
    /// Ports of the two payment replicas.
    #[arg(long = "payment-ports", value_delimiter = ',', default_value = "8082,8092")]
    pub payment_ports: Vec<u16>,
    #[arg(long = "delivery-port", default_value_t = 8083)]
    pub delivery_port: u16,
    #[arg(long = "notification-port", default_value_t = 8084)]
    pub notification_port: u16,
    #[arg(long = "logging-port", default_value_t = 8085)]
    pub logging_port: u16,
    #[arg(long = "mobile-port", default_value_t = 8080)]
    pub mobile_port: u16,
    #[arg(long = "email-port", default_value_t = 8086)]
    pub email_port: u16,
    #[arg(long = "smtp-port", default_value_t = 2525)]
    pub smtp_port: u16,
    /// Let the kernel place the service processes on CPUs, instead of running each on one
    /// CPU, spread by the services' usual load (see docs/performance.md). Only the embedded
    /// broker's system is pinned: with `--kafka-brokers` the kernel places them anyway.
    #[arg(long = "no-cpu-pinning")]
    pub no_cpu_pinning: bool,
}

impl UpArgs {
    /// Where the processes reach each other: `--advertised-host`, else `--host`.
    pub fn peer_host(&self) -> &str {
        self.advertised_host.as_deref().unwrap_or(&self.host)
    }
}
