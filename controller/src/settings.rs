//! An app's settable fields: range checks and how a change applies to the stored app.

use nimbus_protocol::api::UpdateApp;

use crate::record::AppRecord;

/// Largest instance count one app may ask for.
pub const MAX_INSTANCES: u32 = 100;
/// Largest memory one instance may ask for, in MB (the DEA's pool slots are sized for it).
pub const MAX_MEMORY_MB: u64 = 1024;
/// Longest wall-clock limit of one request, in ms.
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// Most requests one instance may serve at once.
pub const MAX_CONCURRENCY: u32 = 1000;
/// Largest request body an app may accept, in bytes.
pub const MAX_BODY_BYTES: u64 = 1 << 30;
/// Most entries in an app's outbound allow-list.
pub const MAX_OUTBOUND_HOSTS: usize = 32;
/// Longest health-check path.
pub const MAX_HEALTH_CHECK_LENGTH: usize = 1024;

/// Rejects settings out of range, with a sentence saying what is allowed.
pub fn validate(request: &UpdateApp) -> Result<(), String> {
    if request.instances.is_some_and(|n| n > MAX_INSTANCES) {
        return Err(format!("instances must be at most {MAX_INSTANCES}"));
    }
    if request
        .memory_mb
        .is_some_and(|mb| mb == 0 || mb > MAX_MEMORY_MB)
    {
        return Err(format!(
            "memory must be between 1 MB and {MAX_MEMORY_MB} MB"
        ));
    }
    if request
        .timeout_ms
        .is_some_and(|ms| ms == 0 || ms > MAX_TIMEOUT_MS)
    {
        return Err("timeout must be between 1 ms and 1 hour".into());
    }
    if request.fuel == Some(0) {
        return Err("fuel must be positive".into());
    }
    if request
        .max_concurrency
        .is_some_and(|n| n == 0 || n > MAX_CONCURRENCY)
    {
        return Err(format!(
            "max concurrency must be between 1 and {MAX_CONCURRENCY}"
        ));
    }
    if request.max_body_bytes.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(format!(
            "the request body limit must be at most {MAX_BODY_BYTES} bytes"
        ));
    }
    if let Some(hosts) = &request.allowed_outbound_hosts {
        if hosts.len() > MAX_OUTBOUND_HOSTS {
            return Err(format!(
                "at most {MAX_OUTBOUND_HOSTS} outbound hosts may be allowed"
            ));
        }
        for host in hosts {
            validate_host_pattern(host)?;
        }
    }
    if let Some(env) = &request.env {
        for name in env.keys() {
            validate_env_name(name)?;
        }
    }
    if let Some(endpoint) = &request.health_check_http_endpoint {
        validate_health_check(endpoint)?;
    }
    Ok(())
}

/// A path with an optional query (`/health`, `/status?deep=1`), or `""` for none.
fn validate_health_check(endpoint: &str) -> Result<(), String> {
    let is_path = endpoint.starts_with('/')
        && endpoint.len() <= MAX_HEALTH_CHECK_LENGTH
        && endpoint.parse::<axum::http::uri::PathAndQuery>().is_ok();
    if endpoint.is_empty() || is_path {
        Ok(())
    } else {
        Err(format!(
            "{endpoint:?} is not a health-check endpoint: give a path such as /health"
        ))
    }
}

/// Environment names the app may set: not empty, no `=` or NUL, and not the platform's own.
fn validate_env_name(name: &str) -> Result<(), String> {
    const RESERVED: &[&str] = &[
        "VCAP_",
        "PORT",
        "VCAP_APP_PORT",
        "INSTANCE_INDEX",
        "INSTANCE_GUID",
    ];
    if name.is_empty() || name.contains(['=', '\0']) {
        return Err(format!("{name:?} is not an environment variable name"));
    }
    if RESERVED.iter().any(|r| {
        if r.ends_with('_') {
            name.starts_with(r)
        } else {
            name == *r
        }
    }) {
        return Err(format!(
            "{name} is set by the platform and cannot be overridden"
        ));
    }
    Ok(())
}

/// `host`, `host:port` or `*.domain`: lower-case DNS names or IP addresses, no scheme or path.
fn validate_host_pattern(pattern: &str) -> Result<(), String> {
    let (host, port) = match pattern.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (pattern, None),
    };
    let name = host.strip_prefix("*.").unwrap_or(host);
    let name_ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if name_ok && port_ok {
        Ok(())
    } else {
        Err(format!(
            "{pattern:?} is not an outbound host: use host, host:port or *.domain (lower case, no scheme)"
        ))
    }
}

