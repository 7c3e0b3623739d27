//! Two mcp-pep replicas in front of one tool server, sharing their state on a real
//! `redis-server` (`state.backend: redis`): a DPoP proof used at one replica is refused at
//! the other, a nonce one issued is honoured by the other, a session bound by one is
//! its owner's — and only its owner's — at the other; a DPoP key's replay quota and a
//! caller's rate budget are one across both; Redis slow or gone is 503 and `/readyz` 503
//! (or, for the rate limit when asked, this replica's own bucket), and its return needs no
//! restart; every key expires; `rediss://` with AUTH. Each test starts its own `redis-server` on a free loopback port and kills it.
//!
//! The binary: `MCP_PEP_REDIS_SERVER` (test.sh sets it after `tests/redis/setup.sh`
//! installed Debian's `redis-server`), else `redis-server` on `PATH`. With `CI` set and
//! no binary the tests fail; elsewhere they say they are skipped.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{Method, Request, Response, StatusCode};
use mcp_pep::config::Config;
use serde_json::json;
use support::dpop::*;
use support::*;

const ISSUER: &str = "https://kc.example.test/realms/agents";
const PUBLIC_URL: &str = "https://mcp.example.test/mcp";
const KID: &str = "kc-es256-1";
const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

// ---------------------------------------------------------------------------------
// redis-server
// ---------------------------------------------------------------------------------

/// The `redis-server` to run, or `None` (skip) outside CI.
fn redis_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("MCP_PEP_REDIS_SERVER") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "MCP_PEP_REDIS_SERVER={} is not a file", path.display());
        return Some(path);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file());
    if on_path.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "no redis-server: set MCP_PEP_REDIS_SERVER (test.sh runs tests/redis/setup.sh, which installs it)"
        );
        eprintln!("SKIPPED: no redis-server (run tests/redis/setup.sh, or set MCP_PEP_REDIS_SERVER)");
    }
    on_path
}

/// A `redis-server` on 127.0.0.1, no persistence; killed on drop.
struct Redis {
    binary: PathBuf,
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
    /// `rediss://` servers take their files from here.
    _dir: TempDir,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

impl Redis {
    fn start(binary: &Path) -> Redis {
        Redis::start_with(binary, Vec::new(), TempDir::new("redis"))
    }

    /// Extra `redis-server` arguments (TLS, AUTH) with their files in `dir`.
    fn start_with(binary: &Path, args: Vec<String>, dir: TempDir) -> Redis {
        let mut redis = Redis { binary: binary.to_path_buf(), port: free_port(), args, child: None, _dir: dir };
        redis.restart();
        redis
    }

    /// (Re)starts the server on the same port, empty.
    fn restart(&mut self) {
        self.kill();
        let tls = self.args.iter().any(|a| a == "--tls-port");
        let mut cmd = Command::new(&self.binary);
        if tls {
            cmd.args(["--port", "0", "--tls-port", &self.port.to_string()]);
        } else {
            cmd.args(["--port", &self.port.to_string()]);
        }
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(self.args.iter().filter(|a| *a != "--tls-port"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(cmd.spawn().expect("redis-server starts"));
        let deadline = Instant::now() + STEP;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP / SIGCONT: a server that accepts but stops answering, then answers again.
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A direct client for the test's own look at the keys.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> T {
        let client = redis::Client::open(self.url()).expect("client");
        let mut conn = client.get_multiplexed_async_connection().await.expect("test connects to redis");
        cmd.query_async(&mut conn).await.expect("test query")
    }

    async fn dbsize(&self) -> i64 {
        self.query(&mut redis::cmd("DBSIZE")).await
    }

    async fn keys(&self) -> Vec<String> {
        self.query(redis::cmd("KEYS").arg("*")).await
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.signal_quietly();
        self.kill();
    }
}

impl Redis {
    /// A stopped server cannot be killed until continued.
    fn signal_quietly(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
        }
    }
}

// ---------------------------------------------------------------------------------
// Tokens and proofs
// ---------------------------------------------------------------------------------

/// One client: its DPoP key and a token bound to it.
struct Client {
    key: Arc<EcKey>,
    token: String,
}

impl Client {
    fn new(issuer: &EcKey, subject: &str) -> Client {
        Client::with_key(issuer, subject, Arc::new(EcKey::generate()))
    }

