//! `shop`: the one binary. `shop up` runs the whole system on one machine, `shop serve
//! <service>` runs one service, `shop topics create` makes the 11 topics.

mod bench;
mod cli;
mod cpus;
mod credentials;
mod serve;
mod topics;
mod up;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Before any other thread exists, so that all of them inherit it.
    cpus::pin_from_env();
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime").block_on(run())
}

async fn run() -> std::process::ExitCode {
    shop_platform::telemetry::init();
    let result = match cli::Cli::parse().command {
        cli::Command::Up(args) => up::run(args).await,
        cli::Command::Serve(service) => serve::run(service).await,
        cli::Command::Topics(cli::TopicsCommand::Create(args)) => topics::create(args).await,
        cli::Command::Topics(cli::TopicsCommand::List(args)) => topics::list(args).await,
        cli::Command::Bench(args) => bench::run(args).await,
        cli::Command::Token(args) => credentials::token(args),
        cli::Command::Secrets(cli::SecretsCommand::Generate(args)) => credentials::generate(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
