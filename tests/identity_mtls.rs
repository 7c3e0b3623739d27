//! The mTLS listener: client X.509-SVIDs verified against the trust domain's bundle by
//! the SVID rules, the peer's SPIFFE ID in the policy input, every refused certificate
//! counted by reason, and rotation of the file source without a restart.

mod support;

use std::time::{Duration, SystemTime};

use mcp_pep::demo::pki::{LeafSpec, TestCa};
use rcgen::KeyUsagePurpose;
use support::tls::{LOCALHOST, Pki, SIDECAR, TD, TRUSTED, UNTRUSTED, client_tls, mtls_post, mtls_request_using};
use support::{STEP, TestProxy, TestUpstream, metric};

const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;

/// Allows only callers proven by mTLS to be the trusted agent; says who was seen.
const MTLS_ONLY: &str = r#"package mcp
import rego.v1
decision := {"allow": true, "reasons": []} if {
    input.identity.source == "mtls"
    input.identity.spiffe_id == "spiffe://mcp-identity.local/ns/mcp-agents/sa/trusted-agent"
    input.identity.trust_domain == "mcp-identity.local"
    input.identity.path == "/ns/mcp-agents/sa/trusted-agent"
} else := {"allow": false, "reasons": [sprintf("seen %v", [input.identity.spiffe_id])]}
"#;

async fn start(pki: &Pki, upstream: &TestUpstream) -> TestProxy {
    TestProxy::builder(upstream.url())
        .policy(MTLS_ONLY)
        .configure(|c| {
            pki.configure(c);
            c.policy.expose_reasons = true;
        })
        .start()
        .await
}

/// The handshake was refused, and counted under `reason`.
async fn assert_refused(proxy: &TestProxy, leaf: Option<&mcp_pep::demo::pki::Leaf>, pki: &Pki, reason: &str) {
    let result = mtls_post(proxy.mcp_addr, leaf, &[&pki.ca], CALL).await;
    assert!(result.is_err(), "the handshake must fail ({reason})");
    let text = proxy.metrics().await;
    assert_eq!(metric(&text, "mcp_pep_tls_handshakes_total", &[("result", reason)]), Some(1.0), "{text}");
    assert_eq!(metric(&text, "mcp_pep_tls_handshakes_total", &[("result", "ok")]), None);
}

#[tokio::test]
async fn the_client_svid_is_the_callers_identity() {
    let pki = Pki::new();
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(&pki, &upstream).await;

    let reply = mtls_post(proxy.mcp_addr, Some(&pki.agent(TRUSTED)), &[&pki.ca], CALL).await.expect("mTLS call");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.json().get("result").is_some(), "{}", reply.body);
    assert_eq!(upstream.wait_for_requests(1).await.len(), 1);
    // The server presented the sidecar's SVID.
    assert_eq!(reply.server_cert, pki.sidecar.chain[0]);

    // A valid SVID of another workload is that workload: the policy sees and denies it.
    let reply = mtls_post(proxy.mcp_addr, Some(&pki.agent(UNTRUSTED)), &[&pki.ca], CALL).await.expect("mTLS call");
    assert_eq!(reply.json()["error"]["code"], -32001, "{}", reply.body);
    assert!(reply.body.contains("seen spiffe://mcp-identity.local/ns/mcp-agents/sa/untrusted-agent"), "{}", reply.body);
    assert_eq!(upstream.requests().len(), 1, "the denied call was not forwarded");

    let text = proxy.metrics().await;
    assert_eq!(metric(&text, "mcp_pep_tls_handshakes_total", &[("result", "ok")]), Some(2.0));
    assert!(metric(&text, "mcp_pep_svid_expiry_timestamp_seconds", &[]).is_some_and(|t| t > 0.0));
    assert_eq!(proxy.admin_get("/readyz").await.status, 200);
    proxy.stop().await;
}

