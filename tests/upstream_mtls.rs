//! Upstream mTLS: the sidecar presents its X.509-SVID to the tool server and accepts
//! only the tool server's expected SPIFFE ID, verified against its trust bundle.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcp_pep::demo::pki::{LeafSpec, TestCa};
use mcp_pep::demo::{DemoServer, ResponseMode};
use mcp_pep::listener::TlsAccept;
use rustls::pki_types::CertificateDer;
use support::tls::{LOCALHOST, Pki, SIDECAR, TD};
use support::{TestProxy, TestUpstream, assert_nothing_leaks, metric};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const TOOL_SERVER: &str = "spiffe://mcp-identity.local/ns/mcp-tools/sa/tool-server";
const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

/// The demo tool server over TLS, requiring a client certificate of `ca` (plain rustls
/// WebPKI: no SPIFFE logic of ours on this side). Records the client certificates seen.
struct TlsToolServer {
    addr: std::net::SocketAddr,
    clients: Arc<Mutex<Vec<CertificateDer<'static>>>>,
    _stop: oneshot::Sender<()>,
}

impl TlsToolServer {
    async fn start(ca: &TestCa, spiffe_id: &str) -> TlsToolServer {
        let leaf = ca.leaf(&LeafSpec::svid(spiffe_id).with_ip(LOCALHOST)).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(leaf.chain.clone(), leaf.key_der())
            .unwrap();
        let clients = Arc::new(Mutex::new(Vec::new()));
        let seen = clients.clone();
        let tls = TlsAccept {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            timeout: Duration::from_secs(5),
            on_handshake: Some(Arc::new(move |outcome| {
                let leaf = outcome.ok().flatten()?;
                seen.lock().unwrap().push(leaf.clone());
                let identity =
                    mcp_pep::identity::svid::leaf_spiffe_id(leaf, mcp_pep::context::IdentitySource::Mtls).ok()?;
                Some(Arc::new(mcp_pep::context::PeerSvid { identity, x5t_s256: "".into() }))
            })),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(DemoServer::new(ResponseMode::Json).serve(listener, Some(tls), async move {
            let _ = stopped.await;
        }));
        TlsToolServer { addr, clients, _stop: stop }
    }
}

async fn proxy_to(pki: &Pki, server: &TlsToolServer, expected: &str) -> TestProxy {
    TestProxy::builder(format!("https://{}/mcp", server.addr))
        .configure(|c| {
            pki.configure(c);
            // Plain HTTP on the proxy's side: only the upstream leg is mTLS here.
            c.identity.mtls = false;
            c.upstream.spiffe_id = Some(expected.into());
        })
        .start()
        .await
}

#[tokio::test]
async fn the_sidecar_presents_its_svid_to_the_expected_tool_server() {
    let pki = Pki::new();
    let server = TlsToolServer::start(&pki.ca, TOOL_SERVER).await;
    let proxy = proxy_to(&pki, &server, TOOL_SERVER).await;
    let reply = proxy.post(INITIALIZE, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["result"]["serverInfo"]["name"], "mcp-pep-demo-server", "{}", reply.text());
    let clients = server.clients.lock().unwrap().clone();
    assert_eq!(clients, vec![pki.sidecar.chain[0].clone()], "the sidecar's own SVID");
    proxy.stop().await;
}

#[tokio::test]
async fn a_tool_server_with_another_spiffe_id_is_refused() {
    let pki = Pki::new();
    let server = TlsToolServer::start(&pki.ca, "spiffe://mcp-identity.local/ns/mcp-tools/sa/impostor").await;
    let proxy = proxy_to(&pki, &server, TOOL_SERVER).await;
    let reply = proxy.post(INITIALIZE, &[]).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], -32002);
    assert!(metric(&proxy.metrics().await, "mcp_pep_upstream_errors_total", &[("kind", "connect")]).is_some());
    assert_nothing_leaks(&proxy, "another SPIFFE ID").await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_tool_server_outside_the_bundle_is_refused() {
    let pki = Pki::new();
    // The right SPIFFE ID, from a CA the bundle does not hold.
    let rogue = TestCa::new(TD).unwrap();
    let server = TlsToolServer::start(&rogue, TOOL_SERVER).await;
    let proxy = proxy_to(&pki, &server, TOOL_SERVER).await;
    let reply = proxy.post(INITIALIZE, &[]).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(server.clients.lock().unwrap().is_empty(), "no request reached the rogue server");
    assert_nothing_leaks(&proxy, "outside the bundle").await;
    proxy.stop().await;
}

#[tokio::test]
async fn an_https_upstream_without_a_spiffe_source_is_a_config_error() {
    let upstream = TestUpstream::json_ok().await;
    let mut config = mcp_pep::config::Config::default();
    config.upstream.url = Some("https://127.0.0.1:1/mcp".into());
    config.upstream.spiffe_id = Some(SIDECAR.into());
    config.policy.dir = Some(std::env::temp_dir());
    let err = config.validate("test").err().expect("refused");
    assert!(err.to_string().contains("identity.source"), "{err}");
    drop(upstream);
}
