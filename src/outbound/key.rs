//! The sidecar's own DPoP key: P-256, generated in memory at start, never written
//! anywhere; every proof it signs is fresh (new `jti`, current `iat`).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use data_encoding::BASE64URL_NOPAD;
use serde_json::{Value, json};

use super::OutboundError;
use crate::auth::dpop::access_token_hash;
use crate::auth::jwk::PublicJwk;

pub struct DpopKey {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
    jwk: Value,
    thumbprint: String,
}

/// Never prints the key.
impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey").field("jkt", &self.thumbprint).finish_non_exhaustive()
    }
}

impl DpopKey {
    pub fn generate() -> Result<Self, OutboundError> {
        let broken = |what: &str| OutboundError::Key(what.to_owned());
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(|_| broken("generation"))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| broken("parsing"))?;
        // The uncompressed point, split into x and y.
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": BASE64URL_NOPAD.encode(&point[1..33]),
            "y": BASE64URL_NOPAD.encode(&point[33..65]),
        });
        let thumbprint = PublicJwk::from_json(&jwk).map_err(|e| broken(&e.to_string()))?.thumbprint();
        Ok(DpopKey { pair, rng, jwk, thumbprint })
    }

    /// RFC 7638 thumbprint: what a token bound to this key carries as `cnf.jkt`.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A proof for one request (RFC 9449 §4.2): `htm`, `htu` (no query or fragment),
    /// `iat`, a unique `jti`, `ath` when a token goes with it, the server's nonce if any.
    pub fn proof(
        &self,
        htm: &str,
        htu: &str,
        token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<String, OutboundError> {
        let iat = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk});
        let mut payload = json!({"jti": uuid::Uuid::new_v4().to_string(), "htm": htm, "htu": htu, "iat": iat});
        if let Some(token) = token {
            payload["ath"] = json!(access_token_hash(token));
        }
        if let Some(nonce) = nonce {
            payload["nonce"] = json!(nonce);
        }
        let input = format!(
            "{}.{}",
            BASE64URL_NOPAD.encode(header.to_string().as_bytes()),
            BASE64URL_NOPAD.encode(payload.to_string().as_bytes())
        );
        let signature =
            self.pair.sign(&self.rng, input.as_bytes()).map_err(|_| OutboundError::Key("signing".into()))?;
        Ok(format!("{input}.{}", BASE64URL_NOPAD.encode(signature.as_ref())))
    }
}
