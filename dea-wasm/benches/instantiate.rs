//! Instantiate + call of hello per request (issue 3, benchmark 3): what the DEA spends on one
//! request beyond HTTP parsing, measured on its own code (`nimbus_dea_wasm::bench::Harness`:
//! the real pooling engine, the cached `ProxyPre`, and the instance's request path).
//!
//! Three measurements, each per iteration:
//! - `hello/store`: a fresh store (WASI + wasi:http contexts, limits, fuel, deadline), dropped;
//! - `hello/instantiate`: that, plus instantiating hello from the `ProxyPre`;
//! - `hello/request`: a whole `GET /` through `AppServer::run` (body limit, admission, store,
//!   instantiation, `handle`, supervisor) until the response head arrives and the body is read.
//!
//! Criterion reports mean and median. For the tail, the binary then times `SAMPLES` single
//! iterations of each after a warm-up and writes p50/p99/mean to `bench/results/instantiate.txt`.
//!
//! Run: `cargo bench -p nimbus-dea-wasm --bench instantiate` (set `NIMBUS_BENCH_SAMPLES` to
//! change the count). Under `cargo test --benches` each measurement runs once, as a test.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use nimbus_dea_wasm::bench::{APP_HOST, Harness};
use nimbus_dea_wasm::{Allocator, Config};
use tokio::runtime::Runtime;

/// Timed iterations per measurement for the percentiles.
const SAMPLES: usize = 20_000;
/// Untimed iterations before them.
const WARM_UP: usize = 2_000;
/// Criterion's group; its results land in `<target>/criterion/hello/<id>/`.
const GROUP: &str = "hello";

#[derive(Debug, Clone, Copy)]
enum Stage {
    Store,
    Instantiate,
    Request,
}

impl Stage {
    const ALL: [Stage; 3] = [Stage::Store, Stage::Instantiate, Stage::Request];

    fn id(self) -> &'static str {
        match self {
            Stage::Store => "store",
            Stage::Instantiate => "instantiate",
            Stage::Request => "request",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Stage::Store => "new store only (WASI + wasi:http ctx, limits, fuel, deadline)",
            Stage::Instantiate => "new store + instantiate from ProxyPre",
            Stage::Request => "GET / through AppServer::run, body read (instantiate + call)",
        }
    }

    /// One iteration.
    async fn once(self, harness: &Harness) {
        match self {
            Stage::Store => harness.new_store().expect("a store is built"),
            Stage::Instantiate => harness.instantiate().await.expect("hello instantiates"),
            Stage::Request => {
                let (status, body) = harness.get("/").await.expect("hello answers");
                assert_eq!(status, 200, "{body:?}");
            }
        }
    }
}

