//! Routing through a real router, fed over a real nats-server, to real HTTP backends.

mod common;

use common::{Answer, closed_port, start_backend, start_router_on_port_zero, start_router_with};
use std::time::Duration;

#[tokio::test]
async fn round_robin_alternates_between_endpoints() {
    let t = start_router_on_port_zero().await;
    let one = start_backend("one").await;
    let two = start_backend("two").await;
    t.register("rr.localhost", one.port()).await;
    t.register("rr.localhost", two.port()).await;
    // Both are routed once each name has answered.
    t.get_until("rr.localhost", |a| a.body == "one").await;
    t.get_until("rr.localhost", |a| a.body == "two").await;

    let mut bodies = Vec::new();
    for _ in 0..6 {
        let answer = t.get("rr.localhost", "/").await;
        assert_eq!(answer.status, 200);
        bodies.push(answer.body);
    }
    for pair in bodies.windows(2) {
        assert_ne!(
            pair[0], pair[1],
            "round robin repeated an endpoint: {bodies:?}"
        );
    }
    assert!(bodies.contains(&"one".to_string()) && bodies.contains(&"two".to_string()));
}

#[tokio::test]
async fn returns_404_with_header_for_unknown_host() {
    let t = start_router_on_port_zero().await;
    let answer = t.get("nobody.localhost", "/").await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.error_header.as_deref(), Some("unknown_route"));
    assert!(answer.body.contains("nobody.localhost"), "{answer:?}");
}

#[tokio::test]
async fn host_matching_ignores_case_and_port() {
    let t = start_router_on_port_zero().await;
    let app = start_backend("app").await;
    t.register("case.localhost", app.port()).await;
    let answer = t
        .get_until("Case.LocalHost:8080", |a| a.status == 200)
        .await;
    assert_eq!(answer.body, "app");
}

#[tokio::test]
async fn unregistering_the_last_endpoint_returns_404() {
    let t = start_router_on_port_zero().await;
    let app = start_backend("app").await;
    t.register("gone.localhost", app.port()).await;
    t.get_until("gone.localhost", |a| a.status == 200).await;

    t.unregister("gone.localhost", app.port()).await;
    let answer = t.get_until("gone.localhost", |a| a.status != 200).await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.error_header.as_deref(), Some("unknown_route"));
}

#[tokio::test]
async fn returns_502_with_header_when_the_only_endpoint_is_down() {
    let t = start_router_on_port_zero().await;
    t.register("down.localhost", closed_port()).await;
    let answer = t.get_until("down.localhost", |a| a.status != 404).await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.error_header.as_deref(), Some("endpoint_failure"));
    assert!(answer.body.contains("down.localhost"), "{answer:?}");
}

#[tokio::test]
async fn retries_the_next_endpoint_when_one_is_down() {
    let t = start_router_on_port_zero().await;
    t.register("half.localhost", closed_port()).await;
    t.get_until("half.localhost", |a| a.status == 502).await;
    let live = start_backend("live").await;
    t.register("half.localhost", live.port()).await;
    t.get_until("half.localhost", |a| a.status == 200).await;

    // Round robin starts at the dead endpoint every other request; all must still succeed.
    for _ in 0..6 {
        let answer = t.get("half.localhost", "/").await;
        assert_eq!(
            answer,
            Answer {
                status: 200,
                error_header: None,
                body: "live".to_string()
            }
        );
    }
}

#[tokio::test]
async fn returns_503_once_endpoints_are_pruned() {
    let t = start_router_with(nimbus_router::Config {
        register_interval: Duration::from_secs(1),
        prune_threshold: Duration::from_secs(1),
        ..nimbus_router::Config::default()
    })
    .await;
    let app = start_backend("app").await;
    t.register("stale.localhost", app.port()).await;
    t.get_until("stale.localhost", |a| a.status == 200).await;

    // No re-registration: the pruner drops the endpoint but keeps the host.
    let answer = t.get_until("stale.localhost", |a| a.status != 200).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.error_header.as_deref(), Some("no_endpoints"));
    assert!(answer.body.contains("stale.localhost"), "{answer:?}");

    // A fresh registration brings it back.
    t.register("stale.localhost", app.port()).await;
    let answer = t.get_until("stale.localhost", |a| a.status == 200).await;
    assert_eq!(answer.body, "app");
}

#[tokio::test]
async fn malformed_registrations_are_dropped() {
    let t = start_router_on_port_zero().await;
    t.nats
        .publish(
            nimbus_protocol::subjects::ROUTER_REGISTER,
            "{not json".into(),
        )
        .await
        .expect("publish");
    let app = start_backend("app").await;
    t.register("ok.localhost", app.port()).await;
    let answer = t.get_until("ok.localhost", |a| a.status == 200).await;
    assert_eq!(answer.body, "app");
}
