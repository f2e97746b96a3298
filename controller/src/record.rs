//! New apps as desired state records them, and how the API shows an app.

use nimbus_protocol::Limits;
use nimbus_protocol::api::{App, AppState};
pub use nimbus_protocol::state::AppRecord;
use uuid::Uuid;

use crate::config::Config;

/// A new, stopped app without a droplet, routed at `<name>.<domain>`.
pub fn new_app(name: String, config: &Config) -> AppRecord {
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
        health_check_http_endpoint: None,
        created_at: now,
        updated_at: now,
    }
}

/// The API's view, with the number of instances running right now.
pub fn to_api(app: &AppRecord, running_instances: u32, config: &Config) -> App {
    App {
        id: app.id,
        name: app.name.clone(),
        state: app.state,
        instances: app.instances,
        running_instances,
        limits: app.limits,
        allowed_outbound_hosts: app.allowed_outbound_hosts.clone(),
        env: app.env.iter().cloned().collect(),
        health_check_http_endpoint: app.health_check_http_endpoint.clone(),
        urls: app.uris.iter().map(|host| config.url_of(host)).collect(),
        uris: app.uris.clone(),
        droplet: app.droplet.clone(),
        version: app.version,
        created_at: app.created_at,
        updated_at: app.updated_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_apps_are_stopped_and_routed_under_the_domain() {
        let config = Config::new("example.test", 8080);
        let app = new_app("hello".into(), &config);
        assert_eq!(app.uris, ["hello.example.test"]);
        assert!(!app.should_run());
        let api = to_api(&app, 0, &config);
        assert_eq!(api.urls, ["http://hello.example.test:8080"]);
    }

    #[test]
    fn default_http_port_is_left_out_of_urls() {
        let config = Config::new("example.test", 80);
        assert_eq!(config.url_of("a.example.test"), "http://a.example.test");
    }
}