    /// A token for `subject` bound to `key`.
    fn with_key(issuer: &EcKey, subject: &str, key: Arc<EcKey>) -> Client {
        let token = issuer.jws(&token_header(KID), &token_claims(ISSUER, PUBLIC_URL, subject, &key));
        Client { key, token }
    }

    fn proof(&self, method: &str, nonce: Option<&str>) -> String {
        let mut claims = proof_claims(method, PUBLIC_URL, Some(&self.token));
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        self.key.jws(&proof_header(&self.key), &claims)
    }

    /// POSTs `body` to `proxy` with the token and `proof`, plus `headers`.
    async fn post_with(&self, proxy: &TestProxy, body: &str, proof: &str, headers: &[(&str, &str)]) -> Reply {
        let authorization = format!("DPoP {}", self.token);
        let mut all = vec![("authorization", authorization.as_str()), ("dpop", proof)];
        all.extend_from_slice(headers);
        proxy.post(body.to_owned(), &all).await
    }

    async fn post(&self, proxy: &TestProxy, body: &str, headers: &[(&str, &str)]) -> Reply {
        self.post_with(proxy, body, &self.proof("POST", None), headers).await
    }

    async fn delete(&self, proxy: &TestProxy, session: &str) -> Reply {
        let req = Request::builder()
            .method(Method::DELETE)
            .uri(proxy.url())
            .header("authorization", format!("DPoP {}", self.token))
            .header("dpop", self.proof("DELETE", None))
            .header("mcp-session-id", session)
            .body(empty_body())
            .expect("request");
        send(req).await
    }
}

// ---------------------------------------------------------------------------------
// The replicas
// ---------------------------------------------------------------------------------

/// The issuer's key and JWKS, the tool server, and a way to start replicas in front of it.
struct Deployment {
    issuer: EcKey,
    upstream: TestUpstream,
    dir: TempDir,
}

impl Deployment {
    async fn new() -> Deployment {
        let issuer = EcKey::generate();
        let dir = TempDir::new("replicas");
        let mut jwk = issuer.jwk();
        jwk["kid"] = json!(KID);
        dir.write("jwks.json", &json!({"keys": [jwk]}).to_string());
        // A tool server that opens a new session on every initialize.
        let upstream = TestUpstream::start(|req| async move {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let mut resp: Response<UpBody> = json_reply(StatusCode::OK, r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
            if String::from_utf8_lossy(&req.body).contains("\"initialize\"") {
                let id = format!("session-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
                resp.headers_mut().insert("mcp-session-id", id.parse().expect("header"));
            }
            resp
        })
        .await;
        Deployment { issuer, upstream, dir }
    }

    /// A replica on `redis` (or in memory with `None`), `configure` applied last.
    async fn replica(&self, redis: Option<&Redis>, configure: impl FnOnce(&mut Config)) -> TestProxy {
        let jwks = self.dir.path().join("jwks.json");
        TestProxy::builder(self.upstream.url())
            .configure(|c| {
                c.auth.issuers =
                    serde_json::from_value(json!([{"issuer": ISSUER, "jwks_file": jwks}])).expect("issuer config");
                c.auth.public_url = Some(PUBLIC_URL.into());
                c.sessions.bind = true;
                if let Some(redis) = redis {
                    c.state.backend = "redis".into();
                    c.state.redis.url = Some(redis.url());
                    c.state.redis.timeout_ms = 200;
                    c.state.redis.connect_timeout_ms = 200;
                }
                configure(c);
            })
            .start()
            .await
    }

    fn client(&self, subject: &str) -> Client {
        Client::new(&self.issuer, subject)
    }
}

fn assert_status(reply: &Reply, status: StatusCode, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.text());
}

/// Polls `f` until it is true or `limit` passes (then panics with `what`).
async fn eventually<F, Fut>(limit: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ready(proxy: &TestProxy) -> StatusCode {
    proxy.admin_get("/readyz").await.status
}

// ---------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_proof_used_at_one_replica_is_refused_at_the_other() {
    let Some(binary) = redis_binary() else { return };
    let redis = Redis::start(&binary);
    let deployment = Deployment::new().await;
    let (a, b) = (deployment.replica(Some(&redis), |_| {}).await, deployment.replica(Some(&redis), |_| {}).await);
    let client = deployment.client("agent-1");
    eventually(STEP, "both replicas ready", || async { ready(&a).await == 200 && ready(&b).await == 200 }).await;

    let proof = client.proof("POST", None);
    assert_status(&client.post_with(&a, &tools_call(1, "echo"), &proof, &[]).await, StatusCode::OK, "at A");
    let replay = client.post_with(&b, &tools_call(1, "echo"), &proof, &[]).await;
    assert_status(&replay, StatusCode::UNAUTHORIZED, "the same proof at B");
    assert!(replay.header("www-authenticate").unwrap_or_default().contains("invalid_dpop_proof"));
    assert_eq!(rejections(&b.metrics().await, "credentials", "replay"), 1.0);
    assert_status(&client.post(&b, &tools_call(2, "echo"), &[]).await, StatusCode::OK, "a fresh proof at B");
    assert_eq!(deployment.upstream.requests().len(), 2, "the replay never reached the tool server");
    let text = a.metrics().await;
    let ops = metric(
        &text,
        "mcp_pep_state_operation_duration_seconds_count",
        &[("backend", "redis"), ("op", "dpop_first_use")],
    );
    assert_eq!(ops, Some(1.0), "one SET NX per proof at A");

    // Control: replicas that keep their replay cache in memory accept the replay.
    let (c, d) = (deployment.replica(None, |_| {}).await, deployment.replica(None, |_| {}).await);
    let proof = client.proof("POST", None);
    assert_status(&client.post_with(&c, &tools_call(3, "echo"), &proof, &[]).await, StatusCode::OK, "at C");
    assert_status(&client.post_with(&d, &tools_call(3, "echo"), &proof, &[]).await, StatusCode::OK, "memory: D");
}

#[tokio::test]
async fn a_nonce_issued_by_one_replica_is_honoured_by_the_other() {
    let Some(binary) = redis_binary() else { return };
    let redis = Redis::start(&binary);
    let deployment = Deployment::new().await;
    let secret = deployment.dir.write("nonce-key", &format!("{}\n", "k".repeat(48)));
    let other_secret = deployment.dir.write("other-key", &"o".repeat(48));
    let nonces = |file: PathBuf| {
        move |c: &mut Config| {
            c.auth.dpop_nonce = true;
            c.auth.dpop_nonce_secret_file = Some(file);
        }
    };
    let a = deployment.replica(Some(&redis), nonces(secret.clone())).await;
    let b = deployment.replica(Some(&redis), nonces(secret)).await;
    let stranger = deployment.replica(Some(&redis), nonces(other_secret)).await;
    let client = deployment.client("agent-1");

    let first = client.post(&a, &tools_call(1, "echo"), &[]).await;
    assert_status(&first, StatusCode::UNAUTHORIZED, "no nonce at A");
    assert!(first.header("www-authenticate").unwrap_or_default().contains("use_dpop_nonce"));
    let nonce = first.header("dpop-nonce").expect("A sends a nonce").to_owned();

    let proof = client.proof("POST", Some(&nonce));
    assert_status(&client.post_with(&b, &tools_call(2, "echo"), &proof, &[]).await, StatusCode::OK, "A's nonce at B");
    // A replica with another key does not know it: the check can fail.
    let proof = client.proof("POST", Some(&nonce));
    let refused = client.post_with(&stranger, &tools_call(3, "echo"), &proof, &[]).await;
    assert_status(&refused, StatusCode::UNAUTHORIZED, "A's nonce at a replica with another key");
    assert_eq!(rejections(&stranger.metrics().await, "credentials", "nonce_invalid"), 1.0);
}

#[tokio::test]
async fn a_session_bound_at_one_replica_is_its_owners_at_the_other() {
    let Some(binary) = redis_binary() else { return };
    let redis = Redis::start(&binary);
    let deployment = Deployment::new().await;
    let (a, b) = (deployment.replica(Some(&redis), |_| {}).await, deployment.replica(Some(&redis), |_| {}).await);
    let (owner, other) = (deployment.client("agent-1"), deployment.client("agent-2"));

    let init = owner.post(&a, INITIALIZE, &[]).await;
    assert_status(&init, StatusCode::OK, "initialize at A");
    let session = init.header("mcp-session-id").expect("a session id").to_owned();
    let with_session = [("mcp-session-id", session.as_str())];

    assert_status(&owner.post(&b, &tools_call(2, "echo"), &with_session).await, StatusCode::OK, "owner at B");
    let forwarded = deployment.upstream.requests().len();
    let hijack = other.post(&b, &tools_call(3, "echo"), &with_session).await;
    assert_status(&hijack, StatusCode::NOT_FOUND, "another caller at B");
    assert_eq!(hijack.json()["error"]["code"], -32004);
    assert_eq!(deployment.upstream.requests().len(), forwarded, "the hijack never reached the tool server");
    assert_eq!(rejections(&b.metrics().await, "session", "session_foreign"), 1.0);
    // The same key with a token for another subject is another owner too.
    let same_key = Client::with_key(&deployment.issuer, "agent-3", owner.key.clone());
    assert_status(&same_key.post(&a, &tools_call(4, "echo"), &with_session).await, StatusCode::NOT_FOUND, "subject");

    // Nothing in Redis names the session or the caller.
    let keys = redis.keys().await;
    assert!(keys.iter().any(|k| k.starts_with("mcp-pep:session:")), "{keys:?}");
    assert!(keys.iter().all(|k| !k.contains(&session) && !k.contains("agent")), "{keys:?}");

    // Ended at B, unknown at A.
    assert_status(&owner.delete(&b, &session).await, StatusCode::OK, "DELETE at B");
    let gone = owner.post(&a, &tools_call(5, "echo"), &with_session).await;
    assert_status(&gone, StatusCode::NOT_FOUND, "ended session at A");
    assert_eq!(rejections(&a.metrics().await, "session", "session_unknown"), 1.0);
}

#[tokio::test]
async fn redis_slow_or_gone_is_503_and_its_return_needs_no_restart() {
    let Some(binary) = redis_binary() else { return };
    let mut redis = Redis::start(&binary);
    let deployment = Deployment::new().await;
    let a = deployment.replica(Some(&redis), |_| {}).await;
    let client = deployment.client("agent-1");
    eventually(STEP, "ready", || async { ready(&a).await == 200 }).await;
    let init = client.post(&a, INITIALIZE, &[]).await;
    assert_status(&init, StatusCode::OK, "before");
    let session = init.header("mcp-session-id").expect("a session id").to_owned();

    // 1. Slower than the timeout (200 ms): the server accepts but does not answer.
    redis.signal("-STOP");
    let started = Instant::now();
    let slow = client.post(&a, &tools_call(2, "echo"), &[]).await;
    assert_status(&slow, StatusCode::SERVICE_UNAVAILABLE, "redis stopped");
    assert!(started.elapsed() < Duration::from_secs(2), "refused within the timeout: {:?}", started.elapsed());
    let body = slow.json();
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["error"]["code"], -32005, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("timeout"), "{body}");
    let errors = |text: &str, kind: &str| {
        metric(text, "mcp_pep_state_errors_total", &[("backend", "redis"), ("kind", kind)]).unwrap_or(0.0)
    };
    assert!(errors(&a.metrics().await, "timeout") >= 1.0);
    eventually(STEP, "/readyz 503 while redis is stopped", || async { ready(&a).await == 503 }).await;
    assert!(a.admin_get("/readyz").await.text().contains("state backend (redis)"));
    assert_eq!(metric(&a.metrics().await, "mcp_pep_state_backend_up", &[("backend", "redis")]), Some(0.0));
    redis.signal("-CONT");
    eventually(STEP, "answers after SIGCONT", || async {
        client.post(&a, &tools_call(3, "echo"), &[]).await.status == StatusCode::OK
    })
    .await;
    eventually(STEP, "/readyz 200 after SIGCONT", || async { ready(&a).await == 200 }).await;

