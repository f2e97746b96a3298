//! The NATS side: one task owns every piece of state and serves, in turn, heartbeats,
//! `droplet.exited`, desired-state updates, `healthmanager.health` requests and the tick that
//! compares the two states. Owning the state in one task means no locks and no races between
//! a heartbeat and the analysis that reads it.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use nimbus_protocol::messages::{
    AppEvent, DeaHeartbeat, DropletExited, EventKind, ExitReason, HealthReply, HealthRequest,
    HmRequest,
};
use nimbus_protocol::subjects;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::actual::Deas;
use crate::analysis::{self, View};
use crate::config::Config;
use crate::crashes::Crashes;
use crate::desired::{self, Desired, Update};
use crate::lease::Lease;
use crate::pending::Pending;

/// The queue group health managers answer `healthmanager.health` in (one reply per request).
const HEALTH_QUEUE: &str = "healthmanagers";

/// A running health manager. [`Handle::shutdown`] releases its lease so a standby takes over.
pub struct Handle {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Handle {
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        for task in self.tasks.drain(..) {
            if let Err(error) = task.await {
                tracing::warn!(%error, "a health manager task failed");
            }
        }
        tracing::info!("health manager stopped");
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts a health manager on `nats`: it subscribes, asks DEAs to heartbeat at once, loads
/// desired state and competes for the lease; it acts once it leads and its view is trustworthy.
pub async fn start(config: Config, nats: async_nats::Client) -> anyhow::Result<Handle> {
    config.validate()?;
    let heartbeats = nats
        .subscribe(subjects::DEA_HEARTBEAT)
        .await
        .context("failed to subscribe to heartbeats")?;
    let exits = nats
        .subscribe(subjects::DROPLET_EXITED)
        .await
        .context("failed to subscribe to droplet.exited")?;
    let health = nats
        .queue_subscribe(subjects::HEALTHMANAGER_HEALTH, HEALTH_QUEUE.to_string())
        .await
        .context("failed to subscribe to healthmanager.health")?;
    nats.flush()
        .await
        .context("failed to flush the subscriptions")?;
    nimbus_bus::publish(&nats, subjects::HEALTHMANAGER_START, &serde_json::json!({})).await?;

    let stop = CancellationToken::new();
    let (updates, desired_updates) = mpsc::channel(1024);
    let (lease, leading_until) = Lease::new(config.id.clone(), config.lease_ttl);
    let manager = Manager {
        budget: Budget::new(config.max_actions_per_second),
        config,
        nats: nats.clone(),
        desired: Desired::default(),
        deas: Deas::default(),
        crashes: Crashes::default(),
        pending: Pending::default(),
        bus: BusWatch::default(),
        leading_until,
    };
    tracing::info!(id = %manager.config.id, "health manager started");
    let tasks = vec![
        tokio::spawn(desired::follow(nats.clone(), updates, stop.clone())),
        tokio::spawn(lease.run(nats, stop.clone())),
        tokio::spawn(manager.run(
            Inputs {
                heartbeats,
                exits,
                health,
                desired: desired_updates,
            },
            stop.clone(),
        )),
    ];
    Ok(Handle { stop, tasks })
}

struct Inputs {
    heartbeats: async_nats::Subscriber,
    exits: async_nats::Subscriber,
    health: async_nats::Subscriber,
    desired: mpsc::Receiver<Update>,
}

struct Manager {
    config: Config,
    nats: async_nats::Client,
    desired: Desired,
    deas: Deas,
    crashes: Crashes,
    pending: Pending,
    bus: BusWatch,
    budget: Budget,
    leading_until: watch::Receiver<Option<Instant>>,
}

impl Manager {
    async fn run(mut self, mut inputs: Inputs, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                Some(message) = inputs.heartbeats.next() => {
                    if let Some(heartbeat) = nimbus_bus::decode::<DeaHeartbeat>(&message) {
                        self.deas.record(heartbeat, Instant::now());
                    }
                }
                Some(message) = inputs.exits.next() => {
                    if let Some(exited) = nimbus_bus::decode::<DropletExited>(&message) {
                        self.exited(exited);
                    }
                }
                Some(update) = inputs.desired.recv() => self.desired.apply(update),
                Some(message) = inputs.health.next() => self.answer(message).await,
                _ = tick.tick() => self.tick().await,
            }
        }
    }

