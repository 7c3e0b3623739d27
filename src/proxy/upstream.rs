//! The terminal service: forwards the authorised request to the tool server over a
//! pooled client and streams its answer back, SSE frame by frame.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiAddrs, GaiResolver, Name};
use hyper_util::rt::TokioExecutor;
use tower::Service;

use super::breaker::{Breaker, Outcome, ceil_secs};
use super::headers;
use super::response::{self, StreamGuard};
use crate::body::{Body, boxed};
use crate::context::{Era, McpRequest, PeerIdentity};
use crate::error::{Rejection, Stage, code};
use crate::metrics::Metrics;
use crate::outbound::OutboundCredentials;

#[derive(Debug, Clone, Copy)]
pub struct UpstreamTimeouts {
    pub connect: Duration,
    /// Until response headers arrive; a stream may then run as long as it likes.
    pub response_header: Duration,
    /// From the headers to the last byte of an answer that is not SSE.
    pub response_body: Duration,
    /// The longest silence inside an SSE stream; `None`: streams may idle for ever.
    pub stream_idle: Option<Duration>,
    pub pool_idle: Duration,
}

impl Default for UpstreamTimeouts {
    fn default() -> Self {
        UpstreamTimeouts {
            connect: Duration::from_secs(5),
            response_header: Duration::from_secs(60),
            response_body: Duration::from_secs(60),
            stream_idle: None,
            pool_idle: Duration::from_secs(90),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("upstream connection failed")]
    Connect(#[source] hyper_util::client::legacy::Error),
    #[error("upstream request failed")]
    Request(#[source] hyper_util::client::legacy::Error),
    #[error("the upstream's answer stalled after its headers")]
    BodyTimeout(response::BodyTimeout),
    #[error("the upstream's answer broke after its headers")]
    BodyBroken(#[source] crate::body::BodyError),
    #[error("the upstream failed with HTTP {}", .0.as_u16())]
    ServerError(StatusCode),
    #[error("upstream URL could not be built")]
    Uri(#[from] http::Error),
    #[error("no credential for the upstream: {0}")]
    Credentials(#[from] crate::outbound::OutboundError),
}

impl UpstreamError {
    fn reason(&self) -> &'static str {
        match self {
            UpstreamError::Timeout(_) => "timeout",
            UpstreamError::Connect(_) => "connect",
            UpstreamError::Request(_) => "request",
            UpstreamError::BodyTimeout(_) => "body_timeout",
            UpstreamError::BodyBroken(_) => "body_broken",
            UpstreamError::ServerError(_) => "server_error",
            UpstreamError::Uri(_) => "uri",
            UpstreamError::Credentials(_) => "credentials",
        }
    }

    /// What the failure says about the tool server, for the circuit breaker: the
    /// transport failed, or it answered (even badly), or it is not the server's doing.
    fn outcome(&self) -> Outcome {
        match self {
            UpstreamError::Timeout(_)
            | UpstreamError::Connect(_)
            | UpstreamError::Request(_)
            | UpstreamError::BodyBroken(_) => Outcome::Failed,
            UpstreamError::BodyTimeout(_) | UpstreamError::ServerError(_) => Outcome::Answered,
            UpstreamError::Uri(_) | UpstreamError::Credentials(_) => Outcome::Neutral,
        }
    }
}

#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector<BoundedResolver>>, Body>,
    url: Arc<Uri>,
    timeouts: UpstreamTimeouts,
    /// Refuses at once while the tool server is known to be down.
    breaker: Arc<Breaker>,
    /// The largest 5xx body read to see whether it is a JSON-RPC error.
    max_error_bytes: usize,
    metrics: Arc<Metrics>,
    /// Where to tell the tool server the caller's SPIFFE ID, if anywhere.
    identity_header: Option<HeaderName>,
    /// The agent's own token and DPoP key, obtained by this sidecar (egress).
    outbound: Option<Arc<OutboundCredentials>>,
}

impl Upstream {
    /// `tls`: the client configuration for an `https` upstream (the sidecar's SVID, the
    /// tool server's expected SPIFFE ID); `None` for plain HTTP.
    pub fn new(
        url: Uri,
        timeouts: UpstreamTimeouts,
        pool_max_idle_per_host: usize,
        metrics: Arc<Metrics>,
        tls: Option<rustls::ClientConfig>,
        breaker: Arc<Breaker>,
        max_error_bytes: usize,
    ) -> Self {
        let resolver = BoundedResolver { inner: GaiResolver::new(), limit: timeouts.connect };
        let mut http = HttpConnector::new_with_resolver(resolver);
        http.set_connect_timeout(Some(timeouts.connect));
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = match tls {
            Some(tls) => {
                HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().wrap_connector(http)
            }
            // Configuration refuses an https URL without TLS settings; this connector
            // only ever speaks plain HTTP.
            None => HttpsConnectorBuilder::new()
                .with_tls_config(no_tls())
                .https_or_http()
                .enable_http1()
                .wrap_connector(http),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(timeouts.pool_idle)
            .pool_max_idle_per_host(pool_max_idle_per_host)
            .build(connector);
        Upstream {
            client,
            url: Arc::new(url),
            timeouts,
            breaker,
            max_error_bytes,
            metrics,
            identity_header: None,
            outbound: None,
        }
    }

    /// Sends every request with the agent's token and a fresh DPoP proof.
    pub fn with_outbound(mut self, outbound: Option<Arc<OutboundCredentials>>) -> Self {
        self.outbound = outbound;
        self
    }

    /// Tells the tool server the caller's verified SPIFFE ID in `header` (the client's own
    /// value of that header is always removed).
    pub fn with_identity_header(mut self, header: Option<HeaderName>) -> Self {
        self.identity_header = header;
        self
    }

    /// The upstream URL with the client's query string, if any.
    fn target(&self, client_uri: &Uri) -> Result<Uri, http::Error> {
        let mut parts = (*self.url).clone().into_parts();
        if let Some(query) = client_uri.query() {
            let path = self.url.path();
            let joined = match self.url.query() {
                Some(own) => format!("{path}?{own}&{query}"),
                None => format!("{path}?{query}"),
            };
            parts.path_and_query = Some(joined.parse().map_err(http::Error::from)?);
        }
        Uri::from_parts(parts).map_err(http::Error::from)
    }

    async fn forward(self, req: Request<Body>) -> Result<Response<Body>, UpstreamError> {
        let (mut parts, body) = req.into_parts();
        parts.uri = self.target(&parts.uri)?;
        // Clients may speak h2 to us; the pooled upstream connection is HTTP/1.1.
        parts.version = Version::HTTP_11;
        headers::sanitize_request(&mut parts.headers);
        if let Some(name) = &self.identity_header {
            // Only the identity this sidecar proved: never a value the client sent.
            parts.headers.remove(name);
            if let Some(PeerIdentity::Spiffe(id)) = parts.extensions.get::<PeerIdentity>()
                && let Ok(value) = HeaderValue::from_str(&id.spiffe_id)
            {
                parts.headers.insert(name.clone(), value);
            }
        }
        // Who waits for an answer on a stream: told if the stream breaks before it.
        let pending = parts.extensions.get::<McpRequest>().and_then(|m| match m.messages.as_slice() {
            [one] => one.id.clone().map(|id| (id, m.era)),
            _ => None,
        });
        let started = Instant::now();
        let resp = match self.outbound.clone() {
            None => {
                parts.extensions = http::Extensions::new();
                self.send(Request::from_parts(parts, body)).await?
            }
            Some(outbound) => {
                // The body was read whole by inspection: it can be sent again.
                let bytes = parts.extensions.get::<McpRequest>().map(|m| m.body.clone()).unwrap_or_default();
                self.send_with_credentials(&outbound, &parts, bytes).await?
            }
        };
        let class = status_class(resp.status());
        self.metrics.upstream_duration.with_label_values(&[class]).observe(started.elapsed().as_secs_f64());
        let (mut parts, body) = resp.into_parts();
        headers::sanitize_response(&mut parts.headers);
        let is_sse = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));
        let body = boxed(body);
        if is_sse && !parts.status.is_server_error() {
            let body = StreamGuard::new(body, &self.metrics, pending, self.timeouts.stream_idle);
            return Ok(Response::from_parts(parts, boxed(body)));
        }
        if parts.status.is_server_error() {
            let limit = self.timeouts.response_body;
            return response::server_error(parts, body, self.max_error_bytes, limit, &self.metrics)
                .await
                .map_err(UpstreamError::ServerError);
        }
        let body =
            response::first_frame(body, self.timeouts.response_body, &self.metrics).await.map_err(|e| match e {
                response::FirstFrameError::Timeout(t) => UpstreamError::BodyTimeout(t),
                response::FirstFrameError::Broken(b) => UpstreamError::BodyBroken(b),
            })?;
        Ok(Response::from_parts(parts, body))
    }
}

impl Upstream {
    async fn send(&self, req: Request<Body>) -> Result<Response<hyper::body::Incoming>, UpstreamError> {
        let limit = self.timeouts.response_header;
        match tokio::time::timeout(limit, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout(limit)),
            Ok(Err(e)) if e.is_connect() => Err(UpstreamError::Connect(e)),
            Ok(Err(e)) => Err(UpstreamError::Request(e)),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// RFC 9449 as a client: `Authorization: DPoP` and a fresh proof on every attempt; one
    /// retry with the server's nonce on `use_dpop_nonce` (kept for the next requests), one
    /// with a new token on `invalid_token` — never a loop.
    async fn send_with_credentials(
        &self,
        outbound: &OutboundCredentials,
        parts: &http::request::Parts,
        body: Bytes,
    ) -> Result<Response<hyper::body::Incoming>, UpstreamError> {
        let (mut nonce_retried, mut token_retried) = (false, false);
        let mut refused: Option<Arc<str>> = None;
        loop {
            let credential = outbound.credential(refused.as_deref()).await?;
            let nonce = outbound.nonce();
            let proof = credential.key.proof(
                parts.method.as_str(),
                outbound.htu(),
                Some(&credential.token),
                nonce.as_deref(),
            )?;
            let mut req = Request::builder().method(parts.method.clone()).uri(parts.uri.clone()).version(parts.version);
            if let Some(headers) = req.headers_mut() {
                headers.clone_from(&parts.headers);
                let auth = HeaderValue::from_str(&format!("DPoP {}", credential.token));
                let dpop = HeaderValue::from_str(&proof);
                let (Ok(auth), Ok(dpop)) = (auth, dpop) else {
                    return Err(
                        crate::outbound::OutboundError::BadAnswer("the token is not a header value".into()).into()
                    );
                };
                headers.insert(header::AUTHORIZATION, auth);
                headers.insert(HeaderName::from_static("dpop"), dpop);
            }
            let resp = self.send(req.body(crate::body::full(body.clone()))?).await?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            let challenge = resp.headers().get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or("");
            let new_nonce = resp.headers().get("dpop-nonce").and_then(|v| v.to_str().ok());
            if challenge.contains("use_dpop_nonce")
                && !nonce_retried
                && let Some(new_nonce) = new_nonce
            {
                outbound.set_nonce(new_nonce);
                nonce_retried = true;
                continue;
            }
            if challenge.contains("invalid_token") && !token_retried {
                tracing::info!("the upstream refused the token; refreshing it once");
                refused = Some(credential.token.clone());
                token_retried = true;
                continue;
            }
            return Ok(resp);
        }
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl Service<Request<Body>> for Upstream {
    type Response = Response<Body>;
    type Error = Rejection;
    type Future = BoxFuture<'static, Result<Response<Body>, Rejection>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Rejection>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let mcp = req.extensions().get::<McpRequest>();
        let id = mcp.and_then(|m| m.messages.first()?.id.clone());
        let era = mcp.map_or(Era::Legacy, |m| m.era);
        let this = self.clone();
        Box::pin(async move {
            let breaker = this.breaker.clone();
            let permit = match breaker.admit() {
                Ok(permit) => permit,
                Err(refused) => {
                    // Counted with the failures: an outage keeps showing (and alerting)
                    // while the breaker spares the tool server.
                    this.metrics.upstream_errors.with_label_values(&["circuit_open"]).inc();
                    let retry_after = ceil_secs(refused.retry_after);
                    let why = if refused.probing { "probing whether it is back" } else { "it failed repeatedly" };
                    let mut rejection = Rejection::new(
                        Stage::Upstream,
                        "circuit_open",
                        StatusCode::SERVICE_UNAVAILABLE,
                        code::UPSTREAM_UNAVAILABLE,
                        format!("the tool server is not being called for now: {why}; retry in {retry_after}s"),
                    )
                    .with_id(id)
                    .with_header(header::RETRY_AFTER, HeaderValue::from(retry_after));
                    rejection.era = era;
                    return Err(rejection);
                }
            };
            let metrics = this.metrics.clone();
            let result = this.forward(req).await;
            breaker.record(permit, result.as_ref().err().map_or(Outcome::Answered, UpstreamError::outcome));
            result.map_err(|e| {
                // A stalled body is counted by its deadline.
                if !matches!(e, UpstreamError::BodyTimeout(_)) {
                    metrics.upstream_errors.with_label_values(&[e.reason()]).inc();
                }
                tracing::warn!(error = %e, cause = ?std::error::Error::source(&e), "upstream failed");
                let (status, code) = match e {
                    UpstreamError::Timeout(_) | UpstreamError::BodyTimeout(_) => {
                        (StatusCode::GATEWAY_TIMEOUT, code::UPSTREAM_TIMEOUT)
                    }
                    // The agent's credential, not the tool server, is missing: try again later.
                    UpstreamError::Credentials(_) => (StatusCode::SERVICE_UNAVAILABLE, code::UPSTREAM_UNAVAILABLE),
                    // The server's status, without what it said (see `response::server_error`).
                    UpstreamError::ServerError(status) => (status, code::UPSTREAM_UNAVAILABLE),
                    _ => (StatusCode::BAD_GATEWAY, code::UPSTREAM_UNAVAILABLE),
                };
                let mut rejection =
                    Rejection::new(Stage::Upstream, e.reason(), status, code, e.to_string()).with_id(id);
                rejection.era = era;
                rejection
            })
        })
    }
}

/// The system resolver bounded by the connect timeout: a resolver that does not answer
/// (no network, dropped queries) is a connect failure like a refused port, not a wait
/// through the resolver's own retries with no bound of ours.
#[derive(Clone)]
struct BoundedResolver {
    inner: GaiResolver,
    limit: Duration,
}

impl Service<Name> for BoundedResolver {
    type Response = GaiAddrs;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, Result<GaiAddrs, std::io::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let (lookup, limit) = (self.inner.call(name), self.limit);
        Box::pin(async move {
            tokio::time::timeout(limit, lookup)
                .await
                .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "name resolution timed out")))
        })
    }
}

/// A client configuration that trusts nobody, for the plain-HTTP connector.
fn no_tls() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(crate::identity::tls::provider())
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth())
        .unwrap_or_else(|_| {
            rustls::ClientConfig::builder().with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth()
        })
}
