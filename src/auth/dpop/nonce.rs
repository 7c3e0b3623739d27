//! Server-provided DPoP nonces (RFC 9449 §8–§9, check 10 of §4.3).
//!
//! A nonce lets the server bound a proof's freshness by its own clock instead of trusting
//! the client's `iat`. We keep it stateless: a nonce is
//!
//! ```text
//! base64url( window (8 bytes, big-endian) || HMAC-SHA256(key, LABEL || window)[..16] )
//! ```
//!
//! where `window = unix_seconds / window_length`. Issuing and checking are one HMAC each,
//! nothing is stored and no thread coordinates with another. A nonce is accepted during the
//! window it was issued in and the next one, so it lives between one and two window lengths
//! (default 60–120 s) and every client can keep using the current nonce until it rotates.
//! It is unpredictable without the key, so a client cannot mint tomorrow's nonce today and
//! pre-compute proofs with it.
//!
//! The key is random per process by default. Replicas behind one address should share a
//! secret ([`NonceSource::from_secret`]); otherwise a client that lands on another replica is
//! answered `use_dpop_nonce` with that replica's nonce and pays one extra round trip.

use std::fmt;
use std::time::{Duration, SystemTime};

use aws_lc_rs::{constant_time, hmac, rand};
use data_encoding::BASE64URL_NOPAD;

use super::unix_seconds;

/// Domain separation: the key may be shared, its MACs mean "DPoP nonce" only.
const LABEL: &[u8] = b"mcp-pep dpop nonce v1\0";
/// 128 bits of MAC are plenty for a value that expires within minutes.
const TAG_LEN: usize = 16;
const NONCE_LEN: usize = 8 + TAG_LEN;

/// Issues and checks server nonces. Cheap to share behind an `Arc`.
pub struct NonceSource {
    key: hmac::Key,
    window_secs: u64,
}

/// Why a presented nonce is not accepted. Either way the client is answered
/// `use_dpop_nonce` with a fresh nonce; the distinction is for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceRejection {
    /// Not a nonce this server issued (bad encoding, bad MAC, or from the future).
    Invalid,
    /// Issued here, but more than one window ago.
    Expired,
}

/// The operating system's random number generator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RngError;

impl NonceSource {
    /// How long one nonce window lasts unless configured otherwise.
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

    /// A source with a fresh random key: nonces are valid in this process only.
    pub fn random(window: Duration) -> Result<Self, RngError> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rand::SystemRandom::new()).map_err(|_| RngError)?;
        Ok(NonceSource { key, window_secs: window_secs(window) })
    }

    /// A source keyed by a shared secret (at least 32 random bytes), so that replicas
    /// accept each other's nonces.
    pub fn from_secret(secret: &[u8], window: Duration) -> Self {
        NonceSource { key: hmac::Key::new(hmac::HMAC_SHA256, secret), window_secs: window_secs(window) }
    }

    /// The nonce to send in `DPoP-Nonce` at `now`.
    pub fn issue(&self, now: SystemTime) -> String {
        let window = unix_seconds(now) / self.window_secs;
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..8].copy_from_slice(&window.to_be_bytes());
        nonce[8..].copy_from_slice(&self.tag(window).as_ref()[..TAG_LEN]);
        BASE64URL_NOPAD.encode(&nonce)
    }

    /// Accepts a nonce issued in the current window or the one before.
    pub fn check(&self, nonce: &str, now: SystemTime) -> Result<(), NonceRejection> {
        let mut raw = [0u8; NONCE_LEN];
        match BASE64URL_NOPAD.decode_len(nonce.len()) {
            Ok(NONCE_LEN) => {}
            _ => return Err(NonceRejection::Invalid),
        }
        BASE64URL_NOPAD.decode_mut(nonce.as_bytes(), &mut raw).map_err(|_| NonceRejection::Invalid)?;
        let (window, tag) = raw.split_at(8);
        let window = u64::from_be_bytes(window.try_into().map_err(|_| NonceRejection::Invalid)?);
        constant_time::verify_slices_are_equal(&self.tag(window).as_ref()[..TAG_LEN], tag)
            .map_err(|_| NonceRejection::Invalid)?;
        let current = unix_seconds(now) / self.window_secs;
        if window > current {
            // Only a clock stepping backwards gets here; it is still not a nonce of now.
            return Err(NonceRejection::Invalid);
        }
        if current - window > 1 {
            return Err(NonceRejection::Expired);
        }
        Ok(())
    }

    fn tag(&self, window: u64) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(LABEL);
        ctx.update(&window.to_be_bytes());
        ctx.sign()
    }
}

fn window_secs(window: Duration) -> u64 {
    window.as_secs().max(1)
}

/// Never prints the key.
impl fmt::Debug for NonceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceSource").field("window_secs", &self.window_secs).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn source() -> NonceSource {
        NonceSource::from_secret(&[7; 32], Duration::from_secs(60))
    }

    #[test]
    fn accepts_its_own_nonce_for_one_to_two_windows() {
        let s = source();
        let nonce = s.issue(at(6_000));
        assert_eq!(nonce.len(), 32);
        assert_eq!(s.check(&nonce, at(6_000)), Ok(()));
        assert_eq!(s.check(&nonce, at(6_119)), Ok(()));
        assert_eq!(s.check(&nonce, at(6_120)), Err(NonceRejection::Expired));
    }

    #[test]
    fn same_window_same_nonce_next_window_new_nonce() {
        let s = source();
        assert_eq!(s.issue(at(6_000)), s.issue(at(6_059)));
        assert_ne!(s.issue(at(6_000)), s.issue(at(6_060)));
    }

    #[test]
    fn refuses_forged_foreign_and_future_nonces() {
        let s = source();
        let other = NonceSource::from_secret(&[8; 32], Duration::from_secs(60));
        assert_eq!(s.check(&other.issue(at(6_000)), at(6_000)), Err(NonceRejection::Invalid));
        assert_eq!(s.check(&s.issue(at(6_060)), at(6_000)), Err(NonceRejection::Invalid));
        let mut tampered = s.issue(at(6_000)).into_bytes();
        tampered[31] = if tampered[31] == b'A' { b'Q' } else { b'A' };
        assert_eq!(s.check(std::str::from_utf8(&tampered).unwrap(), at(6_000)), Err(NonceRejection::Invalid));
        for junk in ["", "abc", "not a nonce at all, not at all!!", &"A".repeat(33)] {
            assert_eq!(s.check(junk, at(6_000)), Err(NonceRejection::Invalid), "{junk:?}");
        }
    }

    #[test]
    fn random_sources_do_not_accept_each_other() {
        let a = NonceSource::random(NonceSource::DEFAULT_WINDOW).unwrap();
        let b = NonceSource::random(NonceSource::DEFAULT_WINDOW).unwrap();
        assert_eq!(a.check(&a.issue(at(6_000)), at(6_000)), Ok(()));
        assert_eq!(b.check(&a.issue(at(6_000)), at(6_000)), Err(NonceRejection::Invalid));
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", source()), "NonceSource { window_secs: 60, .. }");
    }
}
