//! An app as desired state stores it, and how the API shows it.

use nimbus_protocol::api::{App, AppState};
use nimbus_protocol::{DropletManifest, Limits};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::Config;

/// One app in the `nimbus-apps` bucket.
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
    pub created_at: u64,
    pub updated_at: u64,
}

impl AppRecord {
    /// A new, stopped app without a droplet, routed at `<name>.<domain>`.
    pub fn new(name: String, config: &Config) -> AppRecord {
        let now = nimbus_protocol::now_ms();
        AppRecord {
            id: Uuid::new_v4(),
            uris: vec![config.app_host(&name)],
            name,
            state: AppState::Stopped,
            instances: 1,
            limits: Limits::default(),
            droplet: None,
            package_sha256: None,
            version: Uuid::new_v4(),
            env: Vec::new(),
            allowed_outbound_hosts: Vec::new(),
            created_at: now,
            updated_at: now,
        }
    }

    /// Whether DEAs should be running this app.
    pub fn should_run(&self) -> bool {
        self.state == AppState::Started && self.droplet.is_some()
    }

    /// The API's view, with the number of instances running right now.
    pub fn to_api(&self, running_instances: u32, config: &Config) -> App {
        App {
            id: self.id,
            name: self.name.clone(),
            state: self.state,
            instances: self.instances,
            running_instances,
            limits: self.limits,
            allowed_outbound_hosts: self.allowed_outbound_hosts.clone(),
            env: self.env.iter().cloned().collect(),
            urls: self.uris.iter().map(|host| config.url_of(host)).collect(),
            uris: self.uris.clone(),
            droplet: self.droplet.clone(),
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_apps_are_stopped_and_routed_under_the_domain() {
        let config = Config::new("example.test", 8080);
        let app = AppRecord::new("hello".into(), &config);
        assert_eq!(app.uris, ["hello.example.test"]);
        assert!(!app.should_run());
        let api = app.to_api(0, &config);
        assert_eq!(api.urls, ["http://hello.example.test:8080"]);
    }

    #[test]
    fn default_http_port_is_left_out_of_urls() {
        let config = Config::new("example.test", 80);
        assert_eq!(config.url_of("a.example.test"), "http://a.example.test");
    }
}