    // 2. Gone: connection refused. Proofs and sessions are refused alike, never passed.
    redis.kill();
    let gone = client.post(&a, &tools_call(4, "echo"), &[("mcp-session-id", &session)]).await;
    assert_status(&gone, StatusCode::SERVICE_UNAVAILABLE, "redis killed");
    assert!(errors(&a.metrics().await, "unavailable") + errors(&a.metrics().await, "timeout") >= 2.0);
    eventually(STEP, "/readyz 503 while redis is gone", || async { ready(&a).await == 503 }).await;
    let forwarded = deployment.upstream.requests().len();
    for id in 5..8 {
        assert_status(&client.post(&a, &tools_call(id, "echo"), &[]).await, StatusCode::SERVICE_UNAVAILABLE, "down");
    }
    assert_eq!(deployment.upstream.requests().len(), forwarded, "nothing passed unchecked");

    // 3. Back (empty: no persistence) on the same port: the same process recovers.
    redis.restart();
    eventually(Duration::from_secs(15), "answers after the restart", || async {
        client.post(&a, &tools_call(9, "echo"), &[]).await.status == StatusCode::OK
    })
    .await;
    eventually(STEP, "/readyz 200 after the restart", || async { ready(&a).await == 200 }).await;
    // The binding went with the old server's memory: the client re-initializes.
    let lost = client.post(&a, &tools_call(10, "echo"), &[("mcp-session-id", &session)]).await;
    assert_status(&lost, StatusCode::NOT_FOUND, "a session from before the restart");
}

#[tokio::test]
async fn every_key_expires_and_use_renews_a_session() {
    let Some(binary) = redis_binary() else { return };
    let redis = Redis::start(&binary);
    let deployment = Deployment::new().await;
    let short = |c: &mut Config| {
        // Proofs live iat + 1 s + 1 s skew; sessions expire after 3 s idle.
        c.auth.proof_lifetime_s = 1;
        c.auth.clock_skew_s = 1;
        c.sessions.idle_timeout_s = 3;
    };
    let (a, b) = (deployment.replica(Some(&redis), short).await, deployment.replica(Some(&redis), short).await);
    let client = deployment.client("agent-1");

    let init = client.post(&a, INITIALIZE, &[]).await;
    assert_status(&init, StatusCode::OK, "initialize");
    let session = init.header("mcp-session-id").expect("a session id").to_owned();
    // A proof, its key's counter for this window, a session and (unless it already
    // refilled: 1 ms at the default rate) the caller's rate bucket.
    let keys = redis.keys().await;
    let count = |kind: &str| keys.iter().filter(|k| k.starts_with(&format!("mcp-pep:{kind}:"))).count();
    assert_eq!((count("dpop"), count("dpopkey"), count("session")), (1, 1, 1), "{keys:?}");
    assert!(count("rate") <= 1 && keys.len() == 3 + count("rate"), "{keys:?}");
    for key in keys {
        let ttl: i64 = redis.query(redis::cmd("PTTL").arg(&key)).await;
        // The key counter lives two windows of lifetime + 2 × skew + 1 = 4 s.
        let most = if key.contains(":dpopkey:") { 8_000 } else { 3_000 };
        assert!(ttl > 0 && ttl <= most, "{key} expires (PTTL {ttl})");
    }

    // Used every 2 s, at one replica or the other, the session outlives its 3 s idle timeout.
    for (i, replica) in [&b, &a, &b].into_iter().enumerate() {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let reply = client.post(replica, &tools_call(i as i64 + 2, "echo"), &[("mcp-session-id", &session)]).await;
        assert_status(&reply, StatusCode::OK, "a session in use stays");
    }
    // Left alone, everything goes: replay entries after their window, the session when idle.
    eventually(Duration::from_secs(12), "DBSIZE back to 0", || async { redis.dbsize().await == 0 }).await;
    let expired = client.post(&a, &tools_call(9, "echo"), &[("mcp-session-id", &session)]).await;
    assert_status(&expired, StatusCode::NOT_FOUND, "an idle session expired");
}

#[tokio::test]
async fn a_keys_replay_quota_is_one_across_replicas() {
    let Some(binary) = redis_binary() else { return };
    let redis = Redis::start(&binary);
    let deployment = Deployment::new().await;
    let quota = |c: &mut Config| c.auth.dpop_replay_entries_per_key = 3;
    let (a, b) = (deployment.replica(Some(&redis), quota).await, deployment.replica(Some(&redis), quota).await);
    let greedy = deployment.client("greedy");
    eventually(STEP, "both replicas ready", || async { ready(&a).await == 200 && ready(&b).await == 200 }).await;

    for (id, replica) in [&a, &b, &a].into_iter().enumerate() {
        assert_status(&greedy.post(replica, &tools_call(id as i64, "echo"), &[]).await, StatusCode::OK, "in quota");
    }
    // Its fourth live proof, at the replica that has seen only one of them.
    let over = greedy.post(&b, &tools_call(9, "echo"), &[]).await;
    assert_status(&over, StatusCode::UNAUTHORIZED, "a fourth live proof of one key");
    assert!(over.header("www-authenticate").unwrap_or_default().contains("invalid_dpop_proof"));
    assert_eq!(rejections(&b.metrics().await, "credentials", "replay_key_quota"), 1.0);
    // Another key is not charged for it.
    let other = deployment.client("other");
    assert_status(&other.post(&b, &tools_call(10, "echo"), &[]).await, StatusCode::OK, "another key");
    assert_eq!(deployment.upstream.requests().len(), 4, "the refused proof never reached the tool server");

    // Control: replicas counting in memory each grant the key its whole quota.
    let (c, d) = (deployment.replica(None, quota).await, deployment.replica(None, quota).await);
    for (id, replica) in [&c, &d, &c, &d].into_iter().enumerate() {
        assert_status(&greedy.post(replica, &tools_call(id as i64, "echo"), &[]).await, StatusCode::OK, "memory");
    }
}

#[tokio::test]
async fn a_callers_rate_budget_is_one_across_replicas() {
    let Some(binary) = redis_binary() else { return };
    let redis = Redis::start(&binary);
    let deployment = Deployment::new().await;
    // Three at once, then one every 10 s: nothing refills during the test.
    let budget = |scope: &'static str| {
        move |c: &mut Config| {
            c.limits.rate_per_caller = 0.1;
            c.limits.rate_burst_per_caller = 3;
            c.limits.rate_scope = scope.into();
        }
    };
    let (a, b) = (
        deployment.replica(Some(&redis), budget("auto")).await,
        deployment.replica(Some(&redis), budget("auto")).await,
    );
    let agent = deployment.client("agent-1");
    eventually(STEP, "both replicas ready", || async { ready(&a).await == 200 && ready(&b).await == 200 }).await;

