//! The identity stage: who is calling, as a typed [`PeerIdentity`] extension.
//!
//! Today the one proof available is locality: a sidecar that listens on the pod's
//! loopback interface is only reachable by containers of its own pod, which share the
//! pod's SPIFFE identity. mTLS X.509-SVIDs and JWT-SVIDs plug in here next.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use tower::{Layer, Service};

use crate::body::Body;
use crate::context::{ConnInfo, IdentitySource, PeerIdentity, SpiffeIdentity};

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

    /// The identity proven by how `req` reached us.
    pub fn identify<B>(&self, req: &Request<B>) -> PeerIdentity {
        let loopback = req.extensions().get::<ConnInfo>().is_some_and(|c| c.remote.ip().is_loopback());
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
