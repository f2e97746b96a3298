//! The on-disk cache of compiled droplets: `<data_dir>/compiled/<sha256>-<engine>.cwasm`, where
//! `<engine>` hashes the engine's precompile-compatibility settings, so a restarted DEA maps the
//! machine code instead of running Cranelift again, and an engine with other settings (fuel
//! off, another wasmtime) never loads an artifact it cannot run.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use wasmtime::Engine;
use wasmtime::component::Component;

/// How droplets reached memory since the DEA started, for operators and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompileStats {
    /// Droplets compiled by Cranelift.
    pub compiled: u64,
    /// Droplets loaded from the on-disk cache (including those fetched precompiled).
    pub loaded: u64,
    /// Droplets whose machine code came precompiled by a stager, from the blob store.
    pub fetched: u64,
}

/// The compiled-code directory of one engine.
pub(crate) struct CompiledCache {
    dir: PathBuf,
    engine_hash: String,
    compiled: AtomicU64,
    loaded: AtomicU64,
    fetched: AtomicU64,
}

impl CompiledCache {
    pub(crate) fn new(data_dir: &Path, engine: &Engine) -> CompiledCache {
        CompiledCache {
            dir: data_dir.join("compiled"),
            engine_hash: nimbus_engine::compatibility_hash(engine),
            compiled: AtomicU64::new(0),
            loaded: AtomicU64::new(0),
            fetched: AtomicU64::new(0),
        }
    }

    pub(crate) fn engine_hash(&self) -> &str {
        &self.engine_hash
    }

    pub(crate) fn path(&self, sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{sha256}-{}.cwasm", self.engine_hash))
    }

    pub(crate) fn stats(&self) -> CompileStats {
        CompileStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            loaded: self.loaded.load(Ordering::Relaxed),
            fetched: self.fetched.load(Ordering::Relaxed),
        }
    }

    /// The cached component, if a usable artifact exists. A corrupt or incompatible file is
    /// reported and treated as missing; the caller recompiles and overwrites it.
    pub(crate) fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path(sha256);
        if !path.exists() {
            return None;
        }
        // SAFETY: `deserialize_file` trusts the file to be an artifact wasmtime produced for a
        // compatible engine. Only this DEA writes `<data_dir>/compiled` (through an atomic
        // rename, so never half-written nor changed in place while mapped): either from
        // `Component::serialize`, or from a stager's artifact out of the blob store, which only
        // platform components can write (tenants reach it through the stager's compiler, never
        // directly); the file name carries the engine's compatibility hash, and wasmtime still
        // checks the header and version.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => {
                self.loaded.fetch_add(1, Ordering::Relaxed);
                tracing::info!(sha256, path = %path.display(), "loaded compiled droplet from disk");
                Some(component)
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    path = %path.display(),
                    "cached compiled droplet is unusable; compiling it again"
                );
                None
            }
        }
    }

    /// Writes a precompiled artifact fetched for this engine into the cache and loads it; `None`
    /// (after a warning) if it cannot be written or does not load, so the caller compiles.
    pub(crate) fn install(
        &self,
        engine: &Engine,
        sha256: &str,
        artifact: &[u8],
    ) -> Option<Component> {
        if let Err(error) = self.write(sha256, artifact) {
            tracing::warn!(
                error = format!("{error:#}"),
                "failed to cache a precompiled droplet"
            );
            return None;
        }
        let component = self.load(engine, sha256)?;
        self.fetched.fetch_add(1, Ordering::Relaxed);
        Some(component)
    }

    /// Compiles `bytes` and writes the artifact for next time (a failed write only costs a
    /// compilation later).
    pub(crate) fn compile(
        &self,
        engine: &Engine,
        sha256: &str,
        bytes: &[u8],
    ) -> anyhow::Result<Component> {
        let component = Component::new(engine, bytes)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("droplet {sha256} is not a valid WebAssembly component"))?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = self.store(&component, sha256) {
            tracing::warn!(
                error = format!("{error:#}"),
                "failed to cache a compiled droplet"
            );
        }
        Ok(component)
    }

    fn store(&self, component: &Component, sha256: &str) -> anyhow::Result<()> {
        let artifact = component.serialize().map_err(anyhow::Error::from)?;
        self.write(sha256, &artifact)
    }

    fn write(&self, sha256: &str, artifact: &[u8]) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("failed to create {}", self.dir.display()))?;
        let temporary = self
            .dir
            .join(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
        std::fs::write(&temporary, artifact)
            .with_context(|| format!("failed to write {}", temporary.display()))?;
        let path = self.path(sha256);
        if let Err(error) = std::fs::rename(&temporary, &path) {
            let _ = std::fs::remove_file(&temporary);
            return Err(error).with_context(|| format!("failed to write {}", path.display()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_artifact_is_treated_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = CompiledCache::new(dir.path(), &engine);
        let sha = "ab".repeat(32);
        std::fs::create_dir_all(dir.path().join("compiled")).unwrap();
        std::fs::write(cache.path(&sha), b"garbage").unwrap();
        assert!(cache.load(&engine, &sha).is_none());
        assert_eq!(cache.stats(), CompileStats::default());
    }
}
