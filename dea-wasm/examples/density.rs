//! Density (issue 3, benchmark 4): the resident memory of one DEA process with 1,000 deployed
//! idle apps.
//!
//! Starts a real nats-server (a child process, not counted) with the blob store, uploads hello,
//! starts one DEA in this process with the default `Config` (pooling allocator), sends one
//! `StartRequest` per app over NATS (distinct app ids, names and URIs, one droplet), waits for
//! every `Started` reply, sends one request to a sample of the instances, and reads this
//! process's `VmRSS` at each step. Writes `bench/results/density.txt`.
//!
//! Run with `bench/density.sh` (raises the open-file limit: every instance holds a listener),
//! or `cargo run --release -p nimbus-dea-wasm --example density -- [APPS] [SAMPLE_EVERY]`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use async_nats::jetstream::object_store;
use futures::StreamExt as _;
use nimbus_bus::{NatsServer, ServerOptions};
use nimbus_protocol::droplet::{
    BLOB_STORE, DropletKind, DropletManifest, Limits, droplet_object_name,
};
use nimbus_protocol::messages::{RouteRegistration, StartReply, StartRequest};
use nimbus_protocol::subjects;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

/// Apps deployed by default.
const APPS: usize = 1000;
/// By default every tenth app gets a request.
const SAMPLE_EVERY: usize = 10;
/// Start requests in flight at once (a controller converging would send them in bursts too).
const STARTS_IN_FLIGHT: usize = 64;
/// Memory limit per app, in MB: 1,000 apps × 4 MB fit the DEA's default advertised 4,096 MB,
/// so the default `Config` can hold them all. It caps each request's linear memory only;
/// an idle app has no linear memory at all.
const APP_MEMORY_MB: u64 = 4;
/// How long to wait for any one reply or registration.
const PATIENCE: Duration = Duration::from_secs(60);
/// Quiet time before the idle measurement, so start-up bursts (heartbeats, logs) have drained.
const SETTLE: Duration = Duration::from_secs(3);
/// The target: at most this much resident memory per idle app.
const TARGET_PER_APP_KB: f64 = 1024.0;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let apps: usize = parse_arg(args.next(), APPS)?;
    let sample_every: usize = parse_arg(args.next(), SAMPLE_EVERY)?.max(1);
    check_fd_limit(apps)?;

    let dir = tempfile::tempdir().context("failed to create a temporary directory")?;
    let server = NatsServer::start(ServerOptions::ephemeral(dir.path().join("nats"))).await?;
    let nats = nimbus_bus::connect(server.config(), "density").await?;
    let store = async_nats::jetstream::new(nats.clone())
        .create_object_store(object_store::Config {
            bucket: BLOB_STORE.into(),
            ..Default::default()
        })
        .await
        .context("failed to create the blob store")?;
    let wasm = nimbus_dea_wasm::bench::sample_app("hello-rust")?;
    let droplet = upload(&store, &wasm).await?;
    let mut report = Report::default();
    report.take("baseline (nats client, no DEA)");

    let config = nimbus_dea_wasm::Config::new(dir.path().join("dea"));
    let dea = nimbus_dea_wasm::start(config.clone(), nats.clone()).await?;
    let allocator = dea.allocator();
    // The droplet compiles on the first start; deploy one app first so compilation is not
    // counted as per-app memory.
    let routes = Routes::collect(&nats).await?;
    let first = start_request(0, droplet.clone());
    start(&nats, dea.id(), &first).await?;
    tokio::time::sleep(SETTLE).await;
    report.take("DEA started, 1 app deployed (droplet compiled)");
    let before = report.last();

    let began = Instant::now();
    let requests: Vec<StartRequest> = (1..apps)
        .map(|n| start_request(n, droplet.clone()))
        .collect();
    let starts = futures::stream::iter(requests.iter().map(|r| start(&nats, dea.id(), r)))
        .buffer_unordered(STARTS_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    let mut instances = vec![];
    for started in starts {
        instances.push(started?);
    }
    let deploy_time = began.elapsed();
    tokio::time::sleep(SETTLE).await;
    report.take(&format!("{apps} apps deployed, idle"));
    let deployed = report.last();

    // Prove they serve: one request to every `sample_every`-th app, each checked.
    let all: Vec<&StartRequest> = std::iter::once(&first).chain(&requests).collect();
    let sampled: Vec<&StartRequest> = all.iter().copied().step_by(sample_every).collect();
    {
        let client = reqwest::Client::new();
        for request in &sampled {
            let route = routes.wait_for(request.app_id).await?;
            let url = format!("http://{}:{}/", route.host, route.port);
            let response = client
                .get(&url)
                .header("host", &route.uris[0])
                .timeout(PATIENCE)
                .send()
                .await
                .with_context(|| format!("GET {url} failed"))?;
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            ensure!(
                status == 200 && body.contains(&request.app_name),
                "{} answered {status}: {body}",
                request.app_name
            );
        }
        // Dropping the client closes its keep-alive connections.
    }
    tokio::time::sleep(SETTLE).await;
    report.take(&format!(
        "after one request to {} of the apps, idle",
        sampled.len()
    ));
    let after_requests = report.last();
    drop(instances);

    let per_app = |rss: Status| (rss.rss_kb - before.rss_kb) as f64 / (apps - 1) as f64;
    let mut text = format!(
        "# Density: one DEA process with {apps} deployed idle apps (issue 3, benchmark 4)\n\
         # command: bench/density.sh   (cargo run --release -p nimbus-dea-wasm --example density -- {apps} {sample_every})\n\
         # setup: real nats-server (separate process, not counted) + blob store; one in-process DEA with the default Config\n\
         #        ({allocator:?} allocator, {} slots of {} MB, fuel metering on); {apps} StartRequests for {apps} distinct apps\n\
         #        (ids, names, URIs), one droplet (sample-apps/hello-rust), memory limit {APP_MEMORY_MB} MB each, {STARTS_IN_FLIGHT} starts in flight\n\
         # deploy: {} starts answered Started in {:.1} s; sample: one GET to {} apps (every {sample_every}th), all 200 with their own name\n\
         # RSS is this process's VmRSS ({SETTLE:?} after each step); VmSize includes the pool's reserved address space\n\n",
        config.max_instances,
        config.max_instance_memory_mb,
        apps - 1,
        deploy_time.as_secs_f64(),
        sampled.len(),
    );
    text.push_str(&report.table());
    let _ = write!(
        text,
        "\ntotal RSS with {apps} idle apps: {:.1} MB (target <= 1024 MB: {})\n\
         RSS per idle app (deployed - before, over {} apps): {:.1} KB (target <= {TARGET_PER_APP_KB} KB: {})\n\
         RSS per app after the sample requests: {:.1} KB\n\
         open files per app: {:.2}; threads: {}\n",
        mb(deployed.rss_kb),
        verdict(deployed.rss_kb as f64 <= 1024.0 * 1024.0),
        apps - 1,
        per_app(deployed),
        verdict(per_app(deployed) <= TARGET_PER_APP_KB),
        per_app(after_requests),
        (deployed.fds - before.fds) as f64 / (apps - 1) as f64,
        deployed.threads,
    );
    print!("{text}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/results/density.txt");
    std::fs::create_dir_all(path.parent().context("no parent")?)?;
    std::fs::write(&path, text).with_context(|| format!("failed to write {}", path.display()))?;
    println!("wrote {}", path.display());

    let stopping = Instant::now();
    dea.shutdown().await;
    println!(
        "DEA stopped {apps} instances in {:.1} s",
        stopping.elapsed().as_secs_f64()
    );
    server.stop().await;
    Ok(())
}

