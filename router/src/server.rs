//! The HTTP/1.1 listener: accepts clients, serves each connection with keep-alive, and drains
//! in-flight requests on shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::proxy::Proxy;

/// How long in-flight requests may take to finish once shutdown begins.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts connections until `stop` changes (or its sender is dropped), then drains.
pub(crate) async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = http1::Builder::new();
    // The timer enables hyper's header read timeout, which bounds slow-loris clients.
    builder.timer(TokioTimer::new()).keep_alive(true);
    let (drain, draining) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(
                        stream,
                        builder.clone(),
                        Arc::clone(&proxy),
                        draining.clone(),
                    ));
                }
                Err(error) => {
                    tracing::warn!(%error, "failed to accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
        // Reap finished connections so the set stays as large as the live ones.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    tracing::info!(
        connections = connections.len(),
        "router stopped accepting; draining"
    );
    let _ = drain.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "requests still in flight after the drain timeout; closing them"
        );
        connections.abort_all();
    }
}

async fn serve_connection(
    stream: TcpStream,
    builder: http1::Builder,
    proxy: Arc<Proxy>,
    mut draining: watch::Receiver<bool>,
) {
    let Ok(client) = stream.peer_addr() else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| {
        let proxy = Arc::clone(&proxy);
        async move { Ok::<_, Infallible>(proxy.handle(request, client).await) }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = draining.changed() => {
            // Finishes the request in flight, then closes instead of keeping alive.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, %client, "client connection ended with an error");
    }
}
