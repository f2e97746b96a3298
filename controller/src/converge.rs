//! Convergence: makes actual state (DEA heartbeats) match desired state (the apps bucket).
//!
//! Every interval, and at once when the API changes an app, each app is compared with what DEAs
//! report: missing indices of the current version are placed, extra or orphaned instances are
//! stopped, and old versions are stopped once the current one runs in full (a rolling update).
//! Because desired state is durable, restarting the whole platform brings every started app back.
//!
//! Nothing happens until the controller has listened to heartbeats for a while: acting on an
//! empty view would place duplicates of instances that are running fine.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nimbus_protocol::messages::{InstanceState, StartReply, StartRequest, StopRequest};
use nimbus_protocol::subjects;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::actual::{ActualState, Reported};
use crate::config::Config;
use crate::placement;
use crate::record::AppRecord;
use crate::store::Store;

/// How long after boot the controller trusts its view of the DEAs (heartbeats come every second).
const WARM_UP: Duration = Duration::from_millis(1500);
/// How long a failed start keeps an index from being retried.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

type Slot = (Uuid, Uuid, u32); // app, version, index

/// Drives actual state towards desired state.
#[derive(Clone)]
pub struct Converger {
    store: Store,
    actual: ActualState,
    nats: async_nats::Client,
    config: Arc<Config>,
    /// Starts in flight (or recently failed) that heartbeats do not show yet, with when to
    /// stop waiting for them.
    pending: Arc<Mutex<HashMap<Slot, Instant>>>,
    kick: Arc<Notify>,
    booted: Instant,
}

impl Converger {
    pub fn new(
        store: Store,
        actual: ActualState,
        nats: async_nats::Client,
        config: Arc<Config>,
    ) -> Self {
        Converger {
            store,
            actual,
            nats,
            config,
            pending: Arc::default(),
            kick: Arc::default(),
            booted: Instant::now(),
        }
    }

