//! `nimbus dea`, `nimbus router` and `nimbus health-manager`: one component in its own process,
//! joining a running cloud. On the machine of a `nimbus up`, `--data-dir` finds its NATS (the
//! `nats.json` it writes); elsewhere `--nats URL` with credentials does.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use nimbus_bus::NatsConfig;

use crate::cloud::NATS_FILE;
use crate::settings::parse_millis;

/// Where the cloud's NATS is.
#[derive(Debug, Clone, Args)]
pub struct BusArgs {
    /// The data directory of a `nimbus up` on this machine, whose NATS to join
    /// [default: $NIMBUS_HOME/cloud]
    #[arg(long, env = "NIMBUS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The cloud's NATS URL (comma-separated for a cluster), instead of --data-dir.
    #[arg(long, env = "NIMBUS_NATS_URL", requires = "nats_password")]
    pub nats: Option<String>,
    /// NATS user, with --nats.
    #[arg(long, env = "NIMBUS_NATS_USER", default_value = "nimbus")]
    pub nats_user: String,
    /// NATS password, with --nats.
    #[arg(long, env = "NIMBUS_NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
}

impl BusArgs {
    /// The data directory this component keeps its own files under.
    fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| crate::config::home().join("cloud"))
    }

    /// How to reach NATS: the flags, else the micro cloud's `nats.json`.
    pub fn nats_config(&self) -> anyhow::Result<NatsConfig> {
        if let (Some(url), Some(password)) = (&self.nats, &self.nats_password) {
            return Ok(NatsConfig {
                url: url.clone(),
                user: self.nats_user.clone(),
                password: password.clone(),
            });
        }
        let path = self.data_dir().join(NATS_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no cloud to join: {} is missing (start one with `nimbus up --data-dir {}`, or give --nats URL and --nats-password)",
                path.display(),
                self.data_dir().display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
    }

    async fn connect(&self, name: &str) -> anyhow::Result<async_nats::Client> {
        nimbus_bus::connect(&self.nats_config()?, name).await
    }
}

/// `nimbus dea`.
#[derive(Debug, Clone, Args)]
pub struct DeaArgs {
    #[command(flatten)]
    pub bus: BusArgs,
    /// The DEA's id on the bus; keep it to keep its droplet cache across restarts
    /// [default: a new UUID]
    #[arg(long, env = "NIMBUS_DEA_ID")]
    pub id: Option<String>,
    /// Where the DEA caches droplets and keeps instances' scratch space
    /// [default: <data-dir>/deas/<id>]
    #[arg(long, env = "NIMBUS_DEA_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Memory offered to instances, in MB.
    #[arg(long, env = "NIMBUS_DEA_MEMORY", default_value_t = nimbus_dea_wasm::DEFAULT_MEMORY_MB)]
    pub memory: u64,
    /// Address instances listen on and are registered at (reachable by the routers).
    #[arg(long, env = "NIMBUS_DEA_HOST", default_value_t = nimbus_dea_wasm::DEFAULT_HOST)]
    pub host: std::net::IpAddr,
    /// How long SIGTERM waits for instances to run elsewhere before leaving anyway, e.g. 60s.
    #[arg(long, env = "NIMBUS_EVACUATION_TIMEOUT", default_value = "60s", value_parser = parse_millis)]
    pub evacuation_timeout: u64,
    #[command(flatten)]
    pub sandbox: crate::SandboxArgs,
}

/// `nimbus router`.
#[derive(Debug, Clone, Args)]
pub struct RouterArgs {
    #[command(flatten)]
    pub bus: BusArgs,
    /// Address to listen on.
    #[arg(long, env = "NIMBUS_ROUTER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
}

/// `nimbus health-manager`.
#[derive(Debug, Clone, Args)]
pub struct HealthManagerArgs {
    #[command(flatten)]
    pub bus: BusArgs,
}

/// Runs a DEA until SIGTERM or Ctrl-C, then evacuates it; a second signal leaves at once.
pub async fn dea(args: DeaArgs) -> anyhow::Result<()> {
    let mut config = nimbus_dea_wasm::Config::new(PathBuf::new());
    if let Some(id) = &args.id {
        config.id = id.clone();
    }
    config.data_dir = args
        .work_dir
        .clone()
        .unwrap_or_else(|| args.bus.data_dir().join("deas").join(&config.id));
    config.memory_mb = args.memory;
    config.host = args.host;
    config.evacuation_timeout = Duration::from_millis(args.evacuation_timeout);
    config.fuel_metering = args.sandbox.fuel_metering;
    config.allow_private_egress = args.sandbox.allow_private_egress;
    let nats = args.bus.connect(&format!("dea-{}", config.id)).await?;
    let dea = nimbus_dea_wasm::start(config, nats).await?;
    eprintln!("DEA {} joined the cloud; SIGTERM evacuates it", dea.id());
    shutdown_signal().await;
    eprintln!("Evacuating (signal again to leave without waiting for replacements)");
    dea.evacuate(shutdown_signal()).await;
    Ok(())
}

/// Runs a router until SIGTERM or Ctrl-C.
pub async fn router(args: RouterArgs) -> anyhow::Result<()> {
    let config = nimbus_router::Config {
        listen: args.listen,
        ..Default::default()
    };
    let router = nimbus_router::start(config, args.bus.connect("router").await?).await?;
    eprintln!("Router on http://{} joined the cloud", router.local_addr());
    shutdown_signal().await;
    router.shutdown().await;
    Ok(())
}

/// Runs a health manager until SIGTERM or Ctrl-C; it leads only while it holds the lease.
pub async fn health_manager(args: HealthManagerArgs) -> anyhow::Result<()> {
    let config = nimbus_health_manager::Config::default();
    let nats = args
        .bus
        .connect(&format!("health-manager-{}", config.id))
        .await?;
    let health_manager = nimbus_health_manager::start(config, nats).await?;
    eprintln!("Health manager joined the cloud");
    shutdown_signal().await;
    health_manager.shutdown().await;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
