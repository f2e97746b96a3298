//! Guest failures end only the failing request, with a clear status and a log line.

mod common;

use common::{Cloud, get, next_matching, sample_app, start_request};
use nimbus_protocol::messages::LogMessage;
use nimbus_protocol::subjects;

#[tokio::test(flavor = "multi_thread")]
async fn a_trapping_guest_gets_500_and_other_apps_keep_working() {
    let cloud = Cloud::start().await;
    let hello = cloud.upload(&sample_app("hello-rust")).await;
    let trap = cloud.upload(&sample_app("trap-rust")).await;
    let trap_request = start_request("trap", 0, trap);
    let mut trap_logs = cloud.subscribe(subjects::logs(trap_request.app_id)).await;
    let (_, trap_route) = cloud.start_instance(&trap_request).await;
    let (_, hello_route) = cloud
        .start_instance(&start_request("hello", 1, hello))
        .await;

    let response = get(&trap_route, "/panic").await.unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(response.headers()["x-nimbus-error"], "trap");

    let line: LogMessage =
        next_matching(&mut trap_logs, |l: &LogMessage| l.source == "DEA/0").await;
    assert!(line.message.contains("crashed"), "{line:?}");

    // The instance, and the DEA's other apps, serve the next requests.
    let response = get(&trap_route, "/panic").await.unwrap();
    assert_eq!(response.status(), 500);
    let response = get(&hello_route, "/").await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("instance 1"));
    cloud.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_sends_no_response_gets_500() {
    let cloud = Cloud::start().await;
    let trap = cloud.upload(&sample_app("trap-rust")).await;
    let (_, route) = cloud.start_instance(&start_request("trap", 0, trap)).await;
    let response = get(&route, "/silent").await.unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(response.headers()["x-nimbus-error"], "trap");
    cloud.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn guests_running_past_their_time_limit_get_504() {
    let cloud = Cloud::start().await;
    let trap = cloud.upload(&sample_app("trap-rust")).await;
    let hello = cloud.upload(&sample_app("hello-rust")).await;
    let mut request = start_request("slow", 0, trap);
    request.limits.timeout_ms = 300;
    let (_, route) = cloud.start_instance(&request).await;
    let (_, hello_route) = cloud
        .start_instance(&start_request("hello", 0, hello))
        .await;

    // A CPU loop is interrupted by the epoch deadline...
    let response = get(&route, "/spin").await.unwrap();
    assert_eq!(response.status(), 504);
    assert_eq!(response.headers()["x-nimbus-error"], "timeout");
    // ...and a guest blocked in a host call by the DEA's own timeout.
    let response = get(&route, "/sleep").await.unwrap();
    assert_eq!(response.status(), 504);
    assert_eq!(response.headers()["x-nimbus-error"], "timeout");

    assert_eq!(get(&hello_route, "/").await.unwrap().status(), 200);
    cloud.shutdown().await;
}
