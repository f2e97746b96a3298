//! Requests asked of controllers that heartbeats do not show yet. Without this, every tick
//! would ask again for a start that is under way; with it, a start that never shows (a lost
//! request, a controller that died) is asked again once its patience runs out.

use std::collections::HashMap;
use std::time::Instant;

use uuid::Uuid;

use crate::actual::Live;

/// An app, its version and an index.
pub type Slot = (Uuid, Uuid, u32);

/// Starts and stops in flight, each with when to give up waiting for it.
#[derive(Debug, Default)]
pub struct Pending {
    starts: HashMap<Slot, Instant>,
    stops: HashMap<Uuid, Instant>,
}

impl Pending {
    pub fn asked_start(&mut self, slot: Slot, until: Instant) {
        self.starts.insert(slot, until);
    }

    pub fn asked_stop(&mut self, instance_id: Uuid, until: Instant) {
        self.stops.insert(instance_id, until);
    }

    pub fn start_asked(&self, slot: Slot) -> bool {
        self.starts.contains_key(&slot)
    }

    pub fn stop_asked(&self, instance_id: Uuid) -> bool {
        self.stops.contains_key(&instance_id)
    }

    /// The start of this slot is over (it crashed): the crash policy decides what comes next.
    pub fn start_failed(&mut self, slot: Slot) {
        self.starts.remove(&slot);
    }

    /// Forgets starts that heartbeats now show, stops whose instance is gone, and anything
    /// whose patience ran out.
    pub fn settle(&mut self, live: &[Live<'_>], now: Instant) {
        let shown = |slot: &Slot| {
            live.iter().any(|l| {
                !l.evacuating && (l.instance.app_id, l.instance.version, l.instance.index) == *slot
            })
        };
        self.starts
            .retain(|slot, until| *until > now && !shown(slot));
        self.stops
            .retain(|id, until| *until > now && live.iter().any(|l| l.instance.instance_id == *id));
    }

    /// Forgets everything (after a bus outage nothing asked before can be trusted to arrive).
    pub fn clear(&mut self) {
        self.starts.clear();
        self.stops.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nimbus_protocol::messages::{InstanceHeartbeat, InstanceState};

    use super::*;

    #[test]
    fn a_start_settles_when_it_shows_or_when_patience_runs_out() {
        let (app, version) = (Uuid::new_v4(), Uuid::new_v4());
        let now = Instant::now();
        let mut pending = Pending::default();
        pending.asked_start((app, version, 0), now + Duration::from_secs(5));
        pending.asked_start((app, version, 1), now + Duration::from_secs(5));
        let shown = InstanceHeartbeat {
            app_id: app,
            version,
            instance_id: Uuid::new_v4(),
            index: 0,
            state: InstanceState::Starting,
            state_timestamp: 0,
            host: "127.0.0.1".into(),
            port: 0,
        };
        let live = [Live {
            evacuating: false,
            instance: &shown,
        }];
        pending.settle(&live, now);
        assert!(!pending.start_asked((app, version, 0)));
        assert!(pending.start_asked((app, version, 1)));
        pending.settle(&live, now + Duration::from_secs(6));
        assert!(!pending.start_asked((app, version, 1)));
    }
}
