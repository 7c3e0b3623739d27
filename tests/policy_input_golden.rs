//! docs/policy-input.md is the contract: the code must build exactly its examples.

use bytes::Bytes;
use http::Request;
use mcp_pep::body::{Body, empty};
use mcp_pep::context::{IdentitySource, InputRequest, McpRequest, PeerIdentity};
use mcp_pep::identity::parse_spiffe_id;
use mcp_pep::mcp::list::ListKind;
use mcp_pep::mcp::{InspectLimits, MirrorCheck, inspect::inspect};
use mcp_pep::policy::input::{self, Caller, HttpFacts, Phase};
use serde_json::{Value, json};

/// The `json golden=NAME` blocks of the document.
fn golden_blocks() -> Vec<(String, Value)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/policy-input.md")).unwrap();
    let mut blocks = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if let Some(name) = line.strip_prefix("```json golden=") {
            let text: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            blocks.push((name.to_owned(), serde_json::from_str(&text.join("\n")).unwrap()));
        }
    }
    blocks
}

/// The headers of a legacy request in a session.
const LEGACY: &[(&str, &str)] = &[("mcp-session-id", "s-1"), ("mcp-protocol-version", "2025-11-25")];

/// A 2026-07-28 request's version header; `Mcp-Method`/`Mcp-Name` are added per example.
const MODERN: &[(&str, &str)] = &[("mcp-protocol-version", "2026-07-28")];

async fn inspected(method: &str, body: &str, headers: &[(&str, &str)]) -> (McpRequest, http::request::Parts) {
    let mut req = Request::builder().method(method).uri("/mcp").header("content-type", "application/json");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req: Request<Body> =
        req.body(if body.is_empty() { empty() } else { mcp_pep::body::full(Bytes::from(body.to_owned())) }).unwrap();
    let req = inspect(req, InspectLimits::default(), &MirrorCheck::default()).await.unwrap();
    let (parts, _) = req.into_parts();
    (parts.extensions.get::<McpRequest>().unwrap().clone(), parts)
}

/// `_meta` of the modern examples.
const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{"form":{}}},"io.modelcontextprotocol/clientInfo":{"name":"agent","version":"1"}}"#;

fn modern_call() -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"write_file","arguments":{{"path":"/workspace/out.txt","content":"hi"}},{META}}}}}"#
    )
}

fn semi_trusted() -> Option<PeerIdentity> {
    let id = "spiffe://mcp-identity.local/ns/mcp-agents/sa/semi-trusted-agent";
    Some(PeerIdentity::Spiffe(parse_spiffe_id(id, IdentitySource::Local).unwrap()))
}

