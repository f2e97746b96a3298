//! Language stagers: each recognises one kind of app directory and builds it into a wasm file.
//!
//! A stager only builds; validating the result and storing the droplet is the same for every
//! language and happens in the job. Adding a language means one module here and one line in
//! [`Registry::new`].

mod assets;
mod c;
mod command;
mod javascript;
mod python;
mod rust;
mod wasm;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use crate::log::BuildLog;
use futures::future::BoxFuture;

pub(crate) use assets::write_assets;
use c::CStager;
use javascript::JavaScriptStager;
use python::PythonStager;
use rust::RustStager;
use wasm::WasmStager;

/// The failure message when no stager recognises a package.
pub(crate) const NO_STAGER_MESSAGE: &str = "no stager recognises this package: expected a Rust \
     crate (Cargo.toml), JavaScript (package.json or app.js), Python (app.py), C (*.c files), or \
     one prebuilt .wasm or .wat file";

/// Everything a build may use.
#[derive(Debug, Clone)]
pub(crate) struct BuildContext {
    /// The unpacked package; the build may write into it.
    pub app_dir: PathBuf,
    /// Where a stager that writes its wasm itself puts it (outside `app_dir`, so it is never
    /// mistaken for part of the package).
    pub output: PathBuf,
    /// Survives between stagings of the same app (build caches live here).
    pub cache_dir: PathBuf,
    /// Wall-clock limit of the build.
    pub timeout: Duration,
    /// Memory limit (`RLIMIT_DATA`) of each build process.
    pub memory_bytes: u64,
    /// Largest file a build may write.
    pub max_file_bytes: u64,
    /// The stager's own build files (WIT worlds, the JS build driver); see [`write_assets`].
    pub assets_dir: PathBuf,
    /// Where componentize-js is installed.
    pub js_toolchain: PathBuf,
    /// Who the build processes run as (`None`: the stager's own user).
    pub user: Option<crate::BuildUser>,
    /// Where build output goes.
    pub log: BuildLog,
}

impl BuildContext {
    /// The build's `HOME`, inside the app's cache, so tools' own caches (pip, npm, wizer) are
    /// per app, kept between stagings and writable by the build user.
    pub(crate) fn home(&self) -> PathBuf {
        self.cache_dir.join("home")
    }

    /// Creates `dir` (and its missing parents) inside the app's cache for the build to write
    /// into: owned by the build user when there is one.
    pub(crate) async fn make_dir(&self, dir: &Path) -> anyhow::Result<()> {
        tokio::fs::create_dir_all(dir)
            .await
            .with_context(|| format!("failed to create {}", dir.display()))?;
        if let Some(user) = &self.user {
            anyhow::ensure!(
                dir.starts_with(&self.cache_dir),
                "{} is outside the app's build cache",
                dir.display()
            );
            // The job gave the cache itself to the user; what lies below it was just created.
            for ancestor in dir.ancestors().take_while(|a| *a != self.cache_dir) {
                if user.owns(ancestor) {
                    break;
                }
                std::os::unix::fs::lchown(ancestor, Some(user.uid), Some(user.gid))
                    .with_context(|| format!("failed to hand {} to the build", dir.display()))?;
            }
        }
        Ok(())
    }

    /// A context building in `dir` with the default limits, and the receiver of its log.
    #[cfg(test)]
    pub(crate) fn for_test(
        dir: &Path,
        timeout: Duration,
    ) -> (
        BuildContext,
        tokio::sync::mpsc::Receiver<crate::log::LogLine>,
    ) {
        let (log, lines) = BuildLog::channel();
        let out = dir.join(".build");
        std::fs::create_dir_all(&out).unwrap();
        let ctx = BuildContext {
            app_dir: dir.to_path_buf(),
            output: out.join("built.wasm"),
            cache_dir: dir.join("cache"),
            timeout,
            memory_bytes: crate::config::DEFAULT_BUILD_MEMORY_BYTES,
            max_file_bytes: crate::config::DEFAULT_MAX_PACKAGE_BYTES,
            assets_dir: dir.join("assets"),
            js_toolchain: crate::config::default_js_toolchain(),
            user: None,
            log,
        };
        (ctx, lines)
    }
}

