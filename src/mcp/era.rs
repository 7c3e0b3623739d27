//! Which MCP revision a request speaks, and the header encoding 2026-07-28 added.
//!
//! The era is read from each request (header and body), never remembered per connection:
//! one client may probe `server/discover` at 2026-07-28 and fall back to `initialize`.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use data_encoding::{BASE64, BASE64_NOPAD};

use crate::context::Era;

/// The stateless revision this proxy enforces.
pub const MODERN: &str = "2026-07-28";

/// Every revision the proxy knows how to inspect, newest first (the `supported` list of
/// an UnsupportedProtocolVersion answer).
pub const SUPPORTED: [&str; 5] = [MODERN, "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Methods 2026-07-28 removed (SEP-2575, SEP-2567, SEP-2577 and the tasks extension):
/// on its wire they are unknown (404, -32601), whatever a dual-era server would do.
pub const REMOVED_METHODS: [&str; 8] = [
    "initialize",
    "notifications/initialized",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
    "notifications/roots/list_changed",
    "notifications/elicitation/complete",
];

/// The era of a version string; `None` for one this proxy does not know. A proxy cannot
/// enforce rules it has not read, so an unknown version is refused, not guessed.
pub fn era_of(version: &str) -> Option<Era> {
    match version {
        MODERN => Some(Era::Modern),
        v if SUPPORTED.contains(&v) => Some(Era::Legacy),
        _ => None,
    }
}

/// The `MCP-Protocol-Version` header says 2026-07-28: enough to pick the modern error
/// codes for an answer written before the body was read (credentials, path, origin).
pub fn header_is_modern(headers: &http::HeaderMap) -> bool {
    headers.get("mcp-protocol-version").is_some_and(|v| v.as_bytes() == MODERN.as_bytes())
}

/// The versions the tool server says it speaks (`server/discover`'s `supportedVersions`,
/// learned from the answers this sidecar forwards): an UnsupportedProtocolVersion answer
/// must name only versions the client can really use behind the proxy.
#[derive(Default)]
pub struct UpstreamVersions(RwLock<Option<Arc<[String]>>>);

impl UpstreamVersions {
    /// Records the `supportedVersions` of a `server/discover` answer, if it is one.
    pub fn learn(&self, message: &str) {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(message) else { return };
        let Some(versions) = value.pointer("/result/supportedVersions").and_then(|v| v.as_array()) else { return };
        let versions: Arc<[String]> = versions.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect();
        if let Ok(mut slot) = self.0.write() {
            *slot = Some(versions);
        }
    }

    /// The versions both sides speak; the proxy's own list until the server has said.
    pub fn supported(&self) -> Vec<String> {
        let learned = self.0.read().ok().and_then(|slot| slot.clone());
        let both: Vec<String> = SUPPORTED
            .iter()
            .filter(|v| learned.as_ref().is_none_or(|l| l.iter().any(|u| u == *v)))
            .map(|v| (*v).to_owned())
            .collect();
        if both.is_empty() { SUPPORTED.map(String::from).to_vec() } else { both }
    }
}

const SENTINEL_START: &str = "=?base64?";
const SENTINEL_END: &str = "?=";

/// A header value as the body would carry it: `=?base64?…?=` (case-sensitive markers)
/// is decoded to UTF-8, anything else is taken as is. `None`: a sentinel whose content
/// is not base64 of UTF-8, or not its one spelling (malformed, refused).
pub fn decode_header_value(value: &str) -> Option<Cow<'_, str>> {
    let Some(encoded) = value.strip_prefix(SENTINEL_START).and_then(|rest| rest.strip_suffix(SENTINEL_END)) else {
        return Some(Cow::Borrowed(value));
    };
    // Clients pad (the spec's examples do); an unpadded value means the same bytes.
    // `data_encoding` also reads concatenated padded blocks (`QQ==QQ==` is "AA"): padding
    // only at the end leaves each string one padded and one unpadded spelling.
    if encoded.trim_end_matches('=').contains('=') {
        return None;
    }
    let bytes = BASE64.decode(encoded.as_bytes()).or_else(|_| BASE64_NOPAD.decode(encoded.as_bytes())).ok()?;
    String::from_utf8(bytes).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eras_of_versions() {
        assert_eq!(era_of("2026-07-28"), Some(Era::Modern));
        for legacy in ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"] {
            assert_eq!(era_of(legacy), Some(Era::Legacy), "{legacy}");
        }
        for unknown in ["2099-01-01", "2026-07-28 ", "", "latest"] {
            assert_eq!(era_of(unknown), None, "{unknown:?}");
        }
    }

    #[test]
    fn supported_versions_are_what_both_sides_speak() {
        let versions = UpstreamVersions::default();
        assert_eq!(versions.supported(), SUPPORTED.map(String::from).to_vec());
        versions.learn(
            r#"{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2026-07-28","2030-01-01","2025-06-18"]}}"#,
        );
        assert_eq!(versions.supported(), ["2026-07-28", "2025-06-18"]);
        versions.learn(r#"{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2030-01-01"]}}"#);
        assert_eq!(versions.supported(), SUPPORTED.map(String::from).to_vec(), "nothing in common: the proxy's");
    }

    /// The spec's encoding table (streamable-http, Value Encoding).
    #[test]
    fn decodes_the_spec_examples() {
        let cases = [
            ("us-west1", Some("us-west1")),
            ("=?base64?SGVsbG8sIOS4lueVjA==?=", Some("Hello, 世界")),
            ("=?base64?IHBhZGRlZCA=?=", Some(" padded ")),
            ("=?base64?bGluZTEKbGluZTI=?=", Some("line1\nline2")),
            ("=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=", Some("=?base64?literal?=")),
            ("=?base64?IHBhZGRlZCA?=", Some(" padded ")),
            // Markers are case-sensitive: this is a plain value.
            ("=?BASE64?eA==?=", Some("=?BASE64?eA==?=")),
            ("=?base64?not base64!?=", None),
            ("=?base64?/w==?=", None),
            // Concatenated padded blocks: a second spelling of "AA" (found by fuzzing).
            ("=?base64?QQ==QQ==?=", None),
            ("=?base64?QUI=QQ==?=", None),
            ("=?base64?QUE=?=", Some("AA")),
            ("=?base64?QUE?=", Some("AA")),
        ];
        for (header, want) in cases {
            assert_eq!(decode_header_value(header).as_deref(), want, "{header}");
        }
    }
}
