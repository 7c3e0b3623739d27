//! The policy stage: decides every message of an inspected request; forwards only
//! when every one is allowed.

use std::sync::Arc;
use std::time::Instant;

use http::{Request, StatusCode};
use tower::Service;

use super::input::{self, Caller, HttpFacts, Phase};
use super::{PolicySet, PolicyStore};
use crate::body::Body;
use crate::context::{Decision, DecisionId, McpMessage, McpRequest, MessageKind, PeerIdentity};
use crate::error::{Rejection, Stage, code};
use crate::metrics::Metrics;
use crate::stage::{Next, PipelineStage, StageFuture};

#[derive(Debug, Clone, Copy)]
pub struct PolicyOptions {
    /// HTTP status of a denied request that has a JSON-RPC id. 200 keeps the official
    /// SDK sessions alive and shows the agent a per-call JSON-RPC error.
    pub deny_status: StatusCode,
    /// Send the policy's reasons to the client (they always go to the log).
    pub expose_reasons: bool,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        PolicyOptions { deny_status: StatusCode::OK, expose_reasons: false }
    }
}

#[derive(Clone)]
pub struct PolicyStage {
    store: Arc<PolicyStore>,
    metrics: Arc<Metrics>,
    options: PolicyOptions,
    /// OPA-shaped decision events, when configured.
    decision_log: Option<Arc<super::decision_log::DecisionLog>>,
}

impl PolicyStage {
    pub fn new(store: Arc<PolicyStore>, metrics: Arc<Metrics>, options: PolicyOptions) -> Self {
        PolicyStage { store, metrics, options, decision_log: None }
    }

    pub fn with_decision_log(mut self, log: Option<Arc<super::decision_log::DecisionLog>>) -> Self {
        self.decision_log = log;
        self
    }
}

impl PipelineStage for PolicyStage {
    fn call(&self, req: Request<Body>, mut next: Next) -> StageFuture {
        let decided = self.decide(&req);
        Box::pin(async move {
            decided?;
            next.call(req).await
        })
    }
}

impl PolicyStage {
    /// Decides every message of `req`; `Err` is the answer to send instead of forwarding.
    fn decide(&self, req: &Request<Body>) -> Result<(), Rejection> {
        let decision_id = req.extensions().get::<DecisionId>().cloned().unwrap_or_default();
        let Some(mcp) = req.extensions().get::<McpRequest>() else {
            // Inspection must run first; a request without its result is never forwarded.
            return Err(self.refuse(
                Stage::Policy,
                "not_inspected",
                StatusCode::INTERNAL_SERVER_ERROR,
                &decision_id,
                None,
            ));
        };
        let Some(set) = self.store.current() else {
            self.metrics.decisions.with_label_values(&["none", "", "error"]).inc();
            return Err(self.refuse(
                Stage::Policy,
                "no_policy",
                StatusCode::SERVICE_UNAVAILABLE,
                &decision_id,
                mcp.messages.first(),
            ));
        };
        let caller = Caller::of(req.extensions());
        let http = HttpFacts { method: req.method().as_str(), path: req.uri().path() };
        let decisions: Vec<Decision> = mcp
            .messages
            .iter()
            .map(|message| {
                let decision = self.decide_one(&set, message, mcp, caller, http, &decision_id, Phase::Call);
                if !decision.allow {
                    return decision;
                }
                // A subscription to a resource is a standing read of it: each URI is
                // decided as `resources/read`, and one the caller may not read denies
                // the request (its body is forwarded as sent, never trimmed).
                let denied = message.resource_subscriptions().find_map(|uri| {
                    let read = input::derived_message(message, "resources/read", uri);
                    let d = self.decide_one(&set, &read, mcp, caller, http, &decision_id, Phase::Subscribe);
                    (!d.allow).then_some(d)
                });
                denied.unwrap_or(decision)
            })
            .collect();
        if decisions.iter().all(|d| d.allow) {
            if let Some(header) = &mcp.unverified_mirror {
                let id = mcp.messages.first().and_then(|m| m.id.clone());
                let problem = crate::mcp::mirror::UNVERIFIED;
                let e = crate::mcp::InspectError::ParamMismatch { header: header.to_string(), problem, id };
                return Err(Rejection::from(e));
            }
            return Ok(());
        }
        Err(self.denial(mcp, &decisions, decision_id))
    }