    fn exited(&mut self, exited: DropletExited) {
        if exited.reason != ExitReason::Crashed {
            return;
        }
        let slot = (exited.app_id, exited.version, exited.index);
        let record = self.crashes.record(
            &self.config.crash_policy,
            slot,
            &exited.exit_description,
            Instant::now(),
        );
        tracing::info!(
            app_id = %exited.app_id,
            index = exited.index,
            crashes = record.count,
            restart_in_ms = record.restart_at.saturating_duration_since(Instant::now()).as_millis() as u64,
            description = %exited.exit_description,
            "instance crashed"
        );
        self.pending.start_failed(slot);
    }

    async fn answer(&self, message: async_nats::Message) {
        let Some(request) = nimbus_bus::decode::<HealthRequest>(&message) else {
            return;
        };
        let now = Instant::now();
        let live = self.deas.live_instances(now, self.config.lost_after());
        let view = self.view(&live, now);
        let apps = request
            .app_ids
            .iter()
            .filter_map(|id| self.desired.apps().get(id))
            .map(|app| analysis::health(&view, app))
            .collect();
        if let Err(error) = nimbus_bus::reply(&self.nats, &message, &HealthReply { apps }).await {
            tracing::debug!(
                error = format!("{error:#}"),
                "failed to answer a health request"
            );
        }
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        let lost_after = self.config.lost_after();
        let connected = self.nats.connection_state() == async_nats::connection::State::Connected;
        if self
            .bus
            .observe(connected, self.deas.last_heartbeat(), now, lost_after)
        {
            // Whatever was heard or asked before the outage is no guide to what is true now.
            tracing::warn!("lost the bus: holding every action until the view is fresh again");
            self.deas.clear();
            self.pending.clear();
        }
        let losses = self.deas.notice_losses(now, lost_after);
        let policy = self.config.crash_policy;
        let apps = self.desired.apps();
        self.crashes
            .forget_old(&policy, now, |id| apps.contains_key(&id));

        let leading = self.leading_until.borrow().is_some_and(|until| until > now);
        let ready = leading
            && self.desired.loaded()
            && self
                .bus
                .trusted_since(now)
                .is_some_and(|since| since >= self.config.grace);
        if leading {
            self.report_losses(losses).await;
        }
        let live = self.deas.live_instances(now, lost_after);
        self.pending.settle(&live, now);
        if !ready {
            return;
        }
        let requests = analysis::plan(&self.view(&live, now));
        drop(live);
        for request in requests {
            if !self.budget.take(now) {
                tracing::warn!("action budget spent: the rest waits for the next tick");
                break;
            }
            self.ask(request, now).await;
        }
    }

    async fn ask(&mut self, request: HmRequest, now: Instant) {
        if let Err(error) = nimbus_bus::publish(&self.nats, subjects::HM_REQUESTS, &request).await {
            tracing::warn!(error = format!("{error:#}"), "failed to ask a controller");
            return;
        }
        match &request {
            HmRequest::Start {
                app_id,
                version,
                indices,
            } => {
                tracing::info!(%app_id, ?indices, "asking for missing instances");
                for &index in indices {
                    self.pending
                        .asked_start((*app_id, *version, index), now + self.config.start_patience);
                }
            }
            HmRequest::Stop {
                app_id,
                instance_ids,
            } => {
                tracing::info!(%app_id, stops = instance_ids.len(), "asking to stop instances");
                for &id in instance_ids {
                    self.pending.asked_stop(id, now + self.config.stop_patience);
                }
            }
        }
    }

