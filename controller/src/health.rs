//! What the health manager knows of an app's instances (`healthmanager.health`): crash counts
//! and the state of indices no DEA runs. The API merges it with the DEAs' heartbeats; without
//! an answer (no health manager running) those indices simply show as DOWN.

use std::time::Duration;

use nimbus_protocol::messages::{AppHealth, HealthReply, HealthRequest};
use nimbus_protocol::subjects;
use uuid::Uuid;

/// How long the API waits for the health manager before answering without it.
const HEALTH_TIMEOUT: Duration = Duration::from_millis(500);

/// The health manager's view of one app, if one answers in time.
pub async fn of_app(nats: &async_nats::Client, app_id: Uuid) -> Option<AppHealth> {
    let request = nimbus_protocol::encode(&HealthRequest {
        app_ids: vec![app_id],
    });
    let reply = tokio::time::timeout(
        HEALTH_TIMEOUT,
        nats.request(subjects::HEALTHMANAGER_HEALTH, request.into()),
    )
    .await;
    match reply {
        Ok(Ok(message)) => match nimbus_protocol::decode::<HealthReply>(&message.payload) {
            Ok(reply) => reply.apps.into_iter().find(|app| app.app_id == app_id),
            Err(error) => {
                tracing::warn!(%error, "the health manager sent a malformed reply");
                None
            }
        },
        Ok(Err(error)) => {
            tracing::debug!(%error, "no health manager answered");
            None
        }
        Err(_) => {
            tracing::debug!("the health manager did not answer in time");
            None
        }
    }
}
