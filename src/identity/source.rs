//! Where the SVID material comes from: the SPIFFE Workload API (SPIRE agent socket), or
//! PEM files that something else keeps fresh (cert-manager csi-driver-spiffe,
//! spiffe-helper). Either way a task installs a new [`Material`] on every change; a
//! change that does not build keeps the last good material, counts and logs why.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use spiffe::{JwtSource, X509Source};
use tokio::sync::watch;

use super::material::{KeyUse, Material, MaterialError, RawMaterial, SvidStore, jwt_authorities};
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub enum SvidSource {
    /// `unix:///path` or `tcp://ip:port`; `None`: `SPIFFE_ENDPOINT_SOCKET`.
    WorkloadApi {
        socket: Option<String>,
        jwt_bundles: bool,
    },
    Files(SvidFiles),
}

#[derive(Debug, Clone)]
pub struct SvidFiles {
    /// Leaf first, then intermediates; `None` with `key`: no own SVID (bundles only).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// X.509 bundles (PEM CA certificates) by trust domain.
    pub bundles: BTreeMap<String, PathBuf>,
    /// SPIFFE bundle documents (JWKS with `use`) by trust domain.
    pub jwt_bundles: BTreeMap<String, PathBuf>,
    pub poll_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error(transparent)]
    Material(#[from] MaterialError),
    #[error("workload API: {0}")]
    WorkloadApi(String),
}

impl SvidSource {
    pub fn label(&self) -> &'static str {
        match self {
            SvidSource::WorkloadApi { .. } => "workload_api",
            SvidSource::Files(_) => "files",
        }
    }

    /// Keeps `store` current until `stop` turns true.
    pub async fn run(self, store: Arc<SvidStore>, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
        let label = self.label();
        let install = |result: Result<Material, SourceError>| match result {
            Ok(material) => {
                if let Some(svid) = &material.svid {
                    metrics.svid_expiry.set(svid.not_after);
                    tracing::info!(spiffe_id = %svid.id.spiffe_id, not_after = svid.not_after, source = label,
                        bundles = material.x509_bundles.len(), "SVID material installed");
                }
                store.set(material);
                metrics.svid_updates.with_label_values(&[label, "ok"]).inc();
            }
            Err(e) => {
                metrics.svid_updates.with_label_values(&[label, "error"]).inc();
                tracing::error!(source = label, error = %e, "SVID material not updated; keeping the last good one");
            }
        };
        let provider = super::tls::provider();
        match self {
            SvidSource::Files(files) => {
                let mut last = None;
                // A file that stays unreadable is counted and logged once, not every poll.
                let mut last_error = None;
                loop {
                    match files.read() {
                        Ok(raw) if last.as_ref() != Some(&raw) => {
                            install(files.build(&raw, &provider));
                            last = Some(raw);
                            last_error = None;
                        }
                        Ok(_) => last_error = None,
                        Err(e) if last_error.as_ref() != Some(&e.to_string()) => {
                            last_error = Some(e.to_string());
                            install(Err(e));
                        }
                        Err(_) => {}
                    }
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => return,
                        () = tokio::time::sleep(files.poll_interval) => {}
                    }
                }
            }
            SvidSource::WorkloadApi { socket, jwt_bundles } => {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => {}
                    () = workload_api(socket, jwt_bundles, &provider, install) => {}
                }
            }
        }
    }
}

/// The files' bytes as read, compared to notice a change (a ConfigMap or Secret swap
/// changes the bytes; mtimes of symlinked files do not always change).
#[derive(PartialEq, Eq)]
pub struct FileBytes {
    cert: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
    bundles: Vec<(String, Vec<u8>)>,
    jwt_bundles: Vec<(String, Vec<u8>)>,
}

