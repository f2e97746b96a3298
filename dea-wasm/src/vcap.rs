//! The environment an instance sees: Cloud Foundry's `VCAP_APPLICATION`, `VCAP_SERVICES` (no
//! services can be bound yet, so `{}`) and friends, then the user's own variables (last, so an
//! app developer can see exactly what they set). Nothing from the DEA's own environment leaks.

use nimbus_protocol::messages::StartRequest;
use serde_json::json;
use uuid::Uuid;

/// The guest environment of one instance listening on `port`.
pub(crate) fn environment(
    request: &StartRequest,
    instance_id: Uuid,
    port: u16,
) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "VCAP_APPLICATION".to_string(),
            vcap_application(request, instance_id).to_string(),
        ),
        ("VCAP_SERVICES".to_string(), "{}".to_string()),
        ("PORT".to_string(), port.to_string()),
        ("VCAP_APP_PORT".to_string(), port.to_string()),
        ("INSTANCE_INDEX".to_string(), request.index.to_string()),
        ("INSTANCE_GUID".to_string(), instance_id.to_string()),
    ];
    env.extend(request.env.iter().cloned());
    env
}

/// `VCAP_APPLICATION` as Cloud Foundry apps read it; both the old (`name`, `uris`, `version`)
/// and the newer (`application_*`) keys, because libraries read either.
fn vcap_application(request: &StartRequest, instance_id: Uuid) -> serde_json::Value {
    json!({
        "application_id": request.app_id,
        "application_name": request.app_name,
        "name": request.app_name,
        "application_uris": request.uris,
        "uris": request.uris,
        "application_version": request.version,
        "version": request.version,
        "instance_id": instance_id,
        "instance_index": request.index,
        "limits": {
            "mem": request.limits.memory_mb,
            "timeout_ms": request.limits.timeout_ms,
            "fuel": request.limits.fuel,
            "max_concurrency": request.limits.max_concurrency,
            "max_body_bytes": request.limits.max_body_bytes,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_protocol::droplet::{DropletKind, DropletManifest, Limits};

    fn request() -> StartRequest {
        StartRequest {
            app_id: Uuid::new_v4(),
            app_name: "hello".into(),
            version: Uuid::new_v4(),
            index: 2,
            droplet: DropletManifest {
                sha256: "ab".repeat(32),
                kind: DropletKind::HttpComponent,
                language: "rust".into(),
                size: 1,
                staged_at: 1,
            },
            uris: vec!["hello.localhost".into()],
            limits: Limits {
                memory_mb: 64,
                timeout_ms: 5000,
                ..Limits::default()
            },
            env: vec![("GREETING".into(), "hi".into())],
            allowed_outbound_hosts: vec![],
            health_check_http_endpoint: None,
        }
    }

    fn lookup<'a>(env: &'a [(String, String)], key: &str) -> &'a str {
        env.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{key} is missing from {env:?}"))
    }

    #[test]
    fn vcap_application_describes_the_instance() {
        let request = request();
        let instance_id = Uuid::new_v4();
        let env = environment(&request, instance_id, 4321);
        let vcap: serde_json::Value =
            serde_json::from_str(lookup(&env, "VCAP_APPLICATION")).unwrap();

        assert_eq!(vcap["application_id"], request.app_id.to_string());
        assert_eq!(vcap["application_name"], "hello");
        assert_eq!(vcap["name"], "hello");
        assert_eq!(vcap["application_uris"], json!(["hello.localhost"]));
        assert_eq!(vcap["uris"], json!(["hello.localhost"]));
        assert_eq!(vcap["application_version"], request.version.to_string());
        assert_eq!(vcap["version"], request.version.to_string());
        assert_eq!(vcap["instance_id"], instance_id.to_string());
        assert_eq!(vcap["instance_index"], 2);
        assert_eq!(vcap["limits"]["mem"], 64);
        assert_eq!(vcap["limits"]["timeout_ms"], 5000);
        assert_eq!(lookup(&env, "VCAP_SERVICES"), "{}");
    }

    #[test]
    fn port_and_instance_variables_come_before_user_env() {
        let request = request();
        let instance_id = Uuid::new_v4();
        let env = environment(&request, instance_id, 4321);

        assert_eq!(lookup(&env, "PORT"), "4321");
        assert_eq!(lookup(&env, "VCAP_APP_PORT"), "4321");
        assert_eq!(lookup(&env, "INSTANCE_INDEX"), "2");
        assert_eq!(lookup(&env, "INSTANCE_GUID"), instance_id.to_string());
        assert_eq!(env.last().unwrap(), &("GREETING".into(), "hi".into()));
    }
}
