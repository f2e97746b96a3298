//! Actual state: the latest heartbeat of every DEA, and which DEAs are lost.
//!
//! A DEA is lost once it has been silent for `lost_after` (three missed heartbeats). Its
//! instances then no longer count, so the analysis asks for replacements. A DEA that comes
//! back simply counts again; any duplicates that its return creates are stopped like any other.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nimbus_protocol::messages::{DeaHeartbeat, InstanceHeartbeat};

/// One DEA's latest word.
struct Seen {
    at: Instant,
    heartbeat: DeaHeartbeat,
    /// Set once the loss was noticed, so it is logged once.
    lost: bool,
}

/// Heartbeats by DEA id.
#[derive(Default)]
pub struct Deas {
    deas: HashMap<String, Seen>,
    /// When the latest heartbeat from any DEA arrived.
    last_heartbeat: Option<Instant>,
}

/// An instance on a DEA that is not lost.
#[derive(Debug, Clone, Copy)]
pub struct Live<'a> {
    /// Its DEA is leaving: the instance serves until its replacement runs elsewhere.
    pub evacuating: bool,
    pub instance: &'a InstanceHeartbeat,
}

/// An instance whose DEA was just found lost.
#[derive(Debug, Clone)]
pub struct Lost {
    pub dea: String,
    pub app_id: uuid::Uuid,
    pub index: u32,
    pub silent: Duration,
}

impl Deas {
    pub fn record(&mut self, heartbeat: DeaHeartbeat, now: Instant) {
        self.last_heartbeat = Some(now);
        if let Some(seen) = self.deas.get(&heartbeat.dea)
            && seen.lost
        {
            tracing::info!(dea = %heartbeat.dea, "a lost DEA is heartbeating again");
        }
        self.deas.insert(
            heartbeat.dea.clone(),
            Seen {
                at: now,
                heartbeat,
                lost: false,
            },
        );
    }

    /// When any DEA last heartbeat.
    pub fn last_heartbeat(&self) -> Option<Instant> {
        self.last_heartbeat
    }

    /// Marks DEAs silent for longer than `lost_after` as lost (logging each once), returns the
    /// instances lost with them, and forgets DEAs silent for much longer.
    pub fn notice_losses(&mut self, now: Instant, lost_after: Duration) -> Vec<Lost> {
        let mut losses = Vec::new();
        self.deas.retain(|id, seen| {
            let silent = now.saturating_duration_since(seen.at);
            if silent > lost_after && !seen.lost {
                seen.lost = true;
                tracing::warn!(
                    dea = %id,
                    silent_ms = silent.as_millis() as u64,
                    instances = seen.heartbeat.droplets.len(),
                    "DEA lost: its instances will be replaced"
                );
                losses.extend(seen.heartbeat.droplets.iter().map(|i| Lost {
                    dea: id.clone(),
                    app_id: i.app_id,
                    index: i.index,
                    silent,
                }));
            }
            silent < lost_after * 20
        });
        losses
    }

    /// Every instance on a DEA that is not lost.
    pub fn live_instances(&self, now: Instant, lost_after: Duration) -> Vec<Live<'_>> {
        self.deas
            .values()
            .filter(|seen| now.saturating_duration_since(seen.at) <= lost_after)
            .flat_map(|seen| {
                seen.heartbeat.droplets.iter().map(|instance| Live {
                    evacuating: seen.heartbeat.evacuating,
                    instance,
                })
            })
            .collect()
    }

    /// Forgets everything heard (after a bus outage the old view is no guide).
    pub fn clear(&mut self) {
        self.deas.clear();
        self.last_heartbeat = None;
    }
}

#[cfg(test)]
mod tests {
    use nimbus_protocol::messages::InstanceState;
    use uuid::Uuid;

    use super::*;

    fn heartbeat(dea: &str) -> DeaHeartbeat {
        DeaHeartbeat {
            dea: dea.into(),
            droplets: vec![InstanceHeartbeat {
                app_id: Uuid::new_v4(),
                version: Uuid::new_v4(),
                instance_id: Uuid::new_v4(),
                index: 0,
                state: InstanceState::Running,
                state_timestamp: 0,
                host: "127.0.0.1".into(),
                port: 1,
            }],
            evacuating: false,
        }
    }

    #[test]
    fn a_dea_silent_for_three_heartbeats_no_longer_counts() {
        let lost_after = Duration::from_secs(3);
        let t0 = Instant::now();
        let mut deas = Deas::default();
        deas.record(heartbeat("a"), t0);
        deas.record(heartbeat("b"), t0 + Duration::from_secs(2));
        let at = |s: u64| t0 + Duration::from_millis(s);
        assert_eq!(deas.live_instances(at(3000), lost_after).len(), 2);
        let live = deas.live_instances(at(3100), lost_after);
        assert_eq!(live.len(), 1, "a is lost");
        let lost = deas.notice_losses(at(3100), lost_after);
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].dea, "a");
        assert!(
            deas.notice_losses(at(3150), lost_after).is_empty(),
            "noticed once"
        );
        deas.record(heartbeat("a"), at(3200));
        assert_eq!(
            deas.live_instances(at(3200), lost_after).len(),
            2,
            "a is back"
        );
    }
}
