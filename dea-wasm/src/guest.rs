//! What one request's [`Store`] holds, and how it is set up: WASI with the instance's
//! environment, logged stdio and its scratch directory as `/tmp` (no other files); wasi:http
//! with outbound requests checked by `outbound`; memory and table limits; a fuel budget with
//! periodic yields; and an epoch deadline for the wall-clock limit.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use nimbus_protocol::Limits;
use nimbus_protocol::messages::LogStream;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::egress::EgressPolicy;
use crate::engine::EpochClock;
use crate::limiter::GuestLimiter;
use crate::notices::Notices;
use crate::outbound::OutboundHooks;
use crate::pool::FUEL_YIELD_INTERVAL;
use crate::scratch;

/// The data of one request's store.
pub(crate) struct GuestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutboundHooks,
    limiter: GuestLimiter,
}

impl GuestState {
    /// Whether the limiter refused a growth during this request.
    pub(crate) fn grow_denied(&self) -> bool {
        self.limiter.denied()
    }
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

/// Everything a store needs that is fixed per instance.
pub(crate) struct StoreSetup<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) clock: &'a EpochClock,
    pub(crate) env: &'a [(String, String)],
    pub(crate) limits: Limits,
    /// The fuel budget of one request (the app's, or the DEA's default); `None` when the DEA
    /// does not meter fuel.
    pub(crate) fuel: Option<u64>,
    pub(crate) egress: &'a Arc<EgressPolicy>,
    pub(crate) notices: &'a Notices,
    pub(crate) scratch: &'a Path,
    /// For a WAGI run: the request's CGI variables and body, and where the response goes.
    pub(crate) cgi: Option<CgiIo>,
}

/// A WAGI run's stdio and environment: stdin reads the request body, stdout collects the
/// response (up to its capacity), and the CGI variables follow the app's environment.
pub(crate) struct CgiIo {
    pub(crate) env: Vec<(String, String)>,
    pub(crate) stdin: MemoryInputPipe,
    pub(crate) stdout: MemoryOutputPipe,
}

/// A fresh store for one request, its deadline counted from now.
pub(crate) fn new_store(setup: &StoreSetup<'_>) -> anyhow::Result<Store<GuestState>> {
    let log = setup.notices.log();
    let mut wasi = WasiCtx::builder();
    wasi.envs(setup.env)
        .stderr(log.guest_output(LogStream::Err))
        .preopened_dir(setup.scratch, scratch::GUEST_PATH, FsPerms::ReadWrite)
        .map_err(anyhow::Error::from)
        .context("failed to open the scratch directory")?;
    match &setup.cgi {
        Some(cgi) => {
            wasi.envs(&cgi.env)
                .stdin(cgi.stdin.clone())
                .stdout(cgi.stdout.clone());
        }
        None => {
            wasi.stdout(log.guest_output(LogStream::Out));
        }
    }
    let wasi = wasi.build();
    let state = GuestState {
        wasi,
        http: WasiHttpCtx::new(),
        table: ResourceTable::new(),
        hooks: OutboundHooks {
            policy: setup.egress.clone(),
            notices: setup.notices.clone(),
        },
        limiter: GuestLimiter::new(setup.limits.memory_mb),
    };
    let mut store = Store::new(setup.engine, state);
    store.limiter(|state| &mut state.limiter);
    // Fuel starts at zero (RUNTIME-NOTES.md); yielding every interval keeps a busy guest from
    // holding an executor thread for its whole budget. An engine without metering rejects both
    // calls; its guests yield at epoch ticks only (below).
    if let Some(fuel) = setup.fuel {
        store.set_fuel(fuel).map_err(anyhow::Error::from)?;
        store
            .fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL))
            .map_err(anyhow::Error::from)?;
    }

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
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::logs::AppLog;
    use crate::pool::build_engine;
    use wasmtime::{Instance, Module, Trap};

    /// Counts its argument down to zero: a few instructions, each burning fuel, per iteration.
    const SPIN: &str = r#"(module (func (export "spin") (param i32)
        (loop $again
          (local.set 0 (i32.sub (local.get 0) (i32.const 1)))
          (br_if $again (local.get 0)))))"#;

    /// Runs `spin(1_000_000)` (a few million instructions) in a request's store on a DEA engine.
    async fn spin(fuel_metering: bool, fuel: Option<u64>) -> wasmtime::Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path().to_path_buf());
        config.max_instances = 4;
        config.fuel_metering = fuel_metering;
        let (engine, _) = build_engine(&config).unwrap();
        let (log, _lines) = AppLog::channel(0, 16);
        let (notices, _events) = Notices::channel(uuid::Uuid::new_v4(), 0, log);
        let mut store = new_store(&StoreSetup {
            engine: &engine,
            clock: &EpochClock::default(),
            env: &[],
            limits: Limits::default(),
            fuel,
            egress: &Arc::new(EgressPolicy::new(&[], false)),
            notices: &notices,
            scratch: dir.path(),
            cgi: None,
        })
        .unwrap();
        let module = Module::new(&engine, SPIN)?;
        let instance = Instance::new_async(&mut store, &module, &[]).await?;
        let spin = instance.get_typed_func::<i32, ()>(&mut store, "spin")?;
        spin.call_async(&mut store, 1_000_000).await
    }

    #[tokio::test]
    async fn an_engine_without_fuel_metering_runs_guests_without_fuel() {
        spin(false, None).await.unwrap();
    }

    #[tokio::test]
    async fn an_engine_with_fuel_metering_stops_guests_at_their_budget() {
        let error = spin(true, Some(1_000)).await.unwrap_err();
        assert_eq!(error.downcast_ref::<Trap>(), Some(&Trap::OutOfFuel));
    }
}
