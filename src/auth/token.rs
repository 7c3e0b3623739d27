//! Access tokens: JWTs from the configured issuers (Keycloak, any RFC 9068 server),
//! verified on every message and cached by hash until they expire.
//!
//! Verification, in order:
//! 1. Header and payload are strict JSON (no duplicate keys: the issuer we pick and the
//!    claims we check must be the ones every reader sees), the header has no `crit`, and
//!    the payload names a configured issuer.
//! 2. The header's `alg` is on the allowlist (asymmetric only: never `none`, never HMAC,
//!    so a public key can never be used as an HMAC secret) and `typ` is absent, `JWT` or
//!    `at+jwt`.
//! 3. The key is the issuer's JWKS key with the header's `kid`; an unknown `kid` refreshes
//!    the JWKS once (rate limited), so rotation works without a restart.
//! 4. Signature, `iss`, `aud` (one of the configured audiences), `exp` (required) and
//!    `nbf`, with a small leeway.
//! 5. Keycloak's payload `typ`, when present, is `DPoP` or `Bearer`, and agrees with `cnf.jkt`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::jwks::{JwksError, KeySource};
use crate::context::VerifiedToken;
use crate::strict_json;

/// Asymmetric algorithms only; RS256 is Keycloak's default.
pub const DEFAULT_ALGORITHMS: &[Algorithm] =
    &[Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA];

/// Verified tokens kept at most; past it the cache is cleared (a flood of distinct
/// tokens costs verification time, never memory).
const TOKEN_CACHE_MAX: usize = 10_000;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("the token is not a JWT")]
    Malformed,
    #[error("the token payload has duplicate or invalid JSON")]
    Payload,
    #[error("the token has a critical header extension")]
    Critical,
    #[error("the token's issuer is not configured")]
    UnknownIssuer,
    #[error("algorithm {0:?} is not allowed")]
    Algorithm(Algorithm),
    #[error("header typ {0:?} is not JWT or at+jwt")]
    HeaderType(String),
    #[error("no key with the token's kid")]
    UnknownKey,
    #[error("signing keys unavailable: {0}")]
    Keys(#[from] JwksError),
    #[error("signature, audience or lifetime check failed: {0:?}")]
    Invalid(jsonwebtoken::errors::ErrorKind),
    #[error("payload typ {0:?} is not DPoP or Bearer")]
    PayloadType(String),
    #[error("payload typ DPoP without cnf.jkt")]
    UnboundDpop,
}

impl TokenError {
    /// A bounded label for the rejection metric.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::Payload => "payload",
            TokenError::Critical => "crit",
            TokenError::UnknownIssuer => "issuer",
            TokenError::Algorithm(_) => "algorithm",
            TokenError::HeaderType(_) => "header_typ",
            TokenError::UnknownKey => "unknown_kid",
            TokenError::Keys(_) => "jwks",
            TokenError::Invalid(kind) => match kind {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "expired",
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => "not_yet_valid",
                jsonwebtoken::errors::ErrorKind::InvalidAudience => "audience",
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => "issuer",
                jsonwebtoken::errors::ErrorKind::InvalidSignature => "signature",
                jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_) => "missing_claim",
                _ => "invalid",
            },
            TokenError::PayloadType(_) => "payload_typ",
            TokenError::UnboundDpop => "unbound_dpop",
        }
    }
}

/// One trusted issuer and where its keys come from.
pub struct Issuer {
    pub issuer: String,
    pub keys: KeySource,
}

pub struct TokenVerifier {
    issuers: Vec<Issuer>,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    /// SHA-256 of the token → the verified token, its issuer's index and that issuer's
    /// key generation then (a rotation that withdraws the key ends the entry).
    cache: DashMap<[u8; 32], (VerifiedToken, usize, u64)>,
}

