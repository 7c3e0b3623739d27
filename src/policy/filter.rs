//! List filtering: a caller sees only what it may use. The items of `tools/list`,
//! `prompts/list`, `resources/list` and `resources/templates/list` results are decided one
//! by one (`phase: "list"`), in JSON responses and inside SSE streams.

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
use crate::context::{DecisionId, JsonRpcId, McpRequest, MessageKind, PeerIdentity, VerifiedToken};
use crate::error::{Rejection, Stage, code};
use crate::mcp::list::{ListError, ListKind, ListTarget, filter_payload};
use crate::mcp::sse::{BOM, EventSplitter, event_data, replace_data};
use crate::metrics::Metrics;
use crate::stage::{Next, PipelineStage, StageFuture};

/// A list answer larger than this is refused rather than held in memory.
const MAX_LIST_BYTES: usize = 16 * 1024 * 1024;

/// The list filtering stage.
#[derive(Clone)]
pub struct ListFilterStage {
    store: Arc<PolicyStore>,
    metrics: Arc<Metrics>,
}

impl ListFilterStage {
    pub fn new(store: Arc<PolicyStore>, metrics: Arc<Metrics>) -> Self {
        ListFilterStage { store, metrics }
    }
}

impl PipelineStage for ListFilterStage {
    fn call(&self, req: Request<Body>, mut next: Next) -> StageFuture {
        let decider = ListDecider::for_request(&req, self);
        Box::pin(async move {
            let resp = next.call(req).await?;
            match decider {
                Some(decider) => decider.filter_response(resp).await,
                None => Ok(resp),
            }
        })
    }
}

/// Decides the items of list answers, against the policy set current when each answer
/// arrives (one set per answer).
struct ListDecider {
    /// The list requests of the message: one, or several in a 2025-03-26 batch.
    targets: Vec<ListTarget>,
    batch: bool,
    request: McpRequest,
    identity: Option<PeerIdentity>,
    token: Option<VerifiedToken>,
    http_method: String,
    http_path: String,
    decision_id: DecisionId,
    store: Arc<PolicyStore>,
    metrics: Arc<Metrics>,
}