    #[allow(clippy::too_many_arguments)]
    fn decide_one(
        &self,
        set: &PolicySet,
        message: &McpMessage,
        mcp: &McpRequest,
        caller: Caller<'_>,
        http: HttpFacts<'_>,
        decision_id: &DecisionId,
        phase: Phase,
    ) -> Decision {
        let started = Instant::now();
        // The log shows the document as JSON; built only when it is on.
        let logged_input = self.decision_log.as_ref().map(|_| input::build(message, mcp, caller, http, phase));
        let (decided, cache) = set.decide_built(input::build_value(message, mcp, caller, http, phase));
        self.metrics.policy_cache.with_label_values(&[cache.as_str()]).inc();
        let (decision, outcome) = match decided {
            Ok(d) if d.allow => (d, "allow"),
            Ok(d) => (d, "deny"),
            Err(e) => {
                tracing::warn!(%decision_id, error = %e, "policy evaluation failed; denying");
                (Decision::deny("policy evaluation failed"), "error")
            }
        };
        let elapsed = started.elapsed();
        self.metrics.policy_eval_duration.with_label_values(&[phase.as_str()]).observe(elapsed.as_secs_f64());
        let method = Metrics::method_label(message.method.as_deref());
        let tool = self.metrics.tool_label(message.target.as_deref());
        self.metrics.decisions.with_label_values(&[method, tool.as_str(), outcome]).inc();
        let (spiffe_id, identity_source) = match caller.identity {
            Some(PeerIdentity::Spiffe(id)) => (Some(&*id.spiffe_id), Some(id.source.as_str())),
            _ => (None, None),
        };
        tracing::info!(
            target: "mcp_pep::decision",
            %decision_id,
            spiffe_id,
            identity_source,
            subject = caller.token.and_then(|t| t.subject()),
            jkt = caller.token.and_then(|t| t.dpop_jkt()),
            kind = message.kind.as_str(),
            phase = phase.as_str(),
            era = mcp.era.as_str(),
            method = message.method.as_deref(),
            target = message.target.as_deref(),
            allow = decision.allow,
            reasons = ?decision.reasons,
            eval_us = elapsed.as_micros() as u64,
            policy_revision = &**set.revision(),
            "decision"
        );
        if let (Some(log), Some(input)) = (&self.decision_log, logged_input) {
            log.record(super::decision_log::Event {
                decision_id: decision_id.as_str(),
                entrypoint: set.entrypoint(),
                input,
                allow: decision.allow,
                reasons: &decision.reasons,
                revision: set.revision(),
                eval: elapsed,
            });
        }
        decision
    }

    /// The answer to a denied request. A batch answers every element that has an id.
    fn denial(&self, mcp: &McpRequest, decisions: &[Decision], decision_id: DecisionId) -> Rejection {
        let denied: Vec<String> = decisions.iter().filter(|d| !d.allow).flat_map(|d| d.reasons.clone()).collect();
        // Only requests are answered in JSON-RPC; a refused notification, response, GET or
        // DELETE gets an HTTP error and no id (a response's id is the server's numbering).
        let is_request = |m: &McpMessage| m.kind == MessageKind::Request;
        let status = if mcp.messages.iter().any(is_request) { self.options.deny_status } else { StatusCode::FORBIDDEN };
        let message = format!("denied by policy (decision {decision_id})");
        let first = &mcp.messages[0];
        let id = if !mcp.batch && is_request(first) { first.id.clone() } else { None };
        let mut rejection = Rejection::new(Stage::Policy, "denied", status, code::POLICY_DENIED, message).with_id(id);
        rejection.decision_id = Some(decision_id);
        rejection.reasons = denied;
        if mcp.batch {
            // Forwarding part of a batch would mean re-serialising it; the whole batch is
            // refused and each request learns whether it was the denied one.
            let elements: Vec<_> = mcp
                .messages
                .iter()
                .zip(decisions)
                .filter(|(m, _)| is_request(m))
                .map(|(m, d)| {
                    let text = if d.allow {
                        "not executed: another message of the batch was denied by policy".to_owned()
                    } else {
                        rejection.message.clone()
                    };
                    rejection.error_body(m.id.as_ref(), &text, self.options.expose_reasons && !d.allow)
                })
                .collect();
            if !elements.is_empty() {
                rejection.batch = Some(elements);
            }
        }
        rejection
    }

    fn refuse(
        &self,
        stage: Stage,
        reason: &'static str,
        status: StatusCode,
        decision_id: &DecisionId,
        message: Option<&McpMessage>,
    ) -> Rejection {
        let text = format!("denied: {} (decision {decision_id})", reason.replace('_', " "));
        let mut rejection = Rejection::new(stage, reason, status, code::POLICY_DENIED, text)
            .with_id(message.and_then(|m| m.id.clone()));
        rejection.decision_id = Some(decision_id.clone());
        rejection
    }
}