#[tokio::test]
async fn no_client_certificate_is_refused() {
    let pki = Pki::new();
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(&pki, &upstream).await;
    assert_refused(&proxy, None, &pki, "no_client_certificate").await;
    assert!(upstream.requests().is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn plain_http_to_the_mtls_listener_gets_nothing() {
    let pki = Pki::new();
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(&pki, &upstream).await;
    let reply = tokio::time::timeout(
        STEP,
        support::send_raw(support::post_request(&proxy.url(), support::full_body(CALL), &[])),
    )
    .await;
    assert!(reply.expect("no hang").is_err(), "plain HTTP must not be served");
    assert!(upstream.requests().is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn an_expired_svid_is_refused() {
    let pki = Pki::new();
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(&pki, &upstream).await;
    let mut spec = LeafSpec::svid(TRUSTED);
    spec.not_before = SystemTime::now() - Duration::from_secs(7200);
    spec.not_after = SystemTime::now() - Duration::from_secs(3600);
    assert_refused(&proxy, Some(&pki.ca.leaf(&spec).unwrap()), &pki, "expired").await;
    proxy.stop().await;
}

#[tokio::test]
async fn an_svid_of_a_trust_domain_not_accepted_is_refused() {
    let pki = Pki::new();
    // The foreign domain's bundle is even installed: accepting it is still a decision.
    let evil = TestCa::new("evil.example").unwrap();
    let evil_bundle = pki.dir.write("evil.pem", &evil.cert_pem());
    let upstream = TestUpstream::json_ok().await;
    let proxy = TestProxy::builder(upstream.url())
        .policy(MTLS_ONLY)
        .configure(|c| {
            pki.configure(c);
            c.identity.files.bundles.insert("evil.example".into(), evil_bundle);
        })
        .start()
        .await;
    let leaf = evil.leaf(&LeafSpec::svid("spiffe://evil.example/ns/mcp-agents/sa/trusted-agent")).unwrap();
    assert_refused(&proxy, Some(&leaf), &pki, "trust_domain").await;
    proxy.stop().await;
}

#[tokio::test]
async fn an_svid_signed_by_another_domains_ca_is_refused() {
    let pki = Pki::new();
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(&pki, &upstream).await;
    // Claims the accepted domain, but its CA is not in that domain's bundle.
    let evil = TestCa::new("evil.example").unwrap();
    assert_refused(&proxy, Some(&evil.leaf(&LeafSpec::svid(TRUSTED)).unwrap()), &pki, "unknown_issuer").await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_ca_certificate_as_leaf_is_refused() {
    let pki = Pki::new();
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(&pki, &upstream).await;
    let mut spec = LeafSpec::svid(TRUSTED);
    spec.is_ca = true;
    assert_refused(&proxy, Some(&pki.ca.leaf(&spec).unwrap()), &pki, "leaf_is_ca").await;
    proxy.stop().await;
}

#[tokio::test]
async fn two_uri_sans_are_refused() {
    let pki = Pki::new();
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(&pki, &upstream).await;
    let mut spec = LeafSpec::svid(TRUSTED);
    spec.uris.push(UNTRUSTED.into());
    assert_refused(&proxy, Some(&pki.ca.leaf(&spec).unwrap()), &pki, "uri_san_count").await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_certificate_without_a_spiffe_id_is_refused() {
    let pki = Pki::new();
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(&pki, &upstream).await;
    let mut spec = LeafSpec::svid(TRUSTED);
    spec.uris.clear();
    spec.dns.push("agent.example".into());
    assert_refused(&proxy, Some(&pki.ca.leaf(&spec).unwrap()), &pki, "uri_san_count").await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_uri_san_that_is_not_spiffe_is_refused() {
    let pki = Pki::new();
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(&pki, &upstream).await;
    let mut spec = LeafSpec::svid(TRUSTED);
    spec.uris = vec!["https://mcp-identity.local/ns/mcp-agents/sa/trusted-agent".into()];
    assert_refused(&proxy, Some(&pki.ca.leaf(&spec).unwrap()), &pki, "not_spiffe").await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_leaf_that_may_sign_certificates_is_refused() {
    let pki = Pki::new();
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(&pki, &upstream).await;
    let mut spec = LeafSpec::svid(TRUSTED);
    spec.key_usages.push(KeyUsagePurpose::KeyCertSign);
    assert_refused(&proxy, Some(&pki.ca.leaf(&spec).unwrap()), &pki, "key_usage").await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_leaf_without_digital_signature_is_refused() {
    let pki = Pki::new();
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(&pki, &upstream).await;
    let mut spec = LeafSpec::svid(TRUSTED);
    spec.key_usages = vec![KeyUsagePurpose::KeyAgreement];
    assert_refused(&proxy, Some(&pki.ca.leaf(&spec).unwrap()), &pki, "key_usage").await;
    proxy.stop().await;
}

/// Waits until a new handshake shows `expected` as the server certificate.
async fn wait_for_server_cert(proxy: &TestProxy, pki: &Pki, roots: &[&TestCa], expected: &[u8]) {
    let agent = pki.agent(TRUSTED);
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        if let Ok(reply) = mtls_post(proxy.mcp_addr, Some(&agent), roots, CALL).await
            && reply.server_cert.as_ref() == expected
        {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "rotation not picked up within {STEP:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn rotated_files_serve_new_handshakes_without_a_restart() {
    let pki = Pki::new();
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(&pki, &upstream).await;
    let old_ca_agent = pki.agent(TRUSTED);

    // SPIRE rotates to a new CA: the bundle carries both, the SVIDs come from the new one.
    let ca2 = TestCa::new(TD).unwrap();
    let rotated = ca2.leaf(&LeafSpec::svid(SIDECAR).with_ip(LOCALHOST)).unwrap();
    pki.write_sidecar(&rotated, &[&pki.ca, &ca2]);
    wait_for_server_cert(&proxy, &pki, &[&pki.ca, &ca2], &rotated.chain[0]).await;

    // Agents of either CA are accepted while both are in the bundle.
    let new_ca_agent = ca2.leaf(&LeafSpec::svid(TRUSTED)).unwrap();
    for agent in [&old_ca_agent, &new_ca_agent] {
        let reply = mtls_post(proxy.mcp_addr, Some(agent), &[&ca2], CALL).await.expect("call after rotation");
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    // The old CA leaves the bundle: its agents are refused from the next handshake on.
    pki.write_sidecar(&rotated, &[&ca2]);
    let deadline = tokio::time::Instant::now() + STEP;
    while mtls_post(proxy.mcp_addr, Some(&old_ca_agent), &[&ca2], CALL).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "the old CA was never dropped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = proxy.metrics().await;
    let updates = metric(&text, "mcp_pep_svid_updates_total", &[("source", "files"), ("result", "ok")]);
    assert!(updates >= Some(2.0), "{updates:?}");
    proxy.stop().await;
}

/// A client whose CA left the bundle is refused even when it resumes a TLS session it
/// had before (a pooled client offers its ticket): resumption would skip the certificate
/// check, so the listener does not offer it.
#[tokio::test]
async fn a_dropped_ca_is_refused_on_resumption_too() {
    let pki = Pki::new();
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(&pki, &upstream).await;
    let ca2 = TestCa::new(TD).unwrap();
    let agent = pki.agent(TRUSTED);
    let pooled = client_tls(Some(&agent), &[&pki.ca, &ca2]).unwrap();
    let first = mtls_request_using(proxy.mcp_addr, &pooled, http::Method::POST, CALL, &[]).await.expect("first call");
    assert_eq!(first.status, 200, "{}", first.body);

    let rotated = ca2.leaf(&LeafSpec::svid(SIDECAR).with_ip(LOCALHOST)).unwrap();
    pki.write_sidecar(&rotated, &[&ca2]);
    // A new session (a fresh client) is refused once the rotation is in.
    let deadline = tokio::time::Instant::now() + STEP;
    while mtls_post(proxy.mcp_addr, Some(&agent), &[&pki.ca, &ca2], CALL).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "the old CA was never dropped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = mtls_request_using(proxy.mcp_addr, &pooled, http::Method::POST, CALL, &[]).await;
    assert!(
        again.is_err(),
        "resumed with a certificate the bundle no longer vouches for: {:?}",
        again.map(|r| r.status)
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_broken_rotation_keeps_the_last_good_material() {
    let pki = Pki::new();
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(&pki, &upstream).await;
    pki.dir.write("svid.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let text = proxy.metrics().await;
        if metric(&text, "mcp_pep_svid_updates_total", &[("result", "error")]).is_some() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the broken push was not noticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = mtls_post(proxy.mcp_addr, Some(&pki.agent(TRUSTED)), &[&pki.ca], CALL).await.expect("still served");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.server_cert, pki.sidecar.chain[0]);
    proxy.stop().await;
}

#[tokio::test]
async fn an_expired_own_svid_makes_the_sidecar_not_ready() {
    let pki = Pki::new();
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(&pki, &upstream).await;
    assert_eq!(proxy.admin_get("/readyz").await.status, 200);
    // Rotation stalled: the SVID on disk is past its notAfter.
    let mut spec = LeafSpec::svid(SIDECAR).with_ip(LOCALHOST);
    spec.not_before = SystemTime::now() - Duration::from_secs(7200);
    spec.not_after = SystemTime::now() - Duration::from_secs(60);
    pki.write_sidecar(&pki.ca.leaf(&spec).unwrap(), &[&pki.ca]);
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let reply = proxy.admin_get("/readyz").await;
        if reply.status == 503 {
            assert!(reply.text().contains("SVID has expired"), "{}", reply.text());
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still ready with an expired SVID");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.stop().await;
}

#[tokio::test]
async fn the_tool_server_can_be_told_the_proven_spiffe_id_never_a_forged_one() {
    let pki = Pki::new();
    let upstream = TestUpstream::json_ok().await;
    let proxy = TestProxy::builder(upstream.url())
        .policy(MTLS_ONLY)
        .configure(|c| {
            pki.configure(c);
            c.upstream.identity_header = Some("x-spiffe-id".into());
        })
        .start()
        .await;
    let forged = [("x-spiffe-id", "spiffe://mcp-identity.local/ns/mcp-tools/sa/admin")];
    let reply =
        support::tls::mtls_post_with(proxy.mcp_addr, Some(&pki.agent(TRUSTED)), &[&pki.ca], CALL, &forged).await;
    assert_eq!(reply.expect("mTLS call").status, 200);
    let seen = upstream.wait_for_requests(1).await;
    assert_eq!(seen[0].header("x-spiffe-id"), Some(TRUSTED));
    assert_eq!(seen[0].headers.get_all("x-spiffe-id").iter().count(), 1);
    proxy.stop().await;

    // Without a proven identity, a client's value is dropped, not passed on.
    let upstream = TestUpstream::json_ok().await;
    let proxy = TestProxy::builder(upstream.url())
        .configure(|c| c.upstream.identity_header = Some("x-spiffe-id".into()))
        .start()
        .await;
    assert_eq!(proxy.post(CALL, &forged).await.status, 200);
    assert_eq!(upstream.wait_for_requests(1).await[0].header("x-spiffe-id"), None);
    proxy.stop().await;
}
