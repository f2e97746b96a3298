//! The C stager: compiles the package's top-level `.c` files with clang for `wasm32-wasi` (WASI
//! p1, against Debian's wasi-libc) into a command module, which validation turns into a WAGI
//! component: the program reads the request from CGI variables and stdin and prints the
//! response.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use futures::FutureExt as _;
use futures::future::BoxFuture;

use super::command;
use super::{BuildContext, Stager};

/// The only variables the compiler inherits from the stager.
const KEPT_ENV: &[&str] = &["PATH"];

/// Stages a directory with `.c` files at its top.
pub(crate) struct CStager;

impl Stager for CStager {
    fn name(&self) -> &'static str {
        "c"
    }

    fn detect(&self, dir: &Path) -> bool {
        sources(dir).is_ok_and(|sources| !sources.is_empty())
    }

    fn build<'a>(&'a self, ctx: &'a BuildContext) -> BoxFuture<'a, anyhow::Result<PathBuf>> {
        build(ctx).boxed()
    }
}

async fn build(ctx: &BuildContext) -> anyhow::Result<PathBuf> {
    let sources = sources(&ctx.app_dir)
        .with_context(|| format!("failed to list {}", ctx.app_dir.display()))?;
    let names: Vec<String> = sources
        .iter()
        .filter_map(|path| path.file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    ctx.log
        .out(format!("-----> C app detected ({})", names.join(", ")))
        .await;
    let mut clang = command::scrubbed_command("clang", ctx, KEPT_ENV);
    clang
        .args(["--target=wasm32-wasi", "-O2", "-Wall", "-Wl,--strip-all"])
        .args(&names)
        .arg("-o")
        .arg(&ctx.output);
    ctx.log
        .out(format!(
            "-----> Running clang --target=wasm32-wasi -O2 {}",
            names.join(" ")
        ))
        .await;
    command::run_step(clang, ctx, "the C build", command::show).await?;
    Ok(ctx.output.clone())
}

/// The regular `*.c` files directly in `dir`, sorted so builds are reproducible.
fn sources(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "c") && entry.file_type()?.is_file() {
            sources.push(path);
        }
    }
    sources.sort();
    Ok(sources)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn clang_available() -> bool {
        std::process::Command::new("clang")
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success())
    }

    #[tokio::test]
    async fn compiles_c_into_a_wasi_module_and_reports_compile_errors() {
        if !clang_available() {
            // scripts/setup installs clang; CI runs it first.
            panic!("clang is not installed: run scripts/setup");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("main.c"),
            "#include <stdio.h>\nint main(void) { printf(\"Content-Type: text/plain\\n\\nhi\\n\"); return 0; }\n",
        )
        .unwrap();
        let (ctx, _lines) = BuildContext::for_test(dir.path(), Duration::from_secs(60));
        assert!(CStager.detect(dir.path()));
        let built = CStager.build(&ctx).await.unwrap();
        let wasm = std::fs::read(built).unwrap();
        assert_eq!(&wasm[..8], b"\0asm\x01\0\0\0", "a core module");

        std::fs::write(
            dir.path().join("main.c"),
            "int main(void) { return nope; }\n",
        )
        .unwrap();
        let error = CStager.build(&ctx).await.unwrap_err().to_string();
        assert!(error.contains("the C build failed"), "{error}");
        assert!(error.contains("nope"), "{error}");
    }
}
