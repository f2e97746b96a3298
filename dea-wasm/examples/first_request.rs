//! First request after start (issue 4): how long a fresh DEA takes from being handed a droplet
//! to the end of its first response, compiling the droplet (cold) or loading the machine code a
//! stager precompiled for its engine.
//!
//! Each measurement uses a new runtime with an empty data directory (no compile cache), the
//! default `Config` (pooling engine) and the DEA's own start path (`bench::Harness::start`:
//! `Runtime::prepare`, then one `GET /` through the instance's request path). The artifact is
//! made the way the stager makes it: by an engine built from the same `nimbus_engine` settings.
//!
//! Arguments: `NAME KIND DROPLET.wasm` triples (kind `http-component` or `wagi`), e.g. the
//! droplets `bench/staging.sh` staged. Prints one line per droplet; the script writes them to
//! `bench/results/staging.txt`.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nimbus_dea_wasm::Config;
use nimbus_dea_wasm::bench::Harness;
use nimbus_protocol::DropletKind;

/// Starts timed per droplet and way; the median is reported.
const RUNS: usize = 3;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || !args.len().is_multiple_of(3) {
        bail!("usage: first_request NAME KIND DROPLET.wasm [NAME KIND DROPLET.wasm]...");
    }
    println!(
        "{:<12} {:<15} {:>9} {:>16} {:>16}",
        "droplet", "kind", "size", "cold (compile)", "precompiled"
    );
    for triple in args.chunks(3) {
        let [name, kind, path] = triple else {
            unreachable!("chunks of 3")
        };
        let kind: DropletKind = serde_json::from_value(serde_json::Value::String(kind.clone()))
            .with_context(|| format!("unknown droplet kind {kind}"))?;
        let wasm = std::fs::read(path).with_context(|| format!("failed to read {path}"))?;
        let artifact = precompile(&wasm)?;
        let mut cold = Vec::new();
        let mut warm = Vec::new();
        for _ in 0..RUNS {
            cold.push(first_request(&wasm, kind, None).await?);
            warm.push(first_request(&wasm, kind, Some(artifact.clone())).await?);
        }
        println!(
            "{:<12} {:<15} {:>7.1}MB {:>14.0}ms {:>14.0}ms",
            name,
            kind.as_str(),
            wasm.len() as f64 / 1e6,
            median_ms(cold),
            median_ms(warm)
        );
    }
    Ok(())
}

/// The machine code a stager stores for DEAs with the default configuration.
fn precompile(wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
    let settings = Config::new("/unused".into()).engine_settings();
    let engine = wasmtime::Engine::new(&nimbus_engine::codegen_config(settings))
        .map_err(anyhow::Error::from)?;
    engine
        .precompile_component(wasm)
        .map_err(anyhow::Error::from)
        .context("failed to precompile")
}

/// From a fresh runtime to the end of the first response.
async fn first_request(
    wasm: &[u8],
    kind: DropletKind,
    artifact: Option<Vec<u8>>,
) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir()?;
    let mut config = Config::new(dir.path().to_path_buf());
    // A small pool: reserving the default one costs time a real DEA spends once, at boot.
    config.max_instances = 16;
    config.max_concurrent_requests = 16;
    let started = Instant::now();
    let harness = Harness::start(&config, wasm.to_vec(), kind, artifact).await?;
    let (status, _) = harness.get("/").await?;
    let elapsed = started.elapsed();
    harness.shutdown();
    if status != 200 {
        bail!("the first request got {status}");
    }
    Ok(elapsed)
}

fn median_ms(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1000.0
}
