//! Configuration of the payment service, from flags or environment variables.

use shop_platform::config::{HttpConfig, KafkaConfig, StorageConfig};

#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    /// HTTP port of the payment API and the hosted payment page.
    #[arg(long = "http-port", env = "HTTP_PORT", default_value_t = 8082)]
    pub http_port: u16,
    /// Base URL customers reach this service at; payment links start with it.
    #[arg(long = "public-url", env = "PUBLIC_URL", default_value = "http://localhost:8082")]
    pub public_url: String,
    /// Base URL of the customer's app as the browser reaches it; the payment page returns
    /// there after paying.
    #[arg(long = "app-url", env = "APP_URL", default_value = "http://localhost:8080")]
    pub app_url: String,
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub kafka: KafkaConfig,
    #[command(flatten)]
    pub storage: StorageConfig,
}
