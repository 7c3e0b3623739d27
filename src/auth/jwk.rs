//! Public JSON Web Keys (RFC 7517/7518) as a DPoP proof's `jwk` header carries them, and
//! their RFC 7638 thumbprint: the `jkt` that a DPoP-bound access token's `cnf` names.
//!
//! The key arrives inside the very message it is meant to authenticate, so it is hostile
//! until proven otherwise. We accept only what we can verify with and name unambiguously:
//!
//! - EC P-256 (for ES256): both coordinates the full 32 bytes, the point on the curve and
//!   not the identity (checked with `p256`, so a bad point is refused here with its own
//!   reason rather than surfacing later as a vague signature failure);
//! - RSA (for RS256/PS256): a 2048–8192-bit modulus and an odd exponent ≥ 3, both without
//!   leading zero octets. RSA costs nothing extra because the verifier (aws-lc-rs) has it,
//!   and Keycloak clients commonly sign DPoP proofs with RS256.
//!
//! Anything else is refused: private members, symmetric keys, unknown `kty`/`crv`, and
//! base64url that is not the canonical encoding. Canonical input matters for the
//! thumbprint: it is computed from the decoded bytes, so two spellings of one key could
//! otherwise be bound as two keys, or one spelling hide behind another.

use std::fmt;

use aws_lc_rs::{digest, signature};
use data_encoding::BASE64URL_NOPAD;
use serde_json::{Map, Value};

/// JWS algorithms a DPoP proof may be signed with. Only asymmetric algorithms exist in
/// this type, so `none` and the HMAC family cannot even be configured: a proof naming
/// them fails to parse into a `SigAlg` and is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SigAlg {
    /// ECDSA on P-256 with SHA-256, the signature as 64 bytes `R || S` (RFC 7518 §3.4).
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256, 32-byte salt.
    Ps256,
}

impl SigAlg {
    /// Every algorithm this build can verify, in order of preference for metadata.
    pub const ALL: [SigAlg; 3] = [SigAlg::Es256, SigAlg::Ps256, SigAlg::Rs256];

    /// Reads a JWS `alg` value. Names are case-sensitive (RFC 7515 §4.1.1).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(SigAlg::Es256),
            "RS256" => Some(SigAlg::Rs256),
            "PS256" => Some(SigAlg::Ps256),
            _ => None,
        }
    }

    /// The JWS name, as in `dpop_signing_alg_values_supported`.
    pub fn name(self) -> &'static str {
        match self {
            SigAlg::Es256 => "ES256",
            SigAlg::Rs256 => "RS256",
            SigAlg::Ps256 => "PS256",
        }
    }
}

impl fmt::Display for SigAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a JWK is not an acceptable public verification key. Messages name JWK members,
/// never their values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwkError {
    #[error("JWK is not strict JSON")]
    Json,
    #[error("JWK is not a JSON object")]
    NotAnObject,
    #[error("JWK carries private key material")]
    PrivateMember,
    #[error("JWK is a symmetric key")]
    Symmetric,
    #[error("JWK key type is missing or not supported")]
    UnsupportedKty,
    #[error("JWK curve is missing or not supported")]
    UnsupportedCrv,
    #[error("JWK `alg` is not a supported asymmetric algorithm")]
    UnsupportedAlg,
    #[error("JWK `use` is not `sig`")]
    NotForSignatures,
    #[error("JWK member `{0}` is missing or not a string")]
    MissingMember(&'static str),
    #[error("JWK member `{0}` is not canonical base64url of the right length")]
    BadMember(&'static str),
    #[error("JWK point is not on P-256")]
    InvalidPoint,
    #[error("JWK RSA modulus is not 2048 to 8192 bits")]
    RsaModulus,
    #[error("JWK RSA exponent is not acceptable")]
    RsaExponent,
}

impl JwkError {
    /// A short, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            JwkError::Json | JwkError::NotAnObject => "jwk_malformed",
            JwkError::PrivateMember => "jwk_private",
            JwkError::Symmetric => "jwk_symmetric",
            JwkError::UnsupportedKty | JwkError::UnsupportedCrv | JwkError::UnsupportedAlg => "jwk_unsupported",
            JwkError::NotForSignatures => "jwk_use",
            JwkError::MissingMember(_) | JwkError::BadMember(_) => "jwk_member",
            JwkError::InvalidPoint => "jwk_invalid_point",
            JwkError::RsaModulus | JwkError::RsaExponent => "jwk_rsa",
        }
    }
}

