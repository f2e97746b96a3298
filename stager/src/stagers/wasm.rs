//! The prebuilt stager: the package already is the app, as one top-level `.wasm` file (a raw
//! `.wasm` upload arrives as such a directory) or one `.wat` file, which it assembles.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use futures::FutureExt as _;
use futures::future::BoxFuture;

use super::{BuildContext, Stager};

/// Stages a directory holding exactly one top-level `*.wasm` or `*.wat`. Other files are
/// ignored.
pub(crate) struct WasmStager;

impl Stager for WasmStager {
    fn name(&self) -> &'static str {
        "wasm"
    }

    fn detect(&self, dir: &Path) -> bool {
        // Two candidates would make the choice a guess; refuse rather than run the wrong one.
        matches!(candidates(dir).as_deref(), Ok([_]))
    }

    fn build<'a>(&'a self, ctx: &'a BuildContext) -> BoxFuture<'a, anyhow::Result<PathBuf>> {
        build(ctx).boxed()
    }
}

async fn build(ctx: &BuildContext) -> anyhow::Result<PathBuf> {
    let files = candidates(&ctx.app_dir)
        .with_context(|| format!("failed to list {}", ctx.app_dir.display()))?;
    let [only] = files.as_slice() else {
        anyhow::bail!(
            "expected exactly one .wasm or .wat file at the top of the package, found {}",
            files.len()
        );
    };
    if !has_extension(only, "wat") {
        ctx.log.out("-----> Prebuilt WebAssembly detected").await;
        return Ok(only.clone());
    }
    ctx.log
        .out("-----> WebAssembly text detected: assembling it")
        .await;
    let name = only
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let source = only.clone();
    let wasm = tokio::task::spawn_blocking(move || wat::parse_file(&source))
        .await
        .context("the assembler task failed")?
        // The wat crate's message names the line and column, with the offending text.
        .map_err(|error| anyhow::anyhow!("{name} is not valid WebAssembly text: {error}"))?;
    let output = &ctx.output;
    tokio::fs::write(output, wasm)
        .await
        .with_context(|| format!("failed to write {}", output.display()))?;
    Ok(output.clone())
}

fn has_extension(path: &Path, extension: &str) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case(extension))
}

/// The regular `*.wasm` and `*.wat` files directly in `dir`.
fn candidates(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let wasm = has_extension(&path, "wasm") || has_extension(&path, "wat");
        if wasm && entry.file_type()?.is_file() {
            files.push(path);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn builds_by_returning_the_only_wasm_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hello.wasm"), b"\0asm").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        let (ctx, mut lines) = BuildContext::for_test(dir.path(), Duration::from_secs(1));
        assert!(WasmStager.detect(dir.path()));
        let built = WasmStager.build(&ctx).await.unwrap();
        assert_eq!(built, dir.path().join("hello.wasm"));
        let first = lines.recv().await.unwrap();
        assert!(first.text.contains("Prebuilt WebAssembly"), "{first:?}");
    }

    #[tokio::test]
    async fn assembles_webassembly_text() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("app.wat"),
            "(module (func (export \"_start\")))",
        )
        .unwrap();
        let (ctx, _lines) = BuildContext::for_test(dir.path(), Duration::from_secs(1));
        let built = WasmStager.build(&ctx).await.unwrap();
        assert!(std::fs::read(built).unwrap().starts_with(b"\0asm"));

        std::fs::write(dir.path().join("app.wat"), "(module (func (export oops)))").unwrap();
        let error = WasmStager.build(&ctx).await.unwrap_err().to_string();
        assert!(
            error.contains("app.wat is not valid WebAssembly text"),
            "{error}"
        );
    }
}
