//! Bodies of the controller's REST API under `/v1`, shared by the controller and the CLI.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::droplet::{DropletManifest, Limits};
use crate::messages::Health;

/// The header and scheme of API authentication: `Authorization: Bearer <token>`.
pub const BEARER: &str = "Bearer";

/// `GET /v1/info` (no token needed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    pub name: String,
    pub version: String,
    pub api_version: u32,
    /// Apps are reached at `<name>.<domain>`.
    pub domain: String,
    /// Base URL of apps' routes, e.g. `http://{host}:8080`, with `{host}` to fill in.
    pub app_url_template: String,
}

/// Whether an app should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AppState {
    Started,
    Stopped,
}

/// `POST /v1/apps`: a name and any of [`UpdateApp`]'s settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    pub name: String,
    #[serde(default)]
    pub instances: Option<u32>,
    #[serde(default)]
    pub memory_mb: Option<u64>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub fuel: Option<u64>,
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    #[serde(default)]
    pub allowed_outbound_hosts: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub health_check_http_endpoint: Option<String>,
}

impl CreateApp {
    /// The settings part of the request.
    pub fn settings(&self) -> UpdateApp {
        UpdateApp {
            instances: self.instances,
            memory_mb: self.memory_mb,
            timeout_ms: self.timeout_ms,
            fuel: self.fuel,
            max_concurrency: self.max_concurrency,
            max_body_bytes: self.max_body_bytes,
            allowed_outbound_hosts: self.allowed_outbound_hosts.clone(),
            env: self.env.clone(),
            health_check_http_endpoint: self.health_check_http_endpoint.clone(),
        }
    }
}

/// `PATCH /v1/apps/{app}`: fields left out keep their value. Changing anything but
/// `instances` restarts the app's instances (rolling) so they run under the new settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateApp {
    #[serde(default)]
    pub instances: Option<u32>,
    #[serde(default)]
    pub memory_mb: Option<u64>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Fuel per request.
    #[serde(default)]
    pub fuel: Option<u64>,
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Replaces the list of hosts the app may call.
    #[serde(default)]
    pub allowed_outbound_hosts: Option<Vec<String>>,
    /// Replaces the app's user environment.
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    /// The path DEAs probe to tell whether an instance is healthy (`""` removes it).
    #[serde(default)]
    pub health_check_http_endpoint: Option<String>,
}

impl UpdateApp {
    /// Whether only the instance count changes (no restart needed).
    pub fn only_scales(&self) -> bool {
        UpdateApp {
            instances: None,
            ..self.clone()
        } == UpdateApp::default()
    }
}

/// An app as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    pub id: Uuid,
    pub name: String,
    pub state: AppState,
    /// Desired number of instances.
    pub instances: u32,
    /// Instances reported running by DEAs right now.
    pub running_instances: u32,
    pub limits: Limits,
    /// Hosts the app may send HTTP requests to.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// User environment, visible to the app next to `VCAP_APPLICATION`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The path DEAs probe before routing to an instance and periodically after.
    #[serde(default)]
    pub health_check_http_endpoint: Option<String>,
    pub uris: Vec<String>,
    /// Full URLs of the app through the router.
    pub urls: Vec<String>,
    /// The droplet instances run, once staged.
    pub droplet: Option<DropletManifest>,
    /// Changes whenever the app gets a new droplet or is restarted.
    pub version: Uuid,
    pub created_at: u64,
    pub updated_at: u64,
}

/// One instance of an app: one that a DEA runs (from its heartbeats), or a wanted index that
/// none runs, with what the health manager knows of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub index: u32,
    /// STARTING, RUNNING, CRASHED, FLAPPING (crashing repeatedly, restarts backed off) or DOWN.
    pub state: Health,
    /// Whether it runs (or is wanted at) the app's current version.
    pub current: bool,
    /// Crashes of this index since it last stayed up for a quiet period.
    #[serde(default)]
    pub crash_count: u32,
    /// Why it last crashed.
    #[serde(default)]
    pub last_crash: Option<String>,
    /// When a crashed index is restarted (ms since the Unix epoch).
    #[serde(default)]
    pub restart_at: Option<u64>,
    /// The rest is set when a DEA runs it.
    #[serde(default)]
    pub instance_id: Option<Uuid>,
    /// ms since the Unix epoch when it entered `state`.
    #[serde(default)]
    pub since: Option<u64>,
    #[serde(default)]
    pub dea: Option<String>,
    /// Where the instance serves HTTP directly (the router's upstream).
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
}

/// One event of `PUT /v1/apps/{app}/bits`, whose response streams one JSON object per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StagingEvent {
    /// A line of build output.
    Log { line: String },
    /// Staging finished; the app now has this droplet.
    Staged {
        droplet: DropletManifest,
        /// Whether the droplet was reused because the package was unchanged.
        reused: bool,
        duration_ms: u64,
    },
    /// Staging failed; the app keeps its previous droplet.
    Failed { message: String },
}

/// The body of every API error: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, for scripts (`code`) and for people (`message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// Whether `name` can be an app name: it becomes a DNS label of the app's host.
pub fn validate_app_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if name.is_empty()
        || name.len() > 63
        || !ok_chars
        || name.starts_with('-')
        || name.ends_with('-')
    {
        return Err(format!(
            "invalid app name {name:?}: use 1-63 lower-case letters, digits and '-', not at either end"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, encode};

    #[test]
    fn staging_events_are_tagged_by_type() {
        let line = String::from_utf8(encode(&StagingEvent::Log { line: "x".into() })).unwrap();
        assert_eq!(line, r#"{"type":"log","line":"x"}"#);
        let failed: StagingEvent = decode(br#"{"type":"failed","message":"m"}"#).unwrap();
        assert_eq!(
            failed,
            StagingEvent::Failed {
                message: "m".into()
            }
        );
    }

    #[test]
    fn create_app_rejects_unknown_fields() {
        assert!(decode::<CreateApp>(br#"{"name":"a","colour":1}"#).is_err());
        let ok: CreateApp = decode(br#"{"name":"a"}"#).unwrap();
        assert_eq!(ok.instances, None);
    }

    #[test]
    fn only_instance_changes_count_as_scaling() {
        let scale = UpdateApp {
            instances: Some(3),
            ..Default::default()
        };
        assert!(scale.only_scales());
        let memory = UpdateApp {
            memory_mb: Some(64),
            ..scale
        };
        assert!(!memory.only_scales());
    }

    #[test]
    fn app_names_must_be_dns_labels() {
        assert!(validate_app_name("hello-rust2").is_ok());
        for bad in ["", "Hello", "a_b", "-a", "a-", "a.b", &"x".repeat(64)] {
            assert!(validate_app_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
