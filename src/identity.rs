//! The identity stage: who is calling, as a typed [`PeerIdentity`] extension.
//!
//! Two proofs come from the connection: a client X.509-SVID verified during the mTLS
//! handshake (against the trust bundles of [`material`], kept fresh by a [`source`]),
//! and locality: a sidecar listening on the pod's loopback interface is only reachable
//! by containers of its own pod, which share the pod's SPIFFE identity. JWT-SVIDs and
//! SPIFFE IDs inside access tokens are credentials, checked by the `auth` stage.

pub mod config;
pub mod material;
pub mod source;
pub mod svid;
pub mod tls;

use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use tower::{Layer, Service};

use crate::body::Body;
use crate::context::{ConnInfo, IdentitySource, PeerIdentity, PeerSvid, SpiffeIdentity};
use crate::listener::OnHandshake;
use crate::metrics::Metrics;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("a SPIFFE ID starts with spiffe://")]
    Scheme,
    #[error("the trust domain is empty or has characters outside [a-z0-9._-]")]
    TrustDomain,
    #[error("the path has an empty, '.' or '..' segment or characters outside [A-Za-z0-9._-]")]
    Path,
    #[error("a SPIFFE ID has no query, fragment, port or user info")]
    Extra,
}

/// Parses a SPIFFE ID by the SPIFFE-ID specification §2 (lowercase trust domain, path
/// segments of `[A-Za-z0-9._-]`, no `.`/`..` segments, no query/fragment/port).
pub fn parse_spiffe_id(id: &str, source: IdentitySource) -> Result<SpiffeIdentity, SpiffeIdError> {
    let rest = id.strip_prefix("spiffe://").ok_or(SpiffeIdError::Scheme)?;
    let (trust_domain, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if trust_domain.contains([':', '@', '?', '#']) || path.contains(['?', '#']) {
        return Err(SpiffeIdError::Extra);
    }
    let td_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_');
    if trust_domain.is_empty() || !trust_domain.bytes().all(td_ok) {
        return Err(SpiffeIdError::TrustDomain);
    }
    if !path.is_empty() {
        let seg_ok = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        };
        if !path[1..].split('/').all(seg_ok) {
            return Err(SpiffeIdError::Path);
        }
    }
    Ok(SpiffeIdentity { spiffe_id: id.into(), trust_domain: trust_domain.into(), path: path.into(), source })
}

/// Inserts the caller's [`PeerIdentity`].
#[derive(Clone, Default)]
pub struct IdentityLayer {
    /// The identity of loopback callers: the sidecar's own workload.
    local: Option<Arc<SpiffeIdentity>>,
}

impl IdentityLayer {
    pub fn new(local: Option<SpiffeIdentity>) -> Self {
        IdentityLayer { local: local.map(Arc::new) }
    }

    /// The identity proven by how `req` reached us: the client SVID of an mTLS
    /// connection, else the pod's own identity for a loopback caller.
    pub fn identify<B>(&self, req: &Request<B>) -> PeerIdentity {
        let conn = req.extensions().get::<ConnInfo>();
        if let Some(svid) = conn.and_then(|c| c.peer_svid.as_ref()) {
            return PeerIdentity::Spiffe(svid.identity.clone());
        }
        let loopback = conn.is_some_and(|c| c.remote.ip().is_loopback());
        match &self.local {
            Some(local) if loopback => PeerIdentity::Spiffe((**local).clone()),
            _ => PeerIdentity::Anonymous,
        }
    }
}

impl<S> Layer<S> for IdentityLayer {
    type Service = Identity<S>;
    fn layer(&self, inner: S) -> Identity<S> {
        Identity { inner, layer: self.clone() }
    }
}

#[derive(Clone)]
pub struct Identity<S> {
    inner: S,
    layer: IdentityLayer,
}

