//! Black-box tests of inspection: every malformed or refused message gets its HTTP
//! status and JSON-RPC error, never reaches the upstream, and is counted by reason.

mod support;

use bytes::Bytes;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use support::*;

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const POLICY_DENIED: i64 = -32001;
const HEADER_MISMATCH: i64 = -32020;

const MAX_BODY: usize = 1024;
const MAX_DEPTH: usize = 8;

struct Setup {
    upstream: TestUpstream,
    proxy: TestProxy,
}

/// Upstream answering 200, proxy with a 1 KiB body limit and 8 levels of nesting.
async fn setup() -> Setup {
    let upstream = TestUpstream::json_ok().await;
    let proxy = TestProxy::builder(upstream.url())
        .configure(|c| {
            c.limits.max_body_bytes = MAX_BODY;
            c.limits.max_json_depth = MAX_DEPTH;
        })
        .start()
        .await;
    Setup { upstream, proxy }
}

/// What a refusal must look like.
struct Refusal {
    status: StatusCode,
    /// `None`: any JSON-RPC error code.
    code: Option<i64>,
    reason: &'static str,
    id: Value,
}

impl Setup {
    /// Sends `req`, checks the answer, that nothing reached the upstream, and the
    /// `stage="inspect"` rejection metric; stops both servers.
    async fn expect_refused(self, req: Request<ReqBody>, want: Refusal) {
        let reply = send(req).await;
        assert_eq!(reply.status, want.status, "status; body: {}", reply.text());
        let body = reply.json();
        assert_eq!(body["jsonrpc"], "2.0", "{body}");
        assert_eq!(body["id"], want.id, "id in {body}");
        let code = body["error"]["code"].as_i64().unwrap_or_else(|| panic!("no integer error code in {body}"));
        match want.code {
            Some(expected) => assert_eq!(code, expected, "code in {body}"),
            None => assert!((-32768..=-32000).contains(&code), "code in {body}"),
        }
        assert!(body["error"]["message"].is_string(), "{body}");
        assert!(reply.header("mcp-pep-decision-id").is_some(), "refusal without decision id header");
        assert!(
            self.upstream.requests().is_empty(),
            "refused message reached the upstream: {:?}",
            self.upstream.requests()
        );
        let metrics = self.proxy.metrics().await;
        assert_eq!(
            rejections(&metrics, "inspect", want.reason),
            1.0,
            "mcp_pep_rejections_total{{stage=\"inspect\",reason=\"{}\"}} in:\n{}",
            want.reason,
            metrics.lines().filter(|l| l.contains("rejections_total")).collect::<Vec<_>>().join("\n")
        );
        self.proxy.stop().await;
    }

    async fn expect_refused_body(self, body: impl Into<Bytes>, want: Refusal) {
        let req = post_request(&self.proxy.url(), full_body(body), &[]);
        self.expect_refused(req, want).await;
    }
}

fn refusal(status: StatusCode, code: i64, reason: &'static str, id: Value) -> Refusal {
    Refusal { status, code: Some(code), reason, id }
}

/// A `tools/call` whose arguments make the body `len` bytes long.
fn call_of_len(len: usize) -> String {
    let head = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"pad":""#;
    let tail = r#""}}}"#;
    let pad = "x".repeat(len - head.len() - tail.len());
    let body = format!("{head}{pad}{tail}");
    assert_eq!(body.len(), len);
    body
}

#[tokio::test]
async fn body_over_limit_with_content_length_is_413() {
    let s = setup().await;
    let body = call_of_len(MAX_BODY + 1);
    let len = body.len().to_string();
    let req = post_request(&s.proxy.url(), full_body(body), &[("content-length", &len)]);
    s.expect_refused(req, refusal(StatusCode::PAYLOAD_TOO_LARGE, INVALID_REQUEST, "too_large", Value::Null)).await;
}

#[tokio::test]
async fn body_over_limit_chunked_without_content_length_is_413() {
    let s = setup().await;
    let body = call_of_len(MAX_BODY + 200);
    let (a, b) = body.split_at(600);
    let chunks = vec![Bytes::from(a.to_owned()), Bytes::from(b.to_owned())];
    let req = post_request(&s.proxy.url(), chunked_body(chunks), &[]);
    s.expect_refused(req, refusal(StatusCode::PAYLOAD_TOO_LARGE, INVALID_REQUEST, "too_large", Value::Null)).await;
}

