//! The comparison itself, free of I/O: desired state (apps), actual state (live instances),
//! crash history and requests still in flight go in; requests to controllers and each app's
//! health come out.
//!
//! Rules, per app that should run at version V with N instances:
//! - an index in `0..N` with no instance of V is started, unless a start is already asked for
//!   or the crash policy holds it back;
//! - instances of V beyond `N`, and all but the best of duplicates, are stopped;
//! - instances of other versions are stopped once every index of V runs (a rolling update,
//!   so a new version that never comes up leaves the old one serving);
//! - instances of stopped or deleted apps are stopped.
//!
//! Instances on evacuating DEAs count for nothing and are never stopped: they serve until
//! their replacements run, then their DEA retires them itself.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use nimbus_protocol::messages::{
    AppHealth, Health, HmRequest, IndexHealth, InstanceHeartbeat, InstanceState,
};
use nimbus_protocol::state::AppRecord;
use uuid::Uuid;

use crate::actual::Live;
use crate::crashes::{CrashPolicy, Crashes};
use crate::pending::Pending;

/// Everything the analysis reads.
pub struct View<'a> {
    pub apps: &'a HashMap<Uuid, AppRecord>,
    pub live: &'a [Live<'a>],
    pub crashes: &'a Crashes,
    pub policy: &'a CrashPolicy,
    pub pending: &'a Pending,
    pub now: Instant,
}

/// What the controllers should do to make actual state match desired state.
pub fn plan(view: &View<'_>) -> Vec<HmRequest> {
    let mut by_app: HashMap<Uuid, Vec<&InstanceHeartbeat>> = HashMap::new();
    for live in view.live.iter().filter(|live| !live.evacuating) {
        by_app
            .entry(live.instance.app_id)
            .or_default()
            .push(live.instance);
    }
    let mut requests = Vec::new();
    for app in view.apps.values() {
        let mine = by_app.remove(&app.id).unwrap_or_default();
        let (starts, stops) = if app.should_run() {
            (missing(view, app, &mine), surplus(app, &mine))
        } else {
            (Vec::new(), mine.iter().map(|i| i.instance_id).collect())
        };
        push_requests(
            &mut requests,
            view,
            app.id,
            Some(app.version),
            starts,
            stops,
        );
    }
    // What is left belongs to apps that no longer exist.
    for (app_id, orphans) in by_app {
        let stops = orphans.iter().map(|i| i.instance_id).collect();
        push_requests(&mut requests, view, app_id, None, Vec::new(), stops);
    }
    requests
}

/// Indices of the current version with no instance that may be started now.
fn missing(view: &View<'_>, app: &AppRecord, mine: &[&InstanceHeartbeat]) -> Vec<u32> {
    (0..app.instances)
        .filter(|&index| {
            !mine
                .iter()
                .any(|i| i.version == app.version && i.index == index)
        })
        .filter(|&index| !view.pending.start_asked((app.id, app.version, index)))
        .filter(|&index| {
            view.crashes
                .may_restart(app.id, app.version, index, view.now)
        })
        .collect()
}

/// Instances to stop: beyond the desired count, duplicates, and old versions once the
/// current one runs in full.
fn surplus(app: &AppRecord, mine: &[&InstanceHeartbeat]) -> Vec<Uuid> {
    let mut stops = Vec::new();
    let mut best: BTreeMap<u32, &InstanceHeartbeat> = BTreeMap::new();
    for &instance in mine.iter().filter(|i| i.version == app.version) {
        if instance.index >= app.instances {
            stops.push(instance.instance_id);
            continue;
        }
        match best.get(&instance.index) {
            Some(kept) if rank(kept) <= rank(instance) => stops.push(instance.instance_id),
            Some(kept) => {
                stops.push(kept.instance_id);
                best.insert(instance.index, instance);
            }
            None => {
                best.insert(instance.index, instance);
            }
        }
    }
    let running = best
        .values()
        .filter(|i| i.state == InstanceState::Running)
        .count();
    if running as u32 == app.instances {
        stops.extend(
            mine.iter()
                .filter(|i| i.version != app.version)
                .map(|i| i.instance_id),
        );
    }
    stops
}

/// Which of two duplicates to keep (lower is better): a running one, then the older one.
fn rank(instance: &InstanceHeartbeat) -> (bool, u64, Uuid) {
    (
        instance.state != InstanceState::Running,
        instance.state_timestamp,
        instance.instance_id,
    )
}

fn push_requests(
    requests: &mut Vec<HmRequest>,
    view: &View<'_>,
    app_id: Uuid,
    version: Option<Uuid>,
    indices: Vec<u32>,
    mut instance_ids: Vec<Uuid>,
) {
    if let Some(version) = version
        && !indices.is_empty()
    {
        requests.push(HmRequest::Start {
            app_id,
            version,
            indices,
        });
    }
    instance_ids.retain(|id| !view.pending.stop_asked(*id));
    if !instance_ids.is_empty() {
        requests.push(HmRequest::Stop {
            app_id,
            instance_ids,
        });
    }
}

