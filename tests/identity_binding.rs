//! Tokens bound to workloads: a token's SPIFFE ID (`azp` by default) must be the SPIFFE
//! ID the caller proved (client certificate, JWT-SVID, or the pod's own on loopback); a
//! certificate-bound token (RFC 8705 `cnf["x5t#S256"]`) only over that certificate's
//! connection; with no other proof, the token's SPIFFE ID is the identity (`token`).

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use mcp_pep::config::Config;
use mcp_pep::demo::credentials::SigningKey;
use mcp_pep::identity::svid::x5t_s256;
use serde_json::{Value, json};
use support::tls::{Pki, TD, TRUSTED, UNTRUSTED, mtls_post_with};
use support::{TempDir, TestProxy, TestUpstream, rejections};

const ISSUER: &str = "https://keycloak.test/realms/agents";
const PUBLIC_URL: &str = "https://mcp.test/mcp";
const KID: &str = "kc-1";
const WHOAMI: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#;
const CALL: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;

/// Allows everything but `whoami`, which answers with the identity the policy saw.
const WHO_POLICY: &str = r#"package mcp
import rego.v1
default decision := {"allow": true, "reasons": []}
decision := {"allow": false, "reasons": [sprintf("who %v %v", [input.identity.spiffe_id, input.identity.source])]} if {
    input.mcp.tool == "whoami"
}
decision := {"allow": false, "reasons": ["who nobody"]} if {
    input.mcp.tool == "whoami"
    input.identity == null
}
"#;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

/// An issuer whose Bearer tokens (no DPoP: RFC 8705 binding is the point here) the
/// proxy trusts.
struct Issuer {
    key: SigningKey,
    dir: TempDir,
}

impl Issuer {
    fn new() -> Issuer {
        let key = SigningKey::generate().unwrap();
        let mut jwk = key.jwk();
        jwk["kid"] = json!(KID);
        let dir = TempDir::new("issuer");
        dir.write("jwks.json", &json!({"keys": [jwk]}).to_string());
        Issuer { key, dir }
    }

    fn configure(&self, c: &mut Config) {
        c.policy.expose_reasons = true;
        c.auth.issuers =
            serde_json::from_value(json!([{"issuer": ISSUER, "jwks_file": self.dir.path().join("jwks.json")}]))
                .unwrap();
        c.auth.public_url = Some(PUBLIC_URL.into());
        c.auth.dpop = "optional".into();
    }

