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
        Ok(Self::generate_pkcs8()?.0)
    }

    /// A new key and its PKCS#8 document, for a key that must outlive the process
    /// (`mcp-pep-load credentials` writes it; a later run loads it with `from_pkcs8`).
    pub fn generate_pkcs8() -> anyhow::Result<(Self, Vec<u8>)> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("key generation failed"))?;
        Ok((Self::from_pkcs8(pkcs8.as_ref())?, pkcs8.as_ref().to_vec()))
    }

    pub fn from_pkcs8(der: &[u8]) -> anyhow::Result<Self> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|_| anyhow::anyhow!("not a P-256 PKCS#8 key"))?;
        Ok(SigningKey { pair, rng: SystemRandom::new() })
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

/// The demo's SPIRE JWT authority: signs the agents' JWT-SVIDs.
pub struct JwtAuthority {
    key: SigningKey,
}

impl JwtAuthority {
    pub fn new() -> anyhow::Result<Self> {
        Ok(JwtAuthority { key: SigningKey::generate()? })
    }

    /// A JWT-SVID for `spiffe_id`, audience the issuer (what Keycloak requires), 5 minutes.
    pub fn jwt_svid(&self, spiffe_id: &str) -> anyhow::Result<String> {
        let now = now();
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": "demo-spire-jwt"});
        let payload = json!({"sub": spiffe_id, "aud": [ISSUER], "iat": now, "exp": now + 300});
        self.key.sign(&header, &payload)
    }

    /// Keycloak's checks of a `jwt-spiffe` assertion: signature by this authority,
    /// audience exactly the realm, issued within 300 s; the SPIFFE ID it names.
    fn check(&self, assertion: &str) -> Result<String, &'static str> {
        let (input, signature) = assertion.rsplit_once('.').ok_or("not a JWS")?;
        let signature = BASE64URL_NOPAD.decode(signature.as_bytes()).map_err(|_| "bad signature encoding")?;
        let public = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            self.key.pair.public_key().as_ref().to_vec(),
        );
        public.verify(input.as_bytes(), &signature).map_err(|_| "signature not by the trust domain's JWT authority")?;
        let payload = input.split('.').nth(1).ok_or("no payload")?;
        let claims: Value = BASE64URL_NOPAD
            .decode(payload.as_bytes())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("payload is not JSON")?;
        if claims["aud"] != json!([ISSUER]) && claims["aud"] != json!(ISSUER) {
            return Err("audience is not the realm");
        }
        if claims["iat"].as_u64().is_none_or(|iat| now().saturating_sub(iat) > 300) {
            return Err("assertion issued more than 300 s ago");
        }
        claims["sub"].as_str().filter(|s| s.starts_with("spiffe://")).map(str::to_owned).ok_or("sub is not a SPIFFE ID")
    }
}

/// The Keycloak stand-in's token endpoint, in process: `client_credentials` with a
/// `jwt-spiffe` assertion and a DPoP proof → a token bound to the proof's key, `azp` =
/// the SPIFFE ID. Prints where each credential came from.
pub async fn serve_token_endpoint(
    listener: tokio::net::TcpListener,
    issuer: std::sync::Arc<DemoIssuer>,
    authority: std::sync::Arc<JwtAuthority>,
    audience: &'static str,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use http::{Request, StatusCode};
    use http_body_util::BodyExt;
    let Ok(addr) = listener.local_addr() else { return };
    let endpoint = format!("http://{addr}/realms/agents/protocol/openid-connect/token");
    let verifier = match crate::auth::dpop::DpopVerifier::new(crate::auth::dpop::DpopConfig::default()) {
        Ok(v) => std::sync::Arc::new(v),
        Err(_) => return,
    };
    let service = tower::service_fn(move |req: Request<crate::body::Body>| {
        let (issuer, authority, verifier, endpoint) =
            (issuer.clone(), authority.clone(), verifier.clone(), endpoint.clone());
        async move {
            let refuse = |error: &str, why: &str| {
                println!("  issuer       refused a token request: {error} ({why})");
                crate::body::json_response(StatusCode::BAD_REQUEST, &json!({"error": error, "error_description": why}))
            };
            let proof = req.headers().get("dpop").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let form: std::collections::HashMap<String, String> =
                url::form_urlencoded::parse(&body).into_owned().collect();
            let answer = if form.get("grant_type").map(String::as_str) != Some("client_credentials")
                || form.get("client_assertion_type").map(String::as_str)
                    != Some("urn:ietf:params:oauth:client-assertion-type:jwt-spiffe")
            {
                refuse("invalid_request", "client_credentials with a jwt-spiffe assertion expected")
            } else {
                match (authority.check(form.get("client_assertion").map_or("", String::as_str)), proof) {
                    (Err(why), _) => refuse("invalid_client", why),
                    (Ok(_), None) => refuse("invalid_request", "a DPoP proof is required"),
                    (Ok(spiffe_id), Some(proof)) => {
                        match verifier.verify(&proof, "POST", &endpoint, None, None, SystemTime::now()) {
                            Err(e) => refuse("invalid_dpop_proof", &e.to_string()),
                            Ok(proof) => match issuer.token(audience, &spiffe_id, proof.jkt()) {
                                Err(e) => refuse("server_error", &e.to_string()),
                                Ok(token) => {
                                    println!(
                                        "  issuer       JWT-SVID of {spiffe_id} accepted; DPoP token bound to jkt {}, expires in 300 s",
                                        proof.jkt()
                                    );
                                    crate::body::json_response(
                                        StatusCode::OK,
                                        &json!({"access_token": token, "token_type": "DPoP", "expires_in": 300}),
                                    )
                                }
                            },
                        }
                    }
                }
            };
            Ok::<_, std::convert::Infallible>(answer)
        }
    });
    crate::listener::serve(listener, service, crate::listener::ListenerOptions::default(), None, shutdown).await;
}
