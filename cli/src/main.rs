//! The `nimbus` binary: parses arguments and reports errors; everything else is in the library.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    no_backtraces_in_errors();
    exit_quietly_on_closed_stdout();
    init_tracing();
    let cli = nimbus_cli::Cli::parse();
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(nimbus_cli::run(cli)));
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// With `RUST_BACKTRACE=1` in the environment (common on developer machines), every error
/// value would capture a backtrace, and wasmtime makes one per store it drops: one per request
/// in a DEA, a fifth of its CPU time. Panics still print theirs; `RUST_LIB_BACKTRACE=1` asks
/// for error backtraces explicitly.
fn no_backtraces_in_errors() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: no other thread exists yet (the runtime is built after this), so nothing
        // reads the environment concurrently.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
}

/// `nimbus events app | head` closes stdout early; like any Unix tool, stop quietly then
/// rather than with a panic (Rust ignores SIGPIPE, so `println!` panics instead of dying).
fn exit_quietly_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141); // 128 + SIGPIPE, as a shell reports it
        }
        default(info);
    }));
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
