//! Outbound credentials (egress): the sidecar obtains the agent's DPoP-bound token with a
//! JWT-SVID and sends every upstream request with it and a fresh proof. The token endpoint
//! here is a small stand-in that answers by RFC 9449/RFC 6749 shapes; tests/keycloak has the
//! Keycloak-faithful one for the end-to-end tests.

mod support;

use std::sync::{Arc, Mutex};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use data_encoding::BASE64URL_NOPAD;
use http::StatusCode;
use serde_json::{Value, json};
use support::*;

fn segment(jws: &str, i: usize) -> Value {
    serde_json::from_slice(&BASE64URL_NOPAD.decode(jws.split('.').nth(i).unwrap().as_bytes()).unwrap()).unwrap()
}

/// Verifies an ES256 proof with the key in its own header; its header and payload.
fn verified_proof(proof: &str) -> (Value, Value) {
    let header = segment(proof, 0);
    let x = BASE64URL_NOPAD.decode(header["jwk"]["x"].as_str().unwrap().as_bytes()).unwrap();
    let y = BASE64URL_NOPAD.decode(header["jwk"]["y"].as_str().unwrap().as_bytes()).unwrap();
    let point: Vec<u8> = [&[4u8][..], &x, &y].concat();
    let (input, sig) = proof.rsplit_once('.').unwrap();
    let sig = BASE64URL_NOPAD.decode(sig.as_bytes()).unwrap();
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(input.as_bytes(), &sig).expect("proof signature");
    (header, segment(proof, 1))
}

/// How the stand-in token endpoint answers.
#[derive(Clone, Copy, PartialEq)]
enum Issuer {
    Good,
    Refuses,
    OtherKey,
    Bearer,
}

struct Env {
    issuer: TestUpstream,
    tool: TestUpstream,
    proxy: TestProxy,
    _dir: TempDir,
}

/// The tool server's next 401 answers (challenge, nonce), popped from the end.
type Challenges = Arc<Mutex<Vec<(&'static str, Option<&'static str>)>>>;

/// A token endpoint, a tool server answering 401 as `tool_401` says, and the proxy.
async fn setup(issuer_mode: Issuer, tool_401: Challenges) -> Env {
    setup_with(issuer_mode, tool_401, None).await
}

