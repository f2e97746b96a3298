//! `nimbus apps` and `nimbus app NAME`.

use nimbus_protocol::api::{App, Instance};
use nimbus_protocol::messages::AppEvent;

use crate::client::Client;
use crate::output;

pub async fn list(client: &Client, json: bool) -> anyhow::Result<()> {
    let apps = client.apps().await?;
    if json {
        return output::json(&apps);
    }
    if apps.is_empty() {
        println!("No apps yet. Push one with `nimbus push NAME -p PATH`.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|app| {
            vec![
                app.name.clone(),
                state(app),
                instances(app),
                app.urls.join(", "),
            ]
        })
        .collect();
    output::table(&["name", "state", "instances", "url"], &rows);
    Ok(())
}

pub async fn show(client: &Client, name: &str, json: bool) -> anyhow::Result<()> {
    let app = client.app(name).await?;
    let instances = client.instances(name).await?;
    if json {
        return output::json(&serde_json::json!({ "app": app, "instances": instances }));
    }
    let droplet = match &app.droplet {
        Some(d) => format!(
            "{} ({}, {})",
            &d.sha256[..12],
            d.language,
            output::bytes(d.size)
        ),
        None => "none (push bits first)".to_string(),
    };
    let rows = [
        ("name", app.name.clone()),
        ("state", state(&app)),
        ("instances", self::instances(&app)),
        ("memory", format!("{} MB", app.limits.memory_mb)),
        ("timeout", format!("{} ms", app.limits.timeout_ms)),
        (
            "fuel",
            app.limits
                .fuel
                .map_or("DEA default".to_string(), |f| f.to_string()),
        ),
        (
            "requests",
            format!(
                "{} at once per instance, bodies up to {}",
                app.limits.max_concurrency,
                output::bytes(app.limits.max_body_bytes)
            ),
        ),
        (
            "egress",
            if app.allowed_outbound_hosts.is_empty() {
                "none".to_string()
            } else {
                app.allowed_outbound_hosts.join(", ")
            },
        ),
        (
            "health",
            app.health_check_http_endpoint
                .as_ref()
                .map_or("instantiates".to_string(), |e| format!("GET {e}")),
        ),
        ("urls", app.urls.join(", ")),
        ("droplet", droplet),
        ("id", app.id.to_string()),
    ];
    for (key, value) in rows {
        println!("{:<10} {value}", format!("{key}:"));
    }
    if !instances.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = instances.iter().map(instance_row).collect();
        output::table(
            &[
                "instance",
                "state",
                "crashes",
                "since (UTC)",
                "address",
                "dea",
                "version",
            ],
            &rows,
        );
        for i in instances.iter().filter(|i| i.last_crash.is_some()) {
            let restart = i
                .restart_at
                .map(|at| format!(" (restarts at {} UTC)", output::clock(at)))
                .unwrap_or_default();
            println!(
                "#{} last crashed: {}{restart}",
                i.index,
                i.last_crash.as_deref().unwrap_or_default()
            );
        }
    }
    Ok(())
}

fn instance_row(i: &Instance) -> Vec<String> {
    let dash = || "-".to_string();
    let address = match (&i.host, i.port) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        _ => dash(),
    };
    vec![
        format!("#{}", i.index),
        format!("{:?}", i.state).to_uppercase(),
        i.crash_count.to_string(),
        i.since.map_or_else(dash, output::clock),
        address,
        i.dea.clone().unwrap_or_else(dash),
        if i.current { "current" } else { "previous" }.to_string(),
    ]
}

pub async fn events(client: &Client, name: &str, json: bool) -> anyhow::Result<()> {
    let events: Vec<AppEvent> = client.get(&format!("/v1/apps/{name}/events")).await?;
    if json {
        return output::json(&events);
    }
    if events.is_empty() {
        println!("No events for {name}.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let instance = e
                .instance_index
                .map_or("-".to_string(), |i| format!("#{i}"));
            vec![
                output::clock(e.timestamp),
                instance,
                e.reason.clone(),
                e.description.clone(),
            ]
        })
        .collect();
    output::table(&["time (UTC)", "instance", "event", "description"], &rows);
    Ok(())
}

pub async fn download_droplet(
    client: &Client,
    name: &str,
    output: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let wasm = client
        .get_bytes(&format!("/v1/apps/{name}/droplet"))
        .await?;
    let path = output.unwrap_or_else(|| format!("{name}.wasm").into());
    std::fs::write(&path, &wasm)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    println!(
        "Saved the droplet of {name} ({}) to {}",
        output::bytes(wasm.len() as u64),
        path.display()
    );
    Ok(())
}

fn state(app: &App) -> String {
    format!("{:?}", app.state).to_lowercase()
}

fn instances(app: &App) -> String {
    format!("{}/{}", app.running_instances, app.instances)
}
