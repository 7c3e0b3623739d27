//! DPoP proof verification (RFC 9449 §4.3): a proof is a JWS the client signs for each
//! request with the key its access token is bound to, so a stolen token is useless
//! without the key and a captured request cannot be replayed.
//!
//! [`DpopVerifier::verify`] performs every check of §4.3 plus the `jti` replay check of
//! §11.1, in numbered steps. Cheap checks run first and the signature last of the
//! stateless ones, so a garbage proof costs microseconds, not an ECDSA verification; the
//! replay cache is written only once everything else has passed, so refused proofs never
//! take up room in it. The module is pure: no HTTP types, no I/O, the clock passed in.
//!
//! What the caller (the pipeline stage) does around it:
//! - check 1 of §4.3, "not more than one `DPoP` header field", with [`single_proof`];
//! - pass the **external** URL the client used (configured public base URL + request
//!   path), not the one the proxy was reached on;
//! - pass the access token and its `cnf.jkt` whenever a DPoP-bound token is presented;
//! - map [`DpopError`] to `401` with `error="invalid_dpop_proof"`, or
//!   `error="use_dpop_nonce"` plus a fresh `DPoP-Nonce` when
//!   [`DpopError::is_nonce_error`], and count it by [`DpopError::reason`].

mod htu;
mod nonce;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::digest;
use data_encoding::BASE64URL_NOPAD;
use serde_json::{Map, Value};

use crate::auth::jwk::{JwkError, PublicJwk, SigAlg};
use crate::strict_json::{self, StrictJsonError};

use crate::state::memory::replay::{ReplayCache, ReplayRejection};
pub use htu::RequestUri;
pub use nonce::{NonceRejection, NonceSource, RngError};

/// How a [`DpopVerifier`] judges proofs.
#[derive(Debug, Clone)]
pub struct DpopConfig {
    /// Algorithms accepted in proofs, advertised as `dpop_signing_alg_values_supported`.
    /// Only asymmetric algorithms are representable.
    pub algs: Vec<SigAlg>,
    /// How long after its `iat` a proof is still accepted (Keycloak: 10 s).
    pub lifetime: Duration,
    /// Clock difference tolerated either way (Keycloak: 15 s). Together with `lifetime`:
    /// accepted iff `now - (lifetime + skew) ≤ iat ≤ now + skew`.
    pub clock_skew: Duration,
    /// Hard cap on remembered (jti, htu) pairs; when reached with live entries, new
    /// proofs are refused until entries expire. ≈ 60 bytes each: 200 000 ≈ 12 MiB, enough
    /// for ≈ 8 000 proofs/s with the default 25 s window.
    pub replay_capacity: usize,
    /// Live entries one signing key may hold: past it only that key's proofs are refused,
    /// so one client cannot fill the cache for all (≈ 1 000 proofs/s per key by default).
    pub replay_entries_per_key: usize,
    /// Longest proof accepted, in bytes (an RSA-8192 proof is ≈ 3.5 KiB).
    pub max_proof_bytes: usize,
    /// When set, every proof must carry a `nonce` this source issued (RFC 9449 §8).
    pub nonce: Option<Arc<NonceSource>>,
}

impl Default for DpopConfig {
    fn default() -> Self {
        DpopConfig {
            algs: SigAlg::ALL.to_vec(),
            lifetime: Duration::from_secs(10),
            clock_skew: Duration::from_secs(15),
            replay_capacity: crate::state::memory::DEFAULT_REPLAY_CAPACITY,
            replay_entries_per_key: crate::state::memory::DEFAULT_REPLAY_ENTRIES_PER_KEY,
            max_proof_bytes: 8 * 1024,
            nonce: None,
        }
    }
}

/// A configuration that cannot verify anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopConfigError {
    #[error("no DPoP signing algorithm is allowed")]
    NoAlgorithms,
}

/// What a valid proof establishes. Only [`DpopVerifier::verify`] builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    jkt: String,
    jti: String,
    iat: u64,
}

impl VerifiedProof {
    /// RFC 7638 thumbprint of the proof's key: what the access token's `cnf.jkt` names and
    /// what a session is bound to.
    pub fn jkt(&self) -> &str {
        &self.jkt
    }
    pub fn jti(&self) -> &str {
        &self.jti
    }
    /// The proof's `iat`, seconds since the Unix epoch.
    pub fn iat(&self) -> u64 {
        self.iat
    }
}

