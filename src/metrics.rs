//! Prometheus metrics, one registry per proxy instance (tests run several in one process).

use std::collections::HashSet;
use std::sync::RwLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Tool names come from clients: past this many distinct values the label reads `other`,
/// so a caller cannot grow the registry without bound.
const MAX_TOOL_LABELS: usize = 256;

/// MCP methods get their own label; anything else is `other`.
const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
    "tasks/update",
    "server/discover",
    "subscriptions/listen",
    "elicitation/create",
    "sampling/createMessage",
    "roots/list",
];

pub struct Metrics {
    pub registry: Registry,
    pub request_duration: HistogramVec,
    pub policy_eval_duration: HistogramVec,
    pub decisions: IntCounterVec,
    pub rejections: IntCounterVec,
    pub upstream_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub active_streams: IntGauge,
    pub upstream_circuit_state: IntGauge,
    pub upstream_circuit_transitions: IntCounterVec,
    pub policy_reloads: IntCounterVec,
    pub list_items: IntCounterVec,
    pub authn_duration: prometheus::Histogram,
    pub dpop_replay_entries: IntGauge,
    pub svid_updates: IntCounterVec,
    pub svid_expiry: IntGauge,
    pub tls_handshakes: IntCounterVec,
    pub policy_cache: IntCounterVec,
    pub sessions: IntGauge,
    pub outbound_token_requests: IntCounterVec,
    pub outbound_token_duration: prometheus::Histogram,
    pub outbound_token_expiry: IntGauge,
    pub connection_errors: IntCounterVec,
    pub open_connections: IntGauge,
    pub policy_revision: prometheus::IntGaugeVec,
    pub decision_log_dropped: prometheus::IntCounter,
    pub state_duration: HistogramVec,
    pub state_errors: IntCounterVec,
    pub state_up: IntGaugeVec,
    /// Read on every decision, written only for the first 256 names: a read lock.
    tool_labels: RwLock<HashSet<String>>,
}

