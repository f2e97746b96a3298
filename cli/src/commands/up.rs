//! `nimbus up`: runs the micro cloud until Ctrl-C or SIGTERM, and points the CLI at it.

use crate::cloud::{Cloud, CloudConfig};
use crate::commands::join::shutdown_signal;
use crate::config::CliConfig;

pub async fn up(config: CloudConfig) -> anyhow::Result<()> {
    println!(
        "Starting the Nimbus micro cloud in {}",
        config.data_dir.display()
    );
    let cloud = Cloud::start(&config).await?;
    CliConfig {
        api: cloud.api_url.clone(),
        token: cloud.credentials.admin_token.clone(),
    }
    .save()?;

    println!(
        "  NATS     {} (JetStream, credentials in the data directory)",
        cloud.nats_url()
    );
    println!("  API      {}", cloud.api_url);
    println!("  Apps     http://<name>.{}:{}", config.domain, config.port);
    println!(
        "The CLI is logged in as admin. Push an app: nimbus push hello -p sample-apps/hello-rust"
    );
    println!("Press Ctrl-C to stop.");

    shutdown_signal().await;
    println!("Stopping…");
    cloud.shutdown().await;
    println!(
        "Stopped. Apps and droplets are kept in {}.",
        config.data_dir.display()
    );
    Ok(())
}
