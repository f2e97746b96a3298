//! The DEA's table of instances, from the moment a start is accepted (STARTING, memory
//! reserved) to the moment it is stopped. Advertisements and heartbeats are read from it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use nimbus_protocol::messages::{
    DeaAdvertise, DeaHeartbeat, InstanceHeartbeat, InstanceState, StartRequest, StopRequest,
};
use nimbus_protocol::now_ms;
use uuid::Uuid;

use crate::instance::Instance;

/// The droplet kinds this DEA runs, as advertised.
pub(crate) const STACKS: &[&str] = &["http-component", "wagi"];

/// Why a start was refused before any work was done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReserveError {
    #[error("the DEA has {available} MB free, not the {wanted} MB the instance needs")]
    InsufficientMemory { available: u64, wanted: u64 },
    #[error("the DEA is shutting down")]
    ShuttingDown,
}

/// One instance in the table.
pub(crate) struct Slot {
    pub(crate) instance_id: Uuid,
    pub(crate) request: Arc<StartRequest>,
    state: InstanceState,
    since: u64,
    /// Set once the instance serves.
    pub(crate) running: Option<Arc<Instance>>,
}

#[derive(Default)]
struct Inner {
    slots: HashMap<Uuid, Slot>,
    closed: bool,
}

/// Instances of one DEA; every method holds the lock briefly and never across an await.
#[derive(Default)]
pub(crate) struct Table(Mutex<Inner>);

impl Table {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a panic elsewhere mid-update; the map itself is still valid.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves memory for a new instance and records it as STARTING.
    pub(crate) fn reserve(
        &self,
        instance_id: Uuid,
        request: Arc<StartRequest>,
        capacity_mb: u64,
    ) -> Result<(), ReserveError> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(ReserveError::ShuttingDown);
        }
        let available = available(&inner, capacity_mb);
        let wanted = request.limits.memory_mb;
        if wanted > available {
            return Err(ReserveError::InsufficientMemory { available, wanted });
        }
        inner.slots.insert(
            instance_id,
            Slot {
                instance_id,
                request,
                state: InstanceState::Starting,
                since: now_ms(),
                running: None,
            },
        );
        Ok(())
    }

    /// Marks a STARTING instance RUNNING; `false` if it was stopped (removed) meanwhile.
    pub(crate) fn set_running(&self, instance_id: Uuid, instance: Arc<Instance>) -> bool {
        match self.lock().slots.get_mut(&instance_id) {
            Some(slot) => {
                slot.state = InstanceState::Running;
                slot.since = now_ms();
                slot.running = Some(instance);
                true
            }
            None => false,
        }
    }

    /// Removes and returns one instance, if it is still there.
    pub(crate) fn take(&self, instance_id: Uuid) -> Option<Slot> {
        self.lock().slots.remove(&instance_id)
    }

    /// `(app, index)` of every instance.
    pub(crate) fn indices(&self) -> Vec<(Uuid, u32)> {
        self.lock()
            .slots
            .values()
            .map(|slot| (slot.request.app_id, slot.request.index))
            .collect()
    }

    /// Forgets an instance whose start failed.
    pub(crate) fn remove(&self, instance_id: Uuid) {
        self.lock().slots.remove(&instance_id);
    }

    /// Removes and returns every instance the stop request matches.
    pub(crate) fn take_matching(&self, stop: &StopRequest) -> Vec<Slot> {
        let mut inner = self.lock();
        let ids: Vec<Uuid> = inner
            .slots
            .values()
            .filter(|s| {
                let r = &s.request;
                stop.matches(r.app_id, r.version, r.index, s.instance_id)
            })
            .map(|s| s.instance_id)
            .collect();
        ids.iter().filter_map(|id| inner.slots.remove(id)).collect()
    }

    /// Refuses further starts and returns every instance.
    pub(crate) fn close(&self) -> Vec<Slot> {
        let mut inner = self.lock();
        inner.closed = true;
        inner.slots.drain().map(|(_, slot)| slot).collect()
    }

    pub(crate) fn advertise(
        &self,
        dea_id: &str,
        capacity_mb: u64,
        evacuating: bool,
    ) -> DeaAdvertise {
        let inner = self.lock();
        let mut app_id_to_count = HashMap::new();
        for slot in inner.slots.values() {
            *app_id_to_count.entry(slot.request.app_id).or_insert(0) += 1;
        }
        DeaAdvertise {
            id: dea_id.to_string(),
            available_memory: available(&inner, capacity_mb),
            app_id_to_count,
            stacks: STACKS.iter().map(|s| s.to_string()).collect(),
            evacuating,
        }
    }

    pub(crate) fn heartbeat(&self, dea_id: &str, host: &str, evacuating: bool) -> DeaHeartbeat {
        let inner = self.lock();
        let droplets = inner
            .slots
            .values()
            .map(|slot| InstanceHeartbeat {
                app_id: slot.request.app_id,
                version: slot.request.version,
                instance_id: slot.instance_id,
                index: slot.request.index,
                state: slot.state,
                state_timestamp: slot.since,
                host: host.to_string(),
                // A STARTING instance has no port yet.
                port: slot.running.as_ref().map_or(0, |i| i.port()),
            })
            .collect();
        DeaHeartbeat {
            dea: dea_id.to_string(),
            droplets,
            evacuating,
        }
    }
}

