//! What comes back is checked too. The items of `tools/list`, `prompts/list`,
//! `resources/list` and `resources/templates/list` results are decided one by one
//! (`phase: "list"`), in JSON responses and inside SSE streams. Answers to 2026-07-28
//! requests are also made safe for shared caches (`cacheScope: "private"`, `ttlMs`
//! capped), their `input_required` requests decided (kind `input_request`), and
//! `subscriptions/listen` notifications about resources the caller may not read dropped.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, Limited};
use tower::Service;

use super::PolicyStore;
use super::input::{self, Caller, HttpFacts, Phase};
use crate::body::{Body, BodyError, boxed, full};
use crate::context::{DecisionId, Era, JsonRpcId, McpMessage, McpRequest, MessageKind, PeerIdentity, VerifiedToken};
use crate::error::{Rejection, Stage, code};
use crate::mcp::MirrorCheck;
use crate::mcp::answer::{self, InputRequiredError};
use crate::mcp::list::{ListError, ListKind, ListTarget, filter_items};
use crate::mcp::sse::{BOM, EventSplitter, event_data, replace_data};
use crate::metrics::Metrics;
use crate::stage::{Next, PipelineStage, StageFuture};
use crate::strict_json;

/// How answers to modern requests are rewritten.
#[derive(Debug, Clone, Copy)]
pub struct AnswerOptions {
    /// The longest `ttlMs` a client is told, so that a policy change reaches it.
    pub max_cache_ttl_ms: u64,
    /// An answer that must be read whole to be checked (a JSON list answer, one SSE
    /// event) larger than this is refused (502) rather than held in memory or passed on
    /// unchecked.
    pub max_answer_bytes: usize,
}

impl Default for AnswerOptions {
    fn default() -> Self {
        AnswerOptions { max_cache_ttl_ms: 60_000, max_answer_bytes: 16 * 1024 * 1024 }
    }
}

/// The answer filtering stage.
#[derive(Clone)]
pub struct AnswerFilterStage {
    store: Arc<PolicyStore>,
    metrics: Arc<Metrics>,
    /// Filled from the `tools/list` and `server/discover` answers this stage forwards;
    /// read by inspection.
    learned: MirrorCheck,
    options: AnswerOptions,
}

impl AnswerFilterStage {
    pub fn new(store: Arc<PolicyStore>, metrics: Arc<Metrics>, learned: MirrorCheck, options: AnswerOptions) -> Self {
        AnswerFilterStage { store, metrics, learned, options }
    }
}

impl PipelineStage for AnswerFilterStage {
    fn call(&self, req: Request<Body>, mut next: Next) -> StageFuture {
        let decider = AnswerDecider::for_request(&req, self);
        Box::pin(async move {
            let resp = next.call(req).await?;
            match decider {
                Some(decider) => decider.filter_response(resp).await,
                None => Ok(resp),
            }
        })
    }
}

/// What becomes of one message of an answer.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Unchanged,
    Replaced(String),
    /// Not for this caller at all (an SSE event removed whole).
    Dropped,
}

/// Decides answers, against the policy set current when each answer arrives (one set
/// per answer).
struct AnswerDecider {
    /// The list requests of the message: one, or several in a 2025-03-26 batch.
    targets: Vec<ListTarget>,
    /// The request, when it is a 2026-07-28 one whose answers are checked.
    modern: Option<McpMessage>,
    batch: bool,
    request: McpRequest,
    identity: Option<PeerIdentity>,
    token: Option<VerifiedToken>,
    http_method: String,
    http_path: String,
    decision_id: DecisionId,
    store: Arc<PolicyStore>,
    metrics: Arc<Metrics>,
    learned: MirrorCheck,
    options: AnswerOptions,
}

/// A modern request whose answer carries something to check.
fn checked_modern(mcp: &McpRequest) -> Option<&McpMessage> {
    let [message] = mcp.messages.as_slice() else { return None };
    let method = message.method.as_deref()?;
    let checked = answer::is_cacheable(method) || answer::may_require_input(method) || method == "subscriptions/listen";
    // Every request is checked for input_required: a server may not send it elsewhere.
    (mcp.era == Era::Modern && message.kind == MessageKind::Request && (checked || message.id.is_some()))
        .then_some(message)
}