/// With `registration`: the status the registration endpoint answers.
async fn setup_with(issuer_mode: Issuer, tool_401: Challenges, registration: Option<StatusCode>) -> Env {
    let counter = Arc::new(Mutex::new(0u32));
    let issuer = TestUpstream::start(move |r| {
        let counter = counter.clone();
        async move {
            if r.uri.path().ends_with("/register") {
                let body: Value = serde_json::from_slice(&r.body).unwrap();
                assert_eq!(body["software_statement"], "the-jwt-svid");
                assert_eq!(body["grant_types"], json!(["client_credentials"]));
                let status = registration.unwrap_or(StatusCode::NOT_FOUND);
                let body = match status {
                    StatusCode::CONFLICT => r#"{"errorMessage":"Client already exists"}"#,
                    StatusCode::FORBIDDEN => r#"{"error":"access_denied","error_description":"not allowed"}"#,
                    _ => r#"{"client_id":"spiffe://td/agent"}"#,
                };
                return json_reply(status, body);
            }
            let form: Vec<(String, String)> = url::form_urlencoded::parse(&r.body).into_owned().collect();
            let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            assert_eq!(get("grant_type").as_deref(), Some("client_credentials"));
            assert_eq!(
                get("client_assertion_type").as_deref(),
                Some("urn:ietf:params:oauth:client-assertion-type:jwt-spiffe")
            );
            assert_eq!(get("client_assertion").as_deref(), Some("the-jwt-svid"));
            let (header, payload) = verified_proof(r.header("dpop").expect("a proof at the token endpoint"));
            assert_eq!(payload["htm"], "POST");
            assert!(payload["htu"].as_str().unwrap().ends_with("/token"), "{payload}");
            assert!(payload.get("ath").is_none(), "no token yet, no ath");
            let jkt = mcp_pep::auth::jwk::PublicJwk::from_json(&header["jwk"]).unwrap().thumbprint();
            let n = {
                let mut c = counter.lock().unwrap();
                *c += 1;
                *c
            };
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            let bound = if issuer_mode == Issuer::OtherKey { "another-key".to_owned() } else { jkt };
            let claims =
                json!({"iss": "x", "azp": "spiffe://td/agent", "exp": now + 300, "cnf": {"jkt": bound}, "n": n});
            let token = format!("e30.{}.c2ln", BASE64URL_NOPAD.encode(claims.to_string().as_bytes()));
            match issuer_mode {
                Issuer::Refuses => json_reply(
                    StatusCode::BAD_REQUEST,
                    r#"{"error":"invalid_client","error_description":"client not found"}"#,
                ),
                Issuer::Bearer => json_reply(
                    StatusCode::OK,
                    json!({"access_token": token, "token_type": "Bearer", "expires_in": 300}).to_string(),
                ),
                _ => json_reply(
                    StatusCode::OK,
                    json!({"access_token": token, "token_type": "DPoP", "expires_in": 300}).to_string(),
                ),
            }
        }
    })
    .await;
    let tool = TestUpstream::start(move |_| {
        let next = tool_401.lock().unwrap().pop();
        async move {
            match next {
                None => json_reply(StatusCode::OK, r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#),
                Some((challenge, nonce)) => {
                    let mut resp = json_reply(StatusCode::UNAUTHORIZED, "");
                    resp.headers_mut().insert("www-authenticate", challenge.parse().unwrap());
                    if let Some(nonce) = nonce {
                        resp.headers_mut().insert("dpop-nonce", nonce.parse().unwrap());
                    }
                    resp
                }
            }
        }
    })
    .await;
    let dir = TempDir::new("outbound");
    let svid = dir.write("jwt-svid", "the-jwt-svid\n");
    let token_endpoint = format!("http://{}/realms/agents/protocol/openid-connect/token", issuer.addr);
    let proxy = TestProxy::builder(tool.url())
        .configure(|c| {
            c.upstream.credentials = Some(mcp_pep::config::OutboundConfig {
                issuer: format!("http://{}/realms/agents", issuer.addr),
                token_endpoint: Some(token_endpoint),
                assertion_file: Some(svid),
                public_url: Some("https://tools.example.com/mcp".into()),
                registration_endpoint: registration
                    .map(|_| format!("http://{}/realms/agents/clients-registrations/spiffe-dcr/register", issuer.addr)),
                ..Default::default()
            });
        })
        .start()
        .await;
    Env { issuer, tool, proxy, _dir: dir }
}

fn no_401s() -> Challenges {
    Arc::new(Mutex::new(Vec::new()))
}

#[tokio::test]
async fn every_upstream_request_carries_the_agents_token_and_a_fresh_proof() {
    let env = setup(Issuer::Good, no_401s()).await;
    for id in 1..=3 {
        let reply = env.proxy.post(tools_call(id, "echo"), &[("authorization", "Bearer the-agents-own-secret")]).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    assert_eq!(env.issuer.requests().len(), 1, "one token for all three calls");
    let mut jtis = Vec::new();
    for seen in env.tool.requests() {
        let auth = seen.header("authorization").unwrap();
        let token = auth.strip_prefix("DPoP ").expect("a DPoP token, never the agent's own header");
        let (_, proof) = verified_proof(seen.header("dpop").unwrap());
        assert_eq!(proof["htm"], "POST");
        assert_eq!(proof["htu"], "https://tools.example.com/mcp");
        assert_eq!(proof["ath"], mcp_pep::auth::dpop::access_token_hash(token));
        jtis.push(proof["jti"].as_str().unwrap().to_owned());
    }
    jtis.dedup();
    assert_eq!(jtis.len(), 3, "a proof was reused");
    assert_eq!(env.proxy.admin_get("/readyz").await.status, StatusCode::OK);
    let metrics = env.proxy.metrics().await;
    assert_eq!(metric(&metrics, "mcp_pep_outbound_token_requests_total", &[("result", "ok")]), Some(1.0), "{metrics}");
    env.proxy.stop().await;
}

#[tokio::test]
async fn a_nonce_challenge_is_answered_once_and_the_nonce_kept() {
    let challenges = Arc::new(Mutex::new(vec![(r#"DPoP error="use_dpop_nonce""#, Some("n-1"))]));
    let env = setup(Issuer::Good, challenges).await;
    let reply = env.proxy.post(tools_call(1, "echo"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = env.proxy.post(tools_call(2, "echo"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = env.tool.requests();
    assert_eq!(seen.len(), 3, "the first call was retried once");
    let nonces: Vec<Value> =
        seen.iter().map(|r| verified_proof(r.header("dpop").unwrap()).1["nonce"].clone()).collect();
    assert_eq!(nonces, [Value::Null, json!("n-1"), json!("n-1")]);
    env.proxy.stop().await;
}

#[tokio::test]
async fn a_refused_token_is_refreshed_once_not_in_a_loop() {
    let invalid = (r#"DPoP error="invalid_token""#, None);
    // Popped from the end: first call refused, retried with a new token and refused again.
    let env = setup(Issuer::Good, Arc::new(Mutex::new(vec![invalid, invalid]))).await;
    let reply = env.proxy.post(tools_call(1, "echo"), &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "the second refusal is passed on");
    assert_eq!(env.tool.requests().len(), 2, "one retry");
    assert_eq!(env.issuer.requests().len(), 2, "one refresh");
    let seen = env.tool.requests();
    let first = seen[0].header("authorization").unwrap();
    let second = seen[1].header("authorization").unwrap();
    assert_ne!(first, second, "the retry used the refused token");
    env.proxy.stop().await;
}

#[tokio::test]
async fn no_usable_token_is_503_naming_the_cause_and_not_ready() {
    for (mode, cause) in
        [(Issuer::Refuses, "invalid_client"), (Issuer::OtherKey, "bound to another key"), (Issuer::Bearer, "not DPoP")]
    {
        let env = setup(mode, no_401s()).await;
        let reply = env.proxy.post(tools_call(1, "echo"), &[]).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.text());
        let message = reply.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains(cause), "{message}");
        assert!(env.tool.requests().is_empty(), "a request went out without a usable token");
        assert_eq!(env.proxy.admin_get("/readyz").await.status, StatusCode::SERVICE_UNAVAILABLE);
        env.proxy.stop().await;
    }
}

#[tokio::test]
async fn the_client_registers_first_and_already_registered_counts() {
    for (status, works) in [(StatusCode::CREATED, true), (StatusCode::CONFLICT, true), (StatusCode::FORBIDDEN, false)] {
        let env = setup_with(Issuer::Good, no_401s(), Some(status)).await;
        let reply = env.proxy.post(tools_call(1, "echo"), &[]).await;
        assert_eq!(reply.status == StatusCode::OK, works, "registration {status}: {}", reply.text());
        if !works {
            assert!(reply.text().contains("access_denied"), "the cause is named: {}", reply.text());
        }
        let paths: Vec<String> = env.issuer.requests().iter().map(|r| r.uri.path().to_owned()).collect();
        assert!(paths[0].ends_with("/register"), "{paths:?}");
        if works {
            assert!(paths[1].ends_with("/token"), "{paths:?}");
            assert_eq!(paths.iter().filter(|p| p.ends_with("/register")).count(), 1, "registered once: {paths:?}");
        } else {
            assert!(paths.iter().all(|p| p.ends_with("/register")), "a token was requested unregistered: {paths:?}");
        }
        env.proxy.stop().await;
    }
}
