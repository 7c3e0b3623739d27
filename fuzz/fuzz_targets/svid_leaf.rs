//! `identity::svid::leaf_spiffe_id`, which reads a client certificate the peer chose
//! before any chain is verified.
//!
//! - never panics, whatever the bytes;
//! - an accepted leaf names a SPIFFE ID that `parse_spiffe_id` accepts unchanged, with the
//!   source it was asked for;
//! - `x5t_s256` is 43 base64url characters for any input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_pep::context::IdentitySource;
use mcp_pep::identity::parse_spiffe_id;
use mcp_pep::identity::svid::{leaf_spiffe_id, x5t_s256};

fuzz_target!(|data: &[u8]| {
    if let Ok(id) = leaf_spiffe_id(data, IdentitySource::Mtls) {
        let again = parse_spiffe_id(&id.spiffe_id, IdentitySource::Mtls).expect("an accepted ID re-parses");
        assert_eq!(again, id);
    }
    let x5t = x5t_s256(data);
    assert_eq!(x5t.len(), 43);
    assert!(x5t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
});
