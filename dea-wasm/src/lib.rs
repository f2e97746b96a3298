//! The Nimbus Droplet Execution Agent: runs droplets as WebAssembly components in wasmtime and
//! serves their HTTP.
//!
//! How the pieces fit:
//! - `agent` is the NATS adapter: `dea.<id>.start`, `dea.stop`, `dea.locate` in;
//!   `dea.advertise`, `dea.heartbeat`, `droplet.exited` out. It drives `dea`, which owns the
//!   instance `table` and registers routes through [`nimbus_bus::Registrar`].
//! - `droplets` downloads a droplet from the blob store once, verifies its SHA-256 and caches
//!   it on disk; `engine` turns it into a `ProxyPre` once, loading the machine code from
//!   `compiled` (on disk, keyed by the engine's compatibility hash) or compiling it. One engine
//!   per DEA (`pool`: pooling allocator after a probe, fuel, epochs, copy-on-write images), one
//!   epoch ticker thread.
//! - `instance` is one running instance: a listener on `host:0` serving HTTP/1.1. A request is
//!   checked against the body limit (`body`) and admitted (`admission`: per-instance and
//!   DEA-wide concurrency), then gets a fresh store (`guest`: environment from `vcap`, stdio to
//!   the rate-capped log via `logs`, `/tmp` from `scratch`, outbound HTTP through `outbound`
//!   under the `egress` policy, memory via `limiter`, fuel, and a wall-clock deadline) and runs
//!   in `http` (HTTP components) or `wagi` (commands serving the CGI way). `failure` maps each way a request can end to a status and an `x-nimbus-error`
//!   header; `notices` turns it into a log line and an `events.<app_id>` event, rate-capped.
//!
//! ```no_run
//! # async fn run(nats: async_nats::Client) -> anyhow::Result<()> {
//! let config = nimbus_dea_wasm::Config::new("/var/lib/nimbus/dea".into());
//! let dea = nimbus_dea_wasm::start(config, nats).await?;
//! // … until the process is asked to stop:
//! dea.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod admission;
mod agent;
/// Hooks for the DEA's own benchmarks; not a stable API.
#[doc(hidden)]
pub mod bench;
mod body;
mod compiled;
mod config;
mod dea;
mod droplets;
mod egress;
mod engine;
mod evacuation;
mod failure;
mod guest;
mod http;
mod instance;
mod limiter;
mod logs;
mod notices;
mod outbound;
mod pool;
mod probe;
mod rate;
mod scratch;
mod stdio;
mod table;
mod vcap;
mod wagi;

pub use agent::{Handle, start};
pub use compiled::CompileStats;
pub use config::{
    Config, DEFAULT_EVACUATION_TIMEOUT, DEFAULT_FUEL, DEFAULT_HEALTH_CHECK_FAILURES,
    DEFAULT_HEALTH_CHECK_INTERVAL, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_HOST,
    DEFAULT_LOG_BYTES_PER_SECOND, DEFAULT_LOG_LINES_PER_SECOND, DEFAULT_MAX_INSTANCE_MEMORY_MB,
    DEFAULT_MAX_INSTANCES, DEFAULT_MEMORY_MB, DEFAULT_SCRATCH_BYTES,
};
pub use pool::Allocator;
