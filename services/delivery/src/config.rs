//! Configuration of the delivery service, from flags or environment variables.

use shop_platform::config::{HttpConfig, KafkaConfig, StorageConfig};

#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    /// HTTP port of the courier API.
    #[arg(long = "http-port", env = "HTTP_PORT", default_value_t = 8083)]
    pub http_port: u16,
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub kafka: KafkaConfig,
    #[command(flatten)]
    pub storage: StorageConfig,
}
