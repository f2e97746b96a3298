//! Serving one HTTP request with a fresh guest instance, following wasmtime-wasi-http's
//! `ProxyPre` pattern: the guest runs in its own task and hands its response over a oneshot, so
//! the body streams while the guest keeps running.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response};
use nimbus_protocol::Limits;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wasmtime::Store;
use wasmtime::component::Resource;
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};

use crate::engine::{EpochClock, Prepared};
use crate::failure::{Failure, Stage};
use crate::guest::{GuestState, StoreSetup, new_store};
use crate::logs::AppLog;

/// Everything needed to serve requests of one instance; shared by its connections.
pub(crate) struct AppServer {
    pub(crate) prepared: Prepared,
    pub(crate) clock: EpochClock,
    /// The guest environment (`VCAP_APPLICATION`, `PORT`, user env).
    pub(crate) env: Vec<(String, String)>,
    pub(crate) limits: Limits,
    pub(crate) log: AppLog,
}

impl AppServer {
    /// Answers one request; failures become responses, never errors, so the connection lives.
    pub(crate) async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<HyperOutgoingBody>, Infallible> {
        Ok(self
            .run(request)
            .await
            .unwrap_or_else(|failure| failure.response()))
    }

    async fn run(
        &self,
        request: Request<Incoming>,
    ) -> Result<Response<HyperOutgoingBody>, Failure> {
        let mut store = new_store(&StoreSetup {
            engine: self.prepared.engine(),
            clock: &self.clock,
            env: &self.env,
            limits: self.limits,
            log: &self.log,
        });
        let (sender, receiver) = oneshot::channel();
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .map_err(|e| Failure::BadRequest(format!("{e:#}")))?;
        let outparam = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(|e| self.report(Failure::Internal(format!("{e:#}"))))?;

        let guest = tokio::spawn(run_guest(
            self.prepared.clone(),
            store,
            incoming,
            outparam,
            self.limits.timeout_ms,
        ));
        let supervisor = tokio::spawn(supervise(
            guest,
            Duration::from_millis(self.limits.timeout_ms),
            self.limits.timeout_ms,
            self.log.clone(),
        ));

        match receiver.await {
            // The supervisor keeps watching the guest while the body streams.
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(self.report(Failure::GuestError(format!("{code:?}")))),
            // The outparam was dropped with the store: the guest is done, one way or another.
            Err(_) => match supervisor.await {
                Ok(Ok(())) => Err(self.report(Failure::NoResponse)),
                // Already reported by the supervisor.
                Ok(Err(failure)) => Err(failure),
                Err(error) => Err(self.report(Failure::Internal(format!(
                    "the supervisor task failed: {error}"
                )))),
            },
        }
    }

    /// Writes a failure to the app's log (and the DEA's, if it is ours), then returns it.
    fn report(&self, failure: Failure) -> Failure {
        report(&self.log, &failure);
        failure
    }
}

fn report(log: &AppLog, failure: &Failure) {
    if failure.is_host_error() {
        tracing::error!(%failure, "request failed on the host side");
    } else {
        tracing::debug!(%failure, "request failed in the guest");
    }
    log.platform(failure.to_string());
}

/// Instantiates the guest and calls its `wasi:http/incoming-handler`.
async fn run_guest(
    prepared: Prepared,
    mut store: Store<GuestState>,
    incoming: Resource<HostIncomingRequest>,
    outparam: Resource<HostResponseOutparam>,
    timeout_ms: u64,
) -> Result<(), Failure> {
    let proxy = prepared
        .instantiate_async(&mut store)
        .await
        .map_err(|e| Failure::from_guest_error(&e, Stage::Instantiate, timeout_ms))?;
    proxy
        .wasi_http_incoming_handler()
        .call_handle(&mut store, incoming, outparam)
        .await
        .map_err(|e| Failure::from_guest_error(&e, Stage::Handle, timeout_ms))
}

/// Enforces the wall-clock limit on the whole guest run, including host calls the epoch cannot
/// interrupt (a guest sleeping in `wasi:clocks`), and reports how the guest ended.
async fn supervise(
    mut guest: JoinHandle<Result<(), Failure>>,
    limit: Duration,
    timeout_ms: u64,
    log: AppLog,
) -> Result<(), Failure> {
    let outcome = match tokio::time::timeout(limit, &mut guest).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(error)) => Err(Failure::Internal(format!("the guest task failed: {error}"))),
        Err(_) => {
            // Dropping the store with the task also drops the response outparam.
            guest.abort();
            Err(Failure::Timeout(timeout_ms))
        }
    };
    if let Err(failure) = &outcome {
        report(&log, failure);
    }
    outcome
}
