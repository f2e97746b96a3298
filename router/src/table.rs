//! The route table: normalised host name → the endpoints serving it.
//!
//! Reads (every proxied request) are lock-free: the map lives in an `ArcSwap` and a request
//! takes a snapshot. Writes (NATS messages, the pruner) build a new map and swap it in, one
//! writer at a time. A periodic re-registration of a known endpoint only touches an atomic
//! timestamp, so the steady state of a large platform causes no copying at all.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use nimbus_protocol::messages::RouteRegistration;
use uuid::Uuid;

use crate::pool::ConnPool;

/// One change to the table, as received from NATS.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    Register(RouteRegistration),
    Unregister(RouteRegistration),
}

/// Every route the router knows.
pub(crate) struct RouteTable {
    routes: ArcSwap<HashMap<String, Arc<Route>>>,
    /// Serialises writers so no copy-and-swap loses another's update.
    writer: Mutex<()>,
    /// Origin of the endpoints' `last_seen` timestamps.
    epoch: Instant,
}

/// The endpoints of one host and where its round robin stands.
pub(crate) struct Route {
    endpoints: Vec<Arc<Endpoint>>,
    cursor: AtomicUsize,
}

/// How long an endpoint that refused a connection is tried only after the others: long enough
/// that a dead DEA costs no request a failed connect, short enough that a live one that
/// hiccupped is back soon. Its re-registrations do not lift it; time does.
pub(crate) const QUARANTINE: Duration = Duration::from_secs(5);

/// Origin of every endpoint's quarantine timestamp.
static CLOCK: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

fn clock_ms() -> u64 {
    millis(CLOCK.elapsed())
}

/// One app instance serving a host.
pub(crate) struct Endpoint {
    pub host: String,
    pub port: u16,
    pub app: Option<Uuid>,
    pub private_instance_id: Option<String>,
    /// Milliseconds after the table's epoch; atomic so a refresh needs no copy of the table.
    last_seen_ms: AtomicU64,
    /// Until when (ms on [`CLOCK`]) it is tried last; 0 when it is healthy.
    down_until_ms: AtomicU64,
    /// Idle keep-alive connections to this endpoint.
    pub pool: ConnPool,
}

impl RouteTable {
    pub fn new() -> RouteTable {
        RouteTable {
            routes: ArcSwap::default(),
            writer: Mutex::new(()),
            epoch: Instant::now(),
        }
    }

    /// The route of a host already passed through [`normalize_host`].
    pub fn lookup(&self, host: &str) -> Option<Arc<Route>> {
        self.routes.load().get(host).cloned()
    }

    #[cfg(test)]
    pub fn register(&self, registration: RouteRegistration, now: Instant) {
        self.apply(vec![Change::Register(registration)], now);
    }

    #[cfg(test)]
    pub fn unregister(&self, registration: RouteRegistration) {
        self.apply(vec![Change::Unregister(registration)], Instant::now());
    }

    /// Applies a batch of changes in order with at most one swap of the table.
    pub fn apply(&self, changes: Vec<Change>, now: Instant) {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let now_ms = self.millis(now);
        let current = self.routes.load_full();
        // Cloned only when a change is structural; refreshes of known endpoints are not.
        let mut next: Option<HashMap<String, Arc<Route>>> = None;
        for change in changes {
            match change {
                Change::Register(registration) => {
                    register(&current, &mut next, &registration, now_ms);
                }
                Change::Unregister(registration) => {
                    unregister(&current, &mut next, &registration);
                }
            }
        }
        if let Some(next) = next {
            self.routes.store(Arc::new(next));
        }
    }

