//! Credentials: access tokens (`token`, keys from `jwks`) and proof of possession
//! (`dpop`, keys from `jwk`), checked by the credentials `stage`; `challenge` and
//! `metadata` tell clients how to authenticate.
//!
//! The proof-of-possession half:
//!
//! `jwk` reads the public keys that DPoP proofs carry and computes their RFC 7638
//! thumbprints; `dpop` verifies a proof (RFC 9449 §4.3) against the request it came
//! with. Both are pure: no HTTP types, no I/O, the clock passed in, so the pipeline
//! stage that wires them in stays a thin adapter and the checks are testable alone.

pub mod binding;
pub mod challenge;
pub mod config;
pub mod dpop;
pub mod jwk;
pub mod jwks;
pub mod jwt_svid;
pub mod metadata;
pub mod stage;
pub mod token;