fn parse_arg(arg: Option<String>, default: usize) -> anyhow::Result<usize> {
    arg.map_or(Ok(default), |a| {
        a.parse().with_context(|| format!("{a:?} is not a number"))
    })
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// A start request for app number `n`.
fn start_request(n: usize, droplet: DropletManifest) -> StartRequest {
    let name = format!("density-{n:04}");
    StartRequest {
        app_id: Uuid::new_v4(),
        uris: vec![format!("{name}.localhost")],
        app_name: name,
        version: Uuid::new_v4(),
        index: 0,
        droplet,
        limits: Limits {
            memory_mb: APP_MEMORY_MB,
            ..Limits::default()
        },
        env: vec![],
        allowed_outbound_hosts: vec![],
        health_check_http_endpoint: None,
    }
}

/// Sends a start request and waits for `Started`.
async fn start(
    nats: &async_nats::Client,
    dea_id: &str,
    request: &StartRequest,
) -> anyhow::Result<Uuid> {
    let reply = tokio::time::timeout(
        PATIENCE,
        nats.request(
            subjects::dea_start(dea_id),
            nimbus_protocol::encode(request).into(),
        ),
    )
    .await
    .context("no reply to a start request")?
    .context("the start request failed")?;
    match nimbus_protocol::decode(&reply.payload)? {
        StartReply::Started { instance_id } => Ok(instance_id),
        StartReply::Failed { message } => bail!("{} failed to start: {message}", request.app_name),
    }
}

/// Every route registered on the bus, by app id.
struct Routes(Arc<Mutex<HashMap<Uuid, RouteRegistration>>>);

impl Routes {
    async fn collect(nats: &async_nats::Client) -> anyhow::Result<Routes> {
        let mut registrations = nats.subscribe(subjects::ROUTER_REGISTER).await?;
        nats.flush().await?;
        let routes = Arc::new(Mutex::new(HashMap::new()));
        let sink = routes.clone();
        tokio::spawn(async move {
            while let Some(message) = registrations.next().await {
                if let Ok(route) = nimbus_protocol::decode::<RouteRegistration>(&message.payload)
                    && let Some(app) = route.app
                {
                    sink.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(app, route);
                }
            }
        });
        Ok(Routes(routes))
    }

    async fn wait_for(&self, app_id: Uuid) -> anyhow::Result<RouteRegistration> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let found = self
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&app_id)
                .cloned();
            if let Some(route) = found {
                return Ok(route);
            }
            if Instant::now() > deadline {
                bail!("app {app_id} never registered a route");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// What /proc says about this process at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Status {
    rss_kb: u64,
    vm_kb: u64,
    threads: u64,
    fds: u64,
}

impl Status {
    fn now() -> Status {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse().ok())
                .unwrap_or(0)
        };
        Status {
            rss_kb: field("VmRSS:"),
            vm_kb: field("VmSize:"),
            threads: field("Threads:"),
            fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64),
        }
    }
}

