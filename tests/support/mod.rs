//! Shared helpers for the black-box tests: the proxy started in-process on port 0,
//! a recording upstream, a policy directory, an HTTP client and a metrics reader.
//!
//! Every server a test starts is stopped when its handle is stopped or dropped.
#![allow(dead_code)]

pub mod dpop;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use mcp_pep::config::Config;
use mcp_pep::server::Server;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// How long any single step of a test may take before the test fails instead of hanging.
pub const STEP: Duration = Duration::from_secs(10);

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Body of requests the tests send.
pub type ReqBody = BoxBody<Bytes, BoxError>;
/// Body of the answers the test upstream gives.
pub type UpBody = BoxBody<Bytes, Infallible>;

/// Allows everything except a `tools/call` of the tool `forbidden`.
pub const ALLOW_EXCEPT_FORBIDDEN: &str = r#"package mcp

import rego.v1

default decision := {"allow": false, "reasons": ["default deny"]}

decision := {"allow": true, "reasons": []} if {
	input.mcp.tool != "forbidden"
}
"#;

// ---------------------------------------------------------------------------------
// Policy directory
// ---------------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "mcp-pep-{prefix}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let file = self.path.join(name);
        std::fs::write(&file, text).expect("write temp file");
        file
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------------

/// Builds a [`TestProxy`]: a `Config` with test defaults plus the policy files.
pub struct ProxyBuilder {
    config: Config,
    files: Vec<(String, String)>,
}

impl ProxyBuilder {
    /// Port 0 for both listeners, a short shutdown grace, the given upstream, session
    /// binding off and the [`ALLOW_EXCEPT_FORBIDDEN`] policy.
    pub fn new(upstream_url: impl Into<String>) -> ProxyBuilder {
        let mut config = Config {
            listen: "127.0.0.1:0".into(),
            admin_listen: "127.0.0.1:0".into(),
            shutdown_grace_ms: 1_000,
            ..Config::default()
        };
        config.upstream.url = Some(upstream_url.into());
        // Most tests send session ids their upstream never handed out, to see them
        // forwarded and in the policy input; session binding has its own tests
        // (tests/proxy_sessions.rs), and the e2e suite runs with it on.
        config.sessions.bind = false;
        ProxyBuilder { config, files: vec![("mcp.rego".into(), ALLOW_EXCEPT_FORBIDDEN.into())] }
    }

    /// Replaces the policy files with one `mcp.rego`.
    pub fn policy(mut self, rego: &str) -> ProxyBuilder {
        self.files = vec![("mcp.rego".into(), rego.into())];
        self
    }

    /// Adds a file (policy or data) to the policy directory.
    pub fn file(mut self, name: &str, text: &str) -> ProxyBuilder {
        self.files.push((name.into(), text.into()));
        self
    }

    /// Any other configuration knob.
    pub fn configure(mut self, f: impl FnOnce(&mut Config)) -> ProxyBuilder {
        f(&mut self.config);
        self
    }

    pub async fn start(self) -> TestProxy {
        let dir = TempDir::new("policy");
        for (name, text) in &self.files {
            dir.write(name, text);
        }
        let policy_dir = dir.path().to_path_buf();
        self.launch(policy_dir, dir).await
    }

    /// Binds and runs the proxy on `policy_dir`; `dir` lives as long as the proxy.
    async fn launch(mut self, policy_dir: PathBuf, dir: TempDir) -> TestProxy {
        self.config.policy.dir = Some(policy_dir);
        let settings = self.config.validate("test").expect("valid test config");
        let server = Server::bind(&settings).await.expect("proxy binds");
        let mcp_addr = server.mcp_addr();
        let admin_addr = server.admin_addr().expect("admin listener");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        TestProxy {
            mcp_addr,
            admin_addr,
            path: self.config.mcp_path.clone(),
            shutdown: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }
}

/// A running proxy; stopped by [`TestProxy::stop`] or on drop.
pub struct TestProxy {
    pub mcp_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    path: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: TempDir,
}

impl TestProxy {
    pub fn builder(upstream_url: impl Into<String>) -> ProxyBuilder {
        ProxyBuilder::new(upstream_url)
    }

    /// `http://127.0.0.1:PORT/mcp`
    pub fn url(&self) -> String {
        format!("http://{}{}", self.mcp_addr, self.path)
    }

