//! `jsonrpc::parse_body`: classification of POSTed MCP messages.
//!
//! - never panics;
//! - when it accepts, `McpRequest::body` is the input bytes exactly, and the messages
//!   agree with the JSON (batch iff array, one message per element, kind/id/method/target
//!   read from the members they come from);
//! - it accepts only what `strict_json::parse` accepts at the same depth;
//! - headers only ever add refusals: `Mcp-Method`/`Mcp-Name` equal to the body (a name
//!   that looks like `=?base64?…?=` sent encoded, as 2026-07-28 requires) pass,
//!   a different `Mcp-Method` is a header mismatch, `MCP-Protocol-Version: 2025-06-18`
//!   refuses batches, and a body refused without headers stays refused with them.
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mcp_pep::context::{JsonRpcId, MessageKind};
use mcp_pep::mcp::jsonrpc::{InspectError, PostHeaders, parse_body};
use mcp_pep::mcp::strict_json;
use serde_json::Value;

const MAX_DEPTH: usize = 64;

fn id_json(id: &Option<JsonRpcId>) -> Option<Value> {
    id.as_ref().map(JsonRpcId::to_json)
}

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    let plain = parse_body(input.clone(), PostHeaders::default(), MAX_DEPTH);
    let strict = strict_json::parse(data, MAX_DEPTH);

    let new_version = PostHeaders { protocol_version: Some(Arc::from("2025-06-18")), ..Default::default() };
    let with_version = parse_body(input.clone(), new_version, MAX_DEPTH);
    let wrong_method = PostHeaders { mcp_method: Some("\u{0}not-the-method".into()), ..Default::default() };
    let with_wrong_method = parse_body(input.clone(), wrong_method, MAX_DEPTH);

    let req = match plain {
        Ok(req) => req,
        Err(_) => {
            assert!(with_version.is_err() && with_wrong_method.is_err(), "a header made a refused body acceptable");
            return;
        }
    };
    assert_eq!(&req.body[..], data, "the forwarded body is not the received bytes");
    assert!(req.session_id.is_none());

    let value = strict.expect("parse_body accepted what strict_json refuses");
    let raws: Vec<&Value> = match &value {
        Value::Array(elements) => {
            assert!(req.batch);
            elements.iter().collect()
        }
        single => {
            assert!(!req.batch);
            vec![single]
        }
    };
    assert!(!raws.is_empty());
    assert_eq!(raws.len(), req.messages.len());

    for (m, raw) in req.messages.iter().zip(&raws) {
        let obj = raw.as_object().expect("a message that is not an object was accepted");
        assert_eq!(obj.get("jsonrpc"), Some(&Value::from("2.0")));
        assert_eq!(id_json(&m.id).as_ref(), obj.get("id"), "id not the body's");
        assert_eq!(m.method.as_deref(), obj.get("method").and_then(Value::as_str));
        match m.kind {
            MessageKind::Request => assert!(m.id.is_some() && m.method.is_some()),
            MessageKind::Notification => assert!(m.id.is_none() && m.method.is_some()),
            MessageKind::Response => {
                assert!(m.id.is_some() && m.method.is_none() && m.target.is_none());
                assert_eq!(m.is_error, obj.contains_key("error"));
                assert_ne!(obj.contains_key("error"), obj.contains_key("result"));
            }
            MessageKind::Stream | MessageKind::SessionEnd | MessageKind::InputRequest => {
                panic!("a POST body classified as {:?}", m.kind)
            }
        }
        let params = obj.get("params");
        let target_member = match m.method.as_deref() {
            Some("tools/call" | "prompts/get") => Some("name"),
            Some("resources/read" | "resources/subscribe" | "resources/unsubscribe") => Some("uri"),
            _ => None,
        };
        match target_member {
            Some(member) => {
                let want = params.and_then(|p| p.get(member)).and_then(Value::as_str);
                assert_eq!(m.target.as_deref(), want, "target not params.{member}");
                assert!(want.is_some());
            }
            None => assert!(m.target.is_none()),
        }
        if matches!(m.method.as_deref(), Some("tools/call" | "prompts/get")) {
            assert_eq!(m.arguments.as_ref(), params.and_then(|p| p.get("arguments")));
        }
    }

    // The protocol version an initialize proposes becomes the session's.
    let first = &req.messages[0];
    if first.method.as_deref() == Some("initialize") {
        let proposed = raws[0].get("params").and_then(|p| p.get("protocolVersion")).and_then(Value::as_str);
        assert_eq!(req.protocol_version.as_deref(), proposed);
    } else {
        assert!(req.protocol_version.is_none());
    }

    if req.batch {
        assert!(matches!(with_version, Err(InspectError::BatchNotAllowed(_))), "batch not refused in 2025-06-18");
    } else {
        let ok = with_version.expect("a single message refused under 2025-06-18");
        assert_eq!(ok.protocol_version.as_deref(), Some("2025-06-18"));
        assert!(matches!(with_wrong_method, Err(InspectError::HeaderMismatch { header: "Mcp-Method", .. })));
        // A name that looks like the base64 sentinel must be sent encoded (2026-07-28).
        let header_value = |name: &str| {
            if name.starts_with("=?base64?") && name.ends_with("?=") {
                format!("=?base64?{}?=", data_encoding::BASE64.encode(name.as_bytes()))
            } else {
                name.to_owned()
            }
        };
        let matching = PostHeaders {
            mcp_method: first.method.as_deref().map(str::to_owned),
            mcp_name: first.target.as_deref().map(header_value),
            ..Default::default()
        };
        if first.method.is_some() {
            let again = parse_body(input, matching, MAX_DEPTH).expect("headers equal to the body refused");
            assert_eq!(&again.body[..], data);
        }
    }
});