impl<S: Service<Request<Body>>> Service<Request<Body>> for Identity<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> S::Future {
        let identity = self.layer.identify(&req);
        req.extensions_mut().insert(identity);
        self.inner.call(req)
    }
}

/// The listener's handshake callback: the verified client SVID becomes a [`PeerSvid`];
/// every outcome is counted by reason and refusals are logged.
pub fn on_handshake(metrics: Arc<Metrics>) -> OnHandshake {
    Arc::new(move |outcome| {
        let result = match outcome {
            Ok(Some(leaf)) => match svid::leaf_spiffe_id(leaf, IdentitySource::Mtls) {
                Ok(identity) => {
                    let x5t_s256 = svid::x5t_s256(leaf).into();
                    metrics.tls_handshakes.with_label_values(&["ok"]).inc();
                    return Some(Arc::new(PeerSvid { identity, x5t_s256 }));
                }
                // The verifier ran the same rules; reaching this is a bug, and it denies.
                Err(e) => e.reason(),
            },
            Ok(None) => "no_client_certificate",
            Err(e) => handshake_error_reason(e),
        };
        metrics.tls_handshakes.with_label_values(&[result]).inc();
        match outcome {
            Err(e) => tracing::info!(reason = result, error = %e, "TLS handshake refused"),
            Ok(_) => tracing::warn!(reason = result, "TLS handshake passed the verifier, but the peer is not an SVID"),
        }
        None
    })
}

/// A bounded label for a failed handshake.
fn handshake_error_reason(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::TimedOut {
        return "timeout";
    }
    let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else { return "io" };
    match tls {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            match other.0.downcast_ref::<tls::PeerCertError>() {
                Some(tls::PeerCertError::Svid(e)) => e.reason(),
                Some(tls::PeerCertError::TrustDomain(_)) => "trust_domain",
                Some(tls::PeerCertError::NoBundle(_)) => "no_bundle",
                Some(tls::PeerCertError::UnexpectedId { .. }) => "unexpected_id",
                None => "bad_certificate",
            }
        }
        rustls::Error::InvalidCertificate(
            rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. },
        ) => "expired",
        rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidYet | rustls::CertificateError::NotValidYetContext { .. },
        ) => "not_yet_valid",
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => "unknown_issuer",
        rustls::Error::InvalidCertificate(_) => "bad_certificate",
        rustls::Error::NoCertificatesPresented => "no_client_certificate",
        _ => "tls_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_ids() {
        let id = parse_spiffe_id("spiffe://mcp-identity.local/ns/mcp-agents/sa/trusted-agent", IdentitySource::Local)
            .unwrap();
        assert_eq!(&*id.trust_domain, "mcp-identity.local");
        assert_eq!(&*id.path, "/ns/mcp-agents/sa/trusted-agent");
        assert_eq!(&*parse_spiffe_id("spiffe://td", IdentitySource::Local).unwrap().path, "");
    }

    #[test]
    fn refuses_invalid_ids() {
        let bad = [
            ("http://td/x", SpiffeIdError::Scheme),
            ("spiffe://", SpiffeIdError::TrustDomain),
            ("spiffe://TD/x", SpiffeIdError::TrustDomain),
            ("spiffe://td:443/x", SpiffeIdError::Extra),
            ("spiffe://user@td/x", SpiffeIdError::Extra),
            ("spiffe://td/x?q=1", SpiffeIdError::Extra),
            ("spiffe://td/x#f", SpiffeIdError::Extra),
            ("spiffe://td/", SpiffeIdError::Path),
            ("spiffe://td/a//b", SpiffeIdError::Path),
            ("spiffe://td/a/../b", SpiffeIdError::Path),
            ("spiffe://td/a/./b", SpiffeIdError::Path),
            ("spiffe://td/a%20b", SpiffeIdError::Path),
        ];
        for (id, err) in bad {
            assert_eq!(parse_spiffe_id(id, IdentitySource::Local).unwrap_err(), err, "{id}");
        }
    }
}
