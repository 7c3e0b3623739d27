//! Per-caller limits, after inspection (so refusals carry the request's JSON-RPC id) and
//! before policy (so a flood costs no evaluation): a token-bucket rate limit and a bound
//! on the SSE streams one caller holds open.
//!
//! The caller is the proven SPIFFE ID, else the token's issuer and subject, else the peer
//! address: the strongest name the request has, so one workload cannot dodge its budget
//! by opening new connections, and unauthenticated callers share their address's.
//!
//! Both tables are bounded. When full of live entries they fail closed for callers they do
//! not yet know (429), as the replay cache does: forgetting a caller would reset its budget.
//!
//! With `limits.rate_scope: shared` the token bucket lives in the state backend instead
//! (Redis), so N replicas behind one Service grant a caller one budget, not N. If the
//! backend cannot answer, the request is refused (503) unless `rate_on_state_error:
//! local`, which falls back to this replica's own bucket: a rate limit may degrade to
//! per-replica, it never disappears. Open streams stay per replica: they are held here.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body::Frame;
use tower::Service;

use crate::body::{Body, BodyError};
use crate::context::{ConnInfo, PeerIdentity, VerifiedToken};
use crate::error::{Rejection, Stage, code};
use crate::stage::{Next, PipelineStage, StageFuture};
use crate::state::{RateAnswer, RateSpec, SharedState};

#[derive(Debug, Clone, Copy)]
pub struct CallerLimits {
    /// Requests per second one caller may sustain; `0.0`: no rate limit.
    pub rate_per_second: f64,
    /// Requests a caller may send at once after being idle.
    pub burst: u32,
    /// SSE answers one caller may hold open; `0`: unbounded.
    pub max_streams: usize,
    /// Callers tracked at once by each table.
    pub max_callers: usize,
    /// Where the token buckets live.
    pub rate_scope: RateScope,
}

impl Default for CallerLimits {
    fn default() -> Self {
        CallerLimits {
            rate_per_second: 1000.0,
            burst: 2000,
            max_streams: 64,
            max_callers: 100_000,
            rate_scope: RateScope::Replica,
        }
    }
}

/// `limits.rate_scope`, settled against `state.backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateScope {
    /// This process's memory: each replica grants the full budget.
    Replica,
    /// The shared state backend; when it cannot answer, refuse (503) or fall back to
    /// this replica's own bucket.
    Shared { on_error: OnStateError },
}

/// `limits.rate_on_state_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStateError {
    Refuse,
    Local,
}

/// Who is charged for a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CallerKey {
    Spiffe(Arc<str>),
    Subject { issuer: Arc<str>, subject: Arc<str> },
    Address(IpAddr),
    Unknown,
}

impl CallerKey {
    pub fn of(extensions: &http::Extensions) -> CallerKey {
        if let Some(PeerIdentity::Spiffe(id)) = extensions.get::<PeerIdentity>() {
            return CallerKey::Spiffe(id.spiffe_id.clone());
        }
        if let Some(token) = extensions.get::<VerifiedToken>()
            && let Some(subject) = &token.subject
        {
            return CallerKey::Subject { issuer: token.issuer.clone(), subject: subject.clone() };
        }
        match extensions.get::<ConnInfo>() {
            Some(conn) => CallerKey::Address(conn.remote.ip()),
            None => CallerKey::Unknown,
        }
    }

    /// A fixed-size, unambiguous name for the shared store: each part length-prefixed
    /// under a kind tag, so no SPIFFE ID, subject or address appears in clear there and
    /// no two callers share a digest.
    pub fn digest(&self) -> [u8; 32] {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut part = |bytes: &[u8]| {
            ctx.update(&(bytes.len() as u64).to_be_bytes());
            ctx.update(bytes);
        };
        match self {
            CallerKey::Spiffe(id) => {
                part(b"spiffe");
                part(id.as_bytes());
            }
            CallerKey::Subject { issuer, subject } => {
                part(b"subject");
                part(issuer.as_bytes());
                part(subject.as_bytes());
            }
            CallerKey::Address(ip) => {
                part(b"address");
                part(ip.to_string().as_bytes());
            }
            CallerKey::Unknown => part(b"unknown"),
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Try again after this long.
    Rate(Duration),
    Streams,
    /// A table is full of other callers.
    Callers,
    /// The shared bucket could not be read (`rate_on_state_error: refuse`).
    State(&'static str),
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The token buckets.
struct RateTable {
    rate: f64,
    burst: f64,
    max: usize,
    buckets: DashMap<CallerKey, Bucket>,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last sweep: at most one per second.
    last_sweep_ms: AtomicU64,
}

impl RateTable {
    fn new(limits: &CallerLimits) -> Self {
        RateTable {
            rate: limits.rate_per_second,
            burst: f64::from(limits.burst.max(1)),
            max: limits.max_callers.max(1),
            buckets: DashMap::new(),
            epoch: Instant::now(),
            last_sweep_ms: AtomicU64::new(0),
        }
    }

    fn take(&self, key: &CallerKey, now: Instant) -> Result<(), Refusal> {
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.max {
            self.sweep(now);
            if self.buckets.len() >= self.max {
                return Err(Refusal::Callers);
            }
        }
        let mut bucket = self.buckets.entry(key.clone()).or_insert(Bucket { tokens: self.burst, last: now });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Refusal::Rate(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate)))
        }
    }

    /// Forgets callers whose bucket has refilled: they are indistinguishable from new ones.
    fn sweep(&self, now: Instant) {
        let now_ms = u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX);
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < 1000
            || self.last_sweep_ms.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        let refill = Duration::from_secs_f64(self.burst / self.rate);
        self.buckets.retain(|_, b| now.saturating_duration_since(b.last) < refill);
    }
}

