//! Black-box tests of the credentials stage: Keycloak-shaped access tokens bound by
//! DPoP (RFC 9449) to the caller's key, the refusals and their `WWW-Authenticate`
//! challenges, the RFC 9728 resource metadata, nonces, the token cache, the metrics,
//! and the `auth:` section as `check-config` sees it.
//!
//! Tokens and proofs are signed here with aws-lc-rs, so every byte of them is under
//! the test's control (including the malformed and hostile ones).

mod support;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair, RsaSubjectPublicKey,
};
use aws_lc_rs::{digest, hmac};
use data_encoding::BASE64URL_NOPAD;
use http::StatusCode;
use mcp_pep::auth::config::IssuerConfig;
use mcp_pep::config::Config;
use serde_json::{Value, json};
use support::*;

const ISSUER: &str = "https://kc.example.test/realms/agents";
const PUBLIC_URL: &str = "https://mcp.example.test/mcp";
const METADATA_URL: &str = "https://mcp.example.test/.well-known/oauth-protected-resource/mcp";
const CLIENT: &str = "agent-7";
const ES_KID: &str = "kc-es256-1";
const RS_KID: &str = "kc-rs256-1";
const UNAUTHENTICATED: i64 = -32005;

/// Allows everything; a `tools/call` of `whoami` is denied with the policy input's
/// `token` as its one reason, so the test can read what the policy saw.
const WHOAMI_POLICY: &str = r#"package mcp

import rego.v1

default decision := {"allow": true, "reasons": []}

decision := {"allow": false, "reasons": [json.marshal(input.token)]} if {
	input.mcp.tool == "whoami"
}
"#;

// ---------------------------------------------------------------------------------
// Keys, JWS
// ---------------------------------------------------------------------------------

fn b64(bytes: impl AsRef<[u8]>) -> String {
    BASE64URL_NOPAD.encode(bytes.as_ref())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// A fresh `jti` for every proof of this test process.
fn jti() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("jti-{}-{}-{}", std::process::id(), now(), NEXT.fetch_add(1, Ordering::Relaxed))
}

fn sha256_b64(bytes: &[u8]) -> String {
    b64(digest::digest(&digest::SHA256, bytes))
}

/// An ES256 (P-256) key pair.
struct EcKey {
    pair: EcdsaKeyPair,
}

