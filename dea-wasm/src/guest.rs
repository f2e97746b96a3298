//! What one request's [`Store`] holds, and how it is set up: WASI with the instance's
//! environment and logged stdio, wasi:http with outbound requests denied, memory limits, and an
//! epoch deadline for the wall-clock limit.

use std::time::Duration;

use nimbus_protocol::Limits;
use nimbus_protocol::messages::LogStream;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::engine::EpochClock;
use crate::logs::AppLog;

/// The data of one request's store.
pub(crate) struct GuestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: DenyOutbound,
    limits: StoreLimits,
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for GuestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// wasi:http lets guests call anywhere, loopback included (RUNTIME-NOTES.md); on a multi-tenant
/// DEA that would reach other tenants' instances and the bus. Outbound access is granted per app
/// by a later issue; until then every outbound request is refused.
struct DenyOutbound;

impl WasiHttpHooks for DenyOutbound {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
                )>,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// Everything a store needs that is fixed per instance.
pub(crate) struct StoreSetup<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) clock: &'a EpochClock,
    pub(crate) env: &'a [(String, String)],
    pub(crate) limits: Limits,
    pub(crate) log: &'a AppLog,
}

/// A fresh store for one request, its deadline counted from now.
pub(crate) fn new_store(setup: &StoreSetup<'_>) -> Store<GuestState> {
    let wasi = WasiCtx::builder()
        .envs(setup.env)
        .stdout(setup.log.guest_output(LogStream::Out))
        .stderr(setup.log.guest_output(LogStream::Err))
        .build();
    let memory =
        usize::try_from(setup.limits.memory_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
    let limits = StoreLimitsBuilder::new()
        .memory_size(memory)
        // A failed memory.grow returns -1 to the guest, as on a native OOM; Rust guests then
        // abort, which surfaces as a trap.
        .trap_on_grow_failure(false)
        .build();
    let state = GuestState {
        wasi,
        http: WasiHttpCtx::new(),
        table: ResourceTable::new(),
        hooks: DenyOutbound,
        limits,
    };
    let mut store = Store::new(setup.engine, state);
    store.limiter(|state| &mut state.limits);

    // Check the clock every tick: yield to other tasks until the deadline, then interrupt.
    let deadline = setup
        .clock
        .deadline_after(Duration::from_millis(setup.limits.timeout_ms));
    let clock = setup.clock.clone();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        Ok(if clock.now() >= deadline {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Yield(1)
        })
    });
    store
}
