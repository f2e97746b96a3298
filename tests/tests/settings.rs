//! App settings from a manifest and from `nimbus scale`: stored in desired state, shown by
//! `nimbus app`, applied to running instances; bad values are refused with a clear message.

use std::collections::BTreeSet;
use std::time::Duration;

use nimbus_e2e::{MicroCloud, block_on, eventually, get, sample_wasm, text};

const SERVE: Duration = Duration::from_secs(30);

fn app_json(cloud: &MicroCloud, name: &str) -> serde_json::Value {
    let out = cloud.nimbus(&["app", name, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn running_current(cloud: &MicroCloud, name: &str) -> usize {
    let json = app_json(cloud, name);
    json["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["state"] == "RUNNING" && i["current"] == true)
        .count()
}

#[test]
fn manifests_and_scale_set_limits_that_instances_run_under() {
    let cloud = MicroCloud::start();
    let wasm = sample_wasm("hello-rust");
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.yml");
    std::fs::write(
        &manifest,
        format!(
            "applications:\n- name: tuned\n  path: {}\n  instances: 2\n  memory: 48M\n  timeout: 5s\n  \
             fuel: 400M\n  max_concurrency: 8\n  allowed_outbound_hosts: [api.example.com]\n  env:\n    GREETING: hi\n",
            wasm.display()
        ),
    )
    .unwrap();

    let push = cloud.nimbus(&["push", "-f", manifest.to_str().unwrap()]);
    assert!(push.status.success(), "{}\n{}", text(&push), cloud.logs());
    let app = &app_json(&cloud, "tuned")["app"];
    assert_eq!(app["instances"], 2);
    assert_eq!(app["limits"]["memory_mb"], 48);
    assert_eq!(app["limits"]["timeout_ms"], 5000);
    assert_eq!(app["limits"]["fuel"], 400_000_000u64);
    assert_eq!(app["limits"]["max_concurrency"], 8);
    assert_eq!(app["allowed_outbound_hosts"][0], "api.example.com");
    assert_eq!(app["env"]["GREETING"], "hi");
    let shown = text(&cloud.nimbus(&["app", "tuned"]));
    assert!(
        shown.contains("48 MB") && shown.contains("api.example.com"),
        "{shown}"
    );

    // Both instances serve: the router spreads requests over them.
    assert!(eventually(SERVE, || running_current(&cloud, "tuned") == 2));
    let mut seen = BTreeSet::new();
    for _ in 0..10 {
        let (status, body) = block_on(get(&cloud.url("tuned"))).unwrap();
        assert_eq!(status, 200);
        seen.insert(body.contains("instance 1"));
    }
    assert_eq!(seen.len(), 2, "requests did not reach both instances");

    // Scaling the count keeps the version; changing a limit rolls to a new one.
    let version = app["version"].clone();
    let scale = cloud.nimbus(&["scale", "tuned", "-i", "1"]);
    assert!(scale.status.success(), "{}", text(&scale));
    assert!(eventually(SERVE, || app_json(&cloud, "tuned")["instances"]
        .as_array()
        .unwrap()
        .len()
        == 1));
    assert_eq!(app_json(&cloud, "tuned")["app"]["version"], version);

    let scale = cloud.nimbus(&["scale", "tuned", "-m", "64M"]);
    assert!(scale.status.success(), "{}", text(&scale));
    let app = app_json(&cloud, "tuned");
    assert_eq!(app["app"]["limits"]["memory_mb"], 64);
    assert_ne!(app["app"]["version"], version);
    assert!(eventually(SERVE, || running_current(&cloud, "tuned") == 1));
    assert_eq!(block_on(get(&cloud.url("tuned"))).unwrap().0, 200);

    // Bad values are refused and change nothing.
    for (args, expected) in [
        (&["scale", "tuned", "-m", "0M"][..], "not a memory size"),
        (&["scale", "tuned", "-m", "5000M"], "memory must be between"),
        (
            &["scale", "tuned", "--allow-host", "http://x.com"],
            "not an outbound host",
        ),
        (
            &["scale", "tuned", "-e", "VCAP_APPLICATION=x"],
            "set by the platform",
        ),
        (&["scale", "tuned"], "nothing to change"),
    ] {
        let out = cloud.nimbus(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(text(&out).contains(expected), "{args:?}: {}", text(&out));
    }
    assert_eq!(app_json(&cloud, "tuned")["app"]["limits"]["memory_mb"], 64);

    let broken = dir.path().join("broken.yml");
    std::fs::write(&broken, "applications:\n- name: x\n  memory: lots\n").unwrap();
    let out = cloud.nimbus(&["push", "-f", broken.to_str().unwrap()]);
    assert!(
        !out.status.success() && text(&out).contains("memory"),
        "{}",
        text(&out)
    );
}