    /// Tells each affected app's event stream that an instance went with its DEA.
    async fn report_losses(&self, losses: Vec<crate::actual::Lost>) {
        for lost in losses {
            let event = AppEvent {
                app_id: lost.app_id,
                kind: EventKind::Crashed,
                reason: "dea_lost".to_string(),
                description: format!(
                    "instance {} was lost with DEA {}, silent for {:.1}s; replacing it",
                    lost.index,
                    lost.dea,
                    lost.silent.as_secs_f64()
                ),
                instance_index: Some(lost.index),
                timestamp: nimbus_protocol::now_ms(),
            };
            if let Err(error) =
                nimbus_bus::publish(&self.nats, subjects::events(lost.app_id), &event).await
            {
                tracing::debug!(
                    error = format!("{error:#}"),
                    "failed to report a lost instance"
                );
            }
        }
    }

    fn view<'a>(&'a self, live: &'a [crate::actual::Live<'a>], now: Instant) -> View<'a> {
        View {
            apps: self.desired.apps(),
            live,
            crashes: &self.crashes,
            policy: &self.config.crash_policy,
            pending: &self.pending,
            now,
        }
    }
}

/// Whether the bus can be trusted: connected, and heartbeats arriving, since when.
#[derive(Debug, Default)]
struct BusWatch {
    connected_since: Option<Instant>,
    flowing_since: Option<Instant>,
}

impl BusWatch {
    /// Updates the watch; `true` when the connection was just lost.
    fn observe(
        &mut self,
        connected: bool,
        last_heartbeat: Option<Instant>,
        now: Instant,
        lost_after: Duration,
    ) -> bool {
        if !connected {
            let was_connected = self.connected_since.take().is_some();
            self.flowing_since = None;
            return was_connected;
        }
        self.connected_since.get_or_insert(now);
        let flowing = last_heartbeat
            .is_some_and(|at| at >= self.connected_since.unwrap_or(now) && now - at <= lost_after);
        if !flowing {
            self.flowing_since = None;
        } else if self.flowing_since.is_none() {
            self.flowing_since = last_heartbeat;
        }
        false
    }

    /// How long the bus has been up with heartbeats flowing.
    fn trusted_since(&self, now: Instant) -> Option<Duration> {
        let connected = self.connected_since?;
        let flowing = self.flowing_since?;
        Some(now.saturating_duration_since(connected.max(flowing)))
    }
}

/// A token bucket: at most `per_second` actions in any second.
#[derive(Debug)]
struct Budget {
    per_second: f64,
    tokens: f64,
    refilled: Option<Instant>,
}

impl Budget {
    fn new(per_second: u32) -> Budget {
        Budget {
            per_second: per_second as f64,
            tokens: per_second as f64,
            refilled: None,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        if let Some(refilled) = self.refilled {
            let earned = now.saturating_duration_since(refilled).as_secs_f64() * self.per_second;
            self.tokens = (self.tokens + earned).min(self.per_second);
        }
        self.refilled = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bus_is_trusted_only_after_connection_and_heartbeats_have_lasted() {
        let lost_after = Duration::from_secs(3);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut bus = BusWatch::default();
        assert!(!bus.observe(true, None, at(0), lost_after));
        assert_eq!(bus.trusted_since(at(0)), None, "no heartbeat yet");
        bus.observe(true, Some(at(500)), at(500), lost_after);
        bus.observe(true, Some(at(1500)), at(2000), lost_after);
        assert_eq!(
            bus.trusted_since(at(2000)),
            Some(Duration::from_millis(1500))
        );
        assert!(
            bus.observe(false, Some(at(1500)), at(2100), lost_after),
            "just lost"
        );
        assert!(!bus.observe(false, Some(at(1500)), at(2200), lost_after));
        bus.observe(true, Some(at(1500)), at(3000), lost_after);
        assert_eq!(
            bus.trusted_since(at(3000)),
            None,
            "heartbeats from before the outage do not count"
        );
        bus.observe(true, Some(at(3100)), at(3100), lost_after);
        assert_eq!(bus.trusted_since(at(4100)), Some(Duration::from_secs(1)));
    }

    #[test]
    fn the_budget_allows_a_burst_then_refills_over_time() {
        let t0 = Instant::now();
        let mut budget = Budget::new(2);
        assert!(budget.take(t0));
        assert!(budget.take(t0));
        assert!(!budget.take(t0));
        assert!(budget.take(t0 + Duration::from_millis(500)));
        assert!(!budget.take(t0 + Duration::from_millis(600)));
    }
}
