//! Hooks for the DEA's benchmarks (`benches/instantiate.rs`): the DEA's real engine, compile
//! cache and per-request path ([`AppServer::run`]), minus NATS and the instance's socket.
//!
//! Not a stable API: it exists so benchmarks measure the code the DEA runs instead of a copy.
//! What differs from a deployed instance is only what has no place in a benchmark: log lines
//! and events go to channels that are drained and discarded instead of to the bus, and requests
//! arrive as values instead of being parsed off a TCP connection by hyper.

use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use nimbus_protocol::Limits;
use nimbus_protocol::droplet::{DropletKind, DropletManifest};
use nimbus_protocol::messages::StartRequest;
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::admission::Admission;
use crate::config::Config;
use crate::egress::EgressPolicy;
use crate::engine::{Prepared, Runtime};
use crate::http::AppServer;
use crate::logs::{AppLog, LOG_QUEUE, LogRates};
use crate::notices::Notices;
use crate::pool::Allocator;
use crate::scratch::Scratch;
use crate::vcap;

/// The host name requests are addressed to (a request needs an authority).
pub const APP_HOST: &str = "hello.localhost";
/// The port the instance's environment names; nothing listens on it.
const FAKE_PORT: u16 = 8080;

/// One DEA runtime with one instance of one droplet, served without a socket.
pub struct Harness {
    runtime: Runtime,
    server: Arc<AppServer>,
}

impl Harness {
    /// Builds the runtime as [`crate::start`] does (pooling engine after the probe, linker,
    /// epoch ticker, on-disk compile cache under `config.data_dir`), compiles `wasm` and sets
    /// up one instance of it with default limits, as `Dea::launch` does for a start request.
    /// Must run inside a tokio runtime.
    pub async fn new(config: &Config, wasm: Vec<u8>) -> anyhow::Result<Harness> {
        Harness::start(config, wasm, DropletKind::HttpComponent, None).await
    }

    /// [`Harness::new`] for a droplet of any kind, starting from `precompiled` (machine code
    /// as a stager makes it for this engine) when given, as a DEA does when the blob store has
    /// it, else by compiling `wasm`.
    pub async fn start(
        config: &Config,
        wasm: Vec<u8>,
        kind: DropletKind,
        precompiled: Option<Vec<u8>>,
    ) -> anyhow::Result<Harness> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("failed to create {}", config.data_dir.display()))?;
        let runtime = Runtime::new(config)?;
        let sha256 = format!("{:x}", Sha256::digest(&wasm));
        let size = wasm.len() as u64;
        let prepared = runtime
            .prepare(&sha256, kind, async { precompiled }, async { Ok(wasm) })
            .await?;

        let request = StartRequest {
            app_id: Uuid::new_v4(),
            app_name: "hello".into(),
            version: Uuid::new_v4(),
            index: 0,
            droplet: DropletManifest {
                sha256,
                kind,
                language: "rust".into(),
                size,
                staged_at: 0,
            },
            uris: vec![APP_HOST.into()],
            limits: Limits::default(),
            env: vec![],
            allowed_outbound_hosts: vec![],
            health_check_http_endpoint: None,
        };
        let instance_id = Uuid::new_v4();
        let rates = LogRates {
            lines_per_second: config.log_lines_per_second,
            bytes_per_second: config.log_bytes_per_second,
        };
        let (log, mut lines) = AppLog::channel_with(request.index, LOG_QUEUE, rates);
        tokio::spawn(async move { while lines.recv().await.is_some() {} });
        let (notices, mut events) = Notices::channel(request.app_id, request.index, log);
        tokio::spawn(async move { while events.recv().await.is_some() {} });

        // The same fields as `Dea::launch` fills in.
        let server = Arc::new(AppServer {
            prepared,
            host: APP_HOST.into(),
            clock: runtime.clock().clone(),
            env: vcap::environment(&request, instance_id, FAKE_PORT),
            limits: request.limits,
            fuel: config
                .fuel_metering
                .then(|| request.limits.fuel.unwrap_or(config.default_fuel)),
            notices,
            egress: Arc::new(EgressPolicy::new(
                &request.allowed_outbound_hosts,
                config.allow_private_egress,
            )),
            admission: Admission::new(
                request.limits.max_concurrency,
                Arc::new(Semaphore::new(config.max_concurrent_requests as usize)),
            ),
            scratch: Arc::new(Scratch::create(
                &config.data_dir,
                instance_id,
                config.scratch_bytes,
            )?),
        });
        Ok(Harness { runtime, server })
    }

    /// How the engine allocates instances.
    pub fn allocator(&self) -> Allocator {
        self.runtime.allocator()
    }

    /// Serves `GET path` through the instance's request path (body limit, admission, fresh
    /// store, instantiation, `handle`, supervisor) and reads the whole response body.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Bytes)> {
        let request = http::Request::get(format!("http://{APP_HOST}{path}"))
            .body(Empty::<Bytes>::new())
            .context("failed to build the request")?;
        let response = self
            .server
            .run(request)
            .await
            .map_err(|failure| anyhow::anyhow!("the request failed: {failure}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|code| anyhow::anyhow!("the response body failed: {code:?}"))?
            .to_bytes();
        Ok((status, body))
    }

    /// Builds one request's store (WASI and wasi:http contexts, limits, fuel, deadline) and
    /// drops it.
    pub fn new_store(&self) -> anyhow::Result<()> {
        self.server.new_store(None).map(drop)
    }

    /// Builds one request's store and instantiates the droplet in it, without calling it.
    pub async fn instantiate(&self) -> anyhow::Result<()> {
        let mut store = self.server.new_store(None)?;
        let instantiated = match &self.server.prepared {
            Prepared::Http(pre) => pre.instantiate_async(&mut store).await.map(drop),
            Prepared::Wagi(pre) => pre.instantiate_async(&mut store).await.map(drop),
        };
        instantiated
            .map_err(anyhow::Error::from)
            .context("failed to instantiate the droplet")?;
        Ok(())
    }

    /// Stops the epoch ticker.
    pub fn shutdown(&self) {
        self.runtime.shutdown();
    }
}

/// The wasm of `sample-apps/<name>`, built for wasm32-wasip2 with the sample's own cargo.
///
/// Benchmarks, examples and tests share it. It always runs cargo (a no-op when up to date) so a
/// changed sample is never served stale, and builds one at a time: concurrent cargo runs on one
/// target dir would only queue on its lock.
pub fn sample_app(name: &str) -> anyhow::Result<Vec<u8>> {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sample-apps")
        .join(name);
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--target", "wasm32-wasip2"])
        .current_dir(&dir)
        // The workspace's shared target dir must not capture the guest build.
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .context("failed to run cargo")?;
    anyhow::ensure!(status.success(), "building {} failed", dir.display());
    let wasm = dir
        .join("target/wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&wasm).with_context(|| format!("failed to read {}", wasm.display()))
}
