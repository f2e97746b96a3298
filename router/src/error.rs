//! Why the router could not serve a request, and how that looks to the client.
//!
//! As gorouter's `X-Cf-RouterError`, every error response names its cause in a header so an
//! operator can tell "the router has no such route" from "the app is down".

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{Either, Full};

use crate::proxy::ProxyBody;

/// Header naming the cause of an error response (`unknown_route`, `no_endpoints`, …).
pub const ERROR_HEADER: &str = "x-nimbus-router-error";

/// A request the router could not forward.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The request named no host at all.
    #[error("the request has no Host header")]
    MissingHost,
    /// No app is mapped to the host.
    #[error("no route for host {host}")]
    UnknownRoute { host: String },
    /// The host is known but none of its endpoints is alive (all pruned).
    #[error("no live endpoint for host {host}")]
    NoEndpoints { host: String },
    /// Connecting to every endpoint of the host failed; the request was never sent.
    #[error("no endpoint of host {host} could be reached")]
    EndpointsUnreachable { host: String },
    /// The endpoint failed after the request was (partly) sent, so it cannot be retried.
    #[error("the endpoint of host {host} failed: {source}")]
    UpstreamFailed {
        host: String,
        #[source]
        source: hyper::Error,
    },
}

impl RouterError {
    /// The HTTP status the client sees.
    pub fn status(&self) -> StatusCode {
        match self {
            RouterError::MissingHost => StatusCode::BAD_REQUEST,
            RouterError::UnknownRoute { .. } => StatusCode::NOT_FOUND,
            RouterError::NoEndpoints { .. } => StatusCode::SERVICE_UNAVAILABLE,
            RouterError::EndpointsUnreachable { .. } | RouterError::UpstreamFailed { .. } => {
                StatusCode::BAD_GATEWAY
            }
        }
    }

    /// The value of [`ERROR_HEADER`].
    pub fn code(&self) -> &'static str {
        match self {
            RouterError::MissingHost => "missing_host",
            RouterError::UnknownRoute { .. } => "unknown_route",
            RouterError::NoEndpoints { .. } => "no_endpoints",
            RouterError::EndpointsUnreachable { .. } | RouterError::UpstreamFailed { .. } => {
                "endpoint_failure"
            }
        }
    }

    /// A short text response; upstream details stay in the log, not in front of the client.
    pub(crate) fn into_response(self) -> Response<ProxyBody> {
        let text = match &self {
            RouterError::UpstreamFailed { host, .. } => {
                format!("the app at {host} failed to answer\n")
            }
            other => format!("{other}\n"),
        };
        let mut response = Response::new(Either::Right(Full::new(Bytes::from(text))));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(ERROR_HEADER, HeaderValue::from_static(self.code()));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_causes_to_status_and_header() {
        let host = || "a.localhost".to_string();
        let unknown = RouterError::UnknownRoute { host: host() }.into_response();
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        assert_eq!(unknown.headers()[ERROR_HEADER], "unknown_route");
        let none = RouterError::NoEndpoints { host: host() };
        assert_eq!(none.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(none.code(), "no_endpoints");
        let down = RouterError::EndpointsUnreachable { host: host() };
        assert_eq!(down.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(down.code(), "endpoint_failure");
    }
}
