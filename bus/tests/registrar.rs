//! The registrar against a real nats-server: routes are registered at once, re-sent when a
//! router starts, and unregistered on removal and shutdown.

use std::time::Duration;

use futures::StreamExt as _;
use nimbus_bus::{NatsServer, Registrar, ServerOptions};
use nimbus_protocol::messages::{RouteRegistration, RouterStart};
use nimbus_protocol::subjects;

async fn next_route(subscriber: &mut async_nats::Subscriber) -> RouteRegistration {
    let message = tokio::time::timeout(Duration::from_secs(10), subscriber.next())
        .await
        .expect("a route message within 10 s")
        .expect("an open subscription");
    nimbus_protocol::decode(&message.payload).unwrap()
}

fn route(port: u16) -> RouteRegistration {
    RouteRegistration {
        host: "127.0.0.1".into(),
        port,
        uris: vec!["app.test".into()],
        app: None,
        private_instance_id: None,
    }
}

#[tokio::test]
async fn registers_reregisters_on_router_start_and_unregisters() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(ServerOptions::ephemeral(dir.path()))
        .await
        .unwrap();
    let nats = nimbus_bus::connect(server.config(), "test").await.unwrap();
    let mut registers = nats.subscribe(subjects::ROUTER_REGISTER).await.unwrap();
    let mut unregisters = nats.subscribe(subjects::ROUTER_UNREGISTER).await.unwrap();
    nats.flush().await.unwrap();

    let registrar = Registrar::start(nats.clone()).await.unwrap();
    registrar.add(route(1)).await;
    assert_eq!(next_route(&mut registers).await, route(1));

    // A router that starts asks everyone to register again (and sets a long interval, so the
    // next message can only be the answer to this announcement).
    let start = RouterStart {
        id: "r".into(),
        minimum_register_interval_in_seconds: 3600,
        prune_threshold_in_seconds: 7200,
    };
    nimbus_bus::publish(&nats, subjects::ROUTER_START, &start)
        .await
        .unwrap();
    assert_eq!(next_route(&mut registers).await, route(1));

    registrar.add(route(2)).await;
    assert_eq!(next_route(&mut registers).await, route(2));
    registrar.remove(&route(1)).await;
    assert_eq!(next_route(&mut unregisters).await, route(1));
    registrar.shutdown().await;
    assert_eq!(next_route(&mut unregisters).await, route(2));
    server.stop().await;
}
