//! Connections to the endpoint: TCP or TLS (optionally presenting a client certificate,
//! e.g. an X.509-SVID), HTTP/1.1 or h2 (h2c with prior knowledge on plain TCP, ALPN on TLS).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub type ReqBody = Full<Bytes>;

/// Where and how to connect.
#[derive(Clone)]
pub struct Connector {
    /// `host:port` to dial.
    addr: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    h2: bool,
}

/// Client TLS material, as PEM files.
pub struct TlsFiles<'a> {
    pub ca: Option<&'a Path>,
    pub cert: Option<&'a Path>,
    pub key: Option<&'a Path>,
}

impl Connector {
    pub fn new(url: &http::Uri, h2: bool, files: &TlsFiles<'_>) -> anyhow::Result<Connector> {
        let host = url.host().ok_or_else(|| anyhow!("{url}: no host"))?;
        let https = match url.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => bail!("{url}: only http:// and https:// URLs"),
        };
        let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addr = if bare.contains(':') { format!("[{bare}]:{port}") } else { format!("{bare}:{port}") };
        let tls = if https {
            let name = ServerName::try_from(bare.to_owned()).with_context(|| format!("{bare}: not a server name"))?;
            Some((TlsConnector::from(client_config(files, h2)?), name))
        } else {
            if files.cert.is_some() {
                bail!("a client certificate needs an https:// URL");
            }
            None
        };
        Ok(Connector { addr, tls, h2 })
    }

    pub fn is_h2(&self) -> bool {
        self.h2
    }

    /// A new connection, handshakes done, its driver spawned.
    pub async fn connect(&self) -> Result<Sender, String> {
        let tcp = TcpStream::connect(&self.addr).await.map_err(|_| "connect".to_owned())?;
        tcp.set_nodelay(true).ok();
        match &self.tls {
            None => self.handshake(tcp).await,
            Some((connector, name)) => {
                let tls = connector.connect(name.clone(), tcp).await.map_err(|_| "tls".to_owned())?;
                self.handshake(tls).await
            }
        }
    }

    async fn handshake<S>(&self, io: S) -> Result<Sender, String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        if self.h2 {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|_| "handshake".to_owned())?;
            tokio::spawn(conn);
            Ok(Sender::H2(send))
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|_| "handshake".to_owned())?;
            tokio::spawn(conn);
            Ok(Sender::H1(send))
        }
    }
}

fn client_config(files: &TlsFiles<'_>, h2: bool) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = files.ca.ok_or_else(|| anyhow!("an https:// URL needs --ca (the server's CA bundle)"))?;
    for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match (files.cert, files.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("reading {}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()?;
            let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
            builder.with_client_auth_cert(chain, key)?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => bail!("--cert and --key go together"),
    };
    config.alpn_protocols = if h2 { vec![b"h2".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    Ok(Arc::new(config))
}

pub enum Sender {
    H1(hyper::client::conn::http1::SendRequest<ReqBody>),
    H2(hyper::client::conn::http2::SendRequest<ReqBody>),
}

impl Sender {
    pub async fn send(&mut self, req: Request<ReqBody>) -> Result<Response<Incoming>, String> {
        match self {
            Sender::H1(s) => {
                s.ready().await.map_err(|_| "closed".to_owned())?;
                s.send_request(req).await.map_err(|_| "send".to_owned())
            }
            Sender::H2(s) => {
                s.ready().await.map_err(|_| "closed".to_owned())?;
                s.send_request(req).await.map_err(|_| "send".to_owned())
            }
        }
    }
}
