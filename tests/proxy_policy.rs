//! Black-box tests of the policy stage: denials and their answers, fail-closed
//! evaluation, readiness, the input document the policy sees, and the metrics.

mod support;

use http::{Request, StatusCode};
use serde_json::{Value, json};
use support::*;

const POLICY_DENIED: i64 = -32001;

/// Denies `tools/call forbidden` with a reason, allows the rest.
const DENY_FORBIDDEN_WITH_REASON: &str = r#"package mcp

import rego.v1

default decision := {"allow": true, "reasons": []}

decision := {"allow": false, "reasons": ["tool forbidden is not allowed"]} if {
	input.mcp.tool == "forbidden"
}
"#;

/// Denies every message, with the whole input document as its one reason.
const ECHO_INPUT: &str = r#"package mcp

import rego.v1

decision := {"allow": false, "reasons": [json.marshal(input)]}
"#;

async fn start(upstream: &TestUpstream, rego: &str) -> TestProxy {
    TestProxy::builder(upstream.url()).policy(rego).start().await
}

/// Checks a policy denial answer for request `id` and returns the error object.
fn assert_denied(reply: &Reply, id: Value) -> Value {
    let body = reply.json();
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    assert_eq!(body["id"], id, "{body}");
    assert_eq!(body["error"]["code"], POLICY_DENIED, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("denied by policy"), "message: {message}");
    let header = reply.header("mcp-pep-decision-id").expect("mcp-pep-decision-id header");
    assert_eq!(body["error"]["data"]["decision_id"], header, "data.decision_id must equal the header");
    body["error"].clone()
}