#[tokio::test]
async fn body_at_the_limit_is_forwarded() {
    let s = setup().await;
    let body = call_of_len(MAX_BODY);
    let reply = s.proxy.post(body.clone(), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let chunks = vec![Bytes::from(body[..500].to_owned()), Bytes::from(body[500..].to_owned())];
    let reply = send(post_request(&s.proxy.url(), chunked_body(chunks), &[])).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = s.upstream.wait_for_requests(2).await;
    assert_eq!(seen[0].body, Bytes::from(body.clone()));
    assert_eq!(seen[1].body, Bytes::from(body));
    s.proxy.stop().await;
}

/// `levels` nested JSON containers in total, the innermost ones arrays in `arguments`.
fn nested_call(levels: usize) -> String {
    // top object, params, arguments: 3 levels; the rest are arrays.
    let arrays = levels - 3;
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"a":{}1{}}}}}}}"#,
        "[".repeat(arrays),
        "]".repeat(arrays)
    )
}

#[tokio::test]
async fn nesting_over_limit_is_400_parse_error() {
    let s = setup().await;
    s.expect_refused_body(
        nested_call(MAX_DEPTH + 1),
        refusal(StatusCode::BAD_REQUEST, PARSE_ERROR, "too_deep", Value::Null),
    )
    .await;
}

#[tokio::test]
async fn nesting_at_limit_is_forwarded() {
    let s = setup().await;
    let reply = s.proxy.post(nested_call(MAX_DEPTH), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(s.upstream.wait_for_requests(1).await.len(), 1);
    s.proxy.stop().await;
}

#[tokio::test]
async fn invalid_utf8_is_400_parse_error() {
    let s = setup().await;
    let mut body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ec"#.to_vec();
    body.extend_from_slice(b"\xff\xfe");
    body.extend_from_slice(br#"ho"}}"#);
    s.expect_refused_body(body, refusal(StatusCode::BAD_REQUEST, PARSE_ERROR, "invalid_json", Value::Null)).await;
}

#[tokio::test]
async fn duplicate_top_level_key_is_400_parse_error() {
    let s = setup().await;
    s.expect_refused_body(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"},"params":{"name":"forbidden"}}"#,
        refusal(StatusCode::BAD_REQUEST, PARSE_ERROR, "duplicate_key", Value::Null),
    )
    .await;
}

#[tokio::test]
async fn duplicate_key_inside_arguments_is_400_parse_error() {
    let s = setup().await;
    s.expect_refused_body(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"path":"/tmp/a","path":"/etc/shadow"}}}"#,
        refusal(
            StatusCode::BAD_REQUEST,
            PARSE_ERROR,
            "duplicate_key",
            Value::Null,
        ),
    )
    .await;
}

#[tokio::test]
async fn duplicate_key_spelled_with_an_escape_is_400_parse_error() {
    let s = setup().await;
    s.expect_refused_body(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","n\u0061me":"forbidden"}}"#,
        refusal(StatusCode::BAD_REQUEST, PARSE_ERROR, "duplicate_key", Value::Null),
    )
    .await;
}

#[tokio::test]
async fn jsonrpc_1_0_is_400_invalid_request_with_the_id() {
    let s = setup().await;
    s.expect_refused_body(
        r#"{"jsonrpc":"1.0","id":11,"method":"tools/call","params":{"name":"echo"}}"#,
        refusal(StatusCode::BAD_REQUEST, INVALID_REQUEST, "invalid_jsonrpc", json!(11)),
    )
    .await;
}

#[tokio::test]
async fn missing_jsonrpc_member_is_invalid_request() {
    let s = setup().await;
    s.expect_refused_body(
        r#"{"id":"m","method":"tools/call","params":{"name":"echo"}}"#,
        refusal(StatusCode::BAD_REQUEST, INVALID_REQUEST, "invalid_jsonrpc", json!("m")),
    )
    .await;
}

async fn bad_id(id: &str) {
    let s = setup().await;
    s.expect_refused_body(
        format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo"}}}}"#),
        refusal(StatusCode::BAD_REQUEST, INVALID_REQUEST, "invalid_jsonrpc", Value::Null),
    )
    .await;
}

#[tokio::test]
async fn float_id_is_invalid_request() {
    bad_id("1.5").await;
}

#[tokio::test]
async fn bool_id_is_invalid_request() {
    bad_id("true").await;
}

#[tokio::test]
async fn null_id_is_invalid_request() {
    bad_id("null").await;
}

