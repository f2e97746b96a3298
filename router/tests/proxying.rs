//! What the app sees of a proxied request, and what the client sees of its answer.

mod common;

use common::{start_backend, start_counting_backend, start_router_on_port_zero};
use std::sync::atomic::Ordering;

#[tokio::test]
async fn forwards_path_query_and_forwarding_headers() {
    let t = start_router_on_port_zero().await;
    let app = start_backend("app").await;
    t.register("hdr.localhost", app.port()).await;
    t.get_until("hdr.localhost", |a| a.status == 200).await;

    let url = format!("http://{}/headers?x=1", t.router.local_addr());
    let response = t
        .http
        .get(url)
        .header("host", "hdr.localhost")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "must not pass")
        .header("proxy-authorization", "secret")
        .header("x-custom", "kept")
        .send()
        .await
        .expect("router answers");
    assert_eq!(response.status(), 200);
    let seen = response.text().await.expect("body");
    let lines: Vec<&str> = seen.lines().collect();
    assert!(lines.contains(&"host: hdr.localhost"), "{seen}");
    assert!(lines.contains(&"x-custom: kept"), "{seen}");
    assert!(lines.contains(&"x-forwarded-for: 127.0.0.1"), "{seen}");
    assert!(lines.contains(&"x-forwarded-proto: http"), "{seen}");
    assert!(
        lines.iter().any(|l| l.starts_with("x-vcap-request-id: ")),
        "{seen}"
    );
    assert!(!seen.contains("x-hop"), "{seen}");
    assert!(!seen.contains("proxy-authorization"), "{seen}");
}

#[tokio::test]
async fn streams_request_bodies_to_the_app() {
    let t = start_router_on_port_zero().await;
    let app = start_backend("app").await;
    t.register("echo.localhost", app.port()).await;
    t.get_until("echo.localhost", |a| a.status == 200).await;

    let body = "x".repeat(256 * 1024);
    let url = format!("http://{}/echo", t.router.local_addr());
    // A streamed (chunked) body, so the router cannot rely on a Content-Length.
    let chunks = futures::stream::iter(
        body.as_bytes()
            .chunks(10_000)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let response = t
        .http
        .post(url)
        .header("host", "echo.localhost")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("router answers");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), body);
}

#[tokio::test]
async fn reuses_connections_across_many_requests() {
    let t = start_router_on_port_zero().await;
    let (app, connections) = start_counting_backend("app").await;
    t.register("many.localhost", app.port()).await;
    t.get_until("many.localhost", |a| a.status == 200).await;
    let before = connections.load(Ordering::SeqCst);
    let requests = 50;
    for _ in 0..requests {
        let answer = t.get("many.localhost", "/").await;
        assert_eq!((answer.status, answer.body.as_str()), (200, "app"));
    }
    let opened = connections.load(Ordering::SeqCst) - before;
    // Without pooling every request would open one; a few may race a connection's return.
    assert!(
        opened < requests / 2,
        "{opened} connections for {requests} requests"
    );
}
