//! Every refused value of the identity, upstream-TLS and session settings: each names the
//! key at fault, and nothing starts on it.

mod support;

use mcp_pep::config::Config;
use support::TempDir;
use support::tls::Pki;

/// A valid base (a plain-HTTP upstream unless `extra` names its own, no identity) plus
/// `extra` YAML, in which `PKI` is the PKI directory.
fn validate(extra: &str, pki: &Pki, policy: &TempDir) -> Result<(), String> {
    let upstream = if extra.contains("upstream:") { "" } else { "upstream: {url: http://127.0.0.1:3000/mcp}\n" };
    let yaml = format!(
        "{upstream}policy: {{dir: {}}}\n{}",
        policy.path().display(),
        extra.replace("PKI", &pki.dir.path().display().to_string())
    );
    let config = Config::parse(&yaml).map_err(|e| format!("parse: {e}"))?;
    config.validate("test").map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn each_refused_identity_setting_names_its_key() {
    let pki = Pki::new();
    let policy = TempDir::new("policy");
    let files = "identity:\n  source: files\n  files: {cert: PKI/svid.pem, key: PKI/svid.key, bundles: {mcp-identity.local: PKI/bundle.pem}}\n";
    let tds = "  trust_domains: [mcp-identity.local]\n";
    let cases: Vec<(String, &str)> = vec![
        ("identity: {source: spire}\n".into(), "identity.source"),
        ("identity: {source: workload_api, workload_api_socket: /run/agent.sock}\n".into(), "identity.workload_api_socket"),
        ("identity:\n  source: files\n  files: {cert: PKI/svid.pem, bundles: {mcp-identity.local: PKI/bundle.pem}}\n".into(), "identity.files"),
        ("identity:\n  source: files\n  files: {cert: PKI/svid.pem, key: PKI/svid.key}\n".into(), "identity.files.bundles"),
        ("identity:\n  source: files\n  files: {bundles: {mcp-identity.local: PKI/bundle.pem}, poll_interval_ms: 1}\n".into(), "identity.files.poll_interval_ms"),
        ("identity:\n  source: files\n  files: {bundles: {mcp-identity.local: PKI/missing.pem}}\n".into(), "identity.files"),
        (format!("{files}  trust_domains: [Mcp-Identity.local]\n"), "identity.trust_domains"),
        (format!("{files}  trust_domains: [td/path]\n"), "identity.trust_domains"),
        ("identity: {mtls: true, trust_domains: [mcp-identity.local]}\n".into(), "identity.mtls"),
        (format!("{files}  mtls: true\n"), "identity.trust_domains"),
        ("identity:\n  source: files\n  files: {bundles: {mcp-identity.local: PKI/bundle.pem}}\n  mtls: true\n  trust_domains: [mcp-identity.local]\n".into(), "identity.files.cert"),
        (format!("{files}{tds}  jwt_svid: {{header: 'bad header', audiences: [a]}}\n"), "identity.jwt_svid.header"),
        (format!("{files}{tds}  jwt_svid: {{header: x-jwt-svid}}\n"), "identity.jwt_svid.audiences"),
        (format!("{files}{tds}  jwt_svid: {{header: x-jwt-svid, audiences: [a], oidc_discovery: {{mcp-identity.local: 'ftp://oidc'}}}}\n"), "identity.jwt_svid.oidc_discovery"),
        (format!("{files}{tds}  jwt_svid: {{header: x-jwt-svid, audiences: [a], oidc_discovery: {{other.td: 'https://oidc'}}}}\n"), "identity.jwt_svid.oidc_discovery"),
        (format!("{files}{tds}  handshake_timeout_ms: 0\n"), "identity.handshake_timeout_ms"),
        (format!("{files}upstream: {{url: http://127.0.0.1:3000/mcp, spiffe_id: 'spiffe://mcp-identity.local/tool'}}\n"), "upstream.url"),
        (format!("{files}upstream: {{url: https://127.0.0.1:3000/mcp, spiffe_id: 'spiffe://mcp-identity.local/../tool'}}\n"), "upstream.spiffe_id"),
        ("upstream: {url: http://127.0.0.1:3000/mcp, identity_header: authorization}\n".into(), "upstream.identity_header"),
        ("upstream: {url: http://127.0.0.1:3000/mcp, identity_header: proxy-spiffe}\n".into(), "upstream.identity_header"),
        ("upstream: {url: http://127.0.0.1:3000/mcp, identity_header: 'x spiffe'}\n".into(), "upstream.identity_header"),
        ("sessions: {max_sessions: 0}\n".into(), "sessions"),
        ("sessions: {idle_timeout_s: 0}\n".into(), "sessions"),
        ("auth: {issuers: [{issuer: 'https://kc/realms/r'}], public_url: 'https://mcp/mcp', spiffe_id_claim: ''}\n".into(), "auth.spiffe_id_claim"),
    ];
    // The base and the file source themselves are valid: each case fails for its own key.
    validate("", &pki, &policy).expect("the base is valid");
    validate(&format!("{files}{tds}  mtls: true\n"), &pki, &policy).expect("the file source is valid");
    for (extra, key) in cases {
        let result = validate(&extra, &pki, &policy);
        let err = result.expect_err(&format!("accepted: {extra}"));
        assert!(err.contains(&format!("`{key}`")), "{extra}\nwant key {key}, got: {err}");
    }
}
