//! One running instance: its listener and the loop serving HTTP/1.1 on it. Stopping closes the
//! listener at once, lets requests in flight finish (bounded by the request time limit), then
//! removes the instance's scratch directory.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use nimbus_protocol::messages::RouteRegistration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::http::AppServer;
use crate::scratch::Scratch;

/// Extra time beyond the request limit that stopping waits for in-flight requests.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// A serving instance.
pub(crate) struct Instance {
    /// The endpoint as registered with the routers.
    pub(crate) route: RouteRegistration,
    stop: CancellationToken,
    serving: Mutex<Option<JoinHandle<()>>>,
    scratch: Option<Arc<Scratch>>,
}

impl Instance {
    /// Starts serving `server` on `listener`.
    pub(crate) fn serve(
        listener: TcpListener,
        server: Arc<AppServer>,
        route: RouteRegistration,
    ) -> Instance {
        let stop = CancellationToken::new();
        let drain = Duration::from_millis(server.limits.timeout_ms).saturating_add(DRAIN_GRACE);
        let scratch = Some(server.scratch.clone());
        let serving = tokio::spawn(accept_loop(listener, server, stop.clone(), drain));
        Instance {
            route,
            stop,
            serving: Mutex::new(Some(serving)),
            scratch,
        }
    }

    /// An instance that serves nothing, for tests of the bookkeeping around instances.
    #[cfg(test)]
    pub(crate) fn detached(route: RouteRegistration) -> Instance {
        Instance {
            route,
            stop: CancellationToken::new(),
            serving: Mutex::new(None),
            scratch: None,
        }
    }

    /// Cancelled once the instance is asked to stop.
    pub(crate) fn stopped(&self) -> CancellationToken {
        self.stop.clone()
    }

    pub(crate) fn port(&self) -> u16 {
        self.route.port
    }

    /// Closes the listener and waits for requests in flight. Safe to call more than once.
    pub(crate) async fn stop(&self) {
        self.stop.cancel();
        let serving = self
            .serving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(serving) = serving
            && let Err(error) = serving.await
        {
            tracing::warn!(%error, port = self.route.port, "instance serving task failed");
        }
        if let Some(scratch) = &self.scratch {
            let scratch = scratch.clone();
            // Guests aborted at the drain deadline may still hold files open; removal of an
            // open file still frees its name, and its space once the guest task is gone.
            if tokio::task::spawn_blocking(move || scratch.remove())
                .await
                .is_err()
            {
                tracing::warn!(
                    port = self.route.port,
                    "failed to remove the scratch directory"
                );
            }
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Never leave a listener behind, even if nobody called stop.
        self.stop.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    server: Arc<AppServer>,
    stop: CancellationToken,
    drain: Duration,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(stream, server.clone(), stop.clone()));
                }
                Err(error) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "failed to accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // Reap finished connections so the set does not grow for ever.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // New connections are refused from here on.
    drop(listener);
    let drained = tokio::time::timeout(drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("in-flight requests outlived the drain period; closing them");
        connections.abort_all();
    }
}

async fn serve_connection(stream: TcpStream, server: Arc<AppServer>, stop: CancellationToken) {
    let service = hyper::service::service_fn(move |request| server.clone().handle(request));
    let connection = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stop.cancelled() => {
            // Finish the request in flight, then close instead of keeping the connection alive.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}
