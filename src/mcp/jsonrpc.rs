//! From strict JSON to typed MCP messages: the JSON-RPC 2.0 rules MCP keeps.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Map, Value};

use crate::context::{JsonRpcId, McpMessage, McpRequest, MessageKind};
use crate::error::{Rejection, Stage, code};
use crate::strict_json::{self, StrictJsonError};

/// The first protocol version that forbids JSON-RPC batches.
const NO_BATCH_SINCE: &str = "2025-06-18";

/// Why a message is refused before policy sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    #[error("body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("reading the body failed")]
    BodyRead,
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    #[error(transparent)]
    Json(#[from] StrictJsonError),
    #[error("invalid JSON-RPC message: {reason}")]
    Invalid { reason: &'static str, id: Option<JsonRpcId> },
    #[error("JSON-RPC batches are not allowed in protocol version {0}")]
    BatchNotAllowed(String),
    #[error("header {header} does not match the body")]
    HeaderMismatch { header: &'static str, id: Option<JsonRpcId> },
    #[error("HTTP method not allowed on the MCP endpoint")]
    MethodNotAllowed,
    #[error("header {header} is {problem}")]
    BadHeader { header: &'static str, problem: &'static str },
}

impl InspectError {
    fn invalid(reason: &'static str, id: Option<JsonRpcId>) -> Self {
        InspectError::Invalid { reason, id }
    }

    /// A bounded label for the rejection metric.
    pub fn reason(&self) -> &'static str {
        match self {
            InspectError::TooLarge { .. } => "too_large",
            InspectError::BodyRead => "body_read",
            InspectError::UnsupportedMediaType => "media_type",
            InspectError::Json(StrictJsonError::DuplicateKey(_)) => "duplicate_key",
            InspectError::Json(StrictJsonError::TooDeep(_)) => "too_deep",
            InspectError::Json(StrictJsonError::Syntax(_)) => "invalid_json",
            InspectError::Invalid { .. } => "invalid_jsonrpc",
            InspectError::BatchNotAllowed(_) => "batch",
            InspectError::HeaderMismatch { .. } => "header_mismatch",
            InspectError::MethodNotAllowed => "http_method",
            InspectError::BadHeader { .. } => "bad_header",
        }
    }
}

impl From<InspectError> for Rejection {
    fn from(e: InspectError) -> Self {
        let (status, code) = match &e {
            InspectError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, code::INVALID_REQUEST),
            InspectError::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, code::PARSE_ERROR),
            InspectError::Json(_) | InspectError::BodyRead => (StatusCode::BAD_REQUEST, code::PARSE_ERROR),
            InspectError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, code::REQUEST_REFUSED),
            _ => (StatusCode::BAD_REQUEST, code::INVALID_REQUEST),
        };
        let id = match &e {
            InspectError::Invalid { id, .. } | InspectError::HeaderMismatch { id, .. } => id.clone(),
            _ => None,
        };
        let mut rejection = Rejection::new(Stage::Inspect, e.reason(), status, code, e.to_string()).with_id(id);
        if e == InspectError::MethodNotAllowed {
            rejection = rejection.with_header(http::header::ALLOW, http::HeaderValue::from_static("GET, POST, DELETE"));
        }
        rejection
    }
}

/// Headers of the POST that the body is checked against.
#[derive(Debug, Default, Clone)]
pub struct PostHeaders {
    pub session_id: Option<Arc<str>>,
    pub protocol_version: Option<Arc<str>>,
    /// Draft-2026 `Mcp-Method` / `Mcp-Name`, which must agree with the body when sent.
    pub mcp_method: Option<String>,
    pub mcp_name: Option<String>,
}

/// Parses a POSTed body into an [`McpRequest`], keeping the original bytes.
pub fn parse_body(body: Bytes, headers: PostHeaders, max_depth: usize) -> Result<McpRequest, InspectError> {
    let value = strict_json::parse(&body, max_depth)?;
    let (messages, batch) = match value {
        Value::Array(elements) => {
            // Batches were removed in 2025-06-18; a session that never said its version
            // is on 2025-03-26 (MCP: "assume 2025-03-26").
            if let Some(version) = headers.protocol_version.as_deref().filter(|v| *v >= NO_BATCH_SINCE) {
                return Err(InspectError::BatchNotAllowed(version.to_owned()));
            }
            if elements.is_empty() {
                return Err(InspectError::invalid("empty batch", None));
            }
            let messages = elements.into_iter().map(parse_message).collect::<Result<Vec<_>, _>>()?;
            if messages.iter().any(|m| m.method.as_deref() == Some("initialize")) {
                return Err(InspectError::invalid("initialize must not be part of a batch", None));
            }
            (messages, true)
        }
        single => (vec![parse_message(single)?], false),
    };
    if !batch {
        check_method_headers(&messages[0], &headers)?;
    }
    // The version an initialize proposes is the one the session will speak.
    let protocol_version = headers.protocol_version.or_else(|| {
        let first = &messages[0];
        (first.method.as_deref() == Some("initialize"))
            .then(|| first.arguments.as_ref()?.get("protocolVersion")?.as_str().map(Arc::from))
            .flatten()
    });
    Ok(McpRequest { messages, batch, session_id: headers.session_id, protocol_version, body })
}

