//! The one place where the stages are put in order.

use std::sync::Arc;

use http::Uri;
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

use super::edge::EdgeLayer;
use super::guard::GuardLayer;
use super::upstream::{Upstream, UpstreamTimeouts};
use crate::auth::config::AuthSettings;
use crate::auth::jwt_svid::JwtSvidVerifier;
use crate::auth::metadata::ResourceMetadata;
use crate::auth::stage::CredentialsStage;
use crate::auth::stage::JwtSvidCheck;
use crate::body::Body;
use crate::identity::IdentityLayer;
use crate::identity::config::IdentitySettings;
use crate::mcp::{InspectLimits, InspectStage, MirrorCheck, ParamMirrors, SessionOptions, SessionStage, Unverified};
use crate::metrics::Metrics;
use crate::policy::{AnswerFilterStage, AnswerOptions, PolicyOptions, PolicyStage, PolicyStore};
use crate::stage::StageLayer;
use crate::state::SharedState;

/// Everything the stack needs, already validated.
#[derive(Clone)]
pub struct StackConfig {
    pub mcp_path: String,
    pub allowed_origins: Vec<String>,
    /// `Host` names accepted; `None`: not checked.
    pub allowed_hosts: Option<Vec<super::host::HostPattern>>,
    /// Loopback identity, SPIFFE material, JWT-SVID settings.
    pub identity: Arc<IdentitySettings>,
    pub limits: InspectLimits,
    pub caller_limits: crate::limits::CallerLimits,
    /// OPA-shaped decision log; `None`: decisions only in the tracing log.
    pub decision_log: Option<crate::policy::decision_log::DecisionLogOptions>,
    pub policy: PolicyOptions,
    pub upstream_url: Uri,
    pub upstream_timeouts: UpstreamTimeouts,
    /// When to stop calling a tool server that keeps failing.
    pub breaker: super::breaker::BreakerOptions,
    pub pool_max_idle_per_host: usize,
    /// Session binding; `None`: off.
    pub sessions: Option<SessionOptions>,
    /// The header that tells the tool server the caller's SPIFFE ID; `None`: not told.
    pub upstream_identity_header: Option<http::HeaderName>,
    /// mTLS to an `https` upstream.
    pub upstream_tls: Option<rustls::ClientConfig>,
    /// The credentials stage's settings; `None`: no credentials are checked.
    pub auth: Option<Arc<AuthSettings>>,
    /// `Mcp-Param-*` headers of a tool whose schema was never listed here.
    pub unverified_param_headers: Unverified,
    /// How answers to 2026-07-28 requests are rewritten.
    pub answers: AnswerOptions,
    /// The agent's credentials, obtained by this sidecar (`upstream.credentials`).
    pub outbound: Option<Arc<crate::outbound::OutboundSettings>>,
}

pub type ProxyService = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, std::convert::Infallible>;

pub fn build_stack(
    config: &StackConfig,
    store: Arc<PolicyStore>,
    metrics: Arc<Metrics>,
    outbound: Option<Arc<crate::outbound::OutboundCredentials>>,
    state: Arc<SharedState>,
    breaker: Arc<super::breaker::Breaker>,
) -> ProxyService {
    let upstream = Upstream::new(
        config.upstream_url.clone(),
        config.upstream_timeouts,
        config.pool_max_idle_per_host,
        metrics.clone(),
        config.upstream_tls.clone(),
        breaker,
        config.answers.max_answer_bytes,
    )
    .with_identity_header(config.upstream_identity_header.clone())
    .with_outbound(outbound);
    let metadata = config.auth.as_ref().map(|auth| {
        let algs: Vec<&str> = auth.dpop.algs().iter().map(|a| a.name()).collect();
        ResourceMetadata::new(&auth.public_url, &auth.issuers, auth.dpop_required, &algs)
    });
    let identity = &config.identity;
    let jwt_svid = identity.jwt_svid.as_ref().map(|settings| {
        let mut verifier =
            JwtSvidVerifier::new(settings.audiences.clone(), identity.trust_domains.clone(), identity.store.clone());
        for (td, issuer) in &settings.oidc_discovery {
            // The URL was checked with the configuration; a client that cannot be built
            // leaves the domain without OIDC keys (its JWT-SVIDs are refused), logged.
            if let Err(e) = verifier.add_oidc(td, issuer) {
                tracing::error!(trust_domain = %td, error = %e, "OIDC discovery provider unusable");
            }
        }
        JwtSvidCheck { header: settings.header.clone(), required: settings.required, verifier }
    });
    // Learned by the answer filter (`tools/list`, `server/discover`), checked by inspection.
    let mirror_check = MirrorCheck {
        mirrors: Arc::new(ParamMirrors::default()),
        versions: Arc::default(),
        unverified: config.unverified_param_headers,
    };
    let decision_log = config.decision_log.as_ref().and_then(|options| {
        match crate::policy::decision_log::DecisionLog::start(options, metrics.clone()) {
            Ok(log) => Some(log),
            // Checked writable with the configuration; a later failure is loud, not fatal.
            Err(e) => {
                tracing::error!(error = %e, "the decision log cannot be opened");
                None
            }
        }
    });
    let credentials =
        CredentialsStage::new(config.auth.clone(), jwt_svid, metadata.as_ref(), metrics.clone(), state.clone());
    let service = ServiceBuilder::new()
        // Decision id, span, request metric; every refusal below becomes an answer here.
        .layer(EdgeLayer::new(metrics.clone(), config.policy.expose_reasons))
        // Cheap refusals first: foreign Host and Origin (DNS rebinding), wrong path.
        .layer(GuardLayer::new(
            &config.mcp_path,
            &config.allowed_origins,
            config.allowed_hosts.clone().map(super::host::AllowedHosts::new),
            metadata,
        ))
        // Who is calling, before anything about what they ask is read.
        .layer(IdentityLayer::new(identity.local.clone()))
        // A JWT-SVID; an access token from a trusted issuer, bound by DPoP to the
        // caller's key and to the caller's SPIFFE ID.
        .layer(StageLayer(credentials))
        // Bounded read, strict JSON-RPC, the era and its header rules, typed McpRequest;
        // original bytes kept.
        .layer(StageLayer(InspectStage::new(config.limits, mirror_check.clone())))
        // Each caller's request rate (in this process, or shared by replicas in the
        // state backend) and open streams, before any policy work.
        .layer(StageLayer(crate::limits::CallerLimitStage::new(config.caller_limits, state.clone())))
        // A (legacy) session id only from the caller that created it (bindings in the
        // state backend, shared by replicas on Redis).
        .layer(StageLayer(SessionStage::new(config.sessions, state)))
        // Every message decided; any error or undefined denies.
        .layer(StageLayer(
            PolicyStage::new(store.clone(), metrics.clone(), config.policy).with_decision_log(decision_log),
        ))
        // Answers checked on the way back (JSON and SSE): lists show only what the caller
        // may use; 2026-07-28 answers made private to caches, their input requests decided.
        .layer(StageLayer(AnswerFilterStage::new(store, metrics, mirror_check.clone(), config.answers)))
        .service(upstream);
    BoxCloneSyncService::new(service)
}
