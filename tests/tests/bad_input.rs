//! Bad input from the CLI and the API gets a clear message or a JSON error with the right status,
//! and loses nothing: the app pushed first keeps its droplet and keeps being served.

use nimbus_e2e::{MicroCloud, block_on, get, sample_wasm, text};

/// Sends a request to the API through the router; returns status and parsed JSON body.
fn api(
    cloud: &MicroCloud,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    block_on(async {
        let client = nimbus_cli::client::http_client().unwrap();
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = client
            .request(method, format!("{}{path}", cloud.url("api")))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    })
}

fn error_code(body: &serde_json::Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not a JSON error: {body}"))
}

#[test]
fn bad_input_gets_clear_errors_and_loses_nothing() {
    let cloud = MicroCloud::start();
    let wasm = sample_wasm("hello-rust");
    let push = cloud.nimbus(&["push", "hello", "-p", wasm.to_str().unwrap()]);
    assert!(push.status.success(), "{}\n{}", text(&push), cloud.logs());
    let token = cloud.token();
    let scratch = tempfile::tempdir().unwrap();

    // A file that is not a wasm component: staging fails, the app keeps its droplet.
    let not_wasm = scratch.path().join("notes.wasm");
    std::fs::write(&not_wasm, "this is not webassembly").unwrap();
    let push = cloud.nimbus(&["push", "hello", "-p", not_wasm.to_str().unwrap()]);
    assert!(!push.status.success());
    assert!(text(&push).contains("staging failed"), "{}", text(&push));

    // An empty directory.
    let empty = scratch.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let push = cloud.nimbus(&["push", "other", "-p", empty.to_str().unwrap()]);
    assert!(!push.status.success());
    assert!(text(&push).contains("nothing to push"), "{}", text(&push));

    // An unknown app.
    for args in [
        &["app", "nope"][..],
        &["start", "nope"],
        &["stop", "nope"],
        &["delete", "nope", "-f"],
    ] {
        let out = cloud.nimbus(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            text(&out).contains("app \"nope\" not found"),
            "{args:?}: {}",
            text(&out)
        );
    }

    // The API: duplicate name, malformed JSON, unknown fields, bad names, missing or wrong token.
    let (status, body) = api(
        &cloud,
        "POST",
        "/v1/apps",
        Some(&token),
        r#"{"name":"hello"}"#,
    );
    assert_eq!((status, error_code(&body)), (409, "app_exists"));
    let (status, body) = api(&cloud, "POST", "/v1/apps", Some(&token), r#"{"name": "#);
    assert_eq!((status, error_code(&body)), (400, "bad_request"));
    let (status, body) = api(
        &cloud,
        "POST",
        "/v1/apps",
        Some(&token),
        r#"{"name":"x","colour":1}"#,
    );
    assert_eq!(status / 100, 4, "{body}");
    error_code(&body);
    let (status, body) = api(
        &cloud,
        "POST",
        "/v1/apps",
        Some(&token),
        r#"{"name":"Bad_Name"}"#,
    );
    assert_eq!((status, error_code(&body)), (400, "bad_request"));
    let (status, body) = api(&cloud, "GET", "/v1/apps", None, "");
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
    let (status, body) = api(&cloud, "GET", "/v1/apps", Some("not-a-token"), "");
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
    let (status, body) = api(&cloud, "GET", "/v1/nowhere", Some(&token), "");
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let (status, body) = api(&cloud, "PUT", "/v1/apps/hello/bits", Some(&token), "");
    assert_eq!((status, error_code(&body)), (400, "bad_request"));

    // Nothing was lost: hello is still served from its first droplet.
    let (status, body) = block_on(get(&cloud.url("hello"))).unwrap();
    assert_eq!(status, 200, "{body}");
    let apps = text(&cloud.nimbus(&["apps"]));
    assert!(apps.contains("hello") && !apps.contains("other"), "{apps}");
}
