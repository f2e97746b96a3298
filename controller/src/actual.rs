//! Actual state: what DEAs say they run (heartbeats) and can take (advertisements).
//!
//! It is soft state, rebuilt from the bus within seconds of a restart. Entries older than
//! [`STALE_AFTER`] are ignored, so a DEA that vanished stops counting as the health manager
//! stops counting it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nimbus_protocol::messages::{DeaAdvertise, DeaHeartbeat, InstanceHeartbeat, InstanceState};
use uuid::Uuid;

/// A DEA that has been silent this long (three missed heartbeats) is considered gone.
pub const STALE_AFTER: Duration = Duration::from_secs(3);

/// One instance as a DEA reported it.
#[derive(Debug, Clone)]
pub struct Reported {
    pub dea: String,
    /// Its DEA is leaving; the instance serves until a replacement runs elsewhere.
    pub evacuating: bool,
    pub instance: InstanceHeartbeat,
}

impl Reported {
    /// Whether it counts towards the app's instances: starting or running, on a DEA that stays.
    pub fn counts(&self) -> bool {
        !self.evacuating
            && matches!(
                self.instance.state,
                InstanceState::Starting | InstanceState::Running
            )
    }
}

#[derive(Default)]
struct Inner {
    heartbeats: HashMap<String, (Instant, DeaHeartbeat)>,
    adverts: HashMap<String, (Instant, DeaAdvertise)>,
}

/// The freshest heartbeat and advertisement of every DEA.
#[derive(Clone, Default)]
pub struct ActualState {
    inner: Arc<Mutex<Inner>>,
}

impl ActualState {
    pub fn record_heartbeat(&self, heartbeat: DeaHeartbeat) {
        self.lock()
            .heartbeats
            .insert(heartbeat.dea.clone(), (Instant::now(), heartbeat));
    }

    pub fn record_advert(&self, advert: DeaAdvertise) {
        self.lock()
            .adverts
            .insert(advert.id.clone(), (Instant::now(), advert));
    }

    /// Instances of `app_id` on live DEAs, by index.
    pub fn instances_of(&self, app_id: Uuid) -> Vec<Reported> {
        let mut found: Vec<Reported> = self
            .all_instances()
            .into_iter()
            .filter(|r| r.instance.app_id == app_id)
            .collect();
        found.sort_by_key(|r| r.instance.index);
        found
    }

    /// Every instance on live DEAs.
    pub fn all_instances(&self) -> Vec<Reported> {
        let inner = self.lock();
        inner
            .heartbeats
            .values()
            .filter(|(seen, _)| seen.elapsed() < STALE_AFTER)
            .flat_map(|(_, hb)| {
                hb.droplets.iter().map(|instance| Reported {
                    dea: hb.dea.clone(),
                    evacuating: hb.evacuating,
                    instance: instance.clone(),
                })
            })
            .collect()
    }

    /// How many instances of `app_id` at `version` are running.
    pub fn running_count(&self, app_id: Uuid, version: Uuid) -> u32 {
        self.instances_of(app_id)
            .iter()
            .filter(|r| r.instance.version == version && r.instance.state == InstanceState::Running)
            .count() as u32
    }

    /// Forgets a DEA that turned out to be gone before its heartbeats went stale.
    pub fn forget_dea(&self, dea: &str) {
        let mut inner = self.lock();
        inner.heartbeats.remove(dea);
        inner.adverts.remove(dea);
    }

    /// Advertisements of live DEAs.
    pub fn live_deas(&self) -> Vec<DeaAdvertise> {
        let inner = self.lock();
        inner
            .adverts
            .values()
            .filter(|(seen, _)| seen.elapsed() < STALE_AFTER)
            .map(|(_, advert)| advert.clone())
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Poisoning means a panic elsewhere mid-insert; the maps are still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(
        app_id: Uuid,
        version: Uuid,
        index: u32,
        state: InstanceState,
    ) -> InstanceHeartbeat {
        InstanceHeartbeat {
            app_id,
            version,
            instance_id: Uuid::new_v4(),
            index,
            state,
            state_timestamp: 0,
            host: "127.0.0.1".into(),
            port: 1,
        }
    }

    #[test]
    fn counts_only_running_instances_of_the_current_version() {
        let (app, v1, v2) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let actual = ActualState::default();
        actual.record_heartbeat(DeaHeartbeat {
            dea: "a".into(),
            droplets: vec![
                instance(app, v1, 0, InstanceState::Running),
                instance(app, v1, 1, InstanceState::Starting),
                instance(app, v2, 0, InstanceState::Running),
            ],
            evacuating: false,
        });
        assert_eq!(actual.running_count(app, v1), 1);
        assert_eq!(actual.instances_of(app).len(), 3);
        assert_eq!(actual.running_count(Uuid::new_v4(), v1), 0);
    }

    #[test]
    fn a_newer_heartbeat_replaces_the_older_one() {
        let (app, v) = (Uuid::new_v4(), Uuid::new_v4());
        let actual = ActualState::default();
        actual.record_heartbeat(DeaHeartbeat {
            dea: "a".into(),
            droplets: vec![instance(app, v, 0, InstanceState::Running)],
            evacuating: false,
        });
        actual.record_heartbeat(DeaHeartbeat {
            dea: "a".into(),
            droplets: vec![],
            evacuating: false,
        });
        assert!(actual.instances_of(app).is_empty());
    }
}