impl SvidFiles {
    fn read(&self) -> Result<FileBytes, SourceError> {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| SourceError::File { path: path.clone(), reason: e.to_string() })
        };
        let all = |map: &BTreeMap<String, PathBuf>| -> Result<Vec<(String, Vec<u8>)>, SourceError> {
            map.iter().map(|(td, path)| Ok((td.clone(), read(path)?))).collect()
        };
        Ok(FileBytes {
            cert: self.cert.as_ref().map(read).transpose()?,
            key: self.key.as_ref().map(read).transpose()?,
            bundles: all(&self.bundles)?,
            jwt_bundles: all(&self.jwt_bundles)?,
        })
    }

    /// Builds material from what [`Self::read`] returned; also used once at startup to
    /// fail a bad configuration early.
    fn build(&self, bytes: &FileBytes, provider: &Arc<CryptoProvider>) -> Result<Material, SourceError> {
        let pem_error = |path: &Option<PathBuf>, reason: String| SourceError::File {
            path: path.clone().unwrap_or_default(),
            reason,
        };
        let svid = match (&bytes.cert, &bytes.key) {
            (Some(cert), Some(key)) => {
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<_, _>>()
                    .map_err(|e| pem_error(&self.cert, e.to_string()))?;
                let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| pem_error(&self.key, e.to_string()))?;
                Some((chain, key))
            }
            _ => None,
        };
        let mut x509_bundles = Vec::new();
        for (td, pem) in &bytes.bundles {
            let certs = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem_error(&self.bundles.get(td).cloned(), e.to_string()))?;
            x509_bundles.push((td.clone(), certs));
        }
        let mut jwt_bundles = Vec::new();
        for (td, doc) in &bytes.jwt_bundles {
            jwt_bundles.push((td.clone(), jwt_authorities(td, doc, KeyUse::SpiffeBundle)?));
        }
        Ok(Material::build(RawMaterial { svid, x509_bundles, jwt_bundles }, provider)?)
    }

    /// Reads and builds once: for `check-config` and startup.
    pub fn load(&self) -> Result<Material, SourceError> {
        self.build(&self.read()?, &super::tls::provider())
    }
}

/// Follows the Workload API streams until they end for good (the source is shut down).
async fn workload_api(
    socket: Option<String>,
    with_jwt: bool,
    provider: &Arc<CryptoProvider>,
    install: impl Fn(Result<Material, SourceError>),
) {
    let x509 = match &socket {
        Some(socket) => X509Source::builder().endpoint(socket).build().await,
        None => X509Source::builder().build().await,
    };
    let x509 = match x509 {
        Ok(source) => source,
        Err(e) => return install(Err(SourceError::WorkloadApi(e.to_string()))),
    };
    // Serve mTLS as soon as the X.509 material is there; JWT bundles may come later.
    if with_jwt {
        install(from_workload_api(&x509, None, provider));
    }
    let jwt = if with_jwt {
        let built = match &socket {
            Some(socket) => JwtSource::builder().endpoint(socket).build().await,
            None => JwtSource::builder().build().await,
        };
        match built {
            Ok(source) => Some(source),
            Err(e) => return install(Err(SourceError::WorkloadApi(e.to_string()))),
        }
    } else {
        None
    };
    let mut x509_updates = x509.updated();
    let mut jwt_updates = jwt.as_ref().map(JwtSource::updated);
    loop {
        install(from_workload_api(&x509, jwt.as_ref(), provider));
        let jwt_changed = async {
            match jwt_updates.as_mut() {
                Some(updates) => updates.changed().await.map(|_| ()).map_err(|e| e.to_string()),
                None => std::future::pending().await,
            }
        };
        let ended = tokio::select! {
            changed = x509_updates.changed() => changed.err().map(|e| e.to_string()),
            changed = jwt_changed => changed.err(),
        };
        if let Some(reason) = ended {
            tracing::error!(%reason, "workload API source closed; keeping the last material");
            return;
        }
    }
}

fn from_workload_api(
    x509: &X509Source,
    jwt: Option<&JwtSource>,
    provider: &Arc<CryptoProvider>,
) -> Result<Material, SourceError> {
    let api = |e: &dyn std::fmt::Display| SourceError::WorkloadApi(e.to_string());
    let svid = x509.svid().map_err(|e| api(&e))?;
    let chain = svid.cert_chain().iter().map(|c| CertificateDer::from(c.as_bytes().to_vec())).collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(svid.private_key().as_bytes().to_vec()));
    let bundles = x509.bundle_set().map_err(|e| api(&e))?;
    let x509_bundles = bundles
        .iter()
        .map(|(td, bundle)| {
            let certs = bundle.authorities().iter().map(|c| CertificateDer::from(c.as_bytes().to_vec())).collect();
            (td.to_string(), certs)
        })
        .collect();
    let mut jwt_bundles = Vec::new();
    if let Some(jwt) = jwt {
        for (td, bundle) in jwt.bundle_set().map_err(|e| api(&e))?.iter() {
            let keys: Vec<serde_json::Value> =
                bundle.jwt_authorities().filter_map(|a| serde_json::from_slice(a.jwk_json()).ok()).collect();
            let doc = serde_json::json!({ "keys": keys }).to_string();
            let td = td.to_string();
            let authorities = jwt_authorities(&td, doc.as_bytes(), KeyUse::WorkloadApi)?;
            jwt_bundles.push((td, authorities));
        }
    }
    Ok(Material::build(RawMaterial { svid: Some((chain, key)), x509_bundles, jwt_bundles }, provider)?)
}
