//! Hostile apps next to a well-behaved one: every abuse ends alone with its documented status and
//! `x-nimbus-error` cause, an event, and a log line, while hello keeps answering 200 throughout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use nimbus_e2e::{MicroCloud, block_on, eventually, sample_wasm, text};

/// One abuse: the path to request, the status and cause the platform must answer with.
struct Abuse {
    path: &'static str,
    status: u16,
    cause: &'static str,
}

const ABUSES: &[Abuse] = &[
    Abuse {
        path: "/loop",
        status: 503,
        cause: "fuel_exhausted",
    },
    Abuse {
        path: "/memory",
        status: 500,
        cause: "memory_limit",
    },
    Abuse {
        path: "/recursion",
        status: 500,
        cause: "trap",
    },
    Abuse {
        path: "/panic",
        status: 500,
        cause: "trap",
    },
    Abuse {
        path: "/sleep",
        status: 504,
        cause: "timeout",
    },
];

/// Sends one request through the router: status, `x-nimbus-error`, body.
async fn request(url: &str, body: Option<Vec<u8>>) -> (u16, String, String) {
    let client = nimbus_cli::client::http_client().unwrap();
    let request = match body {
        Some(body) => client.post(url).body(body),
        None => client.get(url),
    };
    let response = request
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    let cause = response
        .headers()
        .get("x-nimbus-error")
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    (
        response.status().as_u16(),
        cause,
        response.text().await.unwrap_or_default(),
    )
}

#[test]
fn abusive_requests_end_alone_while_hello_keeps_serving() {
    let cloud = MicroCloud::start();
    let hello = sample_wasm("hello-rust");
    let abuse = sample_wasm("abuse");
    let push = cloud.nimbus(&["push", "hello", "-p", hello.to_str().unwrap()]);
    assert!(push.status.success(), "{}\n{}", text(&push), cloud.logs());
    let push = cloud.nimbus(&[
        "push",
        "abuse",
        "-p",
        abuse.to_str().unwrap(),
        "-m",
        "32M",
        "--fuel",
        "300M",
        "--timeout",
        "3s",
        "--max-body",
        "1M",
    ]);
    assert!(push.status.success(), "{}\n{}", text(&push), cloud.logs());
    let shown = text(&cloud.nimbus(&["app", "abuse"]));
    assert!(
        shown.contains("32 MB") && shown.contains("300000000") && shown.contains("3000 ms"),
        "{shown}"
    );

    // hello under steady load for the whole test, on its own thread.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, served, failed, url) = (
            stop.clone(),
            served.clone(),
            failed.clone(),
            cloud.url("hello"),
        );
        std::thread::spawn(move || {
            block_on(async {
                while !stop.load(Ordering::Relaxed) {
                    match request(&url, None).await {
                        (200, _, _) => served.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
    };

    let url = cloud.url("abuse");
    for abuse in ABUSES {
        let (status, cause, body) = block_on(request(&format!("{url}{}", abuse.path), None));
        assert_eq!(
            (status, cause.as_str()),
            (abuse.status, abuse.cause),
            "{}: {body}",
            abuse.path
        );
        // The app's next request is unaffected.
        assert_eq!(
            block_on(request(&url, None)).0,
            200,
            "abuse app broken after {}",
            abuse.path
        );
    }

    // A huge body is refused before the app runs.
    let (status, cause, _) = block_on(request(&format!("{url}/echo"), Some(vec![b'x'; 2 << 20])));
    assert_eq!((status, cause.as_str()), (413, "body_too_large"));
    let (status, _, body) = block_on(request(&format!("{url}/echo"), Some(vec![b'x'; 1000])));
    assert_eq!((status, body.trim()), (200, "1000"));

    // A log flood is cut off by the platform and does not take the DEA down.
    let (status, cause, _) = block_on(request(&format!("{url}/flood"), None));
    assert!(
        status >= 500 && !cause.is_empty(),
        "flood: {status} {cause}"
    );

    // No host filesystem, only private scratch space; no egress to the platform's own network.
    let (status, _, body) = block_on(request(&format!("{url}/escape"), None));
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("root:"),
        "read the host's /etc/passwd: {body}"
    );
    let target = format!("http://127.0.0.1:{}/", cloud.port);
    let (_, _, body) = block_on(request(&format!("{url}/egress?url={target}"), None));
    assert!(
        body.to_lowercase().contains("denied"),
        "egress to the platform was not denied: {body}"
    );

    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let (served, failed) = (
        served.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    assert!(
        served > 0 && failed == 0,
        "hello: {served} served, {failed} failed while the abuse ran"
    );

    // Each limit hit is an event the developer can read.
    assert!(
        eventually(Duration::from_secs(10), || {
            let events = text(&cloud.nimbus(&["events", "abuse"]));
            [
                "fuel_exhausted",
                "memory_limit",
                "timeout",
                "trap",
                "body_too_large",
            ]
            .iter()
            .all(|c| events.contains(c))
        }),
        "{}",
        text(&cloud.nimbus(&["events", "abuse"]))
    );
    let logs = text(&cloud.nimbus(&["logs", "abuse", "--recent"]));
    assert!(logs.contains("fuel"), "no log line about fuel: {logs}");
}
