//! The Rust stager: builds a crate with `cargo build --release` for `wasm32-wasip2` (a
//! component: an HTTP handler from a `cdylib`, or a command from a binary), or for
//! `wasm32-wasip1` when the crate's `.cargo/config.toml` says so (a command module, which
//! validation turns into a component). Commands are served the WAGI way.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use serde::Deserialize;

use super::command;
use super::{BuildContext, Stager};

/// The target built unless the crate's `.cargo/config.toml` names another.
const DEFAULT_TARGET: &str = "wasm32-wasip2";
/// The targets a crate may choose.
const TARGETS: &[&str] = &["wasm32-wasip2", "wasm32-wasip1"];
/// The only variables a build inherits from the stager: where the toolchain is and which one.
const KEPT_ENV: &[&str] = &["PATH", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN"];

/// Stages a directory with a `Cargo.toml`.
pub(crate) struct RustStager;

impl Stager for RustStager {
    fn name(&self) -> &'static str {
        "rust"
    }

    fn detect(&self, dir: &Path) -> bool {
        dir.join("Cargo.toml").is_file()
    }

    fn build<'a>(&'a self, ctx: &'a BuildContext) -> BoxFuture<'a, anyhow::Result<PathBuf>> {
        build(ctx).boxed()
    }
}

async fn build(ctx: &BuildContext) -> anyhow::Result<PathBuf> {
    ctx.log.out("-----> Rust app detected").await;
    let target = target(&ctx.app_dir)?;
    // Per-app target dir: dependencies compiled for one staging are reused by the next.
    let target_dir = ctx.cache_dir.join("target");
    ctx.make_dir(&target_dir).await?;
    // Cargo's own home (registry and git caches) is per app too: the build user may write
    // there, and one tenant's downloads never feed another's build.
    let cargo_home = ctx.cache_dir.join("cargo");
    ctx.make_dir(&cargo_home).await?;

    let mut cargo = command::scrubbed_command("cargo", ctx, KEPT_ENV);
    cargo
        .args(["build", "--release", "--target", target])
        .arg("--message-format=json-render-diagnostics")
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("CARGO_HOME", &cargo_home)
        .env("CARGO_TERM_COLOR", "never");
    ctx.log
        .out(format!(
            "-----> Running cargo build --release --target {target}"
        ))
        .await;

    let mut artifacts = Vec::new();
    command::run_step(cargo, ctx, "the Rust build", |line| {
        match parse_line(line) {
            Line::Artifacts(paths) => {
                artifacts.extend(paths);
                None
            }
            Line::OtherMessage => None,
            Line::Text => Some(line.to_string()),
        }
    })
    .await?;
    single_wasm(artifacts)
}

/// The target the crate asks for in `.cargo/config.toml` (`[build] target`), or the default.
fn target(dir: &Path) -> anyhow::Result<&'static str> {
    let path = dir.join(".cargo").join("config.toml");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(DEFAULT_TARGET),
        Err(error) => return Err(error).context("failed to read .cargo/config.toml"),
    };
    let config: toml::Table = text
        .parse()
        .map_err(|error| anyhow::anyhow!(".cargo/config.toml is not valid TOML: {error}"))?;
    let Some(wanted) = config.get("build").and_then(|build| build.get("target")) else {
        return Ok(DEFAULT_TARGET);
    };
    let wanted = wanted.as_str().unwrap_or_default();
    TARGETS
        .iter()
        .find(|target| **target == wanted)
        .copied()
        .with_context(|| {
            format!(
                ".cargo/config.toml builds for {wanted:?}; Nimbus runs {}",
                TARGETS.join(" or ")
            )
        })
}

/// The one wasm the build produced, or why there is not exactly one.
fn single_wasm(mut artifacts: Vec<PathBuf>) -> anyhow::Result<PathBuf> {
    artifacts.sort();
    artifacts.dedup();
    match artifacts.len() {
        1 => Ok(artifacts.remove(0)),
        0 => bail!(
            "the build produced no .wasm file: the crate needs a library with \
             crate-type = [\"cdylib\"] or a binary target"
        ),
        _ => {
            let names: Vec<String> = artifacts
                .iter()
                .filter_map(|path| path.file_name())
                .map(|name| name.to_string_lossy().into_owned())
                .collect();
            bail!(
                "the build produced several .wasm files ({}): push a single crate per app",
                names.join(", ")
            )
        }
    }
}

