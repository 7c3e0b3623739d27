//! Which `Host` (h2: `:authority`) a request may name. A browser tricked by DNS
//! rebinding sends the attacker's name to a sidecar on loopback; a check on the name the
//! client believes it is talking to refuses it (MCP transport security, with `Origin`).
//!
//! Patterns: `host` (any port), `host:port`, `*.suffix` (any subdomain, any port),
//! `[::1]` for IPv6. Names compare case-insensitively, a trailing dot ignored.

use http::Request;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// Lowercase, without a trailing dot; for `*.suffix` the `.suffix` part.
    name: String,
    wildcard: bool,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a host name, host:port or *.domain")]
pub struct HostPatternError(pub String);

impl HostPattern {
    pub fn parse(text: &str) -> Result<HostPattern, HostPatternError> {
        let bad = || HostPatternError(text.to_owned());
        let (wildcard, rest) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (name, port) = split_port(rest).ok_or_else(bad)?;
        if name.is_empty() || (wildcard && name.starts_with('[')) {
            return Err(bad());
        }
        let name = normalize(name);
        let valid = name.starts_with('[')
            || name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !valid {
            return Err(bad());
        }
        let name = if wildcard { format!(".{name}") } else { name };
        Ok(HostPattern { name, wildcard, port })
    }

    /// Loopback names, any port: what a client on the pod itself may call the sidecar.
    pub fn loopback() -> Vec<HostPattern> {
        ["localhost", "127.0.0.1", "[::1]"]
            .into_iter()
            .map(|n| HostPattern { name: n.into(), wildcard: false, port: None })
            .collect()
    }

    fn matches(&self, name: &str, port: Option<u16>) -> bool {
        if self.port.is_some() && self.port != port {
            return false;
        }
        if self.wildcard { name.ends_with(&self.name) && name.len() > self.name.len() } else { name == self.name }
    }
}

/// The allowlist; the request's host must match one pattern.
#[derive(Debug, Clone)]
pub struct AllowedHosts(Vec<HostPattern>);

impl AllowedHosts {
    pub fn new(patterns: Vec<HostPattern>) -> Self {
        AllowedHosts(patterns)
    }

    /// Whether the request names an allowed host: exactly one `Host` header, or none and
    /// an h2 `:authority`; both present must agree.
    pub fn allows<B>(&self, req: &Request<B>) -> bool {
        let mut hosts = req.headers().get_all(http::header::HOST).iter();
        let header = match (hosts.next(), hosts.next()) {
            (Some(value), None) => match value.to_str() {
                Ok(v) => Some(v),
                Err(_) => return false,
            },
            (None, _) => None,
            (Some(_), Some(_)) => return false,
        };
        let authority = req.uri().authority().map(|a| a.as_str());
        let named = match (header, authority) {
            (Some(h), Some(a)) if !h.eq_ignore_ascii_case(a) => return false,
            (Some(h), _) => h,
            (None, Some(a)) => a,
            (None, None) => return false,
        };
        let Some((name, port)) = split_port(named) else { return false };
        let name = normalize(name);
        self.0.iter().any(|p| p.matches(&name, port))
    }
}

fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// `name[:port]`, `[v6][:port]`; `None` when the port is not a number.
fn split_port(text: &str) -> Option<(&str, Option<u16>)> {
    if text.starts_with('[') {
        let end = text.find(']')?;
        let (name, rest) = text.split_at(end + 1);
        return match rest {
            "" => Some((name, None)),
            _ => Some((name, Some(rest.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match text.rsplit_once(':') {
        None => Some((text, None)),
        Some((name, port)) if !name.contains(':') => Some((name, Some(port.parse().ok()?))),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(patterns: &[&str]) -> AllowedHosts {
        AllowedHosts::new(patterns.iter().map(|p| HostPattern::parse(p).unwrap()).collect())
    }

    fn req(host: Option<&str>, uri: &str) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(()).unwrap()
    }

    /// (patterns, Host header, request URI, allowed?)
    const CASES: &[(&[&str], Option<&str>, &str, bool)] = &[
        (&["localhost", "127.0.0.1", "[::1]"], Some("127.0.0.1:8080"), "/mcp", true),
        (&["localhost", "127.0.0.1", "[::1]"], Some("LOCALHOST"), "/mcp", true),
        (&["localhost", "127.0.0.1", "[::1]"], Some("localhost."), "/mcp", true),
        (&["localhost", "127.0.0.1", "[::1]"], Some("[::1]:9"), "/mcp", true),
        (&["localhost", "127.0.0.1", "[::1]"], Some("evil.example"), "/mcp", false),
        (&["localhost", "127.0.0.1", "[::1]"], Some("evil.example:8080"), "/mcp", false),
        (&["localhost", "127.0.0.1", "[::1]"], Some("127.0.0.1.evil.example"), "/mcp", false),
        (&["localhost", "127.0.0.1", "[::1]"], Some("localhost:80x"), "/mcp", false),
        (&["localhost", "127.0.0.1", "[::1]"], Some("localhost:99999"), "/mcp", false),
        (&["localhost", "127.0.0.1", "[::1]"], Some("user@localhost"), "/mcp", false),
        (&["localhost", "127.0.0.1", "[::1]"], None, "/mcp", false),
        // h2: no Host header, the authority in the URI.
        (&["localhost", "127.0.0.1", "[::1]"], None, "https://127.0.0.1:8443/mcp", true),
        (&["localhost", "127.0.0.1", "[::1]"], None, "https://evil.example/mcp", false),
        // Both present: they must agree.
        (&["localhost", "evil.example"], Some("localhost"), "https://evil.example/mcp", false),
        (&["mcp.example.com:8443"], Some("mcp.example.com:8443"), "/mcp", true),
        (&["mcp.example.com:8443"], Some("mcp.example.com"), "/mcp", false),
        (&["mcp.example.com:8443"], Some("mcp.example.com:443"), "/mcp", false),
        (&["*.svc.cluster.local"], Some("tools.ns.svc.cluster.local:8443"), "/mcp", true),
        (&["*.svc.cluster.local"], Some("svc.cluster.local"), "/mcp", false),
        (&["*.svc.cluster.local"], Some("evilsvc.cluster.local"), "/mcp", false),
    ];

    #[test]
    fn host_table() {
        for (patterns, host, uri, want) in CASES {
            assert_eq!(allowed(patterns).allows(&req(*host, uri)), *want, "{patterns:?} {host:?} {uri}");
        }
    }

    #[test]
    fn two_host_headers_are_refused() {
        let mut r = req(Some("localhost"), "/mcp");
        r.headers_mut().append("host", "localhost".parse().unwrap());
        assert!(!allowed(&["localhost"]).allows(&r));
    }

    #[test]
    fn bad_patterns() {
        for p in ["", "*.", "a b", "host:port", "*.[::1]", "http://x", "a/b", "x:1:2"] {
            assert!(HostPattern::parse(p).is_err(), "{p:?}");
        }
    }
}
