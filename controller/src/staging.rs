//! Staging orchestration: hands a stored package to one stager and follows the job to its end.
//!
//! The events go to an mpsc channel that the bits upload streams to the CLI. The job runs in its
//! own task, so a client that disconnects mid-build still gets its droplet recorded.

use std::time::Instant;

use futures::StreamExt as _;
use nimbus_protocol::api::StagingEvent;
use nimbus_protocol::messages::{StagingAck, StagingDone, StagingLog, StagingRequest};
use nimbus_protocol::subjects;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::api::Ctx;
use crate::record::AppRecord;

/// How long a stager has to acknowledge a request.
const ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Stages `package_sha256` for `app`, sending progress to `events`; records the droplet on success.
pub async fn stage(
    ctx: Ctx,
    app: AppRecord,
    package_sha256: String,
    events: mpsc::Sender<StagingEvent>,
) {
    let started = Instant::now();
    let outcome = match tokio::time::timeout(
        ctx.config.staging_timeout,
        run(&ctx, &app, &package_sha256, &events),
    )
    .await
    {
        Ok(Ok(droplet)) => record(&ctx, &app, package_sha256, droplet, started).await,
        Ok(Err(message)) => StagingEvent::Failed { message },
        Err(_) => StagingEvent::Failed {
            message: format!(
                "staging took longer than {:?} and was abandoned",
                ctx.config.staging_timeout
            ),
        },
    };
    if let StagingEvent::Failed { message } = &outcome {
        tracing::warn!(app = %app.name, %message, "staging failed");
    }
    // The client may have gone; the outcome is recorded either way.
    let _ = events.send(outcome).await;
}

/// Runs one staging job; `Err` carries a message for the user.
async fn run(
    ctx: &Ctx,
    app: &AppRecord,
    package_sha256: &str,
    events: &mpsc::Sender<StagingEvent>,
) -> Result<nimbus_protocol::DropletManifest, String> {
    let staging_id = Uuid::new_v4();
    let subscribe = |subject| ctx.nats.subscribe(subject);
    let (mut logs, mut done) = match (
        subscribe(subjects::staging_log(staging_id)).await,
        subscribe(subjects::staging_done(staging_id)).await,
    ) {
        (Ok(logs), Ok(done)) => (logs, done),
        _ => return Err("the controller lost its connection to NATS".into()),
    };
    // Subscriptions must reach the server before a stager can publish.
    let _ = ctx.nats.flush().await;

    let request = StagingRequest {
        staging_id,
        app_id: app.id,
        app_name: app.name.clone(),
        package_sha256: package_sha256.to_string(),
    };
    let ack = ctx
        .nats
        .send_request(
            subjects::STAGING,
            async_nats::Request::new()
                .payload(nimbus_protocol::encode(&request).into())
                .timeout(Some(ACK_TIMEOUT)),
        )
        .await
        .map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::NoResponders => {
                "no stager is running: start one (`nimbus up` runs one)".to_string()
            }
            _ => format!("no stager took the job: {e}"),
        })?;
    if let Ok(ack) = nimbus_protocol::decode::<StagingAck>(&ack.payload) {
        tracing::info!(app = %app.name, %staging_id, stager = %ack.stager_id, "staging");
    }

    loop {
        tokio::select! {
            Some(message) = logs.next() => {
                if let Some(StagingLog { line }) = nimbus_bus::decode(&message) {
                    let _ = events.send(StagingEvent::Log { line }).await;
                }
            }
            Some(message) = done.next() => {
                // Lines published before `done` may still sit in the log subscription.
                while let Ok(Some(message)) = tokio::time::timeout(std::time::Duration::from_millis(20), logs.next()).await {
                    if let Some(StagingLog { line }) = nimbus_bus::decode(&message) {
                        let _ = events.send(StagingEvent::Log { line }).await;
                    }
                }
                return match nimbus_bus::decode::<StagingDone>(&message) {
                    Some(StagingDone::Staged { droplet }) => Ok(droplet),
                    Some(StagingDone::Failed { message }) => Err(message),
                    None => Err("the stager sent a malformed result".into()),
                };
            }
            else => return Err("the controller lost its connection to NATS".into()),
        }
    }
}

/// Makes `droplet` the app's current one; a new droplet is a new version, so DEAs roll over.
async fn record(
    ctx: &Ctx,
    app: &AppRecord,
    package_sha256: String,
    droplet: nimbus_protocol::DropletManifest,
    started: Instant,
) -> StagingEvent {
    let result = ctx
        .store
        .modify_app(app.id, |app| {
            if app.droplet.as_ref().map(|d| &d.sha256) != Some(&droplet.sha256) {
                app.version = Uuid::new_v4();
            }
            app.droplet = Some(droplet.clone());
            app.package_sha256 = Some(package_sha256.clone());
        })
        .await;
    match result {
        Ok(Some(_)) => {
            ctx.converger.kick(app.id);
            StagingEvent::Staged {
                droplet,
                reused: false,
                duration_ms: started.elapsed().as_millis() as u64,
            }
        }
        Ok(None) => StagingEvent::Failed {
            message: format!("app {:?} was deleted during staging", app.name),
        },
        Err(e) => StagingEvent::Failed {
            message: format!("failed to record the droplet: {e}"),
        },
    }
}
