//! What 2026-07-28 answers carry that a per-caller proxy must look at on the way back:
//! cache hints (`ttlMs`, `cacheScope`), multi-round-trip requests (`input_required`)
//! and subscription notifications. Parsing only; deciding is the policy stage's.
//!
//! Every function reads one JSON-RPC message that the caller has already found to be
//! strict JSON (the list filter parses every answer strictly first).

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::context::InputRequest;

/// Methods whose complete results may carry cache hints (server/utilities/caching).
pub fn is_cacheable(method: &str) -> bool {
    matches!(
        method,
        "server/discover"
            | "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
    )
}

/// The only methods a server may answer with `input_required` (MRTR "Supported Requests").
pub fn may_require_input(method: &str) -> bool {
    matches!(method, "tools/call" | "prompts/get" | "resources/read")
}

/// A cheap test before a full parse: `input_required` can only be spelled literally or
/// with escapes, so a message with neither is not one.
pub fn might_be_input_required(text: &str) -> bool {
    text.contains("input_required") || text.contains("\\u")
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    result: Option<&'a RawValue>,
}

/// The message with its result marked `cacheScope: "private"` and `ttlMs` capped at
/// `ttl_cap_ms` (a shared cache must never hand one caller's answer to another, and a
/// policy change must reach clients). `None` when it is not a complete result object.
/// Only the result object is rewritten; every other byte stays.
pub fn make_private(message: &str, ttl_cap_ms: u64) -> Option<String> {
    let envelope: Envelope<'_> = serde_json::from_str(message).ok()?;
    let raw = envelope.result?;
    let Ok(Value::Object(mut result)) = serde_json::from_str::<Value>(raw.get()) else { return None };
    if result.get("resultType").is_some_and(|t| t != "complete") {
        return None;
    }
    let ttl = result.get("ttlMs").and_then(Value::as_u64).map(|ttl| ttl.min(ttl_cap_ms));
    let ttl_ok = result.get("ttlMs").is_none_or(|t| t.as_u64().is_some_and(|v| v <= ttl_cap_ms));
    let already = result.get("cacheScope").and_then(Value::as_str) == Some("private") && ttl_ok;
    if already {
        return None;
    }
    result.insert("cacheScope".into(), Value::from("private"));
    match ttl {
        Some(ttl) => result.insert("ttlMs".into(), Value::from(ttl)),
        // An invalid ttlMs is no hint a client may follow.
        None => result.remove("ttlMs"),
    };
    let start = raw.get().as_ptr() as usize - message.as_ptr() as usize;
    let mut out = String::with_capacity(message.len() + 32);
    out.push_str(&message[..start]);
    out.push_str(&Value::Object(result).to_string());
    out.push_str(&message[start + raw.get().len()..]);
    Some(out)
}

/// Why an `input_required` answer cannot reach the client, before policy is asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputRequiredError {
    #[error("the tool server asked for input on {0}, which may not do so")]
    Method(String),
    #[error("the tool server's inputRequests are malformed: {0}")]
    Malformed(&'static str),
    #[error("the tool server asked for {0}, which the client does not support")]
    Unsupported(String),
    #[error("the tool server asked for {method}, a capability the client did not declare")]
    Undeclared { method: String },
}

/// The input requests of an `input_required` answer to `method`, each checked against
/// the client's declared capabilities; `Ok(None)` when the message is not one.
pub fn input_requests(
    message: &str,
    method: &str,
    capabilities: Option<&Value>,
) -> Result<Option<Vec<InputRequest>>, InputRequiredError> {
    let Ok(Value::Object(mut envelope)) = serde_json::from_str::<Value>(message) else { return Ok(None) };
    let Some(Value::Object(mut result)) = envelope.remove("result") else { return Ok(None) };
    if result.get("resultType").and_then(Value::as_str) != Some("input_required") {
        return Ok(None);
    }
    if !may_require_input(method) {
        return Err(InputRequiredError::Method(method.to_owned()));
    }
    let requests = match result.remove("inputRequests") {
        None => Map::new(),
        Some(Value::Object(requests)) => requests,
        Some(_) => return Err(InputRequiredError::Malformed("inputRequests must be an object")),
    };
    let empty = Map::new();
    let capabilities = capabilities.and_then(Value::as_object).unwrap_or(&empty);
    let mut out = Vec::with_capacity(requests.len());
    for (key, request) in requests {
        let Value::Object(mut request) = request else {
            return Err(InputRequiredError::Malformed("an input request must be an object"));
        };
        let Some(Value::String(method)) = request.remove("method") else {
            return Err(InputRequiredError::Malformed("an input request needs a string method"));
        };
        let params = match request.remove("params") {
            None => Value::Object(Map::new()),
            Some(p @ Value::Object(_)) => p,
            Some(_) => return Err(InputRequiredError::Malformed("input request params must be an object")),
        };
        if !declared(&method, &params, capabilities)? {
            return Err(InputRequiredError::Undeclared { method });
        }
        out.push(InputRequest { key, method, params });
    }
    Ok(Some(out))
}

