//! The DEA's behaviour, free of NATS subscriptions: start an instance (checking that it is
//! ready before routing to it, and that it stays healthy after), stop instances, describe
//! itself, evacuate, shut down. [`crate::agent`] feeds it from the bus.
//!
//! An instance crashes when it cannot start (its droplet does not compile or instantiate, or
//! its health check fails before it is routed) or when its liveness probes fail; each crash is
//! a `droplet.exited` with reason CRASHED, a line in the app's log and an event, and the health
//! manager decides when it restarts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use nimbus_bus::Registrar;
use nimbus_protocol::messages::{
    AppEvent, DeaAdvertise, DeaHeartbeat, DropletExited, EventKind, ExitReason, LogStream,
    RouteRegistration, StartReply, StartRequest, StopRequest,
};
use nimbus_protocol::subjects;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::admission::Admission;
use crate::compiled::CompileStats;
use crate::config::Config;
use crate::droplets::{Droplets, check_sha256};
use crate::egress::EgressPolicy;
use crate::engine::Runtime;
use crate::http::AppServer;
use crate::instance::Instance;
use crate::logs::{AppLog, LogRates};
use crate::notices::Notices;
use crate::pool::Allocator;
use crate::probe;
use crate::scratch::{self, Scratch};
use crate::table::{Slot, Table};
use crate::vcap;

/// How long an evacuating DEA keeps serving a route after unregistering it, so every router
/// has processed the unregistration (and its replacement's registration) before the listener
/// closes. Loopback and LAN NATS deliver in milliseconds; this leaves a wide margin.
const UNREGISTER_GRACE: Duration = Duration::from_secs(1);

/// Why a start failed: refused before any work (not the app's fault), or the instance crashed.
enum StartError {
    Refused(anyhow::Error),
    Crashed(String),
}

/// One DEA: its runtime, droplet cache, instances and route registrations.
pub(crate) struct Dea {
    pub(crate) config: Config,
    nats: async_nats::Client,
    registrar: Registrar,
    runtime: Runtime,
    droplets: Droplets,
    table: Table,
    /// The DEA-wide request cap, shared by every instance's admission.
    requests: Arc<Semaphore>,
    /// Set once the DEA is leaving: it takes no new instances and asks for replacements.
    evacuating: AtomicBool,
}

impl Dea {
    pub(crate) async fn new(config: Config, nats: async_nats::Client) -> anyhow::Result<Dea> {
        let runtime = Runtime::new(&config)?;
        scratch::remove_leftovers(&config.data_dir);
        let registrar = Registrar::start(nats.clone())
            .await
            .context("failed to start the route registrar")?;
        Ok(Dea {
            droplets: Droplets::new(nats.clone(), &config.data_dir),
            requests: Arc::new(Semaphore::new(config.max_concurrent_requests as usize)),
            config,
            nats,
            registrar,
            runtime,
            table: Table::default(),
            evacuating: AtomicBool::new(false),
        })
    }

    pub(crate) fn allocator(&self) -> Allocator {
        self.runtime.allocator()
    }

    pub(crate) fn compile_stats(&self) -> CompileStats {
        self.runtime.compile_stats()
    }

    /// Starts one instance; every failure becomes [`StartReply::Failed`] with a clear message.
    #[tracing::instrument(skip_all, fields(app_id = %request.app_id, index = request.index))]
    pub(crate) async fn start(self: &Arc<Self>, request: StartRequest) -> StartReply {
        let instance_id = Uuid::new_v4();
        let request = Arc::new(request);
        match self.try_start(&request, instance_id).await {
            Ok(()) => {
                tracing::info!(%instance_id, "instance started");
                StartReply::Started { instance_id }
            }
            Err(StartError::Refused(error)) => {
                let message = format!("{error:#}");
                tracing::warn!(%instance_id, %message, "refused to start an instance");
                StartReply::Failed { message }
            }
            Err(StartError::Crashed(description)) => {
                tracing::warn!(%instance_id, %description, "instance crashed while starting");
                self.report_crash(&request, instance_id, &description).await;
                StartReply::Failed {
                    message: description,
                }
            }
        }
    }

    async fn try_start(
        self: &Arc<Self>,
        request: &Arc<StartRequest>,
        instance_id: Uuid,
    ) -> Result<(), StartError> {
        self.check(request).map_err(StartError::Refused)?;
        self.table
            .reserve(instance_id, request.clone(), self.config.memory_mb)
            .map_err(|e| StartError::Refused(e.into()))?;
        let (instance, server) = match self.launch(request, instance_id).await {
            Ok((instance, server)) => (Arc::new(instance), server),
            Err(error) => {
                self.table.remove(instance_id);
                return Err(StartError::Crashed(error));
            }
        };
        // Register before marking RUNNING: a stop that lands in between finds the slot and
        // unregisters, and a stop that landed earlier removed the slot, so we undo it here.
        self.registrar.add(instance.route.clone()).await;
        if !self.table.set_running(instance_id, instance.clone()) {
            self.registrar.remove(&instance.route).await;
            instance.stop().await;
            return Err(StartError::Refused(anyhow::anyhow!(
                "the instance was stopped while it was starting"
            )));
        }
        if let Some(endpoint) = &request.health_check_http_endpoint {
            self.watch_liveness(&instance, server, instance_id, endpoint.clone());
        }
        Ok(())
    }