fn main() {
    // Criterion's own flag: present under `cargo bench`, absent under `cargo test --benches`.
    let benchmarking = std::env::args().any(|arg| arg == "--bench");
    let wasm = nimbus_dea_wasm::bench::sample_app("hello-rust").expect("hello builds");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let dir = tempfile::tempdir().expect("a temporary directory");
    // The DEA's defaults: pooling allocator (1,000 slots), fuel metering, 30 s timeout.
    let config = Config::new(dir.path().join("dea"));
    let harness = Arc::new(
        runtime
            .block_on(Harness::new(&config, wasm))
            .expect("the harness starts"),
    );
    let (status, body) = runtime.block_on(harness.get("/")).expect("hello answers");
    assert_eq!(status, 200);
    assert!(
        String::from_utf8_lossy(&body).starts_with("Hello from hello"),
        "{body:?}"
    );

    let criterion_dir = target_dir().join("criterion");
    let mut criterion = Criterion::default()
        .output_directory(&criterion_dir)
        .configure_from_args();
    {
        let mut group = criterion.benchmark_group(GROUP);
        for stage in Stage::ALL {
            group.bench_function(stage.id(), |b| {
                b.iter_custom(|iters| timed(&runtime, &harness, stage, iters))
            });
        }
        group.finish();
    }
    criterion.final_summary();
    if !benchmarking {
        harness.shutdown();
        return;
    }

    let samples = std::env::var("NIMBUS_BENCH_SAMPLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(SAMPLES);
    let mut report = header(&harness, samples);
    for stage in Stage::ALL {
        let mut times = percentiles(&runtime, &harness, stage, samples);
        let line = summary(stage, &mut times, &criterion_dir);
        println!("{line}");
        report.push_str(&line);
    }
    harness.shutdown();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/results/instantiate.txt");
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("bench/results exists");
    std::fs::write(&path, report).expect("the results are written");
    println!("wrote {}", path.display());
}

/// `iters` iterations timed as one, inside a task like the DEA's connection tasks.
fn timed(runtime: &Runtime, harness: &Arc<Harness>, stage: Stage, iters: u64) -> Duration {
    let harness = harness.clone();
    runtime
        .block_on(runtime.spawn(async move {
            let start = Instant::now();
            for _ in 0..iters {
                stage.once(&harness).await;
            }
            start.elapsed()
        }))
        .expect("the timing task runs")
}

/// Each of `samples` iterations timed alone, after a warm-up.
fn percentiles(
    runtime: &Runtime,
    harness: &Arc<Harness>,
    stage: Stage,
    samples: usize,
) -> Vec<Duration> {
    let harness = harness.clone();
    runtime
        .block_on(runtime.spawn(async move {
            for _ in 0..WARM_UP {
                stage.once(&harness).await;
            }
            let mut times = Vec::with_capacity(samples);
            for _ in 0..samples {
                let start = Instant::now();
                stage.once(&harness).await;
                times.push(start.elapsed());
            }
            times
        }))
        .expect("the timing task runs")
}

fn summary(stage: Stage, times: &mut [Duration], criterion_dir: &Path) -> String {
    times.sort_unstable();
    let n = times.len();
    let at = |p: usize| times[(n * p / 100).min(n - 1)];
    let mean = times.iter().sum::<Duration>() / u32::try_from(n).unwrap_or(u32::MAX);
    let mut line = format!(
        "{GROUP}/{:<12} p50 {:>8.2} µs  p99 {:>8.2} µs  mean {:>8.2} µs  max {:>9.2} µs  (n={n}; {})",
        stage.id(),
        micros(at(50)),
        micros(at(99)),
        micros(mean),
        micros(times[n - 1]),
        stage.what(),
    );
    if let Some((mean, median)) = criterion_estimates(criterion_dir, stage) {
        let _ = write!(
            line,
            "\n{:18}criterion: mean {:.2} µs, median {:.2} µs",
            "",
            mean / 1000.0,
            median / 1000.0
        );
    }
    line.push('\n');
    line
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// Criterion's mean and median point estimates for `stage`, in nanoseconds.
fn criterion_estimates(dir: &Path, stage: Stage) -> Option<(f64, f64)> {
    let path = dir.join(GROUP).join(stage.id()).join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    Some((
        json["mean"]["point_estimate"].as_f64()?,
        json["median"]["point_estimate"].as_f64()?,
    ))
}

fn header(harness: &Harness, samples: usize) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|model| model.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let allocator = match harness.allocator() {
        Allocator::Pooling => "pooling",
        Allocator::OnDemand => "on-demand (the pooling probe failed)",
    };
    // std (and so wasmtime's errors) captures a backtrace per error when these ask for one;
    // wasmtime 48 makes one error per store drop, so they change the figures.
    let backtraces = ["RUST_BACKTRACE", "RUST_LIB_BACKTRACE"]
        .map(|name| {
            format!(
                "{name}={}",
                std::env::var(name).unwrap_or_else(|_| "(unset)".into())
            )
        })
        .join(" ");
    format!(
        "# Instantiate + call of hello per request (issue 3, benchmark 3)\n\
         # command: cargo bench -p nimbus-dea-wasm --bench instantiate   (release, CARGO_TARGET_DIR=/root/.cache/nimbus/target)\n\
         # machine: {cpu}, {cores} cores; tokio multi-thread runtime, {cores} workers\n\
         # engine: the DEA's default Config ({allocator} allocator, fuel metering on, epochs on), sample-apps/hello-rust (wasm32-wasip2)\n\
         # request: GET http://{APP_HOST}/ as a value (no socket, no HTTP parsing); hello prints one log line per request (queued, discarded)\n\
         # percentiles: {samples} single iterations after {WARM_UP} warm-up, each timed with Instant\n\
         # environment: {backtraces}\n\
         # targets (request): p50 <= 10 µs, p99 <= 50 µs\n"
    )
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}
