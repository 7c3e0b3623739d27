//! The `htu` comparison (RFC 9449 §4.3 check 9): the proof names the URI it was made
//! for, and it must be the URI the client used to reach us — the **external** one, since
//! the proxy may sit behind a load balancer that rewrites scheme, host and port.
//!
//! Both sides are reduced to one spelling before a plain string comparison, following
//! RFC 3986 §6.2.2–6.2.3 (syntax- and scheme-based normalisation):
//!
//! - scheme and host lowercased (the `url` crate's WHATWG parser, which also applies IDNA);
//! - the scheme's default port dropped (`https://h:443/` = `https://h/`), an empty path
//!   read as `/`;
//! - dot segments removed (`/a/./b/../c` = `/a/c`, `%2E` counting as `.`);
//! - percent-encoding normalised: unreserved characters decoded (`%7E` = `~`), other
//!   escapes uppercased (`%2f` = `%2F`, but never `/`: an encoded slash stays distinct);
//! - query and fragment removed, as §4.3 says to ignore them.
//!
//! Nothing else is folded: the path keeps its case and a trailing slash is significant,
//! because origin servers route `/mcp` and `/mcp/` (or `/MCP`) differently, and a proof
//! for one must not open the other. Input the WHATWG parser would silently repair rather
//! than reject (tabs, newlines, spaces, backslashes, missing or extra slashes after the
//! scheme, user info) is refused.

use std::fmt::Write;

use url::Url;

/// A request URI in its normalised spelling, ready to compare with proofs' `htu`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestUri(String);

impl RequestUri {
    /// `None`: not an absolute `http(s)` URI we can compare (see [`normalize`]).
    pub fn parse(uri: &str) -> Option<Self> {
        normalize(uri).map(RequestUri)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Returns the normalised `scheme://host[:port]/path` of an absolute `http(s)` URI, or
/// `None` when it is not one we can compare.
pub fn normalize(uri: &str) -> Option<String> {
    if uri.bytes().any(|b| b <= b' ' || b == b'\\' || b == 0x7f) {
        return None;
    }
    // WHATWG also reads `https:/h` and `https:///h` as `https://h`; RFC 3986 does not.
    let (_, authority_and_path) = uri.split_once("://")?;
    if authority_and_path.is_empty() || authority_and_path.starts_with('/') {
        return None;
    }
    let url = Url::parse(uri).ok()?;
    if !matches!(url.scheme(), "http" | "https") || !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    let host = url.host_str()?;
    let mut out = String::with_capacity(uri.len());
    out.push_str(url.scheme());
    out.push_str("://");
    out.push_str(host);
    if let Some(port) = url.port() {
        // `port()` is `None` for the scheme's default port: that is the normalisation.
        let _ = write!(out, ":{port}");
    }
    normalize_percent_encoding(url.path(), &mut out);
    Some(out)
}

/// RFC 3986 §6.2.2.2: decode escapes of unreserved characters, uppercase the rest.
fn normalize_percent_encoding(path: &str, out: &mut String) {
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let escape = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(hi, lo)| hi << 4 | lo),
            _ => None,
        };
        match escape {
            Some(byte) if is_unreserved(byte) => {
                out.push(char::from(byte));
                i += 3;
            }
            Some(byte) => {
                let _ = write!(out, "%{byte:02X}");
                i += 3;
            }
            None => {
                // The url crate percent-encodes every non-ASCII byte of a path, so what
                // is left here is ASCII; anything else is copied whole, char by char.
                let ch = path[i..].chars().next().unwrap_or_default();
                out.push(ch);
                i += ch.len_utf8().max(1);
            }
        }
    }
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::normalize;

    fn same(a: &str, b: &str) -> bool {
        let (a, b) = (normalize(a).unwrap(), normalize(b).unwrap());
        a == b
    }

    #[test]
    fn plain_url_is_kept() {
        assert_eq!(normalize("https://mcp.example.com/mcp").unwrap(), "https://mcp.example.com/mcp");
    }

    #[test]
    fn scheme_and_host_case_fold() {
        assert!(same("HTTPS://MCP.Example.COM/mcp", "https://mcp.example.com/mcp"));
    }

    #[test]
    fn default_port_is_dropped_other_ports_kept() {
        assert!(same("https://mcp.example.com:443/mcp", "https://mcp.example.com/mcp"));
        assert!(same("http://mcp.example.com:80/mcp", "http://mcp.example.com/mcp"));
        assert!(!same("https://mcp.example.com:8443/mcp", "https://mcp.example.com/mcp"));
        assert!(!same("http://mcp.example.com:443/mcp", "https://mcp.example.com/mcp"));
    }

    #[test]
    fn query_and_fragment_are_ignored() {
        assert!(same("https://h/mcp?session=1", "https://h/mcp"));
        assert!(same("https://h/mcp#frag", "https://h/mcp"));
        assert!(same("https://h/mcp?a=1#b", "https://h/mcp?c=2"));
    }

    #[test]
    fn unreserved_escapes_decode_reserved_ones_uppercase() {
        assert!(same("https://h/%6Dcp", "https://h/mcp"));
        assert!(same("https://h/a%7eb", "https://h/a~b"));
        assert!(same("https://h/a%2fb", "https://h/a%2Fb"));
        assert!(!same("https://h/a%2Fb", "https://h/a/b"));
        assert_eq!(normalize("https://h/%zz").unwrap(), "https://h/%zz");
    }

    #[test]
    fn dot_segments_are_removed() {
        assert!(same("https://h/a/./b/../mcp", "https://h/a/mcp"));
        assert!(same("https://h/x/%2e%2E/mcp", "https://h/mcp"));
        assert!(same("https://h", "https://h/"));
    }

    #[test]
    fn path_case_and_trailing_slash_are_significant() {
        assert!(!same("https://h/MCP", "https://h/mcp"));
        assert!(!same("https://h/mcp/", "https://h/mcp"));
        assert!(!same("https://h/mcp//", "https://h/mcp/"));
    }

    #[test]
    fn refuses_what_it_cannot_compare() {
        for uri in [
            "/mcp",
            "mcp.example.com/mcp",
            "ftp://h/mcp",
            "urn:example:mcp",
            "https://user:pw@h/mcp",
            "https://h/m cp",
            "https://h/m\tcp",
            " https://h/mcp",
            "https:\\\\h\\mcp",
            "https:///mcp",
            "https:/h/mcp",
            "",
        ] {
            assert_eq!(normalize(uri), None, "{uri:?}");
        }
    }

    /// The verifier compares a proof whose `htu` is already the normalised request URI
    /// without normalising it again: sound only if normalising a normalised URI is a no-op.
    #[test]
    fn normalising_is_idempotent() {
        for uri in [
            "HTTPS://MCP.Example.COM:443/mcp?x#y",
            "http://h:80/%6Dcp/a%7eb/a%2fb/%zz/%25/%2E",
            "https://h/x/%2e%2E/mcp/./b/../c/",
            "https://h/a%2e/b/.%2E/c/%2e./d",
            "https://h/mcp//",
            "https://bücher.example/ünïcode/€?q",
            "http://[::1]:08080/mcp",
            "https://h",
            "https://h:0443/MCP/",
            "https://h/a;b=c/d@e:f/!$&'()*+,=",
        ] {
            let once = normalize(uri).unwrap();
            assert_eq!(normalize(&once).as_deref(), Some(once.as_str()), "{uri:?}");
        }
    }

    #[test]
    fn ipv6_hosts_keep_brackets() {
        assert_eq!(normalize("http://[::1]:8080/mcp").unwrap(), "http://[::1]:8080/mcp");
    }
}
