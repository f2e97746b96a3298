//! The DEA's one wasmtime [`Engine`] (configured in `pool`), its epoch ticker, and the
//! in-memory cache of compiled droplets (one [`Prepared`] per droplet SHA-256, shared by every
//! instance of that droplet), backed by the on-disk cache in `compiled`, which is filled from
//! the stager's precompiled artifact when there is one for this engine, else by compiling.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use nimbus_protocol::DropletKind;
use tokio::sync::OnceCell;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::compiled::{CompileStats, CompiledCache};
use crate::config::Config;
use crate::guest::GuestState;
use crate::pool::{Allocator, build_engine};

/// How often the ticker advances the engine's epoch: the granularity of wall-clock limits and
/// of the time slices after which a busy guest yields to other tasks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A compiled droplet, ready to instantiate once per request, by the executor its kind needs.
#[derive(Clone)]
pub(crate) enum Prepared {
    /// Called through `wasi:http/incoming-handler`.
    Http(ProxyPre<GuestState>),
    /// Run through `wasi:cli/run`, the request and response going through CGI (`wagi`).
    Wagi(CommandPre<GuestState>),
}

impl Prepared {
    pub(crate) fn engine(&self) -> &Engine {
        match self {
            Prepared::Http(pre) => pre.engine(),
            Prepared::Wagi(pre) => pre.engine(),
        }
    }
}

/// Engine, linker, epoch clock and compile cache of one DEA.
pub(crate) struct Runtime {
    engine: Engine,
    allocator: Allocator,
    linker: Arc<Linker<GuestState>>,
    cache: Arc<CompiledCache>,
    clock: EpochClock,
    compiled: Mutex<HashMap<String, Arc<OnceCell<Prepared>>>>,
    ticker: Mutex<Option<JoinHandle<()>>>,
    stop: Arc<AtomicBool>,
}

impl Runtime {
    /// Builds the engine and linker and starts the epoch ticker thread.
    pub(crate) fn new(config: &Config) -> anyhow::Result<Runtime> {
        let (engine, allocator) =
            build_engine(config).context("failed to create the wasmtime engine")?;

        let mut linker = Linker::new(&engine);
        nimbus_engine::add_to_linker(&mut linker)?;

        let clock = EpochClock::default();
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = spawn_ticker(engine.clone(), clock.clone(), stop.clone())?;
        Ok(Runtime {
            cache: Arc::new(CompiledCache::new(&config.data_dir, &engine)),
            engine,
            allocator,
            linker: Arc::new(linker),
            clock,
            compiled: Mutex::default(),
            ticker: Mutex::new(Some(ticker)),
            stop,
        })
    }

    pub(crate) fn clock(&self) -> &EpochClock {
        &self.clock
    }

    pub(crate) fn allocator(&self) -> Allocator {
        self.allocator
    }

    pub(crate) fn compile_stats(&self) -> CompileStats {
        self.cache.stats()
    }

    /// The compatibility hash of this DEA's engine, naming the precompiled artifacts it loads.
    pub(crate) fn engine_hash(&self) -> &str {
        self.cache.engine_hash()
    }

    /// The compiled droplet with this SHA-256, run as `kind`. The first time, it comes from the
    /// disk cache, else from `precompiled` (the stager's artifact for this engine, if any), else
    /// from compiling `fetch`'s bytes. Concurrent callers for one droplet share that work; a
    /// failure is not cached, so a later start retries.
    pub(crate) async fn prepare<P, F>(
        &self,
        sha256: &str,
        kind: DropletKind,
        precompiled: P,
        fetch: F,
    ) -> anyhow::Result<Prepared>
    where
        P: Future<Output = Option<Vec<u8>>>,
        F: Future<Output = anyhow::Result<Vec<u8>>>,
    {
        let cell = {
            let mut compiled = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
            compiled.entry(sha256.to_string()).or_default().clone()
        };
        let prepared = cell
            .get_or_try_init(|| async {
                let engine = self.engine.clone();
                let cache = self.cache.clone();
                let sha = sha256.to_string();
                let from_disk = tokio::task::spawn_blocking(move || cache.load(&engine, &sha))
                    .await
                    .context("the loader task failed")?;
                if let Some(component) = from_disk {
                    return self.link(sha256, kind, component);
                }
                if let Some(artifact) = precompiled.await {
                    let engine = self.engine.clone();
                    let cache = self.cache.clone();
                    let sha = sha256.to_string();
                    let installed = tokio::task::spawn_blocking(move || {
                        cache.install(&engine, &sha, &artifact)
                    })
                    .await
                    .context("the loader task failed")?;
                    if let Some(component) = installed {
                        return self.link(sha256, kind, component);
                    }
                }
                let bytes = fetch.await?;
                let engine = self.engine.clone();
                let cache = self.cache.clone();
                let sha = sha256.to_string();
                // Cranelift takes hundreds of milliseconds on real droplets: keep it off the
                // executor threads that serve requests.
                let component =
                    tokio::task::spawn_blocking(move || cache.compile(&engine, &sha, &bytes))
                        .await
                        .context("the compiler task failed")??;
                tracing::info!(sha256, "compiled droplet");
                self.link(sha256, kind, component)
            })
            .await?;
        Ok(prepared.clone())
    }