/// Microsecond-scale buckets: policy and inspection live there, upstreams above.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("mcp_pep".into()), None)?;
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            HistogramVec::new(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()), labels)
        };
        let counter = |name: &str, help: &str, labels: &[&str]| IntCounterVec::new(Opts::new(name, help), labels);
        let m = Metrics {
            request_duration: histogram(
                "request_duration_seconds",
                "Time from request received to response headers sent, by MCP method and outcome.",
                &["method", "outcome"],
            )?,
            policy_eval_duration: histogram(
                "policy_evaluation_duration_seconds",
                "Time to evaluate the policy entrypoint for one message, by phase.",
                &["phase"],
            )?,
            decisions: counter(
                "decisions_total",
                "Policy decisions by MCP method, tool and decision (allow, deny, error).",
                &["method", "tool", "decision"],
            )?,
            rejections: counter(
                "rejections_total",
                "Requests refused before or instead of forwarding, by stage and reason.",
                &["stage", "reason"],
            )?,
            upstream_duration: histogram(
                "upstream_duration_seconds",
                "Time until the upstream answered with response headers, by status class.",
                &["status"],
            )?,
            upstream_errors: counter(
                "upstream_errors_total",
                "Upstream failures by kind (connect, timeout, request, body_timeout, body_broken, stream_idle, server_error, credentials, uri, circuit_open).",
                &["kind"],
            )?,
            active_streams: IntGauge::new("active_streams", "SSE responses currently streaming to clients.")?,
            upstream_circuit_state: IntGauge::new(
                "upstream_circuit_state",
                "The upstream circuit breaker after its last transition: 0 closed, 1 open (refusing), 2 half-open (one probe).",
            )?,
            upstream_circuit_transitions: counter(
                "upstream_circuit_transitions_total",
                "Upstream circuit breaker transitions, by the state entered (open, half_open, closed).",
                &["to"],
            )?,
            policy_reloads: counter(
                "policy_reloads_total",
                "Policy set (re)loads by result (ok, error).",
                &["result"],
            )?,
            list_items: counter(
                "list_items_total",
                "Items of list results decided for the caller, by the method they are used with and decision.",
                &["method", "decision"],
            )?,
            authn_duration: prometheus::Histogram::with_opts(
                HistogramOpts::new(
                    "authn_duration_seconds",
                    "Time to verify a message's access token and DPoP proof (cached tokens included).",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )?,
            dpop_replay_entries: IntGauge::new(
                "dpop_replay_entries",
                "DPoP proofs remembered against replay (jti, htu); refusals start at the cap.",
            )?,
            svid_updates: counter(
                "svid_updates_total",
                "X.509-SVID and bundle updates from the SPIFFE source, by source and result (ok, error).",
                &["source", "result"],
            )?,
            svid_expiry: IntGauge::new(
                "svid_expiry_timestamp_seconds",
                "When the sidecar's current X.509-SVID expires (Unix time); 0 before the first one.",
            )?,
            tls_handshakes: counter(
                "tls_handshakes_total",
                "mTLS handshakes on the MCP listener by result (ok, or why the peer was refused).",
                &["result"],
            )?,
            policy_cache: counter(
                "policy_cache_total",
                "Policy decisions by cache result (hit, miss, bypass: off, uncacheable set or input too large).",
                &["result"],
            )?,
            sessions: IntGauge::new("sessions", "MCP sessions bound to the caller that created them.")?,
            outbound_token_requests: counter(
                "outbound_token_requests_total",
                "Token requests the sidecar made for its agent, by result (ok, no_svid, unreachable, refused, bad_answer, key).",
                &["result"],
            )?,
            outbound_token_duration: prometheus::Histogram::with_opts(
                HistogramOpts::new(
                    "outbound_token_refresh_duration_seconds",
                    "Time to obtain an outbound token (JWT-SVID, token request, checks).",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )?,
            outbound_token_expiry: IntGauge::new(
                "outbound_token_expiry_timestamp_seconds",
                "When the agent's current outbound token expires (Unix time); 0 before the first.",
            )?,
            connection_errors: counter(
                "connection_errors_total",
                "MCP listener connections ended with an error, by reason (header_timeout, headers_too_large, malformed, incomplete, io, other).",
                &["reason"],
            )?,
            open_connections: IntGauge::new(
                "open_connections",
                "Connections open on the MCP listener now (TLS handshakes included).",
            )?,
            policy_revision: prometheus::IntGaugeVec::new(
                Opts::new("policy_revision_info", "The loaded policy set's content hash (1 for the current revision)."),
                &["revision"],
            )?,
            decision_log_dropped: prometheus::IntCounter::new(
                "decision_log_dropped_total",
                "Decision-log events dropped because the writer fell behind (queue full).",
            )?,
            state_duration: histogram(
                "state_operation_duration_seconds",
                "Time of one shared-state operation (DPoP replay check, session bind/touch/end, ping), by backend and operation.",
                &["backend", "op"],
            )?,
            state_errors: counter(
                "state_errors_total",
                "Shared-state operations that failed (the request was refused with 503), by backend, operation and kind (timeout, unavailable, protocol).",
                &["backend", "op", "kind"],
            )?,
            state_up: IntGaugeVec::new(
                Opts::new(
                    "state_backend_up",
                    "1 when the last shared-state operation or health check succeeded, else 0.",
                ),
                &["backend"],
            )?,
            tool_labels: RwLock::new(HashSet::new()),
            registry,
        };
        m.registry.register(Box::new(m.request_duration.clone()))?;
        m.registry.register(Box::new(m.policy_eval_duration.clone()))?;
        m.registry.register(Box::new(m.decisions.clone()))?;
        m.registry.register(Box::new(m.rejections.clone()))?;
        m.registry.register(Box::new(m.upstream_duration.clone()))?;
        m.registry.register(Box::new(m.upstream_errors.clone()))?;
        m.registry.register(Box::new(m.active_streams.clone()))?;
        m.registry.register(Box::new(m.upstream_circuit_state.clone()))?;
        m.registry.register(Box::new(m.upstream_circuit_transitions.clone()))?;
        m.registry.register(Box::new(m.policy_reloads.clone()))?;
        m.registry.register(Box::new(m.list_items.clone()))?;
        m.registry.register(Box::new(m.authn_duration.clone()))?;
        m.registry.register(Box::new(m.dpop_replay_entries.clone()))?;
        m.registry.register(Box::new(m.svid_updates.clone()))?;
        m.registry.register(Box::new(m.svid_expiry.clone()))?;
        m.registry.register(Box::new(m.tls_handshakes.clone()))?;
        m.registry.register(Box::new(m.policy_cache.clone()))?;
        m.registry.register(Box::new(m.sessions.clone()))?;
        m.registry.register(Box::new(m.outbound_token_requests.clone()))?;
        m.registry.register(Box::new(m.outbound_token_duration.clone()))?;
        m.registry.register(Box::new(m.outbound_token_expiry.clone()))?;
        m.registry.register(Box::new(m.connection_errors.clone()))?;
        m.registry.register(Box::new(m.open_connections.clone()))?;
        m.registry.register(Box::new(m.policy_revision.clone()))?;
        m.registry.register(Box::new(m.decision_log_dropped.clone()))?;
        m.registry.register(Box::new(m.state_duration.clone()))?;
        m.registry.register(Box::new(m.state_errors.clone()))?;
        m.registry.register(Box::new(m.state_up.clone()))?;
        Ok(m)
    }

    /// The `method` label for a client-supplied method name.
    pub fn method_label(method: Option<&str>) -> &'static str {
        match method {
            None => "none",
            Some(m) => KNOWN_METHODS.iter().find(|k| **k == m).copied().unwrap_or("other"),
        }
    }

    /// The `tool` label, bounded in cardinality.
    pub fn tool_label(&self, tool: Option<&str>) -> String {
        let Some(tool) = tool else { return String::new() };
        if self.tool_labels.read().is_ok_and(|seen| seen.contains(tool)) {
            return tool.to_owned();
        }
        let printable = tool.len() <= 64 && tool.bytes().all(|b| b.is_ascii_graphic());
        let Ok(mut seen) = self.tool_labels.write() else { return "other".into() };
        if seen.contains(tool) || (printable && seen.len() < MAX_TOOL_LABELS && seen.insert(tool.to_owned())) {
            return tool.to_owned();
        }
        "other".into()
    }

    /// The text exposition format, for `/metrics`.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}
