//! Tokens and DPoP proofs signed by the tests themselves (aws-lc-rs), so every byte of
//! them, honest or hostile, is under the test's control. Shared by the test binaries
//! that need a Keycloak-shaped token and its proofs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use aws_lc_rs::{digest, hmac};
use data_encoding::BASE64URL_NOPAD;
use serde_json::{Value, json};

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    BASE64URL_NOPAD.encode(bytes.as_ref())
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// A fresh `jti` for every proof of this test process.
pub fn jti() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("jti-{}-{}-{}", std::process::id(), now(), NEXT.fetch_add(1, Ordering::Relaxed))
}

pub fn sha256_b64(bytes: &[u8]) -> String {
    b64(digest::digest(&digest::SHA256, bytes))
}

/// An ES256 (P-256) key pair.
pub struct EcKey(EcdsaKeyPair);

impl EcKey {
    pub fn generate() -> EcKey {
        EcKey(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key"))
    }

    /// `(x, y)` from the uncompressed SEC1 point `04 || x || y`.
    pub fn coordinates(&self) -> (String, String) {
        let point = self.0.public_key().as_ref();
        assert_eq!(point.len(), 65, "uncompressed P-256 point");
        (b64(&point[1..33]), b64(&point[33..]))
    }

    /// The public JWK, as a DPoP proof header carries it.
    pub fn jwk(&self) -> Value {
        let (x, y) = self.coordinates();
        json!({"kty": "EC", "crv": "P-256", "x": x, "y": y})
    }

    /// RFC 7638: SHA-256 of the required members in lexicographic order, no whitespace.
    pub fn thumbprint(&self) -> String {
        let (x, y) = self.coordinates();
        sha256_b64(format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#).as_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0.sign(&SystemRandom::new(), message).expect("ES256 signature").as_ref().to_vec()
    }

    /// An ES256 compact JWS over these header and payload objects.
    pub fn jws(&self, header: &Value, payload: &Value) -> String {
        jws(header, &payload.to_string(), Signer::Es(self))
    }
}

/// Who signs a JWS.
pub enum Signer<'a> {
    Es(&'a EcKey),
    /// HMAC-SHA256 with these bytes as the secret.
    Hs(&'a [u8]),
    /// `alg: none`: an empty signature.
    Unsigned,
}

/// A compact JWS whose payload is exactly `payload` (which need not be valid JSON).
pub fn jws(header: &Value, payload: &str, signer: Signer<'_>) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(payload));
    let signature = match signer {
        Signer::Es(key) => key.sign(input.as_bytes()),
        Signer::Hs(secret) => {
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes()).as_ref().to_vec()
        }
        Signer::Unsigned => Vec::new(),
    };
    format!("{input}.{}", b64(signature))
}

/// Keycloak-shaped access-token claims for `subject`, bound (`cnf.jkt`) to `key`.
pub fn token_claims(issuer: &str, audience: &str, subject: &str, key: &EcKey) -> Value {
    let now = now();
    json!({
        "iss": issuer, "aud": audience, "sub": subject, "azp": "agent", "typ": "DPoP",
        "iat": now, "exp": now + 600, "jti": jti(), "cnf": {"jkt": key.thumbprint()},
        "scope": "openid mcp:tools",
    })
}

/// The header Keycloak writes on an ES256 access token.
pub fn token_header(kid: &str) -> Value {
    json!({"alg": "ES256", "typ": "JWT", "kid": kid})
}

/// Honest proof claims for a request to `htu` with `method`, for `token` (`ath`).
pub fn proof_claims(method: &str, htu: &str, token: Option<&str>) -> Value {
    let mut claims = json!({"jti": jti(), "htm": method, "htu": htu, "iat": now()});
    if let Some(token) = token {
        claims["ath"] = json!(sha256_b64(token.as_bytes()));
    }
    claims
}

/// The header of an honest proof by `key`.
pub fn proof_header(key: &EcKey) -> Value {
    json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk()})
}