#[tokio::test]
async fn object_id_is_invalid_request() {
    bad_id(r#"{"n":1}"#).await;
}

#[tokio::test]
async fn unknown_top_level_member_is_invalid_request() {
    let s = setup().await;
    s.expect_refused_body(
        r#"{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"echo"},"extra":true}"#,
        refusal(StatusCode::BAD_REQUEST, INVALID_REQUEST, "invalid_jsonrpc", json!(12)),
    )
    .await;
}

#[tokio::test]
async fn params_not_an_object_is_invalid_request() {
    let s = setup().await;
    s.expect_refused_body(
        r#"{"jsonrpc":"2.0","id":13,"method":"tools/call","params":["echo"]}"#,
        refusal(StatusCode::BAD_REQUEST, INVALID_REQUEST, "invalid_jsonrpc", json!(13)),
    )
    .await;
}

#[tokio::test]
async fn tools_call_without_name_is_invalid_request() {
    let s = setup().await;
    s.expect_refused_body(
        r#"{"jsonrpc":"2.0","id":14,"method":"tools/call","params":{"arguments":{}}}"#,
        refusal(StatusCode::BAD_REQUEST, INVALID_REQUEST, "invalid_jsonrpc", json!(14)),
    )
    .await;
}

#[tokio::test]
async fn tools_call_with_non_string_name_is_invalid_request() {
    let s = setup().await;
    s.expect_refused_body(
        r#"{"jsonrpc":"2.0","id":15,"method":"tools/call","params":{"name":["forbidden"]}}"#,
        refusal(StatusCode::BAD_REQUEST, INVALID_REQUEST, "invalid_jsonrpc", json!(15)),
    )
    .await;
}

#[tokio::test]
async fn non_json_content_type_is_415() {
    let s = setup().await;
    let req = Request::post(s.proxy.url())
        .header("content-type", "text/plain")
        .header("accept", "application/json, text/event-stream")
        .body(full_body(tools_call(1, "echo")))
        .unwrap();
    s.expect_refused(
        req,
        Refusal { status: StatusCode::UNSUPPORTED_MEDIA_TYPE, code: None, reason: "media_type", id: Value::Null },
    )
    .await;
}

#[tokio::test]
async fn missing_content_type_is_415() {
    let s = setup().await;
    let req = Request::post(s.proxy.url())
        .header("accept", "application/json, text/event-stream")
        .body(full_body(tools_call(1, "echo")))
        .unwrap();
    s.expect_refused(
        req,
        Refusal { status: StatusCode::UNSUPPORTED_MEDIA_TYPE, code: None, reason: "media_type", id: Value::Null },
    )
    .await;
}

const BATCH: &str = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}},
 {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}},
 {"jsonrpc":"2.0",  "id":2,"method":"tools/list"}]"#;

async fn batch_refused_for_version(version: &str) {
    let s = setup().await;
    let req = post_request(&s.proxy.url(), full_body(BATCH), &[("mcp-protocol-version", version)]);
    s.expect_refused(req, refusal(StatusCode::BAD_REQUEST, INVALID_REQUEST, "batch", Value::Null)).await;
}

#[tokio::test]
async fn batch_with_protocol_2025_06_18_is_400() {
    batch_refused_for_version("2025-06-18").await;
}

#[tokio::test]
async fn batch_with_protocol_2025_11_25_is_400() {
    batch_refused_for_version("2025-11-25").await;
}

#[tokio::test]
async fn batch_with_protocol_2025_03_26_is_forwarded_as_sent() {
    let s = setup().await;
    let reply = s.proxy.post(BATCH, &[("mcp-protocol-version", "2025-03-26")]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    // A client that never said its version speaks 2025-03-26.
    let reply = s.proxy.post(BATCH, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = s.upstream.wait_for_requests(2).await;
    assert_eq!(seen[0].body, Bytes::from(BATCH), "batch re-serialised");
    assert_eq!(seen[1].body, Bytes::from(BATCH), "batch re-serialised");
    s.proxy.stop().await;
}

#[tokio::test]
async fn batch_with_one_denied_element_is_refused_whole() {
    let s = setup().await;
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}},
        {"jsonrpc":"2.0","id":"two","method":"tools/call","params":{"name":"forbidden"}},
        {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}]"#;
    let reply = s.proxy.post(batch, &[("mcp-protocol-version", "2025-03-26")]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    let elements = body.as_array().unwrap_or_else(|| panic!("not an array: {body}"));
    assert_eq!(elements.len(), 2, "one error per element with an id: {body}");
    let by_id = |id: Value| {
        elements.iter().find(|e| e["id"] == id).unwrap_or_else(|| panic!("no answer for id {id} in {body}"))
    };
    let allowed = by_id(json!(1));
    let denied = by_id(json!("two"));
    for e in [allowed, denied] {
        assert_eq!(e["jsonrpc"], "2.0");
        assert_eq!(e["error"]["code"], POLICY_DENIED, "{e}");
    }
    let denied_message = denied["error"]["message"].as_str().unwrap();
    assert!(denied_message.contains("denied by policy"), "{denied_message}");
    let allowed_message = allowed["error"]["message"].as_str().unwrap();
    assert!(allowed_message.contains("not executed"), "{allowed_message}");
    assert!(s.upstream.requests().is_empty(), "part of a denied batch was forwarded");
    let metrics = s.proxy.metrics().await;
    assert_eq!(rejections(&metrics, "policy", "denied"), 1.0, "{metrics}");
    s.proxy.stop().await;
}

