//! `WWW-Authenticate` challenges (RFC 6750 §3, RFC 9449 §7.1 and §9, RFC 9728 §5.1).

use http::HeaderValue;

/// Why credentials were refused, as the `error` parameter says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeError {
    /// No credentials: the challenge only says how to authenticate.
    Missing,
    InvalidRequest,
    InvalidToken,
    InvalidDpopProof,
    UseDpopNonce,
}

impl ChallengeError {
    fn code(self) -> Option<&'static str> {
        match self {
            ChallengeError::Missing => None,
            ChallengeError::InvalidRequest => Some("invalid_request"),
            ChallengeError::InvalidToken => Some("invalid_token"),
            ChallengeError::InvalidDpopProof => Some("invalid_dpop_proof"),
            ChallengeError::UseDpopNonce => Some("use_dpop_nonce"),
        }
    }
}

/// Builds challenges for one resource; the parts that never change are formatted once.
#[derive(Debug, Clone)]
pub struct Challenges {
    /// `ES256 PS256 …`: the DPoP proof algorithms accepted.
    algs: String,
    /// The RFC 9728 metadata URL of the resource.
    resource_metadata: String,
    bearer_allowed: bool,
}

impl Challenges {
    pub fn new(algs: &[&str], resource_metadata: String, bearer_allowed: bool) -> Self {
        Challenges { algs: algs.join(" "), resource_metadata, bearer_allowed }
    }

    /// The `WWW-Authenticate` value. The DPoP challenge carries the error; the Bearer
    /// challenge points clients at the resource metadata (where MCP clients look for the
    /// authorization server) and, when Bearer is allowed, repeats a token error.
    pub fn header(&self, error: ChallengeError, description: &str) -> HeaderValue {
        let mut value = String::from("DPoP");
        let mut params: Vec<String> = Vec::new();
        if let Some(code) = error.code() {
            params.push(format!("error=\"{code}\""));
            params.push(format!("error_description=\"{}\"", quoted(description)));
        }
        params.push(format!("algs=\"{}\"", self.algs));
        value.push(' ');
        value.push_str(&params.join(", "));
        value.push_str(&format!(", Bearer resource_metadata=\"{}\"", self.resource_metadata));
        if self.bearer_allowed && error == ChallengeError::InvalidToken {
            value.push_str(", error=\"invalid_token\"");
        }
        // Built only from our own strings (quoted() strips what a header cannot carry).
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("DPoP"))
    }
}

/// A quoted-string body: no quotes, backslashes or control characters.
fn quoted(text: &str) -> String {
    text.chars().filter(|c| !matches!(c, '"' | '\\') && (' '..='~').contains(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenges() -> Challenges {
        Challenges::new(
            &["ES256", "PS256"],
            "https://rs.example/.well-known/oauth-protected-resource/mcp".into(),
            false,
        )
    }

    #[test]
    fn missing_credentials_say_how_to_authenticate() {
        assert_eq!(
            challenges().header(ChallengeError::Missing, "ignored"),
            "DPoP algs=\"ES256 PS256\", Bearer resource_metadata=\"https://rs.example/.well-known/oauth-protected-resource/mcp\""
        );
    }

    #[test]
    fn errors_are_rfc9449_challenges() {
        let h = challenges().header(ChallengeError::InvalidDpopProof, "bad \"htu\"\n");
        assert_eq!(
            h,
            "DPoP error=\"invalid_dpop_proof\", error_description=\"bad htu\", algs=\"ES256 PS256\", Bearer resource_metadata=\"https://rs.example/.well-known/oauth-protected-resource/mcp\""
        );
        let h = challenges().header(ChallengeError::UseDpopNonce, "nonce required");
        assert!(h.to_str().unwrap().starts_with("DPoP error=\"use_dpop_nonce\""));
    }
}
