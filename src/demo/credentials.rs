//! The credentials part of the demo: an in-process issuer mints a DPoP-bound access
//! token (Keycloak-shaped, ES256), the agent signs a fresh proof per request with its own
//! key, and a sidecar with `auth` on checks both. Real crypto, no network.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use bytes::Bytes;
use data_encoding::BASE64URL_NOPAD;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
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

/// Sends one JSON-RPC request with the given credentials; returns the status, the
/// session id the server gave (for initialize) and a summary.
pub async fn call(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    session: Option<&str>,
    body: &Value,
    token: &str,
    proof: &str,
) -> anyhow::Result<(u16, Option<String>, String)> {
    let mut req = Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof);
    if let Some(session) = session {
        req = req.header("mcp-session-id", session);
    }
    let resp = client.request(req.body(Full::new(Bytes::from(body.to_string())))?).await?;
    let status = resp.status().as_u16();
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (challenge, session) = (header("www-authenticate"), header("mcp-session-id"));
    let answer = resp.into_body().collect().await?.to_bytes();
    let summary = match challenge {
        Some(challenge) => challenge.split(", algs").next().unwrap_or_default().to_owned(),
        None => {
            let v: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
            v["result"]["content"][0]["text"].as_str().unwrap_or_default().to_owned()
        }
    };
    Ok((status, session, summary))
}
