//! The state backend's cost per request: each operation the request path awaits, through
//! `SharedState` (metrics and health flag included), in memory and on a real
//! `redis-server` over loopback TCP (started here on a free port, killed at the end).
//!
//! - `dpop_first_use`: the replay check of every DPoP proof (on Redis one `EVALSHA`: the
//!   proof's `SET … PX` unless seen, within its key's quota; proofs of 64 keys);
//! - `session_touch`: every legacy message with an `Mcp-Session-Id` (one `EVALSHA`:
//!   GET, compare, PEXPIRE);
//! - `session_bind`: an `initialize` answered with a session (`SET key owner PX idle`);
//! - `*_64_in_flight`: 64 replay checks awaited together, per check (what a busy
//!   sidecar's multiplexed connections deliver);
//! - `rate_take` (Redis only): the shared per-caller token bucket (`limits.rate_scope:
//!   shared`; one `EVALSHA`), 1 024 callers, always within budget.
//!
//! The binary: `MCP_PEP_REDIS_SERVER`, else `redis-server` on `PATH`
//! (`bash tests/redis/setup.sh` installs Debian's).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::future::join_all;
use mcp_pep::metrics::Metrics;
use mcp_pep::state::{RateAnswer, RateSpec, RedisSettings, RedisState, SessionLookup, SessionOwner, SharedState};

const NOW: u64 = 1_700_000_000;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_server() -> (Server, u16) {
    let binary = std::env::var_os("MCP_PEP_REDIS_SERVER").map(PathBuf::from).unwrap_or_else(|| "redis-server".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let child = Command::new(&binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{} (bash tests/redis/setup.sh installs it): {e}", binary.display()));
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    (server, port)
}

/// A simulated clock one second per 4096 proofs, so the memory cache expires entries as a
/// sidecar's would (≤ 26 × 4096 live, under its 200 000 cap) and never answers `Full`.
fn clock(n: u64) -> u64 {
    NOW + n / 4_096
}

fn owner() -> SessionOwner {
    SessionOwner {
        spiffe_id: Some("spiffe://mcp-identity.local/ns/mcp-agents/sa/trusted-agent".into()),
        issuer: Some("https://kc.example.test/realms/agents".into()),
        subject: Some("5f0c1b7e-1111-4a2b-9c3d-agent7".into()),
        jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into()),
    }
}

/// Runs `f` as a task on the runtime and returns the time it measured.
fn timed<F>(rt: &tokio::runtime::Runtime, f: F) -> Duration
where
    F: Future<Output = Duration> + Send + 'static,
{
    rt.block_on(rt.spawn(f)).unwrap_or_else(|e| panic!("{e}"))
}

fn key(n: u64) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&n.to_be_bytes());
    k
}

/// The proof key of proof `n`: 64 keys, each well under its replay quota.
fn jkt(n: u64) -> &'static str {
    static KEYS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(|| (0..64).map(|i| format!("bench-jkt-{i}")).collect());
    &keys[(n % 64) as usize]
}

fn state(c: &mut Criterion) {
    // As the proxy runs: a multi-threaded runtime with one worker per core, the timed loop
    // itself a task on it (as a request is), not on the bench thread.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap_or_else(|e| {
        panic!("{e}");
    });
    let (_server, port) = redis_server();
    let metrics = || Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
    let memory = Arc::new(SharedState::memory(200_000, 3_600, 1_000, metrics()));
    let settings = RedisSettings {
        url: format!("redis://127.0.0.1:{port}/"),
        username: None,
        password: None,
        ca_pem: None,
        key_prefix: "bench:".into(),
        timeout: Duration::from_millis(250),
        connect_timeout: Duration::from_millis(1_000),
        pool_size: 2,
        session_idle: Duration::from_secs(3_600),
    };
    let redis = rt.block_on(async {
        let store =
            RedisState::new(&settings, mcp_pep::state::ReplayLimits::default()).unwrap_or_else(|e| panic!("{e}"));
        let state = SharedState::new(Box::new(store), metrics(), false);
        state.maintain(NOW).await;
        assert!(state.is_up(), "redis-server answers");
        Arc::new(state)
    });
    let owner = Arc::new(owner());

    let mut group = c.benchmark_group("state");
    for (name, backend) in [("memory", memory), ("redis", redis)] {
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        group.bench_function(format!("{name}/dpop_first_use"), |b| {
            b.iter_custom(|iters| {
                let (backend, next) = (backend.clone(), next.clone());
                timed(&rt, async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let n = next.fetch_add(1, Ordering::Relaxed) + 1;
                        let now = clock(n);
                        let answer = backend.first_use(key(n), jkt(n), now + 25, now).await;
                        assert_eq!(answer, Ok(mcp_pep::state::FirstUse::New));
                    }
                    start.elapsed()
                })
            })
        });
        group.bench_function(format!("{name}/dpop_first_use_64_in_flight"), |b| {
            b.iter_custom(|iters| {
                let (backend, next) = (backend.clone(), next.clone());
                timed(&rt, async move {
                    let start = Instant::now();
                    let mut done = 0;
                    while done < iters {
                        let batch = (iters - done).min(64);
                        let first = next.fetch_add(batch, Ordering::Relaxed) + 1;
                        let now = clock(first);
                        let calls =
                            (0..batch).map(|i| backend.first_use(key(first + i), jkt(first + i), now + 25, now));
                        assert!(join_all(calls).await.iter().all(|a| *a == Ok(mcp_pep::state::FirstUse::New)));
                        done += batch;
                    }
                    start.elapsed()
                })
            })
        });
        {
            let (backend, owner) = (backend.clone(), owner.clone());
            rt.block_on(async move { backend.bind_session("bench-session", &owner).await })
                .unwrap_or_else(|e| panic!("{e}"));
        }
        group.bench_function(format!("{name}/session_touch"), |b| {
            b.iter_custom(|iters| {
                let (backend, owner) = (backend.clone(), owner.clone());
                timed(&rt, async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let answer = backend.touch_session("bench-session", &owner).await;
                        assert_eq!(answer, Ok(SessionLookup::Owned));
                    }
                    start.elapsed()
                })
            })
        });
        group.bench_function(format!("{name}/session_bind"), |b| {
            b.iter_custom(|iters| {
                let (backend, owner) = (backend.clone(), owner.clone());
                timed(&rt, async move {
                    let start = Instant::now();
                    for i in 0..iters {
                        // A bounded set of ids: the memory table stays under its cap.
                        let id = format!("bench-bind-{}", i % 512);
                        assert!(backend.bind_session(&id, &owner).await.is_ok());
                    }
                    start.elapsed()
                })
            })
        });
        if name == "redis" {
            let spec = RateSpec { rate_per_second: 1e6, burst: 1_000_000 };
            group.bench_function(format!("{name}/rate_take"), |b| {
                b.iter_custom(|iters| {
                    let backend = backend.clone();
                    timed(&rt, async move {
                        let start = Instant::now();
                        for i in 0..iters {
                            let answer = backend.take_rate(key(i % 1_024), spec).await;
                            assert_eq!(answer, Ok(RateAnswer::Allowed));
                        }
                        start.elapsed()
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, state);
criterion_main!(benches);
