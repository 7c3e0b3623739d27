//! The policy input document (contract version 2, see docs/policy-input.md).

use serde_json::Value;

use std::sync::{Arc, OnceLock};

use crate::context::{
    InputRequest, JsonRpcId, McpMessage, McpRequest, MessageContext, MessageKind, PeerIdentity, VerifiedToken,
};

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

/// Builds the input document for one message, as JSON (the decision log, `mcp-pep
/// policy eval`, the golden test of docs/policy-input.md). Fields that no stage filled
/// are `null`, so the document always has the same shape.
pub fn build(
    message: &McpMessage,
    request: &McpRequest,
    caller: Caller<'_>,
    http: HttpFacts<'_>,
    phase: Phase,
) -> Value {
    match document::<Value>(message, request, caller, http, phase) {
        Ok(doc) => doc,
        Err(never) => match never {},
    }
}

/// The same document as the `regorus::Value` the policy evaluates, built directly (no JSON
/// document converted afterwards). `Err` only when a JSON part has no regorus value,
/// which serde_json's finite numbers never give; the caller denies.
pub fn build_value(
    message: &McpMessage,
    request: &McpRequest,
    caller: Caller<'_>,
    http: HttpFacts<'_>,
    phase: Phase,
) -> Result<InputValue, InputError> {
    let value = document::<regorus::Value>(message, request, caller, http, phase)?;
    let context = &message.context;
    let json_parts = [
        message.arguments.as_ref(),
        context.client_capabilities.as_deref(),
        context.input_responses.as_ref(),
        context.notifications.as_ref(),
        context.input_request.as_deref().map(|r| &r.params),
    ];
    let keyable = !json_parts.into_iter().flatten().any(has_integral_float)
        && caller.token.is_none_or(|t| TokenInput::of(t).is_ok_and(|i| i.keyable));
    Ok(InputValue { value, keyable })
}

/// The input document as the policy evaluates it.
#[derive(Debug, Clone)]
pub struct InputValue {
    pub value: regorus::Value,
    /// No JSON part holds a float with an integral value (`1.0`, `2e3`): regorus keeps
    /// such a float apart from the integer but prints both alike, and the decision
    /// cache's key compares numbers as printed, so it leaves these inputs alone.
    pub keyable: bool,
}

impl InputValue {
    /// A document given as JSON (tests).
    pub fn from_json(doc: &Value) -> Self {
        use serde::Deserialize;
        let value = regorus::Value::deserialize(doc).unwrap_or(regorus::Value::Undefined);
        InputValue { value, keyable: !has_integral_float(doc) }
    }
}

fn has_integral_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_f64().is_some_and(|f| n.is_f64() && f.fract() == 0.0),
        Value::Array(items) => items.iter().any(has_integral_float),
        Value::Object(fields) => fields.values().any(has_integral_float),
        _ => false,
    }
}

#[derive(Debug, thiserror::Error)]
#[error("input document: {0}")]
pub struct InputError(String);

/// What a document is built of; one builder makes both forms, so the JSON the decision
/// log shows and the value the policy evaluates cannot drift apart.
trait Document: Sized {
    type Error;
    fn null() -> Self;
    fn bool(b: bool) -> Self;
    fn int(n: i64) -> Self;
    fn string(s: &str) -> Self;
    fn strings(items: &[String]) -> Self;
    fn json(v: &Value) -> Result<Self, Self::Error>;
    /// An object of fixed field names; `shape` is the call site's own static.
    fn object<const N: usize>(shape: &'static Shape<N>, fields: [(&'static str, Self); N]) -> Self;
    /// A string the message already shares.
    fn shared(s: &Arc<str>) -> Self;

    fn opt_shared(s: Option<&Arc<str>>) -> Self {
        s.map_or_else(Self::null, Self::shared)
    }

    fn opt_string(s: Option<&str>) -> Self {
        s.map_or_else(Self::null, Self::string)
    }

    fn opt_json(v: Option<&Value>) -> Result<Self, Self::Error> {
        v.map_or_else(|| Ok(Self::null()), Self::json)
    }

    fn token(token: &VerifiedToken) -> Result<Self, Self::Error> {
        token_doc(token)
    }
}

