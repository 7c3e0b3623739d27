//! Shared state: what the request path must remember between requests — DPoP proofs
//! already used (RFC 9449 §11.1) and legacy sessions bound to their creator — behind one
//! small interface, [`StateStore`], kept in this process ([`MemoryState`], the default)
//! or in Redis ([`RedisState`]), so that replicas behind one Service refuse a proof that
//! another replica accepted and honour a session that another replica bound.
//!
//! Every operation answers or fails with a [`StateError`]. Callers fail closed on an
//! error (503): a replay check that could not be made is not a pass, and a session that
//! could not be looked up is not the caller's.
//!
//! [`SharedState`] wraps the backend with what every operation needs: its latency
//! histogram, its error counter, a log line, and the up/down flag `/readyz` reads.
//!
//! Imports no stage: the credentials and session stages both use it.
//!
//! `first_use` also charges the proof to its key's quota (`jkt`), in memory and on Redis,
//! so one key cannot fill the store. With `limits.rate_scope: shared` the per-caller token
//! bucket lives here too ([`StateStore::take_rate`]), so replicas share one budget.

pub mod config;
pub mod memory;
pub mod redis;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use aws_lc_rs::digest;

use crate::metrics::Metrics;

pub use memory::MemoryState;
pub use redis::{RedisSettings, RedisState};

/// What a backend operation returns: boxed so that [`StateStore`] stays object-safe.
pub type StateFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StateError>> + Send + 'a>>;

/// The replay cache's bounds (`auth.dpop_replay_entries[_per_key]`).
#[derive(Debug, Clone, Copy)]
pub struct ReplayLimits {
    /// Live entries in all (memory; Redis is bounded by its own `maxmemory`).
    pub capacity: usize,
    /// Live entries one DPoP key may hold.
    pub per_key: usize,
    /// The longest a proof stays replayable: `proof_lifetime_s + 2 × clock_skew_s + 1`
    /// (an `iat` up to the skew ahead, accepted up to lifetime + skew after it). Redis
    /// counts each key's proofs in windows this long.
    pub window_secs: u64,
}

impl Default for ReplayLimits {
    fn default() -> Self {
        ReplayLimits {
            capacity: memory::DEFAULT_REPLAY_CAPACITY,
            per_key: memory::DEFAULT_REPLAY_ENTRIES_PER_KEY,
            window_secs: 41,
        }
    }
}

/// A token bucket, as the shared rate limit keeps it: `rate` requests per second
/// sustained, `burst` at once after being idle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSpec {
    pub rate_per_second: f64,
    pub burst: u32,
}

/// The answer to "may this caller send one more request now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateAnswer {
    Allowed,
    /// Over budget: the next request would be allowed after this long.
    Wait(std::time::Duration),
}

/// The answer to "has this DPoP proof been used?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstUse {
    /// Never seen inside its window: recorded now.
    New,
    /// Recorded before and not yet expired: a replay.
    Seen,
    /// The in-memory cache is at its cap of live entries (never from Redis).
    Full,
    /// The proof's key holds its share of the store (`auth.dpop_replay_entries_per_key`).
    KeyQuota,
}

/// What a presented session id turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionLookup {
    /// Bound to this owner; its idle expiry was just renewed.
    Owned,
    /// Bound to someone else (left untouched).
    Foreign,
    /// Never bound, ended, or idle past its timeout.
    Unknown,
}

/// Who created a session: the SPIFFE ID, token issuer and subject and DPoP key
/// thumbprint, as the session stage reads them from the request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionOwner {
    pub spiffe_id: Option<Arc<str>>,
    pub issuer: Option<Arc<str>>,
    pub subject: Option<Arc<str>>,
    pub jkt: Option<Arc<str>>,
}