    for (id, replica) in [&a, &b, &a].into_iter().enumerate() {
        assert_status(&agent.post(replica, &tools_call(id as i64, "echo"), &[]).await, StatusCode::OK, "in budget");
    }
    let over = agent.post(&b, &tools_call(7, "echo"), &[]).await;
    assert_status(&over, StatusCode::TOO_MANY_REQUESTS, "the fourth request, at the replica that saw one");
    let retry: u64 = over.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1..=10).contains(&retry), "Retry-After {retry}");
    assert_eq!(over.json()["id"], 7, "{}", over.text());
    assert_eq!(rejections(&b.metrics().await, "limits", "rate_limited"), 1.0);
    let takes = metric(
        &b.metrics().await,
        "mcp_pep_state_operation_duration_seconds_count",
        &[("backend", "redis"), ("op", "rate_take")],
    );
    assert_eq!(takes, Some(2.0), "one shared bucket read per request at B");
    // Another caller has its own budget.
    let other = deployment.client("agent-2");
    assert_status(&other.post(&b, &tools_call(8, "echo"), &[]).await, StatusCode::OK, "another caller");
    assert_eq!(deployment.upstream.requests().len(), 4);

    // Control: `rate_scope: replica` on the same Redis gives each replica its own budget.
    let (c, d) = (
        deployment.replica(Some(&redis), budget("replica")).await,
        deployment.replica(Some(&redis), budget("replica")).await,
    );
    let fresh = deployment.client("agent-3");
    eventually(STEP, "C and D ready", || async { ready(&c).await == 200 && ready(&d).await == 200 }).await;
    for (id, replica) in [&c, &d, &c, &d].into_iter().enumerate() {
        assert_status(&fresh.post(replica, &tools_call(id as i64, "echo"), &[]).await, StatusCode::OK, "per replica");
    }
}

