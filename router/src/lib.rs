//! The Nimbus router: sends each HTTP request to a live instance of the app its `Host` names.
//!
//! - `table` maps a normalised host to its endpoints; requests read it without
//!   locks (an `ArcSwap` snapshot), NATS messages copy-and-swap it;
//! - `nats` feeds the table from `router.register` / `router.unregister`, answers
//!   `router.greet`, announces `router.start` and prunes endpoints that stop re-registering;
//! - `proxy` forwards a request round robin over the host's endpoints, retrying the next one
//!   while the request is untouched, over keep-alive connections pooled per endpoint (`pool`);
//! - `server` accepts HTTP/1.1 clients and drains them on shutdown;
//! - [`RouterError`] is every way a request can fail, with its status and diagnostic header.
//!
//! ```no_run
//! # async fn example(nats: async_nats::Client) -> anyhow::Result<()> {
//! let router = nimbus_router::start(nimbus_router::Config::default(), nats).await?;
//! println!("routing on http://{}", router.local_addr());
//! router.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod config;
mod error;
mod headers;
mod nats;
mod pool;
mod proxy;
mod server;
mod table;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{Config, DEFAULT_PORT, DEFAULT_PRUNE_THRESHOLD, DEFAULT_REGISTER_INTERVAL};
pub use error::{ERROR_HEADER, RouterError};

/// Starts a router: binds the listener, subscribes to the route subjects and announces itself.
/// Routes registered after this returns are seen.
pub async fn start(config: Config, nats: async_nats::Client) -> anyhow::Result<Handle> {
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("failed to listen on {}", config.listen))?;
    let local_addr = listener
        .local_addr()
        .context("failed to read the listening address")?;
    let table = Arc::new(table::RouteTable::new());
    let subscriptions = nats::Subscriptions::start(nats, &config).await?;

    let (stop_server, server_stopped) = watch::channel(false);
    let (stop_nats, nats_stopped) = watch::channel(false);
    let proxy = Arc::new(proxy::Proxy::new(Arc::clone(&table)));
    let server = tokio::spawn(server::serve(listener, proxy, server_stopped));
    let nats = tokio::spawn(subscriptions.run(table, nats_stopped));
    tracing::info!(%local_addr, "router listening");
    Ok(Handle {
        local_addr,
        stop_server,
        server,
        stop_nats,
        nats,
    })
}

/// A running router. Dropping it stops the router abruptly; [`Handle::shutdown`] drains.
#[must_use = "dropping the Handle stops the router"]
pub struct Handle {
    local_addr: SocketAddr,
    stop_server: watch::Sender<bool>,
    server: JoinHandle<()>,
    stop_nats: watch::Sender<bool>,
    nats: JoinHandle<()>,
}

impl Handle {
    /// The address the router listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets in-flight requests finish (briefly), then unsubscribes from NATS.
    pub async fn shutdown(self) {
        let _ = self.stop_server.send(true);
        if let Err(error) = self.server.await {
            tracing::warn!(%error, "router listener task failed");
        }
        let _ = self.stop_nats.send(true);
        if let Err(error) = self.nats.await {
            tracing::warn!(%error, "router NATS task failed");
        }
        tracing::info!("router stopped");
    }
}
