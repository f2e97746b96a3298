//! The Cloud Controller: the REST API, desired state, placement and staging orchestration.
//!
//! ```text
//!  CLI ──HTTP──▶ api/ ──▶ store (JetStream KV + Object Store)      desired state
//!                 │  └──▶ staging ──NATS `staging`──▶ a stager
//!                 └─────▶ converge ──NATS `dea.<id>.start`/`dea.stop`──▶ DEAs
//!  health manager ──`cloudcontrollers.hm.requests`──▶ converge
//!  DEAs ──`dea.heartbeat`/`dea.advertise`──▶ actual                actual state
//! ```
//!
//! The controller starts and stops instances when the API changes an app; repairs (crashes,
//! lost DEAs, restarts) are the health manager's to find, and it asks for them.
//!
//! The controller keeps no state of its own: desired state is in JetStream, actual state is
//! rebuilt from heartbeats within seconds, so several controllers can run side by side. Its API
//! is routed at `api.<domain>` like any app.
//!
//! ```no_run
//! # async fn f(nats: async_nats::Client) -> anyhow::Result<()> {
//! let handle = nimbus_controller::start(nimbus_controller::Config::new("localhost", 8080), nats).await?;
//! println!("API on {}", handle.local_addr());
//! handle.shutdown().await;
//! # Ok(()) }
//! ```

mod actual;
mod api;
mod config;
mod converge;
mod health;
mod placement;
mod record;
mod settings;
mod staging;
mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use futures::StreamExt as _;
use nimbus_protocol::messages::{DeaAdvertise, DeaHeartbeat, HmRequest, RouteRegistration};
use nimbus_protocol::subjects;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{
    Config, DEFAULT_MAX_PACKAGE_BYTES, DEFAULT_STAGING_TIMEOUT, DEFAULT_START_TIMEOUT,
};
pub use store::sha256_hex;

/// A running controller.
pub struct Handle {
    local_addr: SocketAddr,
    registrar: nimbus_bus::Registrar,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    server: JoinHandle<()>,
}

/// Opens desired state, starts listening to DEAs, serves the API and registers its route.
pub async fn start(config: Config, nats: async_nats::Client) -> anyhow::Result<Handle> {
    let config = Arc::new(config);
    let store = store::Store::open(&async_nats::jetstream::new(nats.clone())).await?;
    if let Some(token) = &config.admin_token {
        store
            .add_token(&sha256_hex(token.as_bytes()), "admin")
            .await?;
    }

    let actual = actual::ActualState::default();
    let mut tasks = vec![
        tokio::spawn(follow(nats.subscribe(subjects::DEA_HEARTBEAT).await?, {
            let actual = actual.clone();
            move |hb: DeaHeartbeat| actual.record_heartbeat(hb)
        })),
        tokio::spawn(follow(nats.subscribe(subjects::DEA_ADVERTISE).await?, {
            let actual = actual.clone();
            move |advert: DeaAdvertise| actual.record_advert(advert)
        })),
    ];
    // Learn the DEAs at once instead of waiting for their next advertisement.
    nimbus_bus::publish(&nats, subjects::DEA_LOCATE, &serde_json::json!({})).await?;

    let converger =
        converge::Converger::new(store.clone(), actual.clone(), nats.clone(), config.clone());
    tasks.push(tokio::spawn(converger.clone().run()));
    // One controller of the group takes each of the health manager's requests.
    let hm_requests = nats
        .queue_subscribe(
            subjects::HM_REQUESTS,
            subjects::CONTROLLERS_QUEUE.to_string(),
        )
        .await?;
    tasks.push(tokio::spawn(follow(hm_requests, {
        let converger = converger.clone();
        move |request: HmRequest| {
            let converger = converger.clone();
            tokio::spawn(async move { converger.handle(request).await });
        }
    })));

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("failed to listen on {}", config.listen))?;
    let local_addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    let app = api::router(api::Ctx {
        store,
        actual,
        converger,
        nats: nats.clone(),
        config: config.clone(),
    });
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.changed().await;
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%error, "API server failed");
        }
    });

    let registrar = nimbus_bus::Registrar::start(nats).await?;
    registrar
        .add(RouteRegistration {
            host: local_addr.ip().to_string(),
            port: local_addr.port(),
            uris: vec![config.api_host()],
            app: None,
            private_instance_id: None,
        })
        .await;
    tracing::info!(%local_addr, api = %config.url_of(&config.api_host()), "controller started");
    Ok(Handle {
        local_addr,
        registrar,
        stop,
        tasks,
        server,
    })
}

impl Handle {
    /// Where the API listens directly (the router reaches it at `api.<domain>`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Unregisters the API route, finishes in-flight requests and stops.
    pub async fn shutdown(self) {
        self.registrar.shutdown().await;
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.server).await;
        for task in self.tasks {
            task.abort();
        }
    }
}

/// Feeds every well-formed message of a subscription to `record`.
async fn follow<T: serde::de::DeserializeOwned>(
    mut messages: async_nats::Subscriber,
    record: impl Fn(T),
) {
    while let Some(message) = messages.next().await {
        if let Some(value) = nimbus_bus::decode(&message) {
            record(value);
        }
    }
}