impl Document for Value {
    type Error = std::convert::Infallible;
    fn null() -> Self {
        Value::Null
    }
    fn bool(b: bool) -> Self {
        Value::Bool(b)
    }
    fn int(n: i64) -> Self {
        Value::from(n)
    }
    fn string(s: &str) -> Self {
        Value::from(s)
    }
    fn strings(items: &[String]) -> Self {
        Value::from(items)
    }
    fn json(v: &Value) -> Result<Self, Self::Error> {
        Ok(v.clone())
    }
    fn object<const N: usize>(_: &'static Shape<N>, fields: [(&'static str, Self); N]) -> Self {
        Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }
    fn shared(s: &Arc<str>) -> Self {
        Value::from(&**s)
    }
}

/// Exactly the value `regorus::Value::from(json)` gives for the JSON form: numbers as
/// serde_json's deserializer reports them (non-negative integers unsigned), strings and
/// arrays as regorus reads them, objects sorted by key.
impl Document for regorus::Value {
    type Error = InputError;
    fn null() -> Self {
        regorus::Value::Null
    }
    fn bool(b: bool) -> Self {
        regorus::Value::Bool(b)
    }
    fn int(n: i64) -> Self {
        u64::try_from(n).map_or_else(|_| regorus::Value::from(n), regorus::Value::from)
    }
    fn string(s: &str) -> Self {
        regorus::Value::from(s)
    }
    fn strings(items: &[String]) -> Self {
        regorus::Value::from(items.iter().map(|s| regorus::Value::from(s.as_str())).collect::<Vec<_>>())
    }
    fn json(v: &Value) -> Result<Self, Self::Error> {
        use serde::Deserialize;
        regorus::Value::deserialize(v).map_err(|e| InputError(e.to_string()))
    }
    fn object<const N: usize>(shape: &'static Shape<N>, fields: [(&'static str, Self); N]) -> Self {
        let (template, keys) = shape.0.get_or_init(|| {
            let keys = fields.each_ref().map(|(k, _)| regorus::Value::from(*k));
            let nulls = keys.iter().map(|k| (k.clone(), regorus::Value::Null));
            (regorus::Value::from(nulls.collect::<std::collections::BTreeMap<_, _>>()), keys)
        });
        // A copy of the frozen template with each value put in place: one allocation
        // for the fields, none for the names.
        let mut object = match template {
            regorus::Value::Object(o) => regorus::value::Object::clone(o),
            _ => regorus::value::Object::new(),
        };
        for (key, (_, value)) in keys.iter().zip(fields) {
            object.insert(key.clone(), value);
        }
        regorus::Value::from(object)
    }
    fn shared(s: &Arc<str>) -> Self {
        regorus::Value::String(s.clone())
    }
    /// Built once per token: its claims are the same on every message it carries.
    fn token(token: &VerifiedToken) -> Result<Self, Self::Error> {
        TokenInput::of(token).map(|i| i.value.clone()).map_err(|e| InputError(e.clone()))
    }
}

/// A token's part of the input value, and whether its claims are keyable (see
/// [`InputValue::keyable`]); memoised in the token (`VerifiedToken::input`).
#[derive(Debug)]
pub struct TokenInput {
    value: regorus::Value,
    keyable: bool,
}

impl TokenInput {
    fn of(token: &VerifiedToken) -> Result<&TokenInput, &String> {
        let built = token.input.get_or_init(|| match token_doc::<regorus::Value>(token) {
            Ok(value) => Ok(TokenInput { value, keyable: !has_integral_float(token.claims()) }),
            Err(e) => Err(e.0),
        });
        built.as_ref()
    }
}

/// The names of one object of the document, as regorus values, and the object with every
/// field `null` (filled on first use).
pub struct Shape<const N: usize>(OnceLock<(regorus::Value, [regorus::Value; N])>);

