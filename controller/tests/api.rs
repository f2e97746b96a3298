//! The REST API against a real nats-server: desired state round trips through JetStream, and
//! every bad request gets a JSON error with the right status.

use nimbus_bus::{NatsServer, ServerOptions};
use nimbus_controller::Config;
use serde_json::{Value, json};

const TOKEN: &str = "test-token";

struct Api {
    _dir: tempfile::TempDir,
    _nats: NatsServer,
    handle: Option<nimbus_controller::Handle>,
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn start() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let nats = NatsServer::start(ServerOptions::ephemeral(dir.path().join("nats")))
            .await
            .unwrap();
        let client = nimbus_bus::connect(nats.config(), "controller")
            .await
            .unwrap();
        let mut config = Config::new("example.test", 8080);
        config.admin_token = Some(TOKEN.into());
        let handle = nimbus_controller::start(config, client).await.unwrap();
        let base = format!("http://{}", handle.local_addr());
        Api {
            _dir: dir,
            _nats: nats,
            handle: Some(handle),
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn ok(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        self.call(method, path, Some(TOKEN), body).await
    }
}

/// method, path, token, body, expected status, expected error code
type Case<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    u16,
    &'a str,
);

fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not a JSON error: {body}"))
}

#[tokio::test]
async fn apps_round_trip_through_desired_state() {
    let api = Api::start().await;
    let (status, info) = api.call("GET", "/v1/info", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(info["domain"], "example.test");

    let (status, app) = api
        .ok(
            "POST",
            "/v1/apps",
            Some(r#"{"name":"hello","instances":2,"memory_mb":64}"#),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["state"], "STOPPED");
    assert_eq!(app["instances"], 2);
    assert_eq!(app["limits"]["memory_mb"], 64);
    assert_eq!(app["urls"], json!(["http://hello.example.test:8080"]));

    let (status, list) = api.ok("GET", "/v1/apps", None).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);

    let (status, patched) = api
        .ok("PATCH", "/v1/apps/hello", Some(r#"{"instances":3}"#))
        .await;
    assert_eq!((status, &patched["instances"]), (200, &json!(3)));
    assert_eq!(
        patched["limits"]["memory_mb"], 64,
        "PATCH kept the other fields"
    );

    // Starting needs a droplet.
    let (status, body) = api.ok("POST", "/v1/apps/hello/start", None).await;
    assert_eq!((status, code(&body)), (422, "not_staged"));
    let (status, body) = api.ok("GET", "/v1/apps/hello/instances", None).await;
    assert_eq!((status, body), (200, json!([])));

    let (status, _) = api.ok("DELETE", "/v1/apps/hello", None).await;
    assert_eq!(status, 204);
    let (status, body) = api.ok("GET", "/v1/apps/hello", None).await;
    assert_eq!((status, code(&body)), (404, "app_not_found"));
    // The name is free again.
    let (status, _) = api
        .ok("POST", "/v1/apps", Some(r#"{"name":"hello"}"#))
        .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn desired_state_survives_a_controller_restart() {
    let mut api = Api::start().await;
    api.ok("POST", "/v1/apps", Some(r#"{"name":"kept"}"#)).await;
    api.handle.take().unwrap().shutdown().await;

    let client = nimbus_bus::connect(api._nats.config(), "controller-2")
        .await
        .unwrap();
    let mut config = Config::new("example.test", 8080);
    config.admin_token = Some(TOKEN.into());
    let handle = nimbus_controller::start(config, client).await.unwrap();
    api.base = format!("http://{}", handle.local_addr());
    let (status, app) = api.ok("GET", "/v1/apps/kept", None).await;
    assert_eq!((status, &app["name"]), (200, &json!("kept")));
    handle.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let api = Api::start().await;
    api.ok("POST", "/v1/apps", Some(r#"{"name":"taken"}"#))
        .await;

    let cases: &[Case] = &[
        ("GET", "/v1/apps", None, None, 401, "unauthorized"),
        ("GET", "/v1/apps", Some("wrong"), None, 401, "unauthorized"),
        (
            "POST",
            "/v1/apps",
            Some(TOKEN),
            Some(r#"{"name":"taken"}"#),
            409,
            "app_exists",
        ),
        (
            "POST",
            "/v1/apps",
            Some(TOKEN),
            Some(r#"{"name":"#),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/apps",
            Some(TOKEN),
            Some(r#"{"name":"UPPER"}"#),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/apps",
            Some(TOKEN),
            Some(r#"{"name":"a","instances":1000}"#),
            400,
            "bad_request",
        ),
        (
            "PATCH",
            "/v1/apps/taken",
            Some(TOKEN),
            Some(r#"{"memory_mb":0}"#),
            400,
            "bad_request",
        ),
        (
            "GET",
            "/v1/apps/missing",
            Some(TOKEN),
            None,
            404,
            "app_not_found",
        ),
        (
            "GET",
            "/v1/apps/..%2F..",
            Some(TOKEN),
            None,
            404,
            "app_not_found",
        ),
        (
            "PUT",
            "/v1/apps/taken/bits",
            Some(TOKEN),
            None,
            400,
            "bad_request",
        ),
        ("GET", "/nowhere", Some(TOKEN), None, 404, "not_found"),
    ];
    for (method, path, token, body, status, expected) in cases {
        let (got, reply) = api.call(method, path, *token, *body).await;
        assert_eq!(
            (got, code(&reply)),
            (*status, *expected),
            "{method} {path} {body:?}"
        );
    }
    // Nothing was lost.
    let (status, app) = api.ok("GET", "/v1/apps/taken", None).await;
    assert_eq!((status, &app["instances"]), (200, &json!(1)));
}

#[tokio::test]
async fn staging_without_a_stager_fails_clearly_and_keeps_the_app() {
    let api = Api::start().await;
    api.ok("POST", "/v1/apps", Some(r#"{"name":"lonely"}"#))
        .await;
    let response = api
        .http
        .put(format!("{}/v1/apps/lonely/bits", api.base))
        .bearer_auth(TOKEN)
        .body(b"\0asm\x0d\0\x01\0".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events = response.text().await.unwrap();
    let last: Value = serde_json::from_str(events.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "failed", "{events}");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("no stager is running"),
        "{last}"
    );
    let (status, app) = api.ok("GET", "/v1/apps/lonely", None).await;
    assert_eq!((status, &app["droplet"]), (200, &Value::Null));
}
