//! Staging over a real nats-server: prebuilt components and packages that must be refused.

mod common;

use common::{TestCloud, hello_wasm, sha256_hex, tar_gz};
use nimbus_protocol::DropletKind;
use nimbus_protocol::droplet::droplet_object_name;
use uuid::Uuid;

#[tokio::test]
async fn stages_a_prebuilt_component_into_a_content_addressed_droplet() {
    let cloud = TestCloud::start().await;
    let wasm = hello_wasm();
    let app_id = Uuid::new_v4();

    let staging = cloud.stage(app_id, &wasm).await;
    assert!(!staging.ack.stager_id.is_empty());
    let droplet = staging.droplet().clone();
    assert_eq!(droplet.sha256, sha256_hex(&wasm));
    assert_eq!(droplet.kind, DropletKind::HttpComponent);
    assert_eq!(droplet.language, "wasm");
    assert_eq!(droplet.size, wasm.len() as u64);
    assert_eq!(
        cloud
            .read_object(&droplet_object_name(&droplet.sha256))
            .await,
        wasm
    );

    let log = staging.lines.join("\n");
    assert!(log.contains("Prebuilt WebAssembly detected"), "{log}");
    assert!(log.contains(&droplet.sha256), "{log}");
    assert!(
        staging
            .app_log
            .iter()
            .any(|line| line.source == "STG" && line.message.contains("Prebuilt")),
        "the app's log stream got no staging lines"
    );

    // The same wasm again (as another app): same droplet, not uploaded twice.
    let again = cloud.stage(Uuid::new_v4(), &wasm).await;
    assert_eq!(again.droplet().sha256, droplet.sha256);
    assert!(
        again.lines.iter().any(|l| l.contains("already stored")),
        "{:?}",
        again.lines
    );
    cloud.shutdown().await;
}

#[tokio::test]
async fn stages_a_wasm_file_inside_an_archive() {
    let cloud = TestCloud::start().await;
    let wasm = hello_wasm();
    let package = tar_gz(&[
        ("hello.wasm", wasm.as_slice()),
        ("README.md", b"hi".as_slice()),
    ]);
    let staging = cloud.stage(Uuid::new_v4(), &package).await;
    assert_eq!(staging.droplet().sha256, sha256_hex(&wasm));
    cloud.shutdown().await;
}

#[tokio::test]
async fn refuses_a_core_module_naming_the_missing_export() {
    let cloud = TestCloud::start().await;
    let module = wat::parse_str("(module)").unwrap();
    let staging = cloud.stage(Uuid::new_v4(), &module).await;
    let message = staging.failure();
    assert!(message.contains("does not export `_start`"), "{message}");
    assert!(message.contains("not a WASI command"), "{message}");
    assert!(
        !cloud
            .has_object(&droplet_object_name(&sha256_hex(&module)))
            .await
    );
    assert!(
        staging.lines.iter().any(|l| l.contains("Staging failed")),
        "{:?}",
        staging.lines
    );
    cloud.shutdown().await;
}

#[tokio::test]
async fn refuses_a_component_that_is_not_an_http_app() {
    let cloud = TestCloud::start().await;
    let component = wat::parse_str("(component)").unwrap();
    let staging = cloud.stage(Uuid::new_v4(), &component).await;
    let message = staging.failure();
    assert!(
        message.contains("exports neither wasi:http/incoming-handler nor wasi:cli/run"),
        "{message}"
    );
    cloud.shutdown().await;
}

#[tokio::test]
async fn refuses_garbage_bytes() {
    let cloud = TestCloud::start().await;
    let staging = cloud
        .stage(Uuid::new_v4(), b"this is not a package at all")
        .await;
    let message = staging.failure();
    assert!(
        message.contains("neither a WebAssembly file nor a gzip-compressed tar archive"),
        "{message}"
    );
    cloud.shutdown().await;
}

#[tokio::test]
async fn refuses_an_empty_archive() {
    let cloud = TestCloud::start().await;
    let empty = tar_gz::<&str, &[u8]>(&[]);
    let staging = cloud.stage(Uuid::new_v4(), &empty).await;
    assert_eq!(staging.failure(), "the package is empty");
    cloud.shutdown().await;
}

#[tokio::test]
async fn refuses_a_package_no_stager_recognises() {
    let cloud = TestCloud::start().await;
    let package = tar_gz(&[("main.go", b"package main".as_slice())]);
    let staging = cloud.stage(Uuid::new_v4(), &package).await;
    let message = staging.failure();
    assert!(
        message.starts_with("no stager recognises this package"),
        "{message}"
    );
    for language in ["Rust", "JavaScript", "Python", "C (*.c files)", ".wat"] {
        assert!(message.contains(language), "{message}");
    }
    cloud.shutdown().await;
}

#[tokio::test]
async fn reports_a_package_missing_from_the_blob_store() {
    let cloud = TestCloud::start().await;
    let staging = cloud
        .stage_sha(Uuid::new_v4(), &sha256_hex(b"never uploaded"))
        .await;
    let message = staging.failure();
    assert!(message.contains("not in the blob store"), "{message}");
    cloud.shutdown().await;
}

#[tokio::test]
async fn drops_malformed_requests_and_keeps_serving() {
    let cloud = TestCloud::start().await;
    cloud
        .nats
        .publish(nimbus_protocol::subjects::STAGING, "{not json".into())
        .await
        .unwrap();
    let staging = cloud.stage(Uuid::new_v4(), b"garbage").await;
    assert!(
        staging.failure().contains("neither"),
        "{}",
        staging.failure()
    );
    cloud.shutdown().await;
}