#[derive(Default)]
struct Report(Vec<(String, Status)>);

impl Report {
    fn take(&mut self, step: &str) {
        let status = Status::now();
        println!("{step}: {status:?}");
        self.0.push((step.to_string(), status));
    }

    fn last(&self) -> Status {
        self.0.last().map(|(_, s)| *s).unwrap_or_default()
    }

    fn table(&self) -> String {
        let mut out = format!(
            "{:<52} {:>10} {:>12} {:>8} {:>8}\n",
            "step", "VmRSS MB", "VmSize GB", "threads", "fds"
        );
        for (step, s) in &self.0 {
            let _ = writeln!(
                out,
                "{step:<52} {:>10.1} {:>12.1} {:>8} {:>8}",
                mb(s.rss_kb),
                s.vm_kb as f64 / 1024.0 / 1024.0,
                s.threads,
                s.fds
            );
        }
        out
    }
}

/// Fails early with one sentence if the open-file limit cannot hold every listener.
fn check_fd_limit(apps: usize) -> anyhow::Result<()> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse::<usize>().ok());
    if let Some(soft) = soft
        && soft < apps + 512
    {
        bail!(
            "the open-file limit ({soft}) is too low for {apps} listeners; run bench/density.sh or `ulimit -n 65536` first"
        );
    }
    Ok(())
}

async fn upload(store: &object_store::ObjectStore, wasm: &[u8]) -> anyhow::Result<DropletManifest> {
    let sha256 = format!("{:x}", Sha256::digest(wasm));
    store
        .put(droplet_object_name(&sha256).as_str(), &mut &wasm[..])
        .await
        .context("failed to upload the droplet")?;
    Ok(DropletManifest {
        sha256,
        kind: DropletKind::HttpComponent,
        language: "rust".into(),
        size: wasm.len() as u64,
        staged_at: 0,
    })
}