/// What one line of cargo's stdout was.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A `compiler-artifact` of a cdylib or binary target: its `.wasm` files.
    Artifacts(Vec<PathBuf>),
    /// Any other JSON message (dependencies' artifacts, build scripts, `build-finished`).
    OtherMessage,
    /// Not JSON: show it to the developer.
    Text,
}

#[derive(Deserialize)]
struct CargoMessage {
    reason: String,
    #[serde(default)]
    target: Option<CargoTarget>,
    #[serde(default)]
    filenames: Vec<PathBuf>,
}

#[derive(Deserialize)]
struct CargoTarget {
    #[serde(default)]
    kind: Vec<String>,
}

fn parse_line(line: &str) -> Line {
    let Ok(message) = serde_json::from_str::<CargoMessage>(line) else {
        return Line::Text;
    };
    let runnable = message
        .target
        .as_ref()
        .is_some_and(|t| t.kind.iter().any(|k| k == "cdylib" || k == "bin"));
    if message.reason != "compiler-artifact" || !runnable {
        return Line::OtherMessage;
    }
    Line::Artifacts(
        message
            .filenames
            .into_iter()
            .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_wasm_of_a_cdylib_artifact() {
        let line = r#"{"reason":"compiler-artifact","package_id":"path+file:///x#hello@0.1.0","target":{"kind":["cdylib"],"crate_types":["cdylib"],"name":"hello"},"filenames":["/t/wasm32-wasip2/release/hello.wasm"],"executable":null,"fresh":false}"#;
        assert_eq!(
            parse_line(line),
            Line::Artifacts(vec![PathBuf::from("/t/wasm32-wasip2/release/hello.wasm")])
        );
    }

    #[test]
    fn ignores_dependency_artifacts_and_other_messages() {
        let dep = r#"{"reason":"compiler-artifact","target":{"kind":["lib"]},"filenames":["/t/deps/libserde.rlib"]}"#;
        assert_eq!(parse_line(dep), Line::OtherMessage);
        let done = r#"{"reason":"build-finished","success":true}"#;
        assert_eq!(parse_line(done), Line::OtherMessage);
        assert_eq!(parse_line("warning: something"), Line::Text);
    }

    #[test]
    fn builds_for_the_target_the_crate_chooses() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(target(dir.path()).unwrap(), "wasm32-wasip2");
        std::fs::create_dir(dir.path().join(".cargo")).unwrap();
        let config = dir.path().join(".cargo/config.toml");
        std::fs::write(&config, "[build]\ntarget = \"wasm32-wasip1\"\n").unwrap();
        assert_eq!(target(dir.path()).unwrap(), "wasm32-wasip1");
        std::fs::write(&config, "[build]\njobs = 2\n").unwrap();
        assert_eq!(target(dir.path()).unwrap(), "wasm32-wasip2");
        std::fs::write(&config, "[build]\ntarget = \"x86_64-unknown-linux-gnu\"\n").unwrap();
        let error = target(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("Nimbus runs wasm32-wasip2 or wasm32-wasip1"),
            "{error}"
        );
        std::fs::write(&config, "[build").unwrap();
        assert!(
            target(dir.path())
                .unwrap_err()
                .to_string()
                .contains("not valid TOML")
        );
    }

    #[test]
    fn requires_exactly_one_wasm() {
        let one = PathBuf::from("/t/a.wasm");
        assert_eq!(single_wasm(vec![one.clone(), one.clone()]).unwrap(), one);
        let none = single_wasm(vec![]).unwrap_err().to_string();
        assert!(none.contains("cdylib"), "{none}");
        let two = single_wasm(vec![one, PathBuf::from("/t/b.wasm")])
            .unwrap_err()
            .to_string();
        assert!(two.contains("a.wasm, b.wasm"), "{two}");
    }
}
