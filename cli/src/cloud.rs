//! The micro cloud behind `nimbus up`: a `nats-server` child process (started again if it
//! dies) and every component in this one process, each with its own NATS connection exactly as
//! if it ran on its own host. The data directory holds `nats.json`, how to reach that NATS, so
//! `nimbus dea --data-dir DIR` (and `router`, `health-manager`) can join from other processes.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// What `nimbus up` was asked for.
#[derive(Debug, Clone)]
pub struct CloudConfig {
    pub data_dir: PathBuf,
    /// The router's port.
    pub port: u16,
    pub domain: String,
    /// NATS's loopback port; 0 picks a free one.
    pub nats_port: u16,
    /// Whether the DEA meters fuel (on by default; off ignores apps' fuel limits).
    pub fuel_metering: bool,
    /// Whether apps may reach private addresses their allow-list names.
    pub allow_private_egress: bool,
    /// Run a DEA in this process (off: DEAs join with `nimbus dea --data-dir`).
    pub dea: bool,
    /// Run a health manager in this process.
    pub health_manager: bool,
}

/// The file in the data directory that says how to reach the cloud's NATS.
pub const NATS_FILE: &str = "nats.json";

/// Secrets generated on first start and kept in the data directory (mode 0600).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub nats_user: String,
    pub nats_password: String,
    pub admin_token: String,
}

/// A running micro cloud.
pub struct Cloud {
    nats: nimbus_bus::SupervisedServer,
    router: nimbus_router::Handle,
    stager: nimbus_stager::Handle,
    dea: Option<nimbus_dea_wasm::Handle>,
    controller: nimbus_controller::Handle,
    health_manager: Option<nimbus_health_manager::Handle>,
    pub credentials: Credentials,
    pub api_url: String,
}

impl Cloud {
    /// Starts NATS, then the router, stager, DEA, controller and health manager.
    pub async fn start(config: &CloudConfig) -> anyhow::Result<Cloud> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "failed to create the data directory {}",
                config.data_dir.display()
            )
        })?;
        let credentials = load_or_create_credentials(&config.data_dir)?;
        let nats = nimbus_bus::SupervisedServer::start(nimbus_bus::ServerOptions {
            data_dir: config.data_dir.join("nats"),
            port: config.nats_port,
            user: credentials.nats_user.clone(),
            password: credentials.nats_password.clone(),
        })
        .await?;
        nimbus_bus::write_private(
            &config.data_dir.join(NATS_FILE),
            &serde_json::to_vec_pretty(nats.config())?,
        )?;
        let connect = |name: &'static str| nimbus_bus::connect(nats.config(), name);

        let router_config = nimbus_router::Config {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], config.port)),
            ..Default::default()
        };
        let router = nimbus_router::start(router_config, connect("router").await?)
            .await
            .with_context(|| format!("failed to start the router on port {}", config.port))?;
        let mut dea_config = nimbus_dea_wasm::Config::new(config.data_dir.join("dea"));
        dea_config.fuel_metering = config.fuel_metering;
        dea_config.allow_private_egress = config.allow_private_egress;
        // The stager precompiles droplets for exactly this DEA's engine.
        let mut stager_config = nimbus_stager::Config::new(config.data_dir.join("stager"));
        stager_config.engine = dea_config.engine_settings();
        let stager = nimbus_stager::start(stager_config, connect("stager").await?).await?;
        if !config.fuel_metering {
            tracing::warn!("fuel metering is off: apps' fuel limits are not enforced");
        }
        let dea = match config.dea {
            true => Some(nimbus_dea_wasm::start(dea_config, connect("dea").await?).await?),
            false => None,
        };
        let mut controller_config =
            nimbus_controller::Config::new(config.domain.clone(), router.local_addr().port());
        controller_config.admin_token = Some(credentials.admin_token.clone());
        let api_url = controller_config.url_of(&controller_config.api_host());
        let controller =
            nimbus_controller::start(controller_config, connect("controller").await?).await?;
        let health_manager = match config.health_manager {
            true => Some(
                nimbus_health_manager::start(
                    nimbus_health_manager::Config::default(),
                    connect("health-manager").await?,
                )
                .await?,
            ),
            false => None,
        };
        Ok(Cloud {
            nats,
            router,
            stager,
            dea,
            controller,
            health_manager,
            credentials,
            api_url,
        })
    }

    /// The NATS server components use.
    pub fn nats_url(&self) -> &str {
        &self.nats.config().url
    }

    /// Stops in the order that loses nothing: the health manager first (so nothing is
    /// "repaired" as the cloud goes), instances unregister before the router goes, and NATS
    /// goes last so everyone can say goodbye.
    pub async fn shutdown(self) {
        if let Some(health_manager) = self.health_manager {
            health_manager.shutdown().await;
        }
        if let Some(dea) = self.dea {
            dea.shutdown().await;
        }
        self.controller.shutdown().await;
        self.stager.shutdown().await;
        self.router.shutdown().await;
        self.nats.stop().await;
    }
}

fn load_or_create_credentials(data_dir: &Path) -> anyhow::Result<Credentials> {
    let path = data_dir.join("credentials.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is corrupt: remove it to generate new credentials",
                path.display()
            )
        });
    }
    let credentials = Credentials {
        nats_user: "nimbus".to_string(),
        nats_password: random_secret(),
        admin_token: random_secret(),
    };
    nimbus_bus::write_private(&path, &serde_json::to_vec_pretty(&credentials)?)?;
    Ok(credentials)
}

/// 256 random bits, hex-encoded.
fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
