//! The `nimbus` binary: parses arguments and reports errors; everything else is in the library.

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    init_tracing();
    let cli = nimbus_cli::Cli::parse();
    match nimbus_cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Component logs go to stderr; `RUST_LOG` tunes them (default: warnings, info for `nimbus up`
/// and the other platform commands).
fn init_tracing() {
    let component = matches!(
        std::env::args().nth(1).as_deref(),
        Some("up" | "dea" | "router" | "health-manager")
    );
    let default = if component { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
