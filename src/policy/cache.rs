//! Decisions reused for inputs that agree on everything the policy set can read
//! (`reads`): the key is the projection of the input onto those paths, compared byte
//! for byte, so two inputs share a decision only when the policies could not tell them
//! apart. A JSON-RPC id, a session id or a token's `jti` that no policy reads no longer
//! makes every message a new evaluation.

use dashmap::DashMap;
use serde_json::Value;

use super::reads::InputReads;
use crate::context::Decision;

/// A key longer than this (large tool arguments) is not cached: the cache holds
/// decisions, not request bodies.
const MAX_KEY_BYTES: usize = 4096;

pub struct DecisionCache {
    /// Sorted, none a prefix of another.
    paths: Vec<Vec<String>>,
    entries: DashMap<Box<[u8]>, Decision>,
    max_entries: usize,
}

impl DecisionCache {
    /// `None` when the set cannot be cached (impure builtins) or reads its whole input
    /// (every message would be its own key).
    pub fn new(reads: &InputReads, max_entries: usize) -> Option<DecisionCache> {
        let InputReads::Paths(paths) = reads else { return None };
        if max_entries == 0 || paths.iter().any(Vec::is_empty) {
            return None;
        }
        Some(DecisionCache { paths: paths.clone(), entries: DashMap::new(), max_entries })
    }

    /// The input's projection onto the read paths: for each path a tag byte (absent,
    /// present) and the value's JSON. `None` when it would be too long to keep.
    pub fn key(&self, input: &Value) -> Option<Box<[u8]>> {
        let mut key = Vec::with_capacity(256);
        for path in &self.paths {
            let mut value = Some(input);
            for step in path {
                value = value.and_then(|v| v.as_object()).and_then(|o| o.get(step));
            }
            match value {
                None => key.push(0),
                Some(v) => {
                    key.push(1);
                    serde_json::to_writer(&mut key, v).ok()?;
                }
            }
            if key.len() > MAX_KEY_BYTES {
                return None;
            }
        }
        Some(key.into_boxed_slice())
    }

    pub fn get(&self, key: &[u8]) -> Option<Decision> {
        self.entries.get(key).map(|d| d.clone())
    }

    pub fn insert(&self, key: Box<[u8]>, decision: Decision) {
        // Bounded: past the cap start over (an attacker can only cost evaluations).
        if self.entries.len() >= self.max_entries {
            self.entries.clear();
        }
        self.entries.insert(key, decision);
    }
}