#[tokio::test]
async fn a_shared_rate_limit_without_redis_refuses_or_falls_back_to_the_replica() {
    let Some(binary) = redis_binary() else { return };
    let mut redis = Redis::start(&binary);
    let deployment = Deployment::new().await;
    // No credentials and no sessions: the rate limit is the only use of Redis here.
    let without_auth = |on_error: &'static str| {
        move |c: &mut Config| {
            c.auth.issuers.clear();
            c.auth.public_url = None;
            c.sessions.bind = false;
            c.limits.rate_per_caller = 0.1;
            c.limits.rate_burst_per_caller = 2;
            c.limits.rate_on_state_error = on_error.into();
        }
    };
    let strict = deployment.replica(Some(&redis), without_auth("refuse")).await;
    let lenient = deployment.replica(Some(&redis), without_auth("local")).await;
    assert_status(&strict.post(tools_call(1, "echo"), &[]).await, StatusCode::OK, "redis up");
    redis.kill();
    let refused = strict.post(tools_call(2, "echo"), &[]).await;
    assert_status(&refused, StatusCode::SERVICE_UNAVAILABLE, "refuse: the budget cannot be checked");
    assert_eq!(refused.json()["id"], 2, "{}", refused.text());
    assert_eq!(rejections(&strict.metrics().await, "limits", "state_unavailable"), 1.0);
    // `local`: this replica's own bucket (burst 2), still a limit.
    for id in 3..5 {
        assert_status(&lenient.post(tools_call(id, "echo"), &[]).await, StatusCode::OK, "local fallback");
    }
    assert_status(&lenient.post(tools_call(5, "echo"), &[]).await, StatusCode::TOO_MANY_REQUESTS, "local bucket");
    let failed =
        metric(&lenient.metrics().await, "mcp_pep_state_errors_total", &[("backend", "redis"), ("op", "rate_take")]);
    assert!(failed.is_some(), "the fallback is counted as a state error");
    redis.restart();
    eventually(Duration::from_secs(15), "the shared bucket again after the restart", || async {
        strict.post(tools_call(6, "echo"), &[]).await.status == StatusCode::OK
    })
    .await;
}

