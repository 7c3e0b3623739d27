//! An mTLS test client built on plain rustls (its own WebPKI verification, not the
//! proxy's SPIFFE verifier), and a SPIFFE PKI laid out as files for the proxy.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use mcp_pep::config::Config;
use mcp_pep::demo::pki::{Leaf, LeafSpec, TestCa};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{BoxError, TempDir};

pub const TD: &str = "mcp-identity.local";
pub const SIDECAR: &str = "spiffe://mcp-identity.local/ns/mcp-tools/sa/mcp-pep";
pub const TRUSTED: &str = "spiffe://mcp-identity.local/ns/mcp-agents/sa/trusted-agent";
pub const UNTRUSTED: &str = "spiffe://mcp-identity.local/ns/mcp-agents/sa/untrusted-agent";
pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The trust domain's CA, the sidecar's SVID, and the files the proxy reads.
pub struct Pki {
    pub ca: TestCa,
    pub sidecar: Leaf,
    pub dir: TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let ca = TestCa::new(TD).expect("CA");
        let sidecar = ca.leaf(&LeafSpec::svid(SIDECAR).with_ip(LOCALHOST)).expect("sidecar SVID");
        let pki = Pki { ca, sidecar, dir: TempDir::new("pki") };
        pki.write_sidecar(&pki.sidecar, &[&pki.ca]);
        pki
    }

    /// Replaces the files the proxy watches: its SVID and the trust domain's bundle.
    pub fn write_sidecar(&self, svid: &Leaf, bundle: &[&TestCa]) {
        self.dir.write("svid.pem", &svid.chain_pem());
        self.dir.write("svid.key", &svid.key_pem());
        self.dir.write("bundle.pem", &bundle.iter().map(|ca| ca.cert_pem()).collect::<String>());
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `identity:` with the file source, mTLS on, `mcp-identity.local` accepted.
    pub fn configure(&self, config: &mut Config) {
        config.identity.source = "files".into();
        config.identity.files.cert = Some(self.path("svid.pem"));
        config.identity.files.key = Some(self.path("svid.key"));
        config.identity.files.bundles.insert(TD.into(), self.path("bundle.pem"));
        config.identity.files.poll_interval_ms = 50;
        config.identity.mtls = true;
        config.identity.trust_domains = vec![TD.into()];
    }

    pub fn agent(&self, spiffe_id: &str) -> Leaf {
        self.ca.leaf(&LeafSpec::svid(spiffe_id)).expect("agent SVID")
    }
}

/// What an mTLS exchange returned.
pub struct TlsReply {
    pub status: StatusCode,
    pub body: String,
    /// The certificate the server presented.
    pub server_cert: CertificateDer<'static>,
}

impl TlsReply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }
}

/// POSTs `body` to `https://addr/mcp` presenting `client` (if any), trusting `roots`.
pub async fn mtls_post(
    addr: SocketAddr,
    client: Option<&Leaf>,
    roots: &[&TestCa],
    body: &'static str,
) -> Result<TlsReply, BoxError> {
    mtls_post_with(addr, client, roots, body, &[]).await
}

/// [`mtls_post`] with extra request headers.
pub async fn mtls_post_with(
    addr: SocketAddr,
    client: Option<&Leaf>,
    roots: &[&TestCa],
    body: &'static str,
    headers: &[(&str, &str)],
) -> Result<TlsReply, BoxError> {
    mtls_request(addr, client, roots, http::Method::POST, body, headers).await
}

/// Any method to `https://addr/mcp` over mTLS.
pub async fn mtls_request(
    addr: SocketAddr,
    client: Option<&Leaf>,
    roots: &[&TestCa],
    method: http::Method,
    body: &'static str,
    headers: &[(&str, &str)],
) -> Result<TlsReply, BoxError> {
    let config = client_tls(client, roots)?;
    mtls_request_using(addr, &config, method, body, headers).await
}

/// A TLS client presenting `client` (if any) and trusting `roots`. rustls keeps session
/// tickets in it: reusing it across connections tries resumption, as a pooled client does.
pub fn client_tls(client: Option<&Leaf>, roots: &[&TestCa]) -> Result<Arc<rustls::ClientConfig>, BoxError> {
    let mut store = rustls::RootCertStore::empty();
    for ca in roots {
        store.add(ca.cert.clone())?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store);
    let config = match client {
        Some(leaf) => builder.with_client_auth_cert(leaf.chain.clone(), leaf.key_der())?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// [`mtls_request`] on a new connection made with `config`.
pub async fn mtls_request_using(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    method: http::Method,
    body: &'static str,
    headers: &[(&str, &str)],
) -> Result<TlsReply, BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    let tls = TlsConnector::from(config.clone()).connect(ServerName::IpAddress(addr.ip().into()), tcp).await?;
    let server_cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).cloned().ok_or("no server cert")?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(format!("https://{addr}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("host", addr.to_string());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(Bytes::from_static(body.as_bytes())))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok(TlsReply { status, body: String::from_utf8_lossy(&bytes).into_owned(), server_cert })
}
