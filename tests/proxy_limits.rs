//! Black-box tests of the listener's limits: what a slow, greedy or misdirected client
//! gets, and that honest clients keep being served meanwhile. Raw TCP where the point is
//! bytes a well-behaved client library would never send.

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use http_body_util::BodyExt;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SHORT: Duration = Duration::from_millis(600);

/// A proxy whose header and body timeouts are [`SHORT`].
async fn proxy_with_short_timeouts(upstream: &TestUpstream, f: impl FnOnce(&mut mcp_pep::config::Config)) -> TestProxy {
    TestProxy::builder(upstream.url())
        .configure(|c| {
            c.limits.header_read_timeout_ms = SHORT.as_millis() as u64;
            c.limits.body_read_timeout_ms = SHORT.as_millis() as u64;
            f(c);
        })
        .start()
        .await
}

/// Reads until the peer closes (or `limit` passes); what it sent, and whether it closed.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut seen = Vec::new();
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return (seen, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (seen, true),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

fn status_of(raw: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(raw).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

fn call_request(host: &str, extra: &str) -> String {
    let body = tools_call(1, "echo");
    format!(
        "POST /mcp HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\ncontent-length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn trickled_headers_are_cut_off() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = proxy_with_short_timeouts(&upstream, |_| {}).await;

    let mut slow = TcpStream::connect(proxy.mcp_addr).await.unwrap();
    // One header byte every 100 ms: always "active", never done.
    let request = call_request(&proxy.mcp_addr.to_string(), "");
    let started = Instant::now();
    let mut closed = false;
    for byte in request.as_bytes().iter().take(40) {
        if slow.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, closed_after) = read_to_close(&mut slow, STEP).await;
    assert!(closed || closed_after, "a connection trickling headers was kept open");
    assert!(started.elapsed() < SHORT + Duration::from_secs(3), "cut after {:?}", started.elapsed());
    assert!(upstream.requests().is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = proxy_with_short_timeouts(&upstream, |_| {}).await;

    let mut conn = TcpStream::connect(proxy.mcp_addr).await.unwrap();
    conn.write_all(call_request(&proxy.mcp_addr.to_string(), "").as_bytes()).await.unwrap();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(STEP, conn.read(&mut buf)).await.unwrap().unwrap();
    assert_eq!(status_of(&buf[..n]), Some(200), "{}", String::from_utf8_lossy(&buf[..n]));
    // Drain the rest of the answer, then stay silent.
    let started = Instant::now();
    let (_, closed) = read_to_close(&mut conn, SHORT * 8).await;
    assert!(closed, "an idle keep-alive connection stayed open for {:?}", started.elapsed());
    proxy.stop().await;
}

#[tokio::test]
async fn body_that_never_completes_is_cut_with_408() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = proxy_with_short_timeouts(&upstream, |_| {}).await;

    let mut conn = TcpStream::connect(proxy.mcp_addr).await.unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\ncontent-length: 400\r\n\r\n{{\"jsonrpc\":\"2.0\",",
        proxy.mcp_addr
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (raw, _) = read_to_close(&mut conn, STEP).await;
    assert_eq!(status_of(&raw), Some(408), "{}", String::from_utf8_lossy(&raw));
    assert!(started.elapsed() < SHORT + Duration::from_secs(3), "cut after {:?}", started.elapsed());
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("\"error\""), "no JSON-RPC error: {text}");
    assert!(upstream.requests().is_empty(), "a partial body reached the upstream");
    assert_eq!(rejections(&proxy.metrics().await, "inspect", "body_timeout"), 1.0);
    proxy.stop().await;
}

#[tokio::test]
async fn a_thousand_slow_connections_do_not_stop_honest_traffic() {
    let upstream = TestUpstream::json_ok().await;
    // Every slot taken by a slow client: only the header timeout frees them.
    let proxy = proxy_with_short_timeouts(&upstream, |c| c.limits.max_connections = 1000).await;

    let mut slow = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let mut conn = TcpStream::connect(proxy.mcp_addr).await.unwrap();
        conn.write_all(b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\n").await.unwrap();
        slow.push(conn);
    }
    let started = Instant::now();
    let reply = proxy.post(tools_call(1, "echo"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(started.elapsed() < STEP);
    // And every slow connection was closed, not just one.
    for conn in &mut slow {
        let (_, closed) = read_to_close(conn, STEP).await;
        assert!(closed, "a slow connection is still open");
    }
    assert_eq!(upstream.requests().len(), 1);
    proxy.stop().await;
}

/// (what is sent, expected status): the header limits, each refused before any stage.
#[tokio::test]
async fn header_limits_refuse_with_431() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = TestProxy::builder(upstream.url())
        .configure(|c| {
            c.limits.max_headers = 20;
            c.limits.max_header_bytes = 8 * 1024;
        })
        .start()
        .await;
    let many: String = (0..40).map(|i| format!("x-h{i}: v\r\n")).collect();
    let one_large = format!("x-large: {}\r\n", "a".repeat(16 * 1024));
    let just_under: String = (0..10).map(|i| format!("x-h{i}: v\r\n")).collect();
    let cases: [(&str, &str, u16); 3] =
        [("40 headers", &many, 431), ("a 16 KiB header", &one_large, 431), ("10 headers", &just_under, 200)];
    for (what, extra, want) in cases {
        let mut conn = TcpStream::connect(proxy.mcp_addr).await.unwrap();
        let _ = conn.write_all(call_request(&proxy.mcp_addr.to_string(), extra).as_bytes()).await;
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(STEP, conn.read(&mut buf)).await.unwrap().unwrap_or(0);
        assert_eq!(status_of(&buf[..n]), Some(want), "{what}: {}", String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(upstream.requests().len(), 1, "only the request within the limits is forwarded");
    let metrics = proxy.metrics().await;
    assert_eq!(metric(&metrics, "mcp_pep_connection_errors_total", &[("reason", "headers_too_large")]), Some(2.0));
    proxy.stop().await;
}

/// (Host header, allowlist, expected status): DNS rebinding names another host.
#[tokio::test]
async fn host_is_checked_against_the_allowlist() {
    let upstream = TestUpstream::json_ok().await;
    let derived = TestProxy::builder(upstream.url()).start().await;
    let port = derived.mcp_addr.port();
    let listed = TestProxy::builder(upstream.url())
        .configure(|c| c.allowed_hosts = vec!["mcp.example.com".into(), "*.svc.cluster.local:8443".into()])
        .start()
        .await;
    let from_public_url = TestProxy::builder(upstream.url())
        .configure(|c| {
            c.listen = "0.0.0.0:0".into();
            c.auth.public_url = Some("https://tools.example.org/mcp".into());
        })
        .start()
        .await;

    let cases: Vec<(&TestProxy, String, u16)> = vec![
        (&derived, format!("127.0.0.1:{port}"), 200),
        (&derived, format!("localhost:{port}"), 200),
        (&derived, "LOCALHOST.".into(), 200),
        (&derived, format!("[::1]:{port}"), 200),
        (&derived, "evil.example".into(), 403),
        (&derived, format!("evil.example:{port}"), 403),
        (&derived, "127.0.0.1.evil.example".into(), 403),
        (&derived, "localhost.evil.example".into(), 403),
        (&derived, "".into(), 403),
        (&listed, "mcp.example.com".into(), 200),
        (&listed, "MCP.example.com:443".into(), 200),
        (&listed, "a.b.svc.cluster.local:8443".into(), 200),
        (&listed, "a.svc.cluster.local:80".into(), 403),
        (&listed, "svc.cluster.local:8443".into(), 403),
        (&listed, format!("127.0.0.1:{}", listed.mcp_addr.port()), 403),
        (&listed, "mcp.example.com.evil.example".into(), 403),
        (&from_public_url, "tools.example.org".into(), 200),
        (&from_public_url, "localhost".into(), 200),
        (&from_public_url, "other.example.org".into(), 403),
    ];
    let mut forwarded = 0;
    for (proxy, host, want) in &cases {
        let mut conn = TcpStream::connect(proxy.mcp_addr).await.unwrap();
        conn.write_all(call_request(host, "").as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(STEP, conn.read(&mut buf)).await.unwrap().unwrap();
        let raw = String::from_utf8_lossy(&buf[..n]);
        assert_eq!(status_of(&buf[..n]), Some(*want), "Host {host:?}: {raw}");
        if *want == 200 {
            forwarded += 1;
        } else {
            assert!(raw.contains("host not allowed"), "Host {host:?}: {raw}");
        }
        assert_eq!(upstream.requests().len(), forwarded, "Host {host:?}");
    }
    assert_eq!(rejections(&derived.metrics().await, "listener", "host"), 5.0);
    derived.stop().await;
    listed.stop().await;
    from_public_url.stop().await;
}

#[tokio::test]
async fn h2_authority_is_checked_too() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = TestProxy::builder(upstream.url()).start().await;
    let port = proxy.mcp_addr.port();
    let ok = send_h2(post_request(&format!("http://localhost:{port}/mcp"), full_body(tools_call(1, "echo")), &[]))
        .await
        .expect("h2 request");
    assert_eq!(ok.status(), StatusCode::OK);
    // The client connects to the proxy but names another authority.
    let stream = TcpStream::connect(proxy.mcp_addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = post_request("http://evil.example/mcp", full_body(tools_call(2, "echo")), &[]);
    let refused = collect(sender.send_request(req).await.unwrap()).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());
    assert_eq!(upstream.requests().len(), 1);
    conn.abort();
    proxy.stop().await;
}

#[tokio::test]
async fn h2_streams_per_connection_are_bounded() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (i, m) = (in_flight.clone(), most.clone());
    let upstream = TestUpstream::start(move |_| {
        let (i, m) = (i.clone(), m.clone());
        async move {
            let now = i.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(300)).await;
            i.fetch_sub(1, Ordering::SeqCst);
            json_reply(StatusCode::OK, r#"{"jsonrpc":"2.0","id":1,"result":{}}"#)
        }
    })
    .await;
    let proxy = TestProxy::builder(upstream.url()).configure(|c| c.limits.h2_max_concurrent_streams = 2).start().await;

    let stream = TcpStream::connect(proxy.mcp_addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    // Let the server's SETTINGS arrive so the client knows the bound.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let calls = (0..6).map(|n| {
        let mut sender = sender.clone();
        let url = proxy.url();
        async move {
            let resp = sender.send_request(post_request(&url, full_body(tools_call(n, "echo")), &[])).await;
            resp.map(|r| r.status())
        }
    });
    let statuses = futures_util::future::join_all(calls).await;
    assert!(statuses.iter().all(|s| matches!(s, Ok(StatusCode::OK))), "{statuses:?}");
    assert_eq!(upstream.requests().len(), 6);
    assert_eq!(most.load(Ordering::SeqCst), 2, "more streams ran at once than the server allows");
    conn.abort();
    proxy.stop().await;
}

#[tokio::test]
async fn limits_are_validated() {
    type Change = fn(&mut mcp_pep::config::Config);
    // (what is set, the key the refusal must name)
    let cases: [(Change, &str); 13] = [
        (|c| c.limits.header_read_timeout_ms = 0, "limits.header_read_timeout_ms"),
        (|c| c.limits.body_read_timeout_ms = 0, "limits.body_read_timeout_ms"),
        (|c| c.limits.max_header_bytes = 0, "limits.max_header_bytes"),
        (|c| c.limits.max_headers = 0, "limits.max_headers"),
        (|c| c.limits.h2_max_concurrent_streams = 0, "limits.h2_max_concurrent_streams"),
        (|c| c.limits.rate_per_caller = -1.0, "limits.rate_per_caller"),
        (|c| c.limits.rate_per_caller = f64::NAN, "limits.rate_per_caller"),
        (|c| c.limits.max_answer_bytes = 0, "limits.max_answer_bytes"),
        (|c| c.allowed_hosts = vec!["*".into(), "mcp.example.com".into()], "allowed_hosts"),
        (|c| c.allowed_hosts = vec!["bad host".into()], "allowed_hosts"),
        // A shared budget needs a shared backend; the memory one is per replica.
        (|c| c.limits.rate_scope = "shared".into(), "limits.rate_scope"),
        (|c| c.limits.rate_scope = "cluster".into(), "limits.rate_scope"),
        (|c| c.limits.rate_on_state_error = "allow".into(), "limits.rate_on_state_error"),
    ];
    for (change, key) in cases {
        let mut config = mcp_pep::config::Config::default();
        config.upstream.url = Some("http://127.0.0.1:1/mcp".into());
        config.policy.dir = Some(std::env::temp_dir());
        change(&mut config);
        let err = config.validate("test").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(key), "{key}: {err}");
    }
}

/// One POST from a given loopback source address (127.0.0.x are all this machine's).
async fn post_from(source: [u8; 4], proxy: &TestProxy, id: i64) -> (u16, String, Option<String>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((source, 0))).unwrap();
    let mut conn = socket.connect(proxy.mcp_addr).await.unwrap();
    let body = tools_call(id, "echo");
    let request = format!(
        "POST /mcp HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        proxy.mcp_addr,
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let (raw, _) = read_to_close(&mut conn, STEP).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let retry_after =
        text.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("retry-after: ").map(|v| v.trim().to_owned()));
    (status_of(&raw).unwrap_or(0), text, retry_after)
}

#[tokio::test]
async fn each_caller_has_a_request_budget() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = TestProxy::builder(upstream.url())
        .configure(|c| {
            c.limits.rate_per_caller = 2.0;
            c.limits.rate_burst_per_caller = 3;
        })
        .start()
        .await;

    for id in 1..=3 {
        let (status, text, _) = post_from([127, 0, 0, 1], &proxy, id).await;
        assert_eq!(status, 200, "request {id} within the burst: {text}");
    }
    let (status, text, retry_after) = post_from([127, 0, 0, 1], &proxy, 4).await;
    assert_eq!(status, 429, "{text}");
    assert_eq!(retry_after.as_deref(), Some("1"), "{text}");
    assert!(text.contains("\"id\":4") && text.contains("too many requests"), "no JSON-RPC error for id 4: {text}");
    assert_eq!(upstream.requests().len(), 3, "a refused request reached the upstream");
    // Another caller (another address) is not charged for the first one.
    let (status, text, _) = post_from([127, 0, 0, 2], &proxy, 5).await;
    assert_eq!(status, 200, "{text}");
    // Half a second refills one request (2/s), not more.
    tokio::time::sleep(Duration::from_millis(550)).await;
    assert_eq!(post_from([127, 0, 0, 1], &proxy, 6).await.0, 200);
    assert_eq!(post_from([127, 0, 0, 1], &proxy, 7).await.0, 429);
    assert_eq!(rejections(&proxy.metrics().await, "limits", "rate_limited"), 2.0);
    proxy.stop().await;
}

#[tokio::test]
async fn open_streams_per_caller_are_bounded() {
    use http_body_util::StreamBody;
    // Every answer is an SSE stream that stays open until the test drops it.
    let upstream = TestUpstream::start(|_| async {
        let first = futures_util::stream::once(async {
            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(bytes::Bytes::from_static(b": open\n\n")))
        });
        let events = first.chain(futures_util::stream::pending());
        http::Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/event-stream")
            .body(BodyExt::boxed(StreamBody::new(events)))
            .unwrap()
    })
    .await;
    let proxy = TestProxy::builder(upstream.url()).configure(|c| c.limits.max_streams_per_caller = 2).start().await;
    use futures_util::StreamExt as _;

    let open = |id: i64| {
        let url = proxy.url();
        async move { send_raw(post_request(&url, full_body(tools_call(id, "echo")), &[])).await.expect("answer") }
    };
    let first = open(1).await;
    let second = open(2).await;
    assert_eq!((first.status(), second.status()), (StatusCode::OK, StatusCode::OK));
    let third = collect(open(3).await).await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS, "{}", third.text());
    assert_eq!(third.json()["id"], 3);
    assert_eq!(upstream.requests().len(), 2, "the refused request reached the upstream");
    // Closing one stream gives its slot back.
    drop(first);
    let deadline = Instant::now() + STEP;
    let fourth = loop {
        let resp = open(4).await;
        if resp.status() == StatusCode::OK || Instant::now() > deadline {
            break resp;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(fourth.status(), StatusCode::OK);
    assert!(rejections(&proxy.metrics().await, "limits", "too_many_streams") >= 1.0);
    drop((second, fourth));
    let deadline = Instant::now() + STEP;
    while metric(&proxy.metrics().await, "mcp_pep_active_streams", &[]) != Some(0.0) {
        assert!(Instant::now() < deadline, "streams still counted as open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.stop().await;
}

/// A `tools/list` answer of `tools` tools, as JSON or as one SSE event.
fn big_list(tools: usize, sse: bool) -> http::Response<UpBody> {
    let items: Vec<String> =
        (0..tools).map(|n| format!(r#"{{"name":"tool-{n}","inputSchema":{{"type":"object"}}}}"#)).collect();
    let json = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{{"tools":[{}]}}}}"#, items.join(","));
    if !sse {
        return json_reply(StatusCode::OK, json);
    }
    http::Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .body(up_body(format!("event: message\ndata: {json}\n\n")))
        .unwrap()
}

/// (answer, expected status): what cannot be checked whole is refused, never passed on.
#[tokio::test]
async fn list_answers_larger_than_the_limit_are_refused_not_forwarded_unfiltered() {
    let cases = [(10, false, 200), (10, true, 200), (200, false, 502), (200, true, 0)];
    for (tools, sse, want) in cases {
        let upstream = TestUpstream::start(move |_| async move { big_list(tools, sse) }).await;
        let proxy = TestProxy::builder(upstream.url()).configure(|c| c.limits.max_answer_bytes = 4096).start().await;
        let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        let resp = send_raw(post_request(&proxy.url(), full_body(list), &[])).await.expect("answer");
        let status = resp.status();
        let body = match resp.into_body().collect().await {
            Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
            Err(_) => String::new(),
        };
        let case = format!("{tools} tools, sse: {sse}");
        if want == 0 {
            // An SSE answer is already under way: the oversized event is replaced by a
            // JSON-RPC error event for the request.
            assert_eq!(status, StatusCode::OK, "{case}");
            assert!(body.contains("\"error\"") && body.contains("\"id\":1"), "{case}: {body}");
        } else {
            assert_eq!(status.as_u16(), want, "{case}: {body}");
        }
        if want != 200 {
            assert!(!body.contains("tool-1"), "{case}: the unchecked list reached the client");
        }
        proxy.stop().await;
    }
}

/// An upstream that answers every request with the start of an SSE stream (`first`) and
/// then drops the connection mid-body.
async fn breaking_sse_upstream(first: &'static str) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut seen = Vec::new();
                // Read the request's headers and body (Content-Length) before answering.
                loop {
                    let Ok(n) = conn.read(&mut buf).await else { return };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| {
                                l.strip_prefix("content-length: ").and_then(|v| v.trim().parse::<usize>().ok())
                            })
                            .unwrap_or(0);
                        if seen.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let chunk = format!("{:x}\r\n{first}\r\n", first.len());
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                let _ = conn.write_all(format!("{head}{chunk}").as_bytes()).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                // Dropped without the last chunk: the stream breaks.
            });
        }
    });
    (url, task)
}

