//! Keep-alive connections to endpoints, so most proxied requests skip the TCP handshake.
//!
//! Each endpoint keeps a small LIFO stack of idle HTTP/1.1 senders (LIFO so the warmest
//! connections are reused and cold ones age out at the bottom). A sender goes back to the
//! stack only once its connection is ready for the next request, i.e. after the previous
//! response body was read to the end.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::table::Endpoint;

/// Idle connections kept per endpoint; more are closed once their response is done.
pub(crate) const MAX_IDLE_PER_ENDPOINT: usize = 64;
/// A DEA that does not accept within this time is treated as down and the next one is tried.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What goes upstream: the client's body streaming through, or nothing at all (a bodiless
/// request, which can then be sent again if a connection dies under it).
pub(crate) type UpstreamBody = Either<Incoming, Empty<Bytes>>;

/// The sending half of one upstream connection.
pub(crate) type Sender = SendRequest<UpstreamBody>;

/// Idle connections to one endpoint.
#[derive(Default)]
pub(crate) struct ConnPool {
    idle: Mutex<Vec<Sender>>,
}

impl ConnPool {
    /// An idle connection that is still open, if any. Closed ones are dropped on the way.
    pub fn take(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(sender) = idle.pop() {
            if sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    fn put(&self, sender: Sender) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_PER_ENDPOINT {
            idle.push(sender);
        }
    }
}

/// Returns a sender to its endpoint's pool once the connection can take another request.
/// Waiting needs a task: readiness comes only after the client has read the response body.
pub(crate) fn recycle(endpoint: Arc<Endpoint>, mut sender: Sender) {
    if sender.is_ready() {
        endpoint.pool.put(sender);
        return;
    }
    tokio::spawn(async move {
        if sender.ready().await.is_ok() {
            endpoint.pool.put(sender);
        }
    });
}

/// Why a new connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("timed out connecting")]
    Timeout,
    #[error("failed to connect: {0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP handshake failed: {0}")]
    Handshake(#[from] hyper::Error),
}

/// Opens a new connection to an endpoint and drives it on its own task.
pub(crate) async fn connect(endpoint: &Endpoint) -> Result<Sender, ConnectError> {
    let address = (endpoint.host.as_str(), endpoint.port);
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| ConnectError::Timeout)??;
    // Small request and response heads must not wait for Nagle's algorithm.
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}
