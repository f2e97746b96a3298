//! The controller's configuration.

use std::net::SocketAddr;
use std::time::Duration;

/// Default wait for a DEA to answer a start request (large components compile for a while).
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Default wait for a stager to finish one staging job.
pub const DEFAULT_STAGING_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Default largest package accepted by the bits upload.
pub const DEFAULT_MAX_PACKAGE_BYTES: usize = 256 * 1024 * 1024;

/// How one controller runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the REST API listens; the router reaches it at `api.<domain>`.
    pub listen: SocketAddr,
    /// Apps are routed at `<name>.<domain>`.
    pub domain: String,
    /// The router's public port, used to print apps' URLs.
    pub router_port: u16,
    /// A token to accept as admin, stored (hashed) on start. `nimbus up` passes its own.
    pub admin_token: Option<String>,
    pub start_timeout: Duration,
    pub staging_timeout: Duration,
    pub max_package_bytes: usize,
    /// How often desired and actual state are compared.
    pub converge_interval: Duration,
}

impl Config {
    /// A controller for `domain` with every other setting at its default.
    pub fn new(domain: impl Into<String>, router_port: u16) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            domain: domain.into(),
            router_port,
            admin_token: None,
            start_timeout: DEFAULT_START_TIMEOUT,
            staging_timeout: DEFAULT_STAGING_TIMEOUT,
            max_package_bytes: DEFAULT_MAX_PACKAGE_BYTES,
            converge_interval: Duration::from_secs(1),
        }
    }

    /// The host an app is routed at.
    pub fn app_host(&self, name: &str) -> String {
        format!("{name}.{}", self.domain)
    }

    /// The API's own route.
    pub fn api_host(&self) -> String {
        format!("api.{}", self.domain)
    }

    /// The URL of a routed host, without the port when it is HTTP's default.
    pub fn url_of(&self, host: &str) -> String {
        match self.router_port {
            80 => format!("http://{host}"),
            port => format!("http://{host}:{port}"),
        }
    }
}
