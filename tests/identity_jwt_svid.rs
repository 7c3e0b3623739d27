//! JWT-SVIDs as an inbound credential: validated against the trust domain's JWT bundle
//! (a SPIFFE bundle file: `use: jwt-svid` keys only), `aud` and `exp` required; every
//! refused JWT-SVID is a case of its own, counted by reason.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use mcp_pep::demo::credentials::SigningKey;
use serde_json::{Value, json};
use support::tls::{TD, TRUSTED};
use support::{TempDir, TestProxy, TestUpstream, rejections};

const HEADER: &str = "x-spiffe-jwt-svid";
const AUDIENCE: &str = "spiffe://mcp-identity.local/ns/mcp-tools/sa/mcp-pep";
const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
const KID: &str = "jwt-authority-1";
/// A key of the same bundle published for X.509-SVIDs only.
const X509_KID: &str = "x509-authority-1";

/// Allows the trusted agent when a JWT-SVID proved it; says who was seen otherwise.
const JWT_SVID_ONLY: &str = r#"package mcp
import rego.v1
decision := {"allow": true, "reasons": []} if {
    input.identity.source == "jwt-svid"
    input.identity.spiffe_id == "spiffe://mcp-identity.local/ns/mcp-agents/sa/trusted-agent"
} else := {"allow": false, "reasons": [sprintf("seen %v %v", [input.identity.spiffe_id, input.identity.source])]}
"#;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

struct Fixture {
    proxy: TestProxy,
    upstream: TestUpstream,
    authority: SigningKey,
    x509_authority: SigningKey,
    _dir: TempDir,
}

impl Fixture {
    async fn start() -> Fixture {
        let authority = SigningKey::generate().unwrap();
        let x509_authority = SigningKey::generate().unwrap();
        let mut jwt_key = authority.jwk();
        jwt_key["kid"] = json!(KID);
        jwt_key["use"] = json!("jwt-svid");
        let mut x509_key = x509_authority.jwk();
        x509_key["kid"] = json!(X509_KID);
        x509_key["use"] = json!("x509-svid");
        // The SPIFFE bundle format: one document, both kinds of authority.
        let bundle = json!({"keys": [jwt_key, x509_key], "spiffe_sequence": 1});
        let evil = SigningKey::generate().unwrap();
        let mut evil_key = evil.jwk();
        evil_key["kid"] = json!(KID);
        evil_key["use"] = json!("jwt-svid");
        let dir = TempDir::new("jwt-bundle");
        let file = dir.write("bundle.json", &bundle.to_string());
        let evil_file = dir.write("evil.json", &json!({"keys": [evil_key]}).to_string());
        let upstream = TestUpstream::json_ok().await;
        let proxy = TestProxy::builder(upstream.url())
            .policy(JWT_SVID_ONLY)
            .configure(|c| {
                c.policy.expose_reasons = true;
                c.identity.source = "files".into();
                c.identity.files.jwt_bundles.insert(TD.into(), file);
                // Installed, but not an accepted trust domain.
                c.identity.files.jwt_bundles.insert("evil.example".into(), evil_file);
                c.identity.trust_domains = vec![TD.into()];
                c.identity.jwt_svid.header = Some(HEADER.into());
                c.identity.jwt_svid.audiences = vec![AUDIENCE.into()];
                c.identity.jwt_svid.required = true;
                c.identity.files.poll_interval_ms = 50;
            })
            .start()
            .await;
        Fixture { proxy, upstream, authority, x509_authority, _dir: dir }
    }

    fn claims() -> Value {
        json!({"sub": TRUSTED, "aud": [AUDIENCE], "exp": now() + 300, "iat": now()})
    }

    fn svid(&self, claims: &Value) -> String {
        self.authority.sign(&json!({"alg": "ES256", "typ": "JWT", "kid": KID}), claims).unwrap()
    }

    async fn call(&self, jwt: &str) -> support::Reply {
        self.proxy.post(CALL, &[(HEADER, jwt)]).await
    }