/// A proof that passed every check but the replay check, which is the caller's
/// (`SET NX` in a shared backend, or the verifier's own cache in [`DpopVerifier::verify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedProof {
    /// SHA-256 of (jti, normalised htu): the same digest whichever backend keeps it.
    pub replay_key: [u8; 32],
    /// Last second (Unix) at which the proof is still inside its `iat` window.
    pub expires_at: u64,
    pub proof: VerifiedProof,
}

/// Why a proof is refused: one variant per failed check. Messages never contain the
/// proof, the token, or any value taken from them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// Check 1: more than one `DPoP` header field.
    #[error("more than one DPoP proof")]
    MultipleProofs,
    /// Check 2: not a single well-formed JWS.
    #[error("DPoP proof is not a well-formed JWS: {0}")]
    Malformed(Malformed),
    /// Check 2: the header or payload repeats a JSON key (readers could disagree on it).
    #[error("DPoP proof repeats a JSON key")]
    DuplicateKey,
    /// Check 3: a required claim or header parameter is absent.
    #[error("DPoP proof lacks `{0}`")]
    MissingClaim(&'static str),
    /// Check 3: a required claim has the wrong JSON type or is empty.
    #[error("DPoP proof `{0}` has the wrong type")]
    InvalidClaim(&'static str),
    /// Check 4: `typ` is not `dpop+jwt`.
    #[error("DPoP proof `typ` is not `dpop+jwt`")]
    WrongType,
    /// Check 5: `alg` is `none`, symmetric, unknown, or not allowed here.
    #[error("DPoP proof `alg` is not an allowed asymmetric algorithm")]
    AlgNotAllowed,
    /// Check 6: the signature does not verify with the header's `jwk`.
    #[error("DPoP proof signature does not verify")]
    BadSignature,
    /// Check 7: the `jwk` header carries a private key.
    #[error("DPoP proof `jwk` contains a private key")]
    PrivateKey,
    /// Check 7: the `jwk` header is not an acceptable public key.
    #[error("DPoP proof `jwk` is not acceptable: {0}")]
    InvalidJwk(JwkError),
    /// Check 5/7: the key cannot be used with `alg` (e.g. an EC key with `RS256`).
    #[error("DPoP proof `jwk` does not fit `alg`")]
    KeyAlgMismatch,
    /// Check 8: `htm` is not the request's method.
    #[error("DPoP proof `htm` does not match the request method")]
    HtmMismatch,
    /// Check 9: `htu` is not the request's URI.
    #[error("DPoP proof `htu` does not match the request URI")]
    HtuMismatch,
    /// Check 9, our side: the request URI we were given cannot be compared (a
    /// configuration error such as a relative public URL; fails closed).
    #[error("the request URI is not an absolute http(s) URI")]
    RequestUri,
    /// Check 10: a nonce is required and the proof has none.
    #[error("DPoP proof lacks the required server nonce")]
    NonceMissing,
    /// Check 10: the nonce was not issued by this server.
    #[error("DPoP proof nonce is not valid")]
    NonceInvalid,
    /// Check 10: the nonce was issued here but is no longer current.
    #[error("DPoP proof nonce has expired")]
    NonceExpired,
    /// Check 11: `iat` is older than the acceptance window.
    #[error("DPoP proof is too old")]
    IatTooOld,
    /// Check 11: `iat` is further in the future than the clock skew allows.
    #[error("DPoP proof is issued in the future")]
    IatInFuture,
    /// Check 12: an access token is presented and the proof has no `ath`.
    #[error("DPoP proof lacks `ath` for the presented access token")]
    AthMissing,
    /// Check 12: `ath` is not the hash of the presented access token.
    #[error("DPoP proof `ath` does not match the access token")]
    AthMismatch,
    /// Check 12: the proof's key is not the key the access token is bound to.
    #[error("DPoP proof key does not match the token's `cnf.jkt`")]
    JktMismatch,
    /// §11.1: this (jti, htu) was already accepted inside its window.
    #[error("DPoP proof was already used")]
    Replayed,
    /// §11.1: the replay cache is full of live entries; refused rather than unremembered.
    #[error("DPoP replay cache is full")]
    ReplayCacheFull,
    /// §11.1: this key holds its share of the replay cache; its proofs wait for expiry.
    #[error("too many recent DPoP proofs from this key")]
    ReplayKeyQuota,
}

/// What is wrong with the JWS itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    #[error("longer than allowed")]
    TooLarge,
    #[error("not valid UTF-8")]
    NotUtf8,
    #[error("not three non-empty dot-separated segments")]
    Segments,
    #[error("a segment is not canonical unpadded base64url")]
    Base64,
    #[error("header or payload is not JSON")]
    Json,
    #[error("header or payload is not a JSON object")]
    NotObject,
    #[error("critical header extensions are not supported")]
    Crit,
}

