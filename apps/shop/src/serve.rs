//! `shop serve <service>`: builds one service from its configuration and runs it until
//! SIGTERM/SIGINT. Started by `shop up`, it also stops when its parent goes away.
//!
//! Every service also has a binary of its own, `shop-<service>` (`src/bin/`), that holds only
//! that service's code. A process keeps in memory the pages of its binary that it runs, and in
//! the one `shop` binary a service's code lies among the six others', the broker's and the
//! bench's: a service run from it holds 6–10 MiB more in memory (docs/performance.md, "A
//! binary per service"). So `shop serve <service>` hands over to `shop-<service>` (the same
//! process, through exec) when that binary is beside `shop` and of the same build
//! (`build.rs`), and runs the service itself when it is not: `cargo run` builds `shop` alone.

use std::future::Future;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};
use shop_platform::config::HttpConfig;
use shop_platform::Shutdown;
use tokio::io::AsyncReadExt;

use crate::cli::ServeCommand;

/// Set by `shop up` on its children: stop when stdin closes, i.e. when the parent died.
pub const PARENT_WATCH_ENV: &str = "SHOP_STOP_WITH_PARENT";

/// This build's name (see `build.rs`).
pub const BUILD_ID: &str = env!("SHOP_BUILD_ID");

/// `shop-<service> --build-id` prints [`BUILD_ID`] and exits.
pub const BUILD_ID_FLAG: &str = "--build-id";

/// A service as a binary runs it: its name, its configuration, how it starts and stops.
pub trait Service {
    const NAME: &'static str;
    type Config: clap::Args;
    fn http(config: &Self::Config) -> &HttpConfig;
    /// Builds the service and runs it until `shutdown`.
    fn run(config: Self::Config, shutdown: Shutdown) -> impl Future<Output = anyhow::Result<()>>;
}

macro_rules! service {
    ($(#[$doc:meta])* $marker:ident, $krate:ident) => {
        $(#[$doc])*
        pub struct $marker;

        impl Service for $marker {
            const NAME: &'static str = $krate::SERVICE;
            type Config = $krate::Config;

            fn http(config: &Self::Config) -> &HttpConfig {
                &config.http
            }

            async fn run(config: Self::Config, shutdown: Shutdown) -> anyhow::Result<()> {
                let service = $krate::Service::build(config).await?;
                tracing::info!(service = Self::NAME, port = service.port(), "Service started");
                service.run_until_stopped(shutdown).await
            }
        }
    };
}

service!(/** The order service. */ Order, shop_order);
service!(/** The payment service. */ Payment, shop_payment);
service!(/** The delivery service. */ Delivery, shop_delivery);
service!(/** The notification service. */ Notification, shop_notification);
service!(/** The logging service. */ Logging, shop_logging);
service!(/** The mobile service. */ Mobile, shop_mobile);

/// The email service (the mailbox and its SMTP server).
pub struct Email;

impl Service for Email {
    const NAME: &'static str = shop_email::SERVICE;
    type Config = shop_email::Config;

    fn http(config: &Self::Config) -> &HttpConfig {
        &config.http
    }

    async fn run(config: Self::Config, shutdown: Shutdown) -> anyhow::Result<()> {
        let service = shop_email::Service::build(config).await?;
        let (port, smtp_port) = (service.port(), service.smtp_port());
        tracing::info!(service = Self::NAME, port, smtp_port, "Service started");
        service.run_until_stopped(shutdown).await
    }
}

/// `shop serve <service>`, run in this process.
pub async fn run(command: ServeCommand) -> anyhow::Result<()> {
    match command {
        ServeCommand::Order(config) => serve::<Order>(config).await,
        ServeCommand::Payment(config) => serve::<Payment>(config).await,
        ServeCommand::Delivery(config) => serve::<Delivery>(config).await,
        ServeCommand::Notification(config) => serve::<Notification>(config).await,
        ServeCommand::Logging(config) => serve::<Logging>(config).await,
        ServeCommand::Mobile(config) => serve::<Mobile>(config).await,
        ServeCommand::Email(config) => serve::<Email>(config).await,
    }
}

async fn serve<S: Service>(config: S::Config) -> anyhow::Result<()> {
    let shutdown = Shutdown::on_signals();
    if std::env::var_os(PARENT_WATCH_ENV).is_some() {
        stop_with_parent(shutdown.clone());
    }
    let result = S::run(config, shutdown).await;
    tracing::info!(service = S::NAME, "Service stopped");
    result
}

/// The options of one service, as its own binary takes them.
#[derive(Parser)]
#[command(version, about = "One service of Shop; `shop serve <service> --help` describes the same options")]
struct Options<C: clap::Args> {
    #[command(flatten)]
    config: C,
}

/// The `main` of `shop-<service>`: what `shop serve <service>` does, with only this service's
/// code in the binary.
pub fn main<S: Service>() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|first| first == BUILD_ID_FLAG) {
        println!("{BUILD_ID}");
        return ExitCode::SUCCESS;
    }
    crate::cpus::pin_from_env();
    let command = Options::<S::Config>::command().bin_name(format!("shop-{}", S::NAME));
    let config = Options::<S::Config>::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit()).config;
    crate::run_to_exit(async move {
        let _telemetry = shop_platform::telemetry::init(S::NAME, Some(&S::http(&config).instance(S::NAME)));
        serve::<S>(config).await
    })
}

/// Replaces this process (`shop serve <service> OPTIONS`) with `shop-<service> OPTIONS`, when
/// that binary is beside this one and of this build. Returns when it does not, with the reason
/// if one is worth telling (the binary is there but of another build, or would not start).
pub fn hand_over(service: &str) -> Option<String> {
    use std::os::unix::process::CommandExt;

    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_none_or(|a| a != "serve") || args.get(2).is_none_or(|a| a != service) {
        return None;
    }
    let own = std::env::current_exe().ok()?.with_file_name(format!("shop-{service}"));
    if !own.is_file() {
        return None;
    }
    let answer = std::process::Command::new(&own)
        .arg(BUILD_ID_FLAG)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    match answer {
        Ok(out) if out.status.success() && out.stdout.trim_ascii() == BUILD_ID.as_bytes() => {}
        _ => return Some(format!("{} is of another build; serving {service} from this binary", own.display())),
    }
    let error = std::process::Command::new(&own).args(&args[3..]).exec();
    Some(format!("cannot start {}: {error}; serving {service} from this binary", own.display()))
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