    /// `jwt` is refused with 401 and counted under `reason`.
    async fn assert_refused(&self, jwt: &str, reason: &str) {
        let reply = self.call(jwt).await;
        assert_eq!(reply.status, 401, "{reason}: {}", reply.text());
        assert_eq!(reply.json()["error"]["code"], -32005, "{}", reply.text());
        assert_eq!(reply.header("www-authenticate"), None, "no OAuth challenge for a JWT-SVID");
        assert_eq!(rejections(&self.proxy.metrics().await, "credentials", reason), 1.0, "{reason}");
        assert!(self.upstream.requests().is_empty());
    }
}

#[tokio::test]
async fn a_valid_jwt_svid_is_the_callers_identity() {
    let f = Fixture::start().await;
    let reply = f.call(&f.svid(&Fixture::claims())).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.json().get("result").is_some(), "{}", reply.text());
    let seen = f.upstream.wait_for_requests(1).await;
    assert_eq!(seen[0].header(HEADER), None, "the JWT-SVID is not passed upstream");

    // Another workload's JWT-SVID is that workload.
    let mut claims = Fixture::claims();
    claims["sub"] = json!("spiffe://mcp-identity.local/ns/mcp-agents/sa/untrusted-agent");
    let reply = f.call(&f.svid(&claims)).await;
    assert!(reply.text().contains("seen spiffe://mcp-identity.local/ns/mcp-agents/sa/untrusted-agent jwt-svid"));
    f.proxy.stop().await;
}

