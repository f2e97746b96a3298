//! Capabilities are denied by default: no host files but a capped scratch `/tmp`, and outbound
//! HTTP only to listed hosts at public addresses unless the operator allows private egress.

mod common;

use common::{Cloud, exchange, next_event, sample_app, start_request, to};
use nimbus_protocol::messages::EventKind;
use nimbus_protocol::subjects;
use reqwest::Method;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[tokio::test(flavor = "multi_thread")]
async fn guests_see_only_their_scratch_directory_and_it_is_capped() {
    let cloud = Cloud::start_with(|config| config.scratch_bytes = 1024 * 1024).await;
    let abuse = cloud.upload(&sample_app("abuse")).await;
    let request = start_request("escape", 0, abuse);
    let mut events = cloud.subscribe(subjects::events(request.app_id)).await;
    let (instance_id, route) = cloud.start_instance(&request).await;

    let (status, _, body) = exchange(to(&route, Method::GET, "/escape")).await;
    assert_eq!(status, 200);
    assert!(body.contains("read /etc/passwd: denied"), "{body}");
    assert!(
        body.contains("read /tmp/../../../etc/passwd: denied"),
        "{body}"
    );
    assert!(body.contains("read ../../../etc/passwd: denied"), "{body}");
    assert!(body.contains("write /tmp/x: allowed"), "{body}");
    let scratch = cloud
        .data_dir()
        .join("scratch")
        .join(instance_id.to_string());
    assert_eq!(std::fs::read(scratch.join("x")).unwrap(), b"scratch");

    let (status, _, body) = exchange(to(&route, Method::GET, "/fill?bytes=2000000")).await;
    assert_eq!((status, body.as_str()), (200, "wrote 2000000 bytes\n"));
    let event = next_event(&mut events, "scratch_limit").await;
    assert_eq!(event.kind, EventKind::LimitExceeded);
    assert!(!scratch.join("fill").exists());
    cloud.shutdown().await;
    assert!(
        !scratch.exists(),
        "the scratch directory outlived its instance"
    );
}

/// A one-shot HTTP server on loopback answering 200 to every request.
async fn local_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn egress_to_loopback_is_denied_even_when_listed() {
    let port = local_server().await;
    let cloud = Cloud::start().await;
    let abuse = cloud.upload(&sample_app("abuse")).await;
    let mut request = start_request("egress", 0, abuse);
    request.allowed_outbound_hosts = vec![format!("127.0.0.1:{port}")];
    let mut events = cloud.subscribe(subjects::events(request.app_id)).await;
    let (_, route) = cloud.start_instance(&request).await;

    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
    ] {
        let (status, _, body) =
            exchange(to(&route, Method::GET, &format!("/egress?url={url}"))).await;
        assert_eq!(status, 200);
        assert!(body.contains("HttpRequestDenied"), "{url}: {body}");
        let event = next_event(&mut events, "egress_denied").await;
        assert_eq!(event.kind, EventKind::Denied);
    }
    cloud.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_may_allow_private_egress_to_listed_hosts() {
    let port = local_server().await;
    let cloud = Cloud::start_with(|config| config.allow_private_egress = true).await;
    let abuse = cloud.upload(&sample_app("abuse")).await;
    let mut request = start_request("egress", 0, abuse);
    request.allowed_outbound_hosts = vec![format!("127.0.0.1:{port}")];
    let mut events = cloud.subscribe(subjects::events(request.app_id)).await;
    let (_, route) = cloud.start_instance(&request).await;

    let url = format!("http://127.0.0.1:{port}/");
    let (_, _, body) = exchange(to(&route, Method::GET, &format!("/egress?url={url}"))).await;
    assert_eq!(body, "status 200\n");

    // Still only the listed host and port.
    let other = format!("http://127.0.0.1:{}/", port.wrapping_add(1).max(1));
    let (_, _, body) = exchange(to(&route, Method::GET, &format!("/egress?url={other}"))).await;
    assert!(body.contains("HttpRequestDenied"), "{body}");
    next_event(&mut events, "egress_denied").await;
    cloud.shutdown().await;
}
