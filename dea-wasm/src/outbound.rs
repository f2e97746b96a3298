//! Outbound HTTP from guests ([`WasiHttpHooks::send_request`]): allowed only to hosts on the app's
//! allow-list, resolved here, checked address by address, and connected to by the checked address
//! (never resolved again), so DNS rebinding cannot slip a private address past the check.
//! Anything refused is `HttpRequestDenied` for the guest, a log line and a `denied` event.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::uri::Scheme;
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use nimbus_protocol::messages::EventKind;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::egress::EgressPolicy;
use crate::notices::Notices;

/// Connect timeout when the guest sets none.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The `x-nimbus-error`-style reason of refused egress.
pub(crate) const EGRESS_DENIED: &str = "egress_denied";

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;

/// The wasi:http hooks of one request's store.
pub(crate) struct OutboundHooks {
    pub(crate) policy: Arc<EgressPolicy>,
    pub(crate) notices: Notices,
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> SendFuture {
        let policy = self.policy.clone();
        let notices = self.notices.clone();
        Box::new(async move {
            let connect_timeout = options
                .and_then(|o| o.connect_timeout)
                .unwrap_or(CONNECT_TIMEOUT);
            let uri = request.uri().clone();
            let target = match checked_target(&policy, &uri).await {
                Ok(target) => target,
                Err(Refusal::Denied(why)) => {
                    notices.report(EventKind::Denied, EGRESS_DENIED, why);
                    return Err(Error::HttpRequestDenied);
                }
                Err(Refusal::Failed(error)) => return Err(error),
            };
            send(request, target, connect_timeout).await
        })
    }
}

/// Where a request may go: the checked addresses, and the name for TLS.
struct Target {
    addresses: Vec<SocketAddr>,
    host: String,
    tls: bool,
}

enum Refusal {
    Denied(String),
    Failed(Error),
}

async fn checked_target(policy: &EgressPolicy, uri: &http::Uri) -> Result<Target, Refusal> {
    let host = uri
        .host()
        .ok_or(Refusal::Failed(Error::HttpRequestUriInvalid))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tls = uri.scheme() == Some(&Scheme::HTTPS);
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    if !policy.allows_host(&host, port) {
        return Err(Refusal::Denied(format!(
            "outbound request to {host}:{port} denied: the host is not in the app's allowed_outbound_hosts"
        )));
    }
    let resolved: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(addresses) => addresses.collect(),
        Err(_) => {
            return Err(Refusal::Failed(Error::DnsError {
                rcode: None,
                info_code: None,
            }));
        }
    };
    let addresses: Vec<SocketAddr> = resolved
        .iter()
        .copied()
        .filter(|a| policy.allows_address(a.ip()))
        .collect();
    if addresses.is_empty() {
        let listed: Vec<String> = resolved.iter().map(|a| a.ip().to_string()).collect();
        return Err(Refusal::Denied(format!(
            "outbound request to {host}:{port} denied: it resolves to non-public addresses ({})",
            listed.join(", ")
        )));
    }
    Ok(Target {
        addresses,
        host,
        tls,
    })
}

async fn send(
    mut request: http::Request<WasiBody>,
    target: Target,
    connect_timeout: Duration,
) -> Result<(http::Response<WasiBody>, IoFuture), Error> {
    let stream = connect(&target.addresses, connect_timeout).await?;
    // The request line carries only the path; the Host header (set by wasmtime) names the host.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    *request.uri_mut() = path;
    if target.tls {
        let stream = tls(stream, &target.host).await?;
        exchange(stream, request).await
    } else {
        exchange(stream, request).await
    }
}

async fn connect(addresses: &[SocketAddr], limit: Duration) -> Result<TcpStream, Error> {
    let mut last = Error::ConnectionRefused;
    for address in addresses {
        match tokio::time::timeout(limit, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(error)) => last = Error::Connect(error),
            Err(_) => last = Error::ConnectionTimeout,
        }
    }
    Err(last)
}

async fn tls(
    stream: TcpStream,
    host: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
    use tokio_rustls::rustls;
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(Error::Tls)
}

/// Sends the request over `stream`; the returned future finishes with the connection.
async fn exchange<S>(
    stream: S,
    request: http::Request<WasiBody>,
) -> Result<(http::Response<WasiBody>, IoFuture), Error>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(Error::from)?;
    let driver = AbortOnDrop(tokio::spawn(connection));
    let response = sender.send_request(request).await.map_err(Error::from)?;
    let response = response.map(|body| body.map_err(Error::from).boxed_unsync());
    let io: IoFuture = Box::new(async move {
        let mut driver = driver;
        match (&mut driver.0).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(Error::from(error)),
            Err(_) => Err(Error::ConnectionTerminated),
        }
    });
    Ok((response, io))
}

/// The connection task dies with the guest's request instead of outliving it.
struct AbortOnDrop(JoinHandle<Result<(), hyper::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