#[tokio::test]
async fn denied_call_is_200_with_jsonrpc_error_and_decision_id() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(&upstream, DENY_FORBIDDEN_WITH_REASON).await;

    let reply = proxy.post(tools_call(41, "forbidden"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let error = assert_denied(&reply, json!(41));
    assert!(error["data"].get("reasons").is_none(), "reasons exposed by default: {error}");
    assert!(!reply.text().contains("tool forbidden is not allowed"), "reason text leaked: {}", reply.text());
    let reply =
        proxy.post(r#"{"jsonrpc":"2.0","id":"str-id","method":"tools/call","params":{"name":"forbidden"}}"#, &[]).await;
    assert_denied(&reply, json!("str-id"));
    assert!(upstream.requests().is_empty(), "denied call was forwarded");

    // Two requests, two decision ids.
    let a = proxy.post(tools_call(1, "forbidden"), &[]).await;
    let b = proxy.post(tools_call(2, "forbidden"), &[]).await;
    assert_ne!(a.header("mcp-pep-decision-id"), b.header("mcp-pep-decision-id"));

    let reply = proxy.post(tools_call(42, "echo"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(upstream.wait_for_requests(1).await.len(), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn reasons_are_exposed_only_when_configured() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = TestProxy::builder(upstream.url())
        .policy(DENY_FORBIDDEN_WITH_REASON)
        .configure(|c| c.policy.expose_reasons = true)
        .start()
        .await;
    let reply = proxy.post(tools_call(43, "forbidden"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let error = assert_denied(&reply, json!(43));
    assert_eq!(error["data"]["reasons"], json!(["tool forbidden is not allowed"]));
    proxy.stop().await;
}

#[tokio::test]
async fn deny_status_403_is_honoured() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = TestProxy::builder(upstream.url())
        .policy(DENY_FORBIDDEN_WITH_REASON)
        .configure(|c| c.policy.deny_status = 403)
        .start()
        .await;
    let reply = proxy.post(tools_call(44, "forbidden"), &[]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text());
    assert_denied(&reply, json!(44));
    assert!(upstream.requests().is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn denied_notification_is_403() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(
        &upstream,
        r#"package mcp

import rego.v1

default decision := {"allow": true, "reasons": []}

decision := {"allow": false, "reasons": ["no cancelling"]} if {
	input.mcp.method == "notifications/cancelled"
	input.kind == "notification"
}
"#,
    )
    .await;
    let reply =
        proxy.post(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#, &[]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["error"]["code"], POLICY_DENIED, "{body}");
    assert_eq!(body["id"], Value::Null, "{body}");
    assert!(upstream.requests().is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn policy_evaluation_error_denies() {
    let upstream = TestUpstream::json_ok().await;
    // `level` has two complete definitions that disagree for tool "boom": an eval
    // conflict error in OPA. Any error must deny, never allow.
    let proxy = start(
        &upstream,
        r#"package mcp

import rego.v1

default allow := false

allow if input.mcp.tool == "ok"

allow if level == "low"

level = "low" if input.mcp.tool == "boom"

level = "high" if input.mcp.tool == "boom"

decision := {"allow": allow, "reasons": ["not allowed"]}
"#,
    )
    .await;
    let reply = proxy.post(tools_call(45, "boom"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_denied(&reply, json!(45));
    assert!(upstream.requests().is_empty(), "call with a conflicting policy was forwarded");
    let metrics = proxy.metrics().await;
    assert_eq!(
        metric(&metrics, "mcp_pep_decisions_total", &[("tool", "boom"), ("decision", "error")]),
        Some(1.0),
        "evaluation error not counted as error:\n{}",
        decision_lines(&metrics)
    );
    // The same policy still allows what it allows.
    let reply = proxy.post(tools_call(46, "ok"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(upstream.wait_for_requests(1).await.len(), 1);
    proxy.stop().await;
}

fn decision_lines(metrics: &str) -> String {
    metrics.lines().filter(|l| l.contains("decisions_total")).collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn undefined_decision_denies() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(
        &upstream,
        r#"package mcp

import rego.v1

decision := {"allow": true, "reasons": []} if input.mcp.tool == "echo"
"#,
    )
    .await;
    let reply = proxy.post(tools_call(47, "other"), &[]).await;
    assert_denied(&reply, json!(47));
    assert!(upstream.requests().is_empty());
    let reply = proxy.post(tools_call(48, "echo"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(upstream.wait_for_requests(1).await.len(), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn non_boolean_decisions_deny() {
    let upstream = TestUpstream::json_ok().await;
    for decision in [r#""yes""#, "1", r#"{"allow": "true"}"#, r#"{"allow": 1, "reasons": []}"#, r#"["allow"]"#, "null"]
    {
        let proxy = start(&upstream, &format!("package mcp\n\nimport rego.v1\n\ndecision := {decision}\n")).await;
        let reply = proxy.post(tools_call(49, "echo"), &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "decision {decision}: {}", reply.text());
        assert_denied(&reply, json!(49));
        assert!(upstream.requests().is_empty(), "decision {decision} allowed the call");
        proxy.stop().await;
    }
}

#[tokio::test]
async fn bare_boolean_decisions_are_accepted() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(&upstream, "package mcp\n\nimport rego.v1\n\ndecision := true\n").await;
    let reply = proxy.post(tools_call(50, "echo"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(upstream.wait_for_requests(1).await.len(), 1);
    proxy.stop().await;

    let proxy = start(&upstream, "package mcp\n\nimport rego.v1\n\ndecision := false\n").await;
    let reply = proxy.post(tools_call(51, "echo"), &[]).await;
    assert_denied(&reply, json!(51));
    assert_eq!(upstream.requests().len(), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn broken_policy_at_start_is_not_ready_and_denies_everything_with_503() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(&upstream, "package mcp\n\nimport rego.v1\n\ndecision := {\"allow\": true\n").await;

    let healthz = proxy.admin_get("/healthz").await;
    assert_eq!(healthz.status, StatusCode::OK);
    let readyz = proxy.admin_get("/readyz").await;
    assert_eq!(readyz.status, StatusCode::SERVICE_UNAVAILABLE);

    let reply = proxy.post(tools_call(52, "echo"), &[]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["id"], 52, "{body}");
    assert_eq!(body["error"]["code"], POLICY_DENIED, "{body}");

    let reply = proxy.post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, &[]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    let get = Request::get(proxy.url()).header("accept", "text/event-stream").body(empty_body()).unwrap();
    assert_eq!(send(get).await.status, StatusCode::SERVICE_UNAVAILABLE);
    let delete = Request::delete(proxy.url()).header("mcp-session-id", "s").body(empty_body()).unwrap();
    assert_eq!(send(delete).await.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(upstream.requests().is_empty(), "forwarded without a policy");

    let metrics = proxy.metrics().await;
    assert_eq!(metric(&metrics, "mcp_pep_policy_reloads_total", &[("result", "error")]), Some(1.0), "{metrics}");
    assert_eq!(metric(&metrics, "mcp_pep_policy_reloads_total", &[("result", "ok")]).unwrap_or(0.0), 0.0);
    proxy.stop().await;
}

#[tokio::test]
async fn good_policy_is_ready_and_healthy() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(&upstream, ALLOW_EXCEPT_FORBIDDEN).await;
    assert_eq!(proxy.admin_get("/healthz").await.status, StatusCode::OK);
    assert_eq!(proxy.admin_get("/readyz").await.status, StatusCode::OK);
    let metrics = proxy.metrics().await;
    assert_eq!(metric(&metrics, "mcp_pep_policy_reloads_total", &[("result", "ok")]), Some(1.0), "{metrics}");
    proxy.stop().await;
}

/// The input document the policy saw, read back from the exposed reason.
fn input_of(reply: &Reply) -> Value {
    let body = reply.json();
    let reason = body["error"]["data"]["reasons"][0].as_str().unwrap_or_else(|| panic!("no reason in {body}"));
    serde_json::from_str(reason).expect("reason is the marshalled input")
}

#[tokio::test]
async fn policy_input_has_the_documented_shape() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = TestProxy::builder(upstream.url())
        .policy(ECHO_INPUT)
        .configure(|c| c.policy.expose_reasons = true)
        .start()
        .await;
    let reply = proxy
        .post(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/tmp/x","n":[1,2]}}}"#,
            &[
                ("mcp-session-id", "sess-input"),
                ("mcp-protocol-version", "2025-11-25"),
            ],
        )
        .await;
    let input = input_of(&reply);
    assert_eq!(input["version"], 2, "{input}");
    assert_eq!(input["kind"], "request", "{input}");
    assert_eq!(input["phase"], "call", "{input}");
    assert_eq!(input["identity"], Value::Null, "{input}");
    assert_eq!(input["token"], Value::Null, "{input}");
    let mcp = &input["mcp"];
    assert_eq!(mcp["method"], "tools/call", "{input}");
    assert_eq!(mcp["id"], 7, "{input}");
    assert_eq!(mcp["tool"], "read_file", "{input}");
    assert_eq!(mcp["arguments"], json!({"path": "/tmp/x", "n": [1, 2]}));
    assert_eq!(mcp["session_id"], "sess-input", "{input}");
    assert_eq!(mcp["protocol_version"], "2025-11-25", "{input}");
    assert_eq!(mcp["era"], "legacy", "{input}");
    for unset in ["client_capabilities", "input_responses", "request_state", "notifications", "input_request"] {
        assert_eq!(mcp[unset], Value::Null, "{unset} in {input}");
    }
    assert_eq!(input["http"]["method"], "POST", "{input}");
    assert_eq!(input["http"]["path"], "/mcp", "{input}");

    // A notification: kind notification, no id, no tool.
    let reply = proxy.post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, &[]).await;
    let input = input_of(&reply);
    assert_eq!(input["kind"], "notification", "{input}");
    assert_eq!(input["mcp"]["method"], "notifications/initialized");
    assert_eq!(input["mcp"]["id"], Value::Null, "{input}");
    assert_eq!(input["mcp"]["tool"], Value::Null, "{input}");
    assert_eq!(input["mcp"]["session_id"], Value::Null, "{input}");

    // The client's answer to a server->client request: kind response.
    let reply = proxy
        .post(
            r#"{"jsonrpc":"2.0","id":"srv-5","error":{"code":-1,"message":"user declined"}}"#,
            &[("mcp-session-id", "sess-input")],
        )
        .await;
    let input = input_of(&reply);
    assert_eq!(input["kind"], "response", "{input}");
    assert_eq!(input["mcp"]["id"], "srv-5", "{input}");
    assert_eq!(input["mcp"]["method"], Value::Null, "{input}");
    assert_eq!(input["mcp"]["is_error"], true, "{input}");

    // A GET opening the stream: kind stream.
    let get = Request::get(proxy.url())
        .header("accept", "text/event-stream")
        .header("mcp-session-id", "sess-get")
        .body(empty_body())
        .unwrap();
    let reply = send(get).await;
    let input = input_of(&reply);
    assert_eq!(input["kind"], "stream", "{input}");
    assert_eq!(input["http"]["method"], "GET", "{input}");
    assert_eq!(input["mcp"]["session_id"], "sess-get", "{input}");
    assert!(upstream.requests().is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn local_spiffe_id_is_the_identity_of_loopback_callers() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = TestProxy::builder(upstream.url())
        .policy(ECHO_INPUT)
        .configure(|c| {
            c.policy.expose_reasons = true;
            c.identity.local_spiffe_id = Some("spiffe://example.org/ns/agents/sa/agent-1".into());
        })
        .start()
        .await;
    let reply = proxy.post(tools_call(8, "echo"), &[]).await;
    let input = input_of(&reply);
    assert_eq!(
        input["identity"],
        json!({
            "spiffe_id": "spiffe://example.org/ns/agents/sa/agent-1",
            "trust_domain": "example.org",
            "path": "/ns/agents/sa/agent-1",
            "source": "local",
        }),
        "{input}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn metrics_count_decisions_and_request_durations() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(&upstream, ALLOW_EXCEPT_FORBIDDEN).await;
    assert_eq!(proxy.post(tools_call(1, "echo"), &[]).await.status, StatusCode::OK);
    assert_eq!(proxy.post(tools_call(2, "echo"), &[]).await.status, StatusCode::OK);
    proxy.post(tools_call(3, "forbidden"), &[]).await;

    let metrics = proxy.metrics().await;
    let decisions = |tool, decision| {
        metric(&metrics, "mcp_pep_decisions_total", &[("method", "tools/call"), ("tool", tool), ("decision", decision)])
    };
    assert_eq!(decisions("echo", "allow"), Some(2.0), "{metrics}");
    assert_eq!(decisions("forbidden", "deny"), Some(1.0), "{metrics}");
    assert!(metrics.contains("mcp_pep_request_duration_seconds_bucket"), "{metrics}");
    let requests = |outcome| {
        metric(&metrics, "mcp_pep_request_duration_seconds_count", &[("method", "tools/call"), ("outcome", outcome)])
    };
    assert_eq!(requests("forwarded"), Some(2.0), "{metrics}");
    assert_eq!(requests("denied"), Some(1.0), "{metrics}");
    proxy.stop().await;
}

#[tokio::test]
async fn initialize_input_carries_the_proposed_version_and_params() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = TestProxy::builder(upstream.url())
        .policy(ECHO_INPUT)
        .configure(|c| c.policy.expose_reasons = true)
        .start()
        .await;
    let reply = proxy
        .post(
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"roots":{}},"clientInfo":{"name":"t","version":"1"}}}"#,
            &[],
        )
        .await;
    let input = input_of(&reply);
    assert_eq!(input["mcp"]["method"], "initialize", "{input}");
    assert_eq!(input["mcp"]["id"], 0, "{input}");
    // No MCP-Protocol-Version header yet: the version the client proposes.
    assert_eq!(input["mcp"]["protocol_version"], "2025-06-18", "{input}");
    assert_eq!(input["mcp"]["arguments"]["clientInfo"], json!({"name": "t", "version": "1"}), "{input}");
    proxy.stop().await;
}

#[tokio::test]
async fn denied_batch_of_notifications_is_403_like_a_single_notification() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(
        &upstream,
        r#"package mcp

import rego.v1

default decision := {"allow": true, "reasons": []}

decision := {"allow": false, "reasons": ["no cancelling"]} if {
	input.mcp.method == "notifications/cancelled"
}
"#,
    )
    .await;
    let batch = r#"[{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}},
        {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}]"#;
    let reply = proxy.post(batch, &[("mcp-protocol-version", "2025-03-26")]).await;
    assert!(upstream.requests().is_empty());
    // Nothing in the batch has an id: no JSON-RPC request is being answered, so the
    // per-call `deny_status` (200, meant to keep SDK sessions alive) does not apply.
    assert_eq!(
        reply.status,
        StatusCode::FORBIDDEN,
        "a denied batch without ids answered like a request: {}",
        reply.text()
    );
    proxy.stop().await;
}

#[tokio::test]
async fn data_files_are_loaded_and_hidden_files_skipped() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = TestProxy::builder(upstream.url())
        .policy(
            r#"package mcp

import rego.v1

default decision := {"allow": false, "reasons": ["not in catalog"]}

decision := {"allow": true, "reasons": []} if {
	input.mcp.tool in data.catalog.tools
}
"#,
        )
        .file("catalog.json", r#"{"catalog": {"tools": ["echo"]}}"#)
        .file("limits.yaml", "catalog_limits:\n  max: 3\n")
        // A ConfigMap keeps its files under `..data`; a hidden broken file must not load.
        .file(".hidden.rego", "package mcp\n\ndecision := {\n")
        .start()
        .await;
    assert_eq!(proxy.admin_get("/readyz").await.status, StatusCode::OK);
    let reply = proxy.post(tools_call(1, "echo"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = proxy.post(tools_call(2, "other"), &[]).await;
    assert_denied(&reply, json!(2));
    assert_eq!(upstream.wait_for_requests(1).await.len(), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn configured_entrypoint_is_evaluated() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = TestProxy::builder(upstream.url())
        .policy(
            r#"package gate

import rego.v1

default allow := false

allow if input.mcp.tool == "echo"
"#,
        )
        .configure(|c| c.policy.entrypoint = "data.gate.allow".into())
        .start()
        .await;
    assert_eq!(proxy.admin_get("/readyz").await.status, StatusCode::OK);
    let reply = proxy.post(tools_call(1, "echo"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = proxy.post(tools_call(2, "other"), &[]).await;
    assert_denied(&reply, json!(2));
    assert_eq!(upstream.wait_for_requests(1).await.len(), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn denied_client_response_is_an_http_error_without_id() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(
        &upstream,
        r#"package mcp

import rego.v1

default decision := {"allow": true, "reasons": []}

decision := {"allow": false, "reasons": ["no sampling answers"]} if input.kind == "response"
"#,
    )
    .await;
    let reply = proxy
        .post(r#"{"jsonrpc":"2.0","id":5,"result":{"role":"assistant","content":{"type":"text","text":"hi"}}}"#, &[])
        .await;
    assert!(upstream.requests().is_empty(), "denied response was forwarded");
    // MCP: a POSTed response that is not accepted gets an HTTP error status, and any
    // JSON-RPC error in the body has no id. Id 5 belongs to the server's id space: an
    // error with that id would be taken by the client as the answer to its own
    // request 5.
    assert!(reply.status.is_client_error(), "denied response answered {}: {}", reply.status, reply.text());
    if !reply.body.is_empty() {
        let body = reply.json();
        assert_eq!(body["id"], Value::Null, "{body}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn tool_label_cardinality_is_bounded() {
    let upstream = TestUpstream::json_ok().await;
    let proxy = start(&upstream, ALLOW_EXCEPT_FORBIDDEN).await;
    for i in 0..300 {
        let reply = proxy.post(tools_call(i, &format!("tool-{i}")), &[]).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let long = "x".repeat(200);
    proxy.post(tools_call(1000, &long), &[]).await;
    let metrics = proxy.metrics().await;
    let tools: std::collections::HashSet<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("mcp_pep_decisions_total{"))
        .filter_map(|l| l.split("tool=\"").nth(1)?.split('"').next())
        .collect();
    assert!(tools.len() <= 257, "{} distinct tool labels", tools.len());
    assert!(tools.contains("other"), "no overflow label: {tools:?}");
    assert!(!tools.contains(long.as_str()), "200-byte tool name used as a label");
    assert_eq!(metric(&metrics, "mcp_pep_decisions_total", &[("method", "tools/call")]), Some(301.0));
    proxy.stop().await;
}
