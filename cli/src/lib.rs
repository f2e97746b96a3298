//! The `nimbus` command: user commands against the controller's API, and `nimbus up`, which runs
//! the whole platform in one process (the "micro cloud").
//!
//! - [`cloud`]: the micro cloud (NATS server + every component);
//! - [`commands`]: one module per group of user commands;
//! - [`client`]: the API client; [`config`]: `$NIMBUS_HOME/config.json`;
//! - [`package`]: what `push` uploads; [`manifest`]: `manifest.yml`; [`settings`]: limit flags;
//! - [`output`]: tables and formatting for people.

pub mod client;
pub mod cloud;
pub mod commands;
pub mod config;
pub mod manifest;
pub mod output;
pub mod package;
pub mod settings;

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
    /// Run the micro cloud (NATS, controller, stager, DEA, router, health manager) until Ctrl-C.
    Up(UpArgs),
    /// Run a DEA that joins a cloud (`--data-dir` of a `nimbus up` here, or `--nats URL`);
    /// SIGTERM evacuates it: its instances move to other DEAs before it leaves.
    Dea(commands::join::DeaArgs),
    /// Run a router that joins a cloud.
    Router(commands::join::RouterArgs),
    /// Run a health manager that joins a cloud (several may run; one leads).
    HealthManager(commands::join::HealthManagerArgs),
    /// Create or update an app from a .wasm file or a source directory, and start it.
    ///
    /// Without NAME, pushes every app of the manifest (`-f`, else `manifest.yml` in PATH or here).
    Push {
        name: Option<String>,
        /// A .wasm component or a directory of sources (a Rust crate) [default: the manifest's
        /// path, else the current directory]
        #[arg(short = 'p', long)]
        path: Option<PathBuf>,
        /// A manifest.yml (Cloud Foundry format plus Nimbus keys); flags win over it.
        #[arg(short = 'f', long)]
        manifest: Option<PathBuf>,
        #[command(flatten)]
        settings: settings::SettingsArgs,
    },
    /// Change an app's instances, limits or capabilities (limits restart its instances).
    Scale {
        name: String,
        #[command(flatten)]
        settings: settings::SettingsArgs,
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
    /// Show an app's recent platform events: limits hit, traps, denied capabilities.
    Events {
        name: String,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Save an app's current droplet (the WebAssembly its instances run).
    DownloadDroplet {
        name: String,
        /// Where to write it [default: <name>.wasm]
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Show an app's logs: its instances, staging and platform events.
    Logs {
        name: String,
        /// Print recent lines and exit instead of following.
        #[arg(long)]
        recent: bool,
    },
}

/// `nimbus up`'s settings: where the micro cloud keeps its data and what the operator allows.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Where apps, droplets and NATS data live [default: $NIMBUS_HOME/cloud]
    #[arg(long, env = "NIMBUS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The router's port.
    #[arg(long, env = "NIMBUS_PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Apps are routed at <name>.<domain>.
    #[arg(long, env = "NIMBUS_DOMAIN", default_value = DEFAULT_DOMAIN)]
    pub domain: String,
    /// NATS's loopback port (0 picks a free one).
    #[arg(long, env = "NIMBUS_NATS_PORT", default_value_t = DEFAULT_NATS_PORT)]
    pub nats_port: u16,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// Run no DEA in this process: DEAs join with `nimbus dea --data-dir <this data dir>`.
    #[arg(long)]
    pub no_dea: bool,
    /// Run no health manager in this process (join one with `nimbus health-manager`).
    #[arg(long)]
    pub no_health_manager: bool,
}

/// What the operator lets apps do, for every command that runs a DEA (`up`, `dea`).
#[derive(Debug, Clone, clap::Args)]
pub struct SandboxArgs {
    /// Run apps without fuel metering: faster, but apps' fuel limits are ignored and only
    /// their timeout bounds a request's CPU time (NIMBUS_FUEL_METERING=false does the same).
    #[arg(
        long = "no-fuel-metering",
        env = "NIMBUS_FUEL_METERING",
        action = clap::ArgAction::SetFalse,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub fuel_metering: bool,
    /// Let apps reach loopback, private and link-local addresses named in their outbound
    /// allow-list (off: such addresses are refused even when listed).
    #[arg(long, env = "NIMBUS_ALLOW_PRIVATE_EGRESS")]
    pub allow_private_egress: bool,
}

impl UpArgs {
    fn into_cloud_config(self) -> cloud::CloudConfig {
        cloud::CloudConfig {
            data_dir: self
                .data_dir
                .unwrap_or_else(|| config::home().join("cloud")),
            port: self.port,
            domain: self.domain,
            nats_port: self.nats_port,
            fuel_metering: self.sandbox.fuel_metering,
            allow_private_egress: self.sandbox.allow_private_egress,
            dea: !self.no_dea,
            health_manager: !self.no_health_manager,
        }
    }
}

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    use commands::*;
    // Platform commands need no API; the rest are a user's commands against it.
    match cli.command {
        Command::Up(args) => return up::up(args.into_cloud_config()).await,
        Command::Dea(args) => return join::dea(args).await,
        Command::Router(args) => return join::router(args).await,
        Command::HealthManager(args) => return join::health_manager(args).await,
        _ => {}
    }
    let client = client::Client::new(config::CliConfig::load()?)?;
    match cli.command {
        Command::Up(_) | Command::Dea(_) | Command::Router(_) | Command::HealthManager(_) => {
            unreachable!("handled above")
        }
        Command::Push {
            name,
            path,
            manifest,
            settings,
        } => {
            let plan = push::plan(name, path, manifest, settings.to_update())?;
            for app in &plan {
                push::push(&client, app).await?;
            }
            Ok(())
        }
        Command::Scale { name, settings } => {
            lifecycle::scale(&client, &name, settings.to_update()).await
        }
        Command::Events { name, json } => apps::events(&client, &name, json).await,
        Command::DownloadDroplet { name, output } => {
            apps::download_droplet(&client, &name, output).await
        }
        Command::Apps { json } => apps::list(&client, json).await,
        Command::App { name, json } => apps::show(&client, &name, json).await,
        Command::Start { name } => lifecycle::start(&client, &name).await,
        Command::Stop { name } => lifecycle::stop(&client, &name).await,
        Command::Delete { name, force } => lifecycle::delete(&client, &name, force).await,
        Command::Logs { name, recent } => logs::logs(&client, &name, recent).await,
    }
}
