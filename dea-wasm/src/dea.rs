//! The DEA's behaviour, free of NATS subscriptions: start an instance, stop instances, describe
//! itself, shut down. [`crate::agent`] feeds it from the bus.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, bail};
use nimbus_bus::Registrar;
use nimbus_protocol::messages::{
    DeaAdvertise, DeaHeartbeat, DropletExited, ExitReason, RouteRegistration, StartReply,
    StartRequest, StopRequest,
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
use crate::scratch::{self, Scratch};
use crate::table::{Slot, Table};
use crate::vcap;

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
    pub(crate) async fn start(&self, request: StartRequest) -> StartReply {
        let instance_id = Uuid::new_v4();
        match self.try_start(Arc::new(request), instance_id).await {
            Ok(()) => {
                tracing::info!(%instance_id, "instance started");
                StartReply::Started { instance_id }
            }
            Err(error) => {
                let message = format!("{error:#}");
                tracing::warn!(%instance_id, %message, "instance failed to start");
                StartReply::Failed { message }
            }
        }
    }

    async fn try_start(&self, request: Arc<StartRequest>, instance_id: Uuid) -> anyhow::Result<()> {
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
        self.table
            .reserve(instance_id, request.clone(), self.config.memory_mb)?;
        let instance = match self.launch(&request, instance_id).await {
            Ok(instance) => Arc::new(instance),
            Err(error) => {
                self.table.remove(instance_id);
                return Err(error);
            }
        };
        // Register before marking RUNNING: a stop that lands in between finds the slot and
        // unregisters, and a stop that landed earlier removed the slot, so we undo it here.
        self.registrar.add(instance.route.clone()).await;
        if !self.table.set_running(instance_id, instance.clone()) {
            self.registrar.remove(&instance.route).await;
            instance.stop().await;
            bail!("the instance was stopped while it was starting");
        }
        Ok(())
    }

    async fn launch(&self, request: &StartRequest, instance_id: Uuid) -> anyhow::Result<Instance> {
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
        Ok(Instance::serve(listener, server, route))
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
            instance.stop().await;
        }
        let exited = DropletExited {
            app_id: slot.request.app_id,
            version: slot.request.version,
            instance_id: slot.instance_id,
            index: slot.request.index,
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
        tracing::info!(instance_id = %slot.instance_id, ?reason, "instance stopped");
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

    /// Unregisters every route, stops every instance (reporting DEA_SHUTDOWN) and the ticker.
    pub(crate) async fn shutdown(&self) {
        let slots = self.table.close();
        // Concurrently, so every route is unregistered before any instance drains.
        let stops = slots
            .into_iter()
            .map(|slot| self.retire(slot, ExitReason::DeaShutdown, "the DEA is shutting down"));
        futures::future::join_all(stops).await;
        // Unregisters whatever a start racing with shutdown registered, and stops re-registering.
        self.registrar.shutdown().await;
        self.runtime.shutdown();
        if let Err(error) = self.nats.flush().await {
            tracing::warn!(%error, "failed to flush the last messages");
        }
    }
}
