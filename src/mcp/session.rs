//! Sessions bound to the caller that created them (design §2): the `Mcp-Session-Id` an
//! upstream hands out in answer to a caller is recorded with that caller's identity
//! (SPIFFE ID, token issuer and subject, DPoP key thumbprint), and every later message
//! with that id must come from the same caller. Anyone else — and any id this sidecar
//! never saw handed out — gets 404, the answer MCP gives for an unknown session, so a
//! leaked session id is worth nothing and a client re-initializes.
//!
//! The SVID's own certificate is deliberately not part of the owner: SVIDs rotate hourly,
//! sessions may outlive them.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, StatusCode};
use tower::Service;

use crate::body::Body;
use crate::context::{Era, McpRequest, PeerIdentity, VerifiedToken};
use crate::error::{Rejection, Stage, code};
use crate::stage::{Next, PipelineStage, StageFuture};
use crate::state::{SessionLookup, SessionOwner, SharedState, StateError};

#[derive(Debug, Clone, Copy)]
pub struct SessionOptions {
    /// A session unused this long is forgotten (its id then answers 404).
    pub idle_timeout: Duration,
    /// Sessions remembered at most (memory backend); past it idle ones are dropped first,
    /// and a new session that still does not fit is not recorded (its id will answer 404).
    pub max_sessions: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions { idle_timeout: Duration::from_secs(24 * 3600), max_sessions: 100_000 }
    }
}

/// Who is calling, as a session remembers its creator.
fn owner_of(extensions: &http::Extensions) -> SessionOwner {
    let spiffe_id = match extensions.get::<PeerIdentity>() {
        Some(PeerIdentity::Spiffe(id)) => Some(id.spiffe_id.clone()),
        _ => None,
    };
    // Shared, not copied: this runs for every message.
    let token = extensions.get::<VerifiedToken>();
    SessionOwner {
        spiffe_id,
        issuer: token.map(|t| t.issuer.clone()),
        subject: token.and_then(|t| t.subject.clone()),
        jkt: token.and_then(|t| t.dpop_jkt.clone()),
    }
}

/// The session stage; `Off` when binding is turned off. The bindings themselves live in
/// the state backend (this process, or Redis shared by replicas).
#[derive(Clone)]
pub enum SessionStage {
    Off,
    On(Arc<SharedState>),
}

impl SessionStage {
    pub fn new(options: Option<SessionOptions>, state: Arc<SharedState>) -> Self {
        match options {
            None => SessionStage::Off,
            Some(_) => SessionStage::On(state),
        }
    }
}

/// The backend could not answer: the session is neither confirmed nor denied, so the
/// request is refused (503), never passed on unchecked.
fn unavailable(e: &StateError) -> Rejection {
    Rejection::new(
        Stage::Session,
        "state_unavailable",
        StatusCode::SERVICE_UNAVAILABLE,
        code::REQUEST_REFUSED,
        format!("the session cannot be checked right now ({})", e.kind()),
    )
}

impl PipelineStage for SessionStage {
    fn call(&self, req: Request<Body>, mut next: Next) -> StageFuture {
        let SessionStage::On(state) = self else { return next.call(req) };
        // 2026-07-28 has no sessions: each modern request stands on its own credentials
        // (inspection removed any `Mcp-Session-Id` it carried), and nothing it is
        // answered with is bound.
        if req.extensions().get::<McpRequest>().is_some_and(|m| m.era == Era::Modern) {
            return next.call(req);
        }
        let state = state.clone();
        let owner = owner_of(req.extensions());
        let presented = req.extensions().get::<McpRequest>().and_then(|m| m.session_id.clone());
        let ends_session = req.method() == Method::DELETE;
        Box::pin(async move {
            // 1. A presented session id is known and the caller's (its idle expiry renewed).
            if let Some(id) = &presented {
                let reason = match state.touch_session(id, &owner).await.map_err(|e| unavailable(&e))? {
                    SessionLookup::Owned => None,
                    SessionLookup::Unknown => Some("session_unknown"),
                    SessionLookup::Foreign => {
                        tracing::warn!(
                            caller = owner.spiffe_id.as_deref(),
                            subject = owner.subject.as_deref(),
                            "a session id was presented by another caller than its creator"
                        );
                        Some("session_foreign")
                    }
                };
                if let Some(reason) = reason {
                    return Err(Rejection::new(
                        Stage::Session,
                        reason,
                        StatusCode::NOT_FOUND,
                        code::REQUEST_REFUSED,
                        "session not found",
                    ));
                }
            }
            let resp = next.call(req).await?;
            // 2. A session the upstream hands out belongs to this caller. Unrecorded, the
            //    client's next message would be refused: the answer is withheld instead,
            //    so the client sees the failure now and can retry the initialize.
            let issued = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok());
            if let Some(issued) = issued
                && presented.as_deref() != Some(issued)
            {
                state.bind_session(issued, &owner).await.map_err(|e| unavailable(&e))?;
            }
            // 3. A session ended by DELETE is forgotten.
            if ends_session
                && resp.status().is_success()
                && let Some(id) = &presented
                && let Err(e) = state.end_session(id).await
            {
                // The upstream ended it; a binding left behind expires when idle.
                tracing::warn!(error = %e, "an ended session could not be forgotten");
            }
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{IdentitySource, SpiffeIdentity};

    #[test]
    fn the_owner_is_the_proven_spiffe_id_else_nobody() {
        let mut ext = http::Extensions::new();
        assert_eq!(owner_of(&ext), SessionOwner::default());
        ext.insert(PeerIdentity::Spiffe(SpiffeIdentity {
            spiffe_id: "spiffe://td/agent".into(),
            trust_domain: "td".into(),
            path: "/agent".into(),
            source: IdentitySource::Mtls,
        }));
        let owner = owner_of(&ext);
        assert_eq!(owner.spiffe_id.as_deref(), Some("spiffe://td/agent"));
        assert_eq!((owner.issuer, owner.subject, owner.jkt), (None, None, None));
    }
}
