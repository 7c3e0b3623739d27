//! `Mcp-Param-*` headers (SEP-2243): a tool server may read an argument from the header
//! its schema mirrors it to instead of from the body. Policy decides on the body, so the
//! header must say the same, or the server could run what policy never saw.
//!
//! The mirrors are learned from the `tools/list` answers this sidecar forwards (the
//! list filter calls [`ParamMirrors::learn`]); a tool whose schema was never seen here
//! cannot be checked, and what happens then is [`Unverified`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dashmap::DashMap;
use http::{HeaderMap, HeaderName};
use serde_json::Value;

use super::era::decode_header_value;
use super::jsonrpc::InspectError;
use crate::context::JsonRpcId;

const PREFIX: &str = "mcp-param-";

/// The problem of a mirror this proxy cannot check.
pub const UNVERIFIED: &str = "belongs to a tool whose schema this proxy has not seen (list tools first)";

/// Tools remembered at most: a tool server is trusted with its schemas, not with our memory.
const MAX_TOOLS: usize = 10_000;

/// What to do with `Mcp-Param-*` headers on a call to a tool whose schema is unknown here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unverified {
    /// 400, -32020: the client lists tools (the spec's answer to HeaderMismatch) and retries.
    #[default]
    Refuse,
    /// Remove them: a server that needs one answers HeaderMismatch itself.
    Strip,
}

/// One annotated property: the header it is mirrored to and the chain of `properties`
/// keys leading to it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mirror {
    header: HeaderName,
    path: Box<[String]>,
}

/// The mirrors of every tool seen in a forwarded `tools/list` answer.
#[derive(Default)]
pub struct ParamMirrors {
    tools: DashMap<Arc<str>, Arc<[Mirror]>>,
    full_logged: AtomicBool,
}

impl ParamMirrors {
    /// Records one item of a `tools/list` result. A tool whose annotations break the
    /// spec's rules is forgotten: clients must drop it, and its headers cannot be trusted.
    pub fn learn(&self, tool: &Value) {
        let Some(name) = tool.get("name").and_then(Value::as_str) else { return };
        let mut mirrors = Vec::new();
        let valid = tool.get("inputSchema").is_none_or(|schema| walk(schema, &mut Vec::new(), &mut mirrors));
        let unique = {
            let mut names: Vec<&str> = mirrors.iter().map(|m| m.header.as_str()).collect();
            names.sort_unstable();
            names.windows(2).all(|w| w[0] != w[1])
        };
        if !(valid && unique) {
            self.tools.remove(name);
            return;
        }
        if self.tools.len() >= MAX_TOOLS && !self.tools.contains_key(name) {
            if !self.full_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(max = MAX_TOOLS, "too many tools to remember their mirrored headers");
            }
            return;
        }
        self.tools.insert(name.into(), mirrors.into());
    }

    /// Checks the `Mcp-Param-*` headers of a `tools/call` of `tool` against its
    /// `arguments`; `strict` (2026-07-28) also requires every mirror the body calls for.
    /// `Ok` carries the headers to remove before forwarding.
    pub fn check(
        &self,
        tool: &str,
        arguments: Option<&Value>,
        headers: &HeaderMap,
        unverified: Unverified,
        strict: bool,
        id: Option<&JsonRpcId>,
    ) -> Result<Vec<HeaderName>, InspectError> {
        let sent = || headers.keys().filter(|name| name.as_str().starts_with(PREFIX));
        let Some(mirrors) = self.tools.get(tool).map(|m| m.clone()) else {
            let Some(first) = sent().next() else { return Ok(Vec::new()) };
            return match unverified {
                Unverified::Refuse => Err(mismatch(first.as_str(), UNVERIFIED, id)),
                Unverified::Strip => Ok(sent().cloned().collect()),
            };
        };
        for mirror in mirrors.iter() {
            let body = value_at(arguments, &mirror.path);
            let mut values = headers.get_all(&mirror.header).iter();
            let header = values.next();
            if values.next().is_some() {
                return Err(mismatch(mirror.header.as_str(), "is repeated", id));
            }
            let problem = match (body, header) {
                (None, None) => continue,
                (None, Some(_)) => "is sent for an argument the body does not have",
                (Some(_), None) if !strict => continue,
                (Some(_), None) => "is missing for an argument the body has",
                (Some(value), Some(header)) => {
                    let decoded = header.to_str().ok().and_then(decode_header_value);
                    match decoded {
                        None => "is not a valid header value",
                        Some(text) if same_value(&text, value) => continue,
                        Some(_) => "does not match the body",
                    }
                }
            };
            return Err(mismatch(mirror.header.as_str(), problem, id));
        }
        Ok(Vec::new())
    }
}