    /// Drops endpoints not refreshed within `threshold`, keeping their hosts (which then
    /// answer 503 rather than 404: the route exists, the app is down). Returns how many went.
    pub fn prune(&self, now: Instant, threshold: Duration) -> usize {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let oldest_ms = self.millis(now).saturating_sub(millis(threshold));
        let current = self.routes.load_full();
        let mut next: Option<HashMap<String, Arc<Route>>> = None;
        let mut pruned = 0;
        for (host, route) in current.iter() {
            let fresh: Vec<_> = route
                .endpoints
                .iter()
                .filter(|e| e.last_seen_ms.load(Ordering::Relaxed) >= oldest_ms)
                .cloned()
                .collect();
            if fresh.len() == route.endpoints.len() {
                continue;
            }
            for stale in route
                .endpoints
                .iter()
                .filter(|e| !fresh.iter().any(|f| Arc::ptr_eq(e, f)))
            {
                tracing::info!(
                    host = %host,
                    endpoint = %format_args!("{}:{}", stale.host, stale.port),
                    app = ?stale.app,
                    "pruned an endpoint that stopped re-registering"
                );
            }
            pruned += route.endpoints.len() - fresh.len();
            let replacement = route.with_endpoints(fresh);
            next.get_or_insert_with(|| (*current).clone())
                .insert(host.clone(), replacement);
        }
        if let Some(next) = next {
            self.routes.store(Arc::new(next));
        }
        pruned
    }

    fn millis(&self, now: Instant) -> u64 {
        millis(now.saturating_duration_since(self.epoch))
    }
}

