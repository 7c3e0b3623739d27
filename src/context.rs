//! Types the pipeline stages hand to each other as request extensions.
//!
//! This module imports no stage: every stage may depend on it, it depends on none.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

/// Where the connection came from; inserted by the listener.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    /// The client's verified X.509-SVID, on an mTLS connection.
    pub peer_svid: Option<Arc<PeerSvid>>,
}

/// A client certificate that passed the SPIFFE verifier during the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSvid {
    pub identity: SpiffeIdentity,
    /// RFC 8705 `x5t#S256` of the leaf, for certificate-bound tokens.
    pub x5t_s256: Arc<str>,
}

/// The caller's workload identity, as proven to the identity stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerIdentity {
    /// Nothing proved who is calling.
    Anonymous,
    /// A SPIFFE ID together with how it was established.
    Spiffe(SpiffeIdentity),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffeIdentity {
    pub spiffe_id: Arc<str>,
    pub trust_domain: Arc<str>,
    pub path: Arc<str>,
    pub source: IdentitySource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentitySource {
    /// The sidecar's own workload, for callers on the pod's loopback interface.
    Local,
    Mtls,
    JwtSvid,
    Token,
}

impl IdentitySource {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentitySource::Local => "local",
            IdentitySource::Mtls => "mtls",
            IdentitySource::JwtSvid => "jwt-svid",
            IdentitySource::Token => "token",
        }
    }
}

/// A JSON-RPC id: MCP allows strings and integers only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonRpcId {
    Number(i64),
    String(Arc<str>),
}

impl JsonRpcId {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            JsonRpcId::Number(n) => serde_json::Value::from(*n),
            JsonRpcId::String(s) => serde_json::Value::from(&**s),
        }
    }
}

/// What kind of MCP traffic a request is (the policy input's `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A JSON-RPC request (has `method` and `id`).
    Request,
    /// A JSON-RPC notification (has `method`, no `id`).
    Notification,
    /// The client's answer to a server→client request (sampling, elicitation, roots).
    Response,
    /// A GET that opens the server→client SSE stream.
    Stream,
    /// A DELETE that ends the session.
    SessionEnd,
    /// An entry of a modern `input_required` answer, decided before the client sees it.
    InputRequest,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Request => "request",
            MessageKind::Notification => "notification",
            MessageKind::Response => "response",
            MessageKind::Stream => "stream",
            MessageKind::SessionEnd => "session_end",
            MessageKind::InputRequest => "input_request",
        }
    }
}

/// The protocol family a message belongs to, decided per request (never per connection):
/// the session-based revisions (2024-11-05 … 2025-11-25) or the stateless 2026-07-28 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Era {
    /// `initialize`, `Mcp-Session-Id`, server→client requests on SSE.
    #[default]
    Legacy,
    /// Per-request `_meta`, mirrored `Mcp-*` headers, no sessions, MRTR.
    Modern,
}

impl Era {
    pub fn as_str(self) -> &'static str {
        match self {
            Era::Legacy => "legacy",
            Era::Modern => "modern",
        }
    }
}

/// What a message carries beyond method and target that policy may read (contract v2).
/// Empty for most messages, so it is kept apart from the fields every message has.
#[derive(Debug, Clone, Default)]
pub struct MessageContext {
    /// Modern: `_meta["io.modelcontextprotocol/clientCapabilities"]`; legacy `initialize`:
    /// `params.capabilities`.
    pub client_capabilities: Option<Arc<serde_json::Value>>,
    /// `params.inputResponses` of an MRTR retry.
    pub input_responses: Option<serde_json::Value>,
    /// `params.requestState` of an MRTR retry (opaque, attacker-controlled).
    pub request_state: Option<Arc<str>>,
    /// `params.notifications` of `subscriptions/listen`.
    pub notifications: Option<serde_json::Value>,
    /// For kind `input_request`: the server's key, method and params.
    pub input_request: Option<Arc<InputRequest>>,
}

/// One entry of an `input_required` result's `inputRequests`, decided on the way back.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRequest {
    pub key: String,
    pub method: String,
    pub params: serde_json::Value,
}

