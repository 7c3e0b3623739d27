//! What comes back from the tool server, bounded: an SSE stream is counted while it lives,
//! ends with a JSON-RPC error event when it breaks (or, when configured, idles) before the
//! request's answer; any other answer must arrive whole within a deadline; a 5xx answer
//! reaches the client only when it is a JSON-RPC error.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::time::{Instant, Sleep};

use crate::body::{Body, BodyError, boxed};
use crate::context::{Era, JsonRpcId};
use crate::error::{Rejection, Stage, code};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
#[error("the tool server's answer stalled: not complete within {0:?} of its headers")]
pub struct BodyTimeout(pub Duration);

/// A body that must end within `limit` of its creation (the headers' arrival); past it, an
/// error (hyper then aborts the answer: the client sees a broken connection or a reset
/// stream, never a hang). The timer is armed only when the body makes the reader wait:
/// an answer already in the buffer costs none.
pub struct Deadline {
    inner: Body,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    limit: Duration,
    errors: prometheus::IntCounter,
}

impl Deadline {
    pub fn new(inner: Body, limit: Duration, metrics: &Metrics) -> Self {
        let errors = metrics.upstream_errors.with_label_values(&["body_timeout"]);
        // Checked at most a day by configuration; the fallback is for ever.
        let deadline =
            Instant::now().checked_add(limit).unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        Deadline { inner, deadline, sleep: None, limit, errors }
    }
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        let deadline = self.deadline;
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.errors.inc();
                tracing::warn!(limit = ?self.limit, "the tool server's answer stalled; cutting it");
                Poll::Ready(Some(Err(BodyError(Box::new(BodyTimeout(self.limit))))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// `first` (already read), then the rest of `rest`.
struct Prepended {
    first: Option<Frame<Bytes>>,
    rest: Deadline,
}

impl http_body::Body for Prepended {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.first.take() {
            Some(first) => Poll::Ready(Some(Ok(first))),
            None => Pin::new(&mut self.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }
}

/// Why a non-SSE answer failed before its first byte went out.
#[derive(Debug, thiserror::Error)]
pub enum FirstFrameError {
    #[error(transparent)]
    Timeout(#[from] BodyTimeout),
    #[error("the tool server's answer broke after its headers")]
    Broken(#[source] BodyError),
}

/// Waits for the first frame of a non-SSE answer before its headers go out, so the
/// common failures (headers, then nothing; headers, then a reset) are answered with a
/// status and a JSON-RPC error; a stall later in the body cuts it.
pub async fn first_frame(body: Body, limit: Duration, metrics: &Metrics) -> Result<Body, FirstFrameError> {
    if http_body::Body::is_end_stream(&body) {
        return Ok(body);
    }
    let mut rest = Deadline::new(body, limit, metrics);
    match rest.frame().await {
        None => Ok(crate::body::empty()),
        Some(Err(e)) if e.0.is::<BodyTimeout>() => Err(BodyTimeout(limit).into()),
        Some(Err(e)) => Err(FirstFrameError::Broken(e)),
        Some(Ok(first)) => Ok(boxed(Prepended { first: Some(first), rest })),
    }
}

/// A 5xx answer: passed when its body is a JSON-RPC error response (what the server
/// chose to tell its client, as it would be on a 200); anything else (an HTML error page,
/// a stack trace, a proxy's text) is replaced by the proxy's own error with the request's
/// id and the upstream's status, so internals never reach the agent.
pub async fn server_error(
    parts: http::response::Parts,
    body: Body,
    max_bytes: usize,
    limit: Duration,
    metrics: &Metrics,
) -> Result<http::Response<Body>, StatusCode> {
    let json = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"));
    // Not JSON, or compressed: nothing to pass, nothing worth reading.
    if json && !parts.headers.contains_key(http::header::CONTENT_ENCODING) {
        let collected = http_body_util::Limited::new(Deadline::new(body, limit, metrics), max_bytes).collect().await;
        if let Ok(collected) = collected {
            let bytes = collected.to_bytes();
            if is_jsonrpc_error(&bytes) {
                return Ok(http::Response::from_parts(parts, crate::body::full(bytes)));
            }
        }
    }
    Err(parts.status)
}

/// One JSON-RPC 2.0 error response (or a batch of responses, at least one an error).
fn is_jsonrpc_error(bytes: &[u8]) -> bool {
    let Ok(value) = crate::strict_json::parse(bytes, 64) else { return false };
    let one = |v: &serde_json::Value| {
        v.get("jsonrpc").and_then(|j| j.as_str()) == Some("2.0")
            && v.get("id").is_some()
            && v.get("error").is_some_and(|e| e["code"].is_i64() && e["message"].is_string())
    };
    match &value {
        serde_json::Value::Array(items) => !items.is_empty() && items.iter().all(one),
        other => one(other),
    }
}

/// Counts an SSE response as an active stream for as long as its body lives. When the
/// tool server's stream breaks (or stays silent past `idle`) before the request's answer
/// went by, the client gets a JSON-RPC error event for it and a clean end instead of a
/// torn stream it may wait on.
pub struct StreamGuard {
    inner: Body,
    gauge: prometheus::IntGauge,
    /// The request waiting on this stream and its era (for the error code).
    pending: Option<(JsonRpcId, Era)>,
    /// A data frame looked like an answer (`"result"` / `"error"`): no error is added,
    /// since a second answer to one id would confuse the client more than a torn stream.
    maybe_answered: bool,
    ended: bool,
    idle: Option<(Duration, Pin<Box<Sleep>>, prometheus::IntCounter)>,
}

impl StreamGuard {
    pub fn new(inner: Body, metrics: &Metrics, pending: Option<(JsonRpcId, Era)>, idle: Option<Duration>) -> Self {
        metrics.active_streams.inc();
        let idle = idle.map(|limit| {
            (limit, Box::pin(tokio::time::sleep(limit)), metrics.upstream_errors.with_label_values(&["stream_idle"]))
        });
        StreamGuard { inner, gauge: metrics.active_streams.clone(), pending, maybe_answered: false, ended: false, idle }
    }

    fn error_event(id: &JsonRpcId, era: Era, message: &str) -> Bytes {
        let mut rejection = Rejection::new(
            Stage::Upstream,
            "stream_broken",
            StatusCode::BAD_GATEWAY,
            code::UPSTREAM_UNAVAILABLE,
            message,
        );
        rejection.era = era;
        let body = rejection.error_body(Some(id), &rejection.message, false);
        Bytes::from(format!("event: message\ndata: {body}\n\n"))
    }

    /// Ends the stream: with an error event when its request is still unanswered.
    fn end(&mut self, message: &str) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.ended = true;
        match self.pending.clone() {
            Some((id, era)) if !self.maybe_answered => {
                Poll::Ready(Some(Ok(Frame::data(Self::error_event(&id, era, message)))))
            }
            _ => Poll::Ready(None),
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl http_body::Body for StreamGuard {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if !self.maybe_answered
                    && let Some(data) = frame.data_ref()
                {
                    self.maybe_answered = contains(data, b"\"result\"") || contains(data, b"\"error\"");
                }
                if let Some((limit, sleep, _)) = self.idle.as_mut()
                    && let Some(next) = Instant::now().checked_add(*limit)
                {
                    sleep.as_mut().reset(next);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) if self.pending.is_some() && !self.maybe_answered => {
                tracing::warn!(error = %e, "the tool server's stream broke before its answer");
                self.end("the tool server's stream ended before its answer")
            }
            Poll::Pending => {
                let Some((limit, sleep, errors)) = self.idle.as_mut() else { return Poll::Pending };
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                errors.inc();
                tracing::warn!(limit = ?*limit, "the tool server's stream was silent too long; ending it");
                self.end("the tool server's stream was silent too long")
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::is_jsonrpc_error;

    #[test]
    fn only_jsonrpc_errors_count_as_such() {
        let cases: [(&str, bool); 9] = [
            (r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"internal"}}"#, true),
            (r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"x","data":{}}}"#, true),
            (r#"[{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"x"}}]"#, true),
            (r#"{"jsonrpc":"2.0","id":1,"result":{}}"#, false),
            (r#"{"error":"Traceback (most recent call last): ..."}"#, false),
            (r#"{"jsonrpc":"2.0","id":1,"error":{"code":"E1","message":"x"}}"#, false),
            (r#"{"jsonrpc":"2.0","id":1,"id":2,"error":{"code":-1,"message":"x"}}"#, false),
            ("<html><body>500 Internal Server Error</body></html>", false),
            ("[]", false),
        ];
        for (body, want) in cases {
            assert_eq!(is_jsonrpc_error(body.as_bytes()), want, "{body}");
        }
    }
}
