//! Serving one HTTP request with a fresh guest instance. Before the guest runs, the request
//! passes the body-size check and admission (instance and DEA concurrency); then an HTTP
//! component is called here, following wasmtime-wasi-http's `ProxyPre` pattern (the guest runs
//! in its own task and hands its response over a oneshot, so the body streams while the guest
//! keeps running), and a command runs the CGI way in `wagi`. For both, a supervisor task
//! enforces the wall-clock limit, reports how the guest ended and checks the scratch directory
//! afterwards.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt as _;
use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use nimbus_protocol::Limits;
use nimbus_protocol::messages::EventKind;
use tokio::sync::oneshot;
use wasmtime::Store;
use wasmtime::component::Resource;
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};

use crate::admission::{ADMISSION_WAIT, Admission, Admitted};
use crate::body::{LimitedBody, declared_length};
use crate::egress::EgressPolicy;
use crate::engine::{EpochClock, Prepared};
use crate::failure::{Failure, RunLimits, Stage};
use crate::guest::{CgiIo, GuestState, StoreSetup, new_store};
use crate::notices::Notices;
use crate::scratch::{SCRATCH_LIMIT, Scratch};

/// Everything needed to serve requests of one instance; shared by its connections.
pub(crate) struct AppServer {
    pub(crate) prepared: Prepared,
    /// The app's first route; health probes name it as their `Host`.
    pub(crate) host: String,
    pub(crate) clock: EpochClock,
    /// The guest environment (`VCAP_APPLICATION`, `PORT`, user env).
    pub(crate) env: Vec<(String, String)>,
    pub(crate) limits: Limits,
    /// Fuel per request: the app's limit or the DEA's default; `None` when the DEA does not
    /// meter fuel.
    pub(crate) fuel: Option<u64>,
    pub(crate) notices: Notices,
    pub(crate) egress: Arc<EgressPolicy>,
    pub(crate) admission: Admission,
    pub(crate) scratch: Arc<Scratch>,
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

    /// [`AppServer::handle`] for any request body; benchmarks call it without a socket.
    pub(crate) async fn run<B>(
        self: &Arc<Self>,
        request: Request<B>,
    ) -> Result<Response<HyperOutgoingBody>, Failure>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let max_body = self.limits.max_body_bytes;
        if declared_length(&request).is_some_and(|length| length > max_body) {
            crate::body::drain(request.into_body());
            return Err(self.report(Failure::BodyTooLarge(max_body)));
        }
        let admitted = self
            .admission
            .admit(ADMISSION_WAIT)
            .await
            .ok_or_else(|| self.report(Failure::Overloaded))?;
        match &self.prepared {
            Prepared::Http(pre) => self.run_component(pre.clone(), request, admitted).await,
            Prepared::Wagi(pre) => crate::wagi::run(self, pre.clone(), request, admitted).await,
        }
    }

    /// Calls an HTTP component's handler with the request.
    async fn run_component<B>(
        self: &Arc<Self>,
        pre: ProxyPre<GuestState>,
        request: Request<B>,
        admitted: Admitted,
    ) -> Result<Response<HyperOutgoingBody>, Failure>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let max_body = self.limits.max_body_bytes;
        let overflowed = Arc::new(AtomicBool::new(false));
        let request = request.map(|body| LimitedBody::new(body, max_body, overflowed.clone()));
        let mut store = self
            .new_store(None)
            .map_err(|e| self.report(Failure::Internal(format!("{e:#}"))))?;
        let (sender, receiver) = oneshot::channel();
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .map_err(|e| self.report(Failure::BadRequest(format!("{e:#}"))))?;
        let outparam = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(|e| self.report(Failure::Internal(format!("{e:#}"))))?;

        let guest = run_guest(pre, store, incoming, outparam, self.run_limits());
        // One task runs the guest under its supervisor, apart from this one, so the response
        // body streams while the guest keeps running.
        let supervisor = tokio::spawn(supervise(guest, self.clone(), overflowed.clone(), admitted));

        // A body over the limit wins over whatever the guest made of it; the supervisor
        // reports it once the guest is done.
        let too_large = || overflowed.load(Ordering::Relaxed);
        match receiver.await {
            // The supervisor keeps watching the guest while the body streams.
            Ok(Ok(_)) | Ok(Err(_)) if too_large() => Err(Failure::BodyTooLarge(max_body)),
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

    /// What a guest run of this instance may use, to classify how it ended.
    pub(crate) fn run_limits(&self) -> RunLimits {
        RunLimits {
            timeout_ms: self.limits.timeout_ms,
            // Only named when fuel runs out, which needs metering.
            fuel: self.fuel.unwrap_or_default(),
            memory_mb: self.limits.memory_mb,
            grow_denied: false,
        }
    }

    /// A fresh store for one request of this instance; `cgi` replaces its stdio and adds to its
    /// environment for a WAGI run.
    pub(crate) fn new_store(&self, cgi: Option<CgiIo>) -> anyhow::Result<Store<GuestState>> {
        new_store(&StoreSetup {
            engine: self.prepared.engine(),
            clock: &self.clock,
            env: &self.env,
            limits: self.limits,
            fuel: self.fuel,
            egress: &self.egress,
            notices: &self.notices,
            scratch: self.scratch.path(),
            cgi,
        })
    }

    /// Reports a failure (log line, event), then returns it.
    pub(crate) fn report(&self, failure: Failure) -> Failure {
        self.notices.failure(&failure);
        failure
    }

    /// Empties the scratch directory if the request left it over its cap.
    async fn enforce_scratch(&self) {
        // Most requests leave /tmp empty: a look costs three system calls, cheaper than a trip
        // to the blocking pool for the full walk.
        if self.scratch.is_empty() {
            return;
        }
        let scratch = self.scratch.clone();
        let Ok(Some(size)) = tokio::task::spawn_blocking(move || scratch.enforce()).await else {
            return;
        };
        self.notices.report(
            EventKind::LimitExceeded,
            SCRATCH_LIMIT,
            format!(
                "the scratch directory /tmp held {size} bytes, over its cap of {} bytes; it was emptied",
                self.scratch.cap()
            ),
        );
    }
}