#[tokio::test]
async fn rediss_with_auth_and_a_private_ca() {
    let Some(binary) = redis_binary() else { return };
    let dir = TempDir::new("redis-tls");
    let ca = mcp_pep::demo::pki::TestCa::new("redis.test").expect("CA");
    let leaf = ca
        .leaf(&mcp_pep::demo::pki::LeafSpec::svid("spiffe://redis.test/redis").with_ip(support::tls::LOCALHOST))
        .expect("server cert");
    let cert = dir.write("redis.crt", &leaf.chain_pem());
    let key = dir.write("redis.key", &leaf.key_pem());
    let ca_file = dir.write("ca.crt", &ca.cert_pem());
    let password = dir.write("password", "correct horse battery staple\n");
    let wrong = dir.write("wrong", "not the password\n");
    let args = [
        "--tls-port",
        "--tls-cert-file",
        cert.to_str().expect("path"),
        "--tls-key-file",
        key.to_str().expect("path"),
        "--tls-ca-cert-file",
        ca_file.to_str().expect("path"),
        "--tls-auth-clients",
        "no",
        "--requirepass",
        "correct horse battery staple",
    ];
    let redis = Redis::start_with(&binary, args.iter().map(|a| a.to_string()).collect(), dir);
    let deployment = Deployment::new().await;
    let tls = |password: PathBuf| {
        let (url, ca_file) = (format!("rediss://127.0.0.1:{}/", redis.port), ca_file.clone());
        move |c: &mut Config| {
            c.state.redis.url = Some(url);
            c.state.redis.ca_file = Some(ca_file);
            c.state.redis.password_file = Some(password);
            // A TLS handshake in a debug build on a busy 2-core machine can take longer
            // than the other tests' 200 ms; this test is about TLS and AUTH, not timeouts.
            c.state.redis.connect_timeout_ms = 2_000;
            c.state.redis.timeout_ms = 2_000;
        }
    };
    let a = deployment.replica(Some(&redis), tls(password)).await;
    let b = deployment.replica(Some(&redis), tls(wrong)).await;
    let client = deployment.client("agent-1");

    eventually(STEP, "ready over TLS with AUTH", || async { ready(&a).await == 200 }).await;
    let proof = client.proof("POST", None);
    assert_status(&client.post_with(&a, &tools_call(1, "echo"), &proof, &[]).await, StatusCode::OK, "rediss");
    // The wrong password: refused, never passed, and not ready.
    let refused = client.post_with(&b, &tools_call(1, "echo"), &proof, &[]).await;
    assert_status(&refused, StatusCode::SERVICE_UNAVAILABLE, "wrong AUTH");
    assert_eq!(ready(&b).await, 503);
    assert_eq!(deployment.upstream.requests().len(), 1);
}