impl SessionOwner {
    /// A fixed-size, unambiguous digest of the owner: what the backends store and
    /// compare. Redis then holds no SPIFFE ID or subject in clear, and each field is
    /// length-prefixed (absent ≠ empty), so no two owners share a digest by concatenation.
    pub fn digest(&self) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"mcp-pep session owner v1\0");
        for field in [&self.spiffe_id, &self.issuer, &self.subject, &self.jkt] {
            match field {
                None => ctx.update(&[0]),
                Some(value) => {
                    ctx.update(&[1]);
                    ctx.update(&(value.len() as u64).to_be_bytes());
                    ctx.update(value.as_bytes());
                }
            }
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }
}

/// Why the backend could not answer. Never carries a key, a session id or a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// No answer within the configured timeout (slow, or reconnecting).
    #[error("the {backend} state backend did not answer within {timeout_ms} ms")]
    Timeout { backend: &'static str, timeout_ms: u64 },
    /// Connection refused, dropped, TLS or AUTH failure.
    #[error("the {backend} state backend is unreachable: {message}")]
    Unavailable { backend: &'static str, message: String },
    /// An answer that the operation does not expect (e.g. a key of another type).
    #[error("the {backend} state backend answered unexpectedly: {message}")]
    Protocol { backend: &'static str, message: String },
}

impl StateError {
    /// A bounded label for the error counter.
    pub fn kind(&self) -> &'static str {
        match self {
            StateError::Timeout { .. } => "timeout",
            StateError::Unavailable { .. } => "unavailable",
            StateError::Protocol { .. } => "protocol",
        }
    }
}

/// A place to keep shared state. Implementations do the I/O only; [`SharedState`] adds
/// metrics, logs and the health flag around every call.
pub trait StateStore: Send + Sync + 'static {
    /// `memory` or `redis`: a metric label and a log field.
    fn backend(&self) -> &'static str;

    /// Records the DPoP replay key (the digest of (jti, htu)) as used until `expires_at`
    /// (Unix seconds, inclusive), unless it already is: one atomic step, so two replicas
    /// seeing the same proof at once cannot both answer [`FirstUse::New`].
    /// `jkt` is the proof key's thumbprint, charged for the entry: past its quota the
    /// answer is [`FirstUse::KeyQuota`] and nothing is recorded.
    fn first_use<'a>(&'a self, key: [u8; 32], jkt: &'a str, expires_at: u64, now: u64) -> StateFuture<'a, FirstUse>;

    /// Binds session `id` to `owner` (a [`SessionOwner::digest`]) for the idle timeout.
    fn bind_session<'a>(&'a self, id: &'a str, owner: [u8; 32]) -> StateFuture<'a, ()>;

    /// Looks `id` up for `owner`; when it is theirs, renews its idle expiry in the same
    /// step.
    fn touch_session<'a>(&'a self, id: &'a str, owner: [u8; 32]) -> StateFuture<'a, SessionLookup>;

    /// Forgets session `id` (DELETE).
    fn end_session<'a>(&'a self, id: &'a str) -> StateFuture<'a, ()>;

    /// Takes one request from the token bucket of `caller` (a digest of the caller's
    /// name), kept where every replica sees it. Only shared backends keep buckets: the
    /// limits stage keeps a process's own in memory, and the configuration allows
    /// `limits.rate_scope: shared` only with one of those.
    fn take_rate(&self, caller: [u8; 32], spec: RateSpec) -> StateFuture<'_, RateAnswer> {
        let _ = (caller, spec);
        let backend = self.backend();
        Box::pin(async move { Err(StateError::Protocol { backend, message: "keeps no shared rate buckets".into() }) })
    }

    /// Periodic upkeep, every few seconds: sweep expired entries (memory), check the
    /// connection (Redis, `PING`). An error here marks the backend down.
    fn maintain(&self, now: u64) -> StateFuture<'_, ()>;

    /// Live replay entries, when the backend can tell cheaply (memory only).
    fn replay_entries(&self) -> Option<usize> {
        None
    }

    /// Bound sessions, when the backend can tell cheaply (memory only).
    fn session_count(&self) -> Option<usize> {
        None
    }
}

/// The operations, as metric labels.
#[derive(Debug, Clone, Copy)]
enum Op {
    FirstUse,
    BindSession,
    TouchSession,
    EndSession,
    TakeRate,
    Ping,
}

