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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Why a proof could not be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayRejection {
    /// The same (jti, htu) was accepted before and is still inside its window.
    Replayed,
    /// The cache holds its maximum of live entries.
    Full,
    /// The proof's key holds its maximum of live entries.
    KeyQuota,
}

pub struct ReplayCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    shard_hasher: RandomState,
    /// Live entries per signing key (hash of its `jkt`), sharded by that hash.
    owners: Box<[Mutex<HashMap<u64, u32>>]>,
    per_key: u32,
    /// The second of the last sweep a quota refusal triggered.
    last_full_sweep: AtomicU64,
}

/// An entry's expiry and the key that made it.
#[derive(Clone, Copy)]
struct Seen {
    expires_at: u64,
    owner: u64,
}

#[derive(Default)]
struct Shard {
    /// Digest of (jti, htu) → last second (Unix) at which the proof could still be
    /// accepted, and its signing key.
    entries: HashMap<[u8; 32], Seen>,
    /// The smallest expiry in `entries` (`u64::MAX` when empty): no sweep before then.
    next_expiry: u64,
}

const MAX_SHARDS: usize = 16;

impl ReplayCache {
    /// A cache for at most `capacity` live entries (at least one), at most `per_key` of
    /// them from one signing key.
    pub fn new(capacity: usize, per_key: usize) -> Self {
        let capacity = capacity.max(1);
        let shards = MAX_SHARDS.min(capacity);
        ReplayCache {
            shards: (0..shards).map(|_| Mutex::new(Shard { entries: HashMap::new(), next_expiry: u64::MAX })).collect(),
            per_shard: capacity.div_ceil(shards),
            shard_hasher: RandomState::new(),
            owners: (0..MAX_SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_key: u32::try_from(per_key.max(1)).unwrap_or(u32::MAX),
            last_full_sweep: AtomicU64::new(0),
        }
    }

    /// The owner id of a signing key's thumbprint (hashed with the per-process secret,
    /// so a client cannot pick thumbprints that collide with another's).
    pub fn owner_of(&self, jkt: &str) -> u64 {
        self.shard_hasher.hash_one(jkt)
    }

    /// Records `key` as seen until `expires_at` (inclusive) for `owner`, unless it is
    /// already recorded and unexpired, the cache is full, or `owner` holds its quota.
    pub fn record(&self, key: [u8; 32], owner: u64, expires_at: u64, now: u64) -> Result<(), ReplayRejection> {
        match self.try_record(key, owner, expires_at, now) {
            // The key's expired entries may sit unswept in other shards: sweep them all
            // (at most once a second, with no shard lock held) and look again.
            Err(ReplayRejection::KeyQuota) if self.last_full_sweep.fetch_max(now, Ordering::Relaxed) < now => {
                self.sweep(now);
                self.try_record(key, owner, expires_at, now)
            }
            other => other,
        }
    }

    fn try_record(&self, key: [u8; 32], owner: u64, expires_at: u64, now: u64) -> Result<(), ReplayRejection> {
        let index = (self.shard_hasher.hash_one(key) % self.shards.len() as u64) as usize;
        let Some(shard) = self.shards.get(index) else {
            return Err(ReplayRejection::Full);
        };
        // A panic while holding the lock cannot leave a half-updated map (each operation
        // below is one HashMap call), so a poisoned shard is still consistent.
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if now > shard.next_expiry {
            self.sweep_shard(&mut shard, now);
        }
        if let Some(seen) = shard.entries.get(&key)
            && seen.expires_at >= now
        {
            return Err(ReplayRejection::Replayed);
        }
        if shard.entries.len() >= self.per_shard && !shard.entries.contains_key(&key) {
            return Err(ReplayRejection::Full);
        }
        {
            let mut owners = self.owner_shard(owner);
            let held = owners.entry(owner).or_insert(0);
            if *held >= self.per_key {
                return Err(ReplayRejection::KeyQuota);
            }
            *held += 1;
        }
        if let Some(old) = shard.entries.insert(key, Seen { expires_at, owner }) {
            // An expired entry not yet swept: its owner no longer holds it.
            self.release(old.owner);
        }
        shard.next_expiry = shard.next_expiry.min(expires_at);
        Ok(())
    }

    /// Drops every expired entry now, in all shards (inserts sweep their own shard lazily;
    /// a periodic call keeps memory low after a burst).
    pub fn sweep(&self, now: u64) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            self.sweep_shard(&mut shard, now);
        }
    }

    /// Live entries `owner` holds, for tests.
    #[cfg(test)]
    pub fn held_by(&self, owner: u64) -> u32 {
        self.owner_shard(owner).get(&owner).copied().unwrap_or(0)
    }

    fn owner_shard(&self, owner: u64) -> std::sync::MutexGuard<'_, HashMap<u64, u32>> {
        let index = (owner % self.owners.len() as u64) as usize;
        // `owners` has MAX_SHARDS entries, so the index is always in range.
        self.owners[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn release(&self, owner: u64) {
        let mut owners = self.owner_shard(owner);
        if let Some(held) = owners.get_mut(&owner) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                owners.remove(&owner);
            }
        }
    }

    fn sweep_shard(&self, shard: &mut Shard, now: u64) {
        shard.entries.retain(|_, seen| {
            let live = seen.expires_at >= now;
            if !live {
                self.release(seen.owner);
            }
            live
        });
        shard.next_expiry = shard.entries.values().map(|s| s.expires_at).min().unwrap_or(u64::MAX);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn second_sighting_is_a_replay_until_expiry() {
        let cache = ReplayCache::new(100, 100);
        assert_eq!(cache.record(key(1), 0, 125, 100), Ok(()));
        assert_eq!(cache.record(key(1), 0, 125, 110), Err(ReplayRejection::Replayed));
        assert_eq!(cache.record(key(1), 0, 125, 125), Err(ReplayRejection::Replayed));
        assert_eq!(cache.record(key(1), 0, 160, 126), Ok(()));
    }

    #[test]
    fn full_cache_fails_closed_until_entries_expire() {
        let cache = ReplayCache::new(1, 1);
        assert_eq!(cache.capacity(), 1);
        assert_eq!(cache.record(key(1), 0, 125, 100), Ok(()));
        assert_eq!(cache.record(key(2), 0, 125, 100), Err(ReplayRejection::Full));
        assert_eq!(cache.record(key(2), 0, 150, 126), Ok(()));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn sweeps_expired_entries() {
        let cache = ReplayCache::new(1000, 1000);
        for n in 0..50 {
            cache.record(key(n), 0, 100 + u64::from(n), 90).unwrap();
        }
        assert_eq!(cache.len(), 50);
        cache.sweep(124);
        assert_eq!(cache.len(), 26);
        cache.sweep(1_000);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn inserts_sweep_their_shard_lazily() {
        let cache = ReplayCache::new(1, 1);
        assert_eq!(cache.record(key(1), 0, 110, 100), Ok(()));
        assert_eq!(cache.record(key(2), 0, 200, 110), Err(ReplayRejection::Full));
        assert_eq!(cache.record(key(2), 0, 200, 111), Ok(()));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.record(key(1), 0, 210, 111), Err(ReplayRejection::Full));
    }

    #[test]
    fn capacity_is_spread_over_shards() {
        let cache = ReplayCache::new(1_000, 1_000);
        assert_eq!(cache.capacity(), 1_008);
        let mut accepted = 0;
        for n in 0..2_000u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&n.to_be_bytes());
            if cache.record(k, 0, 1_000, 0).is_ok() {
                accepted += 1;
            }
        }
        assert!(accepted <= cache.capacity());
        assert!(accepted > 900, "{accepted}");
    }

    #[test]
    fn one_key_cannot_fill_the_cache_for_others() {
        let cache = ReplayCache::new(100, 3);
        // A key at its quota whose entries expired (unswept, in any shard) is not refused.
        let early = cache.owner_of("early-jkt");
        for n in 0..3 {
            assert_eq!(cache.record(key(100 + n), early, 110, 100), Ok(()));
        }
        assert_eq!(cache.record(key(103), early, 110, 101), Err(ReplayRejection::KeyQuota));
        assert_eq!(cache.record(key(103), early, 120, 111), Ok(()));
        cache.sweep(1_000);
        let (greedy, honest) = (cache.owner_of("greedy-jkt"), cache.owner_of("honest-jkt"));
        for n in 0..3 {
            assert_eq!(cache.record(key(n), greedy, 125, 100), Ok(()));
        }
        assert_eq!(cache.record(key(3), greedy, 125, 100), Err(ReplayRejection::KeyQuota));
        assert_eq!(cache.record(key(4), honest, 125, 100), Ok(()), "another key is still served");
        assert_eq!(cache.held_by(greedy), 3);
        // A replay is a replay, whoever sends it, and costs no quota.
        assert_eq!(cache.record(key(4), greedy, 125, 101), Err(ReplayRejection::Replayed));
        // Once its entries expire, the greedy key may record again.
        assert_eq!(cache.record(key(5), greedy, 200, 126), Ok(()));
        // Expired entries in other shards are released by the next sweep.
        cache.sweep(126);
        assert_eq!(cache.held_by(greedy), 1, "expired entries still charged");
        assert_eq!(cache.held_by(honest), 0);
        cache.sweep(1_000);
        assert_eq!((cache.held_by(greedy), cache.len()), (0, 0));
    }
}
