//! Which headers cross the proxy.

use http::HeaderMap;
use http::header::{self, HeaderName};

/// RFC 9110 §7.6.1 hop-by-hop headers, never forwarded in either direction.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Credentials of the client are for the proxy only: MCP forbids token passthrough.
const CREDENTIALS: [HeaderName; 3] = [header::AUTHORIZATION, HeaderName::from_static("dpop"), header::COOKIE];

/// Claims about the network path (client address, original host, scheme, URL) that a tool
/// server would take as its proxy's word; this proxy writes none, so the client's are dropped.
const FORWARDING: [HeaderName; 4] = [
    HeaderName::from_static("forwarded"),
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
];

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Prepares client headers for the upstream request.
pub fn sanitize_request(headers: &mut HeaderMap) {
    remove_hop_by_hop(headers);
    for name in CREDENTIALS.iter().chain(FORWARDING.iter()) {
        headers.remove(name);
    }
    let proxy_headers: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("proxy-") || name.as_str().starts_with("x-forwarded-"))
        .cloned()
        .collect();
    for name in proxy_headers {
        headers.remove(name);
    }
    // The upstream's own authority comes from its URL.
    headers.remove(header::HOST);
    // The body was read and is sent whole; the client's framing does not apply.
    headers.remove(header::CONTENT_LENGTH);
}

/// Prepares upstream headers for the client response.
pub fn sanitize_response(headers: &mut HeaderMap) {
    remove_hop_by_hop(headers);
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn strips_credentials_hop_by_hop_proxy_and_forwarding_headers() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "DPoP abc"),
            ("dpop", "eyJ..."),
            ("cookie", "s=1"),
            ("proxy-authorization", "Basic x"),
            ("proxy-foo", "1"),
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("host", "proxy.local"),
            ("mcp-session-id", "s-1"),
            ("mcp-protocol-version", "2025-11-25"),
            ("last-event-id", "42"),
            ("accept", "application/json, text/event-stream"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-host", "admin.internal"),
            ("forwarded", "for=10.0.0.1"),
            ("x-real-ip", "10.0.0.1"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        sanitize_request(&mut h);
        let mut kept: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        kept.sort();
        assert_eq!(kept, ["accept", "last-event-id", "mcp-protocol-version", "mcp-session-id"]);
    }
}
