//! The `identity:` section: who callers are, and where the sidecar's own SPIFFE
//! material comes from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;

use super::material::SvidStore;
use super::parse_spiffe_id;
use super::source::{SvidFiles, SvidSource};
use crate::context::{IdentitySource, SpiffeIdentity};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// SPIFFE ID given to callers on the loopback interface (the sidecar's own pod).
    pub local_spiffe_id: Option<String>,
    /// Where the sidecar's SVID and the trust bundles come from: `none`, `workload_api`
    /// or `files`.
    pub source: String,
    /// The Workload API endpoint (`unix:///run/spire/agent.sock`); default:
    /// `SPIFFE_ENDPOINT_SOCKET`.
    pub workload_api_socket: Option<String>,
    pub files: FilesConfig,
    /// Serve MCP over TLS with the sidecar's SVID and require a client X.509-SVID.
    pub mtls: bool,
    /// Trust domains whose SVIDs (X.509 and JWT) are accepted. Required with `mtls` or
    /// `jwt_svid`: federation is a decision, not a default.
    pub trust_domains: Vec<String>,
    pub handshake_timeout_ms: u64,
    pub jwt_svid: JwtSvidConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub bundles: BTreeMap<String, PathBuf>,
    pub jwt_bundles: BTreeMap<String, PathBuf>,
    pub poll_interval_ms: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtSvidConfig {
    /// The request header carrying a JWT-SVID, e.g. `x-spiffe-jwt-svid`; unset: off.
    pub header: Option<String>,
    /// Accepted `aud` values (at least one must be present in the SVID).
    pub audiences: Vec<String>,
    /// Refuse messages without one (else the connection's identity stands).
    pub required: bool,
    /// JWT authorities published by a SPIRE OIDC Discovery Provider, by trust domain:
    /// `{mcp-identity.local: https://oidc-discovery.example.org}` (its issuer URL; the
    /// JWKS is found by discovery, refreshed on an unknown `kid`).
    pub oidc_discovery: BTreeMap<String, String>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            local_spiffe_id: None,
            source: "none".into(),
            workload_api_socket: None,
            files: FilesConfig::default(),
            mtls: false,
            trust_domains: Vec::new(),
            handshake_timeout_ms: 10_000,
            jwt_svid: JwtSvidConfig::default(),
        }
    }
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            cert: None,
            key: None,
            bundles: BTreeMap::new(),
            jwt_bundles: BTreeMap::new(),
            poll_interval_ms: 1_000,
        }
    }
}

/// The checked section.
pub struct IdentitySettings {
    pub local: Option<SpiffeIdentity>,
    pub source: Option<SvidSource>,
    pub mtls: bool,
    pub trust_domains: BTreeSet<String>,
    pub handshake_timeout: Duration,
    pub jwt_svid: Option<JwtSvidSettings>,
    /// Shared by the listener, the upstream client and JWT-SVID verification.
    pub store: Arc<SvidStore>,
}

pub struct JwtSvidSettings {
    pub header: HeaderName,
    pub audiences: Vec<String>,
    pub required: bool,
    /// Issuer URLs of SPIRE OIDC Discovery Providers by trust domain.
    pub oidc_discovery: BTreeMap<String, String>,
}

/// A problem with one key of the section.
#[derive(Debug)]
pub struct IdentityConfigError {
    pub key: &'static str,
    pub problem: String,
}

