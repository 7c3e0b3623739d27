//! A JSON parser that refuses what `serde_json::Value` silently accepts.
//!
//! Two readers of one body must see one message. `serde_json` keeps the *last* of two
//! duplicate keys while other parsers keep the first, so a body with `"name"` twice could
//! be authorised as one tool and executed as another. We refuse duplicates at any depth,
//! and bound nesting so a deep body cannot exhaust the stack.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Value};

/// Why a body is not strict JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrictJsonError {
    #[error("duplicate object key {0:?}")]
    DuplicateKey(String),
    #[error("nesting deeper than {0} levels")]
    TooDeep(usize),
    #[error("invalid JSON: {0}")]
    Syntax(String),
}

/// Parses `bytes` as one JSON value with no duplicate keys and at most `max_depth`
/// nested arrays/objects. Invalid UTF-8 is a syntax error (`serde_json` checks it).
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<Value, StrictJsonError> {
    let violation = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = Strict { depth_left: max_depth, max_depth, violation: &violation };
    let parsed = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match (parsed, violation.take()) {
        (_, Some(violation)) => Err(violation),
        (Ok(value), None) => Ok(value),
        (Err(e), None) => Err(StrictJsonError::Syntax(e.to_string())),
    }
}

#[derive(Clone, Copy)]
struct Strict<'a> {
    depth_left: usize,
    max_depth: usize,
    /// serde errors are strings; the typed cause is kept here beside them.
    violation: &'a Cell<Option<StrictJsonError>>,
}

impl Strict<'_> {
    fn nested(&self) -> Option<Self> {
        let depth_left = self.depth_left.checked_sub(1)?;
        Some(Strict { depth_left, max_depth: self.max_depth, violation: self.violation })
    }

    fn fail<E: serde::de::Error>(&self, violation: StrictJsonError) -> E {
        let message = violation.to_string();
        self.violation.set(Some(violation));
        E::custom(message)
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let Some(child) = self.nested() else {
            return Err(self.fail(StrictJsonError::TooDeep(self.max_depth)));
        };
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(child)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Some(child) = self.nested() else {
            return Err(self.fail(StrictJsonError::TooDeep(self.max_depth)));
        };
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            // One walk of the sorted map per key: the duplicate check finds the slot.
            match object.entry(key) {
                Entry::Occupied(taken) => return Err(self.fail(StrictJsonError::DuplicateKey(taken.key().clone()))),
                Entry::Vacant(slot) => {
                    slot.insert(map.next_value_seed(child)?);
                }
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_json() {
        let v = parse(br#"{"a":[1,2,{"b":null}],"c":"\u00e9","d":-1.5}"#, 8).unwrap();
        assert_eq!(v["a"][2]["b"], Value::Null);
        assert_eq!(v["c"], "é");
    }

    #[test]
    fn refuses_duplicate_key_at_top() {
        let e = parse(br#"{"a":1,"a":2}"#, 8).unwrap_err();
        assert_eq!(e, StrictJsonError::DuplicateKey("a".into()));
    }

    #[test]
    fn refuses_duplicate_key_deep_inside() {
        let e = parse(br#"{"p":{"x":[{"k":1,"k":1}]}}"#, 8).unwrap_err();
        assert_eq!(e, StrictJsonError::DuplicateKey("k".into()));
    }

    #[test]
    fn refuses_duplicate_key_spelled_with_escapes() {
        // "n\u0061me" and "name" are the same key once decoded.
        let e = parse(br#"{"name":"a","n\u0061me":"b"}"#, 8).unwrap_err();
        assert_eq!(e, StrictJsonError::DuplicateKey("name".into()));
    }

    #[test]
    fn bounds_nesting() {
        assert!(parse(b"[[[]]]", 3).is_ok());
        assert_eq!(parse(b"[[[[]]]]", 3).unwrap_err(), StrictJsonError::TooDeep(3));
        assert_eq!(parse(br#"{"a":{"b":{"c":{}}}}"#, 3).unwrap_err(), StrictJsonError::TooDeep(3));
    }

    #[test]
    fn refuses_invalid_utf8_and_trailing_bytes() {
        assert!(matches!(parse(b"\"\xff\"", 8), Err(StrictJsonError::Syntax(_))));
        assert!(matches!(parse(b"{} {}", 8), Err(StrictJsonError::Syntax(_))));
        assert!(matches!(parse(b"{\"a\":1,}", 8), Err(StrictJsonError::Syntax(_))));
        assert!(matches!(parse(b"", 8), Err(StrictJsonError::Syntax(_))));
    }

    #[test]
    fn refuses_lone_surrogate_escape() {
        assert!(matches!(parse(br#""\ud800""#, 8), Err(StrictJsonError::Syntax(_))));
    }
}
