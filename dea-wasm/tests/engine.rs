//! The engine: compiled code survives a DEA restart on disk, a corrupt artifact is replaced,
//! and the DEA works with the on-demand allocator when pooling is off.

mod common;

use common::{Cloud, exchange, get, sample_app, start_request, to};
use nimbus_dea_wasm::{Allocator, CompileStats};
use reqwest::Method;

fn artifacts(cloud: &Cloud, sha256: &str) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(cloud.data_dir().join("compiled")) else {
        return vec![];
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.starts_with(sha256) && name.ends_with(".cwasm")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_dea_serves_from_the_compiled_cache() {
    let mut cloud = Cloud::start().await;
    assert_eq!(cloud.dea().allocator(), Allocator::Pooling);
    let hello = cloud.upload(&sample_app("hello-rust")).await;
    let request = start_request("hello", 0, hello.clone());
    let (_, route) = cloud.start_instance(&request).await;
    assert_eq!(get(&route, "/").await.unwrap().status(), 200);
    assert_eq!(
        cloud.dea().compile_stats(),
        CompileStats {
            compiled: 1,
            loaded: 0,
            fetched: 0,
        }
    );
    let files = artifacts(&cloud, &hello.sha256);
    assert_eq!(files.len(), 1, "{files:?}");

    cloud.restart_dea().await;
    let (_, route) = cloud
        .start_instance(&start_request("hello", 0, hello.clone()))
        .await;
    assert_eq!(get(&route, "/").await.unwrap().status(), 200);
    assert_eq!(
        cloud.dea().compile_stats(),
        CompileStats {
            compiled: 0,
            loaded: 1,
            fetched: 0,
        }
    );

    // A damaged artifact is recompiled and replaced. It is damaged by replacing the file, not
    // by writing into it: the previous engine may still map it, and truncating a mapped file
    // makes its pages fault (the DEA itself only ever renames new files into place).
    let damaged = files[0].with_extension("damaged");
    std::fs::write(&damaged, b"not machine code").unwrap();
    std::fs::rename(&damaged, &files[0]).unwrap();
    cloud.restart_dea().await;
    let (_, route) = cloud
        .start_instance(&start_request("hello", 0, hello.clone()))
        .await;
    assert_eq!(get(&route, "/").await.unwrap().status(), 200);
    assert_eq!(
        cloud.dea().compile_stats(),
        CompileStats {
            compiled: 1,
            loaded: 0,
            fetched: 0,
        }
    );
    assert_ne!(std::fs::read(&files[0]).unwrap(), b"not machine code");
    cloud.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_hold_with_the_on_demand_allocator() {
    let cloud = Cloud::start_with(|config| config.pooling = false).await;
    assert_eq!(cloud.dea().allocator(), Allocator::OnDemand);
    let abuse = cloud.upload(&sample_app("abuse")).await;
    let (_, route) = cloud
        .start_instance(&start_request("abuse", 0, abuse))
        .await;
    let (status, cause, _) = exchange(to(&route, Method::GET, "/memory")).await;
    assert_eq!((status, cause.as_str()), (500, "memory_limit"));
    assert_eq!(exchange(to(&route, Method::GET, "/")).await.0, 200);
    cloud.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_apps_asking_for_more_memory_than_the_pool_allows() {
    let cloud = Cloud::start().await;
    let hello = cloud.upload(&sample_app("hello-rust")).await;
    let mut request = start_request("big", 0, hello);
    request.limits.memory_mb = nimbus_dea_wasm::DEFAULT_MAX_INSTANCE_MEMORY_MB + 1;
    match cloud.request_start(&request).await {
        nimbus_protocol::messages::StartReply::Failed { message } => {
            assert!(message.contains("at most"), "{message}")
        }
        other => panic!("unexpected {other:?}"),
    }
    cloud.shutdown().await;
}
