//! The Nimbus stager: turns an uploaded package into a validated, content-addressed droplet.
//!
//! A stager joins the `staging` queue group, so each request is taken by exactly one stager.
//! For every request it acknowledges at once, then runs a job on its own task:
//!
//! 1. [`fetch`] downloads the package from the blob store (size-capped, SHA-256 checked);
//! 2. [`package`] turns it into an app directory, unpacking archives defensively;
//! 3. the first of the [`stagers`] that recognises the directory builds it into a wasm file
//!    (Rust, C, Python, JavaScript, or prebuilt `.wasm`/`.wat`), the build contained in a child
//!    process (clean environment, rlimits, time limit);
//! 4. [`validate`] decides the droplet's kind (`http-component` or `wagi`), turning a WASI p1
//!    command module into a component, checks its imports against what a DEA provides, and
//!    compiles it for the cluster's engine;
//! 5. [`droplet`] stores it under its SHA-256 (once: droplets are content-addressed), and the
//!    compiled artifact beside it, named by the engine's compatibility hash.
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

mod build_user;
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

pub use build_user::{BuildUser, DEDICATED_BUILD_USER};
pub use config::{
    Config, DEFAULT_BUILD_MEMORY_BYTES, DEFAULT_BUILD_TIMEOUT, DEFAULT_MAX_PACKAGE_BYTES,
    default_js_toolchain,
};

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
    if let Some(user) = &config.build_user {
        user.check_reachable(&config.work_dir)?;
    }
    let assets = config.assets_dir();
    tokio::task::spawn_blocking(move || stagers::write_assets(&assets))
        .await
        .context("the asset writer failed")??;
    let validator = validate::Validator::new(config.engine)?;
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