impl AnswerDecider {
    fn for_request(req: &Request<Body>, layer: &AnswerFilterStage) -> Option<Self> {
        let mcp = req.extensions().get::<McpRequest>()?;
        let targets: Vec<ListTarget> = mcp
            .messages
            .iter()
            .filter(|m| m.kind == MessageKind::Request)
            .filter_map(|m| Some(ListTarget { id: m.id.clone()?, kind: ListKind::of(m.method.as_deref()?)? }))
            .collect();
        let modern = checked_modern(mcp).cloned();
        if targets.is_empty() && modern.is_none() {
            return None;
        }
        Some(AnswerDecider {
            targets,
            modern,
            batch: mcp.batch,
            request: McpRequest { body: Bytes::new(), ..mcp.clone() },
            identity: req.extensions().get::<PeerIdentity>().cloned(),
            token: req.extensions().get::<VerifiedToken>().cloned(),
            http_method: req.method().to_string(),
            http_path: req.uri().path().to_owned(),
            decision_id: req.extensions().get::<DecisionId>().cloned().unwrap_or_default(),
            store: layer.store.clone(),
            metrics: layer.metrics.clone(),
            learned: layer.learned.clone(),
            options: layer.options,
        })
    }

    async fn filter_response(self, resp: Response<Body>) -> Result<Response<Body>, Rejection> {
        let content_type = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => self.filter_json(resp).await,
            "text/event-stream" => {
                let (mut parts, body) = resp.into_parts();
                // Some servers send a whole SSE answer with Content-Length; filtering may
                // shorten it, so the length is the body's to tell (chunked).
                parts.headers.remove(header::CONTENT_LENGTH);
                let filtered = SseListFilter {
                    inner: body,
                    splitter: EventSplitter::new(self.options.max_answer_bytes),
                    pending: VecDeque::new(),
                    decider: self,
                    inner_done: false,
                    at_start: true,
                    answered: false,
                };
                Ok(Response::from_parts(parts, boxed(filtered)))
            }
            _ => Ok(resp),
        }
    }

    async fn filter_json(self, resp: Response<Body>) -> Result<Response<Body>, Rejection> {
        let (mut parts, body) = resp.into_parts();
        let bytes = match Limited::new(body, self.options.max_answer_bytes).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return Err(self.refusal("answer unreadable or too large")),
        };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return Err(self.refusal("answer is not UTF-8"));
        };
        match self.process(text) {
            Ok(Outcome::Replaced(filtered)) => {
                parts.headers.remove(header::CONTENT_LENGTH);
                Ok(Response::from_parts(parts, full(filtered)))
            }
            // A JSON answer is one message: one that is not for the caller has no place.
            Ok(Outcome::Dropped) => Err(self.refusal("answer not for this caller")),
            Ok(Outcome::Unchanged) => Ok(Response::from_parts(parts, full(bytes))),
            Err(e) => Err(self.refusal(&e.to_string())),
        }
    }

    /// Every check, in order, on one message (or a 2025-03-26 batch answer).
    fn process(&self, text: &str) -> Result<Outcome, ListError> {
        // One set for the whole answer: a reload mid-list must not mix two policies.
        let set = self.store.current();
        let listed = if self.targets.is_empty() { None } else { self.filter_lists(set.as_deref(), text)? };
        let Some(original) = &self.modern else {
            return Ok(listed.map_or(Outcome::Unchanged, Outcome::Replaced));
        };
        let current = listed.as_deref().unwrap_or(text);
        let method = original.method.as_deref().unwrap_or_default();
        let cacheable = answer::is_cacheable(method);
        let listening = method == "subscriptions/listen";
        if !(cacheable || listening || answer::might_be_input_required(current)) {
            return Ok(listed.map_or(Outcome::Unchanged, Outcome::Replaced));
        }
        if self.targets.is_empty() {
            // What we read must be what every client reads (the list filter checked its own).
            if current.trim().is_empty() {
                return Ok(Outcome::Unchanged);
            }
            strict_json::parse(current.as_bytes(), 128)?;
        }
        // 1. A subscription shows only resources the caller may read.
        if listening && let Some(uri) = answer::updated_resource(current) {
            let message = input::derived_message(original, "resources/read", &uri);
            if !set.as_deref().is_some_and(|set| self.decide(set, &message, Phase::Subscribe)) {
                self.metrics.rejections.with_label_values(&[Stage::Policy.as_str(), "subscription_notification"]).inc();
                return Ok(Outcome::Dropped);
            }
        }
        // 2. Input the server asks for: on a method that may, within the client's declared
        //    capabilities, and each request allowed by policy.
        let capabilities = original.context.client_capabilities.as_deref();
        match answer::input_requests(current, method, capabilities) {
            Ok(None) => {}
            Ok(Some(requests)) => {
                for request in requests {
                    let message = input::input_request_message(original, request);
                    if !set.as_deref().is_some_and(|set| self.decide(set, &message, Phase::Call)) {
                        return Ok(Outcome::Replaced(self.input_denied(None)));
                    }
                }
                return Ok(listed.map_or(Outcome::Unchanged, Outcome::Replaced));
            }
            Err(e) => return Ok(Outcome::Replaced(self.input_denied(Some(e)))),
        }
        if method == "server/discover" {
            self.learned.versions.learn(current);
        }
        // 3. Filtered per caller, so never shared: private, and not cached past the cap.
        if cacheable && let Some(private) = answer::make_private(current, self.options.max_cache_ttl_ms) {
            return Ok(Outcome::Replaced(private));
        }
        Ok(listed.map_or(Outcome::Unchanged, Outcome::Replaced))
    }

    /// List filtering; learns each tool's mirrored headers on the way.
    fn filter_lists(&self, set: Option<&super::PolicySet>, text: &str) -> Result<Option<String>, ListError> {
        let (mut kept, mut total) = (0usize, 0usize);
        let out = filter_items(text, &self.targets, |target, name, item| {
            if target.kind == ListKind::Tools {
                self.learned.mirrors.learn(item);
            }
            total += 1;
            let original = self.original_of(&target.id);
            let message = match original {
                Some(original) => input::derived_message(original, target.kind.call_method(), name),
                None => {
                    input::derived_message(&McpMessage::bare(MessageKind::Request), target.kind.call_method(), name)
                }
            };
            let allow = set.is_some_and(|set| self.decide(set, &message, Phase::List));
            kept += usize::from(allow);
            allow
        })?;
        if out.is_some() {
            tracing::info!(
                target: "mcp_pep::decision",
                decision_id = %self.decision_id,
                phase = "list",
                items = total,
                kept,
                "list filtered"
            );
        }
        Ok(out)
    }

    /// The list request an answer belongs to (the first one when the id matches none:
    /// clients match ids loosely, so a foreign list result is filtered as the first's).
    fn original_of(&self, id: &JsonRpcId) -> Option<&McpMessage> {
        let requests = || self.request.messages.iter().filter(|m| m.kind == MessageKind::Request);
        requests().find(|m| m.id.as_ref() == Some(id)).or_else(|| requests().next())
    }

    /// One decision on the way back; any error denies.
    fn decide(&self, set: &super::PolicySet, message: &McpMessage, phase: Phase) -> bool {
        let started = Instant::now();
        let http = HttpFacts { method: &self.http_method, path: &self.http_path };
        let caller = Caller { identity: self.identity.as_ref(), token: self.token.as_ref() };
        let (decided, cache) = set.decide_built(input::build_value(message, &self.request, caller, http, phase));
        self.metrics.policy_cache.with_label_values(&[cache.as_str()]).inc();
        let (allow, reasons) = match decided {
            Ok(d) => (d.allow, d.reasons),
            Err(e) => (false, vec![format!("policy evaluation failed: {e}")]),
        };
        self.metrics.policy_eval_duration.with_label_values(&[phase.as_str()]).observe(started.elapsed().as_secs_f64());
        let method = message.method.as_deref();
        let outcome = if allow { "allow" } else { "deny" };
        if phase == Phase::List {
            self.metrics.list_items.with_label_values(&[Metrics::method_label(method), outcome]).inc();
            return allow;
        }
        let inner = message.context.input_request.as_ref().map(|r| r.method.as_str());
        let label = Metrics::method_label(inner.or(method));
        self.metrics
            .decisions
            .with_label_values(&[label, &self.metrics.tool_label(message.target.as_deref()), outcome])
            .inc();
        tracing::info!(
            target: "mcp_pep::decision",
            decision_id = %self.decision_id,
            kind = message.kind.as_str(),
            phase = phase.as_str(),
            method,
            input_method = inner,
            target = message.target.as_deref(),
            allow,
            reasons = ?reasons,
            "decision"
        );
        allow
    }

    /// The error that replaces an `input_required` answer the client may not see.
    fn input_denied(&self, why: Option<InputRequiredError>) -> String {
        let id = self.answer_id();
        let mut rejection = match &why {
            None => Rejection::new(
                Stage::Policy,
                "input_request_denied",
                StatusCode::OK,
                code::POLICY_DENIED,
                format!("the tool server's request for input was denied by policy (decision {})", self.decision_id),
            ),
            Some(e) => {
                tracing::warn!(decision_id = %self.decision_id, error = %e, "input_required answer refused");
                Rejection::new(
                    Stage::Upstream,
                    "input_required_invalid",
                    StatusCode::OK,
                    code::UPSTREAM_UNAVAILABLE,
                    format!("{e} (decision {})", self.decision_id),
                )
            }
        };
        self.metrics.rejections.with_label_values(&[rejection.stage.as_str(), rejection.reason]).inc();
        rejection.era = self.request.era;
        rejection.decision_id = Some(self.decision_id.clone());
        rejection.error_body(id.as_ref(), &rejection.message, false).to_string()
    }

    fn refusal(&self, why: &str) -> Rejection {
        tracing::warn!(decision_id = %self.decision_id, why, "answer could not be checked; refusing it");
        let mut rejection = Rejection::new(
            Stage::Policy,
            "list_filter",
            StatusCode::BAD_GATEWAY,
            code::UPSTREAM_UNAVAILABLE,
            format!("the tool server's answer could not be checked (decision {})", self.decision_id),
        )
        .with_id(self.answer_id());
        rejection.decision_id = Some(self.decision_id.clone());
        rejection.era = self.request.era;
        rejection
    }

    /// The id an error answers: the request's; a batch's refusal answers none.
    fn answer_id(&self) -> Option<JsonRpcId> {
        if let Some(modern) = &self.modern {
            return modern.id.clone();
        }
        match self.targets.as_slice() {
            [one] if !self.batch => Some(one.id.clone()),
            _ => None,
        }
    }

    /// The SSE event that replaces an answer that could not be checked.
    fn error_event(&self, raw: &[u8], why: &str) -> Bytes {
        let error = self.refusal(why);
        let body = error.error_body(self.answer_id().as_ref(), &error.message, false);
        replace_data(raw, &body.to_string())
    }
}

