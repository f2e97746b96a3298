//! Self-healing, end to end: several DEAs and health managers as processes of their own next to
//! `nimbus up`, a real nats-server, and steady load through the router while things break.
//! - kill -9 of a DEA: requests keep succeeding and its instances run again elsewhere;
//! - kill -9 of the leading health manager: a standby takes over the repairs;
//! - a crash-looping app restarts, then backs off, as `nimbus app` and `nimbus events` show;
//! - SIGTERM of a DEA: it evacuates with no failed request;
//! - a restart of nats-server and of the health manager stops no healthy instance.

use std::collections::BTreeSet;
use std::time::Duration;

use nimbus_e2e::{
    Component, Load, LoadReport, MicroCloud, block_on, eventually, get, sample_wasm, text,
};

/// Longest wait for a repair; the health manager needs about three seconds to lose a DEA.
const REPAIR: Duration = Duration::from_secs(30);
const JOIN: Duration = Duration::from_secs(60);

/// A DEA of its own, once it has joined.
fn join_dea(cloud: &MicroCloud, id: &str) -> Component {
    let dea = cloud.join(&["dea", "--id", id]);
    dea.wait_for_log("DEA started", JOIN);
    dea
}

/// Pushes the prebuilt hello component with `instances` instances.
fn push_hello(cloud: &MicroCloud, instances: u32) {
    let wasm = sample_wasm("hello-rust");
    let push = cloud.nimbus(&[
        "push",
        "hello",
        "-p",
        wasm.to_str().unwrap(),
        "-i",
        &instances.to_string(),
    ]);
    assert!(push.status.success(), "{}\n{}", text(&push), cloud.logs());
    assert!(
        eventually(REPAIR, || cloud.running_instances("hello").len()
            == instances as usize),
        "hello did not run {instances} instances:\n{}",
        cloud.logs()
    );
}

/// Which DEA runs each running instance of hello, by index.
/// The load saw no failed request, and was heavy enough for that to mean something.
fn assert_no_failed_request(report: &LoadReport, cloud: &MicroCloud) {
    assert!(
        report.failures.is_empty(),
        "{} of {} requests failed: {:?}\n{}",
        report.failures.len(),
        report.ok + report.failures.len() as u64,
        report.failures,
        cloud.logs()
    );
    assert!(
        report.ok > 100,
        "too little load to mean anything: {report:?}"
    );
}

fn placement(cloud: &MicroCloud) -> Vec<(u64, String)> {
    let mut found: Vec<(u64, String)> = cloud
        .running_instances("hello")
        .iter()
        .map(|i| {
            let dea = i["dea"].as_str().unwrap_or_default().to_string();
            (i["index"].as_u64().unwrap_or_default(), dea)
        })
        .collect();
    found.sort();
    found
}