    /// Crashes the instance once its liveness probes fail; ends when the instance stops.
    fn watch_liveness(
        self: &Arc<Self>,
        instance: &Instance,
        server: Arc<AppServer>,
        instance_id: Uuid,
        endpoint: String,
    ) {
        let dea = Arc::clone(self);
        let stopped = instance.stopped();
        let (interval, allowed) = (
            self.config.health_check_interval,
            self.config.health_check_failures,
        );
        tokio::spawn(async move {
            tokio::select! {
                _ = stopped.cancelled() => {}
                reason = probe::until_unhealthy(server, endpoint, interval, allowed) => {
                    dea.crash(instance_id, &reason).await;
                }
            }
        });
    }

    /// Takes a running instance out of service as CRASHED.
    async fn crash(&self, instance_id: Uuid, description: &str) {
        let Some(slot) = self.table.take(instance_id) else {
            return; // Stopped meanwhile.
        };
        tracing::warn!(%instance_id, %description, "instance crashed");
        self.retire(slot, ExitReason::Crashed, description).await;
    }

    /// Refuses requests no DEA could honour, before any work is done.
    fn check(&self, request: &StartRequest) -> anyhow::Result<()> {
        check_sha256(&request.droplet.sha256)?;
        let limits = &request.limits;
        if limits.memory_mb == 0 || limits.timeout_ms == 0 || limits.fuel == Some(0) {
            bail!("the memory, timeout and fuel limits must be greater than zero");
        }
        if limits.memory_mb > self.config.max_instance_memory_mb {
            bail!(
                "the app asks for {} MB of memory; this DEA allows at most {} MB per instance",
                limits.memory_mb,
                self.config.max_instance_memory_mb
            );
        }
        if self.is_evacuating() {
            bail!("the DEA is evacuating");
        }
        Ok(())
    }

    /// Prepares the droplet, builds the instance and checks it is ready; the error is the
    /// crash's description.
    async fn launch(
        &self,
        request: &StartRequest,
        instance_id: Uuid,
    ) -> Result<(Instance, Arc<AppServer>), String> {
        let (listener, server, route) = self
            .build(request, instance_id)
            .await
            .map_err(|error| format!("{error:#}"))?;
        if let Err(crash) =
            probe::ready(&server, request.health_check_http_endpoint.as_deref()).await
        {
            let scratch = server.scratch.clone();
            let _ = tokio::task::spawn_blocking(move || scratch.remove()).await;
            return Err(crash);
        }
        Ok((Instance::serve(listener, server.clone(), route), server))
    }

    /// The instance's listener, request handler and route, not yet serving.
    async fn build(
        &self,
        request: &StartRequest,
        instance_id: Uuid,
    ) -> anyhow::Result<(TcpListener, Arc<AppServer>, RouteRegistration)> {
        let sha256 = &request.droplet.sha256;
        let prepared = self
            .runtime
            .prepare(
                sha256,
                request.droplet.kind,
                self.droplets
                    .precompiled(sha256, self.runtime.engine_hash()),
                self.droplets.fetch(sha256),
            )
            .await?;
        let listener = TcpListener::bind((self.config.host, 0))
            .await
            .with_context(|| format!("failed to listen on {}", self.config.host))?;
        let port = listener
            .local_addr()
            .context("failed to read the instance's port")?
            .port();
        let rates = LogRates {
            lines_per_second: self.config.log_lines_per_second,
            bytes_per_second: self.config.log_bytes_per_second,
        };
        let log = AppLog::spawn(self.nats.clone(), request.app_id, request.index, rates);
        let scratch = Scratch::create(
            &self.config.data_dir,
            instance_id,
            self.config.scratch_bytes,
        )?;
        let server = Arc::new(AppServer {
            prepared,
            host: request.uris.first().cloned().unwrap_or_default(),
            clock: self.runtime.clock().clone(),
            env: vcap::environment(request, instance_id, port),
            limits: request.limits,
            fuel: self
                .config
                .fuel_metering
                .then(|| request.limits.fuel.unwrap_or(self.config.default_fuel)),
            notices: Notices::spawn(self.nats.clone(), request.app_id, request.index, log),
            egress: Arc::new(EgressPolicy::new(
                &request.allowed_outbound_hosts,
                self.config.allow_private_egress,
            )),
            admission: Admission::new(request.limits.max_concurrency, self.requests.clone()),
            scratch: Arc::new(scratch),
        });
        let route = RouteRegistration {
            host: self.config.host.to_string(),
            port,
            uris: request.uris.clone(),
            app: Some(request.app_id),
            private_instance_id: Some(instance_id.to_string()),
        };
        Ok((listener, server, route))
    }

