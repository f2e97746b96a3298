//! Keeps a set of routes registered with every router, as Cloud Foundry components do.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use nimbus_protocol::messages::{RouteRegistration, RouterStart};
use nimbus_protocol::subjects;
use tokio::sync::watch;

/// Re-registration interval used until a router tells us its own.
pub const DEFAULT_REGISTER_INTERVAL: Duration = Duration::from_secs(5);

/// Registers routes, re-registers them periodically and whenever a router starts, and
/// unregisters them on [`Registrar::remove`] or [`Registrar::shutdown`].
///
/// Cloning is cheap; clones share the same set of routes.
#[derive(Clone)]
pub struct Registrar {
    nats: async_nats::Client,
    routes: Arc<Mutex<Vec<RouteRegistration>>>,
    stop: watch::Sender<bool>,
}

impl Registrar {
    /// Starts the re-registration loop. It asks a router for its interval (`router.greet`) and
    /// listens to `router.start`.
    pub async fn start(nats: async_nats::Client) -> anyhow::Result<Registrar> {
        let starts = nats.subscribe(subjects::ROUTER_START).await?;
        let (stop, stopped) = watch::channel(false);
        let registrar = Registrar {
            nats,
            routes: Arc::default(),
            stop,
        };
        tokio::spawn(registrar.clone().run(starts, stopped));
        Ok(registrar)
    }

    /// Adds a route and registers it at once.
    pub async fn add(&self, route: RouteRegistration) {
        self.send(subjects::ROUTER_REGISTER, &route).await;
        self.lock().push(route);
    }

    /// Removes a route and unregisters it at once.
    pub async fn remove(&self, route: &RouteRegistration) {
        self.lock().retain(|r| r != route);
        self.send(subjects::ROUTER_UNREGISTER, route).await;
    }

    /// Unregisters every route and stops re-registering.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let routes = std::mem::take(&mut *self.lock());
        for route in &routes {
            self.send(subjects::ROUTER_UNREGISTER, route).await;
        }
        // Make sure the unregistrations leave before the caller exits.
        crate::flush(&self.nats).await;
    }

    async fn run(self, mut starts: async_nats::Subscriber, mut stopped: watch::Receiver<bool>) {
        let mut interval = self.greet().await.unwrap_or(DEFAULT_REGISTER_INTERVAL);
        loop {
            tokio::select! {
                _ = stopped.changed() => return,
                _ = tokio::time::sleep(interval) => {}
                Some(message) = starts.next() => {
                    if let Some(start) = crate::decode::<RouterStart>(&message) {
                        interval = interval_of(&start);
                    }
                }
            }
            self.register_all().await;
        }
    }

    /// Asks any router for its register interval; `None` when no router answers.
    async fn greet(&self) -> Option<Duration> {
        let reply = self
            .nats
            .request(subjects::ROUTER_GREET, Vec::new().into())
            .await
            .ok()?;
        crate::decode::<RouterStart>(&reply).map(|start| interval_of(&start))
    }

    async fn register_all(&self) {
        let routes = self.lock().clone();
        for route in &routes {
            self.send(subjects::ROUTER_REGISTER, route).await;
        }
    }

    async fn send(&self, subject: &str, route: &RouteRegistration) {
        if let Err(error) = crate::publish(&self.nats, subject, route).await {
            tracing::warn!(%error, uris = ?route.uris, "failed to send route");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RouteRegistration>> {
        // A poisoned lock only means another task panicked mid-push; the Vec is still valid.
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn interval_of(start: &RouterStart) -> Duration {
    Duration::from_secs(start.minimum_register_interval_in_seconds.max(1))
}
