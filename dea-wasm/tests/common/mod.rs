//! Helpers for the DEA's integration tests: a real nats-server with the blob store, real guest
//! components built from `sample-apps/`, and a DEA started on them.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::object_store;
use futures::StreamExt as _;
use nimbus_bus::{NatsServer, ServerOptions};
use nimbus_protocol::droplet::{
    BLOB_STORE, DropletKind, DropletManifest, Limits, droplet_object_name,
};
use nimbus_protocol::messages::{AppEvent, RouteRegistration, StartReply, StartRequest};
use nimbus_protocol::subjects;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

/// How long a test waits for any one message before failing (a bound, not a measurement).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A nats-server with the blob store, and a DEA on it.
pub struct Cloud {
    pub nats: async_nats::Client,
    pub dea: Option<nimbus_dea_wasm::Handle>,
    pub dea_id: String,
    store: object_store::ObjectStore,
    server: NatsServer,
    config: nimbus_dea_wasm::Config,
    _dir: tempfile::TempDir,
}

impl Cloud {
    pub async fn start() -> Cloud {
        Cloud::start_with(|_| {}).await
    }

    /// Starts with a DEA configured by `configure`.
    pub async fn start_with(configure: impl FnOnce(&mut nimbus_dea_wasm::Config)) -> Cloud {
        let dir = tempfile::tempdir().unwrap();
        let server = NatsServer::start(ServerOptions::ephemeral(dir.path().join("nats")))
            .await
            .unwrap();
        let nats = nimbus_bus::connect(server.config(), "dea-test")
            .await
            .unwrap();
        let store = async_nats::jetstream::new(nats.clone())
            .create_object_store(object_store::Config {
                bucket: BLOB_STORE.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut config = nimbus_dea_wasm::Config::new(dir.path().join("dea"));
        config.heartbeat_interval = Duration::from_millis(200);
        configure(&mut config);
        let dea = nimbus_dea_wasm::start(config.clone(), nats.clone())
            .await
            .unwrap();
        Cloud {
            dea_id: dea.id().to_string(),
            dea: Some(dea),
            nats,
            store,
            server,
            config,
            _dir: dir,
        }
    }

    /// The running DEA.
    pub fn dea(&self) -> &nimbus_dea_wasm::Handle {
        self.dea.as_ref().expect("the DEA runs")
    }

    /// The DEA's data directory (droplets, compiled code, scratch).
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// Shuts the DEA down and starts a new one with the same configuration and data directory.
    pub async fn restart_dea(&mut self) {
        if let Some(dea) = self.dea.take() {
            dea.shutdown().await;
        }
        let dea = nimbus_dea_wasm::start(self.config.clone(), self.nats.clone())
            .await
            .unwrap();
        self.dea_id = dea.id().to_string();
        self.dea = Some(dea);
    }

    /// Uploads a droplet and returns its manifest.
    pub async fn upload(&self, wasm: &[u8]) -> DropletManifest {
        let sha256 = format!("{:x}", Sha256::digest(wasm));
        self.store
            .put(droplet_object_name(&sha256).as_str(), &mut &wasm[..])
            .await
            .unwrap();
        DropletManifest {
            sha256,
            kind: DropletKind::HttpComponent,
            language: "rust".into(),
            size: wasm.len() as u64,
            staged_at: 0,
        }
    }

    /// Sends a start request and returns the reply.
    pub async fn request_start(&self, request: &StartRequest) -> StartReply {
        let reply = tokio::time::timeout(
            PATIENCE,
            self.nats.request(
                subjects::dea_start(&self.dea_id),
                nimbus_protocol::encode(request).into(),
            ),
        )
        .await
        .expect("the DEA answers start requests")
        .unwrap();
        nimbus_protocol::decode(&reply.payload).unwrap()
    }

    /// Starts an instance and returns its instance id and its route as registered.
    pub async fn start_instance(&self, request: &StartRequest) -> (Uuid, RouteRegistration) {
        let mut registrations = self.subscribe(subjects::ROUTER_REGISTER).await;
        let instance_id = match self.request_start(request).await {
            StartReply::Started { instance_id } => instance_id,
            StartReply::Failed { message } => panic!("start failed: {message}"),
        };
        let route = next_matching(&mut registrations, |r: &RouteRegistration| {
            r.private_instance_id == Some(instance_id.to_string())
        })
        .await;
        (instance_id, route)
    }

    /// Subscribes, making sure the server knows before anything is sent.
    pub async fn subscribe(&self, subject: impl Into<String>) -> async_nats::Subscriber {
        let subscriber = self.nats.subscribe(subject.into()).await.unwrap();
        self.nats.flush().await.unwrap();
        subscriber
    }

    pub async fn shutdown(mut self) {
        if let Some(dea) = self.dea.take() {
            dea.shutdown().await;
        }
        self.server.stop().await;
    }
}

/// A start request for `droplet` under a fresh app id.
pub fn start_request(name: &str, index: u32, droplet: DropletManifest) -> StartRequest {
    StartRequest {
        app_id: Uuid::new_v4(),
        app_name: name.into(),
        version: Uuid::new_v4(),
        index,
        droplet,
        uris: vec![format!("{name}.localhost")],
        limits: Limits {
            memory_mb: 64,
            timeout_ms: 10_000,
            ..Limits::default()
        },
        env: vec![],
        allowed_outbound_hosts: vec![],
        health_check_http_endpoint: None,
    }
}

/// The next message on `subscriber` whose decoded body satisfies `wanted`.
pub async fn next_matching<T, F>(subscriber: &mut async_nats::Subscriber, mut wanted: F) -> T
where
    T: serde::de::DeserializeOwned,
    F: FnMut(&T) -> bool,
{
    let found = tokio::time::timeout(PATIENCE, async {
        while let Some(message) = subscriber.next().await {
            if let Ok(value) = nimbus_protocol::decode::<T>(&message.payload)
                && wanted(&value)
            {
                return value;
            }
        }
        panic!("subscription ended");
    })
    .await;
    found.expect("the expected message arrives")
}

/// GETs `/path` from an instance with the app's Host header.
pub async fn get(route: &RouteRegistration, path: &str) -> reqwest::Result<reqwest::Response> {
    reqwest::Client::new()
        .get(format!("http://{}:{}{path}", route.host, route.port))
        .header("host", &route.uris[0])
        .timeout(PATIENCE)
        .send()
        .await
}

/// The next event on `events` with this reason.
pub async fn next_event(events: &mut async_nats::Subscriber, reason: &str) -> AppEvent {
    next_matching(events, |e: &AppEvent| e.reason == reason).await
}

/// Sends `request` and returns status, `x-nimbus-error` (or "") and body.
pub async fn exchange(request: reqwest::RequestBuilder) -> (u16, String, String) {
    let response = request.timeout(PATIENCE).send().await.unwrap();
    let status = response.status().as_u16();
    let cause = response
        .headers()
        .get("x-nimbus-error")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, cause, response.text().await.unwrap_or_default())
}

/// A request to `path` on an instance, with the app's Host header.
pub fn to(
    route: &RouteRegistration,
    method: reqwest::Method,
    path: &str,
) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .request(
            method,
            format!("http://{}:{}{path}", route.host, route.port),
        )
        .header("host", &route.uris[0])
}

/// The wasm of a sample app, built for wasm32-wasip2 (CI starts clean).
pub fn sample_app(name: &str) -> Vec<u8> {
    nimbus_dea_wasm::bench::sample_app(name).expect("the sample app builds")
}