/// Open SSE answers per caller.
struct StreamTable {
    max: usize,
    max_callers: usize,
    open: DashMap<CallerKey, usize>,
}

impl StreamTable {
    /// Takes a slot (checked and counted under the entry's lock, so concurrent requests
    /// cannot overshoot the bound).
    fn reserve(self: &Arc<Self>, key: &CallerKey) -> Result<StreamSlot, Refusal> {
        if !self.open.contains_key(key) && self.open.len() >= self.max_callers {
            return Err(Refusal::Callers);
        }
        let mut open = self.open.entry(key.clone()).or_insert(0);
        if *open >= self.max {
            return Err(Refusal::Streams);
        }
        *open += 1;
        Ok(StreamSlot { table: self.clone(), key: key.clone() })
    }
}

/// One open stream; closing it (the body dropped) frees the caller's slot.
struct StreamSlot {
    table: Arc<StreamTable>,
    key: CallerKey,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        // Removed at zero so the table holds only callers with open streams.
        self.table.open.remove_if_mut(&self.key, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

/// Where a request's rate token is taken.
#[derive(Clone)]
enum RateLimiter {
    Local(Arc<RateTable>),
    Shared {
        state: Arc<SharedState>,
        spec: RateSpec,
        /// This replica's own bucket, used while the backend cannot answer
        /// (`rate_on_state_error: local`).
        fallback: Option<Arc<RateTable>>,
    },
}

impl RateLimiter {
    async fn take(&self, key: &CallerKey) -> Result<(), Refusal> {
        match self {
            RateLimiter::Local(table) => table.take(key, Instant::now()),
            RateLimiter::Shared { state, spec, fallback } => match state.take_rate(key.digest(), *spec).await {
                Ok(RateAnswer::Allowed) => Ok(()),
                Ok(RateAnswer::Wait(wait)) => Err(Refusal::Rate(wait)),
                // Counted and logged by `SharedState`; here only the choice.
                Err(e) => match fallback {
                    Some(table) => table.take(key, Instant::now()),
                    None => Err(Refusal::State(e.kind())),
                },
            },
        }
    }
}

#[derive(Clone)]
pub struct CallerLimitStage {
    rate: Option<RateLimiter>,
    streams: Option<Arc<StreamTable>>,
}

impl CallerLimitStage {
    /// `state` holds the shared buckets with `RateScope::Shared`.
    pub fn new(limits: CallerLimits, state: Arc<SharedState>) -> Self {
        let rate = (limits.rate_per_second > 0.0).then(|| match limits.rate_scope {
            RateScope::Replica => RateLimiter::Local(Arc::new(RateTable::new(&limits))),
            RateScope::Shared { on_error } => RateLimiter::Shared {
                state,
                spec: RateSpec { rate_per_second: limits.rate_per_second, burst: limits.burst },
                fallback: (on_error == OnStateError::Local).then(|| Arc::new(RateTable::new(&limits))),
            },
        });
        let streams = (limits.max_streams > 0).then(|| {
            Arc::new(StreamTable {
                max: limits.max_streams,
                max_callers: limits.max_callers.max(1),
                open: DashMap::new(),
            })
        });
        CallerLimitStage { rate, streams }
    }

    fn refuse(&self, key: &CallerKey, refusal: Refusal) -> Rejection {
        let (reason, message) = match refusal {
            Refusal::Rate(_) => ("rate_limited", "too many requests"),
            Refusal::Streams => ("too_many_streams", "too many open streams"),
            Refusal::Callers => ("too_many_callers", "too many callers"),
            Refusal::State(kind) => {
                // The budget could not be checked: not a pass, and not the caller's fault.
                return Rejection::new(
                    Stage::Limits,
                    "state_unavailable",
                    StatusCode::SERVICE_UNAVAILABLE,
                    code::REQUEST_REFUSED,
                    format!("the request rate cannot be checked right now ({kind})"),
                )
                .with_header(header::RETRY_AFTER, HeaderValue::from(1));
            }
        };
        // Counted and logged (info) at the edge like every refusal; the caller only here.
        tracing::debug!(?key, reason, "caller limit");
        let retry_after = match refusal {
            Refusal::Rate(wait) => wait.as_secs().saturating_add(u64::from(wait.subsec_nanos() > 0)).max(1),
            Refusal::Streams | Refusal::Callers | Refusal::State(_) => 1,
        };
        Rejection::new(Stage::Limits, reason, StatusCode::TOO_MANY_REQUESTS, code::REQUEST_REFUSED, message)
            .with_header(header::RETRY_AFTER, HeaderValue::from(retry_after))
    }
}

impl PipelineStage for CallerLimitStage {
    fn call(&self, req: Request<Body>, mut next: Next) -> StageFuture {
        if self.rate.is_none() && self.streams.is_none() {
            return next.call(req);
        }
        let key = CallerKey::of(req.extensions());
        let id = req.extensions().get::<crate::context::McpRequest>().and_then(|m| m.messages.first()?.id.clone());
        let stage = self.clone();
        Box::pin(async move {
            if let Some(rate) = &stage.rate
                && let Err(refusal) = rate.take(&key).await
            {
                return Err(stage.refuse(&key, refusal).with_id(id));
            }
            let Some(streams) = &stage.streams else { return next.call(req).await };
            // Any request that may be answered with a stream takes a slot before it is
            // forwarded (refusing after the tool ran would lose its answer); a JSON answer
            // gives it back at once.
            if req.method() != Method::GET && req.method() != Method::POST {
                return next.call(req).await;
            }
            let slot = match streams.reserve(&key) {
                Ok(slot) => slot,
                Err(refusal) => return Err(stage.refuse(&key, refusal).with_id(id)),
            };
            let resp = next.call(req).await?;
            let is_stream = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));
            if !is_stream {
                return Ok(resp);
            }
            Ok(resp.map(|body| crate::body::boxed(SlotBody { inner: body, _slot: slot })))
        })
    }
}