impl ListDecider {
    fn for_request(req: &Request<Body>, layer: &ListFilterStage) -> Option<Self> {
        let mcp = req.extensions().get::<McpRequest>()?;
        let targets: Vec<ListTarget> = mcp
            .messages
            .iter()
            .filter(|m| m.kind == MessageKind::Request)
            .filter_map(|m| Some(ListTarget { id: m.id.clone()?, kind: ListKind::of(m.method.as_deref()?)? }))
            .collect();
        if targets.is_empty() {
            return None;
        }
        Some(ListDecider {
            targets,
            batch: mcp.batch,
            request: McpRequest { body: Bytes::new(), ..mcp.clone() },
            identity: req.extensions().get::<PeerIdentity>().cloned(),
            token: req.extensions().get::<VerifiedToken>().cloned(),
            http_method: req.method().to_string(),
            http_path: req.uri().path().to_owned(),
            decision_id: req.extensions().get::<DecisionId>().cloned().unwrap_or_default(),
            store: layer.store.clone(),
            metrics: layer.metrics.clone(),
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
                    splitter: EventSplitter::new(MAX_LIST_BYTES),
                    pending: VecDeque::new(),
                    decider: self,
                    inner_done: false,
                    at_start: true,
                };
                Ok(Response::from_parts(parts, boxed(filtered)))
            }
            _ => Ok(resp),
        }
    }

    async fn filter_json(self, resp: Response<Body>) -> Result<Response<Body>, Rejection> {
        let (mut parts, body) = resp.into_parts();
        let bytes = match Limited::new(body, MAX_LIST_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return Err(self.refusal("list answer unreadable or too large")),
        };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return Err(self.refusal("list answer is not UTF-8"));
        };
        match self.filter_text(text) {
            Ok(Some(filtered)) if filtered.len() != text.len() => {
                parts.headers.remove(header::CONTENT_LENGTH);
                Ok(Response::from_parts(parts, full(filtered)))
            }
            Ok(_) => Ok(Response::from_parts(parts, full(bytes))),
            Err(e) => Err(self.refusal(&e.to_string())),
        }
    }

    fn filter_text(&self, text: &str) -> Result<Option<String>, ListError> {
        // One set for the whole list: a reload mid-list must not mix two policies.
        let set = self.store.current();
        let (mut kept, mut total) = (0usize, 0usize);
        let out = filter_payload(text, &self.targets, |target, name| {
            total += 1;
            let allow = set.as_ref().is_some_and(|set| self.allowed(set, target, name));
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

    fn allowed(&self, set: &super::PolicySet, target: &ListTarget, name: &str) -> bool {
        let started = Instant::now();
        let method = target.kind.call_method();
        let item = input::list_item_message(method, &target.id, name);
        let http = HttpFacts { method: &self.http_method, path: &self.http_path };
        let caller = Caller { identity: self.identity.as_ref(), token: self.token.as_ref() };
        let doc = input::build(&item, &self.request, caller, http, Phase::List);
        let (decided, cache) = set.decide(doc);
        self.metrics.policy_cache.with_label_values(&[cache.as_str()]).inc();
        let allow = decided.is_ok_and(|d| d.allow);
        self.metrics
            .policy_eval_duration
            .with_label_values(&[Phase::List.as_str()])
            .observe(started.elapsed().as_secs_f64());
        self.metrics.list_items.with_label_values(&[method, if allow { "allow" } else { "deny" }]).inc();
        allow
    }

    fn refusal(&self, why: &str) -> Rejection {
        tracing::warn!(decision_id = %self.decision_id, why, "list answer could not be filtered; refusing it");
        let mut rejection = Rejection::new(
            Stage::Policy,
            "list_filter",
            StatusCode::BAD_GATEWAY,
            code::UPSTREAM_UNAVAILABLE,
            format!("the tool server's list answer could not be filtered (decision {})", self.decision_id),
        )
        .with_id(self.answer_id());
        rejection.decision_id = Some(self.decision_id.clone());
        rejection
    }

    /// The id an error answers: the list request's; a batch's refusal answers none.
    fn answer_id(&self) -> Option<JsonRpcId> {
        match self.targets.as_slice() {
            [one] if !self.batch => Some(one.id.clone()),
            _ => None,
        }
    }

    /// The SSE event that replaces a list answer that could not be filtered.
    fn error_event(&self, raw: &[u8], why: &str) -> Bytes {
        let error = self.refusal(why);
        let body = error.error_body(self.answer_id().as_ref(), &error.message, false);
        replace_data(raw, &body.to_string())
    }
}

/// Passes an SSE stream through event by event, each forwarded as soon as it is whole;
/// every event carrying a list result is filtered.
struct SseListFilter {
    inner: Body,
    splitter: EventSplitter,
    pending: VecDeque<Bytes>,
    decider: ListDecider,
    inner_done: bool,
    /// No event was read yet.
    at_start: bool,
}

impl SseListFilter {
    fn take_events(&mut self) {
        loop {
            match self.splitter.next_event() {
                Ok(Some(event)) => self.filter_event(event),
                Ok(None) => return,
                Err(e) => {
                    // An event too large to hold: fail closed, end the stream here.
                    tracing::warn!(error = %e, "SSE list stream refused");
                    self.inner_done = true;
                    self.splitter.take_remainder();
                    return;
                }
            }
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
        let replaced = event_data(&event).and_then(|data| match self.decider.filter_text(&data) {
            Ok(None) => None,
            Ok(Some(filtered)) if filtered == data => None,
            Ok(Some(filtered)) => Some(replace_data(&event, &filtered)),
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
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
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
