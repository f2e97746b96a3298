//! The NATS adapter: subscribes to `dea.<id>.start`, `dea.stop`, `dea.locate` and
//! `healthmanager.start`, decodes each message once and hands it to [`Dea`]; publishes
//! `dea.advertise` and `dea.heartbeat` on a timer (and at once when asked or when its instances
//! change).

use std::sync::Arc;

use anyhow::Context as _;
use futures::StreamExt as _;
use nimbus_protocol::messages::{ExitReason, StartReply, StartRequest, StopRequest};
use nimbus_protocol::subjects;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::compiled::CompileStats;
use crate::config::Config;
use crate::dea::Dea;
use crate::evacuation;
use crate::pool::Allocator;

/// A running DEA. Call [`Handle::shutdown`] to stop it cleanly; dropping it only stops listening.
pub struct Handle {
    dea: Arc<Dea>,
    nats: async_nats::Client,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Handle {
    /// The DEA's id (its start subject is `dea.<id>.start`).
    pub fn id(&self) -> &str {
        &self.dea.config.id
    }

    /// How the engine allocates instances (pooling, or on demand after a failed probe).
    pub fn allocator(&self) -> Allocator {
        self.dea.allocator()
    }

    /// How many droplets were compiled, and how many loaded from the on-disk cache.
    pub fn compile_stats(&self) -> CompileStats {
        self.dea.compile_stats()
    }

    /// Stops taking requests and heartbeating, unregisters every route, stops every instance
    /// (letting requests in flight finish) and reports each as `DEA_SHUTDOWN`.
    pub async fn shutdown(self) {
        self.stop_with(ExitReason::DeaShutdown).await;
    }

    /// Leaves without failing a request: announces `DEA_EVACUATION`, keeps serving until every
    /// instance runs on another DEA (or the configured timeout passes, no other DEA is there,
    /// or `give_up` completes), then shuts down as [`Handle::shutdown`] does, reporting
    /// `DEA_EVACUATION` for instances that were replaced.
    pub async fn evacuate(self, give_up: impl std::future::Future<Output = ()>) {
        tracing::info!(dea_id = %self.dea.config.id, "evacuating");
        self.dea.begin_evacuation();
        report(&self.dea, &self.nats).await;
        let timeout = self.dea.config.evacuation_timeout;
        let left = tokio::select! {
            left = evacuation::wait_for_replacements(&self.dea, &self.nats, timeout) => left,
            _ = give_up => self.dea.indices().len(),
        };
        let reason = match left {
            0 => ExitReason::DeaEvacuation,
            _ => ExitReason::DeaShutdown,
        };
        self.stop_with(reason).await;
    }

    async fn stop_with(mut self, reason: ExitReason) {
        self.stop.cancel();
        for task in self.tasks.drain(..) {
            if let Err(error) = task.await {
                tracing::warn!(%error, "a DEA task failed");
            }
        }
        // A last, empty heartbeat: nobody should count these instances until it goes stale.
        self.dea
            .shutdown(reason, report(&self.dea, &self.nats))
            .await;
        tracing::info!(dea_id = %self.dea.config.id, "DEA stopped");
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts a DEA on `nats`: subscribes, advertises at once, and heartbeats every interval.
pub async fn start(config: Config, nats: async_nats::Client) -> anyhow::Result<Handle> {
    config.validate()?;
    tokio::fs::create_dir_all(&config.data_dir)
        .await
        .with_context(|| format!("failed to create {}", config.data_dir.display()))?;
    let starts = nats
        .subscribe(subjects::dea_start(&config.id))
        .await
        .context("failed to subscribe to start requests")?;
    let stops = nats
        .subscribe(subjects::DEA_STOP)
        .await
        .context("failed to subscribe to stop requests")?;
    let locates = nats
        .subscribe(subjects::DEA_LOCATE)
        .await
        .context("failed to subscribe to dea.locate")?;
    let health_managers = nats
        .subscribe(subjects::HEALTHMANAGER_START)
        .await
        .context("failed to subscribe to healthmanager.start")?;
    // Requests sent right after we return must find our subscriptions.
    nats.flush()
        .await
        .context("failed to flush the subscriptions")?;

    let dea = Arc::new(Dea::new(config, nats.clone()).await?);
    let stop = CancellationToken::new();
    advertise(&dea, &nats).await;
    let tasks = vec![
        tokio::spawn(serve_starts(
            dea.clone(),
            nats.clone(),
            starts,
            stop.clone(),
        )),
        tokio::spawn(serve_stops(dea.clone(), nats.clone(), stops, stop.clone())),
        tokio::spawn(serve_locates(
            dea.clone(),
            nats.clone(),
            locates,
            stop.clone(),
        )),
        tokio::spawn(serve_health_managers(
            dea.clone(),
            nats.clone(),
            health_managers,
            stop.clone(),
        )),
        tokio::spawn(beat(dea.clone(), nats.clone(), stop.clone())),
    ];
    tracing::info!(dea_id = %dea.config.id, "DEA started");
    Ok(Handle {
        dea,
        nats,
        stop,
        tasks,
    })
}

/// Each start runs in its own task: a slow download must not hold up other apps.
async fn serve_starts(
    dea: Arc<Dea>,
    nats: async_nats::Client,
    mut starts: async_nats::Subscriber,
    stop: CancellationToken,
) {
    while let Some(message) = next(&mut starts, &stop).await {
        let (dea, nats) = (dea.clone(), nats.clone());
        tokio::spawn(async move {
            let reply = match nimbus_protocol::decode::<StartRequest>(&message.payload) {
                Ok(request) => {
                    let reply = dea.start(request).await;
                    // Report the new state at once: waiting for the next beat would delay
                    // everyone who waits for the instance to run (a `push`, the converger).
                    report(&dea, &nats).await;
                    reply
                }
                Err(error) => {
                    tracing::warn!(%error, "rejecting a malformed start request");
                    StartReply::Failed {
                        message: error.to_string(),
                    }
                }
            };
            if let Err(error) = nimbus_bus::reply(&nats, &message, &reply).await {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "failed to reply to a start request"
                );
            }
        });
    }
}

async fn serve_stops(
    dea: Arc<Dea>,
    nats: async_nats::Client,
    mut stops: async_nats::Subscriber,
    stop: CancellationToken,
) {
    while let Some(message) = next(&mut stops, &stop).await {
        if let Some(request) = nimbus_bus::decode::<StopRequest>(&message) {
            let (dea, nats) = (dea.clone(), nats.clone());
            // Draining takes up to a request's time limit; keep taking other stops meanwhile.
            tokio::spawn(async move {
                dea.stop(&request).await;
                report(&dea, &nats).await;
            });
        }
    }
}

async fn serve_locates(
    dea: Arc<Dea>,
    nats: async_nats::Client,
    mut locates: async_nats::Subscriber,
    stop: CancellationToken,
) {
    while next(&mut locates, &stop).await.is_some() {
        advertise(&dea, &nats).await;
    }
}

/// A health manager that just started wants every DEA's heartbeat now.
async fn serve_health_managers(
    dea: Arc<Dea>,
    nats: async_nats::Client,
    mut starts: async_nats::Subscriber,
    stop: CancellationToken,
) {
    while next(&mut starts, &stop).await.is_some() {
        report(&dea, &nats).await;
    }
}

async fn beat(dea: Arc<Dea>, nats: async_nats::Client, stop: CancellationToken) {
    let mut interval = tokio::time::interval(dea.config.heartbeat_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        report(&dea, &nats).await;
    }
}

/// Publishes the DEA's capacity and every instance's state.
async fn report(dea: &Dea, nats: &async_nats::Client) {
    advertise(dea, nats).await;
    if let Err(error) = nimbus_bus::publish(nats, subjects::DEA_HEARTBEAT, &dea.heartbeat()).await {
        tracing::warn!(error = format!("{error:#}"), "failed to heartbeat");
    }
}

async fn advertise(dea: &Dea, nats: &async_nats::Client) {
    if let Err(error) =
        nimbus_bus::publish(nats, subjects::DEA_ADVERTISE, &dea.advertisement()).await
    {
        tracing::warn!(error = format!("{error:#}"), "failed to advertise");
    }
}

/// The next message, or `None` once stopped or unsubscribed.
async fn next(
    subscriber: &mut async_nats::Subscriber,
    stop: &CancellationToken,
) -> Option<async_nats::Message> {
    tokio::select! {
        _ = stop.cancelled() => None,
        message = subscriber.next() => message,
    }
}