fn mismatch(header: &str, problem: &'static str, id: Option<&JsonRpcId>) -> InspectError {
    InspectError::ParamMismatch { header: header.to_owned(), problem, id: id.cloned() }
}

/// Collects the annotated properties under `schema`; `false` when an annotation breaks
/// the rules (not a token, not on a primitive, or reached through anything but
/// `properties`).
fn walk(schema: &Value, path: &mut Vec<String>, out: &mut Vec<Mirror>) -> bool {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else { return true };
    for (key, property) in properties {
        path.push(key.clone());
        if let Some(annotation) = property.get("x-mcp-header") {
            let primitive =
                matches!(property.get("type").and_then(Value::as_str), Some("string" | "integer" | "boolean"));
            let header = annotation
                .as_str()
                .filter(|name| !name.is_empty())
                .and_then(|name| HeaderName::from_bytes(format!("{PREFIX}{name}").as_bytes()).ok());
            match header {
                Some(header) if primitive => out.push(Mirror { header, path: path.clone().into() }),
                _ => return false,
            }
        }
        if !walk(property, path, out) {
            return false;
        }
        path.pop();
    }
    true
}

/// The instance value at a chain of `properties` keys; `null` counts as absent.
fn value_at<'a>(arguments: Option<&'a Value>, path: &[String]) -> Option<&'a Value> {
    let mut value = arguments?;
    for key in path {
        value = value.get(key)?;
    }
    (!value.is_null()).then_some(value)
}