    /// Asks for a pass now rather than at the next interval.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// Runs passes until the task is dropped.
    pub async fn run(self) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.config.converge_interval) => {}
                _ = self.kick.notified() => {}
            }
            if self.booted.elapsed() < WARM_UP {
                continue;
            }
            if let Err(error) = self.pass().await {
                tracing::warn!(%error, "convergence pass failed");
            }
        }
    }

    async fn pass(&self) -> anyhow::Result<()> {
        let apps = self.store.apps().await?;
        let known: HashSet<Uuid> = apps.iter().map(|a| a.id).collect();
        let everything = self.actual.all_instances();
        self.forget_settled_starts(&everything);

        let mut placed = HashMap::new();
        for app in &apps {
            let mine: Vec<&Reported> = everything
                .iter()
                .filter(|r| r.instance.app_id == app.id && is_alive(r.instance.state))
                .collect();
            if app.should_run() {
                self.start_missing(app, &mine, &mut placed).await;
                self.stop_surplus(app, &mine).await;
            } else if !mine.is_empty() {
                self.stop(StopRequest {
                    app_id: app.id,
                    version: None,
                    indices: None,
                    instance_ids: None,
                })
                .await;
            }
        }
        // Instances of deleted apps.
        let orphans: HashSet<Uuid> = everything
            .iter()
            .map(|r| r.instance.app_id)
            .filter(|id| !known.contains(id))
            .collect();
        for app_id in orphans {
            self.stop(StopRequest {
                app_id,
                version: None,
                indices: None,
                instance_ids: None,
            })
            .await;
        }
        Ok(())
    }

    async fn start_missing(
        &self,
        app: &AppRecord,
        mine: &[&Reported],
        placed: &mut HashMap<String, u32>,
    ) {
        let deas = self.actual.live_deas();
        let Some(kind) = app.droplet.as_ref().map(|droplet| droplet.kind) else {
            return;
        };
        for index in 0..app.instances {
            let slot = (app.id, app.version, index);
            let present = mine
                .iter()
                .any(|r| r.instance.version == app.version && r.instance.index == index);
            if present || self.pending().contains_key(&slot) {
                continue;
            }
            let Some(dea) = placement::choose(&deas, app.id, kind, app.limits.memory_mb, placed)
            else {
                tracing::warn!(app = %app.name, index, %kind, "no DEA can take this instance");
                continue;
            };
            *placed.entry(dea.clone()).or_default() += 1;
            self.pending()
                .insert(slot, Instant::now() + self.config.start_timeout);
            tokio::spawn(self.clone().start(dea, app.clone(), index));
        }
    }

    async fn start(self, dea: String, app: AppRecord, index: u32) {
        let Some(droplet) = app.droplet.clone() else {
            return;
        };
        let request = StartRequest {
            app_id: app.id,
            app_name: app.name.clone(),
            version: app.version,
            index,
            droplet,
            uris: app.uris.clone(),
            limits: app.limits,
            env: app.env.clone(),
            allowed_outbound_hosts: app.allowed_outbound_hosts.clone(),
        };
        let sent = self
            .nats
            .send_request(
                subjects::dea_start(&dea),
                async_nats::Request::new()
                    .payload(nimbus_protocol::encode(&request).into())
                    .timeout(Some(self.config.start_timeout)),
            )
            .await;
        let failure = match sent {
            Ok(reply) => match nimbus_protocol::decode::<StartReply>(&reply.payload) {
                Ok(StartReply::Started { instance_id }) => {
                    tracing::info!(app = %app.name, index, %dea, %instance_id, "instance started");
                    return;
                }
                Ok(StartReply::Failed { message }) => message,
                Err(e) => e.to_string(),
            },
            Err(e) => format!("DEA {dea} did not answer: {e}"),
        };
        tracing::warn!(app = %app.name, index, %dea, %failure, "instance failed to start");
        nimbus_bus::log_line(
            &self.nats,
            app.id,
            "API",
            nimbus_protocol::messages::LogStream::Err,
            format!("instance {index} failed to start: {failure}"),
        )
        .await;
        // Keep the slot pending a little so a broken droplet is not retried in a tight loop.
        self.pending().insert(
            (app.id, app.version, index),
            Instant::now() + RETRY_AFTER_FAILURE,
        );
    }

    /// Stops indices beyond the desired count, duplicates, and old versions once the current
    /// version runs in full.
    async fn stop_surplus(&self, app: &AppRecord, mine: &[&Reported]) {
        let mut surplus = Vec::new();
        let mut seen = HashSet::new();
        for r in mine.iter().filter(|r| r.instance.version == app.version) {
            if r.instance.index >= app.instances || !seen.insert(r.instance.index) {
                surplus.push(r.instance.instance_id);
            }
        }
        if self.actual.running_count(app.id, app.version) >= app.instances {
            surplus.extend(
                mine.iter()
                    .filter(|r| r.instance.version != app.version)
                    .map(|r| r.instance.instance_id),
            );
        }
        if !surplus.is_empty() {
            self.stop(StopRequest {
                app_id: app.id,
                version: None,
                indices: None,
                instance_ids: Some(surplus),
            })
            .await;
        }
    }

    async fn stop(&self, request: StopRequest) {
        if let Err(error) = nimbus_bus::publish(&self.nats, subjects::DEA_STOP, &request).await {
            tracing::warn!(%error, app_id = %request.app_id, "failed to send a stop");
        }
    }

    /// Drops pending starts that heartbeats now show, or whose time ran out.
    fn forget_settled_starts(&self, everything: &[Reported]) {
        let shown: HashSet<Slot> = everything
            .iter()
            .map(|r| (r.instance.app_id, r.instance.version, r.instance.index))
            .collect();
        let now = Instant::now();
        self.pending()
            .retain(|slot, expires| !shown.contains(slot) && *expires > now);
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<Slot, Instant>> {
        // Poisoning means a panic elsewhere mid-insert; the map is still consistent.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn is_alive(state: InstanceState) -> bool {
    matches!(state, InstanceState::Starting | InstanceState::Running)
}
