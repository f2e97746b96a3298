//! The Python stager: componentize-py turns `app.py` (a class `IncomingHandler` implementing
//! `wasi:http/incoming-handler`) into a component embedding CPython. Pure-Python packages named
//! in `requirements.txt` are installed with pip into a per-app cache (keyed by the file's
//! hash, so a restage with the same requirements reuses them) and bundled.

use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use sha2::{Digest as _, Sha256};

use super::assets::PYTHON_WIT;
use super::command;
use super::{BuildContext, Stager};

/// The world the app implements (wasmtime 48's WASI 0.2.12).
const WORLD: &str = "wasi:http/proxy@0.2.12";
/// The Python inside the component, which bundled packages must suit.
const GUEST_PYTHON: &str = "3.14";
/// The variables the tools inherit: where they are (pyenv needs its root).
const KEPT_ENV: &[&str] = &["PATH", "PYENV_ROOT", "PYENV_VERSION", "LANG"];

/// Stages a directory with `app.py` (or a `requirements.txt`, which then needs `app.py`).
pub(crate) struct PythonStager;

impl Stager for PythonStager {
    fn name(&self) -> &'static str {
        "python"
    }

    fn detect(&self, dir: &Path) -> bool {
        dir.join("app.py").is_file() || dir.join("requirements.txt").is_file()
    }

    fn build<'a>(&'a self, ctx: &'a BuildContext) -> BoxFuture<'a, anyhow::Result<PathBuf>> {
        build(ctx).boxed()
    }
}

async fn build(ctx: &BuildContext) -> anyhow::Result<PathBuf> {
    ctx.log.out("-----> Python app detected").await;
    if !ctx.app_dir.join("app.py").is_file() {
        bail!(
            "a Python app needs an app.py defining class IncomingHandler at the top of the package"
        );
    }
    let packages = install_requirements(ctx).await?;
    let isolated = empty_virtualenv(ctx).await?;

    let mut componentize = command::scrubbed_command("componentize-py", ctx, KEPT_ENV);
    componentize
        .arg("-d")
        .arg(ctx.assets_dir.join(PYTHON_WIT))
        .args(["-w", WORLD, "componentize", "-p", "."]);
    if let Some(packages) = &packages {
        componentize.arg("-p").arg(packages);
    }
    componentize
        .arg("app")
        .arg("-o")
        .arg(&ctx.output)
        // Without this, componentize-py bundles the stager's own site-packages.
        .env("VIRTUAL_ENV", &isolated)
        // Python errors are what the developer needs, not the tool's Rust backtrace.
        .env("RUST_BACKTRACE", "0")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    ctx.log
        .out(format!(
            "-----> Running componentize-py ({WORLD}, CPython {GUEST_PYTHON})"
        ))
        .await;
    command::run_step(componentize, ctx, "the Python build", command::show).await?;
    Ok(ctx.output.clone())
}

/// Installs `requirements.txt` (pure-Python wheels for the guest's Python) into the app's
/// cache, once per distinct file, and returns where; `None` without requirements.
async fn install_requirements(ctx: &BuildContext) -> anyhow::Result<Option<PathBuf>> {
    let requirements = ctx.app_dir.join("requirements.txt");
    let text = match tokio::fs::read(&requirements).await {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).context("failed to read requirements.txt"),
    };
    let digest = format!("{:x}", Sha256::digest(&text));
    let target = ctx.cache_dir.join("python").join(&digest[..16]);
    if target.join(".complete").is_file() {
        ctx.log
            .out("-----> Reusing the packages installed for the same requirements.txt")
            .await;
        return Ok(Some(target));
    }
    // A half-finished install from a failed build must not be mistaken for a complete one.
    let _ = tokio::fs::remove_dir_all(&target).await;
    ctx.make_dir(&target).await?;
    let mut pip = command::scrubbed_command("python3", ctx, KEPT_ENV);
    pip.args([
        "-m",
        "pip",
        "install",
        "--no-input",
        "--disable-pip-version-check",
    ])
    .args([
        "--only-binary=:all:",
        "--platform",
        "any",
        "--implementation",
        "py",
    ])
    .args(["--python-version", GUEST_PYTHON, "--target"])
    .arg(&target)
    .args(["-r", "requirements.txt"]);
    ctx.log
        .out("-----> Installing requirements.txt (pure-Python wheels)")
        .await;
    command::run_step(
        pip,
        ctx,
        "installing requirements.txt (only pure-Python packages with wheels can be bundled)",
        command::show,
    )
    .await?;
    // The directory belongs to the build user: never follow a link it may have left there.
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(target.join(".complete"))
        .context("failed to mark the packages installed")?;
    Ok(Some(target))
}

/// An empty virtualenv layout for componentize-py, so it bundles only the app and its
/// requirements.
async fn empty_virtualenv(ctx: &BuildContext) -> anyhow::Result<PathBuf> {
    let root = ctx.cache_dir.join("python-empty-venv");
    let site = root.join(format!("lib/python{GUEST_PYTHON}/site-packages"));
    tokio::fs::create_dir_all(&site)
        .await
        .with_context(|| format!("failed to create {}", site.display()))?;
    Ok(root)
}