/// The client declared what the input request needs: `sampling`, `roots`, or
/// `elicitation` with the mode asked for (an empty `elicitation` object means form only,
/// as in 2025-11-25).
fn declared(method: &str, params: &Value, capabilities: &Map<String, Value>) -> Result<bool, InputRequiredError> {
    let has = |name: &str| capabilities.get(name).is_some_and(Value::is_object);
    Ok(match method {
        "sampling/createMessage" => has("sampling"),
        "roots/list" => has("roots"),
        "elicitation/create" => {
            let Some(Value::Object(elicitation)) = capabilities.get("elicitation") else { return Ok(false) };
            match params.get("mode").and_then(Value::as_str).unwrap_or("form") {
                "url" => elicitation.get("url").is_some_and(Value::is_object),
                "form" => elicitation.is_empty() || elicitation.get("form").is_some_and(Value::is_object),
                _ => false,
            }
        }
        other => return Err(InputRequiredError::Unsupported(other.to_owned())),
    })
}

/// The URI of a `notifications/resources/updated` message.
pub fn updated_resource(message: &str) -> Option<String> {
    let value: Value = serde_json::from_str(message).ok()?;
    if value.get("method")?.as_str()? != "notifications/resources/updated" {
        return None;
    }
    Some(value.get("params")?.get("uri")?.as_str()?.to_owned())
}

/// The raw `id` of a response, for an error answer in its place.
pub fn response_id(message: &str) -> Option<Value> {
    let value: Value = serde_json::from_str(message).ok()?;
    value.get("id").cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cache_hints_become_private_and_capped() {
        let cases = [
            (
                r#"{"jsonrpc":"2.0", "id":1,"result":{"tools":[],"cacheScope":"public","ttlMs":3600000}}"#,
                Some(r#"{"jsonrpc":"2.0", "id":1,"result":{"cacheScope":"private","tools":[],"ttlMs":60000}}"#),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#,
                Some(r#"{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"private","tools":[]}}"#),
            ),
            (r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"cacheScope":"private","ttlMs":0}}"#, None),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"private","ttlMs":-5}}"#,
                Some(r#"{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"private"}}"#),
            ),
            (r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required"}}"#, None),
            (r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m"}}"#, None),
        ];
        for (input, want) in cases {
            assert_eq!(make_private(input, 60_000).as_deref(), want, "{input}");
        }
    }

    fn caps(v: Value) -> Value {
        v
    }

    /// Each row: answered method, capabilities, input request, expected outcome.
    #[test]
    fn input_requests_need_a_method_that_may_and_a_declared_capability() {
        let answer = |req: Value| {
            json!({"jsonrpc":"2.0","id":2,"result":{"resultType":"input_required","inputRequests":{"k": req},"requestState":"s"}})
                .to_string()
        };
        let form = json!({"method": "elicitation/create", "params": {"message": "ok?", "requestedSchema": {}}});
        let url =
            json!({"method": "elicitation/create", "params": {"mode": "url", "url": "https://x", "message": "m"}});
        let sampling = json!({"method": "sampling/createMessage", "params": {"messages": []}});
        let roots = json!({"method": "roots/list"});
        type Row = (&'static str, Value, Value, Result<usize, &'static str>);
        let rows: Vec<Row> = vec![
            ("tools/call", caps(json!({"elicitation": {}})), form.clone(), Ok(1)),
            ("tools/call", caps(json!({"elicitation": {"form": {}}})), form.clone(), Ok(1)),
            ("prompts/get", caps(json!({"elicitation": {"url": {}}})), url.clone(), Ok(1)),
            ("resources/read", caps(json!({"sampling": {}})), sampling.clone(), Ok(1)),
            ("tools/call", caps(json!({"roots": {}})), roots.clone(), Ok(1)),
            ("tools/call", caps(json!({"elicitation": {"url": {}}})), form.clone(), Err("undeclared")),
            ("tools/call", caps(json!({"elicitation": {}})), url.clone(), Err("undeclared")),
            ("tools/call", caps(json!({})), sampling.clone(), Err("undeclared")),
            ("tools/call", caps(json!({"sampling": true})), sampling.clone(), Err("undeclared")),
            ("tools/call", caps(json!({})), roots.clone(), Err("undeclared")),
            ("tools/list", caps(json!({"roots": {}})), roots.clone(), Err("method")),
            ("tools/call", caps(json!({"roots": {}})), json!({"method": "tools/call"}), Err("unsupported")),
            ("tools/call", caps(json!({"roots": {}})), json!({"params": {}}), Err("malformed")),
            ("tools/call", caps(json!({"roots": {}})), json!("roots/list"), Err("malformed")),
        ];
        for (method, caps, req, want) in rows {
            let got = input_requests(&answer(req.clone()), method, Some(&caps));
            let got = match got {
                Ok(Some(list)) => Ok(list.len()),
                Ok(None) => Err("none"),
                Err(InputRequiredError::Method(_)) => Err("method"),
                Err(InputRequiredError::Malformed(_)) => Err("malformed"),
                Err(InputRequiredError::Unsupported(_)) => Err("unsupported"),
                Err(InputRequiredError::Undeclared { .. }) => Err("undeclared"),
            };
            assert_eq!(got, want, "{method} {caps} {req}");
        }
        let complete = r#"{"jsonrpc":"2.0","id":2,"result":{"content":[]}}"#;
        assert_eq!(input_requests(complete, "tools/call", None), Ok(None));
    }

    #[test]
    fn finds_updated_resources() {
        let n = r#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///a"}}"#;
        assert_eq!(updated_resource(n).as_deref(), Some("file:///a"));
        assert_eq!(updated_resource(r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#), None);
    }
}
