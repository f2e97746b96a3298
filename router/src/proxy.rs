//! Forwarding one request: find the host's route, pick endpoints in round-robin order, send the
//! request on a pooled or new connection, and stream the response back.
//!
//! A request goes to the next endpoint when a new connection cannot be opened (the endpoint is
//! then tried last for a while: a dead DEA costs later requests nothing) or when a pooled
//! connection turns out to be closed before the request was written. Once bytes went out, a
//! failure is final (502) — except for a bodiless idempotent request (GET, HEAD, OPTIONS), which
//! RFC 9110 lets a proxy send again: it is replayed on the next endpoint, so an instance dying
//! under it (kill -9 of its DEA) costs the client nothing.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{HeaderMap, Method, Request, Response, Version};
use http_body_util::{Either, Empty, Full};
use hyper::body::{Body as _, Incoming};

use crate::error::RouterError;
use crate::headers::{add_forwarding, strip_hop_by_hop};
use crate::pool::{self, Sender, UpstreamBody};
use crate::table::{Endpoint, Route, RouteTable, normalize_host};

/// Response body: the app's streamed body, or the router's own short error text.
pub(crate) type ProxyBody = Either<Incoming, Full<Bytes>>;

/// The request handler shared by every client connection.
pub(crate) struct Proxy {
    table: Arc<RouteTable>,
}

/// What one attempt on one connection came to.
enum Attempt {
    Answered(Response<Incoming>),
    /// The connection was dead before the request was written; it comes back untouched.
    NotSent(Request<UpstreamBody>),
    /// The connection failed after the request went out, before a response came.
    Failed(hyper::Error),
}

/// The head of a bodiless idempotent request, to send it again.
struct Replay {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Replay {
    /// A replay of `request` if it may be sent twice: idempotent, and without a body.
    fn of(request: &Request<Incoming>) -> Option<Replay> {
        let idempotent = matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS
        );
        (idempotent && request.body().is_end_stream()).then(|| Replay {
            method: request.method().clone(),
            uri: request.uri().clone(),
            headers: request.headers().clone(),
        })
    }

    fn request(&self) -> Request<UpstreamBody> {
        let mut request = Request::new(Either::Right(Empty::new()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = self.headers.clone();
        request
    }
}

impl Proxy {
    pub fn new(table: Arc<RouteTable>) -> Proxy {
        Proxy { table }
    }

    /// Serves one client request; failures become error responses, never errors.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<ProxyBody> {
        match self.forward(request, client).await {
            Ok(response) => response.map(Either::Left),
            Err(error) => {
                match &error {
                    RouterError::EndpointsUnreachable { .. }
                    | RouterError::UpstreamFailed { .. } => {
                        tracing::warn!(%error, "proxying failed");
                    }
                    _ => tracing::debug!(%error, "request not routed"),
                }
                error.into_response()
            }
        }
    }

    async fn forward(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
    ) -> Result<Response<Incoming>, RouterError> {
        let host = request_host(&request).ok_or(RouterError::MissingHost)?;
        let host = normalize_host(host).into_owned();
        let Some(route) = self.table.lookup(&host) else {
            return Err(RouterError::UnknownRoute { host });
        };
        if route.endpoints().is_empty() {
            return Err(RouterError::NoEndpoints { host });
        }
        let request = upstream_request(request, client);
        let mut response = send_to_route(&route, request, &host).await?;
        strip_hop_by_hop(response.headers_mut());
        Ok(response)
    }
}

/// Tries the route's endpoints in round-robin order until one answers.
async fn send_to_route(
    route: &Route,
    request: Request<Incoming>,
    host: &str,
) -> Result<Response<Incoming>, RouterError> {
    let replay = Replay::of(&request);
    let mut request = match replay {
        // The body is known to be empty: sending none makes the request repeatable.
        Some(_) => request.map(|_| Either::Right(Empty::new())),
        None => request.map(Either::Left),
    };
    for endpoint in route.rotation() {
        // Pooled connections first (they skip the handshake), then one new connection.
        let mut connected = false;
        loop {
            let sender = match endpoint.pool.take() {
                Some(sender) => sender,
                None if connected => break,
                None => match pool::connect(endpoint).await {
                    Ok(sender) => {
                        connected = true;
                        sender
                    }
                    Err(error) => {
                        endpoint.mark_down();
                        tracing::warn!(
                            host,
                            endpoint = %format_args!("{}:{}", endpoint.host, endpoint.port),
                            app = ?endpoint.app,
                            %error,
                            "endpoint unreachable; trying the next one"
                        );
                        break;
                    }
                },
            };
            match send(endpoint, sender, request).await {
                Attempt::Answered(response) => return Ok(response),
                Attempt::NotSent(unsent) => request = unsent,
                Attempt::Failed(error) => {
                    let Some(replay) = &replay else {
                        return Err(RouterError::UpstreamFailed {
                            host: host.to_string(),
                            source: error,
                        });
                    };
                    tracing::warn!(
                        host,
                        endpoint = %format_args!("{}:{}", endpoint.host, endpoint.port),
                        %error,
                        "endpoint failed mid-request; replaying it on the next one"
                    );
                    request = replay.request();
                    break;
                }
            }
        }
    }
    Err(RouterError::EndpointsUnreachable {
        host: host.to_string(),
    })
}

/// Sends on one connection and returns it to the pool when the exchange completes.
async fn send(
    endpoint: &Arc<Endpoint>,
    mut sender: Sender,
    request: Request<UpstreamBody>,
) -> Attempt {
    match sender.try_send_request(request).await {
        Ok(response) => {
            pool::recycle(Arc::clone(endpoint), sender);
            Attempt::Answered(response)
        }
        Err(mut error) => match error.take_message() {
            Some(request) => Attempt::NotSent(request),
            None => Attempt::Failed(error.into_error()),
        },
    }
}

/// The host a request is for: its `Host` header, else the authority of an absolute URI.
fn request_host<B>(request: &Request<B>) -> Option<&str> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .filter(|host| !host.is_empty())
}

/// Rewrites a client request for the app: origin-form URI, HTTP/1.1, forwarding headers.
fn upstream_request(request: Request<Incoming>, client: SocketAddr) -> Request<Incoming> {
    let (mut parts, body) = request.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if !parts.headers.contains_key(header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(value) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(header::HOST, value);
    }
    add_forwarding(&mut parts.headers, client.ip());
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    parts.uri = Uri::from(path);
    parts.version = Version::HTTP_11;
    Request::from_parts(parts, body)
}
