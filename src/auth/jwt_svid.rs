//! JWT-SVIDs as an inbound credential (SPIFFE JWT-SVID §3, §4): a JWS whose `sub` is the
//! caller's SPIFFE ID, signed by a JWT authority of that trust domain's bundle, for one of
//! our audiences. Unlike access tokens there is no issuer to check: the trust domain
//! of `sub` picks the bundle, and only its keys may vouch for it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use super::jwks::{JwksError, JwksLocation, RemoteJwks};
use super::token::{DEFAULT_ALGORITHMS, JwsShapeError, StrictJws, decode_agreeing, decoding_key, strict_jws, unix_now};
use crate::context::{IdentitySource, SpiffeIdentity};
use crate::identity::material::SvidStore;
use crate::identity::parse_spiffe_id;

/// Verified JWT-SVIDs kept at most; past it the cache is cleared.
const CACHE_MAX: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum JwtSvidError {
    #[error("the JWT-SVID is not a JWS compact serialization")]
    Malformed,
    #[error("the JWT-SVID has duplicate or invalid JSON")]
    Json,
    #[error("the JWT-SVID has a critical header extension")]
    Critical,
    #[error("algorithm {0} is not allowed for JWT-SVIDs")]
    Algorithm(String),
    #[error("header typ {0:?} is not JWT or JOSE")]
    HeaderType(String),
    #[error("the JWT-SVID has no kid")]
    NoKid,
    #[error("sub is not a SPIFFE ID")]
    Subject,
    #[error("trust domain {0} is not accepted")]
    TrustDomain(String),
    #[error("no JWT authority {kid:?} in the bundle of {td}")]
    UnknownKey { td: String, kid: String },
    #[error("signature, audience or lifetime check failed: {0:?}")]
    Invalid(jsonwebtoken::errors::ErrorKind),
    #[error("JWT authorities unavailable: {0}")]
    Keys(#[from] JwksError),
}

impl JwtSvidError {
    pub fn reason(&self) -> &'static str {
        match self {
            JwtSvidError::Malformed | JwtSvidError::Json => "jwt_svid_malformed",
            JwtSvidError::Critical => "jwt_svid_crit",
            JwtSvidError::Algorithm(_) => "jwt_svid_algorithm",
            JwtSvidError::HeaderType(_) => "jwt_svid_typ",
            JwtSvidError::NoKid => "jwt_svid_no_kid",
            JwtSvidError::Subject => "jwt_svid_subject",
            JwtSvidError::TrustDomain(_) => "jwt_svid_trust_domain",
            JwtSvidError::UnknownKey { .. } => "jwt_svid_unknown_kid",
            JwtSvidError::Keys(_) => "jwt_svid_keys",
            JwtSvidError::Invalid(kind) => match kind {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "jwt_svid_expired",
                jsonwebtoken::errors::ErrorKind::InvalidAudience => "jwt_svid_audience",
                jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_) => "jwt_svid_missing_claim",
                jsonwebtoken::errors::ErrorKind::InvalidSignature => "jwt_svid_signature",
                _ => "jwt_svid_invalid",
            },
        }
    }
}

pub struct JwtSvidVerifier {
    audiences: Vec<String>,
    trust_domains: BTreeSet<String>,
    store: Arc<SvidStore>,
    /// SPIRE OIDC Discovery Providers by trust domain, after the store's bundles.
    oidc: HashMap<String, RemoteJwks>,
    leeway_s: u64,
    /// SHA-256 of the JWT-SVID → its identity, `exp`, and the material revision it was
    /// verified under (a bundle rotation that withdraws its key ends the entry).
    cache: DashMap<[u8; 32], (SpiffeIdentity, u64, u64)>,
}

impl JwtSvidVerifier {
    pub fn new(audiences: Vec<String>, trust_domains: BTreeSet<String>, store: Arc<SvidStore>) -> Self {
        JwtSvidVerifier { audiences, trust_domains, store, oidc: HashMap::new(), leeway_s: 5, cache: DashMap::new() }
    }

