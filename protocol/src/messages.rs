//! NATS message bodies. Field names follow Cloud Foundry v1 where one exists.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::droplet::{DropletManifest, Limits};

/// `dea.advertise`: a DEA's capacity, published every second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeaAdvertise {
    pub id: String,
    /// Memory the DEA can still give to new instances, in MB.
    pub available_memory: u64,
    /// Running instances per app on this DEA.
    #[serde(default)]
    pub app_id_to_count: HashMap<Uuid, u32>,
    /// Droplet kinds this DEA can run.
    #[serde(default)]
    pub stacks: Vec<String>,
    /// The DEA is leaving (`DEA_EVACUATION`): place nothing new on it.
    #[serde(default)]
    pub evacuating: bool,
}

/// `dea.<id>.start`: start one instance of an app (request; the DEA replies [`StartReply`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartRequest {
    pub app_id: Uuid,
    pub app_name: String,
    /// Changes whenever the app gets a new droplet or is restarted.
    pub version: Uuid,
    pub index: u32,
    pub droplet: DropletManifest,
    /// Hosts the instance answers for (e.g. `hello.localhost`).
    pub uris: Vec<String>,
    pub limits: Limits,
    /// User environment, added to the guest's environment after `VCAP_APPLICATION`.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Hosts the app may send HTTP requests to (`host` or `host:port`; `*.example.com` matches
    /// subdomains). Empty: no outbound HTTP at all.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// A path probed before the instance is routed (readiness) and periodically after
    /// (liveness); consecutive failures crash the instance.
    #[serde(default)]
    pub health_check_http_endpoint: Option<String>,
}

/// The DEA's reply to a [`StartRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StartReply {
    Started { instance_id: Uuid },
    Failed { message: String },
}

/// `dea.stop`: stop every instance that matches; absent filters match everything of the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopRequest {
    pub app_id: Uuid,
    #[serde(default)]
    pub version: Option<Uuid>,
    #[serde(default)]
    pub indices: Option<Vec<u32>>,
    #[serde(default)]
    pub instance_ids: Option<Vec<Uuid>>,
}

impl StopRequest {
    /// Whether an instance with these attributes is to be stopped.
    pub fn matches(&self, app_id: Uuid, version: Uuid, index: u32, instance_id: Uuid) -> bool {
        self.app_id == app_id
            && self.version.is_none_or(|v| v == version)
            && self.indices.as_ref().is_none_or(|i| i.contains(&index))
            && self
                .instance_ids
                .as_ref()
                .is_none_or(|i| i.contains(&instance_id))
    }
}

/// Lifecycle state of an instance, as the DEA reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceState {
    Starting,
    Running,
    Stopping,
    Stopped,
    Crashed,
}

/// One instance in a [`DeaHeartbeat`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceHeartbeat {
    pub app_id: Uuid,
    pub version: Uuid,
    pub instance_id: Uuid,
    pub index: u32,
    pub state: InstanceState,
    /// When the instance entered `state` (ms since the Unix epoch).
    pub state_timestamp: u64,
    /// Where the instance serves HTTP.
    pub host: String,
    pub port: u16,
}

/// `dea.heartbeat`: every instance a DEA runs, published every second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeaHeartbeat {
    pub dea: String,
    pub droplets: Vec<InstanceHeartbeat>,
    /// The DEA is leaving: its instances still serve, but need replacements elsewhere.
    #[serde(default)]
    pub evacuating: bool,
}

/// Why an instance exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExitReason {
    Stopped,
    Crashed,
    DeaShutdown,
    DeaEvacuation,
}

/// `droplet.exited`: an instance stopped or crashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropletExited {
    pub app_id: Uuid,
    pub version: Uuid,
    pub instance_id: Uuid,
    pub index: u32,
    pub reason: ExitReason,
    #[serde(default)]
    pub exit_status: Option<i32>,
    #[serde(default)]
    pub exit_description: String,
}

/// `cloudcontrollers.hm.requests`: what the health manager asks a controller to do. A
/// controller acts only if the app is still at `version` (desired state may have moved on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HmRequest {
    /// Place and start these indices.
    Start {
        app_id: Uuid,
        version: Uuid,
        indices: Vec<u32>,
    },
    /// Stop these instances (extra, duplicate, stale-version or of a deleted app).
    Stop {
        app_id: Uuid,
        instance_ids: Vec<Uuid>,
    },
}

