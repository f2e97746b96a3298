//! Health checks of one instance. Before its route is registered (readiness) an instance must
//! instantiate, and answer its `health_check_http_endpoint` with a 2xx if the app declares one;
//! after (liveness) that endpoint is probed every interval, and enough failures in a row crash
//! the instance. Probes go through the instance's own request path, limits and all, so an
//! endpoint that traps, times out or runs out of fuel fails like any request would.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};

use crate::engine::Prepared;
use crate::http::AppServer;

/// Readiness probes tried before a start fails; a fresh instance serves every request, so
/// more attempts would only repeat the same answer.
const READINESS_ATTEMPTS: u32 = 3;
/// Pause between readiness attempts.
const READINESS_PAUSE: Duration = Duration::from_millis(200);
/// Longest a probe may take beyond the app's own request timeout.
const PROBE_GRACE: Duration = Duration::from_secs(1);

/// Checks that a new instance can serve; the error says why not, for `exit_description`.
pub(crate) async fn ready(server: &Arc<AppServer>, endpoint: Option<&str>) -> Result<(), String> {
    instantiates(server)
        .await
        .map_err(|error| format!("instantiation failed: {error:#}"))?;
    let Some(endpoint) = endpoint else {
        return Ok(());
    };
    let mut last = String::new();
    for attempt in 1..=READINESS_ATTEMPTS {
        match probe(server, endpoint).await {
            Ok(()) => return Ok(()),
            Err(failure) => last = failure,
        }
        if attempt < READINESS_ATTEMPTS {
            tokio::time::sleep(READINESS_PAUSE).await;
        }
    }
    Err(format!(
        "health check failed {READINESS_ATTEMPTS} times before the instance was routed: {last}"
    ))
}

/// Probes `endpoint` every `interval` until `allowed` probes in a row fail, then returns why;
/// the caller drops the future when the instance stops.
pub(crate) async fn until_unhealthy(
    server: Arc<AppServer>,
    endpoint: String,
    interval: Duration,
    allowed: u32,
) -> String {
    let mut failures = 0;
    loop {
        tokio::time::sleep(interval).await;
        match probe(&server, &endpoint).await {
            Ok(()) => failures = 0,
            Err(failure) => {
                failures += 1;
                server.notices.log().platform(format!(
                    "health check {failures}/{allowed} failed: {failure}"
                ));
                if failures >= allowed {
                    return format!("health check failed {failures} times in a row: {failure}");
                }
            }
        }
    }
}

/// One `GET endpoint`: 2xx is healthy; anything else, or no answer in time, is not.
async fn probe(server: &Arc<AppServer>, endpoint: &str) -> Result<(), String> {
    let request = http::Request::get(endpoint)
        .header(http::header::HOST, server.host.as_str())
        .header(http::header::USER_AGENT, "nimbus-health-check")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("GET {endpoint} cannot be sent: {e}"))?;
    let limit = Duration::from_millis(server.limits.timeout_ms).saturating_add(PROBE_GRACE);
    let answered = tokio::time::timeout(limit, async {
        let response = server.run(request).await.map_err(|failure| {
            format!(
                "GET {endpoint} answered {} ({})",
                failure.status().as_u16(),
                failure.code()
            )
        })?;
        let status = response.status();
        // Read the body so the guest runs to its end, as for any request.
        let _ = response.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("GET {endpoint} answered {}", status.as_u16()))
        }
    })
    .await;
    answered.unwrap_or_else(|_| Err(format!("GET {endpoint} did not answer within {limit:?}")))
}

/// Instantiates the droplet once in a request's store, without calling it.
async fn instantiates(server: &AppServer) -> anyhow::Result<()> {
    let mut store = server.new_store(None)?;
    match &server.prepared {
        Prepared::Http(pre) => pre.instantiate_async(&mut store).await.map(drop),
        Prepared::Wagi(pre) => pre.instantiate_async(&mut store).await.map(drop),
    }
    .map_err(anyhow::Error::from)
}
