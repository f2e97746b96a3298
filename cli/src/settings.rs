//! App settings given as flags (`push`, `scale`), and the parsers of their values.

use std::collections::BTreeMap;

use clap::Args;
use nimbus_protocol::api::UpdateApp;

/// Flags that set an app's instances, limits and capabilities; absent flags change nothing.
#[derive(Debug, Clone, Default, Args)]
pub struct SettingsArgs {
    /// Number of instances.
    #[arg(short = 'i', long)]
    pub instances: Option<u32>,
    /// Memory per instance, e.g. 64M or 1G.
    #[arg(short = 'm', long, value_parser = parse_megabytes)]
    pub memory: Option<u64>,
    /// Wall-clock limit per request, e.g. 500ms, 30s or 2m.
    #[arg(long, value_parser = parse_millis)]
    pub timeout: Option<u64>,
    /// Fuel (a deterministic CPU budget, roughly wasm instructions) per request, e.g. 500M or 2G.
    #[arg(long, value_parser = parse_count)]
    pub fuel: Option<u64>,
    /// Requests one instance serves at once; more wait briefly, then get 503.
    #[arg(long)]
    pub max_concurrency: Option<u32>,
    /// Largest request body, e.g. 1M; larger requests get 413.
    #[arg(long, value_parser = parse_bytes)]
    pub max_body: Option<u64>,
    /// A host the app may call over HTTP (host, host:port or *.domain); repeat for more.
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allowed_outbound_hosts: Vec<String>,
    /// An environment variable for the app, NAME=VALUE; repeat for more.
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// A path the DEA probes before routing to an instance and every few seconds after, e.g.
    /// /health: anything but a 2xx crashes the instance ("" removes the check).
    #[arg(long, value_name = "PATH")]
    pub health_check_http_endpoint: Option<String>,
}

impl SettingsArgs {
    /// The API request these flags make.
    pub fn to_update(&self) -> UpdateApp {
        UpdateApp {
            instances: self.instances,
            memory_mb: self.memory,
            timeout_ms: self.timeout,
            fuel: self.fuel,
            max_concurrency: self.max_concurrency,
            max_body_bytes: self.max_body,
            allowed_outbound_hosts: non_empty(self.allowed_outbound_hosts.clone()),
            env: non_empty(self.env.clone()).map(|env| env.into_iter().collect::<BTreeMap<_, _>>()),
            health_check_http_endpoint: self.health_check_http_endpoint.clone(),
        }
    }
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

/// Fields set in `over` win over those in `base`.
pub fn overlay(base: UpdateApp, over: UpdateApp) -> UpdateApp {
    UpdateApp {
        instances: over.instances.or(base.instances),
        memory_mb: over.memory_mb.or(base.memory_mb),
        timeout_ms: over.timeout_ms.or(base.timeout_ms),
        fuel: over.fuel.or(base.fuel),
        max_concurrency: over.max_concurrency.or(base.max_concurrency),
        max_body_bytes: over.max_body_bytes.or(base.max_body_bytes),
        allowed_outbound_hosts: over.allowed_outbound_hosts.or(base.allowed_outbound_hosts),
        env: over.env.or(base.env),
        health_check_http_endpoint: over
            .health_check_http_endpoint
            .or(base.health_check_http_endpoint),
    }
}

/// `64M`, `1G`, `512` (MB) → megabytes.
pub fn parse_megabytes(text: &str) -> Result<u64, String> {
    match parse_scaled(text, &[("GB", 1024), ("G", 1024), ("MB", 1), ("M", 1)], 1) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(format!("{text:?} is not a memory size: use e.g. 64M or 1G")),
    }
}

/// `10M`, `512K`, `1G`, `100` (bytes) → bytes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let units = [
        ("GB", 1 << 30),
        ("G", 1 << 30),
        ("MB", 1 << 20),
        ("M", 1 << 20),
        ("KB", 1 << 10),
        ("K", 1 << 10),
        ("B", 1),
    ];
    parse_scaled(text, &units, 1)
        .ok_or_else(|| format!("{text:?} is not a size: use e.g. 512K or 10M"))
}

/// `500M`, `2G`, `1000000` → a count (decimal units, as fuel is not bytes).
pub fn parse_count(text: &str) -> Result<u64, String> {
    match parse_scaled(
        text,
        &[("G", 1_000_000_000), ("M", 1_000_000), ("K", 1_000)],
        1,
    ) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(format!("{text:?} is not a count: use e.g. 500M or 2G")),
    }
}

/// `500ms`, `30s`, `2m`, `45` (seconds) → milliseconds.
pub fn parse_millis(text: &str) -> Result<u64, String> {
    match parse_scaled(text, &[("ms", 1), ("s", 1000), ("m", 60_000)], 1000) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "{text:?} is not a duration: use e.g. 500ms, 30s or 2m"
        )),
    }
}

/// `NAME=VALUE` → the pair.
fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not NAME=VALUE")),
    }
}

/// A number with an optional unit suffix (tried in order, case-insensitive); no suffix means
/// `bare` units.
fn parse_scaled(text: &str, units: &[(&str, u64)], bare: u64) -> Option<u64> {
    let text = text.trim();
    let (number, factor) = units
        .iter()
        .find_map(|(suffix, factor)| {
            let cut = text.len().checked_sub(suffix.len())?;
            let (head, tail) = (text.get(..cut)?, text.get(cut..)?);
            tail.eq_ignore_ascii_case(suffix).then_some((head, *factor))
        })
        .unwrap_or((text, bare));
    number.trim().parse::<u64>().ok()?.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_durations_and_counts() {
        assert_eq!(parse_megabytes("64M"), Ok(64));
        assert_eq!(parse_megabytes("64MB"), Ok(64));
        assert_eq!(parse_megabytes("1g"), Ok(1024));
        assert_eq!(parse_megabytes("128"), Ok(128));
        assert!(parse_megabytes("lots").is_err() && parse_megabytes("0M").is_err());
        assert_eq!(parse_millis("500ms"), Ok(500));
        assert_eq!(parse_millis("30s"), Ok(30_000));
        assert_eq!(parse_millis("2m"), Ok(120_000));
        assert_eq!(parse_millis("45"), Ok(45_000));
        assert!(parse_millis("soon").is_err());
        assert_eq!(parse_bytes("10M"), Ok(10 << 20));
        assert_eq!(parse_bytes("512k"), Ok(512 << 10));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert_eq!(parse_count("500M"), Ok(500_000_000));
        assert_eq!(parse_count("2G"), Ok(2_000_000_000));
        assert!(
            parse_count("99999999999G").is_err(),
            "overflow is an error, not a wrap"
        );
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_env("=x").is_err());
    }

    #[test]
    fn flags_win_over_the_manifest() {
        let manifest = UpdateApp {
            instances: Some(2),
            memory_mb: Some(64),
            ..Default::default()
        };
        let flags = UpdateApp {
            memory_mb: Some(32),
            ..Default::default()
        };
        let merged = overlay(manifest, flags);
        assert_eq!((merged.instances, merged.memory_mb), (Some(2), Some(32)));
    }
}