/// Instantiates the guest and calls its `wasi:http/incoming-handler`.
async fn run_guest(
    prepared: ProxyPre<GuestState>,
    mut store: Store<GuestState>,
    incoming: Resource<HostIncomingRequest>,
    outparam: Resource<HostResponseOutparam>,
    run: RunLimits,
) -> Result<(), Failure> {
    let result = match prepared.instantiate_async(&mut store).await {
        Ok(proxy) => proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, incoming, outparam)
            .await
            .map_err(|e| (e, Stage::Handle)),
        Err(error) => Err((error, Stage::Instantiate)),
    };
    result.map_err(|(error, stage)| {
        let run = RunLimits {
            grow_denied: store.data().grow_denied(),
            ..run
        };
        Failure::from_guest_error(&error, stage, run)
    })
}

/// Runs a guest to its end under the wall-clock limit, which covers host calls the epoch cannot
/// interrupt (a guest sleeping in `wasi:clocks`); reports how the guest ended, and frees the
/// request's admission slots only once the guest is gone.
pub(crate) async fn supervise(
    guest: impl Future<Output = Result<(), Failure>>,
    server: Arc<AppServer>,
    overflowed: Arc<AtomicBool>,
    admitted: Admitted,
) -> Result<(), Failure> {
    let limit = Duration::from_millis(server.limits.timeout_ms);
    // A panic in host code ends this request, not the DEA's worker thread's other work.
    let guest = std::panic::AssertUnwindSafe(guest).catch_unwind();
    let mut outcome = match tokio::time::timeout(limit, guest).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_panic)) => Err(Failure::Internal("the guest's host code panicked".into())),
        // The guest future is dropped, and its store with it, which drops the response
        // outparam too.
        Err(_) => Err(Failure::Timeout(server.limits.timeout_ms)),
    };
    drop(admitted);
    if overflowed.load(Ordering::Relaxed) {
        outcome = Err(Failure::BodyTooLarge(server.limits.max_body_bytes));
    }
    if let Err(failure) = &outcome {
        server.notices.failure(failure);
    }
    server.enforce_scratch().await;
    outcome
}
