//! The router's NATS conversation: announcing itself and answering greetings.

mod common;

use futures::StreamExt as _;
use nimbus_protocol::messages::RouterStart;
use nimbus_protocol::subjects;
use std::time::Duration;

#[tokio::test]
async fn answers_router_greet_with_its_intervals() {
    let t = common::start_router_with(nimbus_router::Config {
        register_interval: Duration::from_secs(3),
        prune_threshold: Duration::from_secs(12),
        ..nimbus_router::Config::default()
    })
    .await;
    let reply = t
        .nats
        .request(subjects::ROUTER_GREET, "".into())
        .await
        .expect("router answers router.greet");
    let start: RouterStart = nimbus_protocol::decode(&reply.payload).expect("a RouterStart");
    assert_eq!(start.minimum_register_interval_in_seconds, 3);
    assert_eq!(start.prune_threshold_in_seconds, 12);
    assert!(!start.id.is_empty());
}

#[tokio::test]
async fn announces_router_start_when_it_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = nimbus_bus::NatsServer::start(nimbus_bus::ServerOptions::ephemeral(dir.path()))
        .await
        .expect("nats-server starts");
    let nats = nimbus_bus::connect(server.config(), "test")
        .await
        .expect("connect");
    let mut starts = nats
        .subscribe(subjects::ROUTER_START)
        .await
        .expect("subscribe");
    nats.flush().await.expect("flush");

    let config = nimbus_router::Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        ..nimbus_router::Config::default()
    };
    let router = nimbus_router::start(config, nats.clone())
        .await
        .expect("router starts");
    let message = tokio::time::timeout(common::PATIENCE, starts.next())
        .await
        .expect("router.start arrives")
        .expect("subscription open");
    let start: RouterStart = nimbus_protocol::decode(&message.payload).expect("a RouterStart");
    assert_eq!(start.minimum_register_interval_in_seconds, 5);
    assert_eq!(start.prune_threshold_in_seconds, 30);
    router.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_listening_and_answering() {
    let t = common::start_router_on_port_zero().await;
    let address = t.router.local_addr();
    let common::TestRouter { nats, router, .. } = t;
    router.shutdown().await;
    assert!(tokio::net::TcpStream::connect(address).await.is_err());
    let greet = nats.request(subjects::ROUTER_GREET, "".into()).await;
    assert!(
        greet.is_err(),
        "a stopped router still answered router.greet"
    );
}