    fn token(&self, edit: impl FnOnce(&mut Value)) -> String {
        let mut claims = json!({
            "iss": ISSUER, "aud": PUBLIC_URL, "exp": now() + 300, "iat": now(),
            "sub": "service-account-agent", "azp": TRUSTED, "typ": "Bearer",
        });
        edit(&mut claims);
        self.key.sign(&json!({"alg": "ES256", "typ": "JWT", "kid": KID}), &claims).unwrap()
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn mtls_proxy(pki: &Pki, issuer: &Issuer, upstream: &TestUpstream) -> TestProxy {
    TestProxy::builder(upstream.url())
        .policy(WHO_POLICY)
        .configure(|c| {
            pki.configure(c);
            issuer.configure(c);
        })
        .start()
        .await
}

#[tokio::test]
async fn a_token_of_the_certificates_workload_is_accepted() {
    let (pki, issuer, upstream) = (Pki::new(), Issuer::new(), TestUpstream::json_ok().await);
    let proxy = mtls_proxy(&pki, &issuer, &upstream).await;
    let agent = pki.agent(TRUSTED);
    let auth = bearer(&issuer.token(|_| {}));
    let reply =
        mtls_post_with(proxy.mcp_addr, Some(&agent), &[&pki.ca], CALL, &[("authorization", &auth)]).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply =
        mtls_post_with(proxy.mcp_addr, Some(&agent), &[&pki.ca], WHOAMI, &[("authorization", &auth)]).await.unwrap();
    assert!(reply.body.contains(&format!("who {TRUSTED} mtls")), "{}", reply.body);
    proxy.stop().await;
}

#[tokio::test]
async fn a_token_of_another_workload_is_refused() {
    let (pki, issuer, upstream) = (Pki::new(), Issuer::new(), TestUpstream::json_ok().await);
    let proxy = mtls_proxy(&pki, &issuer, &upstream).await;
    // The untrusted agent's certificate with the trusted agent's token.
    let auth = bearer(&issuer.token(|_| {}));
    let reply =
        mtls_post_with(proxy.mcp_addr, Some(&pki.agent(UNTRUSTED)), &[&pki.ca], CALL, &[("authorization", &auth)])
            .await
            .unwrap();
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert!(reply.body.contains("the token belongs to"), "{}", reply.body);
    assert_eq!(rejections(&proxy.metrics().await, "credentials", "token_spiffe_id_mismatch"), 1.0);
    assert!(upstream.requests().is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn the_binding_claim_is_configurable() {
    let (pki, issuer, upstream) = (Pki::new(), Issuer::new(), TestUpstream::json_ok().await);
    let proxy = TestProxy::builder(upstream.url())
        .policy(WHO_POLICY)
        .configure(|c| {
            pki.configure(c);
            issuer.configure(c);
            c.auth.spiffe_id_claim = "spiffe_id".into();
        })
        .start()
        .await;
    // azp is ignored now; the mapper claim names another workload.
    let auth = bearer(&issuer.token(|c| c["spiffe_id"] = json!(UNTRUSTED)));
    let reply =
        mtls_post_with(proxy.mcp_addr, Some(&pki.agent(TRUSTED)), &[&pki.ca], CALL, &[("authorization", &auth)])
            .await
            .unwrap();
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(rejections(&proxy.metrics().await, "credentials", "token_spiffe_id_mismatch"), 1.0);
    proxy.stop().await;
}

#[tokio::test]
async fn a_malformed_spiffe_id_in_the_token_is_refused() {
    let (pki, issuer, upstream) = (Pki::new(), Issuer::new(), TestUpstream::json_ok().await);
    let proxy = mtls_proxy(&pki, &issuer, &upstream).await;
    let auth = bearer(&issuer.token(|c| c["azp"] = json!("spiffe://mcp-identity.local/ns/../sa/x")));
    let reply =
        mtls_post_with(proxy.mcp_addr, Some(&pki.agent(TRUSTED)), &[&pki.ca], CALL, &[("authorization", &auth)])
            .await
            .unwrap();
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(rejections(&proxy.metrics().await, "credentials", "token_spiffe_id_invalid"), 1.0);
    proxy.stop().await;
}

#[tokio::test]
async fn a_certificate_bound_token_needs_that_certificate() {
    let (pki, issuer, upstream) = (Pki::new(), Issuer::new(), TestUpstream::json_ok().await);
    let proxy = mtls_proxy(&pki, &issuer, &upstream).await;
    let agent = pki.agent(TRUSTED);
    let bound = bearer(&issuer.token(|c| c["cnf"] = json!({"x5t#S256": x5t_s256(&agent.chain[0])})));
    let reply =
        mtls_post_with(proxy.mcp_addr, Some(&agent), &[&pki.ca], CALL, &[("authorization", &bound)]).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);

    // Another certificate of the same workload is not the one the token is bound to.
    let same_workload = pki.agent(TRUSTED);
    let reply = mtls_post_with(proxy.mcp_addr, Some(&same_workload), &[&pki.ca], CALL, &[("authorization", &bound)])
        .await
        .unwrap();
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(rejections(&proxy.metrics().await, "credentials", "token_x5t_mismatch"), 1.0);
    assert_eq!(upstream.requests().len(), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn a_certificate_bound_token_without_mtls_is_refused() {
    let (issuer, upstream) = (Issuer::new(), TestUpstream::json_ok().await);
    let proxy = TestProxy::builder(upstream.url()).policy(WHO_POLICY).configure(|c| issuer.configure(c)).start().await;
    let bound =
        bearer(&issuer.token(|c| c["cnf"] = json!({"x5t#S256": "bm90LWEtcmVhbC10aHVtYnByaW50LWF0LWFsbC4uLi4"})));
    let reply = proxy.post(CALL, &[("authorization", &bound)]).await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(rejections(&proxy.metrics().await, "credentials", "token_x5t_no_certificate"), 1.0);
    proxy.stop().await;
}

#[tokio::test]
async fn with_no_other_proof_the_tokens_spiffe_id_is_the_identity() {
    let (issuer, upstream) = (Issuer::new(), TestUpstream::json_ok().await);
    let proxy = TestProxy::builder(upstream.url()).policy(WHO_POLICY).configure(|c| issuer.configure(c)).start().await;
    let auth = bearer(&issuer.token(|_| {}));
    let reply = proxy.post(WHOAMI, &[("authorization", &auth)]).await;
    assert!(reply.text().contains(&format!("who {TRUSTED} token")), "{}", reply.text());
    // An azp that is not a SPIFFE ID binds nothing and proves nothing.
    let auth = bearer(&issuer.token(|c| c["azp"] = json!("agent-client")));
    let reply = proxy.post(WHOAMI, &[("authorization", &auth)]).await;
    assert!(reply.text().contains("who nobody"), "{}", reply.text());
    proxy.stop().await;
}

#[tokio::test]
async fn a_loopback_caller_may_not_use_another_workloads_token() {
    let (issuer, upstream) = (Issuer::new(), TestUpstream::json_ok().await);
    let proxy = TestProxy::builder(upstream.url())
        .policy(WHO_POLICY)
        .configure(|c| {
            issuer.configure(c);
            c.identity.local_spiffe_id = Some(UNTRUSTED.into());
        })
        .start()
        .await;
    let auth = bearer(&issuer.token(|_| {}));
    let reply = proxy.post(CALL, &[("authorization", &auth)]).await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(rejections(&proxy.metrics().await, "credentials", "token_spiffe_id_mismatch"), 1.0);
    proxy.stop().await;
}

#[tokio::test]
async fn a_jwt_svid_must_name_the_certificates_workload() {
    let pki = Pki::new();
    let authority = SigningKey::generate().unwrap();
    let mut jwk = authority.jwk();
    jwk["kid"] = json!("a1");
    jwk["use"] = json!("jwt-svid");
    let bundle = pki.dir.write("jwt.json", &json!({"keys": [jwk]}).to_string());
    let upstream = TestUpstream::json_ok().await;
    let proxy = TestProxy::builder(upstream.url())
        .policy(WHO_POLICY)
        .configure(|c| {
            pki.configure(c);
            c.policy.expose_reasons = true;
            c.identity.files.jwt_bundles.insert(TD.into(), bundle);
            c.identity.jwt_svid.header = Some("x-jwt-svid".into());
            c.identity.jwt_svid.audiences = vec!["mcp-pep".into()];
        })
        .start()
        .await;
    let jwt = authority
        .sign(&json!({"alg": "ES256", "kid": "a1"}), &json!({"sub": UNTRUSTED, "aud": "mcp-pep", "exp": now() + 60}))
        .unwrap();
    let reply = mtls_post_with(proxy.mcp_addr, Some(&pki.agent(TRUSTED)), &[&pki.ca], CALL, &[("x-jwt-svid", &jwt)])
        .await
        .unwrap();
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(rejections(&proxy.metrics().await, "credentials", "jwt_svid_mismatch"), 1.0);
    // The same JWT-SVID with the untrusted agent's own certificate is fine.
    let reply =
        mtls_post_with(proxy.mcp_addr, Some(&pki.agent(UNTRUSTED)), &[&pki.ca], WHOAMI, &[("x-jwt-svid", &jwt)])
            .await
            .unwrap();
    assert!(reply.body.contains(&format!("who {UNTRUSTED} mtls")), "{}", reply.body);
    proxy.stop().await;
}