async fn built(name: &str) -> Value {
    let call = [("mcp-method", "tools/call"), ("mcp-name", "write_file"), MODERN[0]];
    let (method, body, headers, identity) = match name {
        "tools_call" => (
            "POST",
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/workspace/README.md"}}}"#.to_owned(),
            LEGACY,
            semi_trusted(),
        ),
        "list_item" => {
            let (mcp, parts) = inspected("POST", r#"{"jsonrpc":"2.0","id":9,"method":"tools/list"}"#, LEGACY).await;
            let item = input::derived_message(&mcp.messages[0], ListKind::Tools.call_method(), "execute_command");
            let http = HttpFacts { method: parts.method.as_str(), path: parts.uri.path() };
            let identity = semi_trusted();
            let caller = Caller { identity: identity.as_ref(), token: None };
            return both(&item, &mcp, caller, http, Phase::List);
        }
        "response" => (
            "POST",
            r#"{"jsonrpc":"2.0","id":"srv-1","result":{"action":"accept","content":{"ok":true}}}"#.to_owned(),
            LEGACY,
            None,
        ),
        "stream" => ("GET", String::new(), LEGACY, None),
        "session_end" => ("DELETE", String::new(), LEGACY, None),
        "modern_tools_call" => {
            let (mcp, parts) = inspected("POST", &modern_call(), &call).await;
            return build_call(&mcp, &parts, &mcp.messages[0], Phase::Call);
        }
        "modern_input_request" => {
            let (mcp, parts) = inspected("POST", &modern_call(), &call).await;
            let request = InputRequest {
                key: "confirm".into(),
                method: "elicitation/create".into(),
                params: json!({"message": "Write /workspace/out.txt?", "requestedSchema": {"type": "object", "properties": {}}}),
            };
            let message = input::input_request_message(&mcp.messages[0], request);
            return build_call(&mcp, &parts, &message, Phase::Call);
        }
        "modern_retry" => {
            let body = modern_call().replace(
                r#""arguments""#,
                r#""inputResponses":{"confirm":{"action":"accept","content":{}}},"requestState":"opaque-1","arguments""#,
            );
            let (mcp, parts) = inspected("POST", &body, &call).await;
            return build_call(&mcp, &parts, &mcp.messages[0], Phase::Call);
        }
        "modern_subscribe" => {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":3,"method":"subscriptions/listen","params":{{"notifications":{{"toolsListChanged":true,"resourceSubscriptions":["file:///workspace/config.json"]}},{META}}}}}"#
            );
            let headers = [("mcp-method", "subscriptions/listen"), MODERN[0]];
            let (mcp, parts) = inspected("POST", &body, &headers).await;
            let listen = build_call(&mcp, &parts, &mcp.messages[0], Phase::Call);
            let uri = mcp.messages[0].resource_subscriptions().next().unwrap().to_owned();
            let read = input::derived_message(&mcp.messages[0], "resources/read", &uri);
            return json!([listen, build_call(&mcp, &parts, &read, Phase::Subscribe)]);
        }
        other => panic!("docs/policy-input.md has a golden block {other:?} that this test does not build"),
    };
    let (mcp, parts) = inspected(method, &body, headers).await;
    let http = HttpFacts { method: parts.method.as_str(), path: parts.uri.path() };
    both(&mcp.messages[0], &mcp, Caller { identity: identity.as_ref(), token: None }, http, Phase::Call)
}

/// The document as JSON, after checking that the value the policy evaluates (built
/// directly, without the JSON) is exactly that JSON read by regorus.
fn both(
    message: &mcp_pep::context::McpMessage,
    mcp: &McpRequest,
    caller: Caller<'_>,
    http: HttpFacts<'_>,
    phase: Phase,
) -> Value {
    let doc = input::build(message, mcp, caller, http, phase);
    let value = input::build_value(message, mcp, caller, http, phase).unwrap();
    assert_eq!(value.value, regorus::Value::from(doc.clone()), "the evaluated value differs from the JSON");
    assert_eq!(value.value.to_json_str().unwrap(), regorus::Value::from(doc.clone()).to_json_str().unwrap());
    assert!(value.keyable);
    doc
}

/// A modern example as the trusted agent (over mTLS) sends it.
fn build_call(
    mcp: &McpRequest,
    parts: &http::request::Parts,
    message: &mcp_pep::context::McpMessage,
    phase: Phase,
) -> Value {
    let id = "spiffe://mcp-identity.local/ns/mcp-agents/sa/trusted-agent";
    let identity = Some(PeerIdentity::Spiffe(parse_spiffe_id(id, IdentitySource::Mtls).unwrap()));
    let http = HttpFacts { method: parts.method.as_str(), path: parts.uri.path() };
    both(message, mcp, Caller { identity: identity.as_ref(), token: None }, http, phase)
}

/// Prints what the code builds, for writing the document: `GOLDEN_PRINT=1 cargo test --test policy_input_golden`.
#[tokio::test]
async fn print_when_asked() {
    if std::env::var_os("GOLDEN_PRINT").is_none() {
        return;
    }
    for name in ["modern_tools_call", "modern_input_request", "modern_retry", "modern_subscribe", "tools_call"] {
        println!("{name}:\n{}", serde_json::to_string_pretty(&built(name).await).unwrap());
    }
}

#[tokio::test]
async fn documented_examples_are_what_the_code_builds() {
    let blocks = golden_blocks();
    assert!(blocks.len() >= 9, "the golden examples went missing from docs/policy-input.md");
    for (name, documented) in blocks {
        assert_eq!(built(&name).await, documented, "docs/policy-input.md example {name:?} differs from the code");
    }
}
