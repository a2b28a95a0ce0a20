//! The `mycelium` command: parses the command line and hands over to the library crates.

mod cli;
mod metrics_http;
mod parts;
mod serve;
mod up;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mycelium: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