/// The shape of the event that carries an error the proxy writes into a stream.
const ERROR_EVENT: &[u8] = b"event: message\ndata: {}\n\n";

/// Passes an SSE stream through event by event, each forwarded as soon as it is whole;
/// every event is checked as [`AnswerDecider::process`] says.
struct SseListFilter {
    inner: Body,
    splitter: EventSplitter,
    pending: VecDeque<Bytes>,
    decider: AnswerDecider,
    inner_done: bool,
    /// No event was read yet.
    at_start: bool,
    /// The request's answer was among the events passed on.
    answered: bool,
}

/// Whether an event's data is a JSON-RPC response to `id`.
fn answers(data: &str, id: Option<&JsonRpcId>) -> bool {
    let Some(id) = id else { return false };
    let Ok(serde_json::Value::Object(message)) = serde_json::from_str::<serde_json::Value>(data) else { return false };
    (message.contains_key("result") || message.contains_key("error")) && message.get("id") == Some(&id.to_json())
}

impl SseListFilter {
    fn take_events(&mut self) {
        loop {
            match self.splitter.next_event() {
                Ok(Some(event)) => self.filter_event(event),
                Ok(None) => return,
                Err(e) => {
                    // An event too large to hold: fail closed, end the stream here with
                    // an error for the request, so the client does not wait for it.
                    tracing::warn!(error = %e, "SSE list stream refused");
                    self.end_with_error("answer too large to check");
                    return;
                }
            }
        }
    }