    /// Stops the epoch ticker; running guests then only stop at their tokio timeout.
    pub(crate) fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let ticker = self.ticker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(ticker) = ticker
            && ticker.join().is_err()
        {
            tracing::warn!("the epoch ticker thread panicked");
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // The thread holds an engine clone; without this it would tick for ever.
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    fn link(
        &self,
        sha256: &str,
        kind: DropletKind,
        component: Component,
    ) -> anyhow::Result<Prepared> {
        let pre = anyhow_result(self.linker.instantiate_pre(&component)).with_context(|| {
            format!("droplet {sha256} imports interfaces this DEA does not provide")
        })?;
        Ok(match kind {
            DropletKind::HttpComponent => {
                Prepared::Http(anyhow_result(ProxyPre::new(pre)).with_context(|| {
                    format!("droplet {sha256} does not export wasi:http/incoming-handler")
                })?)
            }
            DropletKind::Wagi => Prepared::Wagi(
                anyhow_result(CommandPre::new(pre))
                    .with_context(|| format!("droplet {sha256} does not export wasi:cli/run"))?,
            ),
        })
    }
}

/// wasmtime 48 has its own error type, which anyhow's `Context` does not extend.
fn anyhow_result<T>(result: wasmtime::Result<T>) -> anyhow::Result<T> {
    result.map_err(anyhow::Error::from)
}

/// Counts epoch ticks alongside the engine (wasmtime does not expose its current epoch), so a
/// store can turn a wall-clock limit into an absolute deadline.
#[derive(Clone, Default)]
pub(crate) struct EpochClock(Arc<AtomicU64>);

impl EpochClock {
    pub(crate) fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// The tick at which a limit of `limit` starting now has passed.
    pub(crate) fn deadline_after(&self, limit: Duration) -> u64 {
        self.now().saturating_add(ticks(limit))
    }
}

/// Whole ticks covering `limit`, at least one.
pub(crate) fn ticks(limit: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    let ticks = limit.as_nanos().div_ceil(tick).max(1);
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// One thread per DEA: a tokio task could be starved by the very guests it must interrupt.
fn spawn_ticker(
    engine: Engine,
    clock: EpochClock,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("nimbus-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                clock.0.fetch_add(1, Ordering::Relaxed);
                engine.increment_epoch();
            }
        })
        .context("failed to start the epoch ticker thread")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_round_up_to_whole_ticks() {
        assert_eq!(ticks(Duration::from_millis(0)), 1);
        assert_eq!(ticks(Duration::from_millis(10)), 1);
        assert_eq!(ticks(Duration::from_millis(11)), 2);
        assert_eq!(ticks(Duration::from_secs(30)), 3000);
    }

    #[test]
    fn deadlines_are_absolute_ticks() {
        let clock = EpochClock::default();
        clock.0.store(7, Ordering::Relaxed);
        assert_eq!(clock.deadline_after(Duration::from_millis(25)), 10);
    }

    #[tokio::test]
    async fn rejects_bytes_that_are_not_a_component() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path().to_path_buf());
        config.max_instances = 4;
        let runtime = Runtime::new(&config).unwrap();
        let Err(error) = runtime
            .prepare("00", DropletKind::HttpComponent, async { None }, async {
                Ok(b"not wasm".to_vec())
            })
            .await
        else {
            panic!("garbage compiled");
        };
        assert!(
            format!("{error:#}").contains("not a valid WebAssembly component"),
            "{error:#}"
        );
        runtime.shutdown();
    }
}