/// The spec's conversion: strings as is, booleans lowercase, integers compared as numbers
/// (`42.0` equals `42`). Anything else cannot be mirrored, so never matches.
fn same_value(header: &str, body: &Value) -> bool {
    match body {
        Value::String(s) => header == s,
        Value::Bool(b) => header == if *b { "true" } else { "false" },
        Value::Number(n) if n.is_i64() || n.is_u64() => {
            let Ok(parsed) = header.trim().parse::<f64>() else { return false };
            n.as_f64().is_some_and(|want| parsed == want && parsed.fract() == 0.0)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mirrors() -> ParamMirrors {
        let m = ParamMirrors::default();
        m.learn(&json!({"name": "execute_sql", "inputSchema": {"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "limit": {"type": "integer", "x-mcp-header": "Limit"},
            "dry": {"type": "boolean", "x-mcp-header": "Dry"},
            "target": {"type": "object", "properties": {"db": {"type": "string", "x-mcp-header": "Db"}}},
            "query": {"type": "string"}
        }}}));
        m.learn(&json!({"name": "plain", "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}}}));
        m
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    /// Each row: tool, arguments, headers, whether the call passes.
    #[test]
    fn mirrored_headers_must_say_what_the_body_says() {
        let args =
            json!({"region": "us-west1", "limit": 42, "dry": true, "target": {"db": "main"}, "query": "select 1"});
        let all = [
            ("mcp-param-region", "us-west1"),
            ("mcp-param-limit", "42"),
            ("mcp-param-dry", "true"),
            ("mcp-param-db", "main"),
        ];
        let with = |replace: (&'static str, &'static str)| {
            let mut h: Vec<(&str, &str)> =
                all.iter().copied().filter(|(k, _)| !k.eq_ignore_ascii_case(replace.0)).collect();
            h.push(replace);
            h
        };
        let without = |name: &str| all.iter().copied().filter(|(k, _)| *k != name).collect::<Vec<_>>();
        type Row<'a> = (&'a str, Value, Vec<(&'a str, &'a str)>, bool);
        let cases: Vec<Row> = vec![
            ("execute_sql", args.clone(), all.to_vec(), true),
            ("execute_sql", args.clone(), with(("mcp-param-limit", "42.0")), true),
            ("execute_sql", args.clone(), with(("Mcp-Param-Region", "=?base64?dXMtd2VzdDE=?=")), true),
            ("execute_sql", args.clone(), with(("mcp-param-region", "eu-west1")), false),
            ("execute_sql", args.clone(), with(("mcp-param-limit", "43")), false),
            ("execute_sql", args.clone(), with(("mcp-param-limit", "42.5")), false),
            ("execute_sql", args.clone(), with(("mcp-param-dry", "True")), false),
            ("execute_sql", args.clone(), with(("mcp-param-db", "other")), false),
            ("execute_sql", args.clone(), with(("mcp-param-region", "=?base64?!!?=")), false),
            ("execute_sql", args.clone(), without("mcp-param-region"), false),
            // An argument the body lacks, or sends as null, has no header.
            ("execute_sql", json!({"query": "q"}), vec![], true),
            ("execute_sql", json!({"region": null}), vec![], true),
            ("execute_sql", json!({"query": "q"}), vec![("mcp-param-region", "us-west1")], false),
            // Headers the schema does not name are the server's business: forwarded.
            ("execute_sql", args.clone(), with(("mcp-param-other", "x")), true),
            ("plain", json!({"q": "x"}), vec![("mcp-param-q", "y")], true),
        ];
        let m = mirrors();
        for (tool, args, hdrs, pass) in cases {
            let got = m.check(tool, Some(&args), &headers(&hdrs), Unverified::Refuse, true, None);
            assert_eq!(got.is_ok(), pass, "{tool} {args} {hdrs:?}: {got:?}");
        }
        // A legacy client mirrors nothing; what it does send must still agree.
        let bare = headers(&[]);
        assert!(m.check("execute_sql", Some(&args), &bare, Unverified::Refuse, false, None).is_ok());
        let wrong = headers(&[("mcp-param-region", "eu-west1")]);
        assert!(m.check("execute_sql", Some(&args), &wrong, Unverified::Refuse, false, None).is_err());
        let repeated = headers(&[("mcp-param-region", "us-west1"), ("mcp-param-region", "us-west1")]);
        assert!(
            m.check("execute_sql", Some(&json!({"region": "us-west1"})), &repeated, Unverified::Refuse, true, None)
                .is_err()
        );
    }

    #[test]
    fn an_unknown_tool_is_refused_or_stripped_as_configured() {
        let m = mirrors();
        let h = headers(&[("mcp-param-region", "x"), ("accept", "*/*")]);
        assert!(m.check("never_listed", None, &h, Unverified::Refuse, true, None).is_err());
        let stripped = m.check("never_listed", None, &h, Unverified::Strip, true, None).unwrap();
        assert_eq!(stripped, [HeaderName::from_static("mcp-param-region")]);
        assert!(m.check("never_listed", None, &headers(&[]), Unverified::Refuse, true, None).is_ok());
    }

    #[test]
    fn invalid_annotations_make_the_tool_unverifiable() {
        let m = mirrors();
        for schema in [
            json!({"properties": {"n": {"type": "number", "x-mcp-header": "N"}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "A"}, "b": {"type": "string", "x-mcp-header": "a"}}}),
            json!({"properties": {"s": {"type": "string", "x-mcp-header": "bad name"}}}),
            json!({"properties": {"s": {"type": "string", "x-mcp-header": ""}}}),
        ] {
            m.learn(&json!({"name": "plain", "inputSchema": schema}));
            assert!(
                m.check("plain", None, &headers(&[("mcp-param-q", "y")]), Unverified::Refuse, true, None).is_err(),
                "{schema}"
            );
            m.learn(&json!({"name": "plain", "inputSchema": {"properties": {}}}));
        }
    }
}