/// The ACL docs/deployment.md gives mcp-pep's Redis user is enough for every operation
/// (scripts included: Redis checks the commands a script runs against the caller's ACL),
/// and nothing outside the prefix.
#[tokio::test]
async fn the_documented_acl_user_is_enough() {
    let Some(binary) = redis_binary() else { return };
    let dir = TempDir::new("redis-acl");
    let password = dir.write("password", "acl-secret\n");
    let rules = "--user default off --user mcp-pep on >acl-secret ~mcp-pep:* +set +get +del +pexpire +exists +incr \
                 +time +evalsha +script|load +ping";
    let redis = Redis::start_with(&binary, rules.split_whitespace().map(str::to_owned).collect(), dir);
    let deployment = Deployment::new().await;
    let acl = |c: &mut Config| {
        c.state.redis.username = Some("mcp-pep".into());
        c.state.redis.password_file = Some(password.clone());
        c.limits.rate_per_caller = 100.0;
    };
    let a = deployment.replica(Some(&redis), acl).await;
    let client = deployment.client("agent-1");
    eventually(STEP, "ready as the ACL user", || async { ready(&a).await == 200 }).await;
    // A proof (replay script), the rate script, a session bound, touched and ended.
    let init = client.post(&a, INITIALIZE, &[]).await;
    assert_status(&init, StatusCode::OK, "initialize");
    let session = init.header("mcp-session-id").expect("a session id").to_owned();
    let call = client.post(&a, &tools_call(2, "echo"), &[("mcp-session-id", &session)]).await;
    assert_status(&call, StatusCode::OK, "a call in the session");
    assert!(client.delete(&a, &session).await.status.is_success(), "DELETE");
    let text = a.metrics().await;
    assert_eq!(metric(&text, "mcp_pep_state_errors_total", &[("backend", "redis")]), None, "no operation refused");
}
