//! Who an app may call: its `allowed_outbound_hosts` (`host`, `host:port`, `*.domain`,
//! `*.domain:port`), and never a non-public address (loopback, private, link-local, CGNAT, ULA,
//! multicast…) unless the operator allows private egress. `outbound` enforces it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One entry of an app's allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// `host` or `host:port`.
    Exact { host: String, port: Option<u16> },
    /// `*.domain` or `*.domain:port`; `suffix` keeps the leading dot.
    Subdomains { suffix: String, port: Option<u16> },
}

/// The outbound policy of one app on this DEA.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EgressPolicy {
    allowed: Vec<HostPattern>,
    allow_private: bool,
}

impl EgressPolicy {
    /// Parses the allow-list; entries that cannot be understood allow nothing (and are logged).
    pub(crate) fn new(entries: &[String], allow_private: bool) -> EgressPolicy {
        let allowed = entries
            .iter()
            .filter_map(|entry| {
                let pattern = parse(entry);
                if pattern.is_none() {
                    tracing::warn!(entry, "ignoring an allowed_outbound_hosts entry");
                }
                pattern
            })
            .collect();
        EgressPolicy {
            allowed,
            allow_private,
        }
    }

    /// Whether the allow-list names `host` on `port`.
    pub(crate) fn allows_host(&self, host: &str, port: u16) -> bool {
        let host = normalise(host);
        self.allowed.iter().any(|pattern| match pattern {
            HostPattern::Exact { host: h, port: p } => *h == host && p.is_none_or(|p| p == port),
            HostPattern::Subdomains { suffix, port: p } => {
                host.ends_with(suffix.as_str()) && p.is_none_or(|p| p == port)
            }
        })
    }

    /// Whether a resolved address may be connected to.
    pub(crate) fn allows_address(&self, ip: IpAddr) -> bool {
        self.allow_private || is_public(ip)
    }
}

fn normalise(host: &str) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn parse(entry: &str) -> Option<HostPattern> {
    let entry = entry.trim();
    let entry = entry
        .strip_prefix("https://")
        .or_else(|| entry.strip_prefix("http://"))
        .unwrap_or(entry)
        .trim_end_matches('/');
    let (host, port) = split_port(entry)?;
    let host = normalise(host);
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return None;
    }
    match host.strip_prefix('*') {
        Some(suffix) if suffix.starts_with('.') && suffix.len() > 1 && !suffix.contains('*') => {
            Some(HostPattern::Subdomains {
                suffix: suffix.to_string(),
                port,
            })
        }
        Some(_) => None,
        None if host.contains('*') => None,
        None => Some(HostPattern::Exact { host, port }),
    }
}

/// Splits `host[:port]`, where an IPv6 host is bracketed (`[::1]:80`).
fn split_port(entry: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(port) => Some((host, Some(port.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match entry.rsplit_once(':') {
        // A bare IPv6 address has several colons and no port.
        Some((host, _)) if host.contains(':') => Some((entry, None)),
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((entry, None)),
    }
}

/// Whether `ip` is a public unicast address: not loopback, private, link-local, unspecified,
/// multicast, broadcast, CGNAT, ULA, documentation or reserved, in IPv4 or IPv6 (including
/// IPv4 addresses embedded in IPv6 by mapping, NAT64 or 6to4).
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0                                 // "this network"
        || (a == 100 && (64..128).contains(&b))   // CGNAT 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0)         // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19))     // benchmarking 198.18.0.0/15
        || a >= 240) // reserved 240.0.0.0/4
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match segments {
        // NAT64 64:ff9b::/96 carries an IPv4 address in its last 32 bits.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => return is_public_v4(embedded(hi, lo)),
        // 6to4 2002::/16 carries one in bits 16..48.
        [0x2002, hi, lo, ..] => return is_public_v4(embedded(hi, lo)),
        _ => {}
    }
    let first = segments[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00              // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80              // link-local fe80::/10
        || (first & 0xffc0) == 0xfec0              // site-local fec0::/10 (deprecated)
        || (first == 0x2001 && segments[1] == 0x0db8) // documentation 2001:db8::/32
        || (first == 0x2001 && segments[1] == 0)   // Teredo 2001::/32
        || segments[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible ::a.b.c.d (deprecated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> EgressPolicy {
        let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        EgressPolicy::new(&entries, false)
    }

    #[test]
    fn matches_hosts_ports_and_subdomains() {
        let p = policy(&[
            "api.example.com",
            "db.internal:5432",
            "*.cdn.net",
            "[::1]:8080",
        ]);
        assert!(p.allows_host("API.example.com.", 443));
        assert!(p.allows_host("db.internal", 5432));
        assert!(!p.allows_host("db.internal", 5433));
        assert!(p.allows_host("a.b.cdn.net", 80));
        assert!(!p.allows_host("cdn.net", 80));
        assert!(!p.allows_host("evilcdn.net", 80));
        assert!(p.allows_host("[::1]", 8080));
        assert!(!p.allows_host("example.com", 443));
    }

    #[test]
    fn nothing_is_allowed_by_default_or_by_nonsense() {
        assert!(!policy(&[]).allows_host("example.com", 80));
        let p = policy(&["*", "a*.com", "*.", "host:notaport", ""]);
        assert_eq!(p.allowed, []);
    }

    #[test]
    fn refuses_non_public_ipv4() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        assert!(is_public("93.184.216.34".parse().unwrap()));
        assert!(is_public("100.128.0.1".parse().unwrap()));
    }

    #[test]
    fn refuses_non_public_ipv6_and_embedded_ipv4() {
        for ip in [
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        assert!(is_public("2606:4700::1111".parse().unwrap()));
        assert!(is_public("::ffff:93.184.216.34".parse().unwrap()));
    }

    #[test]
    fn the_operator_may_allow_private_addresses() {
        let p = EgressPolicy::new(&[], true);
        assert!(p.allows_address("127.0.0.1".parse().unwrap()));
        assert!(!policy(&[]).allows_address("127.0.0.1".parse().unwrap()));
    }
}
