//! Helpers for the router's integration tests: a real nats-server, a router on port 0, and
//! tiny HTTP backends that answer with their own name.

#![allow(dead_code)] // each test binary uses a different subset

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use nimbus_bus::{NatsServer, ServerOptions};
use nimbus_protocol::messages::RouteRegistration;
use nimbus_protocol::subjects;
use tokio::net::TcpListener;

/// How long a test waits for the router to catch up with NATS before giving up.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A nats-server, a client on it and a router, torn down when dropped.
pub struct TestRouter {
    pub nats: async_nats::Client,
    pub router: nimbus_router::Handle,
    pub http: reqwest::Client,
    _server: NatsServer,
    _dir: tempfile::TempDir,
}

/// Starts nats-server and a router on 127.0.0.1:0 with default intervals.
pub async fn start_router_on_port_zero() -> TestRouter {
    start_router_with(nimbus_router::Config::default()).await
}

/// Starts nats-server and a router on 127.0.0.1:0 with `config`'s intervals.
pub async fn start_router_with(config: nimbus_router::Config) -> TestRouter {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = NatsServer::start(ServerOptions::ephemeral(dir.path()))
        .await
        .expect("nats-server starts");
    let nats = nimbus_bus::connect(server.config(), "test")
        .await
        .expect("connect to nats");
    let config = nimbus_router::Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        ..config
    };
    let router = nimbus_router::start(config, nats.clone())
        .await
        .expect("router starts");
    // Proxies from the environment must not intercept requests to loopback.
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client");
    TestRouter {
        nats,
        router,
        http,
        _server: server,
        _dir: dir,
    }
}

/// What a request through the router came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub error_header: Option<String>,
    pub body: String,
}

impl TestRouter {
    /// GET `path` on the router with an explicit `Host` header.
    pub async fn get(&self, host: &str, path: &str) -> Answer {
        let url = format!("http://{}{path}", self.router.local_addr());
        let response = self
            .http
            .get(url)
            .header("host", host)
            .send()
            .await
            .expect("router answers");
        answer(response).await
    }

    /// Publishes a registration of `port` on 127.0.0.1 for `host`.
    pub async fn register(&self, host: &str, port: u16) {
        self.publish(subjects::ROUTER_REGISTER, host, port).await;
    }

    pub async fn unregister(&self, host: &str, port: u16) {
        self.publish(subjects::ROUTER_UNREGISTER, host, port).await;
    }

    async fn publish(&self, subject: &'static str, host: &str, port: u16) {
        nimbus_bus::publish(&self.nats, subject, &registration(host, port))
            .await
            .expect("publish");
        self.nats.flush().await.expect("flush");
    }

    /// Asks for `host` until `done` accepts the answer; panics after [`PATIENCE`].
    pub async fn get_until(&self, host: &str, done: impl Fn(&Answer) -> bool) -> Answer {
        eventually(|| async {
            let answer = self.get(host, "/").await;
            done(&answer).then_some(answer)
        })
        .await
    }
}

pub async fn answer(response: reqwest::Response) -> Answer {
    Answer {
        status: response.status().as_u16(),
        error_header: response
            .headers()
            .get("x-nimbus-router-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: response.text().await.expect("body"),
    }
}

pub fn registration(host: &str, port: u16) -> RouteRegistration {
    RouteRegistration {
        host: "127.0.0.1".to_string(),
        port,
        uris: vec![host.to_string()],
        app: None,
        private_instance_id: Some(format!("instance-{port}")),
    }
}

/// Polls `probe` until it yields a value; panics after [`PATIENCE`]. Not a timing assertion:
/// the bound only keeps a broken router from hanging the test suite.
pub async fn eventually<T, F, Fut>(probe: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A tiny app on 127.0.0.1:0. `GET /` answers its name, `/headers` lists the request headers
/// it saw (one `name: value` per line), `POST /echo` streams the request body back.
pub async fn start_backend(name: &'static str) -> SocketAddr {
    start_counting_backend(name).await.0
}

/// [`start_backend`] that also counts the TCP connections it accepted.
pub async fn start_counting_backend(name: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let address = listener.local_addr().expect("backend address");
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = service_fn(move |request| backend(name, request));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (address, connections)
}

async fn backend(
    name: &'static str,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match request.uri().path() {
        "/headers" => request
            .headers()
            .iter()
            .map(|(k, v)| format!("{k}: {}\n", v.to_str().unwrap_or("?")))
            .collect::<String>(),
        "/echo" => {
            let bytes = request
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => name.to_string(),
    };
    Ok(Response::new(Full::new(Bytes::from(body))))
}

/// A loopback port nothing listens on.
pub fn closed_port() -> u16 {
    nimbus_bus::free_port().expect("free port")
}
