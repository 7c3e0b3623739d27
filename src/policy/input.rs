//! The policy input document (contract version 2, see docs/policy-input.md).

use serde_json::{Value, json};

use std::sync::Arc;

use crate::context::{InputRequest, McpMessage, McpRequest, MessageContext, MessageKind, PeerIdentity, VerifiedToken};

/// Version of the input contract; bumped on any incompatible change (2: the MCP
/// 2026-07-28 fields, kind `input_request`, phase `subscribe`).
pub const INPUT_VERSION: u64 = 2;

/// Whether the message is being decided (`call`), an item of a list result is being
/// filtered (`list`), or a resource a `subscriptions/listen` names is (`subscribe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Call,
    List,
    Subscribe,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Call => "call",
            Phase::List => "list",
            Phase::Subscribe => "subscribe",
        }
    }
}

/// The HTTP facts of the request the message came in.
#[derive(Debug, Clone, Copy)]
pub struct HttpFacts<'a> {
    pub method: &'a str,
    pub path: &'a str,
}

/// Who is calling, as the identity and credentials stages proved it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller<'a> {
    pub identity: Option<&'a PeerIdentity>,
    pub token: Option<&'a VerifiedToken>,
}

impl<'a> Caller<'a> {
    /// What earlier stages left on the request.
    pub fn of(extensions: &'a http::Extensions) -> Self {
        Caller { identity: extensions.get::<PeerIdentity>(), token: extensions.get::<VerifiedToken>() }
    }
}

/// Builds the input document for one message. Fields that no stage filled are `null`,
/// so the document always has the same shape.
pub fn build(
    message: &McpMessage,
    request: &McpRequest,
    caller: Caller<'_>,
    http: HttpFacts<'_>,
    phase: Phase,
) -> Value {
    let target = message.target.as_deref();
    let method = message.method.as_deref();
    let named = |m: &str| if method == Some(m) { target } else { None };
    let context = &message.context;
    json!({
        "version": INPUT_VERSION,
        "kind": message.kind.as_str(),
        "phase": phase.as_str(),
        "identity": identity_json(caller.identity),
        "token": caller.token.map_or(Value::Null, token_json),
        "mcp": {
            "method": method,
            "id": message.id.as_ref().map(|id| id.to_json()),
            "tool": named("tools/call"),
            "prompt": named("prompts/get"),
            "resource": if method.is_some_and(|m| m.starts_with("resources/")) { target } else { None },
            "arguments": message.arguments.clone().unwrap_or(Value::Null),
            "is_error": message.is_error,
            "batch": request.batch,
            "session_id": request.session_id.as_deref(),
            "protocol_version": request.protocol_version.as_deref(),
            "era": request.era.as_str(),
            "client_capabilities": context.client_capabilities.as_deref(),
            "input_responses": context.input_responses,
            "request_state": context.request_state.as_deref(),
            "notifications": context.notifications,
            "input_request": context.input_request.as_deref().map(|r| json!({
                "key": r.key, "method": r.method, "params": r.params,
            })),
        },
        "http": { "method": http.method, "path": http.path },
    })
}

/// The message an item of a list answer (`phase: "list"`) or a subscribed resource
/// (`phase: "subscribe"`) is decided as: a request of the method the item is used with
/// (`tools/call`, `prompts/get`, `resources/read`), naming the item, without arguments,
/// under the original request's id and with its declared capabilities.
pub fn derived_message(original: &McpMessage, call_method: &str, name: &str) -> McpMessage {
    McpMessage {
        kind: MessageKind::Request,
        method: Some(call_method.into()),
        id: original.id.clone(),
        target: Some(name.into()),
        arguments: None,
        is_error: false,
        context: MessageContext {
            client_capabilities: original.context.client_capabilities.clone(),
            ..MessageContext::default()
        },
    }
}

/// The original request, as the document that decides one of its `input_required`
/// answer's input requests (kind `input_request`).
pub fn input_request_message(original: &McpMessage, request: InputRequest) -> McpMessage {
    let mut message = original.clone();
    message.kind = MessageKind::InputRequest;
    message.context.input_request = Some(Arc::new(request));
    message
}

fn token_json(token: &VerifiedToken) -> Value {
    json!({
        "issuer": token.issuer(),
        "subject": token.subject(),
        "client_id": token.client_id(),
        "scopes": token.scopes(),
        "roles": token.roles(),
        "dpop_jkt": token.dpop_jkt(),
        "claims": token.claims(),
    })
}

fn identity_json(identity: Option<&PeerIdentity>) -> Value {
    match identity {
        Some(PeerIdentity::Spiffe(id)) => json!({
            "spiffe_id": &*id.spiffe_id,
            "trust_domain": &*id.trust_domain,
            "path": &*id.path,
            "source": id.source.as_str(),
        }),
        Some(PeerIdentity::Anonymous) | None => Value::Null,
    }
}