    /// Ends the stream, after a JSON-RPC error event answering the request unless its
    /// answer already passed (a second answer to one id would break the client).
    fn end_with_error(&mut self, why: &str) {
        self.inner_done = true;
        self.splitter.take_remainder();
        if !self.answered {
            self.pending.push_back(self.decider.error_event(ERROR_EVENT, why));
        }
    }

    /// Queues `event`, filtered when it carries a list result. The whole stream is read:
    /// a list result under another id could be taken for the answer by a client that
    /// matches ids loosely.
    fn filter_event(&mut self, mut event: Bytes) {
        // Clients skip a byte order mark at the start of the stream.
        if std::mem::take(&mut self.at_start) && event.starts_with(BOM) {
            self.pending.push_back(event.split_to(BOM.len()));
        }
        let data = event_data(&event);
        if !self.answered
            && let Some(data) = &data
        {
            self.answered = answers(data, self.decider.answer_id().as_ref());
        }
        let replaced = data.and_then(|data| match self.decider.process(&data) {
            Ok(Outcome::Unchanged) => None,
            Ok(Outcome::Replaced(filtered)) if filtered == data => None,
            Ok(Outcome::Replaced(filtered)) => Some(replace_data(&event, &filtered)),
            Ok(Outcome::Dropped) => Some(Bytes::new()),
            Err(e) => Some(self.decider.error_event(&event, &e.to_string())),
        });
        self.pending.push_back(replaced.unwrap_or(event));
    }
}

impl http_body::Body for SseListFilter {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        loop {
            if let Some(bytes) = this.pending.pop_front() {
                if bytes.is_empty() {
                    continue;
                }
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            if this.inner_done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        this.splitter.push(&data);
                        this.take_events();
                    }
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Poll::Ready(Some(Err(e))) => {
                    // The tool server's stream broke (reset, timeout): the client gets an
                    // answer for its request and a clean end, not a torn stream.
                    tracing::warn!(error = %e, "upstream SSE stream failed");
                    this.end_with_error("the tool server's stream ended abnormally");
                }
                Poll::Ready(None) => {
                    this.inner_done = true;
                    // An unterminated last event is filtered like any other: a lenient
                    // client may still read it.
                    let rest = this.splitter.take_remainder();
                    if !rest.is_empty() {
                        this.filter_event(rest);
                    }
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
