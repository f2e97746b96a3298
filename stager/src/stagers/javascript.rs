//! The JavaScript stager: componentize-js turns one ES module with a `fetch` event handler
//! into a wasi:http component embedding StarlingMonkey. The entry point is `package.json`'s
//! `main`, else `app.js`. npm dependencies are not bundled yet, so a package declaring any is
//! refused with a message saying so rather than failing later on an unresolved import.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use serde::Deserialize;

use super::assets::{JS_BUILD, JS_WIT};
use super::command;
use super::{BuildContext, Stager};

/// The variables node inherits.
const KEPT_ENV: &[&str] = &["PATH", "LANG"];

/// Stages a directory with a `package.json` or an `app.js`.
pub(crate) struct JavaScriptStager;

impl Stager for JavaScriptStager {
    fn name(&self) -> &'static str {
        "javascript"
    }

    fn detect(&self, dir: &Path) -> bool {
        dir.join("package.json").is_file() || dir.join("app.js").is_file()
    }

    fn build<'a>(&'a self, ctx: &'a BuildContext) -> BoxFuture<'a, anyhow::Result<PathBuf>> {
        build(ctx).boxed()
    }
}

#[derive(Deserialize, Default)]
struct PackageJson {
    main: Option<String>,
    #[serde(default)]
    dependencies: serde_json::Map<String, serde_json::Value>,
}

async fn build(ctx: &BuildContext) -> anyhow::Result<PathBuf> {
    ctx.log.out("-----> JavaScript app detected").await;
    let entry = entry_point(&ctx.app_dir)?;
    let mut node = command::scrubbed_command("node", ctx, KEPT_ENV);
    node.arg(ctx.assets_dir.join(JS_BUILD))
        .arg(&entry)
        .arg(ctx.assets_dir.join(JS_WIT))
        .arg(&ctx.output)
        .env("NIMBUS_JS_TOOLCHAIN", &ctx.js_toolchain);
    ctx.log
        .out(format!("-----> Running componentize-js on {entry}"))
        .await;
    command::run_step(node, ctx, "the JavaScript build", command::show).await?;
    Ok(ctx.output.clone())
}

/// The module to componentize, relative to the app directory, checked to stay inside it.
fn entry_point(dir: &Path) -> anyhow::Result<String> {
    let manifest = dir.join("package.json");
    let package: PackageJson = if manifest.is_file() {
        let text = std::fs::read(&manifest).context("failed to read package.json")?;
        serde_json::from_slice(&text)
            .map_err(|error| anyhow::anyhow!("package.json is not valid JSON: {error}"))?
    } else {
        PackageJson::default()
    };
    if !package.dependencies.is_empty() {
        let names: Vec<&str> = package.dependencies.keys().map(String::as_str).collect();
        bail!(
            "package.json declares npm dependencies ({}), which the JavaScript stager does not \
             bundle yet: push a single module using web APIs only",
            names.join(", ")
        );
    }
    let entry = package.main.unwrap_or_else(|| "app.js".to_string());
    let relative = Path::new(&entry);
    let inside = relative.components().all(|part| {
        matches!(
            part,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    });
    if !inside {
        bail!("package.json's main ({entry}) must be a path inside the package");
    }
    if !dir.join(relative).is_file() {
        bail!("the entry point {entry} does not exist (set package.json's main, or add app.js)");
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn finds_the_entry_point() {
        let plain = app(&[("app.js", "")]);
        assert_eq!(entry_point(plain.path()).unwrap(), "app.js");
        let main = app(&[
            ("package.json", r#"{"main":"server.js"}"#),
            ("server.js", ""),
        ]);
        assert_eq!(entry_point(main.path()).unwrap(), "server.js");
    }

    #[test]
    fn refuses_what_it_cannot_build() {
        let deps = app(&[
            ("package.json", r#"{"dependencies":{"express":"4"}}"#),
            ("app.js", ""),
        ]);
        let error = entry_point(deps.path()).unwrap_err().to_string();
        assert!(error.contains("npm dependencies (express)"), "{error}");
        let outside = app(&[("package.json", r#"{"main":"../x.js"}"#)]);
        let error = entry_point(outside.path()).unwrap_err().to_string();
        assert!(error.contains("inside the package"), "{error}");
        let missing = app(&[("package.json", "{}")]);
        let error = entry_point(missing.path()).unwrap_err().to_string();
        assert!(error.contains("app.js does not exist"), "{error}");
        let broken = app(&[("package.json", "{")]);
        let error = entry_point(broken.path()).unwrap_err().to_string();
        assert!(error.contains("not valid JSON"), "{error}");
    }
}
