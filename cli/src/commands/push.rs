//! `nimbus push NAME -p PATH`: create or update the app, upload its bits, stream staging, start
//! it and wait until it answers through the router, as `cf push` does.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use nimbus_protocol::api::{App, AppState, CreateApp, Instance, StagingEvent, UpdateApp};
use nimbus_protocol::messages::Health;
use reqwest::{Method, StatusCode};

use crate::client::{self, Client};
use crate::manifest::{self, PlannedApp};
use crate::output;
use crate::settings::overlay;

/// How long `push` and `start` wait for the app to answer.
const SERVE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the staging log may stay quiet before `push` prints a progress line.
const QUIET_PROGRESS: Duration = Duration::from_secs(5);

/// Which apps to push from what: the command line, a manifest, or both (flags win).
pub fn plan(
    name: Option<String>,
    path: Option<PathBuf>,
    manifest: Option<PathBuf>,
    flags: UpdateApp,
) -> anyhow::Result<Vec<PlannedApp>> {
    let manifest = manifest.or_else(|| {
        let dir = path
            .as_deref()
            .filter(|p| p.is_dir())
            .unwrap_or(Path::new("."));
        Some(dir.join("manifest.yml")).filter(|f| f.is_file())
    });
    let planned = match &manifest {
        Some(file) => manifest::load(file)?,
        None => Vec::new(),
    };
    let Some(name) = name else {
        if planned.is_empty() {
            bail!("name the app to push (`nimbus push NAME -p PATH`) or give a manifest.yml");
        }
        return Ok(planned
            .into_iter()
            .map(|app| PlannedApp {
                settings: overlay(app.settings, flags.clone()),
                ..app
            })
            .collect());
    };
    let from_manifest = planned.into_iter().find(|app| app.name == name);
    let path = path
        .or_else(|| from_manifest.as_ref().map(|app| app.path.clone()))
        .unwrap_or_else(|| PathBuf::from("."));
    let settings = overlay(
        from_manifest.map(|app| app.settings).unwrap_or_default(),
        flags,
    );
    Ok(vec![PlannedApp {
        name,
        path,
        settings,
    }])
}

/// Pushes one app: create or update it, stage its bits, start it, wait until it serves.
pub async fn push(client: &Client, planned: &PlannedApp) -> anyhow::Result<()> {
    let began = Instant::now();
    let (name, settings) = (planned.name.as_str(), &planned.settings);
    nimbus_protocol::api::validate_app_name(name).map_err(anyhow::Error::msg)?;
    let package = crate::package::pack(&planned.path)?;

    let app = match client.find_app(name).await? {
        None => {
            println!("Creating app {name}");
            let create = CreateApp {
                name: name.to_string(),
                instances: settings.instances,
                memory_mb: settings.memory_mb,
                timeout_ms: settings.timeout_ms,
                fuel: settings.fuel,
                max_concurrency: settings.max_concurrency,
                max_body_bytes: settings.max_body_bytes,
                allowed_outbound_hosts: settings.allowed_outbound_hosts.clone(),
                env: settings.env.clone(),
                health_check_http_endpoint: settings.health_check_http_endpoint.clone(),
            };
            client
                .call::<_, App>(Method::POST, "/v1/apps", &create)
                .await?
        }
        Some(_) if *settings != UpdateApp::default() => {
            println!("Updating app {name}");
            client
                .call::<_, App>(Method::PATCH, &format!("/v1/apps/{name}"), settings)
                .await?
        }
        Some(app) => {
            println!("Updating app {name}");
            app
        }
    };

    println!(
        "Uploading {} ({})",
        planned.path.display(),
        output::bytes(package.len() as u64)
    );
    stage(client, name, package).await?;

    let app = if app.state == AppState::Started {
        client.app(name).await?
    } else {
        client
            .call::<_, App>(Method::POST, &format!("/v1/apps/{name}/start"), &())
            .await?
    };
    println!("Starting {} instance(s)", app.instances);
    wait_until_serving(client, &app).await?;
    println!();
    println!(
        "{name} is running at {} (pushed in {:.1}s)",
        app.urls.join(", "),
        began.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Uploads the package and prints the staging log as it streams, each line with the time since
/// staging began, and a progress line whenever the build is quiet for a while (compiling a
/// Python or JavaScript app prints nothing for seconds); fails if staging failed.
async fn stage(client: &Client, name: &str, package: Vec<u8>) -> anyhow::Result<()> {
    let started = Instant::now();
    let response = client.upload_bits(name, package).await?;
    let mut body = response.bytes_stream();
    let mut pending = Vec::new();
    let elapsed = || format!("[{:>5.1}s]", started.elapsed().as_secs_f64());
    loop {
        let chunk = match tokio::time::timeout(QUIET_PROGRESS, body.next()).await {
            Err(_) => {
                println!("   {} ... still staging", elapsed());
                continue;
            }
            Ok(None) => break,
            Ok(Some(chunk)) => chunk,
        };
        pending.extend_from_slice(&chunk.context("the staging stream broke off")?);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let event: StagingEvent = serde_json::from_slice(&line)
                .context("the API sent a staging event this CLI does not understand")?;
            match event {
                StagingEvent::Log { line } => {
                    println!("   {} {line}", elapsed());
                    std::io::stdout().flush()?;
                }
                StagingEvent::Staged {
                    droplet,
                    reused,
                    duration_ms,
                } => {
                    let how = if reused {
                        "unchanged bits: reusing the droplet".to_string()
                    } else {
                        format!("staged in {:.1}s", duration_ms as f64 / 1000.0)
                    };
                    println!(
                        "Droplet {} ({} {}, {}): {how}",
                        &droplet.sha256[..12],
                        droplet.language,
                        droplet.kind,
                        output::bytes(droplet.size)
                    );
                    return Ok(());
                }
                StagingEvent::Failed { message } => bail!("staging failed: {message}"),
            }
        }
    }
    bail!("the staging stream ended without a result")
}

/// Waits until an instance of the app's current version runs and the router serves it.
pub async fn wait_until_serving(client: &Client, app: &App) -> anyhow::Result<()> {
    let deadline = Instant::now() + SERVE_TIMEOUT;
    let http = client::http_client()?;
    let url = app.urls.first().context("the app has no route")?;
    while Instant::now() < deadline {
        let instances: Vec<Instance> = client.instances(&app.name).await?;
        let running = instances
            .iter()
            .any(|i| i.current && i.state == Health::Running);
        if running && answers(&http, url).await {
            return Ok(());
        }
        // Restarts of a crash loop are backed off: waiting longer would not help.
        if let Some(flapping) = instances
            .iter()
            .find(|i| i.current && i.state == Health::Flapping)
        {
            bail!(
                "{} keeps crashing (instance {}, {} crashes): {}\nSee `nimbus events {}` and `nimbus logs {} --recent`",
                app.name,
                flapping.index,
                flapping.crash_count,
                flapping.last_crash.as_deref().unwrap_or("no reason given"),
                app.name,
                app.name
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "{} did not start serving within {}s: see `nimbus logs {} --recent`",
        app.name,
        SERVE_TIMEOUT.as_secs(),
        app.name
    )
}

/// Whether the app itself answered (router errors mean it is not routed yet).
async fn answers(http: &reqwest::Client, url: &str) -> bool {
    match http.get(url).timeout(Duration::from_secs(10)).send().await {
        Ok(response) => {
            let routed = response.headers().get("x-nimbus-router-error").is_none();
            routed && response.status() != StatusCode::BAD_GATEWAY
        }
        Err(_) => false,
    }
}
