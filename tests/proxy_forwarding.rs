//! Black-box tests of forwarding: what reaches the upstream, what comes back, and how
//! the proxy behaves when the upstream fails or the proxy shuts down.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::sync::oneshot;

#[tokio::test]
async fn allowed_call_reaches_upstream_with_original_bytes_and_answer_comes_back() {
    let upstream = TestUpstream::start(|_| async {
        let mut resp = json_reply(
            StatusCode::OK,
            "{\"jsonrpc\":\"2.0\",  \"id\":7,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}}",
        );
        resp.headers_mut().insert("x-upstream-marker", "kept".parse().unwrap());
        resp
    })
    .await;
    let proxy = TestProxy::builder(upstream.url()).start().await;

    // Odd whitespace, key order and an escape: any re-serialisation would change it.
    let body = "{ \"params\" :{\"arguments\":{\"b\" : 2,\t\"a\":\"\\u00e9\" } ,\"name\":\"echo\"},\r\n \"id\":7,\"method\" : \"tools/call\",\"jsonrpc\":\"2.0\"  }";
    let reply = proxy.post(body, &[]).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("x-upstream-marker"), Some("kept"));
    assert_eq!(
        reply.text(),
        "{\"jsonrpc\":\"2.0\",  \"id\":7,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}}"
    );
    let seen = upstream.wait_for_requests(1).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, http::Method::POST);
    assert_eq!(seen[0].uri.path(), "/mcp");
    assert_eq!(seen[0].body, Bytes::from(body), "bytes re-serialised");
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    proxy.stop().await;
}

#[tokio::test]
async fn credentials_and_hop_by_hop_headers_never_reach_upstream() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = TestProxy::builder(upstream.url()).start().await;

    // A connection-level client, so that hop-by-hop headers are sent exactly as written.
    let stream = tokio::net::TcpStream::connect(proxy.mcp_addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut req = Request::post("/mcp")
        .header("host", proxy.mcp_addr.to_string())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", "DPoP secret-token")
        .header("dpop", "eyJhbGciOiJFUzI1NiJ9.proof.sig")
        .header("cookie", "session=secret")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("proxy-foo", "1")
        .header("connection", "keep-alive, x-secret-hop")
        .header("x-secret-hop", "must-not-pass")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("upgrade", "h2c")
        .header("mcp-session-id", "sess-42")
        .header("mcp-protocol-version", "2025-11-25")
        .header("last-event-id", "ev-9")
        .header("x-end-to-end", "passes")
        .body(full_body(tools_call(1, "echo")))
        .unwrap();
    *req.version_mut() = Version::HTTP_11;
    let resp = tokio::time::timeout(STEP, sender.send_request(req)).await.unwrap().unwrap();
    let reply = collect(resp).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let decision_id = reply.header("mcp-pep-decision-id").expect("mcp-pep-decision-id header");
    assert!(!decision_id.is_empty());

    let seen = upstream.wait_for_requests(1).await;
    let headers = &seen[0].headers;
    for name in [
        "authorization",
        "dpop",
        "cookie",
        "proxy-authorization",
        "proxy-foo",
        "x-secret-hop",
        "keep-alive",
        "te",
        "upgrade",
    ] {
        assert!(!headers.contains_key(name), "{name} reached the upstream: {:?}", headers.get(name));
    }
    // `Connection` may be set by the proxy's own client, but never carries the client's tokens.
    for value in headers.get_all("connection") {
        let value = value.to_str().unwrap().to_ascii_lowercase();
        assert!(!value.contains("x-secret-hop"), "connection: {value}");
    }
    assert_eq!(seen[0].header("mcp-session-id"), Some("sess-42"));
    assert_eq!(seen[0].header("mcp-protocol-version"), Some("2025-11-25"));
    assert_eq!(seen[0].header("last-event-id"), Some("ev-9"));
    assert_eq!(seen[0].header("accept"), Some("application/json, text/event-stream"));
    assert_eq!(seen[0].header("x-end-to-end"), Some("passes"));
    drop(sender);
    conn.abort();
    proxy.stop().await;
}

