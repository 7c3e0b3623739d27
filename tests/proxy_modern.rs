//! Black-box tests of the MCP 2026-07-28 rules an intermediary owns: every header and
//! `_meta` rule as a table of request → answer (never forwarded when refused), the
//! modern error codes, no sessions, `Mcp-Param-*` mirrors learned from `tools/list`,
//! private cache hints, `input_required` answers and subscriptions.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Request, StatusCode};
use serde_json::{Value, json};
use support::*;

const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}}}"#;

/// A modern request body: `params` members (without `_meta`) plus the standard `_meta`.
fn modern(id: i64, method: &str, params: &str) -> String {
    let sep = if params.is_empty() { "" } else { "," };
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{{{params}{sep}{META}}}}}"#)
}

fn call(id: i64, tool: &str, arguments: &str) -> String {
    modern(id, "tools/call", &format!(r#""name":"{tool}","arguments":{arguments}"#))
}

/// The headers a conforming client sends with a `tools/call` of `tool`.
fn call_headers(tool: &str) -> Vec<(&'static str, String)> {
    vec![("mcp-protocol-version", "2026-07-28".into()), ("mcp-method", "tools/call".into()), ("mcp-name", tool.into())]
}

fn with(
    mut headers: Vec<(&'static str, String)>,
    name: &'static str,
    value: Option<&str>,
) -> Vec<(&'static str, String)> {
    headers.retain(|(n, _)| *n != name);
    if let Some(value) = value {
        headers.push((name, value.into()));
    }
    headers
}

/// One row: what is sent, and the status and JSON-RPC code that must come back (`None`:
/// forwarded and answered by the upstream).
struct Case {
    name: &'static str,
    body: String,
    headers: Vec<(&'static str, String)>,
    want: Option<(StatusCode, i64)>,
}

fn cases() -> Vec<Case> {
    let h = call_headers("echo");
    let good = call(5, "echo", "{}");
    let c =
        |name, body: &str, headers: Vec<(&'static str, String)>, want| Case { name, body: body.into(), headers, want };
    let bad = |code| Some((StatusCode::BAD_REQUEST, code));
    let no_caps = good.replace(r#","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}}"#, "");
    let no_version = good.replace(r#""io.modelcontextprotocol/protocolVersion":"2026-07-28","#, "");
    vec![
        c("conforming call", &good, h.clone(), None),
        c("Mcp-Name base64", &good, with(h.clone(), "mcp-name", Some("=?base64?ZWNobw==?=")), None),
        c(
            "non-ASCII name in base64",
            &call(5, "grüße", "{}"),
            with(h.clone(), "mcp-name", Some("=?base64?Z3LDvMOfZQ==?=")),
            None,
        ),
        c("no Mcp-Method", &good, with(h.clone(), "mcp-method", None), bad(-32020)),
        c("Mcp-Method differs", &good, with(h.clone(), "mcp-method", Some("tools/list")), bad(-32020)),
        c("no Mcp-Name", &good, with(h.clone(), "mcp-name", None), bad(-32020)),
        c("Mcp-Name differs", &good, with(h.clone(), "mcp-name", Some("other")), bad(-32020)),
        c(
            "Mcp-Name base64 of another name",
            &good,
            with(h.clone(), "mcp-name", Some("=?base64?b3RoZXI=?=")),
            bad(-32020),
        ),
        c("Mcp-Name bad base64", &good, with(h.clone(), "mcp-name", Some("=?base64?***?=")), bad(-32020)),
        c("no version header", &good, with(h.clone(), "mcp-protocol-version", None), bad(-32020)),
        c(
            "version header differs from _meta",
            &good,
            with(h.clone(), "mcp-protocol-version", Some("2025-11-25")),
            bad(-32020),
        ),
        c("no clientCapabilities", &no_caps, h.clone(), bad(-32602)),
        c("no _meta version, modern header", &no_version, h.clone(), bad(-32602)),
        c(
            "unknown version header, 2026 _meta",
            &good,
            with(h.clone(), "mcp-protocol-version", Some("2099-01-01")),
            bad(-32020),
        ),
        c(
            "unknown _meta version",
            &good.replace(r#"Version":"2026-07-28""#, r#"Version":"2099-01-01""#),
            with(h.clone(), "mcp-protocol-version", Some("2099-01-01")),
            bad(-32022),
        ),
        c(
            "_meta not an object",
            &tools_call(5, "echo").replace(r#""arguments""#, r#""_meta":7,"arguments""#),
            h.clone(),
            bad(-32600),
        ),
        c("modern batch", &format!("[{good}]"), h.clone(), bad(-32600)),
        c(
            "initialize on the modern wire",
            &modern(1, "initialize", r#""protocolVersion":"2026-07-28""#),
            vec![("mcp-protocol-version", "2026-07-28".into()), ("mcp-method", "initialize".into())],
            Some((StatusCode::NOT_FOUND, -32601)),
        ),
        c(
            "ping on the modern wire",
            &modern(1, "ping", ""),
            vec![("mcp-protocol-version", "2026-07-28".into()), ("mcp-method", "ping".into())],
            Some((StatusCode::NOT_FOUND, -32601)),
        ),
        c(
            "resources/subscribe on the modern wire, no uri",
            &modern(1, "resources/subscribe", ""),
            vec![("mcp-protocol-version", "2026-07-28".into()), ("mcp-method", "resources/subscribe".into())],
            Some((StatusCode::NOT_FOUND, -32601)),
        ),
        c(
            "legacy resources/subscribe without a uri",
            r#"{"jsonrpc":"2.0","id":4,"method":"resources/subscribe","params":{}}"#,
            vec![("mcp-protocol-version", "2025-11-25".into())],
            bad(-32600),
        ),
        c(
            "a notification needs no Mcp-Method",
            &modern(1, "notifications/cancelled", r#""requestId":1"#).replace(r#""id":1,"#, ""),
            vec![("mcp-protocol-version", "2026-07-28".into())],
            None,
        ),
        c(
            "a notification's Mcp-Method must still agree",
            &modern(1, "notifications/cancelled", r#""requestId":1"#).replace(r#""id":1,"#, ""),
            vec![("mcp-protocol-version", "2026-07-28".into()), ("mcp-method", "notifications/progress".into())],
            bad(-32020),
        ),
        c(
            "a POSTed response",
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            with(h.clone(), "mcp-method", None),
            bad(-32600),
        ),
        c(
            "server/discover",
            &modern(1, "server/discover", ""),
            vec![("mcp-protocol-version", "2026-07-28".into()), ("mcp-method", "server/discover".into())],
            None,
        ),
        c(
            "listen with malformed subscriptions",
            &modern(1, "subscriptions/listen", r#""notifications":{"resourceSubscriptions":"file:///a"}"#),
            vec![("mcp-protocol-version", "2026-07-28".into()), ("mcp-method", "subscriptions/listen".into())],
            bad(-32600),
        ),
        c(
            "policy denial is -31001",
            &call(6, "forbidden", "{}"),
            call_headers("forbidden"),
            Some((StatusCode::OK, -31001)),
        ),
    ]
}

#[tokio::test]
async fn every_modern_rule_is_enforced_before_forwarding() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = TestProxy::builder(upstream.url()).start().await;
    let mut forwarded = 0;
    for case in cases() {
        let headers: Vec<(&str, &str)> = case.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let reply = proxy.post(case.body.clone(), &headers).await;
        match case.want {
            None => {
                forwarded += 1;
                assert_eq!(reply.status, StatusCode::OK, "{}: {}", case.name, reply.text());
                assert!(reply.json().get("result").is_some(), "{}: {}", case.name, reply.text());
            }
            Some((status, code)) => {
                assert_eq!(reply.status, status, "{}: {}", case.name, reply.text());
                assert_eq!(reply.json()["error"]["code"], code, "{}: {}", case.name, reply.text());
            }
        }
        assert_eq!(upstream.requests().len(), forwarded, "{}: forwarded or not as expected", case.name);
    }
    proxy.stop().await;
}

#[tokio::test]
async fn an_unsupported_version_names_the_supported_ones() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = TestProxy::builder(upstream.url()).start().await;
    let body = call(1, "echo", "{}").replace(r#"Version":"2026-07-28""#, r#"Version":"2099-01-01""#);
    let reply = proxy.post(body, &[("mcp-protocol-version", "2099-01-01")]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["id"], 1, "{}", reply.text());
    let data = &reply.json()["error"]["data"];
    assert_eq!(data["requested"], "2099-01-01", "{}", reply.text());
    assert!(data["supported"].as_array().is_some_and(|s| s.contains(&json!("2026-07-28"))), "{}", reply.text());
    proxy.stop().await;
    // Once the tool server said what it speaks, only versions both sides know are offered.
    let discover = r#"{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2026-07-28"],"capabilities":{}}}"#;
    let upstream = TestUpstream::start(move |_| async move { json_reply(StatusCode::OK, discover) }).await;
    let proxy = TestProxy::builder(upstream.url()).start().await;
    let headers = [("mcp-protocol-version", "2026-07-28"), ("mcp-method", "server/discover")];
    assert_eq!(proxy.post(modern(1, "server/discover", ""), &headers).await.status, StatusCode::OK);
    let body = modern(2, "server/discover", "").replace(r#"Version":"2026-07-28""#, r#"Version":"2099-01-01""#);
    let reply = proxy.post(body, &[("mcp-protocol-version", "2099-01-01"), ("mcp-method", "server/discover")]).await;
    assert_eq!(reply.json()["error"]["data"]["supported"], json!(["2026-07-28"]), "{}", reply.text());
    proxy.stop().await;
}

#[tokio::test]
async fn legacy_requests_keep_legacy_codes_and_modern_refusals_before_inspection_do_not() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = TestProxy::builder(upstream.url()).start().await;
    let legacy = proxy.post(tools_call(1, "forbidden"), &[("mcp-protocol-version", "2025-11-25")]).await;
    assert_eq!(legacy.json()["error"]["code"], -32001, "{}", legacy.text());
    // A foreign Origin is refused before the body is read; the header tells the era.
    let h = call_headers("echo");
    let mut headers: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
    headers.push(("origin", "https://evil.example"));
    let refused = proxy.post(call(2, "echo", "{}"), &headers).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.json()["error"]["code"], -31004, "{}", refused.text());
    proxy.stop().await;
}

#[tokio::test]
async fn modern_get_and_delete_are_405() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = TestProxy::builder(upstream.url()).start().await;
    for method in ["GET", "DELETE"] {
        let req = Request::builder()
            .method(method)
            .uri(proxy.url())
            .header("mcp-protocol-version", "2026-07-28")
            .body(empty_body())
            .unwrap();
        let reply = send(req).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(reply.header("allow"), Some("POST"), "{method}");
    }
    assert!(upstream.requests().is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn a_modern_request_carries_no_session_and_binds_none() {
    let upstream = TestUpstream::start(|_| async {
        let mut resp = json_reply(StatusCode::OK, r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#);
        resp.headers_mut().insert("mcp-session-id", "minted".parse().unwrap());
        resp
    })
    .await;
    // Session binding on, as deployed: a legacy request with an unknown id is 404 …
    let proxy = TestProxy::builder(upstream.url()).configure(|c| c.sessions.bind = true).start().await;
    let legacy = proxy.post(tools_call(1, "echo"), &[("mcp-session-id", "guessed")]).await;
    assert_eq!(legacy.status, StatusCode::NOT_FOUND);
    // … a modern one is decided on its own and its session header never reaches upstream.
    let h = with(call_headers("echo"), "mcp-session-id", Some("guessed"));
    let headers: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let reply = proxy.post(call(2, "echo", "{}"), &headers).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = upstream.wait_for_requests(1).await;
    assert_eq!(seen[0].header("mcp-session-id"), None);
    // The id minted in answer to a modern request was not bound to anyone.
    let legacy = proxy.post(tools_call(3, "echo"), &[("mcp-session-id", "minted")]).await;
    assert_eq!(legacy.status, StatusCode::NOT_FOUND);
    proxy.stop().await;
}

const TOOLS: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[
 {"name":"execute_sql","inputSchema":{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"},"query":{"type":"string"}}}},
 {"name":"forbidden","inputSchema":{"type":"object"}}],"cacheScope":"public","ttlMs":86400000}}"#;

/// An upstream answering `tools/list` with [`TOOLS`] and every other request with a result.
async fn tool_server() -> TestUpstream {
    TestUpstream::start(|r| async move {
        if r.header("mcp-method") == Some("tools/list") || String::from_utf8_lossy(&r.body).contains("tools/list") {
            json_reply(StatusCode::OK, TOOLS.replace('\n', ""))
        } else {
            json_reply(StatusCode::OK, r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#)
        }
    })
    .await
}

fn list_headers() -> [(&'static str, &'static str); 2] {
    [("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/list")]
}

#[tokio::test]
async fn mirrored_headers_are_checked_once_the_schema_was_listed() {
    let upstream = tool_server().await;
    let proxy = TestProxy::builder(upstream.url()).start().await;
    let args = r#"{"region":"us-west1","query":"select 1"}"#;
    let send_call = |region: Option<&'static str>| {
        let mut h = call_headers("execute_sql");
        if let Some(region) = region {
            h.push(("mcp-param-region", region.into()));
        }
        let body = call(2, "execute_sql", args);
        let proxy = &proxy;
        async move {
            let headers: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
            proxy.post(body, &headers).await
        }
    };
    // Before any tools/list the mirror cannot be verified: refused (the default)...
    let early = send_call(Some("us-west1")).await;
    assert_eq!((early.status, early.json()["error"]["code"].clone()), (StatusCode::BAD_REQUEST, json!(-32020)));
    // ... once policy allowed the call: a denied one is answered as denied.
    let mut h = call_headers("forbidden");
    h.push(("mcp-param-region", "us-west1".into()));
    let headers: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let denied = proxy.post(call(3, "forbidden", args), &headers).await;
    assert_eq!(denied.json()["error"]["code"], -31001, "{}", denied.text());
    assert!(upstream.requests().is_empty());
    let listed = proxy.post(modern(1, "tools/list", ""), &list_headers()).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
    let before = upstream.requests().len();
    for (region, want) in [
        (Some("us-west1"), StatusCode::OK),
        (Some("=?base64?dXMtd2VzdDE=?="), StatusCode::OK),
        (Some("eu-west1"), StatusCode::BAD_REQUEST),
        (None, StatusCode::BAD_REQUEST),
    ] {
        let reply = send_call(region).await;
        assert_eq!(reply.status, want, "Mcp-Param-Region {region:?}: {}", reply.text());
        if want != StatusCode::OK {
            assert_eq!(reply.json()["error"]["code"], -32020, "{}", reply.text());
        }
    }
    assert_eq!(upstream.requests().len(), before + 2, "only the matching calls were forwarded");
    proxy.stop().await;
}

#[tokio::test]
async fn unverifiable_mirrors_can_be_stripped_instead() {
    let upstream = tool_server().await;
    let proxy =
        TestProxy::builder(upstream.url()).configure(|c| c.mcp.unverified_param_headers = "strip".into()).start().await;
    let mut h = call_headers("never_listed");
    h.push(("mcp-param-region", "us-west1".into()));
    let headers: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let reply = proxy.post(call(2, "never_listed", "{}"), &headers).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = upstream.wait_for_requests(1).await;
    assert_eq!(seen[0].header("mcp-param-region"), None, "an unchecked mirror reached the server");
    proxy.stop().await;
}

#[tokio::test]
async fn filtered_lists_are_private_with_a_capped_ttl_in_json_and_sse() {
    let upstream = tool_server().await;
    let proxy = TestProxy::builder(upstream.url()).configure(|c| c.mcp.max_cache_ttl_ms = 30_000).start().await;
    let reply = proxy.post(modern(1, "tools/list", ""), &list_headers()).await;
    let result = &reply.json()["result"];
    assert_eq!(result["cacheScope"], "private", "{}", reply.text());
    assert_eq!(result["ttlMs"], 30_000, "{}", reply.text());
    let names: Vec<&str> = result["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["execute_sql"], "forbidden is filtered out");
    // The same list over SSE.
    let sse = TestUpstream::start(|_| async {
        let body = format!("event: message\ndata: {}\n\n", TOOLS.replace('\n', ""));
        let mut resp = json_reply(StatusCode::OK, body);
        resp.headers_mut().insert("content-type", "text/event-stream".parse().unwrap());
        resp
    })
    .await;
    let proxy2 = TestProxy::builder(sse.url()).start().await;
    let reply = proxy2.post(modern(1, "tools/list", ""), &list_headers()).await;
    let text = reply.text();
    assert!(text.contains(r#""cacheScope":"private""#) && !text.contains("public"), "{text}");
    assert!(text.contains(r#""ttlMs":60000"#), "{text}");
    // A legacy list keeps its bytes: legacy clients know no cache hints.
    let legacy = proxy.post(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#, &[]).await;
    assert!(legacy.text().contains(r#""cacheScope":"public""#), "{}", legacy.text());
    proxy.stop().await;
    proxy2.stop().await;
}

/// A policy that allows everything but sampling for the caller and input requests from
/// `no_input`, and subscriptions to `file:///secret`.
const INPUT_POLICY: &str = r#"package mcp

import rego.v1

default decision := {"allow": false, "reasons": ["default deny"]}

decision := {"allow": true, "reasons": []} if {
	not denied
}

denied if input.mcp.input_request.method == "sampling/createMessage"

denied if {
	input.kind == "input_request"
	input.mcp.tool == "no_input"
}

denied if {
	input.phase == "subscribe"
	input.mcp.resource == "file:///secret"
}
"#;

/// An upstream answering every tools/call with `input_required` asking for `request`.
async fn asking(request: Value) -> TestUpstream {
    let answer = json!({"jsonrpc": "2.0", "id": 2, "result": {
        "resultType": "input_required", "inputRequests": {"k": request}, "requestState": "st"}})
    .to_string();
    TestUpstream::start(move |_| {
        let answer = answer.clone();
        async move { json_reply(StatusCode::OK, answer) }
    })
    .await
}

#[tokio::test]
async fn input_required_answers_are_checked_before_the_client_sees_them() {
    let form =
        json!({"method": "elicitation/create", "params": {"message": "ok?", "requestedSchema": {"type": "object"}}});
    let url = json!({"method": "elicitation/create", "params": {"mode": "url", "url": "https://x", "message": "m"}});
    let sampling = json!({"method": "sampling/createMessage", "params": {"messages": [], "maxTokens": 5}});
    // The client declared `elicitation: {}` (form only) in META.
    let rows: [(&str, Value, Option<i64>); 4] = [
        ("echo", form.clone(), None),
        ("echo", url, Some(-31002)),
        ("echo", sampling, Some(-31002)),
        ("no_input", form, Some(-31001)),
    ];
    for (tool, request, want) in rows {
        let upstream = asking(request.clone()).await;
        let proxy = TestProxy::builder(upstream.url()).policy(INPUT_POLICY).start().await;
        let h = call_headers(tool);
        let headers: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let reply = proxy.post(call(2, tool, "{}"), &headers).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let body = reply.json();
        match want {
            None => assert_eq!(body["result"]["resultType"], "input_required", "{tool} {request}: {body}"),
            Some(code) => {
                assert_eq!(body["error"]["code"], code, "{tool} {request}: {body}");
                assert_eq!(body["id"], 2, "{body}");
                assert!(!reply.text().contains("requestState"), "the refused answer leaked: {body}");
            }
        }
        proxy.stop().await;
    }
}

#[tokio::test]
async fn input_required_on_a_method_that_may_not_ask_is_refused() {
    let upstream = asking(json!({"method": "roots/list"})).await;
    let proxy = TestProxy::builder(upstream.url()).start().await;
    let reply = proxy
        .post(
            modern(2, "server/discover", ""),
            &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "server/discover")],
        )
        .await;
    assert_eq!(reply.json()["error"]["code"], -31002, "{}", reply.text());
    proxy.stop().await;
}

#[tokio::test]
async fn subscriptions_are_decided_per_resource_and_notifications_filtered() {
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    let upstream = TestUpstream::start(move |_| {
        count.fetch_add(1, Ordering::SeqCst);
        async {
            let event = |v: Value| format!("event: message\ndata: {v}\n\n");
            let meta = json!({"io.modelcontextprotocol/subscriptionId": 1});
            let body = [
                event(json!({"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{"_meta":meta,"notifications":{"resourceSubscriptions":["file:///ok"]}}})),
                event(json!({"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"_meta":meta,"uri":"file:///secret"}})),
                event(json!({"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"_meta":meta,"uri":"file:///ok"}})),
                event(json!({"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","_meta":meta}})),
            ]
            .concat();
            let mut resp = json_reply(StatusCode::OK, body);
            resp.headers_mut().insert("content-type", "text/event-stream".parse().unwrap());
            resp
        }
    })
    .await;
    let proxy = TestProxy::builder(upstream.url()).policy(INPUT_POLICY).start().await;
    let headers = [("mcp-protocol-version", "2026-07-28"), ("mcp-method", "subscriptions/listen")];
    let listen = |uris: &str| {
        modern(1, "subscriptions/listen", &format!(r#""notifications":{{"resourceSubscriptions":{uris}}}"#))
    };
    let denied = proxy.post(listen(r#"["file:///ok","file:///secret"]"#), &headers).await;
    assert_eq!(denied.json()["error"]["code"], -31001, "{}", denied.text());
    assert_eq!(served.load(Ordering::SeqCst), 0, "a subscription to a denied resource was forwarded");
    let reply = proxy.post(listen(r#"["file:///ok"]"#), &headers).await;
    let text = reply.text();
    assert!(text.contains("acknowledged") && text.contains("file:///ok"), "{text}");
    assert!(!text.contains("file:///secret"), "a notification about a denied resource reached the client: {text}");
    assert!(text.contains(r#""resultType":"complete""#), "{text}");
    proxy.stop().await;
}