#[tokio::test]
async fn a_missing_jwt_svid_is_refused_when_required() {
    let f = Fixture::start().await;
    let reply = f.proxy.post(CALL, &[]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(rejections(&f.proxy.metrics().await, "credentials", "jwt_svid_missing"), 1.0);
    f.proxy.stop().await;
}

#[tokio::test]
async fn a_jwt_svid_without_kid_is_refused() {
    let f = Fixture::start().await;
    let jwt = f.authority.sign(&json!({"alg": "ES256", "typ": "JWT"}), &Fixture::claims()).unwrap();
    f.assert_refused(&jwt, "jwt_svid_no_kid").await;
}

#[tokio::test]
async fn a_jwt_svid_for_another_audience_is_refused() {
    let f = Fixture::start().await;
    let mut claims = Fixture::claims();
    claims["aud"] = json!(["spiffe://mcp-identity.local/ns/other/sa/service"]);
    f.assert_refused(&f.svid(&claims), "jwt_svid_audience").await;
}

#[tokio::test]
async fn a_jwt_svid_without_aud_is_refused() {
    let f = Fixture::start().await;
    let mut claims = Fixture::claims();
    claims.as_object_mut().unwrap().remove("aud");
    f.assert_refused(&f.svid(&claims), "jwt_svid_missing_claim").await;
}

#[tokio::test]
async fn an_expired_jwt_svid_is_refused() {
    let f = Fixture::start().await;
    let mut claims = Fixture::claims();
    claims["exp"] = json!(now() - 60);
    f.assert_refused(&f.svid(&claims), "jwt_svid_expired").await;
}

#[tokio::test]
async fn a_jwt_svid_without_exp_is_refused() {
    let f = Fixture::start().await;
    let mut claims = Fixture::claims();
    claims.as_object_mut().unwrap().remove("exp");
    f.assert_refused(&f.svid(&claims), "jwt_svid_missing_claim").await;
}

#[tokio::test]
async fn an_hs256_jwt_svid_is_refused() {
    let f = Fixture::start().await;
    // HMAC keyed with the public key's bytes: the classic algorithm confusion.
    let header =
        data_encoding::BASE64URL_NOPAD.encode(json!({"alg": "HS256", "typ": "JWT", "kid": KID}).to_string().as_bytes());
    let payload = data_encoding::BASE64URL_NOPAD.encode(Fixture::claims().to_string().as_bytes());
    let input = format!("{header}.{payload}");
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, f.authority.jwk().to_string().as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    let jwt = format!("{input}.{}", data_encoding::BASE64URL_NOPAD.encode(tag.as_ref()));
    f.assert_refused(&jwt, "jwt_svid_algorithm").await;
}

#[tokio::test]
async fn a_jwt_svid_of_a_foreign_trust_domain_is_refused() {
    let f = Fixture::start().await;
    let mut claims = Fixture::claims();
    claims["sub"] = json!("spiffe://evil.example/ns/mcp-agents/sa/trusted-agent");
    f.assert_refused(&f.svid(&claims), "jwt_svid_trust_domain").await;
}

#[tokio::test]
async fn a_jwt_svid_signed_by_an_x509_svid_authority_is_refused() {
    let f = Fixture::start().await;
    let jwt =
        f.x509_authority.sign(&json!({"alg": "ES256", "typ": "JWT", "kid": X509_KID}), &Fixture::claims()).unwrap();
    f.assert_refused(&jwt, "jwt_svid_unknown_kid").await;
}

#[tokio::test]
async fn a_jwt_svid_signed_by_another_key_under_a_known_kid_is_refused() {
    let f = Fixture::start().await;
    let other = SigningKey::generate().unwrap();
    let jwt = other.sign(&json!({"alg": "ES256", "typ": "JWT", "kid": KID}), &Fixture::claims()).unwrap();
    f.assert_refused(&jwt, "jwt_svid_signature").await;
}

#[tokio::test]
async fn a_jwt_svid_whose_sub_is_not_a_spiffe_id_is_refused() {
    let f = Fixture::start().await;
    let mut claims = Fixture::claims();
    claims["sub"] = json!("trusted-agent");
    f.assert_refused(&f.svid(&claims), "jwt_svid_subject").await;
}

#[tokio::test]
async fn a_jwt_svid_with_a_critical_header_is_refused() {
    let f = Fixture::start().await;
    let jwt = f
        .authority
        .sign(&json!({"alg": "ES256", "typ": "JWT", "kid": KID, "crit": ["exp"]}), &Fixture::claims())
        .unwrap();
    f.assert_refused(&jwt, "jwt_svid_crit").await;
}

/// A SPIRE OIDC Discovery Provider on 127.0.0.1: discovery document and JWKS.
async fn oidc_discovery_provider(jwks: Value) -> TestUpstream {
    let issuer = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let for_handler = issuer.clone();
    let provider = TestUpstream::start(move |req| {
        let issuer = for_handler.get().cloned().unwrap_or_default();
        let body = match req.uri.path() {
            "/.well-known/openid-configuration" => json!({"issuer": issuer, "jwks_uri": format!("{issuer}/keys")}),
            "/keys" => jwks.clone(),
            _ => json!({}),
        };
        async move { support::json_reply(http::StatusCode::OK, body.to_string()) }
    })
    .await;
    let _ = issuer.set(format!("http://{}", provider.addr));
    provider
}

#[tokio::test]
async fn jwt_authorities_from_a_spire_oidc_discovery_provider() {
    let authority = SigningKey::generate().unwrap();
    let mut jwk = authority.jwk();
    jwk["kid"] = json!("oidc-1");
    jwk["use"] = json!("sig");
    jwk["alg"] = json!("ES256");
    // An encryption key under another kid must never verify a signature.
    let enc = SigningKey::generate().unwrap();
    let mut enc_jwk = enc.jwk();
    enc_jwk["kid"] = json!("oidc-enc");
    enc_jwk["use"] = json!("enc");
    let provider = oidc_discovery_provider(json!({"keys": [jwk, enc_jwk]})).await;
    // A bundle file for the domain, without the OIDC provider's keys.
    let dir = TempDir::new("empty-bundle");
    let file = dir.write("bundle.json", &json!({"keys": []}).to_string());
    let upstream = TestUpstream::json_ok().await;
    let proxy = TestProxy::builder(upstream.url())
        .policy(JWT_SVID_ONLY)
        .configure(|c| {
            c.policy.expose_reasons = true;
            c.identity.source = "files".into();
            c.identity.files.jwt_bundles.insert(TD.into(), file);
            c.identity.trust_domains = vec![TD.into()];
            c.identity.jwt_svid.header = Some(HEADER.into());
            c.identity.jwt_svid.audiences = vec![AUDIENCE.into()];
            c.identity.jwt_svid.oidc_discovery.insert(TD.into(), format!("http://{}", provider.addr));
        })
        .start()
        .await;
    let jwt = authority.sign(&json!({"alg": "ES256", "typ": "JWT", "kid": "oidc-1"}), &Fixture::claims()).unwrap();
    let reply = proxy.post(CALL, &[(HEADER, &jwt)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.json().get("result").is_some(), "{}", reply.text());

    let jwt = enc.sign(&json!({"alg": "ES256", "typ": "JWT", "kid": "oidc-enc"}), &Fixture::claims()).unwrap();
    let reply = proxy.post(CALL, &[(HEADER, &jwt)]).await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(rejections(&proxy.metrics().await, "credentials", "jwt_svid_unknown_kid"), 1.0);
    proxy.stop().await;
}

#[tokio::test]
async fn a_jwt_svid_may_come_as_a_bearer_token() {
    let authority = SigningKey::generate().unwrap();
    let mut jwk = authority.jwk();
    jwk["kid"] = json!(KID);
    jwk["use"] = json!("jwt-svid");
    let dir = TempDir::new("bearer-bundle");
    let file = dir.write("bundle.json", &json!({"keys": [jwk]}).to_string());
    let upstream = TestUpstream::json_ok().await;
    let proxy = TestProxy::builder(upstream.url())
        .policy(JWT_SVID_ONLY)
        .configure(|c| {
            c.identity.source = "files".into();
            c.identity.files.jwt_bundles.insert(TD.into(), file.clone());
            c.identity.trust_domains = vec![TD.into()];
            c.identity.jwt_svid.header = Some("authorization".into());
            c.identity.jwt_svid.audiences = vec![AUDIENCE.into()];
            c.identity.jwt_svid.required = true;
        })
        .start()
        .await;
    let jwt = authority.sign(&json!({"alg": "ES256", "typ": "JWT", "kid": KID}), &Fixture::claims()).unwrap();
    let reply = proxy.post(CALL, &[("authorization", &format!("Bearer {jwt}"))]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(upstream.wait_for_requests(1).await[0].header("authorization"), None);
    // Without the scheme it is not a Bearer credential.
    let reply = proxy.post(CALL, &[("authorization", &jwt)]).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    proxy.stop().await;

    // With access tokens on, Authorization is theirs.
    let mut config = mcp_pep::config::Config::default();
    config.upstream.url = Some(upstream.url());
    config.policy.dir = Some(dir.path().to_path_buf());
    config.identity.source = "files".into();
    config.identity.files.jwt_bundles.insert(TD.into(), file);
    config.identity.trust_domains = vec![TD.into()];
    config.identity.jwt_svid.header = Some("authorization".into());
    config.identity.jwt_svid.audiences = vec![AUDIENCE.into()];
    config.auth.issuers = serde_json::from_value(json!([{"issuer": "https://kc.test/realms/r"}])).unwrap();
    config.auth.public_url = Some("https://mcp.test/mcp".into());
    let err = config.validate("test").err().expect("refused");
    assert!(err.to_string().contains("identity.jwt_svid.header"), "{err}");
}

#[tokio::test]
async fn a_verified_jwt_svid_stops_working_when_its_key_leaves_the_bundle() {
    let f = Fixture::start().await;
    let jwt = f.svid(&Fixture::claims());
    assert_eq!(f.call(&jwt).await.status, 200);
    // The trust domain withdraws the key (e.g. a compromised authority).
    f._dir.write("bundle.json", &json!({"keys": []}).to_string());
    let deadline = tokio::time::Instant::now() + support::STEP;
    loop {
        let reply = f.call(&jwt).await;
        if reply.status == 401 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "a cached verification outlived its key");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(rejections(&f.proxy.metrics().await, "credentials", "jwt_svid_unknown_kid"), 1.0);
    f.proxy.stop().await;
}
