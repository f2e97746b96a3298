//! NATS glue shared by every Nimbus component.
//!
//! - [`NatsConfig`] and [`connect`]: every component connects with the platform's credentials
//!   (there is no anonymous access) and keeps reconnecting for ever;
//! - [`publish`] and [`decode`]: typed bodies from `nimbus-protocol`; a malformed message is
//!   logged and dropped, never a panic;
//! - [`NatsServer`]: a real `nats-server` child process (the micro cloud and the tests use it);
//! - [`Registrar`]: keeps routes registered with every router (`router.register`, re-sent on
//!   `router.start` and on the routers' interval; unregistered on shutdown).

mod registrar;
mod server;

pub use registrar::Registrar;
pub use server::{
    NATS_SERVER_ENV, NatsServer, PID_FILE, ServerOptions, SupervisedServer, free_port,
    write_private,
};

use anyhow::Context as _;
use serde::{Serialize, de::DeserializeOwned};

/// Where the NATS server is and how to authenticate to it. `nimbus up` writes it to its data
/// directory so components started later on the same machine can join.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NatsConfig {
    /// e.g. `nats://127.0.0.1:4222`
    pub url: String,
    pub user: String,
    pub password: String,
}

/// Connects to NATS as `name` (shown by the server's monitoring), retrying for ever on loss.
pub async fn connect(config: &NatsConfig, name: &str) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::with_user_and_password(config.user.clone(), config.password.clone())
        .name(name)
        .max_reconnects(None)
        .connection_timeout(std::time::Duration::from_secs(5))
        .connect(config.url.as_str())
        .await
        .with_context(|| format!("failed to connect to NATS at {}", config.url))
}

/// Publishes a typed message. Fails only if the client's connection is gone for good.
pub async fn publish<T: Serialize>(
    nats: &async_nats::Client,
    subject: impl Into<String>,
    message: &T,
) -> anyhow::Result<()> {
    let subject = subject.into();
    nats.publish(subject.clone(), nimbus_protocol::encode(message).into())
        .await
        .with_context(|| format!("failed to publish on {subject}"))
}

/// Decodes a received message, logging and dropping it if malformed (bad input from the bus
/// must never take a component down).
pub fn decode<T: DeserializeOwned>(message: &async_nats::Message) -> Option<T> {
    match nimbus_protocol::decode(&message.payload) {
        Ok(value) => Some(value),
        Err(error) => {
            tracing::warn!(subject = %message.subject, %error, "dropping malformed message");
            None
        }
    }
}

/// Publishes one line to an app's log stream (`logs.<app_id>`), which `nimbus logs` reads.
pub async fn log_line(
    nats: &async_nats::Client,
    app_id: uuid::Uuid,
    source: &str,
    stream: nimbus_protocol::messages::LogStream,
    message: impl Into<String>,
) {
    let line = nimbus_protocol::messages::LogMessage {
        app_id,
        source: source.to_string(),
        stream,
        timestamp: nimbus_protocol::now_ms(),
        message: message.into(),
    };
    if let Err(error) = publish(nats, nimbus_protocol::subjects::logs(app_id), &line).await {
        tracing::debug!(%error, %app_id, "dropping a log line");
    }
}

/// How long a component that is stopping waits for its last messages to leave.
pub const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Sends what the client has buffered, waiting at most [`FLUSH_TIMEOUT`]: a shutdown must end
/// even when the bus is gone.
pub async fn flush(nats: &async_nats::Client) {
    match tokio::time::timeout(FLUSH_TIMEOUT, nats.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "failed to flush the last messages"),
        Err(_) => tracing::warn!("the bus did not take the last messages in time"),
    }
}

/// Replies to a request message, if it carries a reply subject.
pub async fn reply<T: Serialize>(
    nats: &async_nats::Client,
    request: &async_nats::Message,
    message: &T,
) -> anyhow::Result<()> {
    match &request.reply {
        Some(reply) => publish(nats, reply.to_string(), message).await,
        None => Ok(()),
    }
}