/// Applies the fields that are present.
pub fn apply(app: &mut AppRecord, request: &UpdateApp) {
    let limits = &mut app.limits;
    if let Some(instances) = request.instances {
        app.instances = instances;
    }
    if let Some(memory_mb) = request.memory_mb {
        limits.memory_mb = memory_mb;
    }
    if let Some(timeout_ms) = request.timeout_ms {
        limits.timeout_ms = timeout_ms;
    }
    if let Some(fuel) = request.fuel {
        limits.fuel = Some(fuel);
    }
    if let Some(max_concurrency) = request.max_concurrency {
        limits.max_concurrency = max_concurrency;
    }
    if let Some(max_body_bytes) = request.max_body_bytes {
        limits.max_body_bytes = max_body_bytes;
    }
    if let Some(hosts) = &request.allowed_outbound_hosts {
        app.allowed_outbound_hosts = hosts.clone();
    }
    if let Some(env) = &request.env {
        app.env = env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    }
    if let Some(endpoint) = &request.health_check_http_endpoint {
        app.health_check_http_endpoint = (!endpoint.is_empty()).then(|| endpoint.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn update() -> UpdateApp {
        UpdateApp::default()
    }

    #[test]
    fn accepts_settings_in_range_and_applies_them() {
        let request = UpdateApp {
            instances: Some(3),
            memory_mb: Some(64),
            fuel: Some(1_000_000),
            max_concurrency: Some(4),
            allowed_outbound_hosts: Some(vec!["api.example.com".into(), "*.svc.test:8443".into()]),
            ..update()
        };
        assert_eq!(validate(&request), Ok(()));
        let mut app = crate::record::new_app("a".into(), &Config::new("test", 80));
        apply(&mut app, &request);
        assert_eq!(
            (app.instances, app.limits.memory_mb, app.limits.fuel),
            (3, 64, Some(1_000_000))
        );
        assert_eq!(app.limits.max_concurrency, 4);
        assert_eq!(app.allowed_outbound_hosts.len(), 2);
        assert_eq!(
            app.limits.timeout_ms,
            nimbus_protocol::droplet::DEFAULT_TIMEOUT_MS,
            "untouched"
        );
    }

    #[test]
    fn rejects_settings_out_of_range() {
        let bad = [
            UpdateApp {
                instances: Some(MAX_INSTANCES + 1),
                ..update()
            },
            UpdateApp {
                memory_mb: Some(0),
                ..update()
            },
            UpdateApp {
                memory_mb: Some(MAX_MEMORY_MB + 1),
                ..update()
            },
            UpdateApp {
                timeout_ms: Some(0),
                ..update()
            },
            UpdateApp {
                fuel: Some(0),
                ..update()
            },
            UpdateApp {
                max_concurrency: Some(0),
                ..update()
            },
            UpdateApp {
                max_body_bytes: Some(MAX_BODY_BYTES + 1),
                ..update()
            },
        ];
        for request in bad {
            assert!(validate(&request).is_err(), "{request:?} accepted");
        }
    }

    #[test]
    fn health_checks_are_paths_and_an_empty_one_removes_it() {
        for bad in ["health", "/a b", "http://x/health"] {
            let request = UpdateApp {
                health_check_http_endpoint: Some(bad.into()),
                ..update()
            };
            assert!(validate(&request).is_err(), "{bad:?} accepted");
        }
        let mut app = crate::record::new_app("a".into(), &Config::new("test", 80));
        for (given, stored) in [("/health?deep=1", Some("/health?deep=1")), ("", None)] {
            let request = UpdateApp {
                health_check_http_endpoint: Some(given.into()),
                ..update()
            };
            assert_eq!(validate(&request), Ok(()));
            apply(&mut app, &request);
            assert_eq!(app.health_check_http_endpoint.as_deref(), stored);
        }
    }

    #[test]
    fn rejects_platform_environment_names() {
        for name in ["VCAP_APPLICATION", "PORT", "", "A=B"] {
            let env = std::collections::BTreeMap::from([(name.to_string(), "x".to_string())]);
            let request = UpdateApp {
                env: Some(env),
                ..update()
            };
            assert!(validate(&request).is_err(), "{name:?} accepted");
        }
    }

    #[test]
    fn rejects_malformed_outbound_hosts() {
        for host in [
            "http://x.com",
            "x.com/path",
            "X.COM",
            "x.com:0",
            "x.com:99999",
            "",
            "*.",
            "a..b",
        ] {
            let request = UpdateApp {
                allowed_outbound_hosts: Some(vec![host.into()]),
                ..update()
            };
            assert!(validate(&request).is_err(), "{host:?} accepted");
        }
    }
}
