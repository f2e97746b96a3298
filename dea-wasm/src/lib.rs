//! The Nimbus Droplet Execution Agent: runs droplets as WebAssembly components in wasmtime and
//! serves their HTTP.
//!
//! How the pieces fit:
//! - `agent` is the NATS adapter: `dea.<id>.start`, `dea.stop`, `dea.locate` in;
//!   `dea.advertise`, `dea.heartbeat`, `droplet.exited` out. It drives `dea`, which owns the
//!   instance `table` and registers routes through [`nimbus_bus::Registrar`].
//! - `droplets` downloads a droplet from the blob store once, verifies its SHA-256 and caches
//!   it on disk; `engine` compiles it once into a `ProxyPre` (one wasmtime engine per DEA, one
//!   epoch ticker thread).
//! - `instance` is one running instance: a listener on `host:0` serving HTTP/1.1. Every request
//!   gets a fresh store (`guest`: environment from `vcap`, stdout/stderr to the app's log via
//!   `logs`, memory and wall-clock limits) and runs in `http`; `failure` maps traps and timeouts
//!   to statuses with an `x-nimbus-error` header.
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

mod agent;
mod config;
mod dea;
mod droplets;
mod engine;
mod failure;
mod guest;
mod http;
mod instance;
mod logs;
mod table;
mod vcap;

pub use agent::{Handle, start};
pub use config::{Config, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_HOST, DEFAULT_MEMORY_MB};