/// How an app's instances are doing, index by index (instances on evacuating DEAs included:
/// they still serve).
pub fn health(view: &View<'_>, app: &AppRecord) -> AppHealth {
    let current: Vec<&InstanceHeartbeat> = view
        .live
        .iter()
        .map(|live| live.instance)
        .filter(|i| i.app_id == app.id && i.version == app.version)
        .collect();
    let running = current
        .iter()
        .filter(|i| i.state == InstanceState::Running)
        .count() as u32;
    let indices = (0..app.instances)
        .map(|index| {
            let instance = current
                .iter()
                .filter(|i| i.index == index)
                .min_by_key(|i| rank(i));
            let crash = view.crashes.get(app.id, app.version, index);
            let health = match (instance, crash) {
                (Some(i), _) if i.state == InstanceState::Running => Health::Running,
                (Some(_), _) => Health::Starting,
                (None, Some(crash)) if crash.flapping(view.policy) => Health::Flapping,
                (None, Some(_)) => Health::Crashed,
                (None, None) if view.pending.start_asked((app.id, app.version, index)) => {
                    Health::Starting
                }
                (None, None) => Health::Down,
            };
            IndexHealth {
                index,
                health,
                crash_count: crash.map_or(0, |c| c.count),
                last_crash: crash.map(|c| c.description.clone()),
                restart_at: crash
                    .filter(|c| instance.is_none() && c.restart_at > view.now)
                    .map(|c| {
                        let wait = c.restart_at.saturating_duration_since(view.now);
                        nimbus_protocol::now_ms() + wait.as_millis() as u64
                    }),
            }
        })
        .collect();
    AppHealth {
        app_id: app.id,
        running,
        indices,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nimbus_protocol::api::AppState;
    use nimbus_protocol::{DropletKind, DropletManifest, Limits};

    use super::*;

    fn app(instances: u32) -> AppRecord {
        AppRecord {
            id: Uuid::new_v4(),
            name: "a".into(),
            state: AppState::Started,
            instances,
            limits: Limits::default(),
            uris: vec!["a.test".into()],
            droplet: Some(DropletManifest {
                sha256: "0".repeat(64),
                kind: DropletKind::HttpComponent,
                language: "wasm".into(),
                size: 1,
                staged_at: 0,
            }),
            package_sha256: None,
            version: Uuid::new_v4(),
            env: vec![],
            allowed_outbound_hosts: vec![],
            health_check_http_endpoint: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn instance(
        app: &AppRecord,
        version: Uuid,
        index: u32,
        state: InstanceState,
    ) -> InstanceHeartbeat {
        InstanceHeartbeat {
            app_id: app.id,
            version,
            instance_id: Uuid::new_v4(),
            index,
            state,
            state_timestamp: index as u64,
            host: "127.0.0.1".into(),
            port: 1,
        }
    }

    struct World {
        apps: HashMap<Uuid, AppRecord>,
        instances: Vec<(InstanceHeartbeat, bool)>,
        crashes: Crashes,
        policy: CrashPolicy,
        pending: Pending,
        now: Instant,
    }

    impl World {
        fn new(apps: &[&AppRecord]) -> World {
            World {
                apps: apps.iter().map(|a| (a.id, (*a).clone())).collect(),
                instances: Vec::new(),
                crashes: Crashes::default(),
                policy: CrashPolicy::default(),
                pending: Pending::default(),
                now: Instant::now(),
            }
        }

        fn run(&mut self, instance: InstanceHeartbeat) -> Uuid {
            let id = instance.instance_id;
            self.instances.push((instance, false));
            id
        }

        fn with_view<T>(&self, f: impl FnOnce(&View<'_>) -> T) -> T {
            let live: Vec<Live<'_>> = self
                .instances
                .iter()
                .map(|(instance, evacuating)| Live {
                    evacuating: *evacuating,
                    instance,
                })
                .collect();
            f(&View {
                apps: &self.apps,
                live: &live,
                crashes: &self.crashes,
                policy: &self.policy,
                pending: &self.pending,
                now: self.now,
            })
        }

        fn plan(&self) -> Vec<HmRequest> {
            self.with_view(plan)
        }
    }

    #[test]
    fn starts_missing_indices_of_the_current_version() {
        let a = app(3);
        let mut world = World::new(&[&a]);
        world.run(instance(&a, a.version, 1, InstanceState::Running));
        assert_eq!(
            world.plan(),
            [HmRequest::Start {
                app_id: a.id,
                version: a.version,
                indices: vec![0, 2]
            }]
        );
        world
            .pending
            .asked_start((a.id, a.version, 0), world.now + Duration::from_secs(9));
        assert_eq!(
            world.plan(),
            [HmRequest::Start {
                app_id: a.id,
                version: a.version,
                indices: vec![2]
            }],
            "a start in flight is not asked again"
        );
    }

    #[test]
    fn stops_extras_duplicates_and_orphans() {
        let a = app(1);
        let gone = app(1);
        let mut world = World::new(&[&a]);
        world.run(instance(&a, a.version, 0, InstanceState::Running));
        let duplicate = world.run(instance(&a, a.version, 0, InstanceState::Starting));
        let extra = world.run(instance(&a, a.version, 1, InstanceState::Running));
        let orphan = world.run(instance(&gone, gone.version, 0, InstanceState::Running));
        let mut plan = world.plan();
        plan.sort_by_key(|r| matches!(r, HmRequest::Stop { app_id, .. } if *app_id == gone.id));
        assert_eq!(
            plan,
            [
                HmRequest::Stop {
                    app_id: a.id,
                    instance_ids: vec![duplicate, extra]
                },
                HmRequest::Stop {
                    app_id: gone.id,
                    instance_ids: vec![orphan]
                }
            ]
        );
    }

    #[test]
    fn old_versions_stop_only_once_the_new_one_runs_in_full() {
        let a = app(2);
        let old = Uuid::new_v4();
        let mut world = World::new(&[&a]);
        let old0 = world.run(instance(&a, old, 0, InstanceState::Running));
        let old1 = world.run(instance(&a, old, 1, InstanceState::Running));
        world.run(instance(&a, a.version, 0, InstanceState::Running));
        world.run(instance(&a, a.version, 1, InstanceState::Starting));
        assert!(
            world
                .plan()
                .iter()
                .all(|r| !matches!(r, HmRequest::Stop { .. })),
            "the new version is not up yet"
        );
        world.instances[3].0.state = InstanceState::Running;
        assert_eq!(
            world.plan(),
            [HmRequest::Stop {
                app_id: a.id,
                instance_ids: vec![old0, old1]
            }]
        );
    }

    #[test]
    fn stopped_apps_lose_their_instances() {
        let mut a = app(1);
        a.state = AppState::Stopped;
        let mut world = World::new(&[&a]);
        let id = world.run(instance(&a, a.version, 0, InstanceState::Running));
        assert_eq!(
            world.plan(),
            [HmRequest::Stop {
                app_id: a.id,
                instance_ids: vec![id]
            }]
        );
        world
            .pending
            .asked_stop(id, world.now + Duration::from_secs(9));
        assert!(
            world.plan().is_empty(),
            "a stop in flight is not asked again"
        );
    }

    #[test]
    fn instances_on_evacuating_deas_are_replaced_but_never_stopped() {
        let a = app(1);
        let mut world = World::new(&[&a]);
        world.run(instance(&a, a.version, 0, InstanceState::Running));
        world.instances[0].1 = true;
        assert_eq!(
            world.plan(),
            [HmRequest::Start {
                app_id: a.id,
                version: a.version,
                indices: vec![0]
            }]
        );
        world.run(instance(&a, a.version, 0, InstanceState::Running));
        assert!(
            world.plan().is_empty(),
            "the replacement runs; nothing to stop"
        );
        let health = world.with_view(|view| health(view, &a));
        assert_eq!(health.running, 2);
        assert_eq!(health.indices[0].health, Health::Running);
    }

    #[test]
    fn crash_loops_wait_for_their_back_off_and_show_as_flapping() {
        let a = app(2);
        let mut world = World::new(&[&a]);
        world.run(instance(&a, a.version, 1, InstanceState::Running));
        for _ in 0..4 {
            world.crashes.record(
                &world.policy,
                (a.id, a.version, 0),
                "health check failed",
                world.now,
            );
        }
        assert!(world.plan().is_empty(), "index 0 is in back-off");
        let health = world.with_view(|view| health(view, &a));
        assert_eq!(health.running, 1);
        let index0 = &health.indices[0];
        assert_eq!(
            (
                index0.health,
                index0.crash_count,
                index0.last_crash.as_deref()
            ),
            (Health::Flapping, 4, Some("health check failed"))
        );
        assert!(index0.restart_at.is_some());
        assert_eq!(health.indices[1].health, Health::Running);

        world.now += Duration::from_secs(2);
        assert_eq!(
            world.plan(),
            [HmRequest::Start {
                app_id: a.id,
                version: a.version,
                indices: vec![0]
            }]
        );
    }

    #[test]
    fn a_missing_index_without_crashes_is_down() {
        let a = app(1);
        let world = World::new(&[&a]);
        let health = world.with_view(|view| health(view, &a));
        assert_eq!(health.indices[0].health, Health::Down);
    }
}
