//! From strict JSON to typed MCP messages: the JSON-RPC 2.0 rules MCP keeps.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Map, Value};

use super::era::{self, MODERN, SUPPORTED, decode_header_value};
use crate::context::{Era, JsonRpcId, McpMessage, McpRequest, MessageContext, MessageKind};
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
    #[error("the body did not arrive within {seconds} s")]
    BodyTimeout { seconds: u64 },
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
    #[error("header {header} is required in protocol version {MODERN}")]
    HeaderMissing { header: &'static str, id: Option<JsonRpcId> },
    #[error("header {header} {problem}")]
    ParamMismatch { header: String, problem: &'static str, id: Option<JsonRpcId> },
    #[error("params._meta must carry {key} in protocol version {MODERN}")]
    MissingMeta { key: &'static str, id: Option<JsonRpcId> },
    #[error("unsupported protocol version {requested:?}")]
    UnsupportedVersion {
        requested: String,
        /// The versions both this proxy and the tool server speak; `None`: the proxy's.
        supported: Option<Vec<String>>,
        id: Option<JsonRpcId>,
    },
    #[error("method {method:?} does not exist in protocol version {MODERN}")]
    MethodNotFound { method: String, id: Option<JsonRpcId> },
    #[error("HTTP method not allowed on the MCP endpoint")]
    MethodNotAllowed { allow: &'static str },
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
            InspectError::BodyTimeout { .. } => "body_timeout",
            InspectError::UnsupportedMediaType => "media_type",
            InspectError::Json(StrictJsonError::DuplicateKey(_)) => "duplicate_key",
            InspectError::Json(StrictJsonError::TooDeep(_)) => "too_deep",
            InspectError::Json(StrictJsonError::Syntax(_)) => "invalid_json",
            InspectError::Invalid { .. } => "invalid_jsonrpc",
            InspectError::BatchNotAllowed(_) => "batch",
            InspectError::HeaderMismatch { .. } => "header_mismatch",
            InspectError::HeaderMissing { .. } => "header_missing",
            InspectError::ParamMismatch { .. } => "param_header",
            InspectError::MissingMeta { .. } => "missing_meta",
            InspectError::UnsupportedVersion { .. } => "unsupported_version",
            InspectError::MethodNotFound { .. } => "method_not_found",
            InspectError::MethodNotAllowed { .. } => "http_method",
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
            InspectError::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, code::REQUEST_REFUSED),
            InspectError::BodyTimeout { .. } => (StatusCode::REQUEST_TIMEOUT, code::INVALID_REQUEST),
            // The header rules are 2026-07-28's, and so is their code (HeaderMismatch).
            InspectError::HeaderMismatch { .. }
            | InspectError::HeaderMissing { .. }
            | InspectError::ParamMismatch { .. }
            | InspectError::BadHeader { .. } => (StatusCode::BAD_REQUEST, code::HEADER_MISMATCH),
            InspectError::MissingMeta { .. } => (StatusCode::BAD_REQUEST, code::INVALID_PARAMS),
            InspectError::UnsupportedVersion { .. } => (StatusCode::BAD_REQUEST, code::UNSUPPORTED_PROTOCOL_VERSION),
            InspectError::MethodNotFound { .. } => (StatusCode::NOT_FOUND, code::METHOD_NOT_FOUND),
            _ => (StatusCode::BAD_REQUEST, code::INVALID_REQUEST),
        };
        let id = match &e {
            InspectError::Invalid { id, .. }
            | InspectError::HeaderMismatch { id, .. }
            | InspectError::HeaderMissing { id, .. }
            | InspectError::ParamMismatch { id, .. }
            | InspectError::MissingMeta { id, .. }
            | InspectError::UnsupportedVersion { id, .. }
            | InspectError::MethodNotFound { id, .. } => id.clone(),
            _ => None,
        };
        let mut rejection = Rejection::new(Stage::Inspect, e.reason(), status, code, e.to_string()).with_id(id);
        match &e {
            InspectError::MethodNotAllowed { allow } => {
                rejection = rejection.with_header(http::header::ALLOW, http::HeaderValue::from_static(allow));
            }
            InspectError::UnsupportedVersion { requested, supported, .. } => {
                let supported = supported.clone().unwrap_or_else(|| SUPPORTED.map(String::from).to_vec());
                rejection.data = Some(serde_json::json!({ "supported": supported, "requested": requested }));
            }
            _ => {}
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

/// Parses a POSTed body into an [`McpRequest`], keeping the original bytes, and
/// settles its era: a modern request must carry what 2026-07-28 requires.
pub fn parse_body(body: Bytes, headers: PostHeaders, max_depth: usize) -> Result<McpRequest, InspectError> {
    let value = strict_json::parse(&body, max_depth)?;
    // A version this proxy does not know is newer than it: judged by the newest rules it
    // knows, which end in UnsupportedProtocolVersion once the body has been read.
    let header_era = headers.protocol_version.as_deref().map(|v| era::era_of(v).unwrap_or(Era::Modern));
    let (parsed, batch) = match value {
        Value::Array(elements) => {
            // Batches were removed in 2025-06-18; a session that never said its version
            // is on 2025-03-26 (MCP: "assume 2025-03-26").
            if let Some(version) = headers.protocol_version.as_deref().filter(|v| *v >= NO_BATCH_SINCE) {
                return Err(InspectError::BatchNotAllowed(version.to_owned()));
            }
            if elements.is_empty() {
                return Err(InspectError::invalid("empty batch", None));
            }
            let parsed = elements.into_iter().map(parse_message).collect::<Result<Vec<_>, _>>()?;
            if parsed.iter().any(|p| p.message.method.as_deref() == Some("initialize")) {
                return Err(InspectError::invalid("initialize must not be part of a batch", None));
            }
            if header_era == Some(Era::Modern) || parsed.iter().any(|p| p.meta_version.is_some()) {
                return Err(InspectError::BatchNotAllowed(MODERN.to_owned()));
            }
            (parsed, true)
        }
        single => (vec![parse_message(single)?], false),
    };
    // A `_meta` protocol version in the body makes a request modern whatever the header
    // says: the two must then agree, and a server trusting either must see one value.
    let era = if parsed[0].meta_version.is_some() { Era::Modern } else { header_era.unwrap_or(Era::Legacy) };
    if era == Era::Legacy
        && let Some(p) = parsed.iter().find(|p| {
            matches!(p.message.method.as_deref(), Some("resources/subscribe" | "resources/unsubscribe"))
                && p.message.target.is_none()
        })
    {
        return Err(InspectError::invalid("resource methods need a string uri", p.message.id.clone()));
    }
    let first = &parsed[0];
    let protocol_version = match era {
        Era::Modern => Some(check_modern(first, &headers)?),
        // The version an initialize proposes is the one the session will speak.
        Era::Legacy => headers.protocol_version.clone().or_else(|| {
            (first.message.method.as_deref() == Some("initialize"))
                .then(|| first.message.arguments.as_ref()?.get("protocolVersion")?.as_str().map(Arc::from))
                .flatten()
        }),
    };
    if !batch {
        check_method_headers(&first.message, &headers)?;
    }
    let session_id = if era == Era::Modern { None } else { headers.session_id };
    let messages = parsed.into_iter().map(|p| p.message).collect();
    Ok(McpRequest { messages, batch, session_id, protocol_version, era, unverified_mirror: None, body })
}

/// The rules 2026-07-28 gives a request (streamable-http "Server Validation"), in the
/// order a server checks them; returns the version spoken.
fn check_modern(parsed: &Parsed, headers: &PostHeaders) -> Result<Arc<str>, InspectError> {
    let message = &parsed.message;
    let id = || message.id.clone();
    // 1. A client message in 2026-07-28 is a request or a notification: answers to
    //    server requests travel inside the retried request (MRTR), never on their own.
    if message.kind == MessageKind::Response {
        return Err(InspectError::invalid("clients do not send JSON-RPC responses in 2026-07-28", None));
    }
    // 2. The header names a version, the body carries the keys every request must.
    let Some(header_version) = headers.protocol_version.as_deref() else {
        return Err(InspectError::HeaderMissing { header: "MCP-Protocol-Version", id: id() });
    };
    let Some(Value::String(meta_version)) = &parsed.meta_version else {
        return Err(InspectError::MissingMeta { key: "io.modelcontextprotocol/protocolVersion", id: id() });
    };
    // The capabilities every later answer (MRTR) is checked against.
    if !message.context.client_capabilities.as_deref().is_some_and(Value::is_object) {
        return Err(InspectError::MissingMeta { key: "io.modelcontextprotocol/clientCapabilities", id: id() });
    }
    // 3. Header and body name the same version, and it is one this proxy can inspect.
    if header_version != meta_version {
        return Err(InspectError::HeaderMismatch { header: "MCP-Protocol-Version", id: id() });
    }
    if era::era_of(meta_version) != Some(Era::Modern) {
        return Err(InspectError::UnsupportedVersion { requested: meta_version.clone(), supported: None, id: id() });
    }
    // 4. Methods 2026-07-28 removed do not exist on its wire.
    if let Some(method) = message.method.as_deref().filter(|m| era::REMOVED_METHODS.contains(m)) {
        return Err(InspectError::MethodNotFound { method: method.to_owned(), id: id() });
    }
    // 5. The routing headers intermediaries rely on are present on requests (their
    //    values are compared with the body for both eras in `check_method_headers`;
    //    the spec sets no header rule for notifications).
    if message.kind == MessageKind::Request && headers.mcp_method.is_none() {
        return Err(InspectError::HeaderMissing { header: "Mcp-Method", id: id() });
    }
    let named = matches!(message.method.as_deref(), Some("tools/call" | "resources/read" | "prompts/get"));
    if named && headers.mcp_name.is_none() {
        return Err(InspectError::HeaderMissing { header: "Mcp-Name", id: id() });
    }
    Ok(Arc::from(meta_version.as_str()))
}

fn check_method_headers(message: &McpMessage, headers: &PostHeaders) -> Result<(), InspectError> {
    let mismatch = |header| InspectError::HeaderMismatch { header, id: message.id.clone() };
    if let Some(method) = &headers.mcp_method
        && message.method.as_deref() != Some(method.as_str())
    {
        return Err(mismatch("Mcp-Method"));
    }
    if let Some(name) = &headers.mcp_name {
        // Names outside the header-safe set come base64-encoded (`=?base64?…?=`).
        let Some(name) = decode_header_value(name) else {
            return Err(InspectError::BadHeader { header: "mcp-name", problem: "not valid =?base64?…?= encoding" });
        };
        if message.target.as_deref() != Some(&*name) {
            return Err(mismatch("Mcp-Name"));
        }
    }
    Ok(())
}

/// A message and what its `_meta` said about the protocol version.
struct Parsed {
    message: McpMessage,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`, as sent.
    meta_version: Option<Value>,
}

const MEMBERS: [&str; 6] = ["jsonrpc", "id", "method", "params", "result", "error"];

/// One JSON-RPC message, checked member by member.
fn parse_message(value: Value) -> Result<Parsed, InspectError> {
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
            let (context, meta_version) = context_of(&method, &params).map_err(invalid)?;
            let (target, arguments) = target_of(&method, params).map_err(invalid)?;
            let kind = if id.is_some() { MessageKind::Request } else { MessageKind::Notification };
            let message =
                McpMessage { kind, method: Some(method.into()), id, target, arguments, is_error: false, context };
            Ok(Parsed { message, meta_version })
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
            let message = McpMessage { is_error, id, ..McpMessage::bare(MessageKind::Response) };
            Ok(Parsed { message, meta_version: None })
        }
    }
}

/// What `params` says beyond the target (contract v2), and the `_meta` version.
fn context_of(method: &str, params: &Map<String, Value>) -> Result<(MessageContext, Option<Value>), &'static str> {
    let mut context = MessageContext::default();
    let meta = match params.get("_meta") {
        None => None,
        Some(Value::Object(meta)) => Some(meta),
        Some(_) => return Err("params._meta must be an object"),
    };
    let meta_version = meta.and_then(|m| m.get("io.modelcontextprotocol/protocolVersion")).cloned();
    let declared = meta.and_then(|m| m.get("io.modelcontextprotocol/clientCapabilities"));
    let proposed = (method == "initialize").then(|| params.get("capabilities")).flatten();
    context.client_capabilities = declared.or(proposed).cloned().map(Arc::new);
    context.input_responses = match params.get("inputResponses") {
        None => None,
        Some(v @ Value::Object(_)) => Some(v.clone()),
        Some(_) => return Err("inputResponses must be an object"),
    };
    context.request_state = match params.get("requestState") {
        None => None,
        Some(Value::String(s)) => Some(Arc::from(s.as_str())),
        Some(_) => return Err("requestState must be a string"),
    };
    if method == "subscriptions/listen" {
        context.notifications = match params.get("notifications") {
            Some(v @ Value::Object(n)) => {
                let uris = n.get("resourceSubscriptions");
                let well_formed = uris.is_none_or(|u| u.as_array().is_some_and(|a| a.iter().all(Value::is_string)));
                if !well_formed {
                    return Err("resourceSubscriptions must be an array of strings");
                }
                Some(v.clone())
            }
            _ => return Err("subscriptions/listen needs a notifications object"),
        };
    }
    Ok((context, meta_version))
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
        "resources/read" => Ok((Some(required(&mut params, "uri", "resource methods need a string uri")?), None)),
        // Gone in 2026-07-28, where they are refused as unknown whatever their params;
        // a legacy one without a uri is refused in `parse_body`.
        "resources/subscribe" | "resources/unsubscribe" => match params.remove("uri") {
            None => Ok((None, None)),
            Some(Value::String(uri)) => Ok((Some(uri.into()), None)),
            Some(_) => Err("resource methods need a string uri"),
        },
        // The client's proposal (protocolVersion, clientInfo, capabilities) is policy input.
        "initialize" => Ok((None, Some(Value::Object(params)))),
        _ => Ok((None, None)),
    }
}
