//! The edge: gives each request its decision id and span, turns any [`Rejection`] into
//! the client's answer (the one rescue), and records the request metric.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::body::Body;
use crate::context::{DecisionId, Era, MethodLabel};
use crate::error::{Rejection, Stage};
use crate::metrics::Metrics;

/// Header carrying the decision id back to the client, to match its error to our log.
pub const DECISION_ID_HEADER: &str = "mcp-pep-decision-id";

#[derive(Clone)]
pub struct EdgeLayer {
    metrics: Arc<Metrics>,
    expose_reasons: bool,
}

impl EdgeLayer {
    pub fn new(metrics: Arc<Metrics>, expose_reasons: bool) -> Self {
        EdgeLayer { metrics, expose_reasons }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;
    fn layer(&self, inner: S) -> Edge<S> {
        Edge { inner, layer: self.clone() }
    }
}

#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    layer: EdgeLayer,
}

impl<S> Service<Request<Body>> for Edge<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Rejection> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Stages are always ready (no backpressure below the edge); readiness is
        // checked per call so a failure there is answered, not propagated.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let started = Instant::now();
        let decision_id = DecisionId::new();
        req.extensions_mut().insert(decision_id.clone());
        let span = tracing::info_span!("request", %decision_id, http.method = %req.method(), path = req.uri().path());
        // Refusals before inspection (credentials, path) still answer a 2026-07-28 client
        // in its own codes.
        let modern = crate::mcp::era::header_is_modern(req.headers());
        let inner = self.inner.clone();
        let layer = self.layer.clone();
        Box::pin(
            async move {
                let result = tower::ServiceExt::oneshot(inner, req).await;
                let (mut resp, method, outcome) = match result {
                    Ok(resp) => {
                        let method = resp.extensions().get::<MethodLabel>().map_or("none", |m| m.0);
                        (resp, method, "forwarded")
                    }
                    Err(mut rejection) => {
                        if modern {
                            rejection.era = Era::Modern;
                        }
                        layer.rescue(rejection)
                    }
                };
                if let Ok(value) = HeaderValue::from_str(decision_id.as_str()) {
                    resp.headers_mut().insert(DECISION_ID_HEADER, value);
                }
                let elapsed = started.elapsed();
                layer.metrics.request_duration.with_label_values(&[method, outcome]).observe(elapsed.as_secs_f64());
                tracing::debug!(
                    status = resp.status().as_u16(),
                    method,
                    outcome,
                    elapsed_us = elapsed.as_micros() as u64,
                    "answered"
                );
                Ok(resp)
            }
            .instrument(span),
        )
    }
}

impl EdgeLayer {
    fn rescue(&self, rejection: Rejection) -> (Response<Body>, &'static str, &'static str) {
        let outcome = match rejection.stage {
            Stage::Policy => "denied",
            Stage::Upstream => "upstream_error",
            _ => "rejected",
        };
        self.metrics.rejections.with_label_values(&[rejection.stage.as_str(), rejection.reason]).inc();
        if rejection.stage != Stage::Policy {
            // Policy denials are logged with their reasons by the policy stage.
            tracing::info!(stage = rejection.stage.as_str(), reason = rejection.reason, message = %rejection.message, "refused");
        }
        let method = rejection.method;
        (rejection.into_response(self.expose_reasons), method, outcome)
    }
}
