//! How a DEA is configured: its identity, where it serves, how much it offers, where it caches.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

/// Address instance listeners bind to and register with the routers by default.
pub const DEFAULT_HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Memory advertised to controllers by default, in MB.
pub const DEFAULT_MEMORY_MB: u64 = 4096;
/// How often the DEA heartbeats and advertises by default.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// Configuration of one DEA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// DEA id, unique on the bus (a UUID string by default).
    pub id: String,
    /// Where instance listeners bind and what is registered with the routers.
    pub host: IpAddr,
    /// Memory the DEA offers to instances, in MB.
    pub memory_mb: u64,
    /// Droplet cache on disk (`<data_dir>/droplets/<sha256>.wasm`).
    pub data_dir: PathBuf,
    /// Interval of `dea.heartbeat` and `dea.advertise`.
    pub heartbeat_interval: Duration,
}

impl Config {
    /// A configuration with every default and a fresh id.
    pub fn new(data_dir: PathBuf) -> Config {
        Config {
            id: uuid::Uuid::new_v4().to_string(),
            host: DEFAULT_HOST,
            memory_mb: DEFAULT_MEMORY_MB,
            data_dir,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
        }
    }

    /// Checks what would otherwise fail later and obscurely; the message is one sentence.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        // The id becomes a NATS subject token (`dea.<id>.start`).
        if self.id.is_empty() || self.id.contains(['.', '*', '>', ' ']) {
            anyhow::bail!(
                "the DEA id {:?} must be non-empty and contain no '.', '*', '>' or spaces",
                self.id
            );
        }
        if self.heartbeat_interval.is_zero() {
            anyhow::bail!("the heartbeat interval must be greater than zero");
        }
        if self.host.is_unspecified() {
            anyhow::bail!(
                "the DEA host {} cannot be registered with routers; give a reachable address",
                self.host
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = Config::new(PathBuf::from("/tmp/x"));
        assert_eq!(config.host, DEFAULT_HOST);
        assert_eq!(config.memory_mb, DEFAULT_MEMORY_MB);
        assert!(uuid::Uuid::parse_str(&config.id).is_ok());
        config.validate().unwrap();
    }

    #[test]
    fn rejects_ids_that_break_subjects() {
        let mut config = Config::new(PathBuf::from("/tmp/x"));
        config.id = "a.b".into();
        assert!(config.validate().is_err());
    }
}