    /// Any path on the MCP listener.
    pub fn url_for(&self, path: &str) -> String {
        format!("http://{}{}", self.mcp_addr, path)
    }

    /// Resolves the shutdown future given to `Server::run`.
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits until `Server::run` returned, at most `limit`; true if it did.
    pub async fn wait_stopped(&mut self, limit: Duration) -> bool {
        let Some(task) = self.task.as_mut() else {
            return true;
        };
        match tokio::time::timeout(limit, task).await {
            Ok(joined) => {
                joined.expect("server task did not panic");
                self.task = None;
                true
            }
            Err(_) => false,
        }
    }

    /// Triggers shutdown and waits for the server to return.
    pub async fn stop(mut self) {
        self.trigger_shutdown();
        assert!(self.wait_stopped(STEP).await, "proxy did not stop within {STEP:?}");
    }

    pub async fn admin_get(&self, path: &str) -> Reply {
        let req = Request::get(format!("http://{}{}", self.admin_addr, path)).body(empty_body()).expect("request");
        send(req).await
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let reply = self.admin_get("/metrics").await;
        assert_eq!(reply.status, StatusCode::OK, "GET /metrics");
        reply.text()
    }

    /// One JSON POST to the MCP endpoint, with MCP's usual `Accept` and the given headers.
    pub async fn post(&self, body: impl Into<Bytes>, headers: &[(&str, &str)]) -> Reply {
        post_json(&self.url(), body, headers).await
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.trigger_shutdown();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------------------------
// The upstream
// ---------------------------------------------------------------------------------

/// What the upstream received, one per request.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An in-process HTTP server (HTTP/1.1 and h2) that records every request and answers
/// with a handler. Aborted, with all its connections, on stop or drop.
pub struct TestUpstream {
    pub addr: SocketAddr,
    records: Arc<Mutex<Vec<Recorded>>>,
    task: JoinHandle<()>,
}

impl TestUpstream {
    pub async fn start<F, Fut>(handler: F) -> TestUpstream
    where
        F: Fn(Recorded) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<UpBody>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let records = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<dyn Fn(Recorded) -> BoxFuture<'static, Response<UpBody>> + Send + Sync> =
            Arc::new(move |r| Box::pin(handler(r)));
        let recorder = records.clone();
        let task = tokio::spawn(async move {
            // Dropped with the task: aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                let recorder = recorder.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let handler = handler.clone();
                    let recorder = recorder.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                        let recorded = Recorded {
                            method: parts.method,
                            uri: parts.uri,
                            version: parts.version,
                            headers: parts.headers,
                            body,
                        };
                        recorder.lock().expect("records lock").push(recorded.clone());
                        Ok::<_, Infallible>(handler(recorded).await)
                    }
                });
                connections.spawn(async move {
                    let _ =
                        auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        TestUpstream { addr, records, task }
    }

    /// Answers every request `200 application/json` with a JSON-RPC result echoing
    /// nothing in particular.
    pub async fn json_ok() -> TestUpstream {
        TestUpstream::start(|_| async {
            json_reply(StatusCode::OK, r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#)
        })
        .await
    }

    /// `http://127.0.0.1:PORT/mcp`
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.records.lock().expect("records lock").clone()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for_requests(&self, n: usize) -> Vec<Recorded> {
        let deadline = Instant::now() + STEP;
        loop {
            let seen = self.requests();
            if seen.len() >= n {
                return seen;
            }
            assert!(Instant::now() < deadline, "upstream saw {} requests, expected {n}", seen.len());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An address on which nothing listens (bound once, then released).
pub async fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr
}

pub fn up_body(bytes: impl Into<Bytes>) -> UpBody {
    Full::new(bytes.into()).boxed()
}

pub fn json_reply(status: StatusCode, body: impl Into<Bytes>) -> Response<UpBody> {
    let mut resp = Response::new(up_body(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

// ---------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------

/// A collected response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

pub fn full_body(bytes: impl Into<Bytes>) -> ReqBody {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

pub fn empty_body() -> ReqBody {
    full_body(Bytes::new())
}

/// A body sent in these chunks with no `Content-Length` (chunked on HTTP/1.1).
pub fn chunked_body(chunks: Vec<Bytes>) -> ReqBody {
    let frames = chunks.into_iter().map(|c| Ok::<_, BoxError>(Frame::data(c)));
    StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

/// Sends one request on a fresh HTTP/1.1 connection.
pub async fn send_raw(req: Request<ReqBody>) -> Result<Response<Incoming>, BoxError> {
    let client = Client::builder(TokioExecutor::new()).build_http::<ReqBody>();
    Ok(tokio::time::timeout(STEP, client.request(req)).await??)
}

/// Sends one request on a fresh h2 (prior knowledge) connection.
pub async fn send_h2(req: Request<ReqBody>) -> Result<Response<Incoming>, BoxError> {
    let client = Client::builder(TokioExecutor::new()).http2_only(true).build_http::<ReqBody>();
    Ok(tokio::time::timeout(STEP, client.request(req)).await??)
}

/// Sends and collects; panics on transport errors.
pub async fn send(req: Request<ReqBody>) -> Reply {
    let resp = send_raw(req).await.expect("request sent");
    collect(resp).await
}

pub async fn collect(resp: Response<Incoming>) -> Reply {
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(STEP, body.collect())
        .await
        .expect("body within time limit")
        .expect("body read")
        .to_bytes();
    Reply { status: parts.status, version: parts.version, headers: parts.headers, body }
}

/// A POST request with `Content-Type: application/json`, MCP's `Accept`, and `headers`.
pub fn post_request(url: &str, body: ReqBody, headers: &[(&str, &str)]) -> Request<ReqBody> {
    let mut builder = Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body).expect("request")
}

pub async fn post_json(url: &str, body: impl Into<Bytes>, headers: &[(&str, &str)]) -> Reply {
    send(post_request(url, full_body(body), headers)).await
}

/// A `tools/call` request body.
pub fn tools_call(id: i64, name: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{{}}}}}}"#)
}

// ---------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------

/// Sum of the samples of `name` whose labels include every pair of `labels`;
/// `None` when no sample matches.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        let pairs = parse_labels(series_labels);
        let matches = labels.iter().all(|(k, v)| pairs.iter().any(|(pk, pv)| pk == k && pv == v));
        if matches {
            let value: f64 = value.parse().expect("metric value");
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        pairs.push((key.trim_start_matches(',').trim().to_owned(), value));
        rest = &after[end..];
    }
    pairs
}

/// Waits until `check` holds on the proxy's metrics text (a leak fails here).
pub async fn wait_metrics(proxy: &TestProxy, what: &str, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + STEP;
    loop {
        let text = proxy.metrics().await;
        if check(&text) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not within {STEP:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// No stream counted, no client connection open: what every fault must leave behind.
pub async fn assert_nothing_leaks(proxy: &TestProxy, case: &str) {
    wait_metrics(proxy, &format!("{case}: streams and connections back to zero"), |m| {
        metric(m, "mcp_pep_active_streams", &[]) == Some(0.0) && metric(m, "mcp_pep_open_connections", &[]) == Some(0.0)
    })
    .await;
}

/// The `mcp_pep_rejections_total` count for one stage and reason (0 when absent).
pub fn rejections(text: &str, stage: &str, reason: &str) -> f64 {
    metric(text, "mcp_pep_rejections_total", &[("stage", stage), ("reason", reason)]).unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------
// A policy directory owned by the test
// ---------------------------------------------------------------------------------

impl ProxyBuilder {
    /// Starts with `dir` as the policy directory (the builder's files are not written):
    /// for tests that change the policies while the proxy runs.
    pub async fn start_in(self, dir: &Path) -> TestProxy {
        // Nothing is written to the builder's own dir; the test owns `dir`.
        self.launch(dir.to_path_buf(), TempDir::new("unused")).await
    }
}

/// Reads frames until `seen` holds `needle` or `limit` elapses (then panics: a buffering
/// proxy fails here instead of hanging the test).
pub async fn read_until(body: &mut hyper::body::Incoming, seen: &mut Vec<u8>, needle: &[u8], limit: Duration) {
    let deadline = Instant::now() + limit;
    while !seen.windows(needle.len()).any(|w| w == needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, body.frame()).await.unwrap_or_else(|_| {
            panic!(
                "{:?} not received within {limit:?}; got so far: {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(seen)
            )
        });
        match frame {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    seen.extend_from_slice(&data);
                }
            }
            Some(Err(e)) => panic!("stream failed before {needle:?}: {e}"),
            None => panic!(
                "stream ended before {:?}; got: {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(seen)
            ),
        }
    }
}
