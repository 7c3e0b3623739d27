//! The state backend's cost per request: each operation the request path awaits, through
//! `SharedState` (metrics and health flag included), in memory and on a real
//! `redis-server` over loopback TCP (started here on a free port, killed at the end).
//!
//! - `dpop_first_use`: the replay check of every DPoP proof (`SET key 1 NX PX ttl`);
//! - `session_touch`: every legacy message with an `Mcp-Session-Id` (one `EVALSHA`:
//!   GET, compare, PEXPIRE);
//! - `session_bind`: an `initialize` answered with a session (`SET key owner PX idle`);
//! - `*_64_in_flight`: 64 replay checks awaited together, per check (what a busy
//!   sidecar's multiplexed connections deliver).
//!
//! The binary: `MCP_PEP_REDIS_SERVER`, else `redis-server` on `PATH`
//! (`bash tests/redis/setup.sh` installs Debian's).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::future::join_all;
use mcp_pep::metrics::Metrics;
use mcp_pep::state::{RedisSettings, RedisState, SessionOwner, SharedState};

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

fn key(n: u64) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&n.to_be_bytes());
    k
}

fn state(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap_or_else(|e| {
        panic!("{e}");
    });
    let (_server, port) = redis_server();
    let metrics = || Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
    let memory = SharedState::memory(200_000, 3_600, 1_000, metrics());
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
        let store = RedisState::new(&settings).unwrap_or_else(|e| panic!("{e}"));
        let state = SharedState::new(Box::new(store), metrics(), false);
        state.maintain(NOW).await;
        assert!(state.is_up(), "redis-server answers");
        state
    });
    let owner = SessionOwner {
        spiffe_id: Some("spiffe://mcp-identity.local/ns/mcp-agents/sa/trusted-agent".into()),
        issuer: Some("https://kc.example.test/realms/agents".into()),
        subject: Some("5f0c1b7e-1111-4a2b-9c3d-agent7".into()),
        jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into()),
    };

    let mut group = c.benchmark_group("state");
    for (name, backend) in [("memory", &memory), ("redis", &redis)] {
        let mut next = 0u64;
        group.bench_function(format!("{name}/dpop_first_use"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        next += 1;
                        let now = clock(next);
                        let answer = backend.first_use(key(next), now + 25, now).await;
                        assert!(answer.is_ok());
                    }
                    start.elapsed()
                })
            })
        });
        group.bench_function(format!("{name}/dpop_first_use_64_in_flight"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    let mut done = 0;
                    while done < iters {
                        let batch = (iters - done).min(64);
                        let now = clock(next);
                        let calls = (0..batch).map(|i| backend.first_use(key(next + i + 1), now + 25, now));
                        assert!(join_all(calls).await.iter().all(Result::is_ok));
                        next += batch;
                        done += batch;
                    }
                    start.elapsed()
                })
            })
        });
        rt.block_on(async {
            backend.bind_session("bench-session", &owner).await.unwrap_or_else(|e| panic!("{e}"));
        });
        group.bench_function(format!("{name}/session_touch"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let answer = backend.touch_session("bench-session", &owner).await;
                        assert_eq!(answer, Ok(mcp_pep::state::SessionLookup::Owned));
                    }
                    start.elapsed()
                })
            })
        });
        group.bench_function(format!("{name}/session_bind"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
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
    }
    group.finish();
}

criterion_group!(benches, state);
criterion_main!(benches);
