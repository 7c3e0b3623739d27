//! The `auth:` section of the configuration. Present with at least one issuer, it turns
//! the credentials stage on: every message then needs a verified access token (and, by
//! default, a DPoP proof).

use std::path::PathBuf;
use std::time::Duration;

use http::Uri;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use super::dpop::{DpopConfig, DpopVerifier, NonceSource, RequestUri};
use super::jwks::{JwksLocation, KeySource, RemoteJwks};
use super::token::{DEFAULT_ALGORITHMS, Issuer, TokenVerifier};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Trusted token issuers; empty: no credentials stage.
    pub issuers: Vec<IssuerConfig>,
    /// Accepted `aud` values; default: `public_url`.
    pub audiences: Vec<String>,
    /// The URL clients use for the MCP endpoint: the `htu` DPoP proofs must name and the
    /// resource of the metadata. Required: deriving it from the request's `Host` would let
    /// a proof made for another server pass here.
    pub public_url: Option<String>,
    /// `required`: tokens must be DPoP-bound and presented with a proof; `optional`:
    /// tokens without `cnf` may come as Bearer.
    pub dpop: String,
    /// Demand server-issued nonces in DPoP proofs (RFC 9449 §9).
    pub dpop_nonce: bool,
    /// (jti, htu) pairs remembered against replay; full of live entries, new proofs are
    /// refused until entries expire.
    pub dpop_replay_entries: usize,
    /// Of those, live entries one DPoP key may hold.
    pub dpop_replay_entries_per_key: usize,
    /// The nonce key (at least 32 bytes, e.g. a mounted Secret), so that replicas accept
    /// each other's nonces; default: a random key per process.
    pub dpop_nonce_secret_file: Option<PathBuf>,
    /// Proof `iat` window: Keycloak's defaults.
    pub proof_lifetime_s: u64,
    pub clock_skew_s: u64,
    /// Token signature algorithms accepted (asymmetric only).
    pub algorithms: Vec<String>,
    /// Leeway for `exp`/`nbf`.
    pub leeway_s: u64,
    pub jwks_refresh_s: u64,
    /// The least time between two fetches of one JWKS (unknown `kid`s cannot force more).
    pub jwks_min_refresh_s: u64,
    /// The claim whose `spiffe://` value names the workload the token was issued to
    /// (`azp`, `client_id`, `sub` or a mapper claim); it must equal the SPIFFE ID the
    /// caller proved. `none` turns the check off.
    pub spiffe_id_claim: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The `iss` value, e.g. `https://keycloak.example.com/realms/agents`.
    pub issuer: String,
    /// Where its keys are; default: OIDC discovery from `issuer`.
    pub jwks_uri: Option<String>,
    /// A static JWKS file instead of fetching.
    pub jwks_file: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            issuers: Vec::new(),
            audiences: Vec::new(),
            public_url: None,
            dpop: "required".into(),
            dpop_nonce: false,
            dpop_replay_entries: DpopConfig::default().replay_capacity,
            dpop_replay_entries_per_key: DpopConfig::default().replay_entries_per_key,
            dpop_nonce_secret_file: None,
            proof_lifetime_s: 10,
            clock_skew_s: 15,
            algorithms: DEFAULT_ALGORITHMS.iter().map(|a| format!("{a:?}")).collect(),
            leeway_s: 5,
            jwks_refresh_s: 300,
            jwks_min_refresh_s: 10,
            spiffe_id_claim: "azp".into(),
        }
    }
}

/// A problem with one key of the `auth:` section.
#[derive(Debug)]
pub struct AuthConfigError {
    pub key: &'static str,
    pub problem: String,
}

/// The checked `auth:` section.
pub struct AuthSettings {
    pub tokens: TokenVerifier,
    pub dpop: DpopVerifier,
    pub public_url: Uri,
    /// `auth.public_url` normalised once for every proof's `htu` check; `None`: not
    /// comparable (user info), so every proof is refused (`DpopError::RequestUri`).
    pub htu: Option<RequestUri>,
    pub dpop_required: bool,
    pub issuers: Vec<String>,
    /// The token claim that carries the client's SPIFFE ID (`binding`); `None`: off.
    pub spiffe_id_claim: Option<String>,
}

impl AuthConfig {
    pub fn enabled(&self) -> bool {
        !self.issuers.is_empty()
    }

