//! `shop serve <service>`: builds one service from its configuration and runs it until
//! SIGTERM/SIGINT. Started by `shop up`, it also stops when its parent goes away.

use shop_platform::Shutdown;
use tokio::io::AsyncReadExt;

use crate::cli::ServeCommand;

/// Set by `shop up` on its children: stop when stdin closes, i.e. when the parent died.
pub const PARENT_WATCH_ENV: &str = "SHOP_STOP_WITH_PARENT";

macro_rules! run_service {
    ($krate:ident, $config:expr, $shutdown:expr) => {{
        let service = $krate::Service::build($config).await?;
        tracing::info!(service = $krate::SERVICE, port = service.port(), "Service started");
        service.run_until_stopped($shutdown).await
    }};
}

pub async fn run(command: ServeCommand) -> anyhow::Result<()> {
    let shutdown = Shutdown::on_signals();
    if std::env::var_os(PARENT_WATCH_ENV).is_some() {
        stop_with_parent(shutdown.clone());
    }
    let name = command.name();
    let result = match command {
        ServeCommand::Order(config) => run_service!(shop_order, config, shutdown),
        ServeCommand::Payment(config) => run_service!(shop_payment, config, shutdown),
        ServeCommand::Delivery(config) => run_service!(shop_delivery, config, shutdown),
        ServeCommand::Notification(config) => run_service!(shop_notification, config, shutdown),
        ServeCommand::Logging(config) => run_service!(shop_logging, config, shutdown),
        ServeCommand::Mobile(config) => run_service!(shop_mobile, config, shutdown),
        ServeCommand::Email(config) => {
            let service = shop_email::Service::build(config).await?;
            tracing::info!(
                service = shop_email::SERVICE,
                port = service.port(),
                smtp_port = service.smtp_port(),
                "Service started"
            );
            service.run_until_stopped(shutdown).await
        }
    };
    tracing::info!(service = name, "Service stopped");
    result
}

fn stop_with_parent(shutdown: Shutdown) {
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buffer = [0u8; 64];
        while matches!(stdin.read(&mut buffer).await, Ok(n) if n > 0) {}
        tracing::info!("Parent process went away; stopping");
        shutdown.trigger();
    });
}