/// The signature did not verify (or the key cannot be used with that algorithm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("signature does not verify")]
pub struct SignatureError;

/// The kind of key, which decides the algorithms it may be used with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    EcP256,
    Rsa,
}

/// A validated public key. Only [`PublicJwk::parse`] and [`PublicJwk::from_json`] build
/// one, so holding a `PublicJwk` means the checks above passed.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicJwk {
    key: Key,
    /// The key's own `alg` member, when it names one: the key may then sign with that only.
    alg: Option<SigAlg>,
}

#[derive(Clone, PartialEq, Eq)]
enum Key {
    P256 { x: [u8; 32], y: [u8; 32] },
    Rsa { n: Box<[u8]>, e: Box<[u8]> },
}

/// Members that only a private (or symmetric) key has (RFC 7518 §6.2.2, §6.3.2, §6.4.1).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Nesting bound for a stand-alone JWK document: a JWK is flat, `oth` aside.
const MAX_JWK_DEPTH: usize = 4;

impl PublicJwk {
    /// Parses a JWK document, refusing duplicate keys like every JSON reader here does.
    pub fn parse(text: &str) -> Result<Self, JwkError> {
        let value = crate::strict_json::parse(text.as_bytes(), MAX_JWK_DEPTH).map_err(|_| JwkError::Json)?;
        Self::from_json(&value)
    }

    /// Validates an already parsed JWK (a DPoP header's `jwk` member).
    pub fn from_json(value: &Value) -> Result<Self, JwkError> {
        let Value::Object(members) = value else {
            return Err(JwkError::NotAnObject);
        };
        let kty = string_member(members, "kty").ok_or(JwkError::UnsupportedKty)?;
        // A symmetric key is refused as such, whatever else it carries: its `k` is a
        // shared secret, and HMAC "verification" with it proves nothing about a client.
        if kty == "oct" {
            return Err(JwkError::Symmetric);
        }
        if PRIVATE_MEMBERS.iter().any(|m| members.contains_key(*m)) {
            return Err(JwkError::PrivateMember);
        }
        if let Some(usage) = members.get("use")
            && usage.as_str() != Some("sig")
        {
            return Err(JwkError::NotForSignatures);
        }
        let alg = match members.get("alg") {
            None => None,
            Some(alg) => Some(alg.as_str().and_then(SigAlg::from_name).ok_or(JwkError::UnsupportedAlg)?),
        };
        let key = match kty {
            "EC" => p256_key(members)?,
            "RSA" => rsa_key(members)?,
            _ => return Err(JwkError::UnsupportedKty),
        };
        let jwk = PublicJwk { key, alg };
        if let Some(alg) = alg
            && !jwk.key_fits(alg)
        {
            return Err(JwkError::UnsupportedAlg);
        }
        Ok(jwk)
    }

    pub fn key_type(&self) -> KeyType {
        match self.key {
            Key::P256 { .. } => KeyType::EcP256,
            Key::Rsa { .. } => KeyType::Rsa,
        }
    }

    /// Whether a JWS signed with `alg` may be verified with this key: the key type must
    /// match, and so must the key's own `alg` when it declares one.
    pub fn fits(&self, alg: SigAlg) -> bool {
        self.key_fits(alg) && self.alg.is_none_or(|own| own == alg)
    }

    fn key_fits(&self, alg: SigAlg) -> bool {
        matches!((&self.key, alg), (Key::P256 { .. }, SigAlg::Es256) | (Key::Rsa { .. }, SigAlg::Rs256 | SigAlg::Ps256))
    }

