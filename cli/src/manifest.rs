//! `manifest.yml` in Cloud Foundry's format, plus Nimbus's keys:
//!
//! ```yaml
//! applications:
//! - name: hello
//!   path: .
//!   instances: 2
//!   memory: 64M
//!   timeout: 30s
//!   fuel: 500M
//!   max_concurrency: 16
//!   max_body: 1M
//!   allowed_outbound_hosts: [api.example.com]
//!   health_check_http_endpoint: /health   # Cloud Foundry's health-check-http-endpoint works too
//!   env: { GREETING: hi }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use nimbus_protocol::api::UpdateApp;
use serde::Deserialize;

use crate::settings::{parse_bytes, parse_count, parse_megabytes, parse_millis};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    applications: Vec<ManifestApp>,
}

/// One entry of `applications`. Sizes accept numbers or strings with units, as in Cloud Foundry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestApp {
    name: String,
    path: Option<PathBuf>,
    instances: Option<u32>,
    memory: Option<Scalar>,
    timeout: Option<Scalar>,
    fuel: Option<Scalar>,
    max_concurrency: Option<u32>,
    max_body: Option<Scalar>,
    allowed_outbound_hosts: Option<Vec<String>>,
    #[serde(alias = "health-check-http-endpoint")]
    health_check_http_endpoint: Option<String>,
    env: Option<BTreeMap<String, Scalar>>,
}

/// A YAML value written as a number or a string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Number(u64),
    Text(String),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Number(n) => n.to_string(),
            Scalar::Text(t) => t.clone(),
        }
    }
}

/// An app as a manifest describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedApp {
    pub name: String,
    /// Relative paths are resolved against the manifest's directory.
    pub path: PathBuf,
    pub settings: UpdateApp,
}

/// Reads a manifest; every app must be valid or nothing is pushed.
pub fn load(file: &Path) -> anyhow::Result<Vec<PlannedApp>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let manifest: Manifest = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{} is not a valid manifest", file.display()))?;
    if manifest.applications.is_empty() {
        bail!("{} lists no applications", file.display());
    }
    let base = file.parent().unwrap_or(Path::new("."));
    manifest
        .applications
        .into_iter()
        .map(|app| plan(app, base).with_context(|| format!("in {}", file.display())))
        .collect()
}

fn plan(app: ManifestApp, base: &Path) -> anyhow::Result<PlannedApp> {
    let field = |value: &Option<Scalar>, parse: fn(&str) -> Result<u64, String>, key: &str| {
        value
            .as_ref()
            .map(|v| parse(&v.text()))
            .transpose()
            .map_err(|e| anyhow::anyhow!("app {}: {key}: {e}", app.name))
    };
    let settings = UpdateApp {
        instances: app.instances,
        memory_mb: field(&app.memory, parse_megabytes, "memory")?,
        timeout_ms: field(&app.timeout, parse_millis, "timeout")?,
        fuel: field(&app.fuel, parse_count, "fuel")?,
        max_concurrency: app.max_concurrency,
        max_body_bytes: field(&app.max_body, parse_bytes, "max_body")?,
        allowed_outbound_hosts: app.allowed_outbound_hosts.clone(),
        health_check_http_endpoint: app.health_check_http_endpoint.clone(),
        env: app
            .env
            .as_ref()
            .map(|env| env.iter().map(|(k, v)| (k.clone(), v.text())).collect()),
    };
    let path = base.join(app.path.as_deref().unwrap_or(Path::new(".")));
    Ok(PlannedApp {
        name: app.name,
        path,
        settings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("manifest.yml");
        std::fs::write(&file, text).unwrap();
        (dir, file)
    }

    #[test]
    fn reads_cloud_foundry_keys_and_nimbus_keys() {
        let (dir, file) = write(
            "applications:\n- name: hello\n  path: app\n  instances: 2\n  memory: 64M\n  timeout: 5s\n  \
             fuel: 500M\n  max_body: 1M\n  allowed_outbound_hosts: [api.example.com]\n  env: {A: 1, B: two}\n",
        );
        let apps = load(&file).unwrap();
        assert_eq!(apps.len(), 1);
        let app = &apps[0];
        assert_eq!(
            (app.name.as_str(), app.path.clone()),
            ("hello", dir.path().join("app"))
        );
        let s = &app.settings;
        assert_eq!(
            (s.instances, s.memory_mb, s.timeout_ms),
            (Some(2), Some(64), Some(5000))
        );
        assert_eq!(
            (s.fuel, s.max_body_bytes),
            (Some(500_000_000), Some(1 << 20))
        );
        assert_eq!(s.env.as_ref().unwrap()["A"], "1");
    }

    #[test]
    fn bad_manifests_say_what_is_wrong() {
        let (_dir, file) = write("applications:\n- name: a\n  memory: lots\n");
        let err = format!("{:#}", load(&file).unwrap_err());
        assert!(err.contains("memory") && err.contains("lots"), "{err}");
        let (_dir, file) = write("applications:\n- name: a\n  colour: red\n");
        assert!(load(&file).is_err());
        let (_dir, file) = write("applications: []\n");
        assert!(format!("{:#}", load(&file).unwrap_err()).contains("no applications"));
    }
}
