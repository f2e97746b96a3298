//! Desired state as JetStream stores it: the buckets and the app record. The controller writes
//! it; the health manager watches it. Both decode the same type, so the format lives here.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::api::AppState;
use crate::droplet::{DropletManifest, Limits};

/// Key-value bucket of apps, keyed by app id.
pub const APPS_BUCKET: &str = "nimbus-apps";
/// Key-value bucket mapping app names to ids.
pub const APP_NAMES_BUCKET: &str = "nimbus-app-names";
/// Key-value bucket of API token hashes.
pub const TOKENS_BUCKET: &str = "nimbus-tokens";
/// Key-value bucket holding the health managers' leadership lease (its entries expire).
pub const HM_LEASE_BUCKET: &str = "nimbus-hm-lease";

/// One app in [`APPS_BUCKET`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    pub id: Uuid,
    pub name: String,
    pub state: AppState,
    pub instances: u32,
    pub limits: Limits,
    /// Hosts the app is routed at.
    pub uris: Vec<String>,
    pub droplet: Option<DropletManifest>,
    /// SHA-256 of the package the droplet was staged from (unchanged packages are not restaged).
    #[serde(default)]
    pub package_sha256: Option<String>,
    /// Changes whenever the app gets a new droplet or is restarted; DEAs run one version.
    pub version: Uuid,
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Hosts the app may send HTTP requests to.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// A path the DEA probes before routing to an instance and periodically after; failing
    /// probes crash the instance. `None`: an instance is healthy once it instantiates.
    #[serde(default)]
    pub health_check_http_endpoint: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
}

impl AppRecord {
    /// Whether DEAs should be running this app.
    pub fn should_run(&self) -> bool {
        self.state == AppState::Started && self.droplet.is_some()
    }
}
