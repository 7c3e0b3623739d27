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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use http::{Method, Request, StatusCode};
use tower::Service;

use crate::body::Body;
use crate::context::{Era, McpRequest, PeerIdentity, VerifiedToken};
use crate::error::{Rejection, Stage, code};
use crate::metrics::Metrics;
use crate::stage::{Next, PipelineStage, StageFuture};

#[derive(Debug, Clone, Copy)]
pub struct SessionOptions {
    /// A session unused this long is forgotten (its id then answers 404).
    pub idle_timeout: Duration,
    /// Sessions remembered at most; past it idle ones are dropped first, and a new
    /// session that still does not fit is not recorded (its id will answer 404).
    pub max_sessions: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions { idle_timeout: Duration::from_secs(24 * 3600), max_sessions: 100_000 }
    }
}

/// Who created a session.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    spiffe_id: Option<Arc<str>>,
    issuer: Option<Arc<str>>,
    subject: Option<Arc<str>>,
    jkt: Option<Arc<str>>,
}

impl Owner {
    fn of(extensions: &http::Extensions) -> Owner {
        let spiffe_id = match extensions.get::<PeerIdentity>() {
            Some(PeerIdentity::Spiffe(id)) => Some(id.spiffe_id.clone()),
            _ => None,
        };
        // Shared, not copied: this runs for every message.
        let token = extensions.get::<VerifiedToken>();
        Owner {
            spiffe_id,
            issuer: token.map(|t| t.issuer.clone()),
            subject: token.and_then(|t| t.subject.clone()),
            jkt: token.and_then(|t| t.dpop_jkt.clone()),
        }
    }
}

struct Entry {
    owner: Owner,
    last_seen: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    Unknown,
    Foreign,
}

/// The session table; `Off` when binding is turned off.
#[derive(Clone)]
pub enum SessionStage {
    Off,
    On(Arc<Sessions>),
}

pub struct Sessions {
    entries: DashMap<Arc<str>, Entry>,
    options: SessionOptions,
    metrics: Arc<Metrics>,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl SessionStage {
    pub fn new(options: Option<SessionOptions>, metrics: Arc<Metrics>) -> Self {
        match options {
            None => SessionStage::Off,
            Some(options) => SessionStage::On(Arc::new(Sessions { entries: DashMap::new(), options, metrics })),
        }
    }
}

impl Sessions {
    /// The session exists, is not idle past the timeout, and belongs to `owner`.
    fn check(&self, id: &str, owner: &Owner) -> Result<(), Refusal> {
        let now = now();
        let Some(mut entry) = self.entries.get_mut(id) else { return Err(Refusal::Unknown) };
        if now.saturating_sub(entry.last_seen) > self.options.idle_timeout.as_secs() {
            drop(entry);
            self.remove(id);
            return Err(Refusal::Unknown);
        }
        if entry.owner != *owner {
            return Err(Refusal::Foreign);
        }
        entry.last_seen = now;
        Ok(())
    }

    fn bind(&self, id: &str, owner: Owner) {
        let now = now();
        if self.entries.len() >= self.options.max_sessions {
            let idle = self.options.idle_timeout.as_secs();
            self.entries.retain(|_, e| now.saturating_sub(e.last_seen) <= idle);
        }
        if self.entries.len() >= self.options.max_sessions {
            tracing::warn!(max = self.options.max_sessions, "session table full; the new session is not recorded");
        } else {
            self.entries.insert(Arc::from(id), Entry { owner, last_seen: now });
        }
        self.metrics.sessions.set(i64::try_from(self.entries.len()).unwrap_or(i64::MAX));
    }

    fn remove(&self, id: &str) {
        self.entries.remove(id);
        self.metrics.sessions.set(i64::try_from(self.entries.len()).unwrap_or(i64::MAX));
    }
}

impl PipelineStage for SessionStage {
    fn call(&self, req: Request<Body>, mut next: Next) -> StageFuture {
        let SessionStage::On(sessions) = self else { return next.call(req) };
        // 2026-07-28 has no sessions: each modern request stands on its own credentials
        // (inspection removed any `Mcp-Session-Id` it carried), and nothing it is
        // answered with is bound.
        if req.extensions().get::<McpRequest>().is_some_and(|m| m.era == Era::Modern) {
            return next.call(req);
        }
        let sessions = sessions.clone();
        let owner = Owner::of(req.extensions());
        let presented = req.extensions().get::<McpRequest>().and_then(|m| m.session_id.clone());
        let ends_session = req.method() == Method::DELETE;
        Box::pin(async move {
            // 1. A presented session id is known and the caller's.
            if let Some(id) = &presented
                && let Err(refusal) = sessions.check(id, &owner)
            {
                let reason = match refusal {
                    Refusal::Unknown => "session_unknown",
                    Refusal::Foreign => {
                        tracing::warn!(
                            caller = owner.spiffe_id.as_deref(),
                            subject = owner.subject.as_deref(),
                            "a session id was presented by another caller than its creator"
                        );
                        "session_foreign"
                    }
                };
                return Err(Rejection::new(
                    Stage::Session,
                    reason,
                    StatusCode::NOT_FOUND,
                    code::REQUEST_REFUSED,
                    "session not found",
                ));
            }
            let resp = next.call(req).await?;
            // 2. A session the upstream hands out belongs to this caller.
            let issued = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok());
            if let Some(issued) = issued
                && presented.as_deref() != Some(issued)
            {
                sessions.bind(issued, owner);
            }
            // 3. A session ended by DELETE is forgotten.
            if ends_session
                && resp.status().is_success()
                && let Some(id) = &presented
            {
                sessions.remove(id);
            }
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(jkt: &str) -> Owner {
        Owner {
            spiffe_id: Some("spiffe://td/agent".into()),
            issuer: Some("https://kc/realms/r".into()),
            subject: Some("agent".into()),
            jkt: Some(jkt.into()),
        }
    }

    fn sessions(idle: Duration) -> Sessions {
        Sessions {
            entries: DashMap::new(),
            options: SessionOptions { idle_timeout: idle, max_sessions: 2 },
            metrics: Arc::new(Metrics::new().unwrap()),
        }
    }

    #[test]
    fn another_dpop_key_is_another_owner() {
        let s = sessions(Duration::from_secs(60));
        s.bind("s1", owner("key-a"));
        assert_eq!(s.check("s1", &owner("key-a")), Ok(()));
        assert_eq!(s.check("s1", &owner("key-b")), Err(Refusal::Foreign));
        assert_eq!(s.check("s2", &owner("key-a")), Err(Refusal::Unknown));
    }

    #[test]
    fn an_idle_session_is_forgotten() {
        let s = sessions(Duration::from_secs(60));
        s.bind("s1", owner("k"));
        s.entries.get_mut("s1").unwrap().last_seen -= 61;
        assert_eq!(s.check("s1", &owner("k")), Err(Refusal::Unknown));
        assert!(s.entries.is_empty());
    }

    #[test]
    fn a_full_table_drops_idle_sessions_first_and_records_nothing_beyond() {
        let s = sessions(Duration::from_secs(60));
        s.bind("s1", owner("k"));
        s.bind("s2", owner("k"));
        s.bind("s3", owner("k"));
        assert_eq!(s.check("s3", &owner("k")), Err(Refusal::Unknown), "no room: not recorded");
        s.entries.get_mut("s1").unwrap().last_seen -= 61;
        s.bind("s3", owner("k"));
        assert_eq!(s.check("s3", &owner("k")), Ok(()));
        assert_eq!(s.check("s1", &owner("k")), Err(Refusal::Unknown));
    }
}