fn instance_ids(cloud: &MicroCloud) -> BTreeSet<String> {
    cloud
        .running_instances("hello")
        .iter()
        .filter_map(|i| i["instance_id"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn two_instances_serve_without_a_failed_request_through_kill_9_of_a_dea() {
    let cloud = MicroCloud::start_with(&["--no-dea"]);
    let mut a = join_dea(&cloud, "dea-a");
    let _b = join_dea(&cloud, "dea-b");
    push_hello(&cloud, 2);
    let deas: BTreeSet<String> = placement(&cloud).into_iter().map(|(_, d)| d).collect();
    assert_eq!(deas.len(), 2, "instances are spread over both DEAs");

    let load = Load::start(&cloud.url("hello"), 4);
    std::thread::sleep(Duration::from_secs(2));
    a.kill9();
    let repaired = eventually(REPAIR, || {
        let now = placement(&cloud);
        now.len() == 2 && now.iter().all(|(_, dea)| dea == "dea-b")
    });
    std::thread::sleep(Duration::from_secs(1));
    let report = load.finish();
    assert!(
        repaired,
        "not back to 2 instances on dea-b:\n{}",
        cloud.logs()
    );
    assert_no_failed_request(&report, &cloud);
    let events = text(&cloud.nimbus(&["events", "hello"]));
    assert!(events.contains("dea_lost"), "{events}");
}

#[test]
fn a_single_instance_is_served_again_from_another_dea_after_kill_9_even_with_its_health_manager_gone()
 {
    let cloud = MicroCloud::start_with(&["--no-dea", "--no-health-manager"]);
    let mut leader = cloud.join(&["health-manager"]);
    leader.wait_for_log("leading", JOIN);
    let standby = cloud.join(&["health-manager"]);
    standby.wait_for_log("health manager started", JOIN);
    let mut deas = [join_dea(&cloud, "dea-a"), join_dea(&cloud, "dea-b")];
    push_hello(&cloud, 1);
    let (_, first) = placement(&cloud).pop().expect("one instance");
    let other = if first == "dea-a" { "dea-b" } else { "dea-a" };

    // The leader goes first, then the instance's DEA: the standby must take over and repair.
    leader.kill9();
    deas[usize::from(first == "dea-b")].kill9();
    let served_again = eventually(REPAIR, || {
        placement(&cloud) == [(0, other.to_string())]
            && block_on(get(&cloud.url("hello"))).is_ok_and(|(status, _)| status == 200)
    });
    assert!(
        served_again,
        "hello is not served from {other}:\n{}\n{}",
        standby.logs(),
        cloud.logs()
    );
    assert!(standby.logs().contains("leading"), "{}", standby.logs());
}

#[test]
fn a_crash_looping_app_restarts_then_backs_off_as_app_and_events_show() {
    let cloud = MicroCloud::start();
    let abuse = sample_wasm("abuse");
    let abuse = abuse.to_str().unwrap();

    // Readiness: the health check fails before the instance is ever routed.
    let push = cloud.nimbus(&[
        "push",
        "crashy",
        "-p",
        abuse,
        "--health-check-http-endpoint",
        "/panic",
    ]);
    assert!(!push.status.success(), "{}", text(&push));
    assert!(text(&push).contains("keeps crashing"), "{}", text(&push));
    let index0 = |cloud: &MicroCloud| cloud.app_json("crashy")["instances"][0].clone();
    let flapping = index0(&cloud);
    assert_eq!(flapping["state"], "FLAPPING", "{flapping}");
    let crashes = flapping["crash_count"].as_u64().unwrap();
    assert!(crashes >= 4, "{flapping}");
    assert!(
        flapping["last_crash"]
            .as_str()
            .is_some_and(|c| c.contains("health check failed")),
        "{flapping}"
    );
    let table = text(&cloud.nimbus(&["app", "crashy"]));
    assert!(
        table.contains("FLAPPING") && table.contains("last crashed"),
        "{table}"
    );
    // Back-off: after the three immediate restarts, crashes come 1, 2, 4… seconds apart; an
    // immediate restart loop would crash several times a second.
    std::thread::sleep(Duration::from_secs(5));
    let later = index0(&cloud)["crash_count"].as_u64().unwrap();
    assert!(
        later > crashes && later <= crashes + 3,
        "{crashes} then {later}"
    );
    let events = text(&cloud.nimbus(&["events", "crashy"]));
    assert!(
        events.contains("crashed") && events.contains("health check failed"),
        "{events}"
    );

    // Liveness: healthy when pushed, failing a few seconds later, crashed by the probes.
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 4;
    let endpoint = format!("/healthy-until?epoch={until}");
    let push = cloud.nimbus(&[
        "push",
        "fading",
        "-p",
        abuse,
        "--health-check-http-endpoint",
        &endpoint,
    ]);
    assert!(push.status.success(), "{}", text(&push));
    let crashed = eventually(REPAIR, || {
        text(&cloud.nimbus(&["events", "fading"])).contains("in a row")
    });
    assert!(crashed, "{}", cloud.logs());
    let state = index0_of(&cloud, "fading");
    assert!(state["crash_count"].as_u64().unwrap() >= 1, "{state}");

    // The crash loops cost the DEA nothing: a healthy app beside them answers.
    let hello = sample_wasm("hello-rust");
    let push = cloud.nimbus(&["push", "hello", "-p", hello.to_str().unwrap()]);
    assert!(push.status.success(), "{}", text(&push));
}

fn index0_of(cloud: &MicroCloud, name: &str) -> serde_json::Value {
    cloud.app_json(name)["instances"][0].clone()
}

#[test]
fn sigterm_evacuates_a_dea_under_load_without_a_failed_request() {
    let cloud = MicroCloud::start_with(&["--no-dea"]);
    let _a = join_dea(&cloud, "dea-a");
    let mut b = join_dea(&cloud, "dea-b");
    push_hello(&cloud, 2);

    let load = Load::start(&cloud.url("hello"), 4);
    std::thread::sleep(Duration::from_secs(2));
    let status = b.terminate(Duration::from_secs(90));
    std::thread::sleep(Duration::from_secs(1));
    let report = load.finish();
    assert!(
        status.success(),
        "the DEA exited with {status}:\n{}",
        b.logs()
    );
    assert!(
        b.logs().contains("every instance runs elsewhere"),
        "{}",
        b.logs()
    );
    let moved = [(0, "dea-a".to_string()), (1, "dea-a".to_string())];
    assert!(
        eventually(Duration::from_secs(5), || placement(&cloud) == moved),
        "{:?}",
        placement(&cloud)
    );
    assert_no_failed_request(&report, &cloud);
}

#[test]
fn restarting_nats_and_the_health_manager_stops_no_healthy_instance() {
    let cloud = MicroCloud::start_with(&["--no-health-manager"]);
    let mut hm = cloud.join(&["health-manager"]);
    hm.wait_for_log("leading", JOIN);
    push_hello(&cloud, 2);
    let before = instance_ids(&cloud);

    // nats-server dies; `nimbus up` starts it again on the same port and store.
    let nats = cloud.nats_pid().expect("nats-server's pid");
    let _ = std::process::Command::new("kill")
        .args(["-9", &nats.to_string()])
        .status();
    let back = eventually(REPAIR, || {
        cloud.nats_pid().is_some_and(|pid| pid != nats) && cloud.nimbus(&["apps"]).status.success()
    });
    assert!(back, "nats-server did not come back:\n{}", cloud.logs());

    // The health manager restarts too, and must judge nothing it has not heard yet.
    hm.kill9();
    let hm = cloud.join(&["health-manager"]);
    hm.wait_for_log("leading", JOIN);
    std::thread::sleep(Duration::from_secs(5));

    assert_eq!(
        instance_ids(&cloud),
        before,
        "{}\n{}",
        hm.logs(),
        cloud.logs()
    );
    let (status, _) = block_on(get(&cloud.url("hello"))).unwrap();
    assert_eq!(status, 200);
}