impl DpopError {
    /// A short, bounded label for the rejections-by-reason metric.
    pub fn reason(&self) -> &'static str {
        match self {
            DpopError::MultipleProofs => "multiple_proofs",
            DpopError::Malformed(_) => "malformed",
            DpopError::DuplicateKey => "duplicate_key",
            DpopError::MissingClaim(_) => "missing_claim",
            DpopError::InvalidClaim(_) => "invalid_claim",
            DpopError::WrongType => "typ",
            DpopError::AlgNotAllowed => "alg",
            DpopError::BadSignature => "signature",
            DpopError::PrivateKey => "jwk_private",
            DpopError::InvalidJwk(e) => e.reason(),
            DpopError::KeyAlgMismatch => "jwk_alg",
            DpopError::HtmMismatch => "htm",
            DpopError::HtuMismatch => "htu",
            DpopError::RequestUri => "request_uri",
            DpopError::NonceMissing => "nonce_missing",
            DpopError::NonceInvalid => "nonce_invalid",
            DpopError::NonceExpired => "nonce_expired",
            DpopError::IatTooOld => "iat_stale",
            DpopError::IatInFuture => "iat_future",
            DpopError::AthMissing => "ath_missing",
            DpopError::AthMismatch => "ath",
            DpopError::JktMismatch => "jkt",
            DpopError::Replayed => "replay",
            DpopError::ReplayCacheFull => "replay_cache_full",
            DpopError::ReplayKeyQuota => "replay_key_quota",
        }
    }

    /// Whether the answer is `use_dpop_nonce` with a fresh `DPoP-Nonce` (RFC 9449 §8)
    /// rather than `invalid_dpop_proof`.
    pub fn is_nonce_error(&self) -> bool {
        matches!(self, DpopError::NonceMissing | DpopError::NonceInvalid | DpopError::NonceExpired)
    }
}

impl From<JwkError> for DpopError {
    fn from(e: JwkError) -> Self {
        match e {
            JwkError::PrivateMember => DpopError::PrivateKey,
            other => DpopError::InvalidJwk(other),
        }
    }
}

/// Check 1 of §4.3: the request carries at most one `DPoP` header field. Returns the
/// proof, or `None` when there is none (whether that is acceptable is the caller's call).
pub fn single_proof<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Result<Option<&'a str>, DpopError> {
    let mut values = values.into_iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(DpopError::MultipleProofs);
    }
    std::str::from_utf8(first).map(Some).map_err(|_| DpopError::Malformed(Malformed::NotUtf8))
}

/// `ath`: base64url(SHA-256(ASCII access token)), RFC 9449 §4.2.
pub fn access_token_hash(access_token: &str) -> String {
    BASE64URL_NOPAD.encode(digest::digest(&digest::SHA256, access_token.as_bytes()).as_ref())
}

/// Verifies DPoP proofs and remembers the ones it accepted. One per process, shared.
pub struct DpopVerifier {
    algs: Vec<SigAlg>,
    /// `lifetime + clock_skew`: how far in the past `iat` may be.
    max_age_secs: u64,
    /// How far in the future `iat` may be.
    skew_secs: u64,
    max_proof_bytes: usize,
    nonce: Option<Arc<NonceSource>>,
    replay: ReplayCache,
}

/// JWS header and payload are flat apart from `jwk` (and a few claim objects).
const MAX_JSON_DEPTH: usize = 8;