/// (request, what the tool server sent before breaking, whether the client must get an
/// error for its id): a broken stream ends with an answer, never a hang or a duplicate.
#[tokio::test]
async fn a_stream_that_breaks_ends_with_an_error_for_the_pending_request() {
    let progress = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\n\n";
    let answered = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[]}}\n\n";
    let listed = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[]}}\n\n";
    let list = r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#;
    let call = tools_call(7, "echo");
    let cases: [(&str, &'static str, bool); 4] =
        [(&call, progress, true), (&call, answered, false), (list, progress, true), (list, listed, false)];
    for (request, first, want_error) in cases {
        let (url, task) = breaking_sse_upstream(first).await;
        let proxy = TestProxy::builder(url).start().await;
        let resp = send_raw(post_request(&proxy.url(), full_body(request.to_owned()), &[])).await.expect("answer");
        assert_eq!(resp.status(), StatusCode::OK);
        let collected = tokio::time::timeout(STEP, resp.into_body().collect()).await.expect("the stream ended");
        let case = format!("{request} after {first:?}");
        match collected {
            Ok(body) => {
                let text = String::from_utf8_lossy(&body.to_bytes()).into_owned();
                let errors = text.matches("\"error\"").count();
                assert!(text.starts_with(first), "{case}: events before the break lost: {text}");
                assert_eq!(errors, usize::from(want_error), "{case}: {text}");
                if want_error {
                    assert!(text.contains("\"id\":7"), "{case}: {text}");
                }
            }
            // Torn, as it was sent: allowed only when the answer already went by.
            Err(e) => assert!(!want_error, "{case}: torn stream ({e}) instead of an error event"),
        }
        wait_streams_closed(&proxy).await;
        proxy.stop().await;
        task.abort();
    }
}

async fn wait_streams_closed(proxy: &TestProxy) {
    let deadline = Instant::now() + STEP;
    while metric(&proxy.metrics().await, "mcp_pep_active_streams", &[]) != Some(0.0) {
        assert!(Instant::now() < deadline, "a broken stream is still counted as active");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
