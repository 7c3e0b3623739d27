//! The one rescue: every stage turns its typed error into a [`Rejection`], and the edge
//! turns a `Rejection` into an HTTP status plus a JSON-RPC error body.
//!
//! Imports only `context` and `body`, so every stage can use it.

use std::fmt;

use http::{HeaderName, HeaderValue, Response, StatusCode};
use serde_json::json;

use crate::body::{Body, json_response};
use crate::context::{DecisionId, Era, JsonRpcId};

/// JSON-RPC error codes used in answers the proxy writes itself.
///
/// The proxy's own codes (`-32001`…`-32005`) sit in the range 2026-07-28 calls legacy;
/// on a modern request each is sent as [`modern`] maps it, outside −32768…−32000.
pub mod code {
    /// Invalid JSON (syntax, UTF-8, duplicate keys, nesting).
    pub const PARSE_ERROR: i64 = -32700;
    /// Valid JSON that is not an acceptable JSON-RPC/MCP message.
    pub const INVALID_REQUEST: i64 = -32600;
    /// Refused by policy (or by an error that policy evaluation fails closed on).
    pub const POLICY_DENIED: i64 = -32001;
    /// The upstream tool server could not be reached or answered badly.
    pub const UPSTREAM_UNAVAILABLE: i64 = -32002;
    /// The upstream tool server did not answer in time.
    pub const UPSTREAM_TIMEOUT: i64 = -32003;
    /// Refused before inspection (origin, path, HTTP method).
    pub const REQUEST_REFUSED: i64 = -32004;
    /// Missing or invalid credentials (the `WWW-Authenticate` header says which).
    pub const UNAUTHENTICATED: i64 = -32005;
    /// A method the request's protocol version does not have.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// 2026-07-28 `Invalid params`: a required `_meta` key is missing.
    pub const INVALID_PARAMS: i64 = -32602;
    /// 2026-07-28 `HeaderMismatch`: a standard or mirrored header is missing, malformed or
    /// disagrees with the body.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// 2026-07-28 `MissingRequiredClientCapability`.
    pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
    /// 2026-07-28 `UnsupportedProtocolVersion` (`data: {supported, requested}`).
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

    /// The code a modern (2026-07-28) client is sent: the proxy's legacy-range codes move
    /// to −31001…−31005 (same last digits), standard and spec codes stay.
    pub const fn modern(code: i64) -> i64 {
        match code {
            UNAUTHENTICATED..=POLICY_DENIED => code + 1000,
            other => other,
        }
    }
}

/// The stage that refused a request: a metric label and a log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Listener,
    Identity,
    Credentials,
    Inspect,
    Limits,
    Session,
    Policy,
    Upstream,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Listener => "listener",
            Stage::Identity => "identity",
            Stage::Credentials => "credentials",
            Stage::Inspect => "inspect",
            Stage::Limits => "limits",
            Stage::Session => "session",
            Stage::Policy => "policy",
            Stage::Upstream => "upstream",
        }
    }
}

/// Why a request is not forwarded, with everything the answer needs.
pub struct Rejection {
    pub stage: Stage,
    /// Short, bounded label for metrics (`duplicate_key`, `denied`, `timeout`…).
    pub reason: &'static str,
    pub status: StatusCode,
    pub code: i64,
    /// Human-readable message for the client; never contains secrets.
    pub message: String,
    /// The JSON-RPC id of the refused request, when it could be read.
    pub id: Option<JsonRpcId>,
    pub decision_id: Option<DecisionId>,
    /// Policy reasons; sent to the client only when configured.
    pub reasons: Vec<String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Extra JSON-RPC error bodies (for a refused batch, one per element).
    pub batch: Option<Vec<serde_json::Value>>,
    /// The MCP method label for metrics, set by inspection once known.
    pub method: &'static str,
    /// The request's era, which picks the error codes (set by inspection).
    pub era: Era,
    /// `error.data` members the error defines itself (e.g. `supported` versions).
    pub data: Option<serde_json::Value>,
}

impl Rejection {
    pub fn new(stage: Stage, reason: &'static str, status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        Rejection {
            stage,
            reason,
            status,
            code,
            message: message.into(),
            id: None,
            decision_id: None,
            reasons: Vec::new(),
            headers: Vec::new(),
            batch: None,
            method: "none",
            era: Era::Legacy,
            data: None,
        }
    }

    pub fn with_id(mut self, id: Option<JsonRpcId>) -> Self {
        self.id = id;
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The JSON-RPC error object for one message.
    pub fn error_body(&self, id: Option<&JsonRpcId>, message: &str, expose_reasons: bool) -> serde_json::Value {
        let mut data = match &self.data {
            Some(serde_json::Value::Object(own)) => own.clone(),
            _ => serde_json::Map::new(),
        };
        if let Some(decision_id) = &self.decision_id {
            data.insert("decision_id".into(), json!(decision_id.as_str()));
        }
        if expose_reasons && !self.reasons.is_empty() {
            data.insert("reasons".into(), json!(self.reasons));
        }
        let code = match self.era {
            Era::Modern => code::modern(self.code),
            Era::Legacy => self.code,
        };
        let mut error = json!({ "code": code, "message": message });
        if !data.is_empty() {
            error["data"] = serde_json::Value::Object(data);
        }
        json!({
            "jsonrpc": "2.0",
            "id": id.map_or(serde_json::Value::Null, JsonRpcId::to_json),
            "error": error,
        })
    }

    /// The answer the client receives.
    pub fn into_response(self, expose_reasons: bool) -> Response<Body> {
        let body = match &self.batch {
            Some(elements) => serde_json::Value::Array(elements.clone()),
            None => self.error_body(self.id.as_ref(), &self.message, expose_reasons),
        };
        let mut resp = json_response(self.status, &body);
        for (name, value) in self.headers {
            resp.headers_mut().append(name, value);
        }
        resp
    }
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejection")
            .field("stage", &self.stage)
            .field("reason", &self.reason)
            .field("status", &self.status)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}