const FIRST_EVENT: &[u8] = b"id: ev-1\nretry: 1500\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n";
const SECOND_EVENT: &[u8] =
    b"id: ev-2\nretry: 3000\ndata: {\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"content\":[]}}\n\n";

/// An SSE upstream: sends [`FIRST_EVENT`], waits for the test's release, sends
/// [`SECOND_EVENT`], ends.
async fn sse_upstream(release: oneshot::Receiver<()>) -> TestUpstream {
    let release = Arc::new(Mutex::new(Some(release)));
    TestUpstream::start(move |_| {
        let rx = release.lock().unwrap().take();
        async move {
            let events = futures_util::stream::unfold((0u8, rx), |(step, rx)| async move {
                match step {
                    0 => Some((Ok(Frame::data(Bytes::from_static(FIRST_EVENT))), (1, rx))),
                    1 => {
                        if let Some(rx) = rx {
                            let _ = rx.await;
                        }
                        Some((Ok(Frame::data(Bytes::from_static(SECOND_EVENT))), (2, None)))
                    }
                    _ => None,
                }
            });
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(BodyExt::boxed(StreamBody::new(events)))
                .unwrap()
        }
    })
    .await
}

/// Waits until `mcp_pep_active_streams` reads `want`.
async fn wait_active_streams(proxy: &TestProxy, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = proxy.metrics().await;
        let now = metric(&metrics, "mcp_pep_active_streams", &[]);
        if now == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "mcp_pep_active_streams is {now:?}, expected {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sse_unbuffered(h2: bool) {
    let (release, released) = oneshot::channel();
    let upstream = sse_upstream(released).await;
    let proxy = TestProxy::builder(upstream.url()).start().await;

    let req = post_request(&proxy.url(), full_body(tools_call(5, "slow")), &[]);
    let resp = if h2 { send_h2(req).await } else { send_raw(req).await }
        .expect("response headers arrive before the stream ends");
    assert_eq!(resp.status(), StatusCode::OK);
    if h2 {
        assert_eq!(resp.version(), Version::HTTP_2);
    }
    assert_eq!(resp.headers().get("content-type").unwrap(), "text/event-stream");
    let mut body = resp.into_body();
    let mut seen = Vec::new();
    // The upstream is still holding the stream open: only an unbuffered proxy gets here.
    read_until(&mut body, &mut seen, b"\n\n", Duration::from_secs(3)).await;
    assert_eq!(String::from_utf8_lossy(&seen), String::from_utf8_lossy(FIRST_EVENT), "first event altered");
    wait_active_streams(&proxy, 1.0).await;

    release.send(()).unwrap();
    while let Some(frame) = tokio::time::timeout(STEP, body.frame()).await.unwrap() {
        if let Ok(data) = frame.unwrap().into_data() {
            seen.extend_from_slice(&data);
        }
    }
    assert_eq!(
        String::from_utf8_lossy(&seen),
        String::from_utf8_lossy(&[FIRST_EVENT, SECOND_EVENT].concat()),
        "events (ids, retry) must be byte-identical"
    );
    drop(body);
    wait_active_streams(&proxy, 0.0).await;
    proxy.stop().await;
}

#[tokio::test]
async fn sse_is_streamed_unbuffered_with_ids_and_retry_intact() {
    sse_unbuffered(false).await;
}

#[tokio::test]
async fn sse_is_streamed_unbuffered_over_h2() {
    sse_unbuffered(true).await;
}

#[tokio::test]
async fn stream_may_outlive_the_response_header_timeout() {
    let (release, released) = oneshot::channel();
    let upstream = sse_upstream(released).await;
    let proxy =
        TestProxy::builder(upstream.url()).configure(|c| c.upstream.response_header_timeout_ms = 200).start().await;
    let resp = send_raw(post_request(&proxy.url(), full_body(tools_call(5, "slow")), &[])).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut seen = Vec::new();
    read_until(&mut body, &mut seen, b"\n\n", Duration::from_secs(3)).await;
    // Well past the header timeout, the stream is still open and still delivers.
    tokio::time::sleep(Duration::from_millis(600)).await;
    release.send(()).unwrap();
    read_until(&mut body, &mut seen, b"id: ev-2", Duration::from_secs(3)).await;
    proxy.stop().await;
}