impl DpopVerifier {
    pub fn new(config: DpopConfig) -> Result<Self, DpopConfigError> {
        if config.algs.is_empty() {
            return Err(DpopConfigError::NoAlgorithms);
        }
        let skew_secs = config.clock_skew.as_secs();
        Ok(DpopVerifier {
            algs: config.algs,
            max_age_secs: config.lifetime.as_secs().saturating_add(skew_secs),
            skew_secs,
            max_proof_bytes: config.max_proof_bytes,
            nonce: config.nonce,
            replay: ReplayCache::new(config.replay_capacity, config.replay_entries_per_key),
        })
    }

    /// The accepted algorithms, for `WWW-Authenticate: DPoP algs="…"` and the resource
    /// metadata.
    pub fn algs(&self) -> &[SigAlg] {
        &self.algs
    }

    /// The nonce source when nonces are required: the caller sends its `issue(now)` in
    /// `DPoP-Nonce` with a `use_dpop_nonce` answer.
    pub fn nonce_source(&self) -> Option<&NonceSource> {
        self.nonce.as_deref()
    }

    /// Remembered (jti, htu) pairs, for a gauge.
    pub fn replay_entries(&self) -> usize {
        self.replay.len()
    }

    /// Drops expired replay entries (inserts also do this lazily, shard by shard).
    pub fn sweep(&self, now: SystemTime) {
        self.replay.sweep(unix_seconds(now));
    }

    /// Verifies `proof` for a request with `http_method` to `request_uri` (the external
    /// URL the client used; query and fragment are ignored), and records it in this
    /// verifier's own replay cache. When an access token is presented, pass it and, if it
    /// is bound, its `cnf.jkt` as `expected_jkt`.
    ///
    /// The proxy's credentials stage uses [`DpopVerifier::check`] instead and records the
    /// proof in the configured state backend (shared by replicas).
    pub fn verify(
        &self,
        proof: &str,
        http_method: &str,
        request_uri: &str,
        access_token: Option<&str>,
        expected_jkt: Option<&str>,
        now: SystemTime,
    ) -> Result<VerifiedProof, DpopError> {
        let checked = self.check(proof, http_method, request_uri, access_token, expected_jkt, now)?;
        let owner = self.replay.owner_of(&checked.proof.jkt);
        self.replay.record(checked.replay_key, owner, checked.expires_at, unix_seconds(now)).map_err(|r| match r {
            ReplayRejection::Replayed => DpopError::Replayed,
            ReplayRejection::Full => DpopError::ReplayCacheFull,
            ReplayRejection::KeyQuota => DpopError::ReplayKeyQuota,
        })?;
        Ok(checked.proof)
    }

    /// Every check of §4.3 (steps 1–12 below), but not the replay check: the caller
    /// records [`CheckedProof::replay_key`] until [`CheckedProof::expires_at`] and refuses
    /// the proof if it was recorded before.
    pub fn check(
        &self,
        proof: &str,
        http_method: &str,
        request_uri: &str,
        access_token: Option<&str>,
        expected_jkt: Option<&str>,
        now: SystemTime,
    ) -> Result<CheckedProof, DpopError> {
        let request_uri = RequestUri::parse(request_uri);
        self.check_at(proof, http_method, request_uri.as_ref(), access_token, expected_jkt, now)
    }

