//! The prebuilt stager: the package already is the app, as one top-level `.wasm` file.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use futures::FutureExt as _;
use futures::future::BoxFuture;

use super::{BuildContext, Stager};

/// Stages a directory holding exactly one top-level `*.wasm` (a raw `.wasm` upload arrives as
/// such a directory). Other files are ignored.
pub(crate) struct WasmStager;

impl Stager for WasmStager {
    fn name(&self) -> &'static str {
        "wasm"
    }

    fn detect(&self, dir: &Path) -> bool {
        // Two candidates would make the choice a guess; refuse rather than run the wrong one.
        matches!(wasm_files(dir).as_deref(), Ok([_]))
    }

    fn build<'a>(&'a self, ctx: &'a BuildContext) -> BoxFuture<'a, anyhow::Result<PathBuf>> {
        async move {
            ctx.log.out("-----> Prebuilt WebAssembly detected").await;
            let files = wasm_files(&ctx.app_dir)
                .with_context(|| format!("failed to list {}", ctx.app_dir.display()))?;
            match files.as_slice() {
                [only] => Ok(only.clone()),
                _ => anyhow::bail!(
                    "expected exactly one .wasm file at the top of the package, found {}",
                    files.len()
                ),
            }
        }
        .boxed()
    }
}

/// The regular `*.wasm` files directly in `dir`.
fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let is_wasm = entry
            .path()
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("wasm"));
        if is_wasm && entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::BuildLog;

    #[tokio::test]
    async fn builds_by_returning_the_only_wasm_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hello.wasm"), b"\0asm").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        let (log, mut lines) = BuildLog::channel();
        let ctx = BuildContext {
            app_dir: dir.path().to_path_buf(),
            cache_dir: dir.path().join("cache"),
            timeout: std::time::Duration::from_secs(1),
            log,
        };
        assert!(WasmStager.detect(dir.path()));
        let built = WasmStager.build(&ctx).await.unwrap();
        assert_eq!(built, dir.path().join("hello.wasm"));
        let first = lines.recv().await.unwrap();
        assert!(first.text.contains("Prebuilt WebAssembly"), "{first:?}");
    }
}