async fn hop_by_hop_response_headers_removed(h2: bool) {
    let upstream = TestUpstream::start(|_| async {
        let mut resp = json_reply(StatusCode::OK, r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
        let h = resp.headers_mut();
        h.insert("connection", "keep-alive, x-upstream-hop".parse().unwrap());
        h.insert("x-upstream-hop", "secret".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-end-to-end", "kept".parse().unwrap());
        resp
    })
    .await;
    let proxy = TestProxy::builder(upstream.url()).start().await;
    let req = post_request(&proxy.url(), full_body(tools_call(1, "echo")), &[]);
    let resp = if h2 { send_h2(req).await } else { send_raw(req).await }.expect("response");
    let reply = collect(resp).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.text(), r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
    assert_eq!(reply.header("x-end-to-end"), Some("kept"));
    assert!(reply.header("x-upstream-hop").is_none(), "{:?}", reply.headers);
    assert!(reply.header("keep-alive").is_none(), "{:?}", reply.headers);
    proxy.stop().await;
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_removed() {
    hop_by_hop_response_headers_removed(false).await;
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_removed_for_h2_clients() {
    hop_by_hop_response_headers_removed(true).await;
}

#[tokio::test]
async fn client_query_string_reaches_upstream() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = TestProxy::builder(upstream.url()).start().await;
    let reply = post_json(&proxy.url_for("/mcp?tenant=a&x=1"), tools_call(1, "echo"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = upstream.wait_for_requests(1).await;
    assert_eq!(seen[0].uri.path(), "/mcp");
    assert_eq!(seen[0].uri.query(), Some("tenant=a&x=1"));
    proxy.stop().await;
}

#[tokio::test]
async fn upstream_statuses_pass_through_unchanged() {
    let upstream = TestUpstream::start(|r| async move {
        let status: u16 = r.header("x-want-status").unwrap().parse().unwrap();
        let body = match status {
            202 => Bytes::new(),
            s => Bytes::from(format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{{\"code\":-32000,\"message\":\"upstream says {s}\"}}}}"
            )),
        };
        let mut resp = Response::new(up_body(body));
        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
        if status != 202 {
            resp.headers_mut().insert("content-type", "application/json".parse().unwrap());
        }
        resp
    })
    .await;
    let proxy = TestProxy::builder(upstream.url()).start().await;

    let notification = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let reply = proxy.post(notification, &[("x-want-status", "202")]).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert!(reply.body.is_empty(), "202 body: {}", reply.text());

    for status in [400u16, 404, 405, 406] {
        let reply = proxy.post(tools_call(3, "echo"), &[("x-want-status", &status.to_string())]).await;
        assert_eq!(reply.status.as_u16(), status, "{}", reply.text());
        assert_eq!(
            reply.text(),
            format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{{\"code\":-32000,\"message\":\"upstream says {status}\"}}}}"
            )
        );
    }
    assert_eq!(upstream.requests().len(), 5);
    proxy.stop().await;
}

#[tokio::test]
async fn get_and_delete_are_forwarded_put_and_other_paths_are_refused() {
    let upstream = TestUpstream::start(|r| async move {
        if r.method == http::Method::GET {
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(up_body("id: s-1\ndata: {}\n\n"))
                .unwrap()
        } else {
            let mut resp = Response::new(up_body(""));
            *resp.status_mut() = StatusCode::OK;
            resp
        }
    })
    .await;
    let proxy = TestProxy::builder(upstream.url()).start().await;

    let get = Request::get(proxy.url())
        .header("accept", "text/event-stream")
        .header("mcp-session-id", "sess-get")
        .header("mcp-protocol-version", "2025-11-25")
        .header("last-event-id", "s-0")
        .body(empty_body())
        .unwrap();
    let reply = send(get).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    assert_eq!(reply.text(), "id: s-1\ndata: {}\n\n");

    let delete = Request::delete(proxy.url()).header("mcp-session-id", "sess-del").body(empty_body()).unwrap();
    let reply = send(delete).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    let seen = upstream.wait_for_requests(2).await;
    assert_eq!(seen[0].method, http::Method::GET);
    assert_eq!(seen[0].uri.path(), "/mcp");
    assert_eq!(seen[0].header("mcp-session-id"), Some("sess-get"));
    assert_eq!(seen[0].header("last-event-id"), Some("s-0"));
    assert_eq!(seen[0].header("mcp-protocol-version"), Some("2025-11-25"));
    assert_eq!(seen[1].method, http::Method::DELETE);
    assert_eq!(seen[1].header("mcp-session-id"), Some("sess-del"));

    let put = Request::put(proxy.url())
        .header("content-type", "application/json")
        .body(full_body(tools_call(1, "echo")))
        .unwrap();
    let reply = send(put).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    let allow = reply.header("allow").expect("Allow header on 405");
    for method in ["GET", "POST", "DELETE"] {
        assert!(allow.contains(method), "Allow: {allow}");
    }

    let elsewhere = post_json(&proxy.url_for("/other"), tools_call(1, "echo"), &[]).await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
    let below = post_json(&proxy.url_for("/mcp/extra"), tools_call(1, "echo"), &[]).await;
    assert_eq!(below.status, StatusCode::NOT_FOUND);

    assert_eq!(upstream.requests().len(), 2, "refused requests were forwarded");
    proxy.stop().await;
}

#[tokio::test]
async fn upstream_down_is_502_with_the_request_id() {
    let dead = dead_addr().await;
    let proxy = TestProxy::builder(format!("http://{dead}/mcp"))
        .configure(|c| c.upstream.connect_timeout_ms = 2_000)
        .start()
        .await;
    let reply =
        proxy.post(r#"{"jsonrpc":"2.0","id":"req-502","method":"tools/call","params":{"name":"echo"}}"#, &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["id"], "req-502");
    assert!(body["error"]["code"].is_i64(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(reply.header("mcp-pep-decision-id").is_some());
    proxy.stop().await;
}

#[tokio::test]
async fn upstream_that_never_answers_is_504_with_the_request_id() {
    let upstream = TestUpstream::start(|_| async {
        std::future::pending::<()>().await;
        unreachable!()
    })
    .await;
    let proxy =
        TestProxy::builder(upstream.url()).configure(|c| c.upstream.response_header_timeout_ms = 300).start().await;
    let started = Instant::now();
    let reply = proxy.post(tools_call(504, "echo"), &[]).await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{}", reply.text());
    assert!(started.elapsed() < Duration::from_secs(5), "timeout not applied");
    let body = reply.json();
    assert_eq!(body["id"], 504);
    assert!(body["error"]["code"].is_i64(), "{body}");
    assert_eq!(upstream.requests().len(), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn foreign_origin_is_refused_loopback_and_listed_origins_pass() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = TestProxy::builder(upstream.url()).start().await;

    let reply = proxy.post(tools_call(1, "echo"), &[("origin", "http://evil.example")]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text());
    let reply = proxy.post(tools_call(1, "echo"), &[("origin", "http://127.0.0.1.evil.example")]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text());
    assert!(upstream.requests().is_empty(), "refused origin reached upstream");

    let reply = proxy.post(tools_call(1, "echo"), &[("origin", "http://127.0.0.1:1234")]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(upstream.requests().len(), 1);
    proxy.stop().await;

    let listed = TestProxy::builder(upstream.url())
        .configure(|c| c.allowed_origins = vec!["https://app.example.com".into()])
        .start()
        .await;
    let reply = listed.post(tools_call(1, "echo"), &[("origin", "https://app.example.com")]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(upstream.requests().len(), 2);
    let reply = listed.post(tools_call(1, "echo"), &[("origin", "https://other.example.com")]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text());
    assert_eq!(upstream.requests().len(), 2);
    listed.stop().await;
}

#[tokio::test]
async fn h2_prior_knowledge_works_through_the_proxy() {
    let upstream =
        TestUpstream::start(|_| async { json_reply(StatusCode::OK, r#"{"jsonrpc":"2.0","id":2,"result":{}}"#) }).await;
    let proxy = TestProxy::builder(upstream.url()).start().await;

    let body = "{\"jsonrpc\":\"2.0\", \"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"}}";
    let resp = send_h2(post_request(&proxy.url(), full_body(body), &[("mcp-session-id", "h2-sess")]))
        .await
        .expect("h2 request");
    assert_eq!(resp.version(), Version::HTTP_2);
    let reply = collect(resp).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.text(), r#"{"jsonrpc":"2.0","id":2,"result":{}}"#);
    assert!(reply.header("mcp-pep-decision-id").is_some());
    let seen = upstream.wait_for_requests(1).await;
    assert_eq!(seen[0].body, Bytes::from(body));
    assert_eq!(seen[0].header("mcp-session-id"), Some("h2-sess"));
    proxy.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_refuses_new_connections() {
    let (release, released) = oneshot::channel::<()>();
    let released = Arc::new(Mutex::new(Some(released)));
    let upstream = TestUpstream::start(move |_| {
        let rx = released.lock().unwrap().take();
        async move {
            if let Some(rx) = rx {
                let _ = rx.await;
            }
            json_reply(StatusCode::OK, r#"{"jsonrpc":"2.0","id":9,"result":{}}"#)
        }
    })
    .await;
    let mut proxy = TestProxy::builder(upstream.url()).configure(|c| c.shutdown_grace_ms = 5_000).start().await;

    let url = proxy.url();
    let in_flight = tokio::spawn(async move { post_json(&url, tools_call(9, "slow"), &[]).await });
    upstream.wait_for_requests(1).await;

    proxy.trigger_shutdown();
    // The listener closes promptly: new connections are refused while the old one drains.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match tokio::net::TcpStream::connect(proxy.mcp_addr).await {
            Err(_) => break,
            Ok(_) => {
                assert!(Instant::now() < deadline, "new connections still accepted after shutdown");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(!in_flight.is_finished(), "in-flight request cut short");

    release.send(()).unwrap();
    let reply = tokio::time::timeout(STEP, in_flight).await.expect("in-flight request finishes").unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.text(), r#"{"jsonrpc":"2.0","id":9,"result":{}}"#);
    assert!(proxy.wait_stopped(Duration::from_secs(3)).await, "server did not return once drained");
    assert!(tokio::net::TcpStream::connect(proxy.mcp_addr).await.is_err());
}

#[tokio::test]
async fn shutdown_closes_open_sse_stream_after_grace() {
    // The upstream never sends the second event: the stream stays open.
    let (_hold, never) = oneshot::channel::<()>();
    let upstream = sse_upstream(never).await;
    let grace = Duration::from_millis(600);
    let mut proxy =
        TestProxy::builder(upstream.url()).configure(|c| c.shutdown_grace_ms = grace.as_millis() as u64).start().await;

    let resp = send_raw(post_request(&proxy.url(), full_body(tools_call(5, "slow")), &[])).await.unwrap();
    let mut body = resp.into_body();
    let mut seen = Vec::new();
    read_until(&mut body, &mut seen, b"\n\n", Duration::from_secs(3)).await;

    let started = Instant::now();
    proxy.trigger_shutdown();
    // The stream ends (cleanly or with an error) once the grace period is over.
    let ended =
        tokio::time::timeout(Duration::from_secs(5), async { while let Some(Ok(_)) = body.frame().await {} }).await;
    assert!(ended.is_ok(), "SSE stream still open 5 s after shutdown");
    let elapsed = started.elapsed();
    assert!(elapsed >= grace.mul_f32(0.7), "stream closed after {elapsed:?}, before the {grace:?} grace");
    assert!(proxy.wait_stopped(Duration::from_secs(3)).await, "server did not return after the grace period");
}
