//! Configuration of the order service, from flags or environment variables.

use shop_platform::config::{HttpConfig, KafkaConfig, StorageConfig};

#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    /// HTTP port of the order API.
    #[arg(long = "http-port", env = "HTTP_PORT", default_value_t = 8081)]
    pub http_port: u16,
    /// Base URL(s) of the payment service, comma-separated; tried in turn.
    #[arg(long = "payment-url", env = "PAYMENT_URL", default_value = "http://localhost:8082", value_delimiter = ',')]
    pub payment_urls: Vec<String>,
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub kafka: KafkaConfig,
    #[command(flatten)]
    pub storage: StorageConfig,
}
