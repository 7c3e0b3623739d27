//! What needs no body: refusing a foreign `Host`, the wrong path and a foreign `Origin`,
//! and answering the protected resource metadata (RFC 9728) when credentials are checked.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{Either, Ready, ready};
use http::{HeaderValue, Request, Response, StatusCode, header};
use tower::{Layer, Service};

use super::host::AllowedHosts;
use crate::auth::metadata::ResourceMetadata;
use crate::body::{Body, full};
use crate::error::{Rejection, Stage, code};

#[derive(Clone)]
pub struct GuardLayer {
    mcp_path: Arc<str>,
    /// `scheme://host[:port]` origins, or `scheme://host:*` (MCP: validate Origin against
    /// DNS rebinding). Requests without `Origin` (non-browser clients) pass.
    allowed_origins: Arc<[String]>,
    /// `None`: any `Host` (a wildcard listener with no public URL to derive names from).
    allowed_hosts: Option<Arc<AllowedHosts>>,
    metadata: Option<Arc<ResourceMetadata>>,
}

impl GuardLayer {
    pub fn new(
        mcp_path: &str,
        allowed_origins: &[String],
        allowed_hosts: Option<AllowedHosts>,
        metadata: Option<ResourceMetadata>,
    ) -> Self {
        let allowed_origins = allowed_origins.iter().map(|o| o.trim_end_matches('/').to_ascii_lowercase()).collect();
        GuardLayer {
            mcp_path: mcp_path.into(),
            allowed_origins,
            allowed_hosts: allowed_hosts.map(Arc::new),
            metadata: metadata.map(Arc::new),
        }
    }

    /// The metadata document, when `req` asks for it.
    fn metadata_answer<B>(&self, req: &Request<B>) -> Option<Response<Body>> {
        let metadata = self.metadata.as_ref().filter(|m| m.serves(req.uri().path()))?;
        let mut resp = Response::new(full(metadata.document.clone()));
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Some(resp)
    }

    pub fn check<B>(&self, req: &Request<B>) -> Result<(), Rejection> {
        if let Some(hosts) = &self.allowed_hosts
            && !hosts.allows(req)
        {
            return Err(Rejection::new(
                Stage::Listener,
                "host",
                StatusCode::FORBIDDEN,
                code::REQUEST_REFUSED,
                "host not allowed",
            ));
        }
        if req.uri().path() != &*self.mcp_path {
            return Err(Rejection::new(
                Stage::Listener,
                "not_found",
                StatusCode::NOT_FOUND,
                code::REQUEST_REFUSED,
                "not found",
            ));
        }
        for origin in req.headers().get_all(header::ORIGIN) {
            let allowed = origin.to_str().is_ok_and(|o| self.allowed_origins.iter().any(|a| origin_matches(a, o)));
            if !allowed {
                return Err(Rejection::new(
                    Stage::Listener,
                    "origin",
                    StatusCode::FORBIDDEN,
                    code::REQUEST_REFUSED,
                    "origin not allowed",
                ));
            }
        }
        Ok(())
    }
}

/// `allowed` is an exact origin, or `scheme://host:*` for any port of that host.
fn origin_matches(allowed: &str, origin: &str) -> bool {
    let origin = origin.trim_end_matches('/');
    match allowed.strip_suffix(":*") {
        Some(host) => {
            let Some(rest) =
                origin.get(..host.len()).filter(|o| o.eq_ignore_ascii_case(host)).map(|_| &origin[host.len()..])
            else {
                return false;
            };
            rest.is_empty()
                || rest
                    .strip_prefix(':')
                    .is_some_and(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
        }
        None => allowed.eq_ignore_ascii_case(origin),
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;
    fn layer(&self, inner: S) -> Guard<S> {
        Guard { inner, layer: self.clone() }
    }
}

#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    layer: GuardLayer,
}

impl<S> Service<Request<Body>> for Guard<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Rejection>,
{
    type Response = Response<Body>;
    type Error = Rejection;
    type Future = Either<S::Future, Ready<Result<Response<Body>, Rejection>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Rejection>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if let Some(answer) = self.layer.metadata_answer(&req) {
            return Either::Right(ready(Ok(answer)));
        }
        match self.layer.check(&req) {
            Ok(()) => Either::Left(self.inner.call(req)),
            Err(rejection) => Either::Right(ready(Err(rejection))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::origin_matches;

    #[test]
    fn origin_patterns() {
        assert!(origin_matches("http://127.0.0.1:*", "http://127.0.0.1:8080"));
        assert!(origin_matches("http://127.0.0.1:*", "http://127.0.0.1"));
        assert!(origin_matches("https://app.example.com", "https://APP.example.com"));
        assert!(!origin_matches("http://127.0.0.1:*", "http://127.0.0.1.evil.com"));
        assert!(!origin_matches("http://127.0.0.1:*", "http://127.0.0.1:80x"));
        assert!(!origin_matches("http://127.0.0.1:*", "http://127.0.0.1:"));
        assert!(!origin_matches("http://localhost:*", "https://localhost:8080"));
        assert!(!origin_matches("https://app.example.com", "https://app.example.com.evil.com"));
        assert!(!origin_matches("https://app.example.com", "null"));
    }
}