    /// The RFC 7638 thumbprint: SHA-256 over the required members only, in lexicographic
    /// order, without whitespace, base64url-encoded.
    pub fn thumbprint(&self) -> String {
        let canonical = match &self.key {
            Key::P256 { x, y } => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                BASE64URL_NOPAD.encode(x),
                BASE64URL_NOPAD.encode(y)
            ),
            Key::Rsa { n, e } => {
                format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, BASE64URL_NOPAD.encode(e), BASE64URL_NOPAD.encode(n))
            }
        };
        BASE64URL_NOPAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    }

    /// Verifies a JWS signature over `message` (the ASCII `header.payload`).
    pub fn verify(&self, alg: SigAlg, message: &[u8], sig: &[u8]) -> Result<(), SignatureError> {
        if !self.fits(alg) {
            return Err(SignatureError);
        }
        let verified = match (&self.key, alg) {
            (Key::P256 { x, y }, SigAlg::Es256) => {
                let mut point = [0u8; 65];
                point[0] = 0x04;
                point[1..33].copy_from_slice(x);
                point[33..].copy_from_slice(y);
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).verify(message, sig)
            }
            (Key::Rsa { n, e }, SigAlg::Rs256) => {
                signature::RsaPublicKeyComponents { n, e }.verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
            }
            (Key::Rsa { n, e }, SigAlg::Ps256) => {
                signature::RsaPublicKeyComponents { n, e }.verify(&signature::RSA_PSS_2048_8192_SHA256, message, sig)
            }
            _ => return Err(SignatureError),
        };
        verified.map_err(|_| SignatureError)
    }
}

/// Public keys are not secret, but a full modulus in a log line helps nobody: show the
/// type and the thumbprint, which is how keys are named everywhere else.
impl fmt::Debug for PublicJwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicJwk")
            .field("type", &self.key_type())
            .field("alg", &self.alg)
            .field("jkt", &self.thumbprint())
            .finish()
    }
}

fn string_member<'a>(members: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    members.get(name).and_then(Value::as_str)
}

