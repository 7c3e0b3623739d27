//! The in-process backend (`state.backend: memory`, the default): the DPoP replay cache
//! ([`replay`]) and the session table in this process's memory. Right for one replica;
//! with several behind one Service each would remember only what it saw itself.

pub(crate) mod replay;

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

use super::{FirstUse, SessionLookup, StateFuture, StateStore};
use replay::{ReplayCache, ReplayRejection};

/// Enough for ≈ 8 000 proofs/s with the default 25 s window, ≈ 12 MiB.
pub const DEFAULT_REPLAY_CAPACITY: usize = 200_000;
/// Live replay entries one DPoP key may hold (≈ 1 000 proofs/s over a 25 s window).
pub const DEFAULT_REPLAY_ENTRIES_PER_KEY: usize = 25_000;

pub struct MemoryState {
    replay: ReplayCache,
    sessions: DashMap<Arc<str>, Entry>,
    idle_secs: u64,
    max_sessions: usize,
}

struct Entry {
    owner: [u8; 32],
    last_seen: u64,
}

impl MemoryState {
    pub fn new(replay_capacity: usize, session_idle_secs: u64, max_sessions: usize) -> Self {
        Self::with_replay_quota(replay_capacity, DEFAULT_REPLAY_ENTRIES_PER_KEY, session_idle_secs, max_sessions)
    }

    /// As [`MemoryState::new`], with at most `per_key` live replay entries per DPoP key.
    pub fn with_replay_quota(
        replay_capacity: usize,
        per_key: usize,
        session_idle_secs: u64,
        max_sessions: usize,
    ) -> Self {
        MemoryState {
            replay: ReplayCache::new(replay_capacity, per_key),
            sessions: DashMap::new(),
            idle_secs: session_idle_secs,
            max_sessions,
        }
    }

    fn first_use_now(&self, key: [u8; 32], jkt: &str, expires_at: u64, now: u64) -> FirstUse {
        match self.replay.record(key, self.replay.owner_of(jkt), expires_at, now) {
            Ok(()) => FirstUse::New,
            Err(ReplayRejection::Replayed) => FirstUse::Seen,
            Err(ReplayRejection::Full) => FirstUse::Full,
            Err(ReplayRejection::KeyQuota) => FirstUse::KeyQuota,
        }
    }

    fn bind_now(&self, id: &str, owner: [u8; 32], now: u64) {
        if self.sessions.len() >= self.max_sessions {
            let idle = self.idle_secs;
            self.sessions.retain(|_, e| now.saturating_sub(e.last_seen) <= idle);
        }
        if self.sessions.len() >= self.max_sessions {
            tracing::warn!(max = self.max_sessions, "session table full; the new session is not recorded");
        } else {
            self.sessions.insert(Arc::from(id), Entry { owner, last_seen: now });
        }
    }

    fn touch_now(&self, id: &str, owner: [u8; 32], now: u64) -> SessionLookup {
        let Some(mut entry) = self.sessions.get_mut(id) else { return SessionLookup::Unknown };
        if now.saturating_sub(entry.last_seen) > self.idle_secs {
            drop(entry);
            self.sessions.remove(id);
            return SessionLookup::Unknown;
        }
        if entry.owner != owner {
            return SessionLookup::Foreign;
        }
        entry.last_seen = now;
        SessionLookup::Owned
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl StateStore for MemoryState {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn first_use<'a>(&'a self, key: [u8; 32], jkt: &'a str, expires_at: u64, now: u64) -> StateFuture<'a, FirstUse> {
        let answer = self.first_use_now(key, jkt, expires_at, now);
        Box::pin(async move { Ok(answer) })
    }

    fn bind_session<'a>(&'a self, id: &'a str, owner: [u8; 32]) -> StateFuture<'a, ()> {
        self.bind_now(id, owner, now());
        Box::pin(async { Ok(()) })
    }

    fn touch_session<'a>(&'a self, id: &'a str, owner: [u8; 32]) -> StateFuture<'a, SessionLookup> {
        let answer = self.touch_now(id, owner, now());
        Box::pin(async move { Ok(answer) })
    }

    fn end_session<'a>(&'a self, id: &'a str) -> StateFuture<'a, ()> {
        self.sessions.remove(id);
        Box::pin(async { Ok(()) })
    }

    fn maintain(&self, now: u64) -> StateFuture<'_, ()> {
        self.replay.sweep(now);
        Box::pin(async { Ok(()) })
    }

    fn replay_entries(&self) -> Option<usize> {
        Some(self.replay.len())
    }

    fn session_count(&self) -> Option<usize> {
        Some(self.sessions.len())
    }
}

impl std::fmt::Debug for MemoryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryState")
            .field("replay_capacity", &self.replay.capacity())
            .field("idle", &Duration::from_secs(self.idle_secs))
            .field("max_sessions", &self.max_sessions)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn another_owner_is_foreign_and_unknown_ids_are_unknown() {
        let s = MemoryState::new(10, 60, 2);
        s.bind_now("s1", owner(1), 1_000);
        assert_eq!(s.touch_now("s1", owner(1), 1_000), SessionLookup::Owned);
        assert_eq!(s.touch_now("s1", owner(2), 1_000), SessionLookup::Foreign);
        assert_eq!(s.touch_now("s2", owner(1), 1_000), SessionLookup::Unknown);
    }

    #[test]
    fn use_renews_and_idleness_forgets() {
        let s = MemoryState::new(10, 60, 2);
        s.bind_now("s1", owner(1), 1_000);
        assert_eq!(s.touch_now("s1", owner(1), 1_050), SessionLookup::Owned);
        assert_eq!(s.touch_now("s1", owner(1), 1_110), SessionLookup::Owned, "renewed at 1050");
        assert_eq!(s.touch_now("s1", owner(2), 1_150), SessionLookup::Foreign);
        assert_eq!(s.touch_now("s1", owner(1), 1_171), SessionLookup::Unknown, "a foreign look does not renew");
        assert_eq!(s.session_count(), Some(0));
    }

    #[test]
    fn a_full_table_drops_idle_sessions_first_and_records_nothing_beyond() {
        let s = MemoryState::new(10, 60, 2);
        s.bind_now("s1", owner(1), 1_000);
        s.bind_now("s2", owner(1), 1_030);
        s.bind_now("s3", owner(1), 1_030);
        assert_eq!(s.touch_now("s3", owner(1), 1_030), SessionLookup::Unknown, "no room: not recorded");
        s.bind_now("s3", owner(1), 1_061);
        assert_eq!(s.touch_now("s3", owner(1), 1_061), SessionLookup::Owned);
        assert_eq!(s.touch_now("s1", owner(1), 1_061), SessionLookup::Unknown);
    }

    #[test]
    fn replay_keys_are_new_once() {
        let s = MemoryState::new(1, 60, 2);
        assert_eq!(s.first_use_now([1; 32], "jkt", 125, 100), FirstUse::New);
        assert_eq!(s.first_use_now([1; 32], "jkt", 125, 101), FirstUse::Seen);
        assert_eq!(s.first_use_now([2; 32], "jkt", 125, 101), FirstUse::Full);
    }
}
