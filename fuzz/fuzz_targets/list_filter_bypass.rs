//! `list::filter_message` must not let a list answer through unfiltered.
//!
//! `Ok(None)` means "not the answer to this request: pass it unchanged". So whenever the
//! message answers the list request by JSON-RPC's own rules, keep-nothing must not
//! return `Ok(None)` (a refusal, `Err`, fails closed and is fine). That is:
//! - a response object whose `id` is the request's id (the same string, or the same
//!   integer);
//! - such a response inside a JSON-RPC batch array (protocol 2025-03-26 allows batches,
//!   and a batch of one `tools/list` request gets a list filter).
//! Looser id matching by client SDKs is `list_id_match`'s concern.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_pep::context::JsonRpcId;
use mcp_pep::mcp::list::{ListKind, filter_message};
use serde_json::Value;

const KINDS: [ListKind; 4] = [ListKind::Tools, ListKind::Prompts, ListKind::Resources, ListKind::ResourceTemplates];

/// The request id this response answers, by JSON-RPC's rules.
fn rpc_id(v: &Value) -> Option<JsonRpcId> {
    match v {
        Value::String(s) => Some(JsonRpcId::String(s.as_str().into())),
        Value::Number(n) => n.as_i64().map(JsonRpcId::Number),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = std::str::from_utf8(data) else { return };
    let Ok(value) = serde_json::from_str::<Value>(msg) else { return };
    let responses: Vec<&Value> = match &value {
        Value::Array(elements) => elements.iter().collect(),
        single => vec![single],
    };
    for response in responses {
        let Some(obj) = response.as_object() else { continue };
        if obj.get("jsonrpc") != Some(&Value::from("2.0")) || obj.contains_key("error") {
            continue;
        }
        let Some(id) = obj.get("id").and_then(rpc_id) else { continue };
        let Some(result) = obj.get("result") else { continue };
        for kind in KINDS {
            let Some(items) = result.get(kind.items_key()).and_then(Value::as_array) else { continue };
            if items.is_empty() {
                continue;
            }
            let out = filter_message(msg, &id, kind, |_| false);
            assert!(
                !matches!(out, Ok(None)),
                "a {} answer to request {id:?} passes unfiltered: {msg}",
                kind.items_key()
            );
        }
    }
});
