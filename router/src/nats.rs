//! The NATS side of the router: `router.register` / `router.unregister` feed the table,
//! `router.greet` is answered, `router.start` is announced, and stale endpoints are pruned.
//!
//! One task owns all of it, so table writes never race; bursts of registrations (every
//! registrar answers `router.start` at once) are applied as one batch with one table swap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{FutureExt as _, StreamExt as _};
use nimbus_protocol::messages::{RouteRegistration, RouterStart};
use nimbus_protocol::subjects;
use tokio::sync::watch;

use crate::config::Config;
use crate::table::{Change, RouteTable};

/// Most messages applied in one swap of the table.
const MAX_BATCH: usize = 1024;

/// The router's subscriptions, ready to run.
pub(crate) struct Subscriptions {
    nats: async_nats::Client,
    register: async_nats::Subscriber,
    unregister: async_nats::Subscriber,
    greet: async_nats::Subscriber,
    announcement: RouterStart,
    prune_threshold: Duration,
    prune_interval: Duration,
}

impl Subscriptions {
    /// Subscribes and announces the router, so registrars re-register at once.
    pub async fn start(nats: async_nats::Client, config: &Config) -> anyhow::Result<Subscriptions> {
        let register = nats
            .subscribe(subjects::ROUTER_REGISTER)
            .await
            .context("failed to subscribe to router.register")?;
        let unregister = nats
            .subscribe(subjects::ROUTER_UNREGISTER)
            .await
            .context("failed to subscribe to router.unregister")?;
        let greet = nats
            .subscribe(subjects::ROUTER_GREET)
            .await
            .context("failed to subscribe to router.greet")?;
        // The server must know our subscriptions before registrars answer the announcement.
        nats.flush()
            .await
            .context("failed to flush NATS subscriptions")?;
        let announcement = RouterStart {
            id: uuid::Uuid::new_v4().to_string(),
            minimum_register_interval_in_seconds: config.register_interval.as_secs(),
            prune_threshold_in_seconds: config.prune_threshold.as_secs(),
        };
        nimbus_bus::publish(&nats, subjects::ROUTER_START, &announcement).await?;
        tracing::info!(router_id = %announcement.id, "router announced");
        Ok(Subscriptions {
            nats,
            register,
            unregister,
            greet,
            announcement,
            prune_threshold: config.prune_threshold,
            prune_interval: config.prune_interval(),
        })
    }

    /// Applies messages and prunes until `stop` changes (or its sender is dropped), then
    /// unsubscribes.
    pub async fn run(mut self, table: Arc<RouteTable>, mut stop: watch::Receiver<bool>) {
        let mut prune = tokio::time::interval(self.prune_interval);
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Registrations before unregistrations: NATS delivers each subject in order,
                // and an endpoint's register usually precedes its unregister.
                biased;
                _ = stop.changed() => break,
                Some(message) = self.register.next() => {
                    let changes = self.batch(Some(message), None);
                    table.apply(changes, Instant::now());
                }
                Some(message) = self.unregister.next() => {
                    let changes = self.batch(None, Some(message));
                    table.apply(changes, Instant::now());
                }
                Some(message) = self.greet.next() => {
                    if let Err(error) = nimbus_bus::reply(&self.nats, &message, &self.announcement).await {
                        tracing::warn!(%error, "failed to answer router.greet");
                    }
                }
                _ = prune.tick() => {
                    let pruned = table.prune(Instant::now(), self.prune_threshold);
                    if pruned > 0 {
                        tracing::info!(pruned, "pruned stale endpoints");
                    }
                }
                else => break,
            }
        }
        self.unsubscribe().await;
    }

    /// The first message plus whatever else is already waiting, registrations first.
    fn batch(
        &mut self,
        register: Option<async_nats::Message>,
        unregister: Option<async_nats::Message>,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        let registers = register
            .into_iter()
            .chain(ready_messages(&mut self.register, MAX_BATCH));
        changes.extend(registers.filter_map(|m| decode(&m).map(Change::Register)));
        let unregisters = unregister
            .into_iter()
            .chain(ready_messages(&mut self.unregister, MAX_BATCH));
        changes.extend(unregisters.filter_map(|m| decode(&m).map(Change::Unregister)));
        changes
    }

    async fn unsubscribe(mut self) {
        for subscriber in [&mut self.register, &mut self.unregister, &mut self.greet] {
            if let Err(error) = subscriber.unsubscribe().await {
                tracing::debug!(%error, "failed to unsubscribe");
            }
        }
        nimbus_bus::flush(&self.nats).await;
    }
}

/// Messages already delivered to a subscriber, without waiting for more.
fn ready_messages(
    subscriber: &mut async_nats::Subscriber,
    limit: usize,
) -> impl Iterator<Item = async_nats::Message> + '_ {
    std::iter::from_fn(move || subscriber.next().now_or_never().flatten()).take(limit)
}

fn decode(message: &async_nats::Message) -> Option<RouteRegistration> {
    nimbus_bus::decode::<RouteRegistration>(message)
}