impl Default for RouteTable {
    fn default() -> RouteTable {
        RouteTable::new()
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Adds or refreshes the endpoint under each of the registration's hosts.
fn register(
    current: &HashMap<String, Arc<Route>>,
    next: &mut Option<HashMap<String, Arc<Route>>>,
    registration: &RouteRegistration,
    now_ms: u64,
) {
    if registration.host.is_empty() || registration.port == 0 {
        tracing::warn!(?registration, "ignoring a registration without an address");
        return;
    }
    for uri in &registration.uris {
        let host = normalize_host(uri).into_owned();
        if host.is_empty() {
            continue;
        }
        let route = next.as_ref().unwrap_or(current).get(&host);
        let known = route.and_then(|route| route.endpoints.iter().find(|e| e.serves(registration)));
        if let Some(endpoint) = known {
            endpoint.last_seen_ms.store(now_ms, Ordering::Relaxed);
            continue;
        }
        // New endpoint, or the same address now serving another instance: replace it (and its
        // pooled connections, which belong to the old instance).
        let mut endpoints: Vec<_> = route
            .map(|route| {
                route
                    .endpoints
                    .iter()
                    .filter(|e| !e.has_address(registration))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        endpoints.push(Arc::new(Endpoint::new(registration, now_ms)));
        let replacement = match route {
            Some(route) => route.with_endpoints(endpoints),
            None => Arc::new(Route::new(endpoints)),
        };
        tracing::debug!(host = %host, endpoint = %format_args!("{}:{}", registration.host, registration.port), "registered an endpoint");
        next.get_or_insert_with(|| current.clone())
            .insert(host, replacement);
    }
}

/// Removes the endpoint from each of the registration's hosts; a host left without endpoints
/// is forgotten (unlike pruning: an unregistered route is gone on purpose).
fn unregister(
    current: &HashMap<String, Arc<Route>>,
    next: &mut Option<HashMap<String, Arc<Route>>>,
    registration: &RouteRegistration,
) {
    for uri in &registration.uris {
        let host = normalize_host(uri).into_owned();
        let Some(route) = next.as_ref().unwrap_or(current).get(&host).cloned() else {
            continue;
        };
        if !route.endpoints.iter().any(|e| e.has_address(registration)) {
            continue;
        }
        let endpoints: Vec<_> = route
            .endpoints
            .iter()
            .filter(|e| !e.has_address(registration))
            .cloned()
            .collect();
        let map = next.get_or_insert_with(|| current.clone());
        if endpoints.is_empty() {
            map.remove(&host);
        } else {
            let replacement = route.with_endpoints(endpoints);
            map.insert(host, replacement);
        }
    }
}

impl Route {
    fn new(endpoints: Vec<Arc<Endpoint>>) -> Route {
        Route {
            endpoints,
            cursor: AtomicUsize::new(0),
        }
    }

    /// A copy with other endpoints that continues the round robin where this one stood.
    fn with_endpoints(&self, endpoints: Vec<Arc<Endpoint>>) -> Arc<Route> {
        Arc::new(Route {
            endpoints,
            cursor: AtomicUsize::new(self.cursor.load(Ordering::Relaxed)),
        })
    }

    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// Every endpoint once, starting with the next one in round-robin order, quarantined ones
    /// last: the proxy tries them in this order until one answers.
    pub fn rotation(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        let count = self.endpoints.len();
        let start = match count {
            0 => 0,
            _ => self.cursor.fetch_add(1, Ordering::Relaxed) % count,
        };
        let now = clock_ms();
        let ring = move || (0..count).map(move |i| &self.endpoints[(start + i) % count]);
        ring()
            .filter(move |e| !e.is_down(now))
            .chain(ring().filter(move |e| e.is_down(now)))
    }
}

impl Endpoint {
    fn new(registration: &RouteRegistration, now_ms: u64) -> Endpoint {
        Endpoint {
            host: registration.host.clone(),
            port: registration.port,
            app: registration.app,
            private_instance_id: registration.private_instance_id.clone(),
            last_seen_ms: AtomicU64::new(now_ms),
            down_until_ms: AtomicU64::new(0),
            pool: ConnPool::default(),
        }
    }

    /// It refused a connection: try it last for a while.
    pub fn mark_down(&self) {
        self.down_until_ms
            .store(clock_ms() + millis(QUARANTINE), Ordering::Relaxed);
    }

    fn is_down(&self, now_ms: u64) -> bool {
        self.down_until_ms.load(Ordering::Relaxed) > now_ms
    }

    fn has_address(&self, registration: &RouteRegistration) -> bool {
        self.port == registration.port && self.host == registration.host
    }

    /// Same address and same instance: a refresh rather than a new endpoint.
    fn serves(&self, registration: &RouteRegistration) -> bool {
        self.has_address(registration)
            && self.app == registration.app
            && self.private_instance_id == registration.private_instance_id
    }
}

/// The table's key for a host: lower case, without port or trailing dot. Used for both
/// registered URIs and request `Host` headers so `Hello.Localhost:8080` finds `hello.localhost`.
pub(crate) fn normalize_host(raw: &str) -> Cow<'_, str> {
    let raw = raw.trim();
    let without_port = if raw.starts_with('[') {
        // Bracketed IPv6 literal: the port, if any, follows the closing bracket.
        raw.find(']').map_or(raw, |end| &raw[..=end])
    } else {
        match raw.split_once(':') {
            // One colon is a port; more would be a bare IPv6 literal, kept whole.
            Some((host, port)) if !port.contains(':') => host,
            _ => raw,
        }
    };
    let host = without_port.strip_suffix('.').unwrap_or(without_port);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(port: u16, uris: &[&str]) -> RouteRegistration {
        RouteRegistration {
            host: "127.0.0.1".to_string(),
            port,
            uris: uris.iter().map(|u| u.to_string()).collect(),
            app: None,
            private_instance_id: Some(format!("instance-{port}")),
        }
    }

    fn ports(table: &RouteTable, host: &str) -> Option<Vec<u16>> {
        table
            .lookup(host)
            .map(|route| route.endpoints().iter().map(|e| e.port).collect())
    }

    #[test]
    fn registers_an_endpoint_under_each_uri() {
        let table = RouteTable::new();
        table.register(
            registration(4000, &["a.localhost", "b.localhost"]),
            Instant::now(),
        );
        assert_eq!(ports(&table, "a.localhost"), Some(vec![4000]));
        assert_eq!(ports(&table, "b.localhost"), Some(vec![4000]));
        assert_eq!(ports(&table, "c.localhost"), None);
    }

    #[test]
    fn re_registering_refreshes_without_duplicating() {
        let table = RouteTable::new();
        let now = Instant::now();
        table.register(registration(4000, &["a.localhost"]), now);
        table.register(registration(4001, &["a.localhost"]), now);
        table.register(registration(4000, &["a.localhost"]), now);
        assert_eq!(ports(&table, "a.localhost"), Some(vec![4000, 4001]));
    }

    #[test]
    fn a_new_instance_on_a_known_address_replaces_the_old_one() {
        let table = RouteTable::new();
        let now = Instant::now();
        table.register(registration(4000, &["a.localhost"]), now);
        let mut restarted = registration(4000, &["a.localhost"]);
        restarted.private_instance_id = Some("new".to_string());
        table.register(restarted, now);
        let route = table.lookup("a.localhost").expect("route");
        assert_eq!(route.endpoints().len(), 1);
        assert_eq!(
            route.endpoints()[0].private_instance_id.as_deref(),
            Some("new")
        );
    }

    #[test]
    fn unregistering_the_last_endpoint_forgets_the_host() {
        let table = RouteTable::new();
        let now = Instant::now();
        table.register(registration(4000, &["a.localhost"]), now);
        table.register(registration(4001, &["a.localhost"]), now);
        table.unregister(registration(4000, &["a.localhost"]));
        assert_eq!(ports(&table, "a.localhost"), Some(vec![4001]));
        table.unregister(registration(4001, &["a.localhost"]));
        assert_eq!(ports(&table, "a.localhost"), None);
    }

    #[test]
    fn a_batch_applies_changes_in_order() {
        let table = RouteTable::new();
        let changes = vec![
            Change::Register(registration(4000, &["a.localhost"])),
            Change::Unregister(registration(4000, &["a.localhost"])),
            Change::Register(registration(4001, &["a.localhost"])),
        ];
        table.apply(changes, Instant::now());
        assert_eq!(ports(&table, "a.localhost"), Some(vec![4001]));
    }

    #[test]
    fn round_robin_starts_at_the_next_endpoint_each_time() {
        let table = RouteTable::new();
        let now = Instant::now();
        table.register(registration(4000, &["a.localhost"]), now);
        table.register(registration(4001, &["a.localhost"]), now);
        let route = table.lookup("a.localhost").expect("route");
        let firsts: Vec<u16> = (0..4)
            .map(|_| route.rotation().next().expect("an endpoint").port)
            .collect();
        assert_eq!(firsts, vec![4000, 4001, 4000, 4001]);
        let all: Vec<u16> = route.rotation().map(|e| e.port).collect();
        assert_eq!(all, vec![4000, 4001]);
    }

    #[test]
    fn endpoints_that_refused_a_connection_are_tried_last() {
        let table = RouteTable::new();
        let now = Instant::now();
        for port in [4000, 4001, 4002] {
            table.register(registration(port, &["a.localhost"]), now);
        }
        let route = table.lookup("a.localhost").expect("route");
        route.endpoints()[0].mark_down();
        for _ in 0..3 {
            let order: Vec<u16> = route.rotation().map(|e| e.port).collect();
            assert_eq!(order.len(), 3);
            assert_eq!(order[2], 4000, "{order:?}");
        }
    }

    #[test]
    fn prune_drops_stale_endpoints_but_keeps_the_host() {
        let table = RouteTable::new();
        let start = Instant::now();
        table.register(registration(4000, &["a.localhost"]), start);
        table.register(registration(4001, &["a.localhost"]), start);
        let later = start + Duration::from_secs(20);
        table.register(registration(4001, &["a.localhost"]), later);

        let pruned = table.prune(start + Duration::from_secs(35), Duration::from_secs(30));
        assert_eq!(pruned, 1);
        assert_eq!(ports(&table, "a.localhost"), Some(vec![4001]));

        let pruned = table.prune(start + Duration::from_secs(60), Duration::from_secs(30));
        assert_eq!(pruned, 1);
        assert_eq!(ports(&table, "a.localhost"), Some(vec![]));
        assert!(
            table
                .lookup("a.localhost")
                .expect("kept")
                .rotation()
                .next()
                .is_none()
        );
    }

    #[test]
    fn a_pruned_host_comes_back_on_registration() {
        let table = RouteTable::new();
        let start = Instant::now();
        table.register(registration(4000, &["a.localhost"]), start);
        table.prune(start + Duration::from_secs(31), Duration::from_secs(30));
        table.register(
            registration(4000, &["a.localhost"]),
            start + Duration::from_secs(32),
        );
        assert_eq!(ports(&table, "a.localhost"), Some(vec![4000]));
    }

    #[test]
    fn normalises_case_port_and_trailing_dot() {
        assert_eq!(normalize_host("Hello.LocalHost:8080"), "hello.localhost");
        assert_eq!(normalize_host("hello.localhost."), "hello.localhost");
        assert_eq!(normalize_host("[::1]:8080"), "[::1]");
        assert_eq!(normalize_host("::1"), "::1");
        assert!(matches!(normalize_host("plain"), Cow::Borrowed("plain")));
    }

    #[test]
    fn registered_uris_are_normalised_too() {
        let table = RouteTable::new();
        table.register(registration(4000, &["API.Localhost:80"]), Instant::now());
        assert_eq!(ports(&table, "api.localhost"), Some(vec![4000]));
    }
}
