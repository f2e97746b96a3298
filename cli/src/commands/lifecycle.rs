//! `nimbus start`, `stop` and `delete`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use nimbus_protocol::api::{App, UpdateApp};
use reqwest::Method;

use crate::client::Client;

pub async fn start(client: &Client, name: &str) -> anyhow::Result<()> {
    let app: App = client
        .call(Method::POST, &format!("/v1/apps/{name}/start"), &())
        .await?;
    crate::commands::push::wait_until_serving(client, &app).await?;
    println!("{name} is running at {}", app.urls.join(", "));
    Ok(())
}

pub async fn scale(client: &Client, name: &str, settings: UpdateApp) -> anyhow::Result<()> {
    if settings == UpdateApp::default() {
        anyhow::bail!(
            "nothing to change: give -i, -m, --timeout, --fuel, --max-concurrency, --max-body, --allow-host or -e"
        );
    }
    let app: App = client
        .call(Method::PATCH, &format!("/v1/apps/{name}"), &settings)
        .await?;
    println!(
        "{name}: {} instance(s), {} MB, timeout {} ms",
        app.instances, app.limits.memory_mb, app.limits.timeout_ms
    );
    if !settings.only_scales() && app.state == nimbus_protocol::api::AppState::Started {
        println!("Restarting instances with the new settings");
        crate::commands::push::wait_until_serving(client, &app).await?;
    }
    Ok(())
}

pub async fn stop(client: &Client, name: &str) -> anyhow::Result<()> {
    let _: App = client
        .call(Method::POST, &format!("/v1/apps/{name}/stop"), &())
        .await?;
    println!("{name} stopped");
    Ok(())
}

pub async fn delete(client: &Client, name: &str, force: bool) -> anyhow::Result<()> {
    // Ask only when a person is there to answer; scripts and CI pass no terminal.
    if !force && std::io::stdin().is_terminal() {
        print!("Really delete the app {name}? [y/N] ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("Not deleted.");
            return Ok(());
        }
    }
    client
        .call_empty(Method::DELETE, &format!("/v1/apps/{name}"))
        .await?;
    println!("{name} deleted");
    Ok(())
}