impl EcKey {
    fn generate() -> EcKey {
        EcKey { pair: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key") }
    }

    /// `(x, y)` from the uncompressed SEC1 point `04 || x || y`.
    fn coordinates(&self) -> (String, String) {
        let point = self.pair.public_key().as_ref();
        assert_eq!(point.len(), 65, "uncompressed P-256 point");
        (b64(&point[1..33]), b64(&point[33..]))
    }

    /// The public JWK, as a DPoP proof header carries it.
    fn jwk(&self) -> Value {
        let (x, y) = self.coordinates();
        json!({"kty": "EC", "crv": "P-256", "x": x, "y": y})
    }

    /// RFC 7638: SHA-256 of the required members in lexicographic order, no whitespace.
    fn thumbprint(&self) -> String {
        let (x, y) = self.coordinates();
        sha256_b64(format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#).as_bytes())
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(&SystemRandom::new(), message).expect("ES256 signature").as_ref().to_vec()
    }
}

/// An RS256 key pair (2048 bits) with its public `n` and `e`.
struct RsaKey {
    pair: RsaKeyPair,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl RsaKey {
    fn generate() -> RsaKey {
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key");
        let public: &RsaSubjectPublicKey = pair.public_key();
        let (n, e) = rsa_public_key_der(public.as_ref());
        RsaKey { pair, n, e }
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let mut signature = vec![0u8; self.pair.public_modulus_len()];
        self.pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut signature).expect("RS256 signature");
        signature
    }
}

/// `n` and `e` of a DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`,
/// without the sign octet (a JWK spells them without leading zeros).
fn rsa_public_key_der(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    fn element(der: &[u8], tag: u8) -> (&[u8], &[u8]) {
        assert_eq!(der[0], tag, "DER tag");
        let (len, header) = match der[1] {
            short if short < 0x80 => (usize::from(short), 2),
            long => {
                let octets = usize::from(long & 0x7f);
                (der[2..2 + octets].iter().fold(0usize, |acc, b| acc << 8 | usize::from(*b)), 2 + octets)
            }
        };
        (&der[header..header + len], &der[header + len..])
    }
    let (sequence, _) = element(der, 0x30);
    let (n, rest) = element(sequence, 0x02);
    let (e, _) = element(rest, 0x02);
    let strip = |v: &[u8]| v.iter().skip_while(|b| **b == 0).copied().collect::<Vec<u8>>();
    (strip(n), strip(e))
}

/// Who signs a JWS.
enum Signer<'a> {
    Es(&'a EcKey),
    Rs(&'a RsaKey),
    /// HMAC-SHA256 with these bytes as the secret.
    Hs(&'a [u8]),
    /// `alg: none`: an empty signature.
    Unsigned,
}

/// A compact JWS over exactly these header and payload objects.
fn jws(header: &Value, payload: &Value, signer: Signer<'_>) -> String {
    jws_raw(header, &payload.to_string(), signer)
}

/// A compact JWS whose payload is exactly `payload` (which need not be valid JSON).
fn jws_raw(header: &Value, payload: &str, signer: Signer<'_>) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(payload));
    let signature = match signer {
        Signer::Es(key) => key.sign(input.as_bytes()),
        Signer::Rs(key) => key.sign(input.as_bytes()),
        Signer::Hs(secret) => {
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes()).as_ref().to_vec()
        }
        Signer::Unsigned => Vec::new(),
    };
    format!("{input}.{}", b64(signature))
}

// ---------------------------------------------------------------------------------
// The proxy with an issuer and a client
// ---------------------------------------------------------------------------------

/// A running proxy whose `auth:` trusts one issuer (a static JWKS file), the upstream
/// behind it, the issuer's key and the client's DPoP key.
struct Fixture {
    proxy: TestProxy,
    upstream: TestUpstream,
    issuer: EcKey,
    rsa: Option<RsaKey>,
    client: EcKey,
    _jwks: TempDir,
}

/// How a fixture is set up beyond the defaults.
#[derive(Default)]
struct Setup {
    rsa: bool,
    public_url: bool,
    audiences: Option<Vec<String>>,
}

impl Fixture {
    async fn start() -> Fixture {
        Fixture::start_with(|_| {}).await
    }

    async fn start_with(configure: impl FnOnce(&mut Config)) -> Fixture {
        Fixture::start_setup(Setup { public_url: true, ..Setup::default() }, configure).await
    }

    async fn start_setup(setup: Setup, configure: impl FnOnce(&mut Config)) -> Fixture {
        let issuer = EcKey::generate();
        let rsa = setup.rsa.then(RsaKey::generate);
        let mut keys = vec![{
            let mut jwk = issuer.jwk();
            jwk["kid"] = json!(ES_KID);
            jwk["use"] = json!("sig");
            jwk["alg"] = json!("ES256");
            jwk
        }];
        if let Some(rsa) = &rsa {
            keys.push(
                json!({"kty": "RSA", "kid": RS_KID, "use": "sig", "alg": "RS256", "n": b64(&rsa.n), "e": b64(&rsa.e)}),
            );
        }
        let dir = TempDir::new("jwks");
        let jwks_file = dir.write("jwks.json", &json!({ "keys": keys }).to_string());
        let upstream = TestUpstream::json_ok().await;
        let proxy = TestProxy::builder(upstream.url())
            .policy(WHOAMI_POLICY)
            .configure(|c| {
                c.policy.expose_reasons = true;
                c.auth.issuers =
                    serde_json::from_value(json!([{"issuer": ISSUER, "jwks_file": jwks_file}])).expect("issuer config");
                c.auth.audiences = setup.audiences.unwrap_or_else(|| vec![PUBLIC_URL.into()]);
                if setup.public_url {
                    c.auth.public_url = Some(PUBLIC_URL.into());
                }
                configure(c);
            })
            .start()
            .await;
        Fixture { proxy, upstream, issuer, rsa, client: EcKey::generate(), _jwks: dir }
    }

    /// Keycloak-shaped access-token claims, bound to `self.client`.
    fn claims(&self) -> Value {
        let now = now();
        json!({
            "exp": now + 300,
            "iat": now,
            "jti": jti(),
            "iss": ISSUER,
            "aud": PUBLIC_URL,
            "sub": "5f0c1b7e-1111-4a2b-9c3d-agent7",
            "typ": "DPoP",
            "azp": CLIENT,
            "scope": "openid mcp:tools profile",
            "realm_access": {"roles": ["default-roles-agents", "agent"]},
            "resource_access": {
                CLIENT: {"roles": ["tool-caller"]},
                "account": {"roles": ["view-profile", "agent"]}
            },
            "cnf": {"jkt": self.client.thumbprint()},
            "client_id": CLIENT,
        })
    }

    /// An ES256 token over `claims` with Keycloak's header.
    fn token(&self, claims: &Value) -> String {
        jws(&json!({"alg": "ES256", "typ": "JWT", "kid": ES_KID}), claims, Signer::Es(&self.issuer))
    }

    /// The usual bound token.
    fn bound_token(&self) -> String {
        self.token(&self.claims())
    }

    /// A proof claims object for `token` as the client should write it; tests edit it.
    fn proof_claims(token: Option<&str>) -> Value {
        let mut claims = json!({"jti": jti(), "htm": "POST", "htu": PUBLIC_URL, "iat": now()});
        if let Some(token) = token {
            claims["ath"] = json!(sha256_b64(token.as_bytes()));
        }
        claims
    }

    /// A proof signed by `key` over these claims.
    fn proof_by(key: &EcKey, claims: &Value) -> String {
        jws(&json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk()}), claims, Signer::Es(key))
    }

    /// An honest, fresh proof of `self.client` for `token`.
    fn proof(&self, token: &str) -> String {
        Fixture::proof_by(&self.client, &Fixture::proof_claims(Some(token)))
    }

    /// A proof of `self.client` for `token` with claims edited by `edit`.
    fn proof_edited(&self, token: &str, edit: impl FnOnce(&mut Value)) -> String {
        let mut claims = Fixture::proof_claims(Some(token));
        edit(&mut claims);
        Fixture::proof_by(&self.client, &claims)
    }

    /// A `tools/call echo` with these headers.
    async fn call(&self, headers: &[(&str, &str)]) -> Reply {
        self.proxy.post(tools_call(1, "echo"), headers).await
    }

    /// A `tools/call echo` with `Authorization: DPoP <token>` and `DPoP: <proof>`.
    async fn call_dpop(&self, token: &str, proof: &str) -> Reply {
        let authorization = format!("DPoP {token}");
        self.call(&[("authorization", &authorization), ("dpop", proof)]).await
    }

    /// `token` with a fresh honest proof.
    async fn call_honest(&self, token: &str) -> Reply {
        self.call_dpop(token, &self.proof(token)).await
    }

    async fn rejections(&self, reason: &str) -> f64 {
        rejections(&self.proxy.metrics().await, "credentials", reason)
    }

    /// All `credentials` rejection series, for failure messages.
    async fn rejection_lines(&self) -> String {
        self.proxy
            .metrics()
            .await
            .lines()
            .filter(|l| l.contains("stage=\"credentials\""))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `reply` is a refusal by the credentials stage: `status`, a challenge with `error`
    /// (none: the bare challenge), the JSON-RPC error body, nothing upstream, and the
    /// rejection counted once more under `reason` (`count` in all).
    async fn assert_refused(&self, reply: &Reply, status: StatusCode, error: Option<&str>, reason: &str, count: f64) {
        assert_eq!(reply.status, status, "{}", reply.text());
        let challenge = reply.header("www-authenticate").unwrap_or_else(|| panic!("no WWW-Authenticate: {reply:?}"));
        match error {
            Some(error) => {
                assert!(challenge.starts_with(&format!("DPoP error=\"{error}\", ")), "challenge: {challenge}");
                assert!(challenge.contains("error_description=\""), "challenge: {challenge}");
            }
            None => assert!(!challenge.contains("error="), "challenge: {challenge}"),
        }
        assert!(challenge.contains("algs=\"ES256 PS256 RS256\""), "challenge: {challenge}");
        assert!(challenge.contains(&format!("Bearer resource_metadata=\"{METADATA_URL}\"")), "challenge: {challenge}");
        let body = reply.json();
        assert_eq!(body["jsonrpc"], "2.0", "{body}");
        assert_eq!(body["error"]["code"], UNAUTHENTICATED, "{body}");
        assert!(self.upstream.requests().is_empty(), "a refused request reached the upstream");
        assert_eq!(self.rejections(reason).await, count, "credentials/{reason}:\n{}", self.rejection_lines().await);
    }

    /// A token refusal after `forwarded` requests went through: 401 `invalid_token`, the
    /// upstream saw no more, and `reason` counted once.
    async fn assert_refused_after(&self, reply: &Reply, reason: &str, forwarded: usize) {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("DPoP error=\"invalid_token\""), "challenge: {challenge}");
        assert_eq!(self.upstream.requests().len(), forwarded, "refused request forwarded");
        assert_eq!(self.rejections(reason).await, 1.0, "credentials/{reason}:\n{}", self.rejection_lines().await);
    }

    /// A refusal of the token itself: 401 `invalid_token`, counted under `reason`.
    async fn assert_token_refused(&self, reply: &Reply, reason: &str) {
        self.assert_refused(reply, StatusCode::UNAUTHORIZED, Some("invalid_token"), reason, 1.0).await;
    }

    /// A refusal of the proof: 401 `invalid_dpop_proof`, counted under `reason`.
    async fn assert_proof_refused(&self, reply: &Reply, reason: &str) {
        self.assert_refused(reply, StatusCode::UNAUTHORIZED, Some("invalid_dpop_proof"), reason, 1.0).await;
    }

    /// `reply` was forwarded and answered by the upstream (which saw `n` requests so far).
    async fn assert_forwarded(&self, reply: &Reply, n: usize) -> Vec<Recorded> {
        assert_eq!(reply.status, StatusCode::OK, "{} {:?}", reply.text(), reply.headers);
        assert_eq!(reply.json()["result"], json!({"content": []}), "{}", reply.text());
        let seen = self.upstream.wait_for_requests(n).await;
        assert_eq!(seen.len(), n, "upstream requests");
        seen
    }
}

// ---------------------------------------------------------------------------------
// Honest calls
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn honest_call_is_forwarded_without_the_credentials() {
    let fx = Fixture::start().await;
    let token = fx.bound_token();
    let proof = fx.proof(&token);
    let reply = fx.call_dpop(&token, &proof).await;
    let seen = fx.assert_forwarded(&reply, 1).await;
    let forwarded = &seen[0];
    assert_eq!(forwarded.body, tools_call(1, "echo").as_bytes(), "body changed");
    assert!(forwarded.header("authorization").is_none(), "Authorization reached the upstream: {forwarded:?}");
    assert!(forwarded.header("dpop").is_none(), "DPoP reached the upstream: {forwarded:?}");
    let raw = format!("{:?}", forwarded.headers);
    assert!(!raw.contains(&token) && !raw.contains(&proof), "token or proof forwarded: {raw}");
    assert_eq!(fx.rejections("missing").await, 0.0);
    fx.proxy.stop().await;
}

#[tokio::test]
async fn policy_input_token_has_the_verified_fields() {
    let fx = Fixture::start().await;
    let claims = fx.claims();
    let token = fx.token(&claims);
    let authorization = format!("DPoP {token}");
    let proof = fx.proof(&token);
    let reply = fx.proxy.post(tools_call(9, "whoami"), &[("authorization", &authorization), ("dpop", &proof)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    let reason = body["error"]["data"]["reasons"][0].as_str().unwrap_or_else(|| panic!("no reason: {body}"));
    let seen: Value = serde_json::from_str(reason).expect("input.token as JSON");
    assert_eq!(seen["issuer"], ISSUER, "{seen}");
    assert_eq!(seen["subject"], claims["sub"], "{seen}");
    assert_eq!(seen["client_id"], CLIENT, "{seen}");
    assert_eq!(seen["scopes"], json!(["openid", "mcp:tools", "profile"]), "{seen}");
    let mut roles: Vec<String> = serde_json::from_value(seen["roles"].clone()).expect("roles as strings");
    roles.sort();
    assert_eq!(
        roles,
        ["agent", "default-roles-agents", "tool-caller", "view-profile"],
        "realm + resource roles: {seen}"
    );
    assert_eq!(seen["dpop_jkt"], fx.client.thumbprint(), "{seen}");
    assert_eq!(seen["claims"], claims, "all claims: {seen}");
    assert!(fx.upstream.requests().is_empty(), "denied call forwarded");
    fx.proxy.stop().await;
}

#[tokio::test]
async fn rs256_keycloak_token_is_accepted() {
    let fx = Fixture::start_setup(Setup { rsa: true, public_url: true, ..Setup::default() }, |_| {}).await;
    let rsa = fx.rsa.as_ref().expect("RSA issuer key");
    let token = jws(&json!({"alg": "RS256", "typ": "JWT", "kid": RS_KID}), &fx.claims(), Signer::Rs(rsa));
    let reply = fx.call_honest(&token).await;
    fx.assert_forwarded(&reply, 1).await;
    // The same RSA key with another kid is not that key.
    let token = jws(&json!({"alg": "RS256", "typ": "JWT", "kid": ES_KID}), &fx.claims(), Signer::Rs(rsa));
    let reply = fx.call_honest(&token).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    assert_eq!(fx.upstream.requests().len(), 1);
    fx.proxy.stop().await;
}

#[tokio::test]
async fn several_issuers_keep_their_keys_apart() {
    const OTHER: &str = "https://kc.example.test/realms/partners";
    let other_key = EcKey::generate();
    let dir = TempDir::new("jwks-other");
    let mut jwk = other_key.jwk();
    // The same kid as the first issuer's key: keys are looked up per issuer.
    jwk["kid"] = json!(ES_KID);
    let file = dir.write("jwks.json", &json!({"keys": [jwk]}).to_string());
    let fx = Fixture::start_with(|c| {
        c.auth.issuers.push(IssuerConfig { issuer: OTHER.into(), jwks_uri: None, jwks_file: Some(file) })
    })
    .await;
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": ES_KID});
    let mut partner = fx.claims();
    partner["iss"] = json!(OTHER);
    fx.assert_forwarded(&fx.call_honest(&fx.bound_token()).await, 1).await;
    fx.assert_forwarded(&fx.call_honest(&jws(&header, &partner, Signer::Es(&other_key))).await, 2).await;

    // Each issuer's key signs for that issuer only.
    let reply = fx.call_honest(&jws(&header, &partner, Signer::Es(&fx.issuer))).await;
    fx.assert_refused_after(&reply, "signature", 2).await;
    let reply = fx.call_honest(&jws(&header, &fx.claims(), Signer::Es(&other_key))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    assert_eq!(fx.rejections("signature").await, 2.0, "{}", fx.rejection_lines().await);
    assert_eq!(fx.upstream.requests().len(), 2);

    // The metadata names both authorization servers.
    let doc = get(&fx.proxy.url_for("/.well-known/oauth-protected-resource/mcp")).await.json();
    assert_eq!(doc["authorization_servers"], json!([ISSUER, OTHER]), "{doc}");
    fx.proxy.stop().await;
}

#[tokio::test]
async fn rfc9068_header_typ_at_jwt_is_accepted() {
    let fx = Fixture::start().await;
    let token = jws(&json!({"alg": "ES256", "typ": "at+jwt", "kid": ES_KID}), &fx.claims(), Signer::Es(&fx.issuer));
    let reply = fx.call_honest(&token).await;
    fx.assert_forwarded(&reply, 1).await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn cached_token_is_accepted_again_with_fresh_proofs() {
    let fx = Fixture::start().await;
    let token = fx.bound_token();
    let first = fx.call_honest(&token).await;
    fx.assert_forwarded(&first, 1).await;
    let second = fx.call_honest(&token).await;
    fx.assert_forwarded(&second, 2).await;
    let third = fx.call_honest(&token).await;
    fx.assert_forwarded(&third, 3).await;
    // A cached token is still bound: another key's proof is refused.
    let thief = EcKey::generate();
    let reply = fx.call_dpop(&token, &Fixture::proof_by(&thief, &Fixture::proof_claims(Some(&token)))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    assert_eq!(fx.upstream.requests().len(), 3, "stolen cached token forwarded");
    assert_eq!(fx.rejections("jkt").await, 1.0, "{}", fx.rejection_lines().await);
    fx.proxy.stop().await;
}

#[tokio::test]
async fn authn_duration_is_exported() {
    let fx = Fixture::start().await;
    let token = fx.bound_token();
    fx.assert_forwarded(&fx.call_honest(&token).await, 1).await;
    let refused = fx.call(&[]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let metrics = fx.proxy.metrics().await;
    assert!(metrics.contains("# TYPE mcp_pep_authn_duration_seconds histogram"), "{metrics}");
    let count = metric(&metrics, "mcp_pep_authn_duration_seconds_count", &[]);
    assert!(count.is_some_and(|c| c >= 2.0), "authn observations: {count:?}");
    let sum = metric(&metrics, "mcp_pep_authn_duration_seconds_sum", &[]);
    assert!(sum.is_some_and(|s| s > 0.0), "authn duration sum: {sum:?}");
    fx.proxy.stop().await;
}

// ---------------------------------------------------------------------------------
// No or ambiguous credentials
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn no_credentials_get_the_bare_challenge() {
    let fx = Fixture::start().await;
    let reply = fx.call(&[]).await;
    fx.assert_refused(&reply, StatusCode::UNAUTHORIZED, None, "missing", 1.0).await;
    assert_eq!(
        reply.header("www-authenticate"),
        Some(format!("DPoP algs=\"ES256 PS256 RS256\", Bearer resource_metadata=\"{METADATA_URL}\"").as_str())
    );
    // An unknown scheme is no credentials either.
    let reply = fx.call(&[("authorization", "Basic YWdlbnQ6c2VjcmV0")]).await;
    fx.assert_refused(&reply, StatusCode::UNAUTHORIZED, None, "missing", 2.0).await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn two_authorization_headers_are_invalid_request() {
    let fx = Fixture::start().await;
    let token = fx.bound_token();
    let proof = fx.proof(&token);
    let dpop = format!("DPoP {token}");
    let bearer = format!("Bearer {token}");
    let reply = fx.call(&[("authorization", &dpop), ("authorization", &bearer), ("dpop", &proof)]).await;
    fx.assert_refused(&reply, StatusCode::BAD_REQUEST, Some("invalid_request"), "invalid_request", 1.0).await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn two_dpop_headers_are_invalid_request() {
    let fx = Fixture::start().await;
    let token = fx.bound_token();
    let (a, b) = (fx.proof(&token), fx.proof(&token));
    let authorization = format!("DPoP {token}");
    let reply = fx.call(&[("authorization", &authorization), ("dpop", &a), ("dpop", &b)]).await;
    fx.assert_refused(&reply, StatusCode::BAD_REQUEST, Some("invalid_request"), "multiple_proofs", 1.0).await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn bearer_scheme_with_a_proof_is_invalid_request() {
    let fx = Fixture::start_with(|c| c.auth.dpop = "optional".into()).await;
    let token = fx.bound_token();
    let proof = fx.proof(&token);
    let authorization = format!("Bearer {token}");
    let reply = fx.call(&[("authorization", &authorization), ("dpop", &proof)]).await;
    fx.assert_refused(&reply, StatusCode::BAD_REQUEST, Some("invalid_request"), "invalid_request", 1.0).await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn dpop_scheme_without_proof_is_invalid_dpop_proof() {
    let fx = Fixture::start().await;
    let authorization = format!("DPoP {}", fx.bound_token());
    let reply = fx.call(&[("authorization", &authorization)]).await;
    fx.assert_proof_refused(&reply, "no_proof").await;
    fx.proxy.stop().await;
}

// ---------------------------------------------------------------------------------
// Bad tokens
// ---------------------------------------------------------------------------------

/// Sends `token` with an honest proof for it and expects `invalid_token` / `reason`.
async fn expect_token_refused(fx: &Fixture, token: &str, reason: &str) {
    let reply = fx.call_honest(token).await;
    fx.assert_token_refused(&reply, reason).await;
}

#[tokio::test]
async fn expired_token_is_refused() {
    let fx = Fixture::start().await;
    let mut claims = fx.claims();
    claims["iat"] = json!(now() - 900);
    claims["exp"] = json!(now() - 600);
    expect_token_refused(&fx, &fx.token(&claims), "expired").await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn token_not_yet_valid_is_refused() {
    let fx = Fixture::start().await;
    let mut claims = fx.claims();
    claims["nbf"] = json!(now() + 600);
    expect_token_refused(&fx, &fx.token(&claims), "not_yet_valid").await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn audience_defaults_to_the_public_url() {
    let fx =
        Fixture::start_setup(Setup { public_url: true, audiences: Some(Vec::new()), ..Setup::default() }, |_| {}).await;
    fx.assert_forwarded(&fx.call_honest(&fx.bound_token()).await, 1).await;
    let mut claims = fx.claims();
    claims["aud"] = json!("account");
    let reply = fx.call_honest(&fx.token(&claims)).await;
    fx.assert_refused_after(&reply, "audience", 1).await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn token_without_exp_is_refused() {
    let fx = Fixture::start().await;
    let mut claims = fx.claims();
    claims.as_object_mut().expect("claims").remove("exp");
    expect_token_refused(&fx, &fx.token(&claims), "missing_claim").await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn token_of_another_issuer_is_refused() {
    let fx = Fixture::start().await;
    let mut claims = fx.claims();
    claims["iss"] = json!("https://kc.example.test/realms/other");
    expect_token_refused(&fx, &fx.token(&claims), "issuer").await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn token_for_another_audience_is_refused() {
    let fx = Fixture::start().await;
    let mut claims = fx.claims();
    claims["aud"] = json!(["account", "https://other.example.test/mcp"]);
    expect_token_refused(&fx, &fx.token(&claims), "audience").await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn token_with_unknown_kid_is_refused() {
    let fx = Fixture::start().await;
    let token =
        jws(&json!({"alg": "ES256", "typ": "JWT", "kid": "rotated-away"}), &fx.claims(), Signer::Es(&fx.issuer));
    expect_token_refused(&fx, &token, "unknown_kid").await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn unsigned_alg_none_token_is_refused() {
    let fx = Fixture::start().await;
    let token = jws(&json!({"alg": "none", "typ": "JWT", "kid": ES_KID}), &fx.claims(), Signer::Unsigned);
    assert!(token.ends_with('.'), "an unsecured JWS has an empty signature");
    // `none` is not even an algorithm name to the JWT library: the header is malformed.
    expect_token_refused(&fx, &token, "malformed").await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn hs256_token_keyed_with_the_public_key_is_refused() {
    let fx = Fixture::start().await;
    // The classic confusion: the issuer's public key (as published) used as an HMAC secret.
    let mut published = fx.issuer.jwk();
    published["kid"] = json!(ES_KID);
    let secrets = [published.to_string().into_bytes(), fx.issuer.pair.public_key().as_ref().to_vec()];
    for (i, secret) in secrets.iter().enumerate() {
        let token = jws(&json!({"alg": "HS256", "typ": "JWT", "kid": ES_KID}), &fx.claims(), Signer::Hs(secret));
        let reply = fx.call_honest(&token).await;
        fx.assert_refused(&reply, StatusCode::UNAUTHORIZED, Some("invalid_token"), "algorithm", (i + 1) as f64).await;
    }
    fx.proxy.stop().await;
}

#[tokio::test]
async fn token_with_wrong_header_typ_is_refused() {
    let fx = Fixture::start().await;
    // A JWS the issuer signed for another purpose (here typed as a DPoP proof).
    let token = jws(&json!({"alg": "ES256", "typ": "dpop+jwt", "kid": ES_KID}), &fx.claims(), Signer::Es(&fx.issuer));
    expect_token_refused(&fx, &token, "header_typ").await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn dpop_typed_token_without_cnf_is_refused() {
    let fx = Fixture::start().await;
    let mut claims = fx.claims();
    claims.as_object_mut().expect("claims").remove("cnf");
    assert_eq!(claims["typ"], "DPoP");
    expect_token_refused(&fx, &fx.token(&claims), "unbound_dpop").await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn token_with_bad_signature_is_refused() {
    let fx = Fixture::start().await;
    // Signed by another key under the issuer's kid.
    let forger = EcKey::generate();
    let token = jws(&json!({"alg": "ES256", "typ": "JWT", "kid": ES_KID}), &fx.claims(), Signer::Es(&forger));
    expect_token_refused(&fx, &token, "signature").await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn tampered_token_payload_is_refused() {
    let fx = Fixture::start().await;
    let token = fx.bound_token();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims = fx.claims();
    claims["realm_access"]["roles"] = json!(["admin"]);
    parts[1] = b64(claims.to_string());
    expect_token_refused(&fx, &parts.join("."), "signature").await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn keycloak_id_token_is_refused() {
    let fx = Fixture::start().await;
    // An ID token (Keycloak `typ: ID`) is no access token, whatever its audience.
    let mut claims = fx.claims();
    claims["typ"] = json!("ID");
    expect_token_refused(&fx, &fx.token(&claims), "payload_typ").await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn token_payload_with_duplicate_keys_is_refused() {
    let fx = Fixture::start().await;
    // Signed by the issuer, but readers could disagree on `sub`.
    let claims = fx.claims().to_string();
    let payload = format!("{},\"sub\":\"admin\"}}", claims.trim_end_matches('}'));
    let token = jws_raw(&json!({"alg": "ES256", "typ": "JWT", "kid": ES_KID}), &payload, Signer::Es(&fx.issuer));
    expect_token_refused(&fx, &token, "payload").await;
    fx.proxy.stop().await;
}

/// RFC 7515 §4.1.11: a JWS whose `crit` names an extension the recipient does not
/// understand is invalid (the proof verifier refuses it; the token verifier must too).
/// With `"b64": false` (RFC 7797) the signed payload is not even the one decoded.
#[tokio::test]
async fn token_with_unknown_critical_header_is_refused() {
    let fx = Fixture::start().await;
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": ES_KID, "crit": ["urn:example:must-understand"],
                        "urn:example:must-understand": true});
    let token = jws(&header, &fx.claims(), Signer::Es(&fx.issuer));
    let reply = fx.call_honest(&token).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "token with unknown crit accepted: {}", reply.text());
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("DPoP error=\"invalid_token\""), "challenge: {challenge}");
    assert!(fx.upstream.requests().is_empty(), "token with unknown crit forwarded");
    fx.proxy.stop().await;
}

#[tokio::test]
async fn cached_token_expires_with_its_exp() {
    let fx = Fixture::start_with(|c| c.auth.leeway_s = 0).await;
    let mut claims = fx.claims();
    let exp = now() + 2;
    claims["exp"] = json!(exp);
    let token = fx.token(&claims);
    fx.assert_forwarded(&fx.call_honest(&token).await, 1).await;
    while now() <= exp {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let reply = fx.call_honest(&token).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "expired cached token accepted: {}", reply.text());
    assert_eq!(fx.upstream.requests().len(), 1, "expired cached token forwarded");
    assert_eq!(fx.rejections("expired").await, 1.0, "{}", fx.rejection_lines().await);
    fx.proxy.stop().await;
}

#[tokio::test]
async fn bound_token_presented_as_bearer_is_refused() {
    let fx = Fixture::start().await;
    let authorization = format!("Bearer {}", fx.bound_token());
    let reply = fx.call(&[("authorization", &authorization)]).await;
    fx.assert_token_refused(&reply, "token_binding").await;
    fx.proxy.stop().await;
}

// ---------------------------------------------------------------------------------
// Bad proofs
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn token_used_with_another_key_is_refused() {
    let fx = Fixture::start().await;
    let token = fx.bound_token();
    let thief = EcKey::generate();
    let proof = Fixture::proof_by(&thief, &Fixture::proof_claims(Some(&token)));
    let reply = fx.call_dpop(&token, &proof).await;
    fx.assert_proof_refused(&reply, "jkt").await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn proof_claiming_the_clients_key_but_signed_by_another_is_refused() {
    let fx = Fixture::start().await;
    let token = fx.bound_token();
    let thief = EcKey::generate();
    // The header names the client's public key (so `cnf.jkt` matches); the thief signs.
    let proof = jws(
        &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": fx.client.jwk()}),
        &Fixture::proof_claims(Some(&token)),
        Signer::Es(&thief),
    );
    fx.assert_proof_refused(&fx.call_dpop(&token, &proof).await, "signature").await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn proof_without_ath_is_refused() {
    let fx = Fixture::start().await;
    let token = fx.bound_token();
    let proof = Fixture::proof_by(&fx.client, &Fixture::proof_claims(None));
    fx.assert_proof_refused(&fx.call_dpop(&token, &proof).await, "ath_missing").await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn proof_header_tricks_are_refused() {
    let fx = Fixture::start().await;
    let token = fx.bound_token();
    let claims = || Fixture::proof_claims(Some(&token));
    let jwk = fx.client.jwk();
    let mut private = jwk.clone();
    private["d"] = json!(b64([7u8; 32]));
    let secret = jwk.to_string().into_bytes();
    let cases: Vec<(&str, String, &str)> = vec![
        ("typ JWT", jws(&json!({"typ": "JWT", "alg": "ES256", "jwk": jwk}), &claims(), Signer::Es(&fx.client)), "typ"),
        (
            "alg none, empty signature",
            jws(&json!({"typ": "dpop+jwt", "alg": "none", "jwk": jwk}), &claims(), Signer::Unsigned),
            "malformed",
        ),
        (
            "alg none, some signature",
            jws(&json!({"typ": "dpop+jwt", "alg": "none", "jwk": jwk}), &claims(), Signer::Unsigned) + &b64([0u8; 64]),
            "alg",
        ),
        (
            "HS256 keyed with the public key",
            jws(&json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": jwk}), &claims(), Signer::Hs(&secret)),
            "alg",
        ),
        (
            "private key in jwk",
            jws(&json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private}), &claims(), Signer::Es(&fx.client)),
            "jwk_private",
        ),
        (
            "symmetric jwk",
            jws(
                &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": {"kty": "oct", "k": b64(&secret)}}),
                &claims(),
                Signer::Es(&fx.client),
            ),
            "jwk_symmetric",
        ),
        (
            "no jwk",
            jws(&json!({"typ": "dpop+jwt", "alg": "ES256"}), &claims(), Signer::Es(&fx.client)),
            "missing_claim",
        ),
        (
            "unknown crit",
            jws(
                &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk, "crit": ["exp"]}),
                &claims(),
                Signer::Es(&fx.client),
            ),
            "malformed",
        ),
    ];
    let mut expected = std::collections::HashMap::<&str, f64>::new();
    for (name, proof, reason) in &cases {
        let reply = fx.call_dpop(&token, proof).await;
        *expected.entry(reason).or_default() += 1.0;
        fx.assert_refused(&reply, StatusCode::UNAUTHORIZED, Some("invalid_dpop_proof"), reason, expected[reason]).await;
        assert!(fx.upstream.requests().is_empty(), "{name}: forwarded");
    }
    fx.proxy.stop().await;
}

#[tokio::test]
async fn replayed_proof_is_refused() {
    let fx = Fixture::start().await;
    let token = fx.bound_token();
    let proof = fx.proof(&token);
    let first = fx.call_dpop(&token, &proof).await;
    fx.assert_forwarded(&first, 1).await;
    let again = fx.call_dpop(&token, &proof).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{}", again.text());
    let challenge = again.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("DPoP error=\"invalid_dpop_proof\""), "challenge: {challenge}");
    assert_eq!(fx.upstream.requests().len(), 1, "replayed request forwarded");
    assert_eq!(fx.rejections("replay").await, 1.0, "{}", fx.rejection_lines().await);
    // A new proof with the same jti is the same proof to the replay cache.
    let jti_of = |proof: &str| -> Value {
        let payload = proof.split('.').nth(1).expect("payload");
        serde_json::from_slice::<Value>(&BASE64URL_NOPAD.decode(payload.as_bytes()).expect("base64url"))
            .expect("payload JSON")["jti"]
            .clone()
    };
    let same_jti = fx.proof_edited(&token, |c| c["jti"] = jti_of(&proof));
    let reply = fx.call_dpop(&token, &same_jti).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    assert_eq!(fx.rejections("replay").await, 2.0);
    assert_eq!(fx.upstream.requests().len(), 1);
    fx.proxy.stop().await;
}

#[tokio::test]
async fn proof_for_the_internal_url_is_refused() {
    let fx = Fixture::start().await;
    let token = fx.bound_token();
    let internal = fx.proxy.url();
    let proof = fx.proof_edited(&token, |c| c["htu"] = json!(internal));
    fx.assert_proof_refused(&fx.call_dpop(&token, &proof).await, "htu").await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn proof_htu_is_compared_after_normalisation() {
    let fx = Fixture::start().await;
    let token = fx.bound_token();
    // The same URL spelled otherwise (RFC 3986 §6), and query/fragment ignored (RFC 9449 §4.3).
    let same = [
        "https://MCP.Example.Test/mcp",
        "https://mcp.example.test:443/mcp",
        "HTTPS://mcp.example.test/%6Dcp",
        "https://mcp.example.test/mcp?x=1",
        "https://mcp.example.test/mcp#top",
    ];
    for (i, htu) in same.iter().enumerate() {
        let proof = fx.proof_edited(&token, |c| c["htu"] = json!(htu));
        let reply = fx.call_dpop(&token, &proof).await;
        assert_eq!(reply.status, StatusCode::OK, "{htu}: {}", reply.text());
        fx.upstream.wait_for_requests(i + 1).await;
    }
    let other = [
        "https://mcp.example.test/mcp/",
        "https://mcp.example.test:8443/mcp",
        "http://mcp.example.test/mcp",
        "https://mcp.example.test/MCP",
        "https://evil.example.test/mcp",
        "https://mcp.example.test.evil.test/mcp",
        "https://mcp.example.test/other/../mcp/x",
        "/mcp",
    ];
    for (i, htu) in other.iter().enumerate() {
        let proof = fx.proof_edited(&token, |c| c["htu"] = json!(htu));
        let reply = fx.call_dpop(&token, &proof).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{htu}: {}", reply.text());
        assert_eq!(fx.rejections("htu").await, (i + 1) as f64, "{htu}: {}", fx.rejection_lines().await);
    }
    assert_eq!(fx.upstream.requests().len(), same.len());
    fx.proxy.stop().await;
}

#[tokio::test]
async fn proof_for_another_method_is_refused() {
    let fx = Fixture::start().await;
    let token = fx.bound_token();
    let proof = fx.proof_edited(&token, |c| c["htm"] = json!("GET"));
    fx.assert_proof_refused(&fx.call_dpop(&token, &proof).await, "htm").await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn stale_proof_is_refused() {
    let fx = Fixture::start().await;
    let token = fx.bound_token();
    // Keycloak's window: 10 s lifetime + 15 s skew; a minute is outside it.
    let proof = fx.proof_edited(&token, |c| c["iat"] = json!(now() - 60));
    fx.assert_proof_refused(&fx.call_dpop(&token, &proof).await, "iat_stale").await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn proof_from_the_future_is_refused() {
    let fx = Fixture::start().await;
    let token = fx.bound_token();
    let proof = fx.proof_edited(&token, |c| c["iat"] = json!(now() + 120));
    fx.assert_proof_refused(&fx.call_dpop(&token, &proof).await, "iat_future").await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn proof_for_another_token_is_refused() {
    let fx = Fixture::start().await;
    let token = fx.bound_token();
    let other = fx.bound_token();
    assert_ne!(token, other);
    let proof = fx.proof(&other);
    fx.assert_proof_refused(&fx.call_dpop(&token, &proof).await, "ath").await;
    fx.proxy.stop().await;
}

// ---------------------------------------------------------------------------------
// Modes: optional DPoP, server nonces
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn optional_dpop_accepts_unbound_bearer_but_not_bound_bearer() {
    let fx = Fixture::start_with(|c| c.auth.dpop = "optional".into()).await;
    let mut claims = fx.claims();
    claims["typ"] = json!("Bearer");
    claims.as_object_mut().expect("claims").remove("cnf");
    let unbound = fx.token(&claims);
    let authorization = format!("Bearer {unbound}");
    let reply = fx.call(&[("authorization", &authorization)]).await;
    let seen = fx.assert_forwarded(&reply, 1).await;
    assert!(seen[0].header("authorization").is_none(), "Bearer token forwarded");

    let authorization = format!("Bearer {}", fx.bound_token());
    let reply = fx.call(&[("authorization", &authorization)]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("DPoP error=\"invalid_token\""), "challenge: {challenge}");
    assert!(challenge.contains("Bearer resource_metadata="), "challenge: {challenge}");
    assert_eq!(fx.upstream.requests().len(), 1, "bound token as Bearer forwarded");
    assert_eq!(fx.rejections("token_binding").await, 1.0, "{}", fx.rejection_lines().await);

    // The metadata says DPoP is not required.
    let doc = send(
        http::Request::get(fx.proxy.url_for("/.well-known/oauth-protected-resource/mcp"))
            .body(empty_body())
            .expect("request"),
    )
    .await;
    assert_eq!(doc.json()["dpop_bound_access_tokens_required"], false, "{}", doc.text());
    fx.proxy.stop().await;
}

#[tokio::test]
async fn required_dpop_refuses_unbound_bearer() {
    let fx = Fixture::start().await;
    let mut claims = fx.claims();
    claims["typ"] = json!("Bearer");
    claims.as_object_mut().expect("claims").remove("cnf");
    let authorization = format!("Bearer {}", fx.token(&claims));
    let reply = fx.call(&[("authorization", &authorization)]).await;
    fx.assert_token_refused(&reply, "token_binding").await;
    fx.proxy.stop().await;
}

#[tokio::test]
async fn nonce_mode_demands_then_accepts_the_server_nonce() {
    let fx = Fixture::start_with(|c| c.auth.dpop_nonce = true).await;
    let token = fx.bound_token();
    let reply = fx.call_honest(&token).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("DPoP error=\"use_dpop_nonce\""), "challenge: {challenge}");
    let nonce = reply.header("dpop-nonce").unwrap_or_else(|| panic!("no DPoP-Nonce: {:?}", reply.headers)).to_owned();
    assert!(!nonce.is_empty());
    assert!(fx.upstream.requests().is_empty(), "proof without nonce forwarded");
    assert_eq!(fx.rejections("nonce_missing").await, 1.0, "{}", fx.rejection_lines().await);

    // An invented nonce is answered the same way, with a real one.
    let proof = fx.proof_edited(&token, |c| c["nonce"] = json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    let reply = fx.call_dpop(&token, &proof).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    assert!(reply.header("www-authenticate").unwrap_or_default().starts_with("DPoP error=\"use_dpop_nonce\""));
    assert!(reply.header("dpop-nonce").is_some());
    assert_eq!(fx.rejections("nonce_invalid").await, 1.0, "{}", fx.rejection_lines().await);

    let proof = fx.proof_edited(&token, |c| c["nonce"] = json!(nonce));
    let reply = fx.call_dpop(&token, &proof).await;
    fx.assert_forwarded(&reply, 1).await;
    fx.proxy.stop().await;
}

// ---------------------------------------------------------------------------------
// Protected resource metadata (RFC 9728)
// ---------------------------------------------------------------------------------

async fn get(url: &str) -> Reply {
    send(http::Request::get(url).body(empty_body()).expect("request")).await
}

#[tokio::test]
async fn protected_resource_metadata_is_served_at_both_paths() {
    let fx = Fixture::start().await;
    for path in ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"] {
        let reply = get(&fx.proxy.url_for(path)).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        assert_eq!(reply.header("content-type"), Some("application/json"), "{path}");
        assert!(reply.header("www-authenticate").is_none(), "{path}: metadata needs no credentials");
        let doc = reply.json();
        assert_eq!(doc["resource"], PUBLIC_URL, "{path}: {doc}");
        assert_eq!(doc["authorization_servers"], json!([ISSUER]), "{path}: {doc}");
        assert_eq!(doc["dpop_bound_access_tokens_required"], true, "{path}: {doc}");
        assert_eq!(doc["dpop_signing_alg_values_supported"], json!(["ES256", "PS256", "RS256"]), "{path}: {doc}");
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]), "{path}: {doc}");
    }
    assert!(fx.upstream.requests().is_empty(), "metadata request forwarded");
    // Other well-known paths are not served.
    let reply = get(&fx.proxy.url_for("/.well-known/oauth-protected-resource/other")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text());
    fx.proxy.stop().await;
}

// ---------------------------------------------------------------------------------
// check-config
// ---------------------------------------------------------------------------------

/// `check-config` on a configuration with this `auth:` section (`JWKS` in it is replaced
/// by a JWKS file): exit status and stderr.
fn check_config(auth: &str) -> (bool, String) {
    let dir = TempDir::new("auth-cli");
    let policy = dir.path().join("policy");
    std::fs::create_dir(&policy).expect("policy dir");
    std::fs::write(policy.join("mcp.rego"), ALLOW_EXCEPT_FORBIDDEN).expect("policy");
    let issuer = EcKey::generate();
    let mut jwk = issuer.jwk();
    jwk["kid"] = json!(ES_KID);
    let jwks = dir.write("jwks.json", &json!({"keys": [jwk]}).to_string());
    let yaml = format!(
        "listen: 127.0.0.1:18080\nadmin_listen: 127.0.0.1:19090\nupstream:\n  url: http://127.0.0.1:3000/mcp\npolicy:\n  dir: {}\n{}",
        policy.display(),
        auth.replace("JWKS", &jwks.display().to_string())
    );
    let config = dir.write("config.yaml", &yaml);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-pep"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MCP_PEP_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .env_remove("RUST_LOG")
        .args(["check-config", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .expect("binary runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

const AUTH_OK: &str = "auth:\n  issuers:\n    - issuer: https://kc.example.test/realms/agents\n      jwks_file: JWKS\n  public_url: https://mcp.example.test/mcp\n";

#[test]
fn check_config_accepts_a_good_auth_section() {
    let (ok, output) = check_config(AUTH_OK);
    assert!(ok, "{output}");
}

#[test]
fn check_config_refuses_an_hmac_algorithm() {
    let (ok, output) = check_config(&format!("{AUTH_OK}  algorithms: [RS256, HS256]\n"));
    assert!(!ok, "HS256 accepted: {output}");
    assert!(output.contains("auth.algorithms"), "key not named: {output}");
    assert!(output.contains("HS256"), "value not named: {output}");
}

/// Without `public_url` the `htu` could only come from the request's `Host`, which would
/// accept a proof made for another server: the section is refused.
#[test]
fn check_config_requires_a_public_url() {
    let (ok, output) = check_config(&AUTH_OK.replace("  public_url: https://mcp.example.test/mcp\n", ""));
    assert!(!ok, "auth without public_url accepted: {output}");
    assert!(output.contains("auth.public_url"), "key not named: {output}");
}

#[test]
fn check_config_refuses_an_unknown_dpop_mode() {
    let (ok, output) = check_config(&format!("{AUTH_OK}  dpop: maybe\n"));
    assert!(!ok, "dpop: maybe accepted: {output}");
    assert!(output.contains("auth.dpop"), "key not named: {output}");
    assert!(output.contains("maybe"), "value not named: {output}");
}

// ---------------------------------------------------------------------------------
// Remote keys: OIDC discovery, readiness, the issuer down
// ---------------------------------------------------------------------------------

/// An identity provider on 127.0.0.1 serving discovery and the JWKS it is told to.
async fn identity_provider(jwks: std::sync::Arc<std::sync::Mutex<Value>>) -> TestUpstream {
    let issuer_url = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let url_for_handler = issuer_url.clone();
    let idp = TestUpstream::start(move |req| {
        let jwks = jwks.lock().expect("jwks lock").to_string();
        let issuer = url_for_handler.get().cloned().unwrap_or_default();
        async move {
            let body = match req.uri.path() {
                "/.well-known/openid-configuration" => {
                    json!({"issuer": issuer, "jwks_uri": format!("{issuer}/certs")}).to_string()
                }
                "/certs" => jwks,
                _ => "{}".into(),
            };
            let mut resp = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
            resp.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
            resp.map(|b| http_body_util::BodyExt::boxed(http_body_util::BodyExt::map_err(b, |e| match e {})))
        }
    })
    .await;
    let _ = issuer_url.set(format!("http://{}", idp.addr));
    idp
}

#[tokio::test]
async fn keys_found_by_oidc_discovery_verify_tokens_and_gate_readiness() {
    let jwks = std::sync::Arc::new(std::sync::Mutex::new(json!({"keys": []})));
    let idp = identity_provider(jwks.clone()).await;
    let issuer = format!("http://{}", idp.addr);
    let fx = Fixture::start_with(|c| {
        c.auth.issuers = vec![IssuerConfig { issuer: issuer.clone(), jwks_uri: None, jwks_file: None }];
        c.auth.jwks_min_refresh_s = 0;
    })
    .await;
    // The provider has no keys yet: not ready, and a token cannot be checked (503, no
    // challenge blaming the token).
    assert_eq!(fx.proxy.admin_get("/readyz").await.status, StatusCode::SERVICE_UNAVAILABLE);
    let mut claims = fx.claims();
    claims["iss"] = json!(issuer);
    let token = fx.token(&claims);
    let reply = fx.call_honest(&token).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.text());
    assert!(reply.header("www-authenticate").is_none(), "an outage must not challenge the token");

    // The provider publishes the key: the next request fetches it, readiness follows.
    let mut jwk = fx.issuer.jwk();
    jwk["kid"] = json!(ES_KID);
    *jwks.lock().expect("jwks lock") = json!({"keys": [jwk]});
    fx.assert_forwarded(&fx.call_honest(&token).await, 1).await;
    assert_eq!(fx.proxy.admin_get("/readyz").await.status, StatusCode::OK);
    fx.proxy.stop().await;
    idp.stop();
}

#[tokio::test]
async fn issuer_down_is_503_and_not_ready() {
    // A port nobody listens on: bind, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let issuer = format!("http://127.0.0.1:{port}");
    let fx = Fixture::start_with(|c| {
        c.auth.issuers = vec![IssuerConfig { issuer: issuer.clone(), jwks_uri: None, jwks_file: None }];
    })
    .await;
    let mut claims = fx.claims();
    claims["iss"] = json!(issuer);
    let reply = fx.call_honest(&fx.token(&claims)).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.text());
    assert!(reply.header("www-authenticate").is_none());
    assert!(fx.upstream.requests().is_empty());
    assert_eq!(fx.proxy.admin_get("/readyz").await.status, StatusCode::SERVICE_UNAVAILABLE);
    fx.proxy.stop().await;
}

/// A fixture whose issuer publishes its keys by OIDC discovery (`jwks` is what it
/// serves), the issuer's key published, and one token verified (and so cached).
struct RemoteKeys {
    fx: Fixture,
    idp: TestUpstream,
    jwks: std::sync::Arc<std::sync::Mutex<Value>>,
    claims: Value,
    token: String,
}

impl RemoteKeys {
    async fn start(refresh_s: u64) -> RemoteKeys {
        let jwks = std::sync::Arc::new(std::sync::Mutex::new(json!({"keys": []})));
        let idp = identity_provider(jwks.clone()).await;
        let issuer = format!("http://{}", idp.addr);
        let fx = Fixture::start_with(|c| {
            c.auth.issuers = vec![IssuerConfig { issuer: issuer.clone(), jwks_uri: None, jwks_file: None }];
            c.auth.jwks_min_refresh_s = 0;
            c.auth.jwks_refresh_s = refresh_s;
        })
        .await;
        let mut claims = fx.claims();
        claims["iss"] = json!(issuer);
        let mut jwk = fx.issuer.jwk();
        jwk["kid"] = json!(ES_KID);
        *jwks.lock().expect("jwks lock") = json!({"keys": [jwk]});
        let token = fx.token(&claims);
        fx.assert_forwarded(&fx.call_honest(&token).await, 1).await;
        RemoteKeys { fx, idp, jwks, claims, token }
    }

    /// The issuer replaces its key with a new one under the kid `rotated-2`.
    fn rotate(&self) -> EcKey {
        let new_key = EcKey::generate();
        let mut new_jwk = new_key.jwk();
        new_jwk["kid"] = json!("rotated-2");
        *self.jwks.lock().expect("jwks lock") = json!({"keys": [new_jwk]});
        new_key
    }
}

#[tokio::test]
async fn jwks_rotation_is_followed_without_a_restart() {
    let keys = RemoteKeys::start(300).await;
    let fx = &keys.fx;

    // The issuer rotates: a new key under a new kid, the old one withdrawn.
    let new_key = keys.rotate();
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": "rotated-2"});
    let new_token = jws(&header, &keys.claims, Signer::Es(&new_key));
    fx.assert_forwarded(&fx.call_honest(&new_token).await, 2).await;

    // A token under the withdrawn kid is refused once its verification is not cached.
    let mut fresh_claims = keys.claims.clone();
    fresh_claims["jti"] = json!("not-cached");
    let reply = fx.call_honest(&fx.token(&fresh_claims)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    assert!(reply.header("www-authenticate").is_some_and(|h| h.contains("invalid_token")));
    // The old token itself was verified before the rotation: the withdrawn key ends its
    // cached verification too.
    let reply = fx.call_honest(&keys.token).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    assert_eq!(fx.upstream.requests().len(), 2);
    keys.fx.proxy.stop().await;
    keys.idp.stop();
}

#[tokio::test]
async fn a_withdrawn_key_ends_cached_tokens_without_other_traffic() {
    let keys = RemoteKeys::start(1).await;
    // The issuer withdraws the key; only the cached token is used from now on. The
    // periodic refresh (every few seconds) sees the withdrawal.
    keys.rotate();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let reply = keys.fx.call_honest(&keys.token).await;
        if reply.status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "a cached token outlived its withdrawn key");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    keys.fx.proxy.stop().await;
    keys.idp.stop();
}

#[tokio::test]
async fn replay_cache_size_is_exported() {
    let fx = Fixture::start().await;
    let token = fx.bound_token();
    fx.assert_forwarded(&fx.call_honest(&token).await, 1).await;
    fx.assert_forwarded(&fx.call_honest(&token).await, 2).await;
    // The gauge is refreshed every few seconds by the sweeper.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(12);
    loop {
        let metrics = fx.proxy.metrics().await;
        let value = metrics
            .lines()
            .find_map(|l| l.strip_prefix("mcp_pep_dpop_replay_entries "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if value == Some(2.0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "replay gauge never showed 2: {value:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    fx.proxy.stop().await;
}
