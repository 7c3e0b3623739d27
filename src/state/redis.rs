//! The Redis backend (`state.backend: redis`): replicas behind one Service share their
//! DPoP replay cache and session bindings.
//!
//! Keys, under the configured prefix (default `mcp-pep:`):
//!
//! | key | value | expiry | written by |
//! |---|---|---|---|
//! | `dpop:{<hex SHA-256 of jkt>}:<hex SHA-256 of (jti, htu)>` | `1` | the proof's window (`PX`) | [`FIRST_USE`]: one atomic "first time seen, within the key's quota" |
//! | `dpopkey:{<hex SHA-256 of jkt>}:<window number>` | proofs recorded for that key in that window | two windows | the same script |
//! | `session:<hex SHA-256 of the id>` | hex owner digest | the idle timeout, renewed on use | `SET … PX` (bind), a script (check + `PEXPIRE`), `DEL` |
//! | `rate:<hex SHA-256 of the caller>` | the bucket's theoretical arrival time (ms) | until the bucket is full again | [`TAKE_RATE`] (`limits.rate_scope: shared`) |
//!
//! Neither a `jti`, a key thumbprint, a session id, a caller nor an owner is stored in
//! clear: what `MONITOR` or a dump shows cannot be replayed or presented. Each request
//! costs one command (`EVALSHA`) for its proof, one for the shared rate limit when it is
//! on and, for a legacy session, one more (a new session: `SET`; a known one: `EVALSHA`).
//! Every key expires on its own: nothing grows without bound.
//!
//! Each script names all its keys in `KEYS`, and the replay script's keys share one
//! hash tag (the DPoP key's), so the layout is Redis Cluster's; the client, though, is a
//! standalone one: a Redis primary, or an address that follows the primary (a Sentinel-
//! aware proxy, a managed endpoint). Why not Sentinel or Cluster clients: docs/deployment.md.
//!
//! Connections: `pool_size` multiplexed connections, each a `redis` crate
//! `ConnectionManager` that reconnects on its own; requests are spread over them round
//! robin. Every command is bounded by `timeout` here, whatever the connection is doing
//! (reconnecting, or a server that stopped answering): the caller gets
//! [`StateError::Timeout`] and refuses the request. No connection is made at start, so a
//! sidecar whose Redis is down starts, reports not ready, and recovers without a restart.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, IntoConnectionInfo, RedisError, Script, TlsCertificates};

use super::{FirstUse, RateAnswer, RateSpec, ReplayLimits, SessionLookup, StateError, StateFuture, StateStore};

const BACKEND: &str = "redis";

/// Records a DPoP proof's first use unless it was seen, or its key already holds its
/// quota: 0 recorded, 1 seen (a replay), 2 the key's quota is used up (nothing recorded).
/// KEYS: the proof, its key's counter for this window and for the previous one.
/// ARGV: the proof's expiry (ms), the quota, the counter's expiry (ms).
///
/// A proof lives at most one window (`ReplayLimits::window_secs`), so the proofs of a
/// key alive now were all recorded in this window or the last: their sum bounds the
/// key's live entries, as the memory backend's exact count does (more strictly: a key is
/// refused a little earlier, never later).
const FIRST_USE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
local live = tonumber(redis.call('GET', KEYS[2]) or '0') + tonumber(redis.call('GET', KEYS[3]) or '0')
if live >= tonumber(ARGV[2]) then return 2 end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 0
";

/// One request from a caller's token bucket, as GCRA keeps it: one number, the time at
/// which the bucket would be full again. 0: allowed; else the milliseconds to wait.
/// Redis's own clock (`TIME`), so replicas whose clocks differ share one budget.
/// ARGV: milliseconds per request (1000 / rate), the burst × that.
const TAKE_RATE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + tonumber(ARGV[1])
local wait = new_tat - tonumber(ARGV[2]) - now
if wait > 0 then return math.max(1, math.ceil(wait)) end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.max(1, math.ceil(new_tat - now)))
return 0
";

/// Renews a session's idle expiry only when it belongs to the caller, in one step:
/// 0 unknown, 1 the caller's (renewed), 2 someone else's (left alone).
const TOUCH_SESSION: &str = r"
local owner = redis.call('GET', KEYS[1])
if not owner then return 0 end
if owner ~= ARGV[1] then return 2 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// The checked `state.redis` settings.
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://host:port/db` or `rediss://host:port/db` (TLS).
    pub url: String,
    /// ACL user (`AUTH user pass`); default: the URL's, else none.
    pub username: Option<String>,
    /// `AUTH` password, from a file (a mounted Secret); default: the URL's, else none.
    pub password: Option<String>,
    /// PEM CA certificates for `rediss://` (a private CA); default: the system roots.
    pub ca_pem: Option<Vec<u8>>,
    pub key_prefix: String,
    /// The longest any one command may take, reconnection included.
    pub timeout: Duration,
    /// The longest one connection attempt may take.
    pub connect_timeout: Duration,
    pub pool_size: usize,
    /// A bound session unused this long expires.
    pub session_idle: Duration,
}

