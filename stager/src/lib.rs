//! The Nimbus stager: turns an uploaded package into a validated, content-addressed droplet.
//!
//! A stager joins the `staging` queue group, so each request is taken by exactly one stager.
//! For every request it acknowledges at once, then runs a job on its own task:
//!
//! 1. [`fetch`] downloads the package from the blob store (size-capped, SHA-256 checked);
//! 2. [`package`] turns it into an app directory, unpacking archives defensively;
//! 3. the first of the [`stagers`] that recognises the directory builds it into a wasm file
//!    (prebuilt `.wasm`, or a Rust crate built with cargo under a time limit);
//! 4. [`validate`] compiles it with wasmtime and checks it exports `wasi:http/incoming-handler`;
//! 5. [`droplet`] stores it under its SHA-256 (once: droplets are content-addressed).
//!
//! Every line of output goes to `staging.<id>.log` (which `nimbus push` follows) and to the
//! app's log stream; the result goes to `staging.<id>.done`. [`worker`] is the only module that
//! talks NATS messages; the job and the stagers know nothing of the bus.
//!
//! ```no_run
//! # async fn example(nats: async_nats::Client) -> anyhow::Result<()> {
//! let config = nimbus_stager::Config::new("/var/lib/nimbus/stager".into());
//! let handle = nimbus_stager::start(config, nats).await?;
//! // … stage until it is time to stop …
//! handle.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod config;
mod droplet;
mod fetch;
mod job;
mod log;
mod package;
mod stagers;
mod validate;
mod worker;

use std::sync::Arc;

use anyhow::Context as _;
use nimbus_protocol::subjects::{STAGING, STAGING_QUEUE};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{Config, DEFAULT_BUILD_TIMEOUT, DEFAULT_MAX_PACKAGE_BYTES};

/// A running stager. Dropping it leaves the stager running; [`Handle::shutdown`] stops it.
pub struct Handle {
    stop: watch::Sender<bool>,
    worker: JoinHandle<()>,
}

/// Starts a stager: checks its configuration, prepares its work directory and joins the
/// `staging` queue group. Returns once it is ready to take requests.
pub async fn start(config: Config, nats: async_nats::Client) -> anyhow::Result<Handle> {
    config.validate()?;
    for dir in [config.builds_dir(), config.work_dir.join("cache")] {
        tokio::fs::create_dir_all(&dir).await.with_context(|| {
            format!("failed to create the stager's directory {}", dir.display())
        })?;
    }
    let validator = validate::Validator::new()?;
    let requests = nats
        .queue_subscribe(STAGING, STAGING_QUEUE.to_string())
        .await
        .context("failed to subscribe to staging requests")?;
    // Requests sent right after start() returns must find the subscription on the server.
    nats.flush()
        .await
        .context("failed to flush the staging subscription")?;
    tracing::info!(stager_id = %config.id, work_dir = %config.work_dir.display(), "stager started");

    let stager = Arc::new(job::Stager {
        jetstream: async_nats::jetstream::new(nats.clone()),
        registry: stagers::Registry::new(),
        validator,
        config,
    });
    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(worker::serve(stager, nats, requests, stopped));
    Ok(Handle { stop, worker })
}

impl Handle {
    /// Stops taking requests, ends the jobs in flight (each reports `Failed`), and waits for them.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.worker.await {
            tracing::warn!(%error, "the stager's worker task failed");
        }
    }
}
