//! Evacuation (SIGTERM): the DEA keeps serving while its instances are replaced elsewhere, so
//! leaving costs no request. It says it is evacuating in its heartbeats and advertisements
//! (the health manager asks for replacements, placement avoids it), watches the other DEAs'
//! heartbeats until each of its `(app, index)` runs on one of them, or until the timeout, and
//! only then unregisters and stops its instances.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use nimbus_protocol::messages::{DeaHeartbeat, InstanceState};
use nimbus_protocol::subjects;
use uuid::Uuid;

use crate::dea::Dea;

/// How often the wait re-checks, besides each heartbeat it hears.
const RECHECK: Duration = Duration::from_millis(100);

/// Waits until every instance of `dea` runs on another DEA, no other DEA is left to take
/// them, or `timeout` passes. Returns how many instances were still unreplaced.
pub(crate) async fn wait_for_replacements(
    dea: &Dea,
    nats: &async_nats::Client,
    timeout: Duration,
) -> usize {
    let started = Instant::now();
    let heartbeat_interval = dea.config.heartbeat_interval;
    let mut heartbeats = match nats.subscribe(subjects::DEA_HEARTBEAT).await {
        Ok(subscriber) => subscriber,
        Err(error) => {
            tracing::warn!(%error, "cannot watch for replacements; leaving at once");
            return dea.indices().len();
        }
    };
    let mut peers: HashMap<String, (Instant, DeaHeartbeat)> = HashMap::new();
    let mut recheck = tokio::time::interval(RECHECK);
    loop {
        let now = Instant::now();
        // A peer silent for three heartbeats is gone, as the health manager judges it.
        peers.retain(|_, (seen, _)| now - *seen <= heartbeat_interval * 3);
        let waiting: Vec<(Uuid, u32)> = dea
            .indices()
            .into_iter()
            .filter(|&(app_id, index)| !replaced(&peers, app_id, index))
            .collect();
        if waiting.is_empty() {
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "every instance runs elsewhere"
            );
            return 0;
        }
        // One heartbeat interval and a half is long enough to have heard every live peer.
        if peers.is_empty() && started.elapsed() > heartbeat_interval * 3 / 2 {
            tracing::warn!(
                instances = waiting.len(),
                "no other DEA to take over; leaving"
            );
            return waiting.len();
        }
        if started.elapsed() >= timeout {
            tracing::warn!(
                instances = waiting.len(),
                ?timeout,
                "evacuation timed out; leaving"
            );
            return waiting.len();
        }
        tokio::select! {
            Some(message) = heartbeats.next() => {
                if let Some(heartbeat) = nimbus_bus::decode::<DeaHeartbeat>(&message)
                    && heartbeat.dea != dea.config.id
                    && !heartbeat.evacuating
                {
                    peers.insert(heartbeat.dea.clone(), (Instant::now(), heartbeat));
                }
            }
            _ = recheck.tick() => {}
        }
    }
}

/// Whether a peer runs this index of the app.
fn replaced(peers: &HashMap<String, (Instant, DeaHeartbeat)>, app_id: Uuid, index: u32) -> bool {
    peers.values().any(|(_, heartbeat)| {
        heartbeat
            .droplets
            .iter()
            .any(|i| i.app_id == app_id && i.index == index && i.state == InstanceState::Running)
    })
}
