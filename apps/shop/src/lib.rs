//! `shop`: the binary of everything. `shop up` runs the whole system on one machine, `shop
//! serve <service>` runs one service, `shop topics create` makes the 11 topics, `shop bench`
//! measures the system under load (the crate `shop-bench`). Beside it, `shop-<service>`
//! (`src/bin/`) is one service alone, which `shop serve <service>` hands over to (see
//! [`serve`]).
//!
//! The binary's `main` is [`main`], each service binary's [`serve::main`]; the library is also
//! there so that tests can ask the command line itself ([`cli::Cli`], through
//! `clap::CommandFactory`) what it accepts.

pub mod cli;
mod cpus;
mod credentials;
pub mod serve;
mod topics;
mod up;

pub use serve::PARENT_WATCH_ENV;

use std::future::Future;
use std::process::ExitCode;

use clap::Parser;

/// The allocator of every shop binary: jemalloc, with the settings `.cargo/config.toml` builds
/// it with. It takes about a tenth off the services' CPU per Kafka record against glibc's
/// `malloc`, for about 2 MiB more held per service (docs/performance.md, "jemalloc, with a
/// binary per service").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Every service's OpenAPI description, by service name (committed under `docs/openapi/`).
pub fn openapi_documents() -> Vec<(&'static str, utoipa::openapi::OpenApi)> {
    vec![
        (shop_order::SERVICE, shop_order::openapi()),
        (shop_payment::SERVICE, shop_payment::openapi()),
        (shop_delivery::SERVICE, shop_delivery::openapi()),
        (shop_notification::SERVICE, shop_notification::openapi()),
        (shop_logging::SERVICE, shop_logging::openapi()),
        (shop_mobile::SERVICE, shop_mobile::openapi()),
        (shop_email::SERVICE, shop_email::openapi()),
    ]
}

/// The whole binary: hands `shop serve <service>` over to `shop-<service>` if it can; pins
/// this process to the CPU `shop up` chose for it, if any (before any other thread exists, so
/// that all of them inherit it); then runs the command line.
pub fn main() -> ExitCode {
    let command = cli::Cli::parse().command;
    let note = match &command {
        cli::Command::Serve(service) => serve::hand_over(service.name()),
        _ => None,
    };
    cpus::pin_from_env();
    run_to_exit(async move {
        let _telemetry = match &command {
            cli::Command::Serve(service) => shop_platform::telemetry::init(service.name(), Some(&service.instance())),
            cli::Command::Up(_) => shop_platform::telemetry::init("shop-up", None),
            _ => shop_platform::telemetry::init("shop", None),
        };
        if let Some(note) = note {
            tracing::warn!("{note}");
        }
        run(command).await
    })
}

/// Runs `work` on a multi-threaded runtime; its error, if any, is printed and the exit code.
fn run_to_exit(work: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let code = match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    };
    // What the command waited for is done. Dropping the runtime would also wait for every read
    // still running on its blocking threads, and one never ends while the parent lives: the
    // read of stdin that watches for `shop up` going away. A service that failed to start
    // would print its error and hang there instead of exiting to be restarted.
    runtime.shutdown_background();
    code
}

/// Runs one subcommand to its end.
pub async fn run(command: cli::Command) -> anyhow::Result<()> {
    match command {
        cli::Command::Up(args) => up::run(args).await,
        cli::Command::Serve(service) => serve::run(service).await,
        cli::Command::Topics(cli::TopicsCommand::Create(args)) => topics::create(args).await,
        cli::Command::Topics(cli::TopicsCommand::List(args)) => topics::list(args).await,
        cli::Command::Bench(args) => shop_bench::run(args, credentials::prepare).await,
        cli::Command::Token(args) => credentials::token(args),
        cli::Command::Secrets(cli::SecretsCommand::Generate(args)) => credentials::generate(args),
    }
}