    /// Stops every matching instance and reports each as STOPPED.
    pub(crate) async fn stop(&self, request: &StopRequest) {
        let slots = self.table.take_matching(request);
        let stops = slots
            .into_iter()
            .map(|slot| self.retire(slot, ExitReason::Stopped, "stopped on request"));
        futures::future::join_all(stops).await;
    }

    /// Unregisters and stops an instance already removed from the table, then reports it.
    async fn retire(&self, slot: Slot, reason: ExitReason, description: &str) {
        if let Some(instance) = &slot.running {
            self.registrar.remove(&instance.route).await;
            if reason == ExitReason::DeaEvacuation {
                // A router that has not processed the unregistration yet still sends here; if
                // the listener closed now and its replacement's route were not there yet
                // either, the router would have nowhere to retry. Serve through the grace.
                tokio::time::sleep(UNREGISTER_GRACE).await;
            }
            instance.stop().await;
        }
        if reason == ExitReason::Crashed {
            self.report_crash(&slot.request, slot.instance_id, description)
                .await;
        } else {
            self.report_exit(&slot.request, slot.instance_id, reason, description)
                .await;
        }
        tracing::info!(instance_id = %slot.instance_id, ?reason, "instance stopped");
    }

    /// A crash is an exit, a line in the app's log and an event.
    async fn report_crash(&self, request: &StartRequest, instance_id: Uuid, description: &str) {
        let index = request.index;
        nimbus_bus::log_line(
            &self.nats,
            request.app_id,
            &format!("DEA/{index}"),
            LogStream::Err,
            format!("instance {index} crashed: {description}"),
        )
        .await;
        let event = AppEvent {
            app_id: request.app_id,
            kind: EventKind::Crashed,
            reason: "crashed".to_string(),
            description: description.to_string(),
            instance_index: Some(index),
            timestamp: nimbus_protocol::now_ms(),
        };
        if let Err(error) =
            nimbus_bus::publish(&self.nats, subjects::events(request.app_id), &event).await
        {
            tracing::warn!(
                error = format!("{error:#}"),
                "failed to report a crash event"
            );
        }
        self.report_exit(request, instance_id, ExitReason::Crashed, description)
            .await;
    }

    async fn report_exit(
        &self,
        request: &StartRequest,
        instance_id: Uuid,
        reason: ExitReason,
        description: &str,
    ) {
        let exited = DropletExited {
            app_id: request.app_id,
            version: request.version,
            instance_id,
            index: request.index,
            reason,
            exit_status: None,
            exit_description: description.to_string(),
        };
        if let Err(error) = nimbus_bus::publish(&self.nats, subjects::DROPLET_EXITED, &exited).await
        {
            tracing::warn!(
                error = format!("{error:#}"),
                "failed to report an exited instance"
            );
        }
    }

    pub(crate) fn is_evacuating(&self) -> bool {
        self.evacuating.load(Ordering::Relaxed)
    }

    pub(crate) fn advertisement(&self) -> DeaAdvertise {
        self.table
            .advertise(&self.config.id, self.config.memory_mb, self.is_evacuating())
    }

    pub(crate) fn heartbeat(&self) -> DeaHeartbeat {
        self.table.heartbeat(
            &self.config.id,
            &self.config.host.to_string(),
            self.is_evacuating(),
        )
    }

    /// Announces that the DEA is leaving: it takes no new instances, and heartbeats say its
    /// instances need replacements elsewhere.
    pub(crate) fn begin_evacuation(&self) {
        self.evacuating.store(true, Ordering::Relaxed);
    }

    /// `(app, index)` of every instance, for evacuation to find replacements of.
    pub(crate) fn indices(&self) -> Vec<(Uuid, u32)> {
        self.table.indices()
    }

    /// Unregisters every route, stops every instance (reporting `reason`: DEA_SHUTDOWN, or
    /// DEA_EVACUATION once replacements run elsewhere) and the ticker; `last_words` is sent
    /// before the final flush.
    pub(crate) async fn shutdown(&self, reason: ExitReason, last_words: impl Future<Output = ()>) {
        let slots = self.table.close();
        let description = match reason {
            ExitReason::DeaEvacuation => "the DEA evacuated; the instance runs elsewhere",
            _ => "the DEA is shutting down",
        };
        // Concurrently, so every route is unregistered before any instance drains.
        let stops = slots
            .into_iter()
            .map(|slot| self.retire(slot, reason, description));
        futures::future::join_all(stops).await;
        // Unregisters whatever a start racing with shutdown registered, and stops re-registering.
        self.registrar.shutdown().await;
        self.runtime.shutdown();
        last_words.await;
        nimbus_bus::flush(&self.nats).await;
    }
}
