//! Every limit ends only the request that hit it, with its documented status, an
//! `x-nimbus-error` header, a line in the app's log and an event; hello, running beside the
//! abuse app, keeps answering 200 throughout.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::{Cloud, exchange, get, next_event, next_matching, sample_app, start_request, to};
use nimbus_protocol::messages::{EventKind, LogMessage, RouteRegistration};
use nimbus_protocol::subjects;
use reqwest::Method;

/// GETs hello until stopped, counting answers and failing on anything but 200.
fn keep_calling(route: RouteRegistration, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let answered = AtomicU64::new(0);
        while !stop.load(Ordering::Relaxed) {
            let response = get(&route, "/").await.unwrap();
            assert_eq!(response.status(), 200, "hello stopped answering");
            answered.fetch_add(1, Ordering::Relaxed);
        }
        answered.load(Ordering::Relaxed)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn each_abuse_gets_its_status_and_an_event_while_hello_keeps_answering() {
    let cloud = Cloud::start().await;
    let hello = cloud.upload(&sample_app("hello-rust")).await;
    let abuse = cloud.upload(&sample_app("abuse")).await;
    let mut request = start_request("abuse", 0, abuse);
    // Enough fuel for any honest request, far too little for an endless loop; a generous
    // wall-clock limit so the loop meets its fuel limit first.
    request.limits.fuel = Some(300_000_000);
    request.limits.timeout_ms = 60_000;
    let mut events = cloud.subscribe(subjects::events(request.app_id)).await;
    let mut logs = cloud.subscribe(subjects::logs(request.app_id)).await;
    let (_, route) = cloud.start_instance(&request).await;
    let (_, hello_route) = cloud
        .start_instance(&start_request("hello", 1, hello))
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let caller = keep_calling(hello_route, stop.clone());

    let cases = [
        ("/loop", 503, "fuel_exhausted", EventKind::LimitExceeded),
        ("/memory", 500, "memory_limit", EventKind::LimitExceeded),
        ("/recursion", 500, "trap", EventKind::Trapped),
        ("/panic", 500, "trap", EventKind::Trapped),
        ("/silent", 500, "trap", EventKind::Trapped),
    ];
    for (path, status, cause, kind) in cases {
        let (got, header, _) = exchange(to(&route, Method::GET, path)).await;
        assert_eq!((got, header.as_str()), (status, cause), "{path}");
        let event = next_event(&mut events, cause).await;
        assert_eq!(event.kind, kind, "{path}");
        assert_eq!(event.instance_index, Some(0));
        // The app's next request is unaffected.
        assert_eq!(
            exchange(to(&route, Method::GET, "/")).await.0,
            200,
            "after {path}"
        );
    }
    let line: LogMessage = next_matching(&mut logs, |l: &LogMessage| {
        l.source == "DEA/0" && l.message.contains("out of memory")
    })
    .await;
    assert!(line.message.contains("64 MB"), "{line:?}");

    stop.store(true, Ordering::Relaxed);
    assert!(caller.await.unwrap() > 0);
    cloud.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn loops_sleepers_and_floods_end_at_the_time_limit() {
    let cloud = Cloud::start().await;
    let hello = cloud.upload(&sample_app("hello-rust")).await;
    let abuse = cloud.upload(&sample_app("abuse")).await;
    let mut request = start_request("slow", 0, abuse);
    request.limits.timeout_ms = 500;
    request.limits.fuel = Some(1 << 50);
    let mut events = cloud.subscribe(subjects::events(request.app_id)).await;
    let mut logs = cloud.subscribe(subjects::logs(request.app_id)).await;
    let (_, route) = cloud.start_instance(&request).await;
    let (_, hello_route) = cloud
        .start_instance(&start_request("hello", 0, hello))
        .await;

    // A CPU loop is interrupted by the epoch deadline, a guest blocked in a host call by the
    // DEA's own timeout, and a log flood by either.
    for path in ["/loop", "/sleep", "/flood"] {
        let (status, cause, _) = exchange(to(&route, Method::GET, path)).await;
        assert_eq!((status, cause.as_str()), (504, "timeout"), "{path}");
        let event = next_event(&mut events, "timeout").await;
        assert_eq!(event.kind, EventKind::LimitExceeded);
        assert_eq!(get(&hello_route, "/").await.unwrap().status(), 200);
    }
    // The flood was capped, and the log says so.
    let notice: LogMessage = next_matching(&mut logs, |l: &LogMessage| {
        l.source == "DEA/0" && l.message.contains("log lines dropped")
    })
    .await;
    assert!(notice.message.contains("lines or"), "{notice:?}");
    assert_eq!(exchange(to(&route, Method::GET, "/")).await.0, 200);
    cloud.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_beyond_the_concurrency_limit_get_503_with_retry_after() {
    let cloud = Cloud::start().await;
    let abuse = cloud.upload(&sample_app("abuse")).await;
    let mut request = start_request("busy", 0, abuse);
    request.limits.max_concurrency = 1;
    request.limits.timeout_ms = 5_000;
    let mut events = cloud.subscribe(subjects::events(request.app_id)).await;
    let (_, route) = cloud.start_instance(&request).await;

    let sleeper = tokio::spawn(exchange(to(&route, Method::GET, "/sleep")));
    // Until the sleeper holds the only slot, a request may still get in; then it must be refused.
    let refused = loop {
        let response = to(&route, Method::GET, "/").send().await.unwrap();
        if response.status() == 503 {
            break response;
        }
        assert_eq!(response.status(), 200);
    };
    assert_eq!(refused.headers()["x-nimbus-error"], "overloaded");
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(
        next_event(&mut events, "overloaded").await.kind,
        EventKind::LimitExceeded
    );

    assert_eq!(sleeper.await.unwrap().0, 504);
    // The slot is free again.
    assert_eq!(exchange(to(&route, Method::GET, "/")).await.0, 200);
    cloud.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_the_limit_get_413_whether_declared_or_streamed() {
    let cloud = Cloud::start().await;
    let abuse = cloud.upload(&sample_app("abuse")).await;
    let mut request = start_request("bodies", 0, abuse);
    request.limits.max_body_bytes = 1024;
    let mut events = cloud.subscribe(subjects::events(request.app_id)).await;
    let (_, route) = cloud.start_instance(&request).await;

    let (status, _, body) = exchange(to(&route, Method::POST, "/echo").body(vec![7u8; 1000])).await;
    assert_eq!((status, body.as_str()), (200, "1000\n"));

    let (status, cause, _) =
        exchange(to(&route, Method::POST, "/echo").body(vec![7u8; 2000])).await;
    assert_eq!((status, cause.as_str()), (413, "body_too_large"));
    next_event(&mut events, "body_too_large").await;

    // No Content-Length: the body is cut off as the guest reads past the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..8).map(|_| Ok(vec![1u8; 512])).collect();
    let streamed = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let (status, cause, _) = exchange(to(&route, Method::POST, "/echo").body(streamed)).await;
    assert_eq!((status, cause.as_str()), (413, "body_too_large"));
    next_event(&mut events, "body_too_large").await;

    assert_eq!(exchange(to(&route, Method::GET, "/")).await.0, 200);
    cloud.shutdown().await;
}