impl TokenVerifier {
    pub fn new(issuers: Vec<Issuer>, audiences: Vec<String>, algorithms: Vec<Algorithm>, leeway: Duration) -> Self {
        TokenVerifier { issuers, audiences, algorithms, leeway, cache: DashMap::new() }
    }

    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.issuers.iter().map(|i| i.issuer.as_str())
    }

    /// Every issuer's keys are available (for `/readyz`).
    pub fn is_ready(&self) -> bool {
        self.issuers.iter().all(|i| i.keys.is_ready())
    }

    /// Refetches every remote JWKS older than its refresh period; failures are logged
    /// and keep the keys. Called periodically so that a withdrawn key ends cached tokens.
    pub async fn refresh_stale(&self) {
        for issuer in &self.issuers {
            if let KeySource::Remote(remote) = &issuer.keys
                && let Err(e) = remote.refresh_if_stale().await
            {
                tracing::warn!(issuer = %issuer.issuer, error = %e, "JWKS refresh failed; keeping the cached keys");
            }
        }
    }

    /// Fetches every remote JWKS that has no keys yet; failures are logged.
    pub async fn prefetch(&self) {
        for issuer in self.issuers.iter().filter(|i| !i.keys.is_ready()) {
            if let Err(e) = issuer.keys.prefetch().await {
                tracing::warn!(issuer = %issuer.issuer, error = %e, "signing keys not available yet");
            }
        }
    }

    /// Verifies `token` (the value after `DPoP ` or `Bearer `).
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let now = unix_now();
        let mut digest = [0u8; 32];
        digest.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref());
        let current = |index: usize| self.issuers.get(index).map(|i| i.keys.generation());
        if let Some(hit) = self
            .cache
            .get(&digest)
            .filter(|hit| hit.0.expires_at + self.leeway.as_secs() > now && current(hit.1) == Some(hit.2))
        {
            return Ok(hit.0.clone());
        }
        let verified = self.verify_uncached(token).await?;
        // The generation read after verifying: at worst one newer than the key used, which
        // only means one more verification later.
        if let Some(index) = self.issuers.iter().position(|i| *i.issuer == *verified.issuer)
            && let Some(generation) = current(index)
        {
            if self.cache.len() >= TOKEN_CACHE_MAX {
                self.cache.clear();
            }
            self.cache.insert(digest, (verified.clone(), index, generation));
        }
        Ok(verified)
    }

    /// [`Self::verify`] without the cache (benchmarks).
    pub async fn verify_uncached(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        // 1. Strict header and payload, configured issuer.
        let StrictJws { header: _, claims } = strict_jws(token).map_err(|e| match e {
            JwsShapeError::Malformed | JwsShapeError::Header => TokenError::Malformed,
            JwsShapeError::Payload => TokenError::Payload,
            JwsShapeError::Critical => TokenError::Critical,
        })?;
        let iss = claims.get("iss").and_then(Value::as_str).ok_or(TokenError::UnknownIssuer)?;
        let issuer = self.issuers.iter().find(|i| i.issuer == iss).ok_or(TokenError::UnknownIssuer)?;

        // 2. Algorithm and header type.
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if !self.algorithms.contains(&header.alg) {
            return Err(TokenError::Algorithm(header.alg));
        }
        if let Some(typ) = &header.typ {
            let typ = typ.to_ascii_lowercase();
            if !matches!(typ.as_str(), "jwt" | "at+jwt" | "application/at+jwt") {
                return Err(TokenError::HeaderType(typ));
            }
        }

        // 3. The key: a JWKS refresh on an unknown kid, so rotation needs no restart.
        let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
        let key = match issuer.keys.key(kid).await? {
            Some(key) => key,
            None => issuer.keys.refresh_for(kid).await?.ok_or(TokenError::UnknownKey)?,
        };

        // 4. Signature, iss, aud, exp (required), nbf.
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&issuer.issuer]);
        validation.set_audience(&self.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        decode_agreeing(token, &key, &validation, &claims).map_err(|e| match e {
            Some(kind) => TokenError::Invalid(kind),
            None => TokenError::Payload,
        })?;

        // 5. Keycloak's payload typ and the DPoP binding.
        let dpop_jkt = claims.pointer("/cnf/jkt").and_then(Value::as_str).map(Arc::from);
        match claims.get("typ").and_then(Value::as_str) {
            None | Some("Bearer") => {}
            Some("DPoP") if dpop_jkt.is_none() => return Err(TokenError::UnboundDpop),
            Some("DPoP") => {}
            Some(other) => return Err(TokenError::PayloadType(other.to_owned())),
        }
        Ok(verified_token(&issuer.issuer, claims, dpop_jkt))
    }
}

