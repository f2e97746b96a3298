//! An instance's life on a real bus: start, serve, heartbeat, log, stop; and start failures.

mod common;

use common::{Cloud, get, next_matching, sample_app, start_request};
use nimbus_protocol::messages::{
    DeaAdvertise, DeaHeartbeat, DropletExited, ExitReason, InstanceState, LogMessage,
    RouteRegistration, StartReply, StopRequest,
};
use nimbus_protocol::subjects;

#[tokio::test(flavor = "multi_thread")]
async fn serves_an_instance_until_it_is_stopped() {
    let cloud = Cloud::start().await;
    let droplet = cloud.upload(&sample_app("hello-rust")).await;
    let request = start_request("hello", 3, droplet);
    let app_id = request.app_id;
    let mut logs = cloud.subscribe(subjects::logs(app_id)).await;
    let mut heartbeats = cloud.subscribe(subjects::DEA_HEARTBEAT).await;
    let mut adverts = cloud.subscribe(subjects::DEA_ADVERTISE).await;

    let (instance_id, route) = cloud.start_instance(&request).await;
    assert_eq!(route.uris, ["hello.localhost"]);
    assert_eq!(route.app, Some(app_id));

    let response = get(&route, "/greet").await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(body.contains("Hello from hello, instance 3!"), "{body}");

    let line: LogMessage = next_matching(&mut logs, |l: &LogMessage| l.source == "APP/3").await;
    assert!(line.message.contains("serving /greet"), "{line:?}");

    let dea_id = cloud.dea_id.clone();
    next_matching(&mut heartbeats, |h: &DeaHeartbeat| {
        h.dea == dea_id
            && h.droplets.iter().any(|d| {
                d.instance_id == instance_id
                    && d.state == InstanceState::Running
                    && d.port == route.port
                    && d.index == 3
            })
    })
    .await;
    let advert: DeaAdvertise = next_matching(&mut adverts, |a: &DeaAdvertise| {
        a.id == dea_id && a.app_id_to_count.get(&app_id) == Some(&1)
    })
    .await;
    assert_eq!(
        advert.available_memory,
        nimbus_dea_wasm::DEFAULT_MEMORY_MB - 64
    );
    assert_eq!(advert.stacks, ["http-component", "wagi"]);

    let mut exits = cloud.subscribe(subjects::DROPLET_EXITED).await;
    let mut unregistrations = cloud.subscribe(subjects::ROUTER_UNREGISTER).await;
    nimbus_bus::publish(
        &cloud.nats,
        subjects::DEA_STOP,
        &StopRequest {
            app_id,
            version: None,
            indices: None,
            instance_ids: None,
        },
    )
    .await
    .unwrap();
    let unregistered: RouteRegistration =
        next_matching(&mut unregistrations, |r: &RouteRegistration| {
            r.port == route.port
        })
        .await;
    assert_eq!(unregistered, route);
    let exited: DropletExited =
        next_matching(&mut exits, |e: &DropletExited| e.instance_id == instance_id).await;
    assert_eq!(exited.reason, ExitReason::Stopped);
    assert_eq!(exited.app_id, app_id);

    let refused = get(&route, "/").await.unwrap_err();
    assert!(refused.is_connect(), "{refused:?}");
    cloud.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fails_to_start_a_droplet_missing_from_the_blob_store() {
    let cloud = Cloud::start().await;
    let mut droplet = cloud.upload(b"irrelevant").await;
    droplet.sha256 = "0".repeat(64);
    let reply = cloud
        .request_start(&start_request("ghost", 0, droplet))
        .await;
    match reply {
        StartReply::Failed { message } => assert!(message.contains("not found"), "{message}"),
        other => panic!("unexpected {other:?}"),
    }
    cloud.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fails_to_start_a_droplet_that_is_not_a_component() {
    let cloud = Cloud::start().await;
    let droplet = cloud.upload(b"definitely not wasm").await;
    let reply = cloud
        .request_start(&start_request("junk", 0, droplet))
        .await;
    match reply {
        StartReply::Failed { message } => {
            assert!(
                message.contains("not a valid WebAssembly component"),
                "{message}"
            )
        }
        other => panic!("unexpected {other:?}"),
    }
    cloud.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keeps_serving_after_a_malformed_start_request() {
    let cloud = Cloud::start().await;
    let reply = cloud
        .nats
        .request(subjects::dea_start(&cloud.dea_id), "{\"app_id\": 5}".into())
        .await
        .unwrap();
    let reply: StartReply = nimbus_protocol::decode(&reply.payload).unwrap();
    assert!(matches!(reply, StartReply::Failed { .. }), "{reply:?}");

    let droplet = cloud.upload(&sample_app("hello-rust")).await;
    let (_, route) = cloud
        .start_instance(&start_request("hello", 0, droplet))
        .await;
    let response = get(&route, "/").await.unwrap();
    assert_eq!(response.status(), 200);
    cloud.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_unregisters_routes_and_reports_every_instance() {
    let mut cloud = Cloud::start().await;
    let droplet = cloud.upload(&sample_app("hello-rust")).await;
    let request = start_request("hello", 0, droplet);
    let (instance_id, route) = cloud.start_instance(&request).await;
    let mut exits = cloud.subscribe(subjects::DROPLET_EXITED).await;
    let mut unregistrations = cloud.subscribe(subjects::ROUTER_UNREGISTER).await;

    cloud.dea.take().unwrap().shutdown().await;

    let exited: DropletExited =
        next_matching(&mut exits, |e: &DropletExited| e.instance_id == instance_id).await;
    assert_eq!(exited.reason, ExitReason::DeaShutdown);
    let unregistered: RouteRegistration =
        next_matching(&mut unregistrations, |r: &RouteRegistration| {
            r.port == route.port
        })
        .await;
    assert_eq!(unregistered.uris, request.uris);
    assert!(get(&route, "/").await.unwrap_err().is_connect());
    cloud.shutdown().await;
}
