//! The demo's Keycloak stand-in: an in-process issuer mints DPoP-bound access tokens
//! (Keycloak-shaped, ES256, `azp` = the agent's SPIFFE ID), and each agent signs a fresh
//! proof per request with its own key. Real crypto, no network.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use data_encoding::BASE64URL_NOPAD;
use serde_json::{Value, json};

use crate::auth::dpop::access_token_hash;
use crate::auth::jwk::PublicJwk;

pub const ISSUER: &str = "https://issuer.demo.local/realms/agents";
const KID: &str = "demo-issuer-1";

/// A P-256 key that signs compact JWS (ES256).
pub struct SigningKey {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl SigningKey {
    pub fn generate() -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("key generation failed"))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| anyhow::anyhow!("key parsing failed"))?;
        Ok(SigningKey { pair, rng })
    }

    /// The public key as a JWK (the uncompressed point split into x and y).
    pub fn jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": BASE64URL_NOPAD.encode(&point[1..33]),
            "y": BASE64URL_NOPAD.encode(&point[33..65]),
        })
    }

    pub fn thumbprint(&self) -> anyhow::Result<String> {
        Ok(PublicJwk::from_json(&self.jwk()).map_err(|e| anyhow::anyhow!("{e}"))?.thumbprint())
    }

    pub fn sign(&self, header: &Value, payload: &Value) -> anyhow::Result<String> {
        let input = format!(
            "{}.{}",
            BASE64URL_NOPAD.encode(header.to_string().as_bytes()),
            BASE64URL_NOPAD.encode(payload.to_string().as_bytes())
        );
        let sig = self.pair.sign(&self.rng, input.as_bytes()).map_err(|_| anyhow::anyhow!("signing failed"))?;
        Ok(format!("{input}.{}", BASE64URL_NOPAD.encode(sig.as_ref())))
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The in-process issuer: its JWKS, and Keycloak-shaped DPoP-bound tokens.
pub struct DemoIssuer {
    key: SigningKey,
}

impl DemoIssuer {
    pub fn new() -> anyhow::Result<Self> {
        Ok(DemoIssuer { key: SigningKey::generate()? })
    }

    pub fn jwks(&self) -> Value {
        let mut jwk = self.key.jwk();
        jwk["kid"] = json!(KID);
        jwk["alg"] = json!("ES256");
        jwk["use"] = json!("sig");
        json!({"keys": [jwk]})
    }

    /// An access token for `audience`, bound to the key with thumbprint `jkt`.
    pub fn token(&self, audience: &str, client: &str, jkt: &str) -> anyhow::Result<String> {
        let now = now();
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": KID});
        let payload = json!({
            "iss": ISSUER, "aud": audience, "sub": format!("service-account-{client}"), "azp": client,
            "iat": now, "exp": now + 300, "typ": "DPoP", "cnf": {"jkt": jkt},
            "scope": "mcp:tools", "realm_access": {"roles": ["agent"]},
        });
        self.key.sign(&header, &payload)
    }
}

/// A fresh DPoP proof for one request.
pub fn proof(key: &SigningKey, method: &str, htu: &str, token: &str) -> anyhow::Result<String> {
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk()});
    let payload = json!({
        "jti": uuid::Uuid::new_v4().to_string(), "htm": method, "htu": htu, "iat": now(),
        "ath": access_token_hash(token),
    });
    key.sign(&header, &payload)
}