fn verified_token(issuer: &str, claims: Value, dpop_jkt: Option<Arc<str>>) -> VerifiedToken {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(Arc::from);
    let scopes: Option<Vec<String>> =
        claims.get("scope").and_then(Value::as_str).map(|s| s.split_whitespace().map(str::to_owned).collect());
    let mut roles: Vec<String> = Vec::new();
    let mut push_roles = |v: Option<&Value>| {
        for role in v.and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            roles.push(role.to_owned());
        }
    };
    push_roles(claims.pointer("/realm_access/roles"));
    if let Some(clients) = claims.get("resource_access").and_then(Value::as_object) {
        for client in clients.values() {
            push_roles(client.get("roles"));
        }
    }
    let unique: HashSet<String> = roles.drain(..).collect();
    let mut roles: Vec<String> = unique.into_iter().collect();
    roles.sort();
    VerifiedToken {
        issuer: issuer.into(),
        subject: text(claims.get("sub")),
        client_id: text(claims.get("azp")).or_else(|| text(claims.get("client_id"))),
        scopes: scopes.unwrap_or_default().into(),
        roles: roles.into(),
        dpop_jkt,
        expires_at: claims.get("exp").and_then(Value::as_u64).unwrap_or(0),
        claims: Arc::new(claims),
        input: Arc::default(),
    }
}

/// A compact JWS read strictly: three base64url segments, header and payload strict JSON
/// (no duplicate keys, bounded depth), and no `crit` (RFC 7515 §4.1.11: we understand no
/// critical extension). Shared by access tokens and JWT-SVIDs.
pub(crate) struct StrictJws {
    pub header: Value,
    pub claims: Value,
}

pub(crate) enum JwsShapeError {
    Malformed,
    Header,
    Payload,
    Critical,
}

pub(crate) fn strict_jws(token: &str) -> Result<StrictJws, JwsShapeError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwsShapeError::Malformed);
    };
    let segment = |s: &str| data_encoding::BASE64URL_NOPAD.decode(s.as_bytes()).map_err(|_| JwsShapeError::Malformed);
    let header = strict_json::parse(&segment(header)?, 8).map_err(|_| JwsShapeError::Header)?;
    if header.get("crit").is_some() {
        return Err(JwsShapeError::Critical);
    }
    let claims = strict_json::parse(&segment(payload)?, 32).map_err(|_| JwsShapeError::Payload)?;
    Ok(StrictJws { header, claims })
}

/// Signature and registered claims by jsonwebtoken, which must have read the same claims
/// as [`strict_jws`] (else neither is trusted: `Err(None)`).
pub(crate) fn decode_agreeing(
    token: &str,
    key: &DecodingKey,
    validation: &Validation,
    claims: &Value,
) -> Result<(), Option<jsonwebtoken::errors::ErrorKind>> {
    let data = jsonwebtoken::decode::<Value>(token, key, validation).map_err(|e| Some(e.into_kind()))?;
    if data.claims != *claims {
        return Err(None);
    }
    Ok(())
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Parses a JWKS document (static file or fetched).
pub fn parse_jwks(text: &str) -> Result<JwkSet, JwksError> {
    serde_json::from_str(text).map_err(|e| JwksError::Parse(e.to_string()))
}

/// A decoding key for one JWK, refusing symmetric keys (`kty: oct`).
pub fn decoding_key(jwk: &jsonwebtoken::jwk::Jwk) -> Option<DecodingKey> {
    if matches!(jwk.algorithm, jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)) {
        return None;
    }
    DecodingKey::from_jwk(jwk).ok()
}
