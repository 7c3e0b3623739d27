//! Outbound credentials: the sidecar next to an agent obtains the agent's token itself,
//! so the agent holds no static credential (design §5, Keycloak with SPIFFE).
//!
//! 1. A JWT-SVID for the token endpoint's audience, fetched fresh for every token request
//!    (Keycloak refuses an `iat` older than 300 s).
//! 2. `client_credentials` at the issuer's token endpoint with the JWT-SVID as the client
//!    assertion and a DPoP proof by the sidecar's in-memory key.
//! 3. The answer checked before use: `token_type` DPoP, bound to our key (`cnf.jkt`), `exp`.
//! 4. Cached, refreshed ahead of expiry by one caller at a time; every upstream request
//!    then carries `Authorization: DPoP <token>` and a fresh proof (`proxy::upstream`).

pub mod key;
pub mod token;

pub use key::DpopKey;
pub use token::{AssertionSource, OutboundCredentials, OutboundSettings, Registration};

/// Why no token could be had; each is answered 503 with its cause and counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("no JWT-SVID for the token request: {0}")]
    NoSvid(String),
    #[error("the issuer could not be reached: {0}")]
    Unreachable(String),
    #[error("the issuer refused the token request: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused { error: String, description: Option<String> },
    #[error("the issuer's answer is unusable: {0}")]
    BadAnswer(String),
    #[error("the DPoP key failed: {0}")]
    Key(String),
}

impl OutboundError {
    /// A bounded label for `mcp_pep_outbound_token_requests_total{result}`.
    pub fn label(&self) -> &'static str {
        match self {
            OutboundError::NoSvid(_) => "no_svid",
            OutboundError::Unreachable(_) => "unreachable",
            OutboundError::Refused { .. } => "refused",
            OutboundError::BadAnswer(_) => "bad_answer",
            OutboundError::Key(_) => "key",
        }
    }
}
