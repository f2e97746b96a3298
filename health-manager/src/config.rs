//! How a health manager runs, with the defaults that give Nimbus its short repair times.

use std::time::Duration;

use crate::crashes::CrashPolicy;

/// How often DEAs heartbeat (they are configured alike; `dea.heartbeat` every second).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Heartbeats a DEA may miss before it is lost and its instances are replaced.
pub const DEFAULT_MISSED_HEARTBEATS: u32 = 3;
/// How often desired and actual state are compared. Short, because a lost DEA is noticed at
/// the first comparison after its last missed heartbeat.
pub const DEFAULT_TICK: Duration = Duration::from_millis(100);
/// Requests to controllers per second at most, so a confused view cannot flood the platform.
pub const DEFAULT_MAX_ACTIONS_PER_SECOND: u32 = 50;
/// How long a leader's lease lasts without renewal; a standby takes over within about this.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(3);
/// How long a start asked of a controller may take to show in heartbeats before it is asked
/// again (a DEA compiling a large droplet for the first time takes seconds).
pub const DEFAULT_START_PATIENCE: Duration = Duration::from_secs(20);
/// How long a stop may take to show before it is asked again (instances drain first).
pub const DEFAULT_STOP_PATIENCE: Duration = Duration::from_secs(40);

/// Configuration of one health manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Unique on the bus (a UUID string by default); the lease names its holder by it.
    pub id: String,
    /// The DEAs' heartbeat interval.
    pub heartbeat_interval: Duration,
    /// See [`DEFAULT_MISSED_HEARTBEATS`].
    pub missed_heartbeats: u32,
    /// See [`DEFAULT_TICK`].
    pub tick: Duration,
    /// How long the bus must have been up, and heartbeats flowing, before the health manager
    /// acts: long enough to have heard every live DEA. Defaults to the time a DEA takes to be
    /// lost, so nothing is judged missing that was merely not yet heard.
    pub grace: Duration,
    /// See [`DEFAULT_MAX_ACTIONS_PER_SECOND`].
    pub max_actions_per_second: u32,
    /// See [`DEFAULT_LEASE_TTL`].
    pub lease_ttl: Duration,
    /// See [`DEFAULT_START_PATIENCE`].
    pub start_patience: Duration,
    /// See [`DEFAULT_STOP_PATIENCE`].
    pub stop_patience: Duration,
    /// When crashed instances restart.
    pub crash_policy: CrashPolicy,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            id: uuid::Uuid::new_v4().to_string(),
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            missed_heartbeats: DEFAULT_MISSED_HEARTBEATS,
            tick: DEFAULT_TICK,
            grace: DEFAULT_HEARTBEAT_INTERVAL * DEFAULT_MISSED_HEARTBEATS,
            max_actions_per_second: DEFAULT_MAX_ACTIONS_PER_SECOND,
            lease_ttl: DEFAULT_LEASE_TTL,
            start_patience: DEFAULT_START_PATIENCE,
            stop_patience: DEFAULT_STOP_PATIENCE,
            crash_policy: CrashPolicy::default(),
        }
    }
}

impl Config {
    /// How long a DEA may be silent before it is lost.
    pub fn lost_after(&self) -> Duration {
        self.heartbeat_interval * self.missed_heartbeats
    }

    /// Checks what would otherwise misbehave quietly; the message is one sentence.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        if self.id.is_empty() || self.id.contains(['.', '*', '>', ' ']) {
            anyhow::bail!(
                "the health manager id {:?} must be non-empty and contain no '.', '*', '>' or spaces",
                self.id
            );
        }
        if self.heartbeat_interval.is_zero() || self.tick.is_zero() || self.missed_heartbeats == 0 {
            anyhow::bail!("the heartbeat interval, missed heartbeats and tick must be above zero");
        }
        if self.max_actions_per_second == 0 {
            anyhow::bail!("max_actions_per_second must be above zero");
        }
        if self.lease_ttl < Duration::from_millis(500) {
            anyhow::bail!("the leadership lease must last at least 500 ms");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_lose_a_dea_after_three_seconds_and_are_valid() {
        let config = Config::default();
        assert_eq!(config.lost_after(), Duration::from_secs(3));
        assert_eq!(config.grace, config.lost_after());
        config.validate().unwrap();
    }

    #[test]
    fn rejects_ids_that_break_subjects() {
        let config = Config {
            id: "a.b".into(),
            ..Config::default()
        };
        assert!(config.validate().is_err());
    }
}