    /// Adds a SPIRE OIDC Discovery Provider (`issuer` URL) for `trust_domain`.
    pub fn add_oidc(&mut self, trust_domain: &str, issuer: &str) -> Result<(), JwksError> {
        let location = JwksLocation::Discovery { issuer: issuer.to_owned() };
        let remote = RemoteJwks::new(location, Duration::from_secs(300), Duration::from_secs(10))?;
        self.oidc.insert(trust_domain.to_owned(), remote);
        Ok(())
    }

    pub async fn verify(&self, jwt: &str) -> Result<SpiffeIdentity, JwtSvidError> {
        let now = unix_now();
        let mut digest = [0u8; 32];
        digest.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, jwt.as_bytes()).as_ref());
        let revision = self.store.revision();
        if let Some(hit) = self.cache.get(&digest).filter(|hit| hit.1 + self.leeway_s > now && hit.2 == revision) {
            return Ok(hit.0.clone());
        }
        let (identity, exp) = self.verify_uncached(jwt).await?;
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(digest, (identity.clone(), exp, revision));
        Ok(identity)
    }

    async fn verify_uncached(&self, jwt: &str) -> Result<(SpiffeIdentity, u64), JwtSvidError> {
        // 1. Strict header: an asymmetric algorithm, typ JWT/JOSE if present, a kid, no crit.
        let StrictJws { header: raw_header, claims } = strict_jws(jwt).map_err(|e| match e {
            JwsShapeError::Malformed => JwtSvidError::Malformed,
            JwsShapeError::Header | JwsShapeError::Payload => JwtSvidError::Json,
            JwsShapeError::Critical => JwtSvidError::Critical,
        })?;
        let alg_name = raw_header.get("alg").and_then(Value::as_str).unwrap_or_default();
        let alg: Algorithm = alg_name.parse().map_err(|_| JwtSvidError::Algorithm(alg_name.into()))?;
        if !DEFAULT_ALGORITHMS.contains(&alg)
            && !matches!(alg, Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS384 | Algorithm::PS512)
        {
            return Err(JwtSvidError::Algorithm(alg_name.into()));
        }
        if let Some(typ) = raw_header.get("typ") {
            let typ = typ.as_str().unwrap_or_default();
            if !matches!(typ, "JWT" | "JOSE") {
                return Err(JwtSvidError::HeaderType(typ.into()));
            }
        }
        let kid = raw_header.get("kid").and_then(Value::as_str).ok_or(JwtSvidError::NoKid)?;

        // 2. sub names a workload of an accepted trust domain.
        let sub = claims.get("sub").and_then(Value::as_str).ok_or(JwtSvidError::Subject)?;
        let identity = parse_spiffe_id(sub, IdentitySource::JwtSvid).map_err(|_| JwtSvidError::Subject)?;
        let td = identity.trust_domain.to_string();
        if !self.trust_domains.contains(&td) {
            return Err(JwtSvidError::TrustDomain(td));
        }

        // 3. The key: a JWT authority of that trust domain's bundle, else of its OIDC
        //    Discovery Provider (fetched again on an unknown kid, rate limited).
        let unknown = || JwtSvidError::UnknownKey { td: td.clone(), kid: kid.into() };
        let bundled = self.store.load().jwt_bundles.get(&td).and_then(|keys| keys.get(kid)).and_then(decoding_key);
        let key = match (bundled, self.oidc.get(&td)) {
            (Some(key), _) => key,
            (None, None) => return Err(unknown()),
            (None, Some(remote)) => match remote.key(kid).await? {
                Some(key) => key,
                None => remote.refresh_for(kid).await?.ok_or_else(unknown)?,
            },
        };

        // 4. Signature, aud (one of ours) and exp (both required), nbf.
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway_s;
        validation.validate_nbf = true;
        validation.set_audience(&self.audiences);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        decode_agreeing(jwt, &key, &validation, &claims)
            .map_err(|e| e.map_or(JwtSvidError::Json, JwtSvidError::Invalid))?;
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        Ok((identity, exp))
    }
}
