//! A list answer that the client matches to the list request must be filtered, even when
//! its `id` is spelled differently from the request's.
//!
//! The TypeScript SDK (`@modelcontextprotocol/sdk`, `Protocol._onresponse`) looks the
//! handler up by `Number(response.id)`, and its requests are numbered 0, 1, 2, ...: so a
//! response with `"id": 1.0`, `"id": 1e0` or `"id": "1"` is the answer to request 1 for
//! that client. `filter_message` matches ids exactly, so it returns `Ok(None)` ("not the
//! answer, pass unchanged") for those and the unfiltered list reaches the client. Only an
//! upstream that misspells ids can cause it; this target states the property so that the
//! gap is visible and tested (see fuzz/regressions/list_id_match/).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_pep::context::JsonRpcId;
use mcp_pep::mcp::list::{ListKind, filter_message};
use serde_json::Value;

const KINDS: [ListKind; 4] = [ListKind::Tools, ListKind::Prompts, ListKind::Resources, ListKind::ResourceTemplates];

/// JavaScript's `Number(s)` for a string, as far as decimal notation goes (`""` is 0).
fn js_number(s: &str) -> Option<f64> {
    let t = s.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if t.is_empty() {
        return Some(0.0);
    }
    let decimal = t.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
    if decimal { t.parse::<f64>().ok() } else { None }
}

/// The numeric request id (0 ..= 2^53) a TypeScript SDK client matches this `id` to.
fn ts_client_id(v: &Value) -> Option<i64> {
    let f = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => js_number(s)?,
        _ => return None,
    };
    (f.fract() == 0.0 && (0.0..=9.007_199_254_740_992e15).contains(&f)).then_some(f as i64)
}

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = std::str::from_utf8(data) else { return };
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(msg) else { return };
    if obj.get("jsonrpc") != Some(&Value::from("2.0")) {
        return;
    }
    let Some(id) = obj.get("id").and_then(ts_client_id) else { return };
    let Some(result) = obj.get("result") else { return };
    for kind in KINDS {
        let Some(items) = result.get(kind.items_key()).and_then(Value::as_array) else { continue };
        if items.is_empty() {
            continue;
        }
        let out = filter_message(msg, &JsonRpcId::Number(id), kind, |_| false);
        assert!(
            !matches!(out, Ok(None)),
            "a {} answer the client matches to request {id} passes unfiltered: {msg}",
            kind.items_key()
        );
    }
});
