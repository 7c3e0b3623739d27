//! `strict_json::parse` against `serde_json::Value` (differential).
//!
//! - never panics, on any bytes and at any depth bound;
//! - whatever it accepts, `serde_json::from_slice::<Value>` accepts too, with the same value;
//! - it never calls valid JSON a syntax error: a refusal of what serde_json accepts is a
//!   duplicate key or the depth bound;
//! - the depth bound is exact: a value `d` levels deep passes at `max_depth = d` (same
//!   result as with no effective bound) and is refused at `d - 1` (with a duplicate key,
//!   `d` is the depth of what serde_json kept, and either refusal may come first).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_pep::mcp::strict_json::{StrictJsonError, parse};
use serde_json::Value;

/// Above serde_json's own recursion limit (128), so never the binding bound.
const NO_BOUND: usize = 256;
/// The proxy's default `limits.max_json_depth`.
const PROXY_DEFAULT: usize = 64;

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let reference = serde_json::from_slice::<Value>(data);
    let strict = parse(data, NO_BOUND);
    match (&strict, &reference) {
        (Ok(v), Ok(r)) => assert_eq!(v, r, "strict_json and serde_json read different values"),
        (Ok(v), Err(e)) => panic!("strict_json accepted {v:?}, serde_json refuses: {e}"),
        (Err(StrictJsonError::TooDeep(_)), _) => panic!("depth bound {NO_BOUND} hit below serde_json's limit"),
        (Err(StrictJsonError::Syntax(e)), Ok(_)) => panic!("valid JSON called a syntax error: {e}"),
        (Err(StrictJsonError::DuplicateKey(_)), Ok(_)) | (Err(_), Err(_)) => {}
    }

    let production = parse(data, PROXY_DEFAULT);
    if let Ok(v) = &production {
        assert!(depth(v) <= PROXY_DEFAULT);
        assert_eq!(Some(v), strict.as_ref().ok());
    }

    if let Ok(r) = &reference {
        let d = depth(r);
        let at_depth = parse(data, d);
        if matches!(strict, Err(StrictJsonError::DuplicateKey(_))) {
            // serde_json kept the last of the duplicates: a shadowed member may be deeper
            // than `d`, so the bound can be met before the duplicate is.
            assert!(matches!(at_depth, Err(StrictJsonError::DuplicateKey(_) | StrictJsonError::TooDeep(_))));
        } else {
            assert_eq!(at_depth, strict, "bound = actual depth {d} changed the result");
        }
        if d > 0 {
            match parse(data, d - 1) {
                Err(StrictJsonError::TooDeep(bound)) => assert_eq!(bound, d - 1),
                Err(StrictJsonError::DuplicateKey(_)) => assert!(strict.is_err()),
                other => panic!("depth {d} at bound {}: {other:?}", d - 1),
            }
        }
        if d > PROXY_DEFAULT {
            assert!(production.is_err());
        }
    }
});
