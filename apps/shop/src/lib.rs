//! `shop`: the one binary. `shop up` runs the whole system on one machine, `shop serve
//! <service>` runs one service, `shop topics create` makes the 11 topics, `shop bench`
//! measures the system under load (the crate `shop-bench`).
//!
//! The binary's `main` is [`main`]; the library is there so that tests can ask the command
//! line itself ([`cli::Cli`], through `clap::CommandFactory`) what it accepts.

pub mod cli;
mod cpus;
mod credentials;
mod serve;
mod topics;
mod up;

use clap::Parser;

/// The whole binary: pins this process to the CPU `shop up` chose for it, if any (before any
/// other thread exists, so that all of them inherit it), then runs the command line.
pub fn main() -> std::process::ExitCode {
    cpus::pin_from_env();
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime").block_on(async {
        shop_platform::telemetry::init();
        match run(cli::Cli::parse().command).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error:#}");
                std::process::ExitCode::FAILURE
            }
        }
    })
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