fn check_method_headers(message: &McpMessage, headers: &PostHeaders) -> Result<(), InspectError> {
    let mismatch = |header| InspectError::HeaderMismatch { header, id: message.id.clone() };
    if let Some(method) = &headers.mcp_method
        && message.method.as_deref() != Some(method.as_str())
    {
        return Err(mismatch("Mcp-Method"));
    }
    if let Some(name) = &headers.mcp_name
        && message.target.as_deref() != Some(name.as_str())
    {
        return Err(mismatch("Mcp-Name"));
    }
    Ok(())
}

const MEMBERS: [&str; 6] = ["jsonrpc", "id", "method", "params", "result", "error"];

/// One JSON-RPC message, checked member by member.
fn parse_message(value: Value) -> Result<McpMessage, InspectError> {
    let Value::Object(mut obj) = value else {
        return Err(InspectError::invalid("message must be a JSON object", None));
    };
    // Read the id first so that every later refusal can answer it.
    let id = match obj.remove("id") {
        None => None,
        Some(Value::String(s)) => Some(JsonRpcId::String(s.into())),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(n) => Some(JsonRpcId::Number(n)),
            None => {
                return Err(InspectError::invalid("id must be a string or an integer", None));
            }
        },
        Some(_) => {
            return Err(InspectError::invalid("id must be a string or an integer", None));
        }
    };
    // Only a request is answered with its id: a response's id is the server's numbering.
    let answer_id = if obj.contains_key("method") { id.clone() } else { None };
    let invalid = |reason| InspectError::invalid(reason, answer_id.clone());
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid("jsonrpc must be \"2.0\""));
    }
    if obj.keys().any(|k| !MEMBERS.contains(&k.as_str())) {
        return Err(invalid("unknown top-level member"));
    }
    match obj.remove("method") {
        Some(Value::String(method)) => {
            if obj.contains_key("result") || obj.contains_key("error") {
                return Err(invalid("a request must not carry result or error"));
            }
            let params = match obj.remove("params") {
                None => Map::new(),
                Some(Value::Object(params)) => params,
                Some(_) => return Err(invalid("params must be an object")),
            };
            let (target, arguments) = target_of(&method, params).map_err(invalid)?;
            let kind = if id.is_some() { MessageKind::Request } else { MessageKind::Notification };
            Ok(McpMessage { kind, method: Some(method.into()), id, target, arguments, is_error: false })
        }
        Some(_) => Err(invalid("method must be a string")),
        None => {
            if id.is_none() {
                return Err(invalid("a response must carry an id"));
            }
            let is_error = match (obj.remove("result"), obj.remove("error")) {
                (Some(_), None) => false,
                (None, Some(Value::Object(error))) => {
                    if !error.get("code").is_some_and(Value::is_i64)
                        || !error.get("message").is_some_and(Value::is_string)
                    {
                        return Err(invalid("error must have an integer code and a string message"));
                    }
                    true
                }
                (None, Some(_)) => return Err(invalid("error must be an object")),
                _ => {
                    return Err(invalid("a response carries exactly one of result and error"));
                }
            };
            if obj.contains_key("params") {
                return Err(invalid("a response must not carry params"));
            }
            Ok(McpMessage { kind: MessageKind::Response, method: None, id, target: None, arguments: None, is_error })
        }
    }
}

type Target = (Option<Arc<str>>, Option<Value>);

/// The object a method acts on: what policy decides about beyond the method itself.
fn target_of(method: &str, mut params: Map<String, Value>) -> Result<Target, &'static str> {
    let required = |params: &mut Map<String, Value>, key: &str, reason| match params.remove(key) {
        Some(Value::String(s)) => Ok(Arc::<str>::from(s)),
        _ => Err(reason),
    };
    let arguments = |params: &mut Map<String, Value>| match params.remove("arguments") {
        None => Ok(None),
        Some(args @ Value::Object(_)) => Ok(Some(args)),
        Some(_) => Err("arguments must be an object"),
    };
    match method {
        "tools/call" => {
            let name = required(&mut params, "name", "tools/call needs a string name")?;
            Ok((Some(name), arguments(&mut params)?))
        }
        "prompts/get" => {
            let name = required(&mut params, "name", "prompts/get needs a string name")?;
            Ok((Some(name), arguments(&mut params)?))
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            Ok((Some(required(&mut params, "uri", "resource methods need a string uri")?), None))
        }
        // The client's proposal (protocolVersion, clientInfo, capabilities) is policy input.
        "initialize" => Ok((None, Some(Value::Object(params)))),
        _ => Ok((None, None)),
    }
}