    pub fn validate(&self) -> Result<AuthSettings, AuthConfigError> {
        let invalid = |key, problem: String| AuthConfigError { key, problem };
        let dpop_required = match self.dpop.as_str() {
            "required" => true,
            "optional" => false,
            other => return Err(invalid("auth.dpop", format!("{other:?} must be required or optional"))),
        };
        let Some(url) = &self.public_url else {
            return Err(invalid("auth.public_url", "is required with auth.issuers (or --public-url)".into()));
        };
        let public_url: Uri = url.parse().map_err(|e| invalid("auth.public_url", format!("{url:?}: {e}")))?;
        if !matches!(public_url.scheme_str(), Some("https" | "http")) || public_url.authority().is_none() {
            return Err(invalid("auth.public_url", format!("{url:?} must be an absolute http(s) URL")));
        }
        let mut audiences = self.audiences.clone();
        if audiences.is_empty() {
            audiences.push(url.clone());
        }
        let mut algorithms = Vec::new();
        for name in &self.algorithms {
            let alg: Algorithm =
                name.parse().map_err(|_| invalid("auth.algorithms", format!("{name:?} is unknown")))?;
            if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                return Err(invalid("auth.algorithms", format!("{name} is symmetric: never accepted")));
            }
            algorithms.push(alg);
        }
        let refresh = Duration::from_secs(self.jwks_refresh_s.max(1));
        let min_refresh = Duration::from_secs(self.jwks_min_refresh_s);
        let mut issuers = Vec::new();
        for issuer in &self.issuers {
            let keys = match (&issuer.jwks_file, &issuer.jwks_uri) {
                (Some(_), Some(_)) => {
                    return Err(invalid("auth.issuers", "jwks_file and jwks_uri exclude each other".into()));
                }
                (Some(file), None) => {
                    let text = std::fs::read_to_string(file)
                        .map_err(|e| invalid("auth.issuers.jwks_file", format!("{}: {e}", file.display())))?;
                    KeySource::from_jwks_text(&text)
                        .map_err(|e| invalid("auth.issuers.jwks_file", format!("{}: {e}", file.display())))?
                }
                (None, uri) => {
                    let location = match uri {
                        Some(uri) => JwksLocation::Uri(
                            uri.parse().map_err(|e| invalid("auth.issuers.jwks_uri", format!("{uri:?}: {e}")))?,
                        ),
                        None => JwksLocation::Discovery { issuer: issuer.issuer.clone() },
                    };
                    KeySource::Remote(Box::new(
                        RemoteJwks::new(location, refresh, min_refresh)
                            .map_err(|e| invalid("auth.issuers", e.to_string()))?,
                    ))
                }
            };
            issuers.push(Issuer { issuer: issuer.issuer.clone(), keys });
        }
        let names = issuers.iter().map(|i| i.issuer.clone()).collect();
        let nonce = match (&self.dpop_nonce_secret_file, self.dpop_nonce) {
            (Some(_), false) => {
                return Err(invalid("auth.dpop_nonce_secret_file", "needs auth.dpop_nonce: true".into()));
            }
            (Some(file), true) => {
                let secret = read_key_file(file).map_err(|problem| invalid("auth.dpop_nonce_secret_file", problem))?;
                Some(std::sync::Arc::new(NonceSource::from_secret(&secret, NonceSource::DEFAULT_WINDOW)))
            }
            (None, true) => {
                let source = NonceSource::random(NonceSource::DEFAULT_WINDOW)
                    .map_err(|_| invalid("auth.dpop_nonce", "no randomness for the nonce key".into()))?;
                Some(std::sync::Arc::new(source))
            }
            (None, false) => None,
        };
        if self.dpop_replay_entries == 0 || self.dpop_replay_entries_per_key == 0 {
            return Err(invalid(
                "auth.dpop_replay_entries",
                "and dpop_replay_entries_per_key must be greater than 0".into(),
            ));
        }
        let dpop = DpopVerifier::new(DpopConfig {
            replay_capacity: self.dpop_replay_entries,
            replay_entries_per_key: self.dpop_replay_entries_per_key,
            lifetime: Duration::from_secs(self.proof_lifetime_s),
            clock_skew: Duration::from_secs(self.clock_skew_s),
            nonce,
            ..DpopConfig::default()
        })
        .map_err(|e| invalid("auth.dpop", e.to_string()))?;
        Ok(AuthSettings {
            tokens: TokenVerifier::new(issuers, audiences, algorithms, Duration::from_secs(self.leeway_s)),
            dpop,
            htu: RequestUri::parse(&public_url.to_string()),
            public_url,
            dpop_required,
            issuers: names,
            spiffe_id_claim: match self.spiffe_id_claim.as_str() {
                "none" => None,
                "" => return Err(invalid("auth.spiffe_id_claim", "name a claim, or none".into())),
                claim => Some(claim.to_owned()),
            },
        })
    }
}

/// The shortest nonce key accepted: HMAC-SHA256 wants a key of at least its output size.
const MIN_NONCE_KEY: usize = 32;

/// A key file's bytes (binary or text), trailing line breaks removed. Errors name the
/// file and the length, never the content.
fn read_key_file(file: &std::path::Path) -> Result<Vec<u8>, String> {
    let mut key = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    while key.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
        key.pop();
    }
    if key.len() < MIN_NONCE_KEY {
        return Err(format!("{}: {} bytes; at least {MIN_NONCE_KEY} are needed", file.display(), key.len()));
    }
    Ok(key)
}