    /// [`DpopVerifier::check`] against a request URI normalised once (the stage's
    /// `auth.public_url`); `None`: one that cannot be compared, refused at check 9.
    pub fn check_at(
        &self,
        proof: &str,
        http_method: &str,
        request_uri: Option<&RequestUri>,
        access_token: Option<&str>,
        expected_jkt: Option<&str>,
        now: SystemTime,
    ) -> Result<CheckedProof, DpopError> {
        // 1. A single well-formed JWS (§4.3 checks 1–2): three canonical base64url
        //    segments, header and payload strict JSON objects without duplicate keys.
        //    (A second `DPoP` header field is refused by `single_proof` before this.)
        let jws = Jws::parse(proof, self.max_proof_bytes)?;

        // 2. `typ` is `dpop+jwt` (check 4). RFC 7515 §4.1.9: a media type, compared
        //    case-insensitively, `application/` optional.
        let typ = jws.header.get("typ").and_then(Value::as_str).ok_or(DpopError::WrongType)?;
        if !(typ.eq_ignore_ascii_case("dpop+jwt") || typ.eq_ignore_ascii_case("application/dpop+jwt")) {
            return Err(DpopError::WrongType);
        }

        // 3. `alg` is asymmetric and allowed here (check 5). `none` and `HS*` do not
        //    parse into a `SigAlg` at all. We understand no JWS extensions, so any
        //    `crit` header makes the JWS invalid (RFC 7515 §4.1.11).
        let alg = jws
            .header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(SigAlg::from_name)
            .filter(|alg| self.algs.contains(alg))
            .ok_or(DpopError::AlgNotAllowed)?;
        if jws.header.contains_key("crit") {
            return Err(DpopError::Malformed(Malformed::Crit));
        }

        // 4. `jwk` is a public key, valid, and of the kind `alg` needs (check 7).
        let jwk = PublicJwk::from_json(jws.header.get("jwk").ok_or(DpopError::MissingClaim("jwk"))?)?;
        if !jwk.fits(alg) {
            return Err(DpopError::KeyAlgMismatch);
        }

        // 5. Every required claim is present with its type (check 3). `ath` and `nonce`
        //    are required only in some cases, and checked in their own steps.
        let claims = Claims::read(&jws.payload)?;

        // 6. `htm` is the request's method (check 8). Methods are case-sensitive.
        if claims.htm != http_method {
            return Err(DpopError::HtmMismatch);
        }

        // 7. `htu` is the request's URI, both sides RFC 3986-normalised, query and
        //    fragment ignored (check 9).
        //    A proof that already spells the URI normalised is compared as is
        //    (normalising is idempotent: `htu::tests::normalising_is_idempotent`).
        let request_uri = request_uri.ok_or(DpopError::RequestUri)?.as_str();
        if claims.htu != request_uri && htu::normalize(claims.htu).as_deref() != Some(request_uri) {
            return Err(DpopError::HtuMismatch);
        }

        // 8. `iat` is inside the window (check 11): not older than lifetime + skew, not
        //    newer than skew.
        let now_secs = unix_seconds(now);
        if claims.iat.saturating_add(self.max_age_secs) < now_secs {
            return Err(DpopError::IatTooOld);
        }
        if claims.iat > now_secs.saturating_add(self.skew_secs) {
            return Err(DpopError::IatInFuture);
        }

        // 9. With an access token, `ath` is its hash (check 12, first half).
        if let Some(token) = access_token {
            let ath = claims.ath.ok_or(DpopError::AthMissing)?;
            if ath != access_token_hash(token) {
                return Err(DpopError::AthMismatch);
            }
        }

        // 10. The proof's key is the one the token is bound to: `cnf.jkt` equals the
        //     RFC 7638 thumbprint of `jwk` (check 12, second half).
        let jkt = jwk.thumbprint();
        if let Some(expected) = expected_jkt
            && expected != jkt
        {
            return Err(DpopError::JktMismatch);
        }

        // 11. With server nonces, the proof carries a current one (check 10).
        if let Some(source) = &self.nonce {
            let nonce = claims.nonce.ok_or(DpopError::NonceMissing)?;
            source.check(nonce, now).map_err(|rejection| match rejection {
                NonceRejection::Invalid => DpopError::NonceInvalid,
                NonceRejection::Expired => DpopError::NonceExpired,
            })?;
        }

        // 12. The signature verifies with `jwk` (check 6): last of the stateless checks,
        //     as the only expensive one.
        jwk.verify(alg, jws.signing_input, &jws.signature).map_err(|_| DpopError::BadSignature)?;

        // 13. `jti` must be new for this `htu` (§11.1): the caller records the key until
        //     the proof would fail step 8 anyway; only proofs that passed everything else
        //     get here, so refused proofs take no room.
        Ok(CheckedProof {
            replay_key: replay_key(claims.jti, request_uri),
            expires_at: claims.iat.saturating_add(self.max_age_secs),
            proof: VerifiedProof { jkt, jti: claims.jti.to_owned(), iat: claims.iat },
        })
    }
}

