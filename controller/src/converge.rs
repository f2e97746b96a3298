//! Convergence: starts and stops instances so that what DEAs run matches what an app asks for.
//!
//! Two things ask for it. The API, when it changes an app (push, scale, start, stop): the app is
//! compared with the DEAs' heartbeats at once, as Cloud Foundry's controller did. And the health
//! manager (`cloudcontrollers.hm.requests`), which watches every app all the time and asks for
//! the starts and stops that repair it: after a crash (with its back-off), a lost DEA, an
//! evacuation, or a restart of the whole platform. The controller owns placement in both cases.
//!
//! Nothing happens until the controller has listened to heartbeats for a while: acting on an
//! empty view would place duplicates of instances that are running fine.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nimbus_protocol::messages::{HmRequest, StartReply, StartRequest, StopRequest};
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
/// DEAs tried for one start before giving up (a DEA may vanish between its last heartbeat and
/// the request).
const PLACEMENT_ATTEMPTS: usize = 3;

type Slot = (Uuid, Uuid, u32); // app, version, index

/// Drives actual state towards desired state.
#[derive(Clone)]
pub struct Converger {
    store: Store,
    actual: ActualState,
    nats: async_nats::Client,
    config: Arc<Config>,
    /// Starts in flight; each start's task removes its slot when the DEA has answered (or
    /// not, within the start timeout).
    pending: Arc<Mutex<HashSet<Slot>>>,
    /// Apps the API changed since the last run.
    dirty: Arc<Mutex<HashSet<Uuid>>>,
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
            dirty: Arc::default(),
            kick: Arc::default(),
            booted: Instant::now(),
        }
    }

    /// Asks for the app to be converged now: the API changed it.
    pub fn kick(&self, app_id: Uuid) {
        lock(&self.dirty).insert(app_id);
        self.kick.notify_one();
    }

    /// Converges the apps the API changed, until the task is dropped.
    pub async fn run(self) {
        loop {
            self.kick.notified().await;
            if let Some(rest) = WARM_UP.checked_sub(self.booted.elapsed()) {
                tokio::time::sleep(rest).await;
            }
            let apps: Vec<Uuid> = lock(&self.dirty).drain().collect();
            for app_id in apps {
                match self.store.app(app_id).await {
                    Ok(Some((app, _))) => self.converge(&app).await,
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(%error, %app_id, "failed to read an app to converge")
                    }
                }
            }
        }
    }

    /// Does what the health manager asks, if desired state still agrees: a start is for the
    /// app's current version and an index it wants; a stop names instances of the app.
    pub async fn handle(&self, request: HmRequest) {
        match request {
            HmRequest::Start {
                app_id,
                version,
                indices,
            } => {
                let app = match self.store.app(app_id).await {
                    Ok(Some((app, _))) => app,
                    Ok(None) => return,
                    Err(error) => {
                        tracing::warn!(%error, %app_id, "failed to read an app to start");
                        return;
                    }
                };
                if !app.should_run() || app.version != version {
                    tracing::debug!(app = %app.name, "ignoring a start for an outdated version");
                    return;
                }
                let indices: Vec<u32> =
                    indices.into_iter().filter(|i| *i < app.instances).collect();
                // The health manager judged these missing, DEA losses included; our own view
                // of a DEA that just went silent may lag it by a heartbeat, so it is not asked.
                self.start_indices(&app, &indices, &[]);
            }
            HmRequest::Stop {
                app_id,
                instance_ids,
            } => {
                self.stop(StopRequest {
                    app_id,
                    version: None,
                    indices: None,
                    instance_ids: Some(instance_ids),
                })
                .await;
            }
        }
    }

    /// Starts what the app lacks and stops what it has too much of.
    async fn converge(&self, app: &AppRecord) {
        let mine = self.alive_instances(app.id);
        if app.should_run() {
            let all: Vec<u32> = (0..app.instances).collect();
            self.start_indices(app, &all, &mine);
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

    /// Instances of the app that count: running or starting, on DEAs that are not leaving.
    fn alive_instances(&self, app_id: Uuid) -> Vec<Reported> {
        self.actual
            .all_instances()
            .into_iter()
            .filter(|r| r.instance.app_id == app_id && r.counts())
            .collect()
    }

    /// Places and starts those of `indices` that no instance of the current version serves.
    fn start_indices(&self, app: &AppRecord, indices: &[u32], mine: &[Reported]) {
        let mut placed = HashMap::new();
        for &index in indices {
            let slot = (app.id, app.version, index);
            let present = mine
                .iter()
                .any(|r| r.instance.version == app.version && r.instance.index == index);
            if present || self.pending().contains(&slot) {
                continue;
            }
            let Some(dea) = self.place(app, &placed, &[]) else {
                continue;
            };
            *placed.entry(dea.clone()).or_default() += 1;
            self.pending().insert(slot);
            tokio::spawn(self.clone().start(dea, app.clone(), index));
        }
    }

    fn place(
        &self,
        app: &AppRecord,
        placed: &HashMap<String, u32>,
        excluded: &[String],
    ) -> Option<String> {
        let kind = app.droplet.as_ref()?.kind;
        let deas: Vec<_> = self
            .actual
            .live_deas()
            .into_iter()
            .filter(|dea| !excluded.contains(&dea.id))
            .collect();
        let chosen = placement::choose(&deas, app.id, kind, app.limits.memory_mb, placed);
        if chosen.is_none() {
            tracing::warn!(app = %app.name, %kind, "no DEA can take an instance");
        }
        chosen
    }

    /// Sends the start, trying other DEAs when the chosen one has vanished.
    async fn start(self, mut dea: String, app: AppRecord, index: u32) {
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
            health_check_http_endpoint: app.health_check_http_endpoint.clone(),
        };
        let payload: bytes::Bytes = nimbus_protocol::encode(&request).into();
        let mut tried = Vec::new();
        let failure = loop {
            let sent = self
                .nats
                .send_request(
                    subjects::dea_start(&dea),
                    async_nats::Request::new()
                        .payload(payload.clone())
                        .timeout(Some(self.config.start_timeout)),
                )
                .await;
            match sent {
                Ok(reply) => match nimbus_protocol::decode::<StartReply>(&reply.payload) {
                    Ok(StartReply::Started { instance_id }) => {
                        tracing::info!(app = %app.name, index, %dea, %instance_id, "instance started");
                        // The DEA heartbeat the instance before it replied: it shows from now.
                        self.pending().remove(&(app.id, app.version, index));
                        return;
                    }
                    Ok(StartReply::Failed { message }) => break message,
                    Err(e) => break e.to_string(),
                },
                Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                    // The DEA is gone though its last heartbeat is recent: try another now.
                    tracing::info!(app = %app.name, index, %dea, "DEA gone; placing elsewhere");
                    self.actual.forget_dea(&dea);
                    tried.push(dea.clone());
                    match self.place(&app, &HashMap::new(), &tried) {
                        Some(next) if tried.len() < PLACEMENT_ATTEMPTS => dea = next,
                        _ => break format!("no DEA answered (tried {})", tried.join(", ")),
                    }
                }
                Err(e) => break format!("DEA {dea} did not answer: {e}"),
            }
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
        // The health manager decides when to try again (its crash policy backs off).
        self.pending().remove(&(app.id, app.version, index));
    }

    /// Stops indices beyond the desired count, duplicates, and old versions once the current
    /// version runs in full.
    async fn stop_surplus(&self, app: &AppRecord, mine: &[Reported]) {
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

    fn pending(&self) -> MutexGuard<'_, HashSet<Slot>> {
        lock(&self.pending)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoning means a panic elsewhere mid-insert; the collection is still consistent.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