impl Op {
    const ALL: [Op; 6] = [Op::FirstUse, Op::BindSession, Op::TouchSession, Op::EndSession, Op::TakeRate, Op::Ping];

    fn as_str(self) -> &'static str {
        match self {
            Op::FirstUse => "dpop_first_use",
            Op::BindSession => "session_bind",
            Op::TouchSession => "session_touch",
            Op::EndSession => "session_end",
            Op::TakeRate => "rate_take",
            Op::Ping => "ping",
        }
    }
}

/// The backend every stage shares, instrumented. One per proxy instance.
pub struct SharedState {
    store: Box<dyn StateStore>,
    metrics: Arc<Metrics>,
    /// Each operation's histogram, looked up once: the memory backend's operations take
    /// about as long as a label lookup.
    durations: [prometheus::Histogram; 6],
    /// False after an operation failed, true again after one succeeded: `/readyz`.
    up: AtomicBool,
}

impl SharedState {
    /// `up`: whether to report ready before the first operation (a remote backend
    /// starts down until its first health check answers).
    pub fn new(store: Box<dyn StateStore>, metrics: Arc<Metrics>, up: bool) -> Self {
        metrics.state_up.with_label_values(&[store.backend()]).set(i64::from(up));
        let durations = Op::ALL.map(|op| metrics.state_duration.with_label_values(&[store.backend(), op.as_str()]));
        SharedState { store, metrics, durations, up: AtomicBool::new(up) }
    }

    /// The in-process backend without a per-key replay quota (benches, tests); the
    /// server builds it from the settings, quota included.
    pub fn memory(replay_capacity: usize, session_idle_secs: u64, max_sessions: usize, metrics: Arc<Metrics>) -> Self {
        let store = MemoryState::with_replay_quota(replay_capacity, replay_capacity, session_idle_secs, max_sessions);
        SharedState::new(Box::new(store), metrics, true)
    }

    /// The backend the checked settings name; Redis is connected lazily.
    pub fn from_settings(
        settings: &config::StateSettings,
        replay: ReplayLimits,
        session_idle_secs: u64,
        max_sessions: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StateError> {
        Ok(match settings {
            config::StateSettings::Memory => {
                let store =
                    MemoryState::with_replay_quota(replay.capacity, replay.per_key, session_idle_secs, max_sessions);
                SharedState::new(Box::new(store), metrics, true)
            }
            config::StateSettings::Redis(redis) => {
                let store = RedisState::new(redis, replay)?;
                tracing::info!(target = store.target(), pool = redis.pool_size, "state backend: redis");
                SharedState::new(Box::new(store), metrics, false)
            }
        })
    }

    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// Whether the last operation (or health check) succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub async fn first_use(&self, key: [u8; 32], jkt: &str, expires_at: u64, now: u64) -> Result<FirstUse, StateError> {
        self.observe(Op::FirstUse, self.store.first_use(key, jkt, expires_at, now)).await
    }

    pub async fn bind_session(&self, id: &str, owner: &SessionOwner) -> Result<(), StateError> {
        let result = self.observe(Op::BindSession, self.store.bind_session(id, owner.digest())).await;
        self.count_sessions();
        result
    }

    pub async fn touch_session(&self, id: &str, owner: &SessionOwner) -> Result<SessionLookup, StateError> {
        let result = self.observe(Op::TouchSession, self.store.touch_session(id, owner.digest())).await;
        if result == Ok(SessionLookup::Unknown) {
            // An idle session the memory backend just dropped.
            self.count_sessions();
        }
        result
    }

    pub async fn end_session(&self, id: &str) -> Result<(), StateError> {
        let result = self.observe(Op::EndSession, self.store.end_session(id)).await;
        self.count_sessions();
        result
    }

    pub async fn take_rate(&self, caller: [u8; 32], spec: RateSpec) -> Result<RateAnswer, StateError> {
        self.observe(Op::TakeRate, self.store.take_rate(caller, spec)).await
    }

