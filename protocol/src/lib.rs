//! The Nimbus wire protocol: every NATS subject and message, and the REST API's JSON shapes.
//!
//! Components never call each other's Rust APIs; they meet on NATS and HTTP, and this crate is
//! the one place those meetings are typed. It does no I/O.
//!
//! - [`subjects`] builds every subject (no `format!` of subjects anywhere else);
//! - [`messages`] holds the NATS bodies (Cloud Foundry v1 names and fields);
//! - [`api`] holds the REST API's request and response bodies;
//! - [`droplet`] describes a staged droplet and the limits an app runs under;
//! - [`state`] is desired state as JetStream stores it (buckets and the app record).
//!
//! All bodies are JSON; [`encode`] and [`decode`] are the only (de)serialisers components use, so
//! a malformed message always becomes a [`DecodeError`], never a panic.

pub mod api;
pub mod droplet;
pub mod messages;
pub mod state;
pub mod subjects;

pub use droplet::{DropletKind, DropletManifest, Limits};

/// A message that could not be decoded: which type was expected and why it failed.
#[derive(Debug, thiserror::Error)]
#[error("malformed {what}: {source}")]
pub struct DecodeError {
    what: &'static str,
    #[source]
    source: serde_json::Error,
}

/// Serialises a message body. Our message types are plain data, so this cannot fail.
pub fn encode<T: serde::Serialize>(message: &T) -> Vec<u8> {
    // Invariant: every type in this crate serialises (string keys, no non-finite floats).
    serde_json::to_vec(message).expect("protocol messages always serialise")
}

/// Decodes a message body received from the network.
pub fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(body).map_err(|source| DecodeError {
        what: std::any::type_name::<T>()
            .rsplit("::")
            .next()
            .unwrap_or("message"),
        source,
    })
}

/// Milliseconds since the Unix epoch, the timestamp unit of every message.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