/// An instance's health as the health manager judges it (`nimbus app` shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Health {
    Starting,
    Running,
    /// Crashed and about to be restarted.
    Crashed,
    /// Crashed repeatedly: restarts wait an exponentially growing back-off.
    Flapping,
    /// Desired but not running, and not crashed (e.g. its DEA was lost; being replaced).
    Down,
}

/// `healthmanager.health` (request): the health of these apps' instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRequest {
    pub app_ids: Vec<Uuid>,
}

/// One index of an app in a [`HealthReply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexHealth {
    pub index: u32,
    pub health: Health,
    /// Crashes since the last quiet period.
    pub crash_count: u32,
    /// Why it last crashed.
    #[serde(default)]
    pub last_crash: Option<String>,
    /// When a flapping index will be restarted (ms since the Unix epoch).
    #[serde(default)]
    pub restart_at: Option<u64>,
}

/// One app in a [`HealthReply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppHealth {
    pub app_id: Uuid,
    /// Instances of the current version running now.
    pub running: u32,
    pub indices: Vec<IndexHealth>,
}

/// The health manager's answer to a [`HealthRequest`]; apps it does not know are left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReply {
    pub apps: Vec<AppHealth>,
}

/// `router.register` / `router.unregister`: one endpoint serving some hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRegistration {
    pub host: String,
    pub port: u16,
    pub uris: Vec<String>,
    /// The app behind the endpoint; `None` for platform routes such as the API.
    #[serde(default)]
    pub app: Option<Uuid>,
    #[serde(default)]
    pub private_instance_id: Option<String>,
}

/// `router.start` (and the reply to `router.greet`): how often registrars must re-register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterStart {
    pub id: String,
    pub minimum_register_interval_in_seconds: u64,
    pub prune_threshold_in_seconds: u64,
}

/// `staging`: stage an uploaded package into a droplet (request; the stager replies [`StagingAck`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagingRequest {
    pub staging_id: Uuid,
    pub app_id: Uuid,
    pub app_name: String,
    /// SHA-256 of the package; it is stored under `droplet::package_object_name`.
    pub package_sha256: String,
}

/// A stager's acknowledgement that it took a [`StagingRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagingAck {
    pub stager_id: String,
}

/// `staging.<id>.log`: one line of staging output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagingLog {
    pub line: String,
}

/// `staging.<id>.done`: how a staging job ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StagingDone {
    Staged { droplet: DropletManifest },
    Failed { message: String },
}

/// What kind of platform event happened to an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A request hit one of the app's limits (fuel, memory, timeout, concurrency, body size).
    LimitExceeded,
    /// A request ended in a guest trap (a panic, `unreachable`, a stack overflow).
    Trapped,
    /// The app tried something its capabilities do not grant (egress, files).
    Denied,
    /// An instance crashed.
    Crashed,
    /// Instances or limits changed.
    Scaled,
}

/// `events.<app_id>`: something the platform did or saw happen to an app (`nimbus events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppEvent {
    pub app_id: Uuid,
    pub kind: EventKind,
    /// A short machine-readable cause, e.g. `fuel_exhausted` (the `x-nimbus-error` value).
    pub reason: String,
    /// What happened, for people.
    pub description: String,
    #[serde(default)]
    pub instance_index: Option<u32>,
    /// ms since the Unix epoch.
    pub timestamp: u64,
}

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Out,
    Err,
}