    /// Sweeps or pings; updates the health flag and the gauges. Called every few seconds.
    pub async fn maintain(&self, now: u64) {
        let _ = self.observe(Op::Ping, self.store.maintain(now)).await;
        if let Some(entries) = self.store.replay_entries() {
            self.metrics.dpop_replay_entries.set(i64::try_from(entries).unwrap_or(i64::MAX));
        }
        self.count_sessions();
    }

    fn count_sessions(&self) {
        if let Some(n) = self.store.session_count() {
            self.metrics.sessions.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    async fn observe<T>(&self, op: Op, call: StateFuture<'_, T>) -> Result<T, StateError> {
        let started = Instant::now();
        let result = call.await;
        let backend = self.store.backend();
        self.durations[op as usize].observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(_) => {
                if !self.up.swap(true, Ordering::Relaxed) {
                    tracing::info!(backend, "state backend answers");
                    self.metrics.state_up.with_label_values(&[backend]).set(1);
                }
            }
            Err(e) => {
                self.metrics.state_errors.with_label_values(&[backend, op.as_str(), e.kind()]).inc();
                if self.up.swap(false, Ordering::Relaxed) {
                    self.metrics.state_up.with_label_values(&[backend]).set(0);
                }
                tracing::warn!(backend, op = op.as_str(), error = %e, "state backend operation failed; refusing");
            }
        }
        result
    }
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState").field("backend", &self.backend()).field("up", &self.is_up()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(jkt: Option<&str>) -> SessionOwner {
        SessionOwner {
            spiffe_id: Some("spiffe://td/a".into()),
            issuer: Some("https://kc/realms/r".into()),
            subject: Some("sub".into()),
            jkt: jkt.map(Arc::from),
        }
    }

    #[test]
    fn owner_digest_tells_every_field_apart() {
        assert_eq!(owner(Some("k")).digest(), owner(Some("k")).digest());
        assert_ne!(owner(Some("k")).digest(), owner(Some("l")).digest());
        assert_ne!(owner(None).digest(), owner(Some("")).digest());
        let shifted = SessionOwner { subject: Some("subk".into()), jkt: Some("".into()), ..owner(None) };
        assert_ne!(shifted.digest(), owner(Some("k")).digest());
    }

    #[test]
    fn each_operation_indexes_its_own_histogram() {
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i, "{}", op.as_str());
        }
    }

    #[tokio::test]
    async fn errors_mark_the_backend_down_and_count() {
        struct Broken;
        impl StateStore for Broken {
            fn backend(&self) -> &'static str {
                "broken"
            }
            fn first_use<'a>(&'a self, _: [u8; 32], _: &'a str, _: u64, _: u64) -> StateFuture<'a, FirstUse> {
                Box::pin(async { Err(StateError::Timeout { backend: "broken", timeout_ms: 1 }) })
            }
            fn bind_session<'a>(&'a self, _: &'a str, _: [u8; 32]) -> StateFuture<'a, ()> {
                Box::pin(async { Ok(()) })
            }
            fn touch_session<'a>(&'a self, _: &'a str, _: [u8; 32]) -> StateFuture<'a, SessionLookup> {
                Box::pin(async { Ok(SessionLookup::Unknown) })
            }
            fn end_session<'a>(&'a self, _: &'a str) -> StateFuture<'a, ()> {
                Box::pin(async { Ok(()) })
            }
            fn maintain(&self, _: u64) -> StateFuture<'_, ()> {
                Box::pin(async { Ok(()) })
            }
        }
        let metrics = Arc::new(Metrics::new().unwrap());
        let state = SharedState::new(Box::new(Broken), metrics.clone(), true);
        assert!(state.is_up());
        assert!(state.first_use([0; 32], "jkt", 10, 1).await.is_err());
        assert!(!state.is_up());
        assert_eq!(metrics.state_errors.with_label_values(&["broken", "dpop_first_use", "timeout"]).get(), 1);
        assert_eq!(metrics.state_up.with_label_values(&["broken"]).get(), 0);
        state.maintain(1).await;
        assert!(state.is_up(), "a good health check brings it back");
        assert_eq!(metrics.state_up.with_label_values(&["broken"]).get(), 1);
    }
}