/// Decodes a base64url member strictly: no padding, no foreign characters, and the
/// unused trailing bits zero, so each byte string has exactly one accepted spelling.
fn bytes_member(members: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, JwkError> {
    let text = string_member(members, name).ok_or(JwkError::MissingMember(name))?;
    BASE64URL_NOPAD.decode(text.as_bytes()).map_err(|_| JwkError::BadMember(name))
}

fn coordinate(members: &Map<String, Value>, name: &'static str) -> Result<[u8; 32], JwkError> {
    // RFC 7518 §6.2.1.2: a coordinate is always the full field size, leading zeros kept.
    bytes_member(members, name)?.try_into().map_err(|_| JwkError::BadMember(name))
}

fn p256_key(members: &Map<String, Value>) -> Result<Key, JwkError> {
    if string_member(members, "crv") != Some("P-256") {
        return Err(JwkError::UnsupportedCrv);
    }
    let x = coordinate(members, "x")?;
    let y = coordinate(members, "y")?;
    let mut sec1 = [0u8; 65];
    sec1[0] = 0x04;
    sec1[1..33].copy_from_slice(&x);
    sec1[33..].copy_from_slice(&y);
    // Coordinates below the field prime, on the curve, not the identity.
    p256::PublicKey::from_sec1_bytes(&sec1).map_err(|_| JwkError::InvalidPoint)?;
    Ok(Key::P256 { x, y })
}

fn rsa_key(members: &Map<String, Value>) -> Result<Key, JwkError> {
    let n = bytes_member(members, "n")?;
    let e = bytes_member(members, "e")?;
    // RFC 7518 §6.3.1.1: no leading zero octets; it would also change the thumbprint.
    let bits = match n.first() {
        Some(&top) if top != 0 => n.len() * 8 - top.leading_zeros() as usize,
        _ => return Err(JwkError::RsaModulus),
    };
    if !(2048..=8192).contains(&bits) {
        return Err(JwkError::RsaModulus);
    }
    let exponent_ok = match e.as_slice() {
        [] | [0, ..] => false,
        [single] => *single >= 3 && single % 2 == 1,
        [.., last] => e.len() <= 4 && last % 2 == 1,
    };
    if !exponent_ok {
        return Err(JwkError::RsaExponent);
    }
    Ok(Key::Rsa { n: n.into(), e: e.into() })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// RFC 7638 §3.1.
    const RFC7638_KEY: &str = r#"{"e":"AQAB","kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}"#;
    /// RFC 9449 §4.1 / §6.1 (Figure 9 gives its thumbprint).
    const RFC9449_KEY: &str = r#"{"kty":"EC","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA","crv":"P-256"}"#;

    fn ec_key() -> Value {
        serde_json::from_str(RFC9449_KEY).unwrap()
    }

    fn with(mut key: Value, name: &str, value: Value) -> Value {
        key[name] = value;
        key
    }

    #[test]
    fn rfc7638_thumbprint() {
        let jwk = PublicJwk::parse(RFC7638_KEY).unwrap();
        assert_eq!(jwk.key_type(), KeyType::Rsa);
        assert_eq!(jwk.thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn rfc9449_thumbprint() {
        let jwk = PublicJwk::parse(RFC9449_KEY).unwrap();
        assert_eq!(jwk.key_type(), KeyType::EcP256);
        assert_eq!(jwk.thumbprint(), "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
    }

    #[test]
    fn thumbprint_ignores_optional_members_and_member_order() {
        let plain = PublicJwk::parse(RFC9449_KEY).unwrap();
        let decorated = PublicJwk::from_json(&json!({
            "use": "sig", "kid": "k1", "alg": "ES256", "crv": "P-256",
            "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
            "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs", "kty": "EC"
        }))
        .unwrap();
        assert_eq!(plain.thumbprint(), decorated.thumbprint());
    }

    #[test]
    fn refuses_private_members() {
        for member in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            let key = with(ec_key(), member, json!("AQAB"));
            assert_eq!(PublicJwk::from_json(&key), Err(JwkError::PrivateMember), "{member}");
        }
        let mut rsa: Value = serde_json::from_str(RFC7638_KEY).unwrap();
        rsa["d"] = json!(
            "X4cTteJY_gn4FYPsXB8rdXix5vwsg1FLN5E3EaG6RJoVH-HLLKD9M7dx5oo7GURknchnrRweUkC7hT5fJLM0WbFAKNLWY2vv7B6NqXSzUvxT0_YSfqijwp3RTzlBaCxWp4doFk5N2o8Gy_nHNKroADIkJ46pRUohsXywbReAdYaMwFs9tv8d_cPVY3i07a3t8MN6TNwm0dSawm9v47UiCl3Sk5ZiG7xojPLu4sbg1U2jx4IBTNBznbJSzFHK66jT8bgkuqsk0GjskDJk19Z4qwjwbsnn4j2WBii3RL-Us2lGVkY8fkFzme1z0HbIkfz0Y6mqnOYtqc0X4jfcKoAC8Q"
        );
        assert_eq!(PublicJwk::from_json(&rsa), Err(JwkError::PrivateMember));
    }

    #[test]
    fn refuses_symmetric_key() {
        let key = json!({"kty": "oct", "k": "GawgguFyGrWKav7AX4VKUg"});
        assert_eq!(PublicJwk::from_json(&key), Err(JwkError::Symmetric));
    }

    #[test]
    fn refuses_unknown_kty_and_crv() {
        assert_eq!(PublicJwk::from_json(&with(ec_key(), "kty", json!("OKP"))), Err(JwkError::UnsupportedKty));
        assert_eq!(PublicJwk::from_json(&with(ec_key(), "kty", json!("ec"))), Err(JwkError::UnsupportedKty));
        assert_eq!(PublicJwk::from_json(&with(ec_key(), "kty", json!(1))), Err(JwkError::UnsupportedKty));
        assert_eq!(PublicJwk::from_json(&with(ec_key(), "crv", json!("P-384"))), Err(JwkError::UnsupportedCrv));
        assert_eq!(PublicJwk::from_json(&with(ec_key(), "crv", json!("secp256k1"))), Err(JwkError::UnsupportedCrv));
    }

    #[test]
    fn refuses_point_off_the_curve() {
        // y + 1 at the last byte: still 32 bytes, no longer on P-256.
        let key = with(ec_key(), "y", json!("9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDE"));
        assert_eq!(PublicJwk::from_json(&key), Err(JwkError::InvalidPoint));
        // Coordinates at or above the field prime are not field elements.
        let key = with(ec_key(), "x", json!(BASE64URL_NOPAD.encode(&[0xff; 32])));
        assert_eq!(PublicJwk::from_json(&key), Err(JwkError::InvalidPoint));
        let zero = BASE64URL_NOPAD.encode(&[0; 32]);
        let key = with(with(ec_key(), "x", json!(zero)), "y", json!(zero));
        assert_eq!(PublicJwk::from_json(&key), Err(JwkError::InvalidPoint));
    }

    #[test]
    fn refuses_short_or_non_canonical_coordinates() {
        // 31 bytes: a coordinate with its leading zero dropped.
        let key = with(ec_key(), "x", json!(BASE64URL_NOPAD.encode(&[1; 31])));
        assert_eq!(PublicJwk::from_json(&key), Err(JwkError::BadMember("x")));
        // Padding, standard alphabet, non-zero trailing bits.
        for x in [
            "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs=",
            "l8tFrhx+34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
            "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFt",
        ] {
            assert_eq!(PublicJwk::from_json(&with(ec_key(), "x", json!(x))), Err(JwkError::BadMember("x")), "{x}");
        }
        let mut key = ec_key();
        key.as_object_mut().unwrap().remove("y");
        assert_eq!(PublicJwk::from_json(&key), Err(JwkError::MissingMember("y")));
    }

    #[test]
    fn refuses_weak_or_odd_rsa_keys() {
        let rsa: Value = serde_json::from_str(RFC7638_KEY).unwrap();
        let short = BASE64URL_NOPAD.encode(&[0xc1; 128]);
        assert_eq!(PublicJwk::from_json(&with(rsa.clone(), "n", json!(short))), Err(JwkError::RsaModulus));
        let mut padded = vec![0u8];
        padded.extend(BASE64URL_NOPAD.decode(rsa["n"].as_str().unwrap().as_bytes()).unwrap());
        let padded = BASE64URL_NOPAD.encode(&padded);
        assert_eq!(PublicJwk::from_json(&with(rsa.clone(), "n", json!(padded))), Err(JwkError::RsaModulus));
        for e in ["AQ", "Ag", "AAEAAQ", "AQAA", ""] {
            assert_eq!(PublicJwk::from_json(&with(rsa.clone(), "e", json!(e))), Err(JwkError::RsaExponent), "{e}");
        }
    }

    #[test]
    fn use_and_alg_members_must_fit() {
        assert_eq!(PublicJwk::from_json(&with(ec_key(), "use", json!("enc"))), Err(JwkError::NotForSignatures));
        assert_eq!(PublicJwk::from_json(&with(ec_key(), "alg", json!("HS256"))), Err(JwkError::UnsupportedAlg));
        assert_eq!(PublicJwk::from_json(&with(ec_key(), "alg", json!("RS256"))), Err(JwkError::UnsupportedAlg));
        let rsa =
            PublicJwk::from_json(&with(serde_json::from_str(RFC7638_KEY).unwrap(), "alg", json!("PS256"))).unwrap();
        assert!(rsa.fits(SigAlg::Ps256));
        assert!(!rsa.fits(SigAlg::Rs256));
        assert!(!rsa.fits(SigAlg::Es256));
    }

    #[test]
    fn refuses_non_objects_and_duplicate_members() {
        assert_eq!(PublicJwk::from_json(&json!("EC")), Err(JwkError::NotAnObject));
        let duplicated = r#"{"kty":"EC","crv":"P-256","crv":"P-384","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"}"#;
        assert_eq!(PublicJwk::parse(duplicated), Err(JwkError::Json));
    }

    #[test]
    fn verify_refuses_a_key_of_the_wrong_type() {
        let jwk = PublicJwk::parse(RFC9449_KEY).unwrap();
        assert_eq!(jwk.verify(SigAlg::Rs256, b"a.b", &[0; 256]), Err(SignatureError));
        assert_eq!(jwk.verify(SigAlg::Es256, b"a.b", &[0; 64]), Err(SignatureError));
    }

    #[test]
    fn debug_names_the_key_by_thumbprint() {
        let jwk = PublicJwk::parse(RFC9449_KEY).unwrap();
        let shown = format!("{jwk:?}");
        assert!(shown.contains("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"));
        assert!(!shown.contains("l8tFrhx"));
    }
}
