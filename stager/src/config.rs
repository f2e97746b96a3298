//! What a stager needs to know: who it is, where it builds, and the limits of one staging job.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::ensure;
use nimbus_engine::EngineSettings;
use uuid::Uuid;

use crate::BuildUser;

/// How long one build may run before it is stopped.
pub const DEFAULT_BUILD_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// The largest a package may be once unpacked (512 MiB).
pub const DEFAULT_MAX_PACKAGE_BYTES: u64 = 512 * 1024 * 1024;
/// Memory (data segment, as `RLIMIT_DATA`) each build process may use: rustc on a large crate
/// and componentize-py stay well under it.
pub const DEFAULT_BUILD_MEMORY_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// Configuration of one stager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Sent back in every [`StagingAck`](nimbus_protocol::messages::StagingAck).
    pub id: String,
    /// Holds the per-job build directories and the per-app build caches.
    pub work_dir: PathBuf,
    /// Wall-clock limit of one build.
    pub build_timeout: Duration,
    /// Cap on a package's unpacked size (and on its download).
    pub max_package_bytes: u64,
    /// Memory limit of each build process.
    pub build_memory_bytes: u64,
    /// The engine settings of the cluster's DEAs: droplets are precompiled for them.
    pub engine: EngineSettings,
    /// Where `npm install --prefix` put componentize-js (scripts/setup does).
    pub js_toolchain: PathBuf,
    /// Who builds run as; `None` runs them as the stager's own user. Defaults to an
    /// unprivileged user when the stager runs as root ([`BuildUser::default_for_this_process`]).
    pub build_user: Option<BuildUser>,
}

/// The JavaScript toolchain's default home: `$NIMBUS_JS_TOOLCHAIN`, else
/// `~/.cache/nimbus/toolchains/js`.
pub fn default_js_toolchain() -> PathBuf {
    if let Some(dir) = std::env::var_os("NIMBUS_JS_TOOLCHAIN") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/nimbus/toolchains/js")
}

impl Config {
    /// A stager with a fresh id and the default limits, working under `work_dir`.
    pub fn new(work_dir: PathBuf) -> Config {
        Config {
            id: format!("stager-{}", Uuid::new_v4().simple()),
            work_dir,
            build_timeout: DEFAULT_BUILD_TIMEOUT,
            max_package_bytes: DEFAULT_MAX_PACKAGE_BYTES,
            build_memory_bytes: DEFAULT_BUILD_MEMORY_BYTES,
            engine: EngineSettings::default(),
            js_toolchain: default_js_toolchain(),
            build_user: BuildUser::default_for_this_process(),
        }
    }

    /// Rejects settings no staging job could work with, in one sentence.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            !self.id.trim().is_empty(),
            "the stager id must not be empty"
        );
        ensure!(
            !self.build_timeout.is_zero(),
            "the build timeout must be longer than zero"
        );
        ensure!(
            self.max_package_bytes > 0,
            "the maximum package size must be larger than zero"
        );
        Ok(())
    }

    /// Parent of the short-lived directory of each staging job.
    pub(crate) fn builds_dir(&self) -> PathBuf {
        self.work_dir.join("builds")
    }

    /// The stagers' own build files (WIT worlds, the JS driver), written at start.
    pub(crate) fn assets_dir(&self) -> PathBuf {
        self.work_dir.join("assets")
    }

    /// Build cache of one app; it outlives jobs so restaging reuses compiled dependencies.
    pub(crate) fn app_cache_dir(&self, app_id: Uuid) -> PathBuf {
        self.work_dir.join("cache").join(app_id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_config_has_defaults_and_a_unique_id() {
        let a = Config::new(PathBuf::from("/tmp/w"));
        let b = Config::new(PathBuf::from("/tmp/w"));
        assert_ne!(a.id, b.id);
        assert_eq!(a.build_timeout, DEFAULT_BUILD_TIMEOUT);
        assert_eq!(a.max_package_bytes, DEFAULT_MAX_PACKAGE_BYTES);
        assert!(a.validate().is_ok());
    }

    #[test]
    fn rejects_a_zero_build_timeout() {
        let mut config = Config::new(PathBuf::from("/tmp/w"));
        config.build_timeout = Duration::ZERO;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("build timeout"), "{error}");
    }
}
