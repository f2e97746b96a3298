//! Language stagers: each recognises one kind of app directory and builds it into a wasm file.
//!
//! A stager only builds; validating the result and storing the droplet is the same for every
//! language and happens in the job. Adding a language means one module here and one line in
//! [`Registry::new`].

mod command;
mod rust;
mod wasm;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::log::BuildLog;
use futures::future::BoxFuture;

pub(crate) use rust::RustStager;
pub(crate) use wasm::WasmStager;

/// The failure message when no stager recognises a package.
pub(crate) const NO_STAGER_MESSAGE: &str =
    "no stager recognises this package: expected a .wasm component or a Rust crate (Cargo.toml)";

/// Everything a build may use.
#[derive(Debug, Clone)]
pub(crate) struct BuildContext {
    /// The unpacked package; the build may write into it.
    pub app_dir: PathBuf,
    /// Survives between stagings of the same app (build caches live here).
    pub cache_dir: PathBuf,
    /// Wall-clock limit of the build.
    pub timeout: Duration,
    /// Where build output goes.
    pub log: BuildLog,
}

/// One language's stager.
///
/// `build` returns a boxed future so stagers can live side by side as trait objects in the
/// [`Registry`] (an `async fn` in a trait is not object-safe).
pub(crate) trait Stager: Send + Sync {
    /// The language recorded in the droplet manifest: `wasm`, `rust`.
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
    /// Every built-in stager. Rust comes first: when a crate also carries a stray `.wasm`, the
    /// source is what the developer meant to push.
    pub(crate) fn new() -> Registry {
        Registry {
            stagers: vec![Box::new(RustStager), Box::new(WasmStager)],
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
    fn recognises_nothing_in_other_directories() {
        assert_eq!(detected(&["index.js", "package.json"]), None);
        assert_eq!(detected(&["a.wasm", "b.wasm"]), None);
        assert_eq!(detected(&["nested/app.wasm"]), None);
    }
}