fn available(inner: &Inner, capacity_mb: u64) -> u64 {
    let used: u64 = inner
        .slots
        .values()
        .map(|s| s.request.limits.memory_mb)
        .sum();
    capacity_mb.saturating_sub(used)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_protocol::droplet::{DropletKind, DropletManifest, Limits};

    fn request(app_id: Uuid, index: u32, memory_mb: u64) -> Arc<StartRequest> {
        Arc::new(StartRequest {
            app_id,
            app_name: "app".into(),
            version: Uuid::nil(),
            index,
            droplet: DropletManifest {
                sha256: "ab".repeat(32),
                kind: DropletKind::HttpComponent,
                language: "rust".into(),
                size: 1,
                staged_at: 1,
            },
            uris: vec![],
            limits: Limits {
                memory_mb,
                timeout_ms: 1000,
                ..Limits::default()
            },
            env: vec![],
            allowed_outbound_hosts: vec![],
            health_check_http_endpoint: None,
        })
    }

    #[test]
    fn reservations_reduce_advertised_memory_and_count_per_app() {
        let table = Table::default();
        let app = Uuid::new_v4();
        table
            .reserve(Uuid::new_v4(), request(app, 0, 100), 1000)
            .unwrap();
        table
            .reserve(Uuid::new_v4(), request(app, 1, 200), 1000)
            .unwrap();
        let advert = table.advertise("d", 1000, false);
        assert_eq!(advert.available_memory, 700);
        assert_eq!(advert.app_id_to_count[&app], 2);
        assert_eq!(advert.stacks, ["http-component", "wagi"]);
    }

    #[test]
    fn refuses_starts_beyond_capacity_and_after_close() {
        let table = Table::default();
        let app = Uuid::new_v4();
        table
            .reserve(Uuid::new_v4(), request(app, 0, 600), 1000)
            .unwrap();
        let error = table
            .reserve(Uuid::new_v4(), request(app, 1, 600), 1000)
            .unwrap_err();
        assert_eq!(
            error,
            ReserveError::InsufficientMemory {
                available: 400,
                wanted: 600
            }
        );
        assert_eq!(table.close().len(), 1);
        assert_eq!(
            table.reserve(Uuid::new_v4(), request(app, 2, 1), 1000),
            Err(ReserveError::ShuttingDown)
        );
    }

    #[test]
    fn stop_takes_only_matching_instances() {
        let table = Table::default();
        let (app, other) = (Uuid::new_v4(), Uuid::new_v4());
        let keep = Uuid::new_v4();
        table
            .reserve(Uuid::new_v4(), request(app, 0, 1), 100)
            .unwrap();
        table.reserve(keep, request(app, 1, 1), 100).unwrap();
        table
            .reserve(Uuid::new_v4(), request(other, 0, 1), 100)
            .unwrap();
        let taken = table.take_matching(&StopRequest {
            app_id: app,
            version: None,
            indices: Some(vec![0]),
            instance_ids: None,
        });
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].request.app_id, app);
        assert_eq!(taken[0].request.index, 0);
        let heartbeat = table.heartbeat("d", "127.0.0.1", false);
        assert_eq!(heartbeat.droplets.len(), 2);
        assert!(
            heartbeat
                .droplets
                .iter()
                .all(|d| d.state == InstanceState::Starting)
        );
        // A stopped instance cannot come back as running.
        assert!(!table.set_running(taken[0].instance_id, Arc::new(dummy_instance())));
    }

    fn dummy_instance() -> Instance {
        Instance::detached(nimbus_protocol::messages::RouteRegistration {
            host: "127.0.0.1".into(),
            port: 1,
            uris: vec![],
            app: None,
            private_instance_id: None,
        })
    }
}
