//! Decisions reused for inputs that agree on everything the policy set can read
//! (`reads`): the key is the projection of the input's regorus value onto those paths,
//! encoded injectively (a tag per type, lengths first, numbers as regorus prints them:
//! inputs with an integral float, which prints like the integer, are not keyed, see
//! `InputValue::keyable`), so two inputs share a decision only when the policies could
//! not tell them apart. A JSON-RPC id, a session id or a token's `jti` that no policy reads no longer
//! makes every message a new evaluation.

use dashmap::DashMap;
use regorus::Value;

use super::reads::InputReads;
use crate::context::Decision;

/// A key longer than this (large tool arguments) is not cached: the cache holds
/// decisions, not request bodies.
const MAX_KEY_BYTES: usize = 4096;

pub struct DecisionCache {
    /// Sorted, none a prefix of another; each step as the object key it looks up.
    paths: Vec<Vec<Value>>,
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
        let paths = paths.iter().map(|p| p.iter().map(|step| Value::from(step.as_str())).collect()).collect();
        Some(DecisionCache { paths, entries: DashMap::new(), max_entries })
    }

    /// The input's projection onto the read paths: for each path a tag byte (absent,
    /// present) and the value's encoding. `None` when it would be too long to keep.
    pub fn key(&self, input: &Value) -> Option<Box<[u8]>> {
        let mut key = Vec::with_capacity(256);
        for path in &self.paths {
            let mut value = Some(input);
            for step in path {
                value = value.and_then(|v| match v {
                    Value::Object(o) => o.get(step),
                    _ => None,
                });
            }
            match value {
                None => key.push(0),
                Some(v) => {
                    key.push(1);
                    encode(v, &mut key, MAX_KEY_BYTES)?;
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

/// Appends an injective, self-delimiting encoding of `v`: a tag per type, lengths before
/// contents. `None` once `out` passes `limit`.
fn encode(v: &Value, out: &mut Vec<u8>, limit: usize) -> Option<()> {
    let len = |out: &mut Vec<u8>, n: usize| out.extend_from_slice(&(n as u64).to_le_bytes());
    match v {
        Value::Null => out.push(b'n'),
        Value::Bool(b) => out.push(if *b { b't' } else { b'f' }),
        Value::Number(n) => {
            // Integers print as digits, non-integral floats with a '.'; integral floats
            // (printed like integers) never reach here.
            let text = n.format_decimal();
            out.push(b'#');
            len(out, text.len());
            out.extend_from_slice(text.as_bytes());
        }
        Value::String(s) => {
            out.push(b's');
            len(out, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Array(items) => {
            out.push(b'a');
            len(out, items.len());
            for item in items.iter() {
                encode(item, out, limit)?;
            }
        }
        Value::Set(items) => {
            out.push(b'S');
            len(out, items.len());
            for item in items.iter() {
                encode(item, out, limit)?;
            }
        }
        Value::Object(fields) => {
            out.push(b'o');
            len(out, fields.len());
            for (k, v) in fields.iter_sorted() {
                encode(k, out, limit)?;
                encode(v, out, limit)?;
            }
        }
        Value::Undefined => out.push(b'U'),
    }
    (out.len() <= limit).then_some(())
}
