//! The `nimbus` command: user commands against the controller's API, and `nimbus up`, which runs
//! the whole platform in one process (the "micro cloud").
//!
//! - [`cloud`]: the micro cloud (NATS server + every component);
//! - [`commands`]: one module per group of user commands;
//! - [`client`]: the API client; [`config`]: `$NIMBUS_HOME/config.json`;
//! - [`package`]: what `push` uploads; [`output`]: tables and formatting for people.

pub mod client;
pub mod cloud;
pub mod commands;
pub mod config;
pub mod output;
pub mod package;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Default router port of the micro cloud.
pub const DEFAULT_PORT: u16 = 8080;
/// Default domain apps are routed under.
pub const DEFAULT_DOMAIN: &str = "localhost";
/// Default NATS port of the micro cloud.
pub const DEFAULT_NATS_PORT: u16 = 4222;

/// Nimbus: push WebAssembly apps, get URLs.
#[derive(Debug, Parser)]
#[command(name = "nimbus", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the micro cloud (NATS, controller, stager, DEA, router) until Ctrl-C.
    Up {
        /// Where apps, droplets and NATS data live [default: $NIMBUS_HOME/cloud]
        #[arg(long, env = "NIMBUS_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// The router's port.
        #[arg(long, env = "NIMBUS_PORT", default_value_t = DEFAULT_PORT)]
        port: u16,
        /// Apps are routed at <name>.<domain>.
        #[arg(long, env = "NIMBUS_DOMAIN", default_value = DEFAULT_DOMAIN)]
        domain: String,
        /// NATS's loopback port (0 picks a free one).
        #[arg(long, env = "NIMBUS_NATS_PORT", default_value_t = DEFAULT_NATS_PORT)]
        nats_port: u16,
    },
    /// Create or update an app from a .wasm file or a source directory, and start it.
    Push {
        name: String,
        /// A .wasm component or a directory of sources (a Rust crate).
        #[arg(short = 'p', long, default_value = ".")]
        path: PathBuf,
        /// Number of instances.
        #[arg(short = 'i', long)]
        instances: Option<u32>,
        /// Memory per instance, e.g. 64M or 1G.
        #[arg(short = 'm', long, value_parser = parse_megabytes)]
        memory: Option<u64>,
        /// Wall-clock limit per request, e.g. 500ms, 30s or 2m.
        #[arg(long, value_parser = parse_millis)]
        timeout: Option<u64>,
    },
    /// List apps.
    Apps {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Show one app and its instances.
    App {
        name: String,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Start an app.
    Start { name: String },
    /// Stop an app.
    Stop { name: String },
    /// Delete an app (asks first on a terminal).
    Delete {
        name: String,
        /// Do not ask for confirmation.
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Show an app's logs: its instances, staging and platform events.
    Logs {
        name: String,
        /// Print recent lines and exit instead of following.
        #[arg(long)]
        recent: bool,
    },
}

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    use commands::*;
    if let Command::Up {
        data_dir,
        port,
        domain,
        nats_port,
    } = cli.command
    {
        let data_dir = data_dir.unwrap_or_else(|| config::home().join("cloud"));
        return up::up(cloud::CloudConfig {
            data_dir,
            port,
            domain,
            nats_port,
        })
        .await;
    }
    let client = client::Client::new(config::CliConfig::load()?)?;
    match cli.command {
        Command::Up { .. } => unreachable!("handled above"),
        Command::Push {
            name,
            path,
            instances,
            memory,
            timeout,
        } => {
            let options = push::PushOptions {
                instances,
                memory_mb: memory,
                timeout_ms: timeout,
            };
            push::push(&client, &name, &path, options).await
        }
        Command::Apps { json } => apps::list(&client, json).await,
        Command::App { name, json } => apps::show(&client, &name, json).await,
        Command::Start { name } => lifecycle::start(&client, &name).await,
        Command::Stop { name } => lifecycle::stop(&client, &name).await,
        Command::Delete { name, force } => lifecycle::delete(&client, &name, force).await,
        Command::Logs { name, recent } => logs::logs(&client, &name, recent).await,
    }
}

/// `64M`, `1G`, `512` (MB) → megabytes.
fn parse_megabytes(text: &str) -> Result<u64, String> {
    let upper = text.trim().to_ascii_uppercase();
    let upper = upper.trim_end_matches('B');
    let (number, factor) = match upper.char_indices().last() {
        Some((at, 'M')) => (&upper[..at], 1),
        Some((at, 'G')) => (&upper[..at], 1024),
        _ => (upper, 1),
    };
    match number.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n * factor),
        _ => Err(format!("{text:?} is not a memory size: use e.g. 64M or 1G")),
    }
}

/// `500ms`, `30s`, `2m`, `45` (seconds) → milliseconds.
fn parse_millis(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, factor) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000)
    } else {
        (text, 1000)
    };
    match number.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n * factor),
        _ => Err(format!(
            "{text:?} is not a duration: use e.g. 500ms, 30s or 2m"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_memory_sizes() {
        assert_eq!(parse_megabytes("64M"), Ok(64));
        assert_eq!(parse_megabytes("64MB"), Ok(64));
        assert_eq!(parse_megabytes("1g"), Ok(1024));
        assert_eq!(parse_megabytes("128"), Ok(128));
        assert!(parse_megabytes("lots").is_err());
        assert!(parse_megabytes("0M").is_err());
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_millis("500ms"), Ok(500));
        assert_eq!(parse_millis("30s"), Ok(30_000));
        assert_eq!(parse_millis("2m"), Ok(120_000));
        assert_eq!(parse_millis("45"), Ok(45_000));
        assert!(parse_millis("soon").is_err());
    }
}
