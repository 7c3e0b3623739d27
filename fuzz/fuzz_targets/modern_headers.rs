//! The 2026-07-28 request rules: `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name` and
//! `params._meta` (`jsonrpc::parse_body`), the `=?base64?…?=` header encoding
//! (`era::decode_header_value`) and `Mcp-Param-*` mirrors (`mirror::ParamMirrors`).
//!
//! Input: byte 0 = flags, then the body, then (after a `0xff` byte) a header value, then
//! (after another) a tool definition for `ParamMirrors::learn`.
//! - never panics;
//! - `decode_header_value`: a value without the sentinel is itself; a decoded sentinel
//!   re-encodes to exactly what was sent (one spelling per string); any string sent
//!   encoded, padded or not, decodes to itself;
//! - with the headers the body calls for (version 2026-07-28, `Mcp-Method` = method,
//!   `Mcp-Name` = name/uri, encoded when not header-safe or by flag), the body is accepted
//!   exactly when a model of the spec's rules written here accepts it: one request or
//!   notification, `_meta` naming 2026-07-28 and client capabilities, not a removed method;
//! - accepted: modern era, version 2026-07-28, no session id, capabilities from `_meta`;
//!   and each header rule bites: no or another `Mcp-Method`, no, another or badly encoded
//!   `Mcp-Name`, no or another `MCP-Protocol-Version` is refused with its own error;
//! - a `tools/call` of the mirrored tool passes with `Mcp-Param-*` headers made from its
//!   arguments by the spec's conversion, and fails with one changed, missing or extra.
#![no_main]

use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use data_encoding::{BASE64, BASE64_NOPAD};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use mcp_pep::context::{Era, MessageKind};
use mcp_pep::mcp::era::{MODERN, REMOVED_METHODS, decode_header_value};
use mcp_pep::mcp::jsonrpc::{InspectError, PostHeaders, parse_body};
use mcp_pep::mcp::{ParamMirrors, Unverified, strict_json};
use serde_json::{Map, Value, json};

const MAX_DEPTH: usize = 64;
const VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";
const CAPABILITIES_KEY: &str = "io.modelcontextprotocol/clientCapabilities";

/// The mirrored tool: `Mcp-Param-Region`, `-Limit`, `-Dry` and a nested `-Db`.
static MIRRORS: LazyLock<ParamMirrors> = LazyLock::new(|| {
    let m = ParamMirrors::default();
    m.learn(&json!({"name": "mirrored", "inputSchema": {"type": "object", "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "limit": {"type": "integer", "x-mcp-header": "Limit"},
        "dry": {"type": "boolean", "x-mcp-header": "Dry"},
        "target": {"type": "object", "properties": {"db": {"type": "string", "x-mcp-header": "Db"}}},
        "query": {"type": "string"}
    }}}));
    m
});
const MIRRORED: [(&str, &[&str]); 4] =
    [("region", &["region"]), ("limit", &["limit"]), ("dry", &["dry"]), ("db", &["target", "db"])];

fn sentinel(s: &str) -> String {
    format!("=?base64?{}?=", BASE64.encode(s.as_bytes()))
}

/// Sent as is only when a header can carry it unchanged and it does not look encoded.
fn header_safe(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !s.starts_with(' ')
        && !s.ends_with(' ')
        && !(s.starts_with("=?base64?") && s.ends_with("?="))
}

fn encode(s: &str, always: bool) -> String {
    if always || !header_safe(s) { sentinel(s) } else { s.to_owned() }
}

fn check_decode(value: &str) {
    let decoded = decode_header_value(value);
    match value.strip_prefix("=?base64?").and_then(|r| r.strip_suffix("?=")) {
        None => assert_eq!(decoded.as_deref(), Some(value), "a plain value was changed"),
        Some(content) => {
            if let Some(text) = &decoded {
                let padded = BASE64.encode(text.as_bytes());
                let unpadded = BASE64_NOPAD.encode(text.as_bytes());
                assert!(content == padded || content == unpadded, "{value:?} decodes to {text:?}, a second spelling");
            }
        }
    }
    for s in [value, value.get(value.len() / 2..).unwrap_or_default()] {
        assert_eq!(decode_header_value(&sentinel(s)).as_deref(), Some(s));
        let unpadded = format!("=?base64?{}?=", BASE64_NOPAD.encode(s.as_bytes()));
        assert_eq!(decode_header_value(&unpadded).as_deref(), Some(s));
    }
}

