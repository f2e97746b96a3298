//! The router's settings and their defaults.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::bail;

/// Port the router listens on unless told otherwise (browsers reach `http://<app>.localhost:8080`).
pub const DEFAULT_PORT: u16 = 8080;
/// How often registrars are asked to re-register (announced in `router.start`).
pub const DEFAULT_REGISTER_INTERVAL: Duration = Duration::from_secs(5);
/// An endpoint not re-registered for this long is dropped.
pub const DEFAULT_PRUNE_THRESHOLD: Duration = Duration::from_secs(30);

/// How a router runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address the HTTP listener binds; port 0 picks a free one (see [`crate::Handle::local_addr`]).
    pub listen: SocketAddr,
    /// Interval announced to registrars in `router.start` and `router.greet` replies.
    pub register_interval: Duration,
    /// Endpoints not refreshed within this time are pruned (their host then answers 503).
    pub prune_threshold: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT)),
            register_interval: DEFAULT_REGISTER_INTERVAL,
            prune_threshold: DEFAULT_PRUNE_THRESHOLD,
        }
    }
}

impl Config {
    /// Rejects settings the wire protocol cannot express (it speaks whole seconds).
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        if self.register_interval < Duration::from_secs(1) {
            bail!("the router's register interval must be at least one second");
        }
        if self.prune_threshold < Duration::from_secs(1) {
            bail!("the router's prune threshold must be at least one second");
        }
        if self.prune_threshold <= self.register_interval {
            // Allowed (tests use it), but in production every endpoint would flap.
            tracing::warn!(
                register_interval = ?self.register_interval,
                prune_threshold = ?self.prune_threshold,
                "prune threshold is not longer than the register interval; endpoints may flap"
            );
        }
        Ok(())
    }

    /// How often the pruner runs: often enough that a stale endpoint goes soon after it expires.
    pub(crate) fn prune_interval(&self) -> Duration {
        (self.prune_threshold / 4).clamp(Duration::from_millis(50), Duration::from_secs(5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = Config::default();
        assert_eq!(config.listen.port(), DEFAULT_PORT);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn rejects_sub_second_intervals() {
        let config = Config {
            prune_threshold: Duration::from_millis(500),
            ..Config::default()
        };
        assert!(config.validate().is_err());
    }
}
