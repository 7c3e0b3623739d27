//! A failing tool server, fault by fault: each gets a clean answer (status + JSON-RPC error
//! with the request's id, or an error event on a stream), nothing of its internals reaches
//! the client, and nothing leaks (streams, connections, tasks). Then the circuit breaker:
//! a dead upstream is refused at once instead of being called again per request.
//!
//! Faults tested elsewhere: slow response headers (504) in proxy_forwarding.rs
//! (`upstream_that_never_answers_is_504_with_the_request_id`); TLS to a tool server with
//! another SPIFFE ID or outside the bundle in upstream_mtls.rs; a reset in the middle of an
//! SSE stream and oversized list answers in proxy_limits.rs; invalid list answers in
//! proxy_list_filter.rs.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

fn upstream_errors(text: &str, kind: &str) -> f64 {
    metric(text, "mcp_pep_upstream_errors_total", &[("kind", kind)]).unwrap_or(0.0)
}

/// A JSON-RPC error answer for request `id`.
fn assert_error_for(reply: &Reply, id: i64, code: i64, case: &str) {
    let body = reply.json();
    assert_eq!(body["jsonrpc"], "2.0", "{case}: {body}");
    assert_eq!(body["id"], id, "{case}: {body}");
    assert_eq!(body["error"]["code"], code, "{case}: {body}");
    assert_eq!(reply.header("content-type"), Some("application/json"), "{case}");
}

/// A body: these frames, then nothing for ever (the connection stays open).
fn stalling(frames: &[&'static str]) -> UpBody {
    let frames: Vec<_> = frames.iter().map(|f| Ok(Frame::data(Bytes::from_static(f.as_bytes())))).collect();
    let sent = futures_util::stream::iter(frames);
    BodyExt::boxed(StreamBody::new(futures_util::StreamExt::chain(sent, futures_util::stream::pending())))
}

fn answer(status: u16, content_type: &'static str, body: UpBody) -> Response<UpBody> {
    Response::builder().status(status).header("content-type", content_type).body(body).unwrap()
}

const TRACE: &str = "Traceback (most recent call last):\n  File \"/srv/app/db.py\", line 12\npsycopg.OperationalError: password authentication failed for user \"tools\"";
const RPC_ERROR: &str =
    r#"{"jsonrpc":"2.0","id":9,"error":{"code":-32603,"message":"tool crashed","data":{"retry":false}}}"#;

/// How a test upstream answers, and what the client must get.
struct Case {
    name: &'static str,
    answer: fn() -> Response<UpBody>,
    status: u16,
    /// The JSON-RPC error code the proxy answers with; `None`: the upstream's body passes.
    code: Option<i64>,
    /// `mcp_pep_upstream_errors_total` kinds counted once each.
    kinds: &'static [&'static str],
}

