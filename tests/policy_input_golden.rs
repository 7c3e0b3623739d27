//! docs/policy-input.md is the contract: the code must build exactly its examples.

use bytes::Bytes;
use http::Request;
use mcp_pep::body::{Body, empty};
use mcp_pep::context::{IdentitySource, McpRequest, PeerIdentity};
use mcp_pep::identity::parse_spiffe_id;
use mcp_pep::mcp::list::ListKind;
use mcp_pep::mcp::{InspectLimits, inspect::inspect};
use mcp_pep::policy::input::{self, Caller, HttpFacts, Phase};
use serde_json::Value;

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

async fn inspected(method: &str, body: &str) -> (McpRequest, http::request::Parts) {
    let req: Request<Body> = Request::builder()
        .method(method)
        .uri("/mcp")
        .header("content-type", "application/json")
        .header("mcp-session-id", "s-1")
        .header("mcp-protocol-version", "2025-11-25")
        .body(if body.is_empty() { empty() } else { mcp_pep::body::full(Bytes::from(body.to_owned())) })
        .unwrap();
    let req = inspect(req, InspectLimits::default()).await.unwrap();
    let (parts, _) = req.into_parts();
    (parts.extensions.get::<McpRequest>().unwrap().clone(), parts)
}

fn semi_trusted() -> Option<PeerIdentity> {
    let id = "spiffe://mcp-identity.local/ns/mcp-agents/sa/semi-trusted-agent";
    Some(PeerIdentity::Spiffe(parse_spiffe_id(id, IdentitySource::Local).unwrap()))
}

async fn built(name: &str) -> Value {
    let (method, body, identity) = match name {
        "tools_call" => (
            "POST",
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/workspace/README.md"}}}"#,
            semi_trusted(),
        ),
        "list_item" => {
            let (mcp, parts) = inspected("POST", r#"{"jsonrpc":"2.0","id":9,"method":"tools/list"}"#).await;
            let id = mcp.messages[0].id.clone().unwrap();
            let item = input::list_item_message(ListKind::Tools.call_method(), &id, "execute_command");
            let http = HttpFacts { method: parts.method.as_str(), path: parts.uri.path() };
            let identity = semi_trusted();
            let caller = Caller { identity: identity.as_ref(), token: None };
            return input::build(&item, &mcp, caller, http, Phase::List);
        }
        "response" => {
            ("POST", r#"{"jsonrpc":"2.0","id":"srv-1","result":{"action":"accept","content":{"ok":true}}}"#, None)
        }
        "stream" => ("GET", "", None),
        "session_end" => ("DELETE", "", None),
        other => panic!("docs/policy-input.md has a golden block {other:?} that this test does not build"),
    };
    let (mcp, parts) = inspected(method, body).await;
    let http = HttpFacts { method: parts.method.as_str(), path: parts.uri.path() };
    input::build(&mcp.messages[0], &mcp, Caller { identity: identity.as_ref(), token: None }, http, Phase::Call)
}

#[tokio::test]
async fn documented_examples_are_what_the_code_builds() {
    let blocks = golden_blocks();
    assert!(blocks.len() >= 5, "the golden examples went missing from docs/policy-input.md");
    for (name, documented) in blocks {
        assert_eq!(built(&name).await, documented, "docs/policy-input.md example {name:?} differs from the code");
    }
}