/// One inspected JSON-RPC message (or a GET/DELETE), as the policy sees it.
#[derive(Debug, Clone)]
pub struct McpMessage {
    pub kind: MessageKind,
    pub method: Option<Arc<str>>,
    pub id: Option<JsonRpcId>,
    /// Tool name (`tools/call`), prompt name (`prompts/get`) or resource URI (`resources/read`).
    pub target: Option<Arc<str>>,
    /// `params.arguments` of `tools/call` / `prompts/get`.
    pub arguments: Option<serde_json::Value>,
    /// For responses: whether the client answered with an `error`.
    pub is_error: bool,
    pub context: MessageContext,
}

impl McpMessage {
    /// A message with nothing but its kind (GET, DELETE).
    pub fn bare(kind: MessageKind) -> Self {
        McpMessage {
            kind,
            method: None,
            id: None,
            target: None,
            arguments: None,
            is_error: false,
            context: MessageContext::default(),
        }
    }

    /// `params.notifications.resourceSubscriptions` of `subscriptions/listen`.
    pub fn resource_subscriptions(&self) -> impl Iterator<Item = &str> {
        self.context
            .notifications
            .as_ref()
            .and_then(|n| n.get("resourceSubscriptions"))
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
    }
}

/// The typed result of inspection, travelling as a request extension.
#[derive(Debug, Clone)]
pub struct McpRequest {
    pub messages: Vec<McpMessage>,
    /// True when the body was a JSON-RPC batch (2025-03-26 only).
    pub batch: bool,
    /// Legacy only: a modern request's `Mcp-Session-Id` is removed, never bound.
    pub session_id: Option<Arc<str>>,
    pub protocol_version: Option<Arc<str>>,
    pub era: Era,
    /// An `Mcp-Param-*` header of a tool whose schema was never listed here (refused by
    /// `mcp.unverified_param_headers: refuse` once policy allowed the call, so that a
    /// call policy denies is answered as denied).
    pub unverified_mirror: Option<Arc<str>>,
    /// The original bytes, forwarded unchanged once authorised.
    pub body: Bytes,
}

/// A per-request id that ties the log line, the metric and the client's error together.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DecisionId(Arc<str>);

impl DecisionId {
    pub fn new() -> Self {
        DecisionId(uuid::Uuid::new_v4().to_string().into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for DecisionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for DecisionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DecisionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DecisionId({})", self.0)
    }
}

/// A policy answer. Never a bare bool: a denial always says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    pub reasons: Vec<String>,
}

impl Decision {
    pub fn allow() -> Self {
        Decision { allow: true, reasons: Vec::new() }
    }
    pub fn deny(reason: impl Into<String>) -> Self {
        Decision { allow: false, reasons: vec![reason.into()] }
    }
}

/// The bounded MCP method label of a request, for metrics; set by inspection.
#[derive(Debug, Clone, Copy)]
pub struct MethodLabel(pub &'static str);

/// An access token whose signature, issuer, audience, lifetime and type were verified.
/// Built only by the credentials stage (`auth::token`); read by policy and logging.
/// Cheap to clone (every field shared): the token cache hands out a clone per message.
#[derive(Clone)]
pub struct VerifiedToken {
    pub(crate) issuer: Arc<str>,
    pub(crate) subject: Option<Arc<str>>,
    /// `azp` (Keycloak) or `client_id` (RFC 9068).
    pub(crate) client_id: Option<Arc<str>>,
    pub(crate) scopes: Arc<[String]>,
    /// Keycloak `realm_access.roles` and every `resource_access.*.roles`.
    pub(crate) roles: Arc<[String]>,
    /// `cnf.jkt`: the thumbprint of the key the token is bound to (DPoP).
    pub(crate) dpop_jkt: Option<Arc<str>>,
    pub(crate) expires_at: u64,
    pub(crate) claims: Arc<serde_json::Value>,
    /// The token's part of the policy input, built on its first message and shared by
    /// every clone the token cache hands out (`policy::input`).
    pub(crate) input: Arc<std::sync::OnceLock<Result<crate::policy::input::TokenInput, String>>>,
}

impl VerifiedToken {
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }
    pub fn roles(&self) -> &[String] {
        &self.roles
    }
    pub fn dpop_jkt(&self) -> Option<&str> {
        self.dpop_jkt.as_deref()
    }
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }
    pub fn claims(&self) -> &serde_json::Value {
        &self.claims
    }
}

/// Never prints the claims: they may carry personal data.
impl fmt::Debug for VerifiedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedToken")
            .field("issuer", &self.issuer)
            .field("subject", &self.subject)
            .field("client_id", &self.client_id)
            .field("dpop_bound", &self.dpop_jkt.is_some())
            .finish_non_exhaustive()
    }
}
