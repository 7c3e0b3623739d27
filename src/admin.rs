//! The admin listener: `/metrics`, `/healthz` (process up), `/readyz` (policy loaded;
//! when credentials are checked, the issuers' signing keys fetched; with a SPIFFE
//! source, the first SVID material installed and the sidecar's SVID not expired; with a
//! shared state backend, its last operation or health check answered; the upstream's
//! circuit breaker not open).

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use crate::auth::config::AuthSettings;
use crate::body::{Body, full, text_response};
use crate::identity::material::SvidStore;
use crate::metrics::Metrics;
use crate::policy::PolicyStore;
use crate::state::SharedState;

#[derive(Clone)]
pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub policies: Arc<PolicyStore>,
    /// When credentials are checked, readiness also needs the issuers' keys.
    pub auth: Option<Arc<AuthSettings>>,
    /// With a SPIFFE source, readiness needs its first material.
    pub svid: Option<Arc<SvidStore>>,
    /// With outbound credentials, readiness needs a valid token for the agent.
    pub outbound: Option<Arc<crate::outbound::OutboundCredentials>>,
    /// Replay checks and sessions need their backend (Redis) answering.
    pub state: Arc<SharedState>,
    /// Not ready while the upstream's circuit is open (its back-off running).
    pub breaker: Arc<crate::proxy::breaker::Breaker>,
}

impl Admin {
    pub fn answer(&self, req: &Request<Body>) -> Response<Body> {
        if req.method() != Method::GET {
            return text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        match req.uri().path() {
            "/metrics" => {
                let mut resp = Response::new(full(self.metrics.render()));
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
                resp
            }
            "/healthz" => text_response(StatusCode::OK, "ok\n"),
            "/readyz" if !self.policies.is_ready() => {
                text_response(StatusCode::SERVICE_UNAVAILABLE, "not ready: no policy loaded\n")
            }
            "/readyz" if self.auth.as_ref().is_some_and(|a| !a.tokens.is_ready()) => {
                text_response(StatusCode::SERVICE_UNAVAILABLE, "not ready: issuer signing keys not fetched\n")
            }
            "/readyz" if self.svid.as_ref().is_some_and(|s| !s.has_material()) => {
                text_response(StatusCode::SERVICE_UNAVAILABLE, "not ready: no SVID from the SPIFFE source yet\n")
            }
            "/readyz" if self.svid.as_ref().is_some_and(|s| own_svid_expired(s)) => {
                text_response(StatusCode::SERVICE_UNAVAILABLE, "not ready: the sidecar's SVID has expired\n")
            }
            "/readyz" if self.outbound.as_ref().is_some_and(|o| !o.is_ready()) => {
                text_response(StatusCode::SERVICE_UNAVAILABLE, "not ready: no outbound token for the agent\n")
            }
            "/readyz" if !self.state.is_up() => {
                text_response(StatusCode::SERVICE_UNAVAILABLE, "not ready: the state backend (redis) does not answer\n")
            }
            "/readyz" if self.breaker.open_reason().is_some() => {
                let reason = self.breaker.open_reason().unwrap_or_else(|| "upstream circuit open".into());
                let mut resp = Response::new(full(format!("not ready: {reason}\n")));
                *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
                resp
            }
            "/readyz" => match self.policies.current() {
                // Which policy decides, for the operator comparing pods after a rollout.
                Some(set) => {
                    let mut resp =
                        Response::new(crate::body::full(format!("ready\npolicy revision: {}\n", set.revision())));
                    resp.headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
                    resp
                }
                None => text_response(StatusCode::OK, "ready\n"),
            },
            _ => text_response(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    pub fn service(
        self,
    ) -> impl tower::Service<
        Request<Body>,
        Response = Response<Body>,
        Error = Infallible,
        Future = std::future::Ready<Result<Response<Body>, Infallible>>,
    > + Clone
    + Send
    + 'static {
        tower::service_fn(move |req: Request<Body>| std::future::ready(Ok::<_, Infallible>(self.answer(&req))))
    }
}

/// The sidecar's own SVID is past its notAfter: rotation stalled, peers will refuse it.
fn own_svid_expired(store: &SvidStore) -> bool {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    store.load().svid.as_ref().is_some_and(|svid| svid.not_after < i64::try_from(now).unwrap_or(i64::MAX))
}