impl IdentityConfig {
    pub fn validate(&self) -> Result<IdentitySettings, IdentityConfigError> {
        let invalid = |key, problem: String| IdentityConfigError { key, problem };
        let store = Arc::new(SvidStore::default());
        let local = match &self.local_spiffe_id {
            None => None,
            Some(id) => Some(
                parse_spiffe_id(id, IdentitySource::Local)
                    .map_err(|e| invalid("identity.local_spiffe_id", format!("{id:?}: {e}")))?,
            ),
        };
        let source = match self.source.as_str() {
            "none" => None,
            "workload_api" => {
                if let Some(socket) = &self.workload_api_socket
                    && !(socket.starts_with("unix:///") || socket.starts_with("tcp://"))
                {
                    return Err(invalid(
                        "identity.workload_api_socket",
                        format!("{socket:?} must be unix:///path or tcp://ip:port"),
                    ));
                }
                Some(SvidSource::WorkloadApi {
                    socket: self.workload_api_socket.clone(),
                    jwt_bundles: self.jwt_svid.header.is_some(),
                })
            }
            "files" => {
                let files = &self.files;
                if files.cert.is_some() != files.key.is_some() {
                    return Err(invalid("identity.files", "cert and key go together".into()));
                }
                if files.bundles.is_empty() && files.jwt_bundles.is_empty() {
                    return Err(invalid("identity.files.bundles", "at least one trust bundle is needed".into()));
                }
                if !(10..=3_600_000).contains(&files.poll_interval_ms) {
                    return Err(invalid("identity.files.poll_interval_ms", "must be between 10 and 3600000".into()));
                }
                let svid_files = SvidFiles {
                    cert: files.cert.clone(),
                    key: files.key.clone(),
                    bundles: files.bundles.clone(),
                    jwt_bundles: files.jwt_bundles.clone(),
                    poll_interval: Duration::from_millis(files.poll_interval_ms),
                };
                // Unreadable or invalid files at startup are a configuration error;
                // later, a bad rotation keeps the last good material.
                store.set(svid_files.load().map_err(|e| invalid("identity.files", e.to_string()))?);
                Some(SvidSource::Files(svid_files))
            }
            other => {
                return Err(invalid("identity.source", format!("{other:?} must be none, workload_api or files")));
            }
        };
        let mut trust_domains = BTreeSet::new();
        for td in &self.trust_domains {
            let parsed = parse_spiffe_id(&format!("spiffe://{td}"), IdentitySource::Mtls);
            if parsed.is_err() || td.contains('/') {
                return Err(invalid("identity.trust_domains", format!("{td:?} is not a trust domain name")));
            }
            trust_domains.insert(td.clone());
        }
        let needs_source = |key, what: &str| {
            if source.is_none() {
                return Err(invalid(key, format!("{what} needs identity.source (workload_api or files)")));
            }
            if trust_domains.is_empty() {
                return Err(invalid("identity.trust_domains", format!("{what} needs the accepted trust domains")));
            }
            Ok(())
        };
        if self.mtls {
            needs_source("identity.mtls", "mTLS")?;
            if let Some(SvidSource::Files(files)) = &source
                && files.cert.is_none()
            {
                return Err(invalid("identity.files.cert", "mTLS needs the sidecar's own SVID".into()));
            }
        }
        let jwt_svid = match &self.jwt_svid.header {
            None => None,
            Some(name) => {
                needs_source("identity.jwt_svid.header", "JWT-SVID")?;
                let header = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| invalid("identity.jwt_svid.header", format!("{name:?} is not a header name")))?;
                if self.jwt_svid.audiences.is_empty() {
                    return Err(invalid("identity.jwt_svid.audiences", "JWT-SVIDs need an audience".into()));
                }
                for (td, url) in &self.jwt_svid.oidc_discovery {
                    let ok = url
                        .parse::<http::Uri>()
                        .is_ok_and(|u| matches!(u.scheme_str(), Some("https" | "http")) && u.authority().is_some());
                    if !ok || !trust_domains.contains(td) {
                        return Err(invalid(
                            "identity.jwt_svid.oidc_discovery",
                            format!("{td}: {url:?} must be an http(s) URL of an accepted trust domain"),
                        ));
                    }
                }
                Some(JwtSvidSettings {
                    header,
                    audiences: self.jwt_svid.audiences.clone(),
                    required: self.jwt_svid.required,
                    oidc_discovery: self.jwt_svid.oidc_discovery.clone(),
                })
            }
        };
        if self.handshake_timeout_ms == 0 {
            return Err(invalid("identity.handshake_timeout_ms", "must be greater than 0".into()));
        }
        Ok(IdentitySettings {
            local,
            source,
            mtls: self.mtls,
            trust_domains,
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            jwt_svid,
            store,
        })
    }
}
