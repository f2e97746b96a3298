//! What a stager produces and what a DEA runs: the droplet manifest and the app's limits.

use serde::{Deserialize, Serialize};

/// How the DEA executes a droplet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DropletKind {
    /// A component exporting `wasi:http/incoming-handler`: one instance per request.
    HttpComponent,
    /// A command component (`wasi:cli/run`) serving HTTP the CGI way, as WAGI does: one run per
    /// request, the request in CGI environment variables and stdin, the response on stdout.
    /// Stagers turn WASI p1 command modules into such components.
    Wagi,
}

impl DropletKind {
    /// Every kind, in the order DEAs list what they run.
    pub const ALL: [DropletKind; 2] = [DropletKind::HttpComponent, DropletKind::Wagi];

    /// The name used in JSON and shown to people: `http-component`, `wagi`.
    pub fn as_str(self) -> &'static str {
        match self {
            DropletKind::HttpComponent => "http-component",
            DropletKind::Wagi => "wagi",
        }
    }
}

impl std::fmt::Display for DropletKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `droplet.json`: describes a staged droplet, whose wasm is stored under [`DropletManifest::object_name`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropletManifest {
    /// Lower-case hex SHA-256 of the wasm; droplets are content-addressed by it.
    pub sha256: String,
    pub kind: DropletKind,
    /// The stager that built it: `wasm` (prebuilt) or `rust`.
    pub language: String,
    /// Size of the wasm in bytes.
    pub size: u64,
    /// When it was staged (ms since the Unix epoch).
    pub staged_at: u64,
}

impl DropletManifest {
    /// The droplet's name in the object store.
    pub fn object_name(&self) -> String {
        droplet_object_name(&self.sha256)
    }
}

/// The JetStream object store holding packages and droplets, each under its SHA-256.
pub const BLOB_STORE: &str = "nimbus-blobs";

/// The object-store name of the droplet whose wasm has this SHA-256.
pub fn droplet_object_name(sha256: &str) -> String {
    format!("droplets/{sha256}.wasm")
}

/// The object-store name of a droplet's machine code precompiled by a stager for engines whose
/// compatibility hash is `engine_hash` (see the `nimbus-engine` crate).
pub fn precompiled_object_name(sha256: &str, engine_hash: &str) -> String {
    format!("droplets/{sha256}-{engine_hash}.cwasm")
}

/// The object-store name of an uploaded package with this SHA-256.
pub fn package_object_name(sha256: &str) -> String {
    format!("packages/{sha256}")
}

/// The default memory limit of an instance, in MB.
pub const DEFAULT_MEMORY_MB: u64 = 128;
/// The default wall-clock limit of one request, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;

/// The default number of requests one instance serves at once.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 32;
/// The default largest request body, in bytes.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;

/// Limits an app's instances run under, enforced by the DEA on every request.
///
/// Fields added after the first release default when absent, so stored apps keep decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Linear memory and tables of one instance, in MB.
    pub memory_mb: u64,
    /// Wall-clock limit of one request, in milliseconds.
    pub timeout_ms: u64,
    /// Fuel (roughly, wasm instructions) one request may burn; `None` leaves the DEA's default.
    #[serde(default)]
    pub fuel: Option<u64>,
    /// Requests one instance serves at once; more wait briefly, then get 503.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: u32,
    /// Largest request body in bytes; larger requests get 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
}

fn default_max_concurrency() -> u32 {
    DEFAULT_MAX_CONCURRENCY
}

fn default_max_body_bytes() -> u64 {
    DEFAULT_MAX_BODY_BYTES
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: DEFAULT_MEMORY_MB,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            fuel: None,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_stored_before_new_fields_existed_still_decode() {
        let old: Limits = serde_json::from_str(r#"{"memory_mb":64,"timeout_ms":1000}"#).unwrap();
        assert_eq!(old.memory_mb, 64);
        assert_eq!(old.fuel, None);
        assert_eq!(old.max_concurrency, DEFAULT_MAX_CONCURRENCY);
        assert_eq!(old.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    }

    #[test]
    fn manifest_round_trips_with_kebab_case_kind() {
        let manifest = DropletManifest {
            sha256: "ab".repeat(32),
            kind: DropletKind::HttpComponent,
            language: "rust".into(),
            size: 1234,
            staged_at: 1,
        };
        let json = serde_json::to_string(&manifest).unwrap();
        assert!(json.contains("\"http-component\""), "{json}");
        for kind in DropletKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
        }
        let back: DropletManifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, manifest);
        assert_eq!(
            back.object_name(),
            format!("droplets/{}.wasm", "ab".repeat(32))
        );
    }
}
