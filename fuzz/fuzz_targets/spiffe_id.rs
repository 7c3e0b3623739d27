//! `identity::parse_spiffe_id` against the SPIFFE-ID grammar it documents.
//!
//! - never panics;
//! - accepts exactly `spiffe://` + trust domain (`[a-z0-9._-]+`) + path (zero or more
//!   `/segment`, segment `[A-Za-z0-9._-]+` and not `.` or `..`), compared with an
//!   independent matcher;
//! - an accepted ID round-trips: `spiffe_id` is the input, `spiffe://` + `trust_domain`
//!   + `path` rebuilds it, and the source is kept;
//! - only a missing `spiffe://` prefix is a scheme error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_pep::context::IdentitySource;
use mcp_pep::identity::{SpiffeIdError, parse_spiffe_id};

/// `(trust_domain, path)` if `id` is a valid SPIFFE ID.
fn reference(id: &str) -> Option<(&str, &str)> {
    let rest = id.strip_prefix("spiffe://")?;
    let td_len = rest.bytes().take_while(|&b| b != b'/').count();
    let (td, path) = rest.split_at(td_len);
    let td_ok = |b: u8| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-');
    if td.is_empty() || !td.bytes().all(td_ok) {
        return None;
    }
    let mut segments = path.split('/');
    // `path` is empty or starts with '/': the first piece is empty either way.
    assert_eq!(segments.next(), Some(""));
    for seg in segments {
        let seg_ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        if seg.is_empty() || seg == "." || seg == ".." || !seg.bytes().all(seg_ok) {
            return None;
        }
    }
    Some((td, path))
}

fn check(id: &str, source: IdentitySource) {
    let got = parse_spiffe_id(id, source);
    match (&got, reference(id)) {
        (Ok(s), Some((td, path))) => {
            assert_eq!(&*s.spiffe_id, id);
            assert_eq!((&*s.trust_domain, &*s.path), (td, path));
            assert_eq!(format!("spiffe://{}{}", s.trust_domain, s.path), id);
            assert_eq!(s.source, source);
        }
        (Err(e), None) => assert_eq!(*e == SpiffeIdError::Scheme, !id.starts_with("spiffe://"), "{id:?}: {e:?}"),
        (Ok(s), None) => panic!("accepted an invalid SPIFFE ID {id:?}: {s:?}"),
        (Err(e), Some(_)) => panic!("refused a valid SPIFFE ID {id:?}: {e:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    check(s, IdentitySource::Local);
    // Most inputs lack the scheme: also try them as the rest of an ID.
    check(&format!("spiffe://{s}"), IdentitySource::Mtls);
});
