//! OAuth 2.0 Protected Resource Metadata (RFC 9728) for the MCP endpoint: MCP clients
//! read it to find the authorization server and learn that tokens must be DPoP-bound.

use http::Uri;
use serde_json::json;

/// The well-known prefix (RFC 9728 §3).
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The metadata document and the paths it is served at.
#[derive(Debug, Clone)]
pub struct ResourceMetadata {
    pub document: bytes::Bytes,
    /// `/.well-known/oauth-protected-resource` + the resource's path (RFC 9728 §3.1), and
    /// the bare well-known path for clients that do not insert the path.
    pub paths: [String; 2],
    /// The absolute URL of the document, for `resource_metadata` in challenges.
    pub url: String,
}

impl ResourceMetadata {
    pub fn new(resource: &Uri, authorization_servers: &[String], dpop_required: bool, dpop_algs: &[&str]) -> Self {
        let document = json!({
            "resource": resource.to_string(),
            "authorization_servers": authorization_servers,
            "bearer_methods_supported": ["header"],
            "dpop_bound_access_tokens_required": dpop_required,
            "dpop_signing_alg_values_supported": dpop_algs,
        });
        let path = resource.path().trim_end_matches('/');
        let scoped = format!("{WELL_KNOWN}{path}");
        let origin = match (resource.scheme_str(), resource.authority()) {
            (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
            _ => String::new(),
        };
        ResourceMetadata {
            document: bytes::Bytes::from(document.to_string()),
            url: format!("{origin}{scoped}"),
            paths: [scoped, WELL_KNOWN.to_owned()],
        }
    }

    pub fn serves(&self, path: &str) -> bool {
        self.paths.iter().any(|p| p == path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_and_paths_follow_rfc9728() {
        let resource: Uri = "https://mcp.example.com/mcp".parse().unwrap();
        let m = ResourceMetadata::new(&resource, &["https://kc.example.com/realms/agents".into()], true, &["ES256"]);
        let doc: serde_json::Value = serde_json::from_slice(&m.document).unwrap();
        assert_eq!(doc["resource"], "https://mcp.example.com/mcp");
        assert_eq!(doc["authorization_servers"][0], "https://kc.example.com/realms/agents");
        assert_eq!(doc["dpop_bound_access_tokens_required"], true);
        assert_eq!(doc["dpop_signing_alg_values_supported"][0], "ES256");
        assert_eq!(m.url, "https://mcp.example.com/.well-known/oauth-protected-resource/mcp");
        assert!(m.serves("/.well-known/oauth-protected-resource/mcp"));
        assert!(m.serves("/.well-known/oauth-protected-resource"));
        assert!(!m.serves("/mcp"));
    }
}
