//! A user's first session: push hello from source and as a prebuilt component, reach it through
//! the router, list it, read its logs, stop and start it, restart the platform, delete it.

use std::time::Duration;

use nimbus_e2e::{MicroCloud, block_on, eventually, get, sample_wasm, text};

const SERVE: Duration = Duration::from_secs(30);

fn status_of(cloud: &MicroCloud, name: &str) -> u16 {
    block_on(get(&cloud.url(name)))
        .map(|(status, _)| status)
        .unwrap_or(0)
}

#[test]
fn pushed_apps_are_served_listed_stopped_restarted_and_deleted() {
    let mut cloud = MicroCloud::start();
    let root = nimbus_e2e::repo_root();

    // A prebuilt component.
    let wasm = sample_wasm("hello-rust");
    let push = cloud.nimbus(&["push", "hello-wasm", "-p", wasm.to_str().unwrap()]);
    assert!(
        push.status.success(),
        "push failed:\n{}\n{}",
        text(&push),
        cloud.logs()
    );
    assert!(
        text(&push).contains(&cloud.url("hello-wasm")),
        "{}",
        text(&push)
    );
    let (status, body) = block_on(get(&cloud.url("hello-wasm"))).unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("hello-wasm") && body.contains("instance 0"),
        "{body}"
    );

    // The same app from Rust source, staged by cargo; the build log streams to the CLI.
    let source = root.join("sample-apps/hello-rust");
    let push = cloud.nimbus(&["push", "hello", "-p", source.to_str().unwrap()]);
    let output = text(&push);
    assert!(
        push.status.success(),
        "push failed:\n{output}\n{}",
        cloud.logs()
    );
    assert!(
        output.contains("Compiling hello-rust"),
        "no build log streamed:\n{output}"
    );
    let (status, body) = block_on(get(&cloud.url("hello"))).unwrap();
    assert_eq!(
        (status, body.trim()),
        (200, "Hello from hello, instance 0!")
    );

    // Pushing unchanged bits again reuses the droplet.
    let again = cloud.nimbus(&["push", "hello", "-p", source.to_str().unwrap()]);
    assert!(
        text(&again).contains("reusing the droplet"),
        "{}",
        text(&again)
    );

    // Listing.
    let apps = text(&cloud.nimbus(&["apps"]));
    assert!(
        apps.contains("hello-wasm") && apps.contains("started") && apps.contains("1/1"),
        "{apps}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&cloud.nimbus(&["apps", "--json"]).stdout).unwrap();
    let names: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hello", "hello-wasm"]);
    let app = text(&cloud.nimbus(&["app", "hello"]));
    assert!(app.contains("rust") && app.contains("RUNNING"), "{app}");

    // The app's stdout reaches its log, next to staging output.
    assert!(
        eventually(SERVE, || text(
            &cloud.nimbus(&["logs", "hello", "--recent"])
        )
        .contains("hello: serving /")),
        "{}",
        text(&cloud.nimbus(&["logs", "hello", "--recent"]))
    );
    let logs = text(&cloud.nimbus(&["logs", "hello", "--recent"]));
    assert!(logs.contains("[STG]") && logs.contains("[APP/0]"), "{logs}");

    // Stop: no longer served. Start: served again.
    assert!(cloud.nimbus(&["stop", "hello"]).status.success());
    assert!(
        eventually(SERVE, || status_of(&cloud, "hello") == 404),
        "still served after stop"
    );
    assert_eq!(
        status_of(&cloud, "hello-wasm"),
        200,
        "stopping one app touched another"
    );
    let start = cloud.nimbus(&["start", "hello"]);
    assert!(start.status.success(), "{}", text(&start));
    assert_eq!(status_of(&cloud, "hello"), 200);

    // Restart the whole platform: desired state survives and apps are served again.
    assert!(
        cloud.stop().success(),
        "nimbus up did not exit cleanly:\n{}",
        cloud.logs()
    );
    cloud.boot();
    assert!(
        eventually(SERVE, || status_of(&cloud, "hello") == 200),
        "not served after restart:\n{}",
        cloud.logs()
    );
    assert!(eventually(SERVE, || status_of(&cloud, "hello-wasm") == 200));

    // Delete: gone from the router and the API.
    let delete = cloud.nimbus(&["delete", "hello-wasm", "-f"]);
    assert!(delete.status.success(), "{}", text(&delete));
    assert!(eventually(SERVE, || status_of(&cloud, "hello-wasm") == 404));
    let show = cloud.nimbus(&["app", "hello-wasm"]);
    assert!(
        !show.status.success() && text(&show).contains("not found"),
        "{}",
        text(&show)
    );
    assert_eq!(status_of(&cloud, "hello"), 200);
}