/// `logs.<app_id>`: one line of an app's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogMessage {
    pub app_id: Uuid,
    /// Who wrote it, as Cloud Foundry names it: `APP/0`, `STG`, `RTR`, `API`.
    pub source: String,
    pub stream: LogStream,
    /// ms since the Unix epoch.
    pub timestamp: u64,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::droplet::DropletKind;
    use crate::{decode, encode};

    fn droplet() -> DropletManifest {
        DropletManifest {
            sha256: "00".repeat(32),
            kind: DropletKind::HttpComponent,
            language: "wasm".into(),
            size: 10,
            staged_at: 5,
        }
    }

    fn round_trip<T>(value: T)
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let back: T = decode(&encode(&value)).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn every_message_round_trips() {
        let app_id = Uuid::new_v4();
        round_trip(DeaAdvertise {
            id: "dea-1".into(),
            available_memory: 1024,
            app_id_to_count: HashMap::from([(app_id, 2)]),
            stacks: vec!["http-component".into()],
            evacuating: false,
        });
        round_trip(StartRequest {
            app_id,
            app_name: "hello".into(),
            version: Uuid::new_v4(),
            index: 1,
            droplet: droplet(),
            uris: vec!["hello.localhost".into()],
            limits: Limits::default(),
            env: vec![("K".into(), "V".into())],
            allowed_outbound_hosts: vec!["api.example.com".into()],
            health_check_http_endpoint: None,
        });
        round_trip(AppEvent {
            app_id,
            kind: EventKind::LimitExceeded,
            reason: "fuel_exhausted".into(),
            description: "request ran out of fuel".into(),
            instance_index: Some(0),
            timestamp: 1,
        });
        round_trip(StartReply::Started {
            instance_id: Uuid::new_v4(),
        });
        round_trip(StartReply::Failed {
            message: "no".into(),
        });
        round_trip(DeaHeartbeat {
            dea: "dea-1".into(),
            droplets: vec![InstanceHeartbeat {
                app_id,
                version: Uuid::new_v4(),
                instance_id: Uuid::new_v4(),
                index: 0,
                state: InstanceState::Running,
                state_timestamp: 7,
                host: "127.0.0.1".into(),
                port: 4000,
            }],
            evacuating: true,
        });
        round_trip(HmRequest::Start {
            app_id,
            version: Uuid::new_v4(),
            indices: vec![0, 2],
        });
        round_trip(HmRequest::Stop {
            app_id,
            instance_ids: vec![Uuid::new_v4()],
        });
        round_trip(HealthRequest {
            app_ids: vec![app_id],
        });
        round_trip(HealthReply {
            apps: vec![AppHealth {
                app_id,
                running: 1,
                indices: vec![IndexHealth {
                    index: 1,
                    health: Health::Flapping,
                    crash_count: 4,
                    last_crash: Some("instantiation failed".into()),
                    restart_at: Some(9),
                }],
            }],
        });
        round_trip(DropletExited {
            app_id,
            version: Uuid::new_v4(),
            instance_id: Uuid::new_v4(),
            index: 0,
            reason: ExitReason::DeaShutdown,
            exit_status: None,
            exit_description: "shutting down".into(),
        });
        round_trip(RouteRegistration {
            host: "127.0.0.1".into(),
            port: 4000,
            uris: vec!["hello.localhost".into()],
            app: Some(app_id),
            private_instance_id: Some("x".into()),
        });
        round_trip(RouterStart {
            id: "r".into(),
            minimum_register_interval_in_seconds: 5,
            prune_threshold_in_seconds: 30,
        });
        round_trip(StagingRequest {
            staging_id: Uuid::new_v4(),
            app_id,
            app_name: "hello".into(),
            package_sha256: "ff".repeat(32),
        });
        round_trip(StagingAck {
            stager_id: "s".into(),
        });
        round_trip(StagingLog { line: "ok".into() });
        round_trip(StagingDone::Staged { droplet: droplet() });
        round_trip(StagingDone::Failed {
            message: "bad".into(),
        });
        round_trip(LogMessage {
            app_id,
            source: "APP/0".into(),
            stream: LogStream::Err,
            timestamp: 1,
            message: "hi".into(),
        });
    }

    #[test]
    fn health_manager_requests_use_cloud_foundry_ops() {
        let start = HmRequest::Start {
            app_id: Uuid::nil(),
            version: Uuid::nil(),
            indices: vec![1],
        };
        assert!(
            String::from_utf8(encode(&start))
                .unwrap()
                .contains("\"op\":\"START\"")
        );
    }

    #[test]
    fn exit_reasons_use_cloud_foundry_spelling() {
        assert_eq!(
            String::from_utf8(encode(&ExitReason::DeaShutdown)).unwrap(),
            "\"DEA_SHUTDOWN\""
        );
    }

    #[test]
    fn stop_filters_narrow_the_match() {
        let (app, version, id) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let all = StopRequest {
            app_id: app,
            version: None,
            indices: None,
            instance_ids: None,
        };
        assert!(all.matches(app, version, 3, id));
        assert!(!all.matches(Uuid::new_v4(), version, 3, id));
        let old = StopRequest {
            version: Some(Uuid::new_v4()),
            ..all.clone()
        };
        assert!(!old.matches(app, version, 3, id));
        let index = StopRequest {
            indices: Some(vec![1]),
            ..all
        };
        assert!(index.matches(app, version, 1, id) && !index.matches(app, version, 0, id));
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        let err = decode::<StartRequest>(b"{\"app_id\": 5}").unwrap_err();
        assert!(
            err.to_string().starts_with("malformed StartRequest"),
            "{err}"
        );
        assert!(decode::<DeaHeartbeat>(b"\xff\xfe").is_err());
    }
}