/// The member `name`/`uri` that `Mcp-Name` must repeat.
fn name_member(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// The spec's rules for one 2026-07-28 request body, read from the JSON value.
fn model_accepts(value: &Value) -> bool {
    let Value::Object(m) = value else { return false };
    let allowed = ["jsonrpc", "id", "method", "params"];
    if m.keys().any(|k| !allowed.contains(&k.as_str())) || m.get("jsonrpc") != Some(&json!("2.0")) {
        return false;
    }
    match m.get("id") {
        None | Some(Value::String(_)) => {}
        Some(Value::Number(n)) if n.as_i64().is_some() => {}
        Some(_) => return false,
    }
    let Some(Value::String(method)) = m.get("method") else { return false };
    let empty = Map::new();
    let params = match m.get("params") {
        None => &empty,
        Some(Value::Object(p)) => p,
        Some(_) => return false,
    };
    let Some(Value::Object(meta)) = params.get("_meta") else { return false };
    let is = |v: Option<&Value>, f: fn(&Value) -> bool| v.is_none_or(f);
    meta.get(VERSION_KEY) == Some(&json!(MODERN))
        && meta.get(CAPABILITIES_KEY).is_some_and(Value::is_object)
        && !REMOVED_METHODS.contains(&method.as_str())
        && is(params.get("inputResponses"), Value::is_object)
        && is(params.get("requestState"), Value::is_string)
        && (method != "subscriptions/listen"
            || params.get("notifications").is_some_and(|n| {
                n.is_object()
                    && is(n.get("resourceSubscriptions"), |s| {
                        s.as_array().is_some_and(|a| a.iter().all(Value::is_string))
                    })
            }))
        && name_member(method).is_none_or(|member| params.get(member).is_some_and(Value::is_string))
        && (!matches!(method.as_str(), "tools/call" | "prompts/get") || is(params.get("arguments"), Value::is_object))
}

fn headers(version: Option<&str>, method: Option<&str>, name: Option<String>) -> PostHeaders {
    PostHeaders {
        session_id: Some(Arc::from("a-legacy-session")),
        protocol_version: version.map(Arc::from),
        mcp_method: method.map(str::to_owned),
        mcp_name: name,
    }
}

fn is_err(r: Result<mcp_pep::context::McpRequest, InspectError>, want: fn(&InspectError) -> bool, what: &str) {
    match r {
        Err(e) if want(&e) => {}
        other => panic!("{what}: got {:?}", other.map(|r| r.messages[0].method.clone())),
    }
}

/// The mirror headers of `arguments` (`None`: one cannot be mirrored at all).
fn mirror_headers(arguments: Option<&Value>, always_encode: bool) -> Option<Vec<(HeaderName, String, &'static str)>> {
    let mut out = Vec::new();
    for (header, path) in MIRRORED {
        let mut v = arguments;
        for key in path {
            v = v.and_then(|v| v.get(key));
        }
        let text = match v {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => encode(s, always_encode),
            Some(Value::Bool(b)) => b.to_string(),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
            Some(_) => return None,
        };
        out.push((HeaderName::from_bytes(format!("mcp-param-{header}").as_bytes()).unwrap(), text, header));
    }
    Some(out)
}

fn header_map(pairs: &[(HeaderName, String, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value, _) in pairs {
        h.append(name.clone(), HeaderValue::from_str(value).expect("a header-safe value"));
    }
    h
}

fn check_mirrors(arguments: Option<&Value>, always_encode: bool, pick: usize) {
    let Some(pairs) = mirror_headers(arguments, always_encode) else {
        return;
    };
    let check = |h: &HeaderMap, strict| MIRRORS.check("mirrored", arguments, h, Unverified::Refuse, strict, None);
    assert_eq!(check(&header_map(&pairs), true), Ok(Vec::new()), "mirrors made from the arguments refused");
    let mismatch = |r: Result<Vec<HeaderName>, InspectError>, what: &str| {
        assert!(matches!(r, Err(InspectError::ParamMismatch { .. })), "{what}: {r:?}");
    };
    if !pairs.is_empty() {
        let i = pick % pairs.len();
        let mut changed = pairs.clone();
        changed[i].1 = match changed[i].2 {
            "dry" => {
                if changed[i].1 == "true" {
                    "false".into()
                } else {
                    "true".into()
                }
            }
            "limit" => format!("x{}", changed[i].1),
            _ => {
                let text = decode_header_value(&changed[i].1).unwrap().into_owned();
                encode(&format!("{text}x"), always_encode)
            }
        };
        mismatch(check(&header_map(&changed), true), "a changed mirror");
        let mut missing = pairs.clone();
        missing.remove(i);
        mismatch(check(&header_map(&missing), true), "a missing mirror (strict)");
        assert_eq!(check(&header_map(&missing), false), Ok(Vec::new()), "a missing mirror (legacy)");
        let mut repeated = pairs.clone();
        repeated.push(pairs[i].clone());
        mismatch(check(&header_map(&repeated), true), "a repeated mirror");
    }
    if let Some(absent) = MIRRORED.iter().map(|(h, _)| *h).find(|h| pairs.iter().all(|p| p.2 != *h)) {
        let mut extra = pairs.clone();
        extra.push((HeaderName::from_bytes(format!("mcp-param-{absent}").as_bytes()).unwrap(), "1".into(), absent));
        mismatch(check(&header_map(&extra), false), "a mirror of an argument the body does not have");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let mut parts = rest.splitn(3, |&b| b == 0xff);
    let body = parts.next().unwrap_or_default();
    let header_part = String::from_utf8_lossy(parts.next().unwrap_or_default());
    check_decode(&header_part);
    if let Some(tool) = parts.next().and_then(|t| serde_json::from_slice::<Value>(t).ok()) {
        ParamMirrors::default().learn(&tool);
    }

    let always_encode = flags & 1 == 1;
    let value = strict_json::parse(body, MAX_DEPTH).ok();
    let method = value.as_ref().and_then(|v| v.get("method")).and_then(Value::as_str);
    let name = method.and_then(name_member).and_then(|member| value.as_ref()?.get("params")?.get(member)?.as_str());
    let name_header = name.map(|n| encode(n, always_encode));
    let bytes = Bytes::copy_from_slice(body);
    let parse = |h: PostHeaders| parse_body(bytes.clone(), h, MAX_DEPTH);

    let got = parse(headers(Some(MODERN), method, name_header.clone()));
    let expected = value.as_ref().is_some_and(model_accepts);
    let req = match got {
        Ok(req) if expected => req,
        Err(_) if !expected => return,
        other => panic!("parse_body = {:?}, the model says accepted = {expected}", other.map(|r| r.era)),
    };
    let value = value.as_ref().unwrap();
    assert_eq!((req.era, req.batch, req.messages.len()), (Era::Modern, false, 1));
    assert_eq!(req.protocol_version.as_deref(), Some(MODERN));
    assert!(req.session_id.is_none(), "a 2026-07-28 request kept a session id");
    let m = &req.messages[0];
    assert_eq!(m.kind, if value.get("id").is_some() { MessageKind::Request } else { MessageKind::Notification });
    let caps = value.pointer("/params/_meta").and_then(|meta| meta.get(CAPABILITIES_KEY));
    assert_eq!(m.context.client_capabilities.as_deref(), caps, "capabilities not from _meta");
    let method = method.unwrap();

    // Each header rule, alone.
    let name_h = || name_header.clone();
    let missing_method = parse(headers(Some(MODERN), None, name_h()));
    if m.kind == MessageKind::Request {
        is_err(
            missing_method,
            |e| matches!(e, InspectError::HeaderMissing { header: "Mcp-Method", .. }),
            "no Mcp-Method",
        );
    } else {
        assert!(missing_method.is_ok(), "a notification needs no Mcp-Method");
    }
    let other_method = format!("{method}x");
    is_err(
        parse(headers(Some(MODERN), Some(&other_method), name_h())),
        |e| matches!(e, InspectError::HeaderMismatch { header: "Mcp-Method", .. }),
        "another Mcp-Method",
    );
    for version in [None, Some("2025-11-25"), Some("2099-01-01")] {
        let want: fn(&InspectError) -> bool = if version.is_none() {
            |e| matches!(e, InspectError::HeaderMissing { header: "MCP-Protocol-Version", .. })
        } else {
            |e| matches!(e, InspectError::HeaderMismatch { header: "MCP-Protocol-Version", .. })
        };
        is_err(parse(headers(version, Some(method), name_h())), want, "a version header other than _meta's");
    }
    match name {
        Some(name) => {
            is_err(
                parse(headers(Some(MODERN), Some(method), None)),
                |e| matches!(e, InspectError::HeaderMissing { header: "Mcp-Name", .. }),
                "no Mcp-Name",
            );
            is_err(
                parse(headers(Some(MODERN), Some(method), Some(encode(&format!("{name}x"), always_encode)))),
                |e| matches!(e, InspectError::HeaderMismatch { header: "Mcp-Name", .. }),
                "another Mcp-Name",
            );
            is_err(
                parse(headers(Some(MODERN), Some(method), Some("=?base64?*?=".into()))),
                |e| matches!(e, InspectError::BadHeader { header: "mcp-name", .. }),
                "a badly encoded Mcp-Name",
            );
            // Encoded (padded or not) or, when it can be, plain: the same name.
            let unpadded = format!("=?base64?{}?=", BASE64_NOPAD.encode(name.as_bytes()));
            let plain = header_safe(name).then(|| name.to_owned());
            for spelling in [Some(sentinel(name)), Some(unpadded), plain].into_iter().flatten() {
                assert!(
                    parse(headers(Some(MODERN), Some(method), Some(spelling))).is_ok(),
                    "Mcp-Name spelled otherwise"
                );
            }
        }
        None => is_err(
            parse(headers(Some(MODERN), Some(method), Some("x".into()))),
            |e| matches!(e, InspectError::HeaderMismatch { header: "Mcp-Name", .. }),
            "Mcp-Name on a method that names nothing",
        ),
    }

    if method == "tools/call" && name == Some("mirrored") {
        check_mirrors(m.arguments.as_ref(), always_encode, usize::from(flags >> 1));
    }
});
