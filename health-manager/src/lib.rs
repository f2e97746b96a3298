//! The Nimbus health manager: compares desired state (the controllers' apps bucket) with
//! actual state (DEA heartbeats) and asks the controllers to start what is missing and stop
//! what is extra (`cloudcontrollers.hm.requests`).
//!
//! ```text
//!  apps bucket ──watch──▶ desired ─┐
//!  dea.heartbeat ───────▶ actual  ─┼─▶ analysis ──▶ cloudcontrollers.hm.requests
//!  droplet.exited ──────▶ crashes ─┘      │
//!  healthmanager.health ◀─────────────────┘ (index by index: RUNNING, CRASHED, FLAPPING, DOWN)
//! ```
//!
//! - `desired` follows the bucket; `actual` keeps each DEA's latest heartbeat and loses a DEA
//!   after three missed ones; `crashes` holds the crash policy (immediate restarts, then
//!   exponential back-off); `pending` remembers what was asked and not yet seen;
//! - `analysis` is the comparison, a pure function;
//! - `agent` is the NATS adapter and the one task that owns the state;
//! - `lease` elects one leader among several health managers.
//!
//! It never makes an outage worse: it acts only while it leads, after desired state is loaded,
//! and once its own connection has been up and heartbeats have flowed for a grace period; it
//! caps its actions per second; instances it does not hear about are never stopped.
//!
//! ```no_run
//! # async fn run(nats: async_nats::Client) -> anyhow::Result<()> {
//! let hm = nimbus_health_manager::start(nimbus_health_manager::Config::default(), nats).await?;
//! hm.shutdown().await;
//! # Ok(()) }
//! ```

mod actual;
mod agent;
mod analysis;
mod config;
mod crashes;
mod desired;
mod lease;
mod pending;

pub use agent::{Handle, start};
pub use config::{
    Config, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_LEASE_TTL, DEFAULT_MAX_ACTIONS_PER_SECOND,
    DEFAULT_MISSED_HEARTBEATS, DEFAULT_START_PATIENCE, DEFAULT_STOP_PATIENCE, DEFAULT_TICK,
};
pub use crashes::CrashPolicy;