/// One language's stager.
///
/// `build` returns a boxed future so stagers can live side by side as trait objects in the
/// [`Registry`] (an `async fn` in a trait is not object-safe).
pub(crate) trait Stager: Send + Sync {
    /// The language recorded in the droplet manifest: `rust`, `c`, `python`, `javascript`, `wasm`.
    fn name(&self) -> &'static str;
    /// Whether this stager can build the app in `dir`. Must be cheap and never fail.
    fn detect(&self, dir: &Path) -> bool;
    /// Builds the app and returns the path of the resulting wasm file.
    fn build<'a>(&'a self, ctx: &'a BuildContext) -> BoxFuture<'a, anyhow::Result<PathBuf>>;
}

/// The stagers this stager process offers, in the order they are asked.
pub(crate) struct Registry {
    stagers: Vec<Box<dyn Stager>>,
}

impl Registry {
    /// Every built-in stager. Sources come before prebuilt wasm: when a crate also carries a
    /// stray `.wasm`, the source is what the developer meant to push. Among sources, the more
    /// specific marker file wins (a Rust crate may hold C files for a build script; a Python
    /// app may carry a `package.json` for its front end's tooling, but then has `app.py`).
    pub(crate) fn new() -> Registry {
        Registry {
            stagers: vec![
                Box::new(RustStager),
                Box::new(PythonStager),
                Box::new(JavaScriptStager),
                Box::new(CStager),
                Box::new(WasmStager),
            ],
        }
    }

    /// The first stager that recognises `dir`.
    pub(crate) fn detect(&self, dir: &Path) -> Option<&dyn Stager> {
        self.stagers
            .iter()
            .map(|stager| stager.as_ref())
            .find(|stager| stager.detect(dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detected(files: &[&str]) -> Option<&'static str> {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"x").unwrap();
        }
        Registry::new().detect(dir.path()).map(|s| s.name())
    }

    #[test]
    fn detects_a_rust_crate_by_its_cargo_toml() {
        assert_eq!(detected(&["Cargo.toml", "src/lib.rs"]), Some("rust"));
    }

    #[test]
    fn detects_a_directory_with_one_wasm_file() {
        assert_eq!(detected(&["app.wasm", "README.md"]), Some("wasm"));
    }

    #[test]
    fn prefers_the_source_when_a_crate_also_holds_a_wasm_file() {
        assert_eq!(detected(&["Cargo.toml", "old.wasm"]), Some("rust"));
    }

    #[test]
    fn detects_each_language_by_its_marker_files() {
        assert_eq!(detected(&["app.py"]), Some("python"));
        assert_eq!(detected(&["requirements.txt", "app.py"]), Some("python"));
        assert_eq!(detected(&["package.json", "index.js"]), Some("javascript"));
        assert_eq!(detected(&["app.js"]), Some("javascript"));
        assert_eq!(detected(&["hello.c", "util.c"]), Some("c"));
        assert_eq!(detected(&["hello.wat"]), Some("wasm"));
        assert_eq!(detected(&["Cargo.toml", "build/x.c"]), Some("rust"));
        assert_eq!(detected(&["app.py", "package.json"]), Some("python"));
    }

    #[test]
    fn recognises_nothing_in_other_directories() {
        assert_eq!(detected(&["README.md"]), None);
        assert_eq!(detected(&["a.wasm", "b.wasm"]), None);
        assert_eq!(detected(&["a.wasm", "b.wat"]), None);
        assert_eq!(detected(&["nested/app.wasm"]), None);
        assert_eq!(detected(&["main.go"]), None);
    }
}
