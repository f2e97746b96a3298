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
/// Wasm instances the DEA runs at once by default: the pooling allocator's slot count. Instances
/// live for one request, so this is the DEA-wide request concurrency, not the number of apps.
pub const DEFAULT_MAX_INSTANCES: u32 = 1000;
/// The default largest `memory` limit an app may run with, in MB (sizes the pool's slots).
pub use nimbus_engine::DEFAULT_MAX_INSTANCE_MEMORY_MB;
/// Fuel per request when the app sets none. Wasmtime burns about one unit per wasm instruction,
/// and runs roughly 1–3 billion a second here, so 5 billion is a few seconds of CPU: ample for
/// a web request, yet a busy loop ends well before the default 30 s wall-clock limit.
pub const DEFAULT_FUEL: u64 = 5_000_000_000;
/// Size cap of an instance's scratch directory (`/tmp` in the guest), in bytes.
pub const DEFAULT_SCRATCH_BYTES: u64 = 64 * 1024 * 1024;
/// Guest log lines an instance may publish per second (also the burst).
pub const DEFAULT_LOG_LINES_PER_SECOND: u32 = 1000;
/// Guest log bytes an instance may publish per second (also the burst).
pub const DEFAULT_LOG_BYTES_PER_SECOND: u64 = 1024 * 1024;
/// How often an instance's `health_check_http_endpoint` is probed once it runs.
pub const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(3);
/// Failed liveness probes in a row that crash an instance.
pub const DEFAULT_HEALTH_CHECK_FAILURES: u32 = 3;
/// How long an evacuating DEA waits for its instances' replacements before it leaves anyway.
pub const DEFAULT_EVACUATION_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// Use the pooling instance allocator when the host's address space allows it; `false`
    /// forces on-demand allocation.
    pub pooling: bool,
    /// Wasm instances alive at once (pool size); see [`DEFAULT_MAX_INSTANCES`].
    pub max_instances: u32,
    /// Requests the DEA runs at once across every app; more wait briefly, then get 503.
    /// At most `max_instances`, since every request needs an instance.
    pub max_concurrent_requests: u32,
    /// Largest `memory` limit an app may run with, in MB (sizes the pool's memory slots).
    pub max_instance_memory_mb: u64,
    /// Fuel per request for apps that set no `fuel` limit.
    pub default_fuel: u64,
    /// Meter fuel: every request gets a CPU budget (the app's `fuel` limit or `default_fuel`)
    /// and yields to other tasks every few million units. Off (the operator's choice, for
    /// speed) ignores fuel limits: requests are bounded by their wall-clock timeout only, and a
    /// busy guest still yields at every epoch tick.
    pub fuel_metering: bool,
    /// Size cap of each instance's scratch directory, in bytes.
    pub scratch_bytes: u64,
    /// Guest log lines per second per instance; the excess is dropped and counted.
    pub log_lines_per_second: u32,
    /// Guest log bytes per second per instance; the excess is dropped and counted.
    pub log_bytes_per_second: u64,
    /// Let apps reach loopback, private, link-local and other non-public addresses when their
    /// `allowed_outbound_hosts` lists the host. Off by default: those networks hold the DEA's
    /// own listeners, the bus and other tenants.
    pub allow_private_egress: bool,
    /// See [`DEFAULT_HEALTH_CHECK_INTERVAL`].
    pub health_check_interval: Duration,
    /// See [`DEFAULT_HEALTH_CHECK_FAILURES`].
    pub health_check_failures: u32,
    /// See [`DEFAULT_EVACUATION_TIMEOUT`].
    pub evacuation_timeout: Duration,
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
            pooling: true,
            max_instances: DEFAULT_MAX_INSTANCES,
            max_concurrent_requests: DEFAULT_MAX_INSTANCES,
            max_instance_memory_mb: DEFAULT_MAX_INSTANCE_MEMORY_MB,
            default_fuel: DEFAULT_FUEL,
            fuel_metering: true,
            scratch_bytes: DEFAULT_SCRATCH_BYTES,
            log_lines_per_second: DEFAULT_LOG_LINES_PER_SECOND,
            log_bytes_per_second: DEFAULT_LOG_BYTES_PER_SECOND,
            allow_private_egress: false,
            health_check_interval: DEFAULT_HEALTH_CHECK_INTERVAL,
            health_check_failures: DEFAULT_HEALTH_CHECK_FAILURES,
            evacuation_timeout: DEFAULT_EVACUATION_TIMEOUT,
        }
    }

    /// The settings that decide generated code, which a stager must share to precompile for
    /// this DEA.
    pub fn engine_settings(&self) -> nimbus_engine::EngineSettings {
        nimbus_engine::EngineSettings {
            fuel_metering: self.fuel_metering,
            max_instance_memory_mb: self.max_instance_memory_mb,
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
        if self.heartbeat_interval.is_zero()
            || self.health_check_interval.is_zero()
            || self.health_check_failures == 0
        {
            anyhow::bail!(
                "the heartbeat interval, health-check interval and health-check failures must be greater than zero"
            );
        }
        if self.host.is_unspecified() {
            anyhow::bail!(
                "the DEA host {} cannot be registered with routers; give a reachable address",
                self.host
            );
        }
        if self.max_instances == 0 || self.max_concurrent_requests == 0 {
            anyhow::bail!("max_instances and max_concurrent_requests must be greater than zero");
        }
        if self.max_concurrent_requests > self.max_instances {
            anyhow::bail!(
                "max_concurrent_requests ({}) cannot exceed max_instances ({}): every request needs an instance",
                self.max_concurrent_requests,
                self.max_instances
            );
        }
        if self.max_instance_memory_mb == 0 || self.max_instance_memory_mb > 4096 {
            anyhow::bail!("max_instance_memory_mb must be between 1 and 4096 (32-bit wasm memory)");
        }
        if self.default_fuel == 0
            || self.log_lines_per_second == 0
            || self.log_bytes_per_second == 0
        {
            anyhow::bail!("default_fuel and the log rates must be greater than zero");
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

    #[test]
    fn rejects_more_concurrent_requests_than_instances() {
        let mut config = Config::new(PathBuf::from("/tmp/x"));
        config.max_concurrent_requests = config.max_instances + 1;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("cannot exceed max_instances"), "{error}");
    }
}