impl RedisSettings {
    /// `scheme://host:port/db`, never user or password: what logs and errors may show.
    pub fn display_target(&self) -> String {
        redact_url(&self.url)
    }
}

/// Never prints the password, nor a password in the URL.
impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &self.display_target())
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<set>"))
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("pool_size", &self.pool_size)
            .field("session_idle", &self.session_idle)
            .finish()
    }
}

fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "<unparsable URL>".into(),
    }
}

pub struct RedisState {
    pool: Vec<ConnectionManager>,
    next: AtomicUsize,
    prefix: String,
    timeout: Duration,
    session_idle_ms: u64,
    replay: ReplayLimits,
    first_use: Script,
    touch: Script,
    take_rate: Script,
    target: String,
}

impl RedisState {
    /// The client and its connection managers; connects lazily, on first use. Needs a
    /// tokio runtime (the managers' tasks).
    pub fn new(settings: &RedisSettings, replay: ReplayLimits) -> Result<RedisState, StateError> {
        let unavailable = |e: RedisError| StateError::Unavailable { backend: BACKEND, message: describe(&e) };
        let mut info = settings.url.as_str().into_connection_info().map_err(unavailable)?;
        let mut redis_info = info.redis_settings().clone();
        if let Some(user) = &settings.username {
            redis_info = redis_info.set_username(user);
        }
        if let Some(password) = &settings.password {
            redis_info = redis_info.set_password(password);
        }
        info = info.set_redis_settings(redis_info);
        let client = match &settings.ca_pem {
            Some(ca) => Client::build_with_tls(info, TlsCertificates { client_tls: None, root_cert: Some(ca.clone()) }),
            None => Client::open(info),
        }
        .map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.timeout))
            // Reconnect quickly and give up soon: requests wait at most `timeout` anyway,
            // and the next command (or the health check) starts a new attempt.
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let pool = (0..settings.pool_size.max(1))
            .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), config.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)?;
        Ok(RedisState {
            pool,
            next: AtomicUsize::new(0),
            prefix: settings.key_prefix.clone(),
            timeout: settings.timeout,
            session_idle_ms: millis(settings.session_idle),
            replay: ReplayLimits { window_secs: replay.window_secs.max(1), ..replay },
            first_use: Script::new(FIRST_USE),
            touch: Script::new(TOUCH_SESSION),
            take_rate: Script::new(TAKE_RATE),
            target: settings.display_target(),
        })
    }

    /// Where this backend connects, without credentials.
    pub fn target(&self) -> &str {
        &self.target
    }

    fn connection(&self) -> ConnectionManager {
        // Never empty: built with `pool_size.max(1)` managers.
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
        self.pool[i].clone()
    }

    /// A proof's entry, hash-tagged with its key (`{…}`) like that key's counters: the
    /// replay script's keys then share one Redis Cluster slot.
    fn replay_key(&self, key: &[u8; 32], jkt: &str) -> String {
        format!("{}dpop:{{{}}}:{}", self.prefix, key_tag(jkt), hex(key))
    }

    /// The counter of `jkt`'s proofs recorded in window number `window`.
    fn quota_key(&self, jkt: &str, window: u64) -> String {
        format!("{}dpopkey:{{{}}}:{window}", self.prefix, key_tag(jkt))
    }

    fn session_key(&self, id: &str) -> String {
        format!("{}session:{}", self.prefix, hex(sha256(id.as_bytes()).as_ref()))
    }

    fn rate_key(&self, caller: &[u8; 32]) -> String {
        format!("{}rate:{}", self.prefix, hex(caller))
    }

    /// Runs one command, bounded by the timeout, errors typed.
    async fn run<T>(&self, call: impl Future<Output = Result<T, RedisError>>) -> Result<T, StateError> {
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(StateError::Timeout { backend: BACKEND, timeout_ms: millis(self.timeout) }),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) if e.is_timeout() => {
                Err(StateError::Timeout { backend: BACKEND, timeout_ms: millis(self.timeout) })
            }
            Ok(Err(e)) if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() => {
                Err(StateError::Unavailable { backend: BACKEND, message: describe(&e) })
            }
            Ok(Err(e)) => Err(StateError::Protocol { backend: BACKEND, message: describe(&e) }),
        }
    }
}

impl StateStore for RedisState {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn first_use<'a>(&'a self, key: [u8; 32], jkt: &'a str, expires_at: u64, now: u64) -> StateFuture<'a, FirstUse> {
        Box::pin(async move {
            // Seen until `expires_at` inclusive, as in memory: through the end of that second.
            let ttl_ms = expires_at.saturating_sub(now).saturating_add(1).saturating_mul(1_000);
            let window = now / self.replay.window_secs;
            let mut conn = self.connection();
            let mut invocation = self.first_use.key(self.replay_key(&key, jkt));
            invocation
                .key(self.quota_key(jkt, window))
                .key(self.quota_key(jkt, window.saturating_sub(1)))
                .arg(ttl_ms)
                .arg(self.replay.per_key)
                .arg(self.replay.window_secs.saturating_mul(2_000));
            let answer: i64 = self.run(invocation.invoke_async(&mut conn)).await?;
            match answer {
                0 => Ok(FirstUse::New),
                1 => Ok(FirstUse::Seen),
                2 => Ok(FirstUse::KeyQuota),
                other => {
                    Err(StateError::Protocol { backend: BACKEND, message: format!("replay script answered {other}") })
                }
            }
        })
    }

