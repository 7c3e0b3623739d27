//! The `jti` replay cache (RFC 9449 §11.1): a proof is accepted once per (jti, htu)
//! while its `iat` is inside the acceptance window; after that the `iat` check refuses it
//! anyway, so the entry can go.
//!
//! Memory is bounded twice: each entry is a fixed 32-byte digest of (jti, htu) plus an
//! expiry, whatever the client sent, and the number of entries has a hard cap. When the
//! cap is reached with live entries the cache **fails closed**: new proofs are refused
//! (`ReplayCacheFull`) until entries expire — at most lifetime + 2 × skew later (40 s by
//! default) — because accepting a proof we could not remember would make it replayable.
//!
//! The map is split into shards, each behind its own mutex, so concurrent requests rarely
//! contend. That is the layout `dashmap` has, written out here because the cache needs
//! "sweep this shard if due, check its count, insert" as one step under one lock, which
//! `dashmap` does not expose: with it, the cap would be a global counter raced by inserts
//! and expiry a separate pass over every shard. Each shard holds `capacity / shards`
//! entries. The shard is chosen with a per-process random hash, so a client cannot grind
//! `jti`s that all land in one shard and fill it 16 times faster. Expired entries are swept
//! from a shard when its earliest expiry has passed, i.e. at most once per second per
//! shard, each sweep O(entries in that shard).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Mutex, PoisonError};

/// Why a proof could not be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayRejection {
    /// The same (jti, htu) was accepted before and is still inside its window.
    Replayed,
    /// The cache holds its maximum of live entries.
    Full,
}

pub struct ReplayCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    shard_hasher: RandomState,
}

#[derive(Default)]
struct Shard {
    /// Digest of (jti, htu) → last second (Unix) at which the proof could still be accepted.
    entries: HashMap<[u8; 32], u64>,
    /// The smallest expiry in `entries` (`u64::MAX` when empty): no sweep before then.
    next_expiry: u64,
}

const MAX_SHARDS: usize = 16;

impl ReplayCache {
    /// A cache for at most `capacity` live entries (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let shards = MAX_SHARDS.min(capacity);
        ReplayCache {
            shards: (0..shards).map(|_| Mutex::new(Shard { entries: HashMap::new(), next_expiry: u64::MAX })).collect(),
            per_shard: capacity.div_ceil(shards),
            shard_hasher: RandomState::new(),
        }
    }

    /// Records `key` as seen until `expires_at` (inclusive), unless it is already recorded
    /// and unexpired, or the cache is full.
    pub fn record(&self, key: [u8; 32], expires_at: u64, now: u64) -> Result<(), ReplayRejection> {
        let index = (self.shard_hasher.hash_one(key) % self.shards.len() as u64) as usize;
        let Some(shard) = self.shards.get(index) else {
            return Err(ReplayRejection::Full);
        };
        // A panic while holding the lock cannot leave a half-updated map (each operation
        // below is one HashMap call), so a poisoned shard is still consistent.
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if now > shard.next_expiry {
            shard.sweep(now);
        }
        if let Some(&seen_until) = shard.entries.get(&key)
            && seen_until >= now
        {
            return Err(ReplayRejection::Replayed);
        }
        if shard.entries.len() >= self.per_shard && !shard.entries.contains_key(&key) {
            return Err(ReplayRejection::Full);
        }
        shard.entries.insert(key, expires_at);
        shard.next_expiry = shard.next_expiry.min(expires_at);
        Ok(())
    }

    /// Drops every expired entry now, in all shards (inserts sweep their own shard lazily;
    /// a periodic call keeps memory low after a burst).
    pub fn sweep(&self, now: u64) {
        for shard in self.shards.iter() {
            shard.lock().unwrap_or_else(PoisonError::into_inner).sweep(now);
        }
    }

    /// Live and not yet swept entries, for metrics and tests.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).entries.len()).sum()
    }

    /// The hard cap on entries.
    pub fn capacity(&self) -> usize {
        self.per_shard * self.shards.len()
    }
}

impl Shard {
    fn sweep(&mut self, now: u64) {
        self.entries.retain(|_, expires_at| *expires_at >= now);
        self.next_expiry = self.entries.values().copied().min().unwrap_or(u64::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn second_sighting_is_a_replay_until_expiry() {
        let cache = ReplayCache::new(100);
        assert_eq!(cache.record(key(1), 125, 100), Ok(()));
        assert_eq!(cache.record(key(1), 125, 110), Err(ReplayRejection::Replayed));
        assert_eq!(cache.record(key(1), 125, 125), Err(ReplayRejection::Replayed));
        assert_eq!(cache.record(key(1), 160, 126), Ok(()));
    }

    #[test]
    fn full_cache_fails_closed_until_entries_expire() {
        let cache = ReplayCache::new(1);
        assert_eq!(cache.capacity(), 1);
        assert_eq!(cache.record(key(1), 125, 100), Ok(()));
        assert_eq!(cache.record(key(2), 125, 100), Err(ReplayRejection::Full));
        assert_eq!(cache.record(key(2), 150, 126), Ok(()));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn sweeps_expired_entries() {
        let cache = ReplayCache::new(1000);
        for n in 0..50 {
            cache.record(key(n), 100 + u64::from(n), 90).unwrap();
        }
        assert_eq!(cache.len(), 50);
        cache.sweep(124);
        assert_eq!(cache.len(), 26);
        cache.sweep(1_000);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn inserts_sweep_their_shard_lazily() {
        let cache = ReplayCache::new(1);
        assert_eq!(cache.record(key(1), 110, 100), Ok(()));
        assert_eq!(cache.record(key(2), 200, 110), Err(ReplayRejection::Full));
        assert_eq!(cache.record(key(2), 200, 111), Ok(()));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.record(key(1), 210, 111), Err(ReplayRejection::Full));
    }

    #[test]
    fn capacity_is_spread_over_shards() {
        let cache = ReplayCache::new(1_000);
        assert_eq!(cache.capacity(), 1_008);
        let mut accepted = 0;
        for n in 0..2_000u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&n.to_be_bytes());
            if cache.record(k, 1_000, 0).is_ok() {
                accepted += 1;
            }
        }
        assert!(accepted <= cache.capacity());
        assert!(accepted > 900, "{accepted}");
    }
}