impl<const N: usize> Shape<N> {
    const fn new() -> Self {
        Shape(OnceLock::new())
    }
}

static DOC: Shape<7> = Shape::new();
static MCP: Shape<16> = Shape::new();
static HTTP: Shape<2> = Shape::new();
static INPUT_REQUEST: Shape<3> = Shape::new();
static TOKEN: Shape<7> = Shape::new();
static IDENTITY: Shape<4> = Shape::new();

fn document<D: Document>(
    message: &McpMessage,
    request: &McpRequest,
    caller: Caller<'_>,
    http: HttpFacts<'_>,
    phase: Phase,
) -> Result<D, D::Error> {
    let method = message.method.as_deref();
    let named = |m: &str| D::opt_shared(if method == Some(m) { message.target.as_ref() } else { None });
    let context = &message.context;
    let input_request = match context.input_request.as_deref() {
        None => D::null(),
        Some(r) => D::object(
            &INPUT_REQUEST,
            [("key", D::string(&r.key)), ("method", D::string(&r.method)), ("params", D::json(&r.params)?)],
        ),
    };
    let mcp = D::object(
        &MCP,
        [
            ("method", D::opt_shared(message.method.as_ref())),
            (
                "id",
                match &message.id {
                    None => D::null(),
                    Some(JsonRpcId::Number(n)) => D::int(*n),
                    Some(JsonRpcId::String(s)) => D::shared(s),
                },
            ),
            ("tool", named("tools/call")),
            ("prompt", named("prompts/get")),
            (
                "resource",
                D::opt_shared(if method.is_some_and(|m| m.starts_with("resources/")) {
                    message.target.as_ref()
                } else {
                    None
                }),
            ),
            ("arguments", D::opt_json(message.arguments.as_ref())?),
            ("is_error", D::bool(message.is_error)),
            ("batch", D::bool(request.batch)),
            ("session_id", D::opt_shared(request.session_id.as_ref())),
            ("protocol_version", D::opt_shared(request.protocol_version.as_ref())),
            ("era", D::string(request.era.as_str())),
            ("client_capabilities", D::opt_json(context.client_capabilities.as_deref())?),
            ("input_responses", D::opt_json(context.input_responses.as_ref())?),
            ("request_state", D::opt_shared(context.request_state.as_ref())),
            ("notifications", D::opt_json(context.notifications.as_ref())?),
            ("input_request", input_request),
        ],
    );
    Ok(D::object(
        &DOC,
        [
            ("version", D::int(INPUT_VERSION as i64)),
            ("kind", D::string(message.kind.as_str())),
            ("phase", D::string(phase.as_str())),
            ("identity", identity_doc(caller.identity)),
            ("token", caller.token.map_or_else(|| Ok(D::null()), D::token)?),
            ("mcp", mcp),
            ("http", D::object(&HTTP, [("method", D::string(http.method)), ("path", D::string(http.path))])),
        ],
    ))
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

fn token_doc<D: Document>(token: &VerifiedToken) -> Result<D, D::Error> {
    Ok(D::object(
        &TOKEN,
        [
            ("issuer", D::string(token.issuer())),
            ("subject", D::opt_string(token.subject())),
            ("client_id", D::opt_string(token.client_id())),
            ("scopes", D::strings(token.scopes())),
            ("roles", D::strings(token.roles())),
            ("dpop_jkt", D::opt_string(token.dpop_jkt())),
            ("claims", D::json(token.claims())?),
        ],
    ))
}

fn identity_doc<D: Document>(identity: Option<&PeerIdentity>) -> D {
    match identity {
        Some(PeerIdentity::Spiffe(id)) => D::object(
            &IDENTITY,
            [
                ("spiffe_id", D::shared(&id.spiffe_id)),
                ("trust_domain", D::shared(&id.trust_domain)),
                ("path", D::shared(&id.path)),
                ("source", D::string(id.source.as_str())),
            ],
        ),
        Some(PeerIdentity::Anonymous) | None => D::null(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Era, IdentitySource};
    use serde_json::json;

    fn token(claims: Value) -> VerifiedToken {
        VerifiedToken {
            issuer: "https://kc.example/realms/mcp".into(),
            subject: Some("agent-1".into()),
            client_id: None,
            scopes: vec!["mcp:tools".to_owned(), "openid".to_owned()].into(),
            roles: Vec::<String>::new().into(),
            dpop_jkt: Some("jkt-1".into()),
            expires_at: 0,
            claims: Arc::new(claims),
            input: Arc::default(),
        }
    }

    fn message(id: Option<JsonRpcId>, arguments: Option<Value>) -> McpMessage {
        McpMessage {
            kind: MessageKind::Request,
            method: Some("tools/call".into()),
            id,
            target: Some("read_file".into()),
            arguments,
            is_error: false,
            context: MessageContext {
                client_capabilities: Some(Arc::new(json!({"elicitation": {"form": {}}}))),
                input_responses: Some(json!({"k": {"action": "accept", "content": {"n": 3}}})),
                request_state: Some("opaque".into()),
                notifications: None,
                input_request: Some(Arc::new(InputRequest {
                    key: "k".into(),
                    method: "elicitation/create".into(),
                    params: json!({"mode": "url", "url": "https://x.example/"}),
                })),
            },
        }
    }

    /// The value the policy evaluates is the JSON document read by regorus, number for
    /// number; only integral floats make an input unkeyable.
    #[test]
    fn the_value_is_the_json_document_read_by_regorus() {
        let request = McpRequest {
            messages: Vec::new(),
            batch: true,
            session_id: Some("s-1".into()),
            protocol_version: Some("2025-11-25".into()),
            era: Era::Legacy,
            unverified_mirror: None,
            body: bytes::Bytes::new(),
        };
        let identity = PeerIdentity::Spiffe(
            crate::identity::parse_spiffe_id("spiffe://td.example/ns/a/sa/b", IdentitySource::Mtls).unwrap(),
        );
        let cases: [(Option<JsonRpcId>, Option<Value>, Value, bool); 7] = [
            (Some(JsonRpcId::Number(7)), Some(json!({"path": "/w/a"})), json!({"sub": "agent-1"}), true),
            (Some(JsonRpcId::Number(-7)), None, json!({}), true),
            (
                Some(JsonRpcId::String("x".into())),
                Some(json!({"n": 0.5, "m": [1, -2, "s", null, true]})),
                json!({}),
                true,
            ),
            (None, Some(json!({"n": 1.0})), json!({}), false),
            (None, Some(json!({"deep": [{"n": 2e3}]})), json!({}), false),
            (None, Some(json!({"n": 1})), json!({"exp": 1.0}), false),
            (None, Some(json!({"big": u64::MAX, "neg": i64::MIN})), json!({"x": [0.25]}), true),
        ];
        for (n, (id, arguments, claims, keyable)) in cases.into_iter().enumerate() {
            let message = message(id, arguments);
            let token = token(claims);
            let caller = Caller { identity: Some(&identity), token: Some(&token) };
            let http = HttpFacts { method: "POST", path: "/mcp" };
            for phase in [Phase::Call, Phase::List] {
                let doc = build(&message, &request, caller, http, phase);
                let value = build_value(&message, &request, caller, http, phase).unwrap();
                let read = regorus::Value::from(doc.clone());
                assert_eq!(value.value, read, "case {n}");
                assert_eq!(value.value.to_json_str().unwrap(), read.to_json_str().unwrap(), "case {n}");
                assert_eq!(value.keyable, keyable, "case {n}");
                assert_eq!(InputValue::from_json(&doc).keyable, keyable, "case {n}");
            }
        }
        let anonymous = build_value(
            &message(None, None),
            &request,
            Caller::default(),
            HttpFacts { method: "GET", path: "/" },
            Phase::Call,
        );
        assert_eq!(anonymous.unwrap().value["identity"], regorus::Value::Null);
    }
}