    fn take_rate(&self, caller: [u8; 32], spec: RateSpec) -> StateFuture<'_, RateAnswer> {
        Box::pin(async move {
            let interval_ms = 1_000.0 / spec.rate_per_second;
            let tolerance_ms = interval_ms * f64::from(spec.burst.max(1));
            let mut conn = self.connection();
            let mut invocation = self.take_rate.key(self.rate_key(&caller));
            invocation.arg(format!("{interval_ms:.6}")).arg(format!("{tolerance_ms:.6}"));
            let wait_ms: i64 = self.run(invocation.invoke_async(&mut conn)).await?;
            Ok(match u64::try_from(wait_ms) {
                Ok(0) => RateAnswer::Allowed,
                Ok(ms) => RateAnswer::Wait(Duration::from_millis(ms)),
                Err(_) => {
                    return Err(StateError::Protocol {
                        backend: BACKEND,
                        message: format!("rate script answered {wait_ms}"),
                    });
                }
            })
        })
    }

    fn bind_session<'a>(&'a self, id: &'a str, owner: [u8; 32]) -> StateFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.connection();
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.session_key(id)).arg(hex(&owner)).arg("PX").arg(self.session_idle_ms);
            let _: Option<String> = self.run(cmd.query_async(&mut conn)).await?;
            Ok(())
        })
    }

    fn touch_session<'a>(&'a self, id: &'a str, owner: [u8; 32]) -> StateFuture<'a, SessionLookup> {
        Box::pin(async move {
            let mut conn = self.connection();
            let mut invocation = self.touch.key(self.session_key(id));
            invocation.arg(hex(&owner)).arg(self.session_idle_ms);
            let answer: i64 = self.run(invocation.invoke_async(&mut conn)).await?;
            match answer {
                0 => Ok(SessionLookup::Unknown),
                1 => Ok(SessionLookup::Owned),
                2 => Ok(SessionLookup::Foreign),
                other => {
                    Err(StateError::Protocol { backend: BACKEND, message: format!("session script answered {other}") })
                }
            }
        })
    }

    fn end_session<'a>(&'a self, id: &'a str) -> StateFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.connection();
            let mut cmd = redis::cmd("DEL");
            cmd.arg(self.session_key(id));
            let _: i64 = self.run(cmd.query_async(&mut conn)).await?;
            Ok(())
        })
    }

    fn maintain(&self, _now: u64) -> StateFuture<'_, ()> {
        Box::pin(async move {
            // Every connection of the pool: a dead one would fail the requests it gets.
            for conn in &self.pool {
                let mut conn = conn.clone();
                let _: String = self.run(redis::cmd("PING").query_async(&mut conn)).await?;
            }
            Ok(())
        })
    }
}

impl fmt::Debug for RedisState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisState")
            .field("target", &self.target)
            .field("pool_size", &self.pool.len())
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The error's kind and text; the redis crate's messages name no password.
fn describe(e: &RedisError) -> String {
    e.to_string()
}

/// A DPoP key's name in Redis: its thumbprint hashed again, so keys name no `jkt`.
fn key_tag(jkt: &str) -> String {
    hex(sha256(jkt.as_bytes()).as_ref())
}

fn sha256(bytes: &[u8]) -> aws_lc_rs::digest::Digest {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(redact_url("rediss://app:s3cret@redis.example:6380/2"), "rediss://redis.example:6380/2");
        assert_eq!(redact_url("redis://:s3cret@10.0.0.1/"), "redis://10.0.0.1/");
        let settings = RedisSettings {
            url: "redis://:s3cret@h:1/".into(),
            username: None,
            password: Some("file-secret".into()),
            ca_pem: None,
            key_prefix: "p:".into(),
            timeout: Duration::from_millis(1),
            connect_timeout: Duration::from_millis(1),
            pool_size: 1,
            session_idle: Duration::from_secs(1),
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("file-secret"), "{shown}");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_typed_error_within_the_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let settings = RedisSettings {
            url: format!("redis://127.0.0.1:{port}/"),
            username: None,
            password: None,
            ca_pem: None,
            key_prefix: "t:".into(),
            timeout: Duration::from_millis(300),
            connect_timeout: Duration::from_millis(100),
            pool_size: 2,
            session_idle: Duration::from_secs(1),
        };
        let state = RedisState::new(&settings, ReplayLimits::default()).unwrap();
        let started = std::time::Instant::now();
        let err = state.first_use([0; 32], "jkt", 10, 1).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert!(matches!(err, StateError::Unavailable { .. } | StateError::Timeout { .. }), "{err:?}");
    }
}
