//! The API client: bearer-authenticated JSON over HTTP, errors turned into sentences.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context as _;
use nimbus_protocol::api::{App, ErrorBody, Instance};
use nimbus_protocol::messages::LogMessage;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::CliConfig;

/// Talks to one controller.
pub struct Client {
    http: reqwest::Client,
    config: CliConfig,
}

impl Client {
    pub fn new(config: CliConfig) -> anyhow::Result<Client> {
        Ok(Client {
            http: http_client()?,
            config,
        })
    }

    /// The app called `name`, or `None` if there is none.
    pub async fn find_app(&self, name: &str) -> anyhow::Result<Option<App>> {
        let response = self
            .send(self.request(Method::GET, &format!("/v1/apps/{name}")))
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(parse(response).await?))
    }

    /// The app called `name`, or an error saying it does not exist.
    pub async fn app(&self, name: &str) -> anyhow::Result<App> {
        self.get(&format!("/v1/apps/{name}")).await
    }

    pub async fn apps(&self) -> anyhow::Result<Vec<App>> {
        self.get("/v1/apps").await
    }

    pub async fn instances(&self, name: &str) -> anyhow::Result<Vec<Instance>> {
        self.get(&format!("/v1/apps/{name}/instances")).await
    }

    pub async fn recent_logs(&self, name: &str) -> anyhow::Result<Vec<LogMessage>> {
        self.get(&format!("/v1/apps/{name}/logs")).await
    }

    /// A response body as bytes (a droplet).
    pub async fn get_bytes(&self, path: &str) -> anyhow::Result<bytes::Bytes> {
        let response = check(self.send(self.request(Method::GET, path)).await?).await?;
        response
            .bytes()
            .await
            .context("the API's response was cut short")
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        parse(self.send(self.request(Method::GET, path)).await?).await
    }

    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        parse(self.send(self.request(method, path).json(body)).await?).await
    }

    /// Sends a request whose body is empty and whose reply is ignored beyond its status.
    pub async fn call_empty(&self, method: Method, path: &str) -> anyhow::Result<()> {
        let response = self.send(self.request(method, path)).await?;
        check(response).await.map(drop)
    }

    /// Uploads a package; the response streams staging events, one JSON object per line.
    pub async fn upload_bits(&self, name: &str, package: Vec<u8>) -> anyhow::Result<Response> {
        let request = self
            .request(Method::PUT, &format!("/v1/apps/{name}/bits"))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(package);
        check(self.send(request).await?).await
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(
                method,
                format!("{}{path}", self.config.api.trim_end_matches('/')),
            )
            .bearer_auth(&self.config.token)
    }

    async fn send(&self, request: RequestBuilder) -> anyhow::Result<Response> {
        request.send().await.with_context(|| {
            format!(
                "cannot reach the API at {}: is `nimbus up` running?",
                self.config.api
            )
        })
    }
}

/// An HTTP client that resolves `*.localhost` to loopback, as browsers and curl do, so the
/// default domain works without touching `/etc/hosts`.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(LocalhostResolver))
        .build()
        .context("failed to build an HTTP client")
}

struct LocalhostResolver;

impl reqwest::dns::Resolve for LocalhostResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_ascii_lowercase();
        Box::pin(async move {
            if host == "localhost" || host.ends_with(".localhost") {
                let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
                return Ok(Box::new(std::iter::once(loopback)) as reqwest::dns::Addrs);
            }
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Turns an error status into the API's own message.
async fn check(response: Response) -> anyhow::Result<Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => anyhow::bail!("{} ({})", body.error.message, status.as_u16()),
        Err(_) => anyhow::bail!("the API answered {status}: {}", text.trim()),
    }
}

async fn parse<T: DeserializeOwned>(response: Response) -> anyhow::Result<T> {
    let response = check(response).await?;
    response
        .json()
        .await
        .context("the API sent a response this CLI does not understand")
}