/// A stream's body holding its caller's slot.
struct SlotBody {
    inner: Body,
    _slot: StreamSlot,
}

impl http_body::Body for SlotBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> CallerKey {
        CallerKey::Address(IpAddr::from([10, 0, 0, n]))
    }

    fn table(rate: f64, burst: u32, max_callers: usize) -> RateTable {
        RateTable::new(&CallerLimits {
            rate_per_second: rate,
            burst,
            max_streams: 0,
            max_callers,
            ..Default::default()
        })
    }

    #[test]
    fn a_burst_then_the_rate() {
        let t = table(10.0, 3, 10);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.take(&key(1), start), Ok(()));
        }
        let Err(Refusal::Rate(wait)) = t.take(&key(1), start) else { panic!("fourth request passed") };
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100), "{wait:?}");
        // Another caller has its own bucket.
        assert_eq!(t.take(&key(2), start), Ok(()));
        // 100 ms later one token is back, not two.
        let later = start + Duration::from_millis(100);
        assert_eq!(t.take(&key(1), later), Ok(()));
        assert!(t.take(&key(1), later).is_err());
    }

    #[test]
    fn a_full_table_refuses_new_callers_until_old_ones_refill() {
        let t = table(10.0, 1, 2);
        let start = Instant::now();
        assert_eq!(t.take(&key(1), start), Ok(()));
        assert_eq!(t.take(&key(2), start), Ok(()));
        assert_eq!(t.take(&key(3), start), Err(Refusal::Callers));
        // Known callers keep their budget meanwhile.
        assert_eq!(t.take(&key(1), start + Duration::from_millis(100)), Ok(()));
        // Past the refill time (and the one-second sweep spacing) the idle ones go.
        assert_eq!(t.take(&key(3), start + Duration::from_secs(2)), Ok(()));
    }

    #[test]
    fn caller_digests_tell_every_kind_and_part_apart() {
        let subject =
            |issuer: &str, subject: &str| CallerKey::Subject { issuer: issuer.into(), subject: subject.into() };
        let keys = [
            CallerKey::Spiffe("spiffe://td/a".into()),
            CallerKey::Spiffe("spiffe://td/b".into()),
            subject("https://kc/realms/r", "a"),
            // The same bytes split differently between issuer and subject.
            subject("https://kc/realms/ra", ""),
            subject("spiffe://td/a", ""),
            key(1),
            key(2),
            CallerKey::Unknown,
        ];
        let digests: std::collections::HashSet<_> = keys.iter().map(CallerKey::digest).collect();
        assert_eq!(digests.len(), keys.len(), "two callers share a digest");
        assert_eq!(keys[0].digest(), CallerKey::Spiffe("spiffe://td/a".into()).digest(), "stable");
    }

    #[test]
    fn stream_slots_are_freed_when_the_body_goes() {
        let t = Arc::new(StreamTable { max: 2, max_callers: 2, open: DashMap::new() });
        let a = t.reserve(&key(1)).expect("first");
        let b = t.reserve(&key(1)).expect("second");
        assert_eq!(t.reserve(&key(1)).err(), Some(Refusal::Streams));
        let c = t.reserve(&key(2)).expect("another caller");
        assert_eq!(t.reserve(&key(3)).err(), Some(Refusal::Callers));
        drop(a);
        let a = t.reserve(&key(1)).expect("a freed slot");
        drop((a, b, c));
        assert!(t.open.is_empty(), "a caller without streams is still tracked");
    }
}