#[tokio::test]
async fn initialize_inside_a_batch_is_400() {
    let s = setup().await;
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"t","version":"1"}}},
        {"jsonrpc":"2.0","id":2,"method":"tools/list"}]"#;
    s.expect_refused_body(batch, refusal(StatusCode::BAD_REQUEST, INVALID_REQUEST, "invalid_jsonrpc", Value::Null))
        .await;
}

#[tokio::test]
async fn empty_batch_is_invalid_request() {
    let s = setup().await;
    s.expect_refused_body("[]", refusal(StatusCode::BAD_REQUEST, INVALID_REQUEST, "invalid_jsonrpc", Value::Null))
        .await;
}

#[tokio::test]
async fn mcp_method_header_not_matching_body_is_400() {
    let s = setup().await;
    let req = post_request(&s.proxy.url(), full_body(tools_call(21, "echo")), &[("mcp-method", "tools/list")]);
    s.expect_refused(req, refusal(StatusCode::BAD_REQUEST, HEADER_MISMATCH, "header_mismatch", json!(21))).await;
}

#[tokio::test]
async fn mcp_name_header_not_matching_body_is_400() {
    let s = setup().await;
    let req = post_request(
        &s.proxy.url(),
        full_body(tools_call(22, "forbidden")),
        &[("mcp-method", "tools/call"), ("mcp-name", "echo")],
    );
    s.expect_refused(req, refusal(StatusCode::BAD_REQUEST, HEADER_MISMATCH, "header_mismatch", json!(22))).await;
}

#[tokio::test]
async fn matching_mcp_method_and_name_headers_are_forwarded() {
    let s = setup().await;
    let reply = s.proxy.post(tools_call(23, "echo"), &[("mcp-method", "tools/call"), ("mcp-name", "echo")]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(s.upstream.wait_for_requests(1).await.len(), 1);
    s.proxy.stop().await;
}

#[tokio::test]
async fn json_content_type_with_parameters_is_accepted() {
    let s = setup().await;
    let req = Request::post(s.proxy.url())
        .header("content-type", "Application/JSON; charset=utf-8")
        .header("accept", "application/json, text/event-stream")
        .body(full_body(tools_call(1, "echo")))
        .unwrap();
    let reply = send(req).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(s.upstream.wait_for_requests(1).await.len(), 1);
    s.proxy.stop().await;
}

/// Sends `body` with extra raw header values (which may repeat a name or hold bytes
/// that are not visible ASCII) and expects a 400 that nothing reached the upstream.
async fn refused_for_headers(body: &str, headers: &[(&str, &[u8])]) {
    let s = setup().await;
    let mut req = post_request(&s.proxy.url(), full_body(body.to_owned()), &[]);
    for (name, value) in headers {
        req.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_bytes(value).unwrap(),
        );
    }
    let reply = send(req).await;
    let forwarded = s.upstream.requests();
    assert!(
        forwarded.is_empty(),
        "forwarded although the proxy and the upstream may read different headers; \
         upstream saw {:?}",
        forwarded
            .iter()
            .map(|r| r.headers.iter().filter(|(k, _)| k.as_str().starts_with("mcp-")).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert!(reply.json()["error"]["code"].is_i64(), "{}", reply.text());
    s.proxy.stop().await;
}

// The proxy reads the first value of an MCP header and skips a value it cannot read
// as text, but forwards every value: the upstream may then act on a version, method or
// session the proxy never checked. Two readers of one message must see one message.

#[tokio::test]
async fn repeated_protocol_version_header_does_not_smuggle_a_batch() {
    refused_for_headers(BATCH, &[("mcp-protocol-version", b"2025-03-26"), ("mcp-protocol-version", b"2025-11-25")])
        .await;
}

#[tokio::test]
async fn unreadable_protocol_version_header_does_not_smuggle_a_batch() {
    refused_for_headers(BATCH, &[("mcp-protocol-version", b"2025-11-25\xff")]).await;
}

#[tokio::test]
async fn unreadable_mcp_method_header_is_not_ignored() {
    refused_for_headers(&tools_call(31, "echo"), &[("mcp-method", b"tools/list\xff")]).await;
}

#[tokio::test]
async fn repeated_mcp_method_header_is_refused() {
    refused_for_headers(&tools_call(32, "echo"), &[("mcp-method", b"tools/call"), ("mcp-method", b"tools/list")]).await;
}

#[tokio::test]
async fn repeated_session_id_header_is_refused() {
    refused_for_headers(&tools_call(33, "echo"), &[("mcp-session-id", b"sess-a"), ("mcp-session-id", b"sess-b")]).await;
}