/// (fault → answer) for tool servers that do answer, badly.
#[tokio::test]
async fn bad_answers_get_a_clean_error_and_never_leak_internals() {
    let cases = [
        Case {
            name: "JSON answer stalls after its headers",
            answer: || answer(200, "application/json", stalling(&[])),
            status: 504,
            code: Some(-32003),
            kinds: &["body_timeout"],
        },
        Case {
            name: "500 with an HTML stack trace",
            answer: || answer(500, "text/html", up_body(format!("<html><pre>{TRACE}</pre></html>"))),
            status: 500,
            code: Some(-32002),
            kinds: &["server_error"],
        },
        Case {
            name: "503 in plain text",
            answer: || answer(503, "text/plain", up_body(TRACE)),
            status: 503,
            code: Some(-32002),
            kinds: &["server_error"],
        },
        Case {
            name: "502 with JSON that is not JSON-RPC",
            answer: || answer(502, "application/json", up_body(format!("{{\"detail\":{TRACE:?}}}"))),
            status: 502,
            code: Some(-32002),
            kinds: &["server_error"],
        },
        Case {
            name: "500 with an SSE body",
            answer: || answer(500, "text/event-stream", up_body(format!("data: {TRACE:?}\n\n"))),
            status: 500,
            code: Some(-32002),
            kinds: &["server_error"],
        },
        Case {
            name: "500 with a JSON-RPC error whose body stalls",
            answer: || answer(500, "application/json", stalling(&[r#"{"jsonrpc":"2.0","#])),
            status: 500,
            code: Some(-32002),
            kinds: &["server_error", "body_timeout"],
        },
        Case {
            name: "500 with a JSON-RPC error",
            answer: || answer(500, "application/json; charset=utf-8", up_body(RPC_ERROR)),
            status: 500,
            code: None,
            kinds: &[],
        },
    ];
    for case in cases {
        let make = case.answer;
        let upstream = TestUpstream::start(move |_| async move { make() }).await;
        let proxy =
            TestProxy::builder(upstream.url()).configure(|c| c.upstream.response_body_timeout_ms = 300).start().await;
        let reply = proxy.post(tools_call(9, "echo"), &[]).await;
        let name = case.name;
        assert_eq!(reply.status.as_u16(), case.status, "{name}: {}", reply.text());
        match case.code {
            Some(code) => assert_error_for(&reply, 9, code, name),
            None => assert_eq!(reply.text(), RPC_ERROR, "{name}: the server's JSON-RPC error passes unchanged"),
        }
        assert!(!reply.text().contains("password") && !reply.text().contains("Traceback"), "{name}: {}", reply.text());
        let metrics = proxy.metrics().await;
        for kind in ["body_timeout", "server_error"] {
            let want = if case.kinds.contains(&kind) { 1.0 } else { 0.0 };
            assert_eq!(upstream_errors(&metrics, kind), want, "{name}: upstream_errors_total{{kind={kind}}}");
        }
        assert_eq!(upstream.requests().len(), 1, "{name}");
        assert_nothing_leaks(&proxy, name).await;
        proxy.stop().await;
    }
}

/// A JSON answer that stalls after part of its body: the client's read fails (the answer
/// is cut), it does not hang; the cut is counted.
#[tokio::test]
async fn a_body_that_stalls_midway_is_cut() {
    let upstream = TestUpstream::start(|_| async {
        let mut resp = answer(200, "application/json", stalling(&[r#"{"jsonrpc":"2.0","id":3,"#]));
        resp.headers_mut().insert("content-length", "64".parse().unwrap());
        resp
    })
    .await;
    let proxy =
        TestProxy::builder(upstream.url()).configure(|c| c.upstream.response_body_timeout_ms = 300).start().await;
    let resp = send_raw(post_request(&proxy.url(), full_body(tools_call(3, "echo")), &[])).await.expect("headers");
    assert_eq!(resp.status(), StatusCode::OK, "the first bytes went out with the headers");
    let read = tokio::time::timeout(STEP, resp.into_body().collect()).await.expect("the answer ended, no hang");
    assert!(read.is_err(), "a cut answer must not read as complete");
    assert_eq!(upstream_errors(&proxy.metrics().await, "body_timeout"), 1.0);
    assert_nothing_leaks(&proxy, "stalled midway").await;
    proxy.stop().await;
}

/// An SSE stream that goes silent: with `stream_idle_timeout_ms` it ends with an error
/// event for the pending request; by default (off) silence is not a fault, and the
/// body deadline of JSON answers never applies to a stream.
#[tokio::test]
async fn a_silent_stream_is_ended_only_when_an_idle_limit_is_set() {
    const PROGRESS: &str = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\n\n";
    const ANSWER: &str = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"content\":[]}}\n\n";
    let upstream = TestUpstream::start(|_| async {
        // Progress, 600 ms of silence, the answer.
        let frames = futures_util::stream::unfold(0u8, |step| async move {
            match step {
                0 => Some((Ok(Frame::data(Bytes::from_static(PROGRESS.as_bytes()))), 1)),
                1 => {
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    Some((Ok(Frame::data(Bytes::from_static(ANSWER.as_bytes()))), 2))
                }
                _ => None,
            }
        });
        answer(200, "text/event-stream", BodyExt::boxed(StreamBody::new(frames)))
    })
    .await;
    // (stream idle limit, whether the client gets the answer or an error event)
    for (idle_ms, answered) in [(0u64, true), (150, false)] {
        let proxy = TestProxy::builder(upstream.url())
            .configure(|c| {
                c.upstream.response_body_timeout_ms = 100;
                c.upstream.stream_idle_timeout_ms = idle_ms;
            })
            .start()
            .await;
        let reply = proxy.post(tools_call(4, "echo"), &[]).await;
        assert_eq!(reply.status, StatusCode::OK);
        let text = reply.text();
        assert!(text.starts_with(PROGRESS), "idle {idle_ms}: {text}");
        if answered {
            assert_eq!(text, format!("{PROGRESS}{ANSWER}"), "idle off: the stream is left alone");
        } else {
            assert!(!text.contains("\"result\""), "idle {idle_ms}: {text}");
            let event = text[PROGRESS.len()..].trim().strip_prefix("event: message\ndata: ").expect("an error event");
            let error: serde_json::Value = serde_json::from_str(event).expect("JSON-RPC");
            assert_eq!((error["id"].as_i64(), error["error"]["code"].as_i64()), (Some(4), Some(-32002)), "{error}");
            assert_eq!(upstream_errors(&proxy.metrics().await, "stream_idle"), 1.0);
        }
        assert_nothing_leaks(&proxy, &format!("idle {idle_ms}")).await;
        proxy.stop().await;
    }
}

// ---------------------------------------------------------------------------------
// A raw upstream: counts connections, and can drop them, hang, or answer
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Read the request, close without a word.
    Drop,
    /// Read the request, never answer.
    Hang,
    /// Answer 200 with a JSON-RPC result.
    Answer,
    /// Send the headers of a JSON answer, close before its body.
    Truncate,
}

struct RawUpstream {
    url: String,
    accepted: Arc<AtomicUsize>,
    mode: Arc<Mutex<Mode>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawUpstream {
    async fn start(mode: Mode) -> RawUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let mode = Arc::new(Mutex::new(mode));
        let (count, current) = (accepted.clone(), mode.clone());
        let task = tokio::spawn(async move {
            // Dropped (aborted) with the task: every connection ends with it.
            let mut connections = JoinSet::new();
            while let Ok((mut conn, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let current = current.clone();
                connections.spawn(async move {
                    loop {
                        if !read_request(&mut conn).await {
                            return;
                        }
                        let mode = *current.lock().unwrap();
                        match mode {
                            Mode::Drop => return,
                            Mode::Hang => std::future::pending::<()>().await,
                            Mode::Truncate => {
                                let head =
                                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 64\r\n\r\n";
                                let _ = conn.write_all(head.as_bytes()).await;
                                return;
                            }
                            Mode::Answer => {
                                let body = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#;
                                let head = format!(
                                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                                    body.len()
                                );
                                if conn.write_all(format!("{head}{body}").as_bytes()).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        });
        RawUpstream { url, accepted, mode, task }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request (headers and a `Content-Length` body); false when the peer closed.
async fn read_request(conn: &mut tokio::net::TcpStream) -> bool {
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&seen).to_ascii_lowercase();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length: ").and_then(|v| v.trim().parse::<usize>().ok()))
                .unwrap_or(0);
            if seen.len() >= end + 4 + length {
                return true;
            }
        }
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// (fault → answer) for tool servers that cannot be reached, or hang up.
#[tokio::test]
async fn unreachable_upstreams_get_a_clean_error_with_the_request_id() {
    let dropping = RawUpstream::start(Mode::Drop).await;
    let truncating = RawUpstream::start(Mode::Truncate).await;
    let dead = dead_addr().await;
    // (fault, upstream URL, status, upstream_errors_total kind)
    let cases = [
        ("connection refused", format!("http://{dead}/mcp"), 502, "connect"),
        // RFC 6761: `.invalid` never resolves. With a network the first server asked says
        // NXDOMAIN; without one the lookup fails or is cut at the connect timeout: 502
        // either way, never the resolver's own retries.
        ("DNS failure", "http://tool-server.mcp-pep-test.invalid:8080/mcp".to_owned(), 502, "connect"),
        ("connection closed before the answer", dropping.url.clone(), 502, "request"),
        ("connection closed after the headers", truncating.url.clone(), 502, "body_broken"),
    ];
    for (name, url, status, kind) in cases {
        let proxy = TestProxy::builder(url)
            .configure(|c| {
                c.upstream.breaker_failures = 0;
                c.upstream.connect_timeout_ms = 1_000;
                c.upstream.response_header_timeout_ms = 8_000;
            })
            .start()
            .await;
        let started = Instant::now();
        let reply = proxy.post(tools_call(11, "echo"), &[]).await;
        eprintln!("{name}: answered in {:?}", started.elapsed());
        assert_eq!(reply.status.as_u16(), status, "{name}: {}", reply.text());
        assert_error_for(&reply, 11, -32002, name);
        assert_eq!(upstream_errors(&proxy.metrics().await, kind), 1.0, "{name}: kind {kind}");
        assert_nothing_leaks(&proxy, name).await;
        proxy.stop().await;
    }
    assert_eq!((dropping.accepted(), truncating.accepted()), (1, 1));
}

/// Every server, stream, connection and task a run of faults starts is gone after it.
#[tokio::test]
async fn no_task_outlives_a_run_of_faults() {
    let tasks = || tokio::runtime::Handle::current().metrics().num_alive_tasks();
    let before = tasks();
    {
        let upstream = TestUpstream::start(|r| async move {
            match r.body.windows(5).any(|w| w == b"stall") {
                true => answer(200, "application/json", stalling(&[])),
                false => answer(500, "text/html", up_body(TRACE)),
            }
        })
        .await;
        let proxy =
            TestProxy::builder(upstream.url()).configure(|c| c.upstream.response_body_timeout_ms = 200).start().await;
        for (id, tool) in [(1, "stall"), (2, "crash"), (3, "stall")] {
            let reply = proxy.post(tools_call(id, tool), &[]).await;
            assert!(reply.status.is_server_error(), "{tool}");
        }
        assert_nothing_leaks(&proxy, "run").await;
        proxy.stop().await;
    }
    let deadline = Instant::now() + STEP;
    while tasks() > before {
        assert!(Instant::now() < deadline, "{} tasks still alive, {before} before the run", tasks());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------
// The circuit breaker
// ---------------------------------------------------------------------------------

fn circuit(text: &str) -> (f64, f64, f64, f64) {
    let to = |state| metric(text, "mcp_pep_upstream_circuit_transitions_total", &[("to", state)]).unwrap_or(0.0);
    (metric(text, "mcp_pep_upstream_circuit_state", &[]).unwrap_or(-1.0), to("open"), to("half_open"), to("closed"))
}

/// Waits until `/readyz` answers `status`; returns its text.
async fn wait_ready(proxy: &TestProxy, status: StatusCode) -> String {
    let deadline = Instant::now() + STEP;
    loop {
        let reply = proxy.admin_get("/readyz").await;
        if reply.status == status {
            return reply.text();
        }
        assert!(Instant::now() < deadline, "/readyz is {} ({}), expected {status}", reply.status, reply.text());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_breaker_opens_after_n_failures_and_then_refuses_without_calling() {
    let upstream = RawUpstream::start(Mode::Drop).await;
    let proxy = TestProxy::builder(upstream.url.clone())
        .configure(|c| {
            c.upstream.breaker_failures = 3;
            c.upstream.breaker_backoff_ms = 600_000;
            c.upstream.breaker_max_backoff_ms = 600_000;
        })
        .start()
        .await;
    assert_eq!(circuit(&proxy.metrics().await), (0.0, 0.0, 0.0, 0.0));
    for id in 1..=3 {
        let reply = proxy.post(tools_call(id, "echo"), &[]).await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "failure {id}");
    }
    assert_eq!(upstream.accepted(), 3);
    assert_eq!(circuit(&proxy.metrics().await), (1.0, 1.0, 0.0, 0.0), "open after the third");
    let readyz = wait_ready(&proxy, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(readyz.contains("upstream circuit open"), "{readyz}");

    upstream.set(Mode::Answer);
    for id in 4..=6 {
        let reply = proxy.post(tools_call(id, "echo"), &[]).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.text());
        assert_error_for(&reply, id, -32002, "open");
        let retry: u64 = reply.header("retry-after").expect("Retry-After").parse().expect("seconds");
        assert!((300..=600).contains(&retry), "Retry-After {retry}: within the jittered back-off");
    }
    assert_eq!(upstream.accepted(), 3, "no connection attempt while open");
    let metrics = proxy.metrics().await;
    assert_eq!(rejections(&metrics, "upstream", "circuit_open"), 3.0);
    // Counted with the upstream's failures, so an outage keeps alerting while open.
    assert_eq!(upstream_errors(&metrics, "circuit_open"), 3.0);
    assert_nothing_leaks(&proxy, "open").await;
    proxy.stop().await;
}

#[tokio::test]
async fn one_probe_after_the_backoff_closes_it_on_success_and_reopens_it_on_failure() {
    let upstream = RawUpstream::start(Mode::Drop).await;
    let proxy = TestProxy::builder(upstream.url.clone())
        .configure(|c| {
            c.upstream.breaker_failures = 2;
            c.upstream.breaker_backoff_ms = 100;
            c.upstream.breaker_max_backoff_ms = 200;
            // How long the probe below hangs: time enough to send another request meanwhile.
            c.upstream.response_header_timeout_ms = 3_000;
        })
        .start()
        .await;
    for id in 1..=2 {
        assert_eq!(proxy.post(tools_call(id, "echo"), &[]).await.status, StatusCode::BAD_GATEWAY);
    }
    assert_eq!(circuit(&proxy.metrics().await).1, 1.0, "opened");
    // The back-off over, `/readyz` is ready again so that a probe can arrive.
    wait_ready(&proxy, StatusCode::OK).await;

    // The probe hangs; meanwhile every other request is refused without a call.
    upstream.set(Mode::Hang);
    let url = proxy.url();
    let probe = tokio::spawn(async move { post_json(&url, tools_call(3, "echo"), &[]).await });
    let deadline = Instant::now() + STEP;
    while upstream.accepted() < 3 {
        assert!(Instant::now() < deadline, "the probe never reached the upstream");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(circuit(&proxy.metrics().await), (2.0, 1.0, 1.0, 0.0), "half-open");
    let refused = proxy.post(tools_call(4, "echo"), &[]).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE, "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(upstream.accepted(), 3, "one probe at a time");

    // The probe times out: open again.
    let probe = probe.await.expect("probe task");
    assert_eq!(probe.status, StatusCode::GATEWAY_TIMEOUT, "{}", probe.text());
    assert_eq!(circuit(&proxy.metrics().await), (1.0, 2.0, 1.0, 0.0), "reopened by the failed probe");

    // The next probe is answered: closed, and requests flow again.
    upstream.set(Mode::Answer);
    wait_ready(&proxy, StatusCode::OK).await;
    for id in 5..=7 {
        let reply = proxy.post(tools_call(id, "echo"), &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{id}: {}", reply.text());
    }
    assert_eq!(circuit(&proxy.metrics().await), (0.0, 2.0, 2.0, 1.0), "closed by the answered probe");
    let readyz = wait_ready(&proxy, StatusCode::OK).await;
    assert!(readyz.starts_with("ready"), "{readyz}");
    assert_nothing_leaks(&proxy, "closed").await;
    proxy.stop().await;
}

/// (setting, the key its refusal names); a breaker that is off needs no back-off.
#[tokio::test]
async fn upstream_fault_settings_are_validated() {
    type Change = fn(&mut mcp_pep::config::Config);
    let refused: [(Change, &str); 7] = [
        (|c| c.upstream.response_body_timeout_ms = 0, "upstream.response_body_timeout_ms"),
        (|c| c.upstream.response_body_timeout_ms = 86_400_001, "upstream.response_body_timeout_ms"),
        (|c| c.upstream.stream_idle_timeout_ms = u64::MAX, "upstream.stream_idle_timeout_ms"),
        (|c| c.upstream.breaker_backoff_ms = 0, "upstream.breaker_backoff_ms"),
        (|c| c.upstream.breaker_backoff_ms = 3_600_001, "upstream.breaker_backoff_ms"),
        (|c| c.upstream.breaker_max_backoff_ms = 999, "upstream.breaker_max_backoff_ms"),
        (|c| c.upstream.breaker_max_backoff_ms = 3_600_001, "upstream.breaker_max_backoff_ms"),
    ];
    let config = |change: Change| {
        let mut config = mcp_pep::config::Config::default();
        config.upstream.url = Some("http://127.0.0.1:1/mcp".into());
        config.policy.dir = Some(std::env::temp_dir());
        change(&mut config);
        config.validate("test").err().map(|e| e.to_string())
    };
    for (change, key) in refused {
        let err = config(change).unwrap_or_default();
        assert!(err.contains(key), "{key}: {err:?}");
    }
    let accepted: [Change; 3] = [
        |_| {},
        |c| c.upstream.stream_idle_timeout_ms = 0,
        |c| {
            c.upstream.breaker_failures = 0;
            c.upstream.breaker_backoff_ms = 0;
        },
    ];
    for change in accepted {
        assert_eq!(config(change), None);
    }
}
