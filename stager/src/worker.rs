//! The NATS side of the stager: takes requests from the `staging` queue group, runs each job
//! concurrently, and publishes its output and result.

use std::sync::Arc;

use futures::StreamExt as _;
use nimbus_protocol::messages::{StagingAck, StagingDone, StagingLog, StagingRequest};
use nimbus_protocol::subjects;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::job::Stager;
use crate::log::{BuildLog, LogLine};

/// The source name of staging lines in an app's log, as Cloud Foundry calls it.
const LOG_SOURCE: &str = "STG";

/// Serves staging requests until `stop` turns true or the subscription ends, then waits for the
/// jobs in flight (which stop themselves on `stop`).
pub(crate) async fn serve(
    stager: Arc<Stager>,
    nats: async_nats::Client,
    mut requests: async_nats::Subscriber,
    mut stop: watch::Receiver<bool>,
) {
    let mut jobs = JoinSet::new();
    loop {
        tokio::select! {
            message = requests.next() => {
                let Some(message) = message else {
                    tracing::warn!("the staging subscription ended; no longer taking requests");
                    break;
                };
                let Some(request) = nimbus_bus::decode::<StagingRequest>(&message) else {
                    continue;
                };
                let ack = StagingAck { stager_id: stager.config.id.clone() };
                if let Err(error) = nimbus_bus::reply(&nats, &message, &ack).await {
                    tracing::warn!(%error, staging_id = %request.staging_id, "failed to acknowledge");
                }
                jobs.spawn(run_job(stager.clone(), nats.clone(), request, stop.clone()));
            }
            _ = stopped(&mut stop) => break,
            // Reap finished jobs so the set does not grow with every staging.
            Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
        }
    }
    if let Err(error) = requests.unsubscribe().await {
        tracing::debug!(%error, "failed to unsubscribe from staging");
    }
    while jobs.join_next().await.is_some() {}
}

/// Runs one job and always ends it with a `staging.<id>.done` message.
async fn run_job(
    stager: Arc<Stager>,
    nats: async_nats::Client,
    request: StagingRequest,
    mut stop: watch::Receiver<bool>,
) {
    tracing::info!(staging_id = %request.staging_id, app_id = %request.app_id, app = %request.app_name, "staging");
    let (log, lines) = BuildLog::channel();
    let forwarder = tokio::spawn(forward_logs(nats.clone(), request.clone(), lines));

    // Dropping the job on shutdown kills its build (child processes are killed on drop).
    let outcome = tokio::select! {
        result = stager.stage(&request, &log) => result,
        _ = stopped(&mut stop) => Err(anyhow::anyhow!(
            "the stager shut down before staging finished; push again"
        )),
    };
    let done = match outcome {
        Ok(droplet) => {
            tracing::info!(staging_id = %request.staging_id, sha256 = %droplet.sha256, "staged");
            StagingDone::Staged { droplet }
        }
        Err(error) => {
            let message = format!("{error:#}");
            tracing::info!(staging_id = %request.staging_id, %message, "staging failed");
            let headline = message.lines().next().unwrap_or_default();
            log.err(format!("-----> Staging failed: {headline}")).await;
            StagingDone::Failed { message }
        }
    };
    // Every line must be out before the result, which tells followers to stop reading.
    drop(log);
    if let Err(error) = forwarder.await {
        tracing::warn!(%error, "the log forwarder failed");
    }
    let subject = subjects::staging_done(request.staging_id);
    if let Err(error) = nimbus_bus::publish(&nats, subject, &done).await {
        tracing::warn!(%error, staging_id = %request.staging_id, "failed to publish the staging result");
    }
}

/// Publishes every line on the job's log subject and on the app's log stream, in order.
async fn forward_logs(
    nats: async_nats::Client,
    request: StagingRequest,
    mut lines: mpsc::Receiver<LogLine>,
) {
    let subject = subjects::staging_log(request.staging_id);
    while let Some(LogLine { stream, text }) = lines.recv().await {
        let line = StagingLog { line: text };
        if let Err(error) = nimbus_bus::publish(&nats, subject.clone(), &line).await {
            tracing::debug!(%error, "dropping a staging log line");
        }
        nimbus_bus::log_line(&nats, request.app_id, LOG_SOURCE, stream, line.line).await;
    }
}

/// Resolves once the stop flag is set. If the sender is gone nobody can stop us: never resolve.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stopping| *stopping).await.is_err() {
        std::future::pending::<()>().await;
    }
}