impl fmt::Debug for DpopVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopVerifier")
            .field("algs", &self.algs)
            .field("max_age_secs", &self.max_age_secs)
            .field("skew_secs", &self.skew_secs)
            .field("nonce", &self.nonce)
            .field("replay_capacity", &self.replay.capacity())
            .finish_non_exhaustive()
    }
}

/// The three parts of a compact JWS, decoded.
struct Jws<'a> {
    header: Map<String, Value>,
    payload: Map<String, Value>,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`, exactly as received.
    signing_input: &'a [u8],
    signature: Vec<u8>,
}

impl<'a> Jws<'a> {
    fn parse(proof: &'a str, max_bytes: usize) -> Result<Self, DpopError> {
        if proof.len() > max_bytes {
            return Err(DpopError::Malformed(Malformed::TooLarge));
        }
        let mut parts = proof.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(DpopError::Malformed(Malformed::Segments));
        };
        if header.is_empty() || payload.is_empty() || signature.is_empty() {
            return Err(DpopError::Malformed(Malformed::Segments));
        }
        Ok(Jws {
            header: json_object(header)?,
            payload: json_object(payload)?,
            signing_input: &proof.as_bytes()[..header.len() + 1 + payload.len()],
            signature: base64url(signature)?,
        })
    }
}

fn base64url(segment: &str) -> Result<Vec<u8>, DpopError> {
    BASE64URL_NOPAD.decode(segment.as_bytes()).map_err(|_| DpopError::Malformed(Malformed::Base64))
}

fn json_object(segment: &str) -> Result<Map<String, Value>, DpopError> {
    match strict_json::parse(&base64url(segment)?, MAX_JSON_DEPTH) {
        Ok(Value::Object(members)) => Ok(members),
        Ok(_) => Err(DpopError::Malformed(Malformed::NotObject)),
        Err(StrictJsonError::DuplicateKey(_)) => Err(DpopError::DuplicateKey),
        Err(_) => Err(DpopError::Malformed(Malformed::Json)),
    }
}

/// The payload claims the checks read, borrowed from the parsed payload.
struct Claims<'a> {
    jti: &'a str,
    htm: &'a str,
    htu: &'a str,
    iat: u64,
    ath: Option<&'a str>,
    nonce: Option<&'a str>,
}

impl<'a> Claims<'a> {
    fn read(payload: &'a Map<String, Value>) -> Result<Self, DpopError> {
        Ok(Claims {
            jti: non_empty_string(payload, "jti")?,
            htm: non_empty_string(payload, "htm")?,
            htu: non_empty_string(payload, "htu")?,
            iat: numeric_date(payload, "iat")?,
            ath: optional_string(payload, "ath")?,
            nonce: optional_string(payload, "nonce")?,
        })
    }
}

fn non_empty_string<'a>(payload: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, DpopError> {
    match payload.get(name) {
        None => Err(DpopError::MissingClaim(name)),
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(DpopError::InvalidClaim(name)),
    }
}

fn optional_string<'a>(payload: &'a Map<String, Value>, name: &'static str) -> Result<Option<&'a str>, DpopError> {
    match payload.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(DpopError::InvalidClaim(name)),
    }
}

/// RFC 7519 NumericDate: non-negative seconds, fractions allowed and truncated.
fn numeric_date(payload: &Map<String, Value>, name: &'static str) -> Result<u64, DpopError> {
    let value = payload.get(name).ok_or(DpopError::MissingClaim(name))?;
    if let Some(secs) = value.as_u64() {
        return Ok(secs);
    }
    match value.as_f64() {
        // Saturating float-to-int: an absurd future date stays absurdly in the future.
        Some(secs) if secs.is_finite() && secs >= 0.0 => Ok(secs as u64),
        _ => Err(DpopError::InvalidClaim(name)),
    }
}

/// A fixed-size key for (jti, htu): long `jti`s cost the cache no more than short ones,
/// and the length prefix keeps `("ab", "c…")` and `("a", "bc…")` apart.
fn replay_key(jti: &str, htu: &str) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&(jti.len() as u64).to_be_bytes());
    ctx.update(jti.as_bytes());
    ctx.update(htu.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

/// Seconds since the Unix epoch; a clock before 1970 reads as 0 (and then refuses every
/// proof as from the future, failing closed).
pub(crate) fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
