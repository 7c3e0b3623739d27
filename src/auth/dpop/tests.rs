//! Verifier tests: the RFC 9449 examples, then one refusal (at least) per check.
//!
//! Proofs are signed with a fixed P-256 key and RFC 6979 deterministic ECDSA, so every
//! proof here is the same bytes on every run.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use data_encoding::BASE64URL_NOPAD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{Value, json};

use super::*;

const NOW: u64 = 1_700_000_000;
const URI: &str = "https://mcp.example.com/mcp";
const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2lnbmF0dXJl";

// RFC 9449 §4.1 (token request, Figure 3 with the key of Figure 1) and §7.1 (Figure 13/14).
const RFC_TOKEN_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";
const RFC_RESOURCE_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA";
const RFC_ACCESS_TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
const RFC_JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 32]).unwrap()
}

fn public_jwk(key: &SigningKey) -> Value {
    let point = key.verifying_key().to_sec1_point(false);
    let bytes = point.as_bytes();
    json!({
        "kty": "EC",
        "crv": "P-256",
        "x": BASE64URL_NOPAD.encode(&bytes[1..33]),
        "y": BASE64URL_NOPAD.encode(&bytes[33..65]),
    })
}

fn jkt(key: &SigningKey) -> String {
    PublicJwk::from_json(&public_jwk(key)).unwrap().thumbprint()
}

/// A proof under construction: valid for `POST URI` with `TOKEN` at `NOW` until changed.
struct Proof {
    key: SigningKey,
    header: Value,
    claims: Value,
}

fn proof() -> Proof {
    let key = key(0x2a);
    Proof {
        header: json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": public_jwk(&key)}),
        claims: json!({
            "jti": "jti-0001", "htm": "POST", "htu": URI, "iat": NOW,
            "ath": access_token_hash(TOKEN),
        }),
        key,
    }
}

impl Proof {
    fn header(mut self, name: &str, value: Value) -> Self {
        self.header[name] = value;
        self
    }
    fn claim(mut self, name: &str, value: Value) -> Self {
        self.claims[name] = value;
        self
    }
    fn without_claim(mut self, name: &str) -> Self {
        self.claims.as_object_mut().unwrap().remove(name);
        self
    }
    fn without_header(mut self, name: &str) -> Self {
        self.header.as_object_mut().unwrap().remove(name);
        self
    }
    fn signed_by(mut self, key: SigningKey) -> Self {
        self.key = key;
        self
    }
    fn sign(&self) -> String {
        sign_raw(&self.key, &self.header.to_string(), &self.claims.to_string())
    }
}

/// Signs header and payload text as given, so tests can write JSON serde would not.
fn sign_raw(key: &SigningKey, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", BASE64URL_NOPAD.encode(header.as_bytes()), BASE64URL_NOPAD.encode(payload.as_bytes()));
    let sig: Signature = key.sign(input.as_bytes());
    format!("{input}.{}", BASE64URL_NOPAD.encode(&sig.to_bytes()))
}

fn verifier() -> DpopVerifier {
    DpopVerifier::new(DpopConfig::default()).unwrap()
}

/// Verifies with the defaults the proof was built for.
fn check(v: &DpopVerifier, proof: &str) -> Result<VerifiedProof, DpopError> {
    v.verify(proof, "POST", URI, Some(TOKEN), Some(&jkt(&key(0x2a))), at(NOW))
}

fn check_uri(proof_htu: &str, request_uri: &str) -> Result<VerifiedProof, DpopError> {
    verifier().verify(&proof().claim("htu", json!(proof_htu)).sign(), "POST", request_uri, Some(TOKEN), None, at(NOW))
}

// ---- Accepted proofs -------------------------------------------------------------

#[test]
fn accepts_a_valid_proof() {
    let v = verifier();
    let verified = check(&v, &proof().sign()).unwrap();
    assert_eq!(verified.jkt(), jkt(&key(0x2a)));
    assert_eq!(verified.jti(), "jti-0001");
    assert_eq!(verified.iat(), NOW);
    assert_eq!(v.replay_entries(), 1);
}

#[test]
fn proofs_are_deterministic() {
    assert_eq!(proof().sign(), proof().sign());
}

#[test]
fn rfc9449_access_token_hash() {
    assert_eq!(access_token_hash(RFC_ACCESS_TOKEN), "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo");
}

#[test]
fn rfc9449_figure_13_resource_proof_verifies() {
    // Figure 13/14: GET https://resource.example.org/protectedresource, iat 1562262618,
    // `ath` of the Figure 13 token, key of Figure 1 (jkt of Figure 9). Its signature verifies.
    let verified = verifier()
        .verify(
            RFC_RESOURCE_PROOF,
            "GET",
            "https://resource.example.org/protectedresource",
            Some(RFC_ACCESS_TOKEN),
            Some(RFC_JKT),
            at(1_562_262_618),
        )
        .unwrap();
    assert_eq!(verified.jkt(), RFC_JKT);
    assert_eq!(verified.jti(), "e1j3V_bKic8-LAEB");
    assert_eq!(verified.iat(), 1_562_262_618);
}

#[test]
fn rfc9449_figure_3_token_request_proof_verifies() {
    let verified = verifier()
        .verify(RFC_TOKEN_PROOF, "POST", "https://server.example.com/token", None, None, at(1_562_262_616))
        .unwrap();
    assert_eq!(verified.jkt(), RFC_JKT);
    assert_eq!(verified.jti(), "-BwC3ESc6acc2lTc");
}

#[test]
fn rfc9449_proof_fails_outside_its_window() {
    let v = verifier();
    let too_late = v.verify(
        RFC_RESOURCE_PROOF,
        "GET",
        "https://resource.example.org/protectedresource",
        None,
        None,
        at(1_562_262_644),
    );
    assert_eq!(too_late, Err(DpopError::IatTooOld));
}

#[test]
fn accepts_application_typ_and_fractional_iat() {
    let v = verifier();
    assert!(check(&v, &proof().header("typ", json!("application/DPoP+JWT")).claim("jti", json!("a")).sign()).is_ok());
    assert!(check(&v, &proof().claim("iat", json!(NOW as f64 + 0.5)).claim("jti", json!("b")).sign()).is_ok());
}

#[test]
fn accepts_proof_without_token_when_none_is_presented() {
    let proof = proof().without_claim("ath").sign();
    assert!(verifier().verify(&proof, "POST", URI, None, None, at(NOW)).is_ok());
}

#[test]
fn accepts_rs256_and_ps256_proofs() {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RSA_PSS_SHA256};

    let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let (n, e) = rsa_public_components(pair.public_key().as_ref());
    let jwk = json!({"kty": "RSA", "n": BASE64URL_NOPAD.encode(&n), "e": BASE64URL_NOPAD.encode(&e)});
    let expected_jkt = PublicJwk::from_json(&jwk).unwrap().thumbprint();
    let v = verifier();
    for (alg, encoding, jti) in [("RS256", &RSA_PKCS1_SHA256, "rs"), ("PS256", &RSA_PSS_SHA256, "ps")] {
        let header = json!({"typ": "dpop+jwt", "alg": alg, "jwk": jwk});
        let claims = json!({"jti": jti, "htm": "POST", "htu": URI, "iat": NOW, "ath": access_token_hash(TOKEN)});
        let input = format!(
            "{}.{}",
            BASE64URL_NOPAD.encode(header.to_string().as_bytes()),
            BASE64URL_NOPAD.encode(claims.to_string().as_bytes())
        );
        let mut sig = vec![0; pair.public_modulus_len()];
        pair.sign(encoding, &SystemRandom::new(), input.as_bytes(), &mut sig).unwrap();
        let proof = format!("{input}.{}", BASE64URL_NOPAD.encode(&sig));
        let verified = v.verify(&proof, "POST", URI, Some(TOKEN), Some(&expected_jkt), at(NOW)).unwrap();
        assert_eq!(verified.jkt(), expected_jkt, "{alg}");
    }
    // A PS256 signature is not an RS256 one.
    let header = json!({"typ": "dpop+jwt", "alg": "RS256", "jwk": jwk});
    let claims = json!({"jti": "x", "htm": "POST", "htu": URI, "iat": NOW});
    let input = format!(
        "{}.{}",
        BASE64URL_NOPAD.encode(header.to_string().as_bytes()),
        BASE64URL_NOPAD.encode(claims.to_string().as_bytes())
    );
    let mut sig = vec![0; pair.public_modulus_len()];
    pair.sign(&RSA_PSS_SHA256, &SystemRandom::new(), input.as_bytes(), &mut sig).unwrap();
    let proof = format!("{input}.{}", BASE64URL_NOPAD.encode(&sig));
    assert_eq!(v.verify(&proof, "POST", URI, None, None, at(NOW)), Err(DpopError::BadSignature));
}

/// Reads `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (DER).
fn rsa_public_components(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    fn read(der: &[u8], tag: u8) -> (&[u8], &[u8]) {
        assert_eq!(der[0], tag);
        let (len, skip) = match der[1] {
            l if l < 0x80 => (usize::from(l), 2),
            0x81 => (usize::from(der[2]), 3),
            0x82 => (usize::from(der[2]) << 8 | usize::from(der[3]), 4),
            _ => panic!("unexpected DER length"),
        };
        (&der[skip..skip + len], &der[skip + len..])
    }
    fn strip(int: &[u8]) -> Vec<u8> {
        int.iter().copied().skip_while(|b| *b == 0).collect()
    }
    let (body, _) = read(der, 0x30);
    let (n, rest) = read(body, 0x02);
    let (e, _) = read(rest, 0x02);
    (strip(n), strip(e))
}

// ---- Check 1-2: one well-formed JWS ---------------------------------------------

#[test]
fn refuses_two_dpop_header_fields() {
    let p = proof().sign();
    assert_eq!(single_proof([p.as_bytes(), p.as_bytes()]), Err(DpopError::MultipleProofs));
    assert_eq!(single_proof([p.as_bytes()]), Ok(Some(p.as_str())));
    assert_eq!(single_proof(std::iter::empty::<&[u8]>()), Ok(None));
    assert_eq!(single_proof([&b"\xff"[..]]), Err(DpopError::Malformed(Malformed::NotUtf8)));
}

#[test]
fn refuses_two_part_jws() {
    let p = proof().sign();
    let two = p.rsplit_once('.').unwrap().0;
    assert_eq!(check(&verifier(), two), Err(DpopError::Malformed(Malformed::Segments)));
}

#[test]
fn refuses_four_and_five_part_jws() {
    let p = proof().sign();
    assert_eq!(check(&verifier(), &format!("{p}.AAAA")), Err(DpopError::Malformed(Malformed::Segments)));
    assert_eq!(check(&verifier(), &format!("{p}.AAAA.AAAA")), Err(DpopError::Malformed(Malformed::Segments)));
}

#[test]
fn refuses_empty_segments() {
    let p = proof().sign();
    let (input, _) = p.rsplit_once('.').unwrap();
    assert_eq!(check(&verifier(), &format!("{input}.")), Err(DpopError::Malformed(Malformed::Segments)));
    assert_eq!(check(&verifier(), ".."), Err(DpopError::Malformed(Malformed::Segments)));
}

#[test]
fn refuses_non_base64url_segments() {
    let p = proof().sign();
    let (input, sig) = p.rsplit_once('.').unwrap();
    // Padding, the standard alphabet, whitespace.
    for bad in [format!("{input}.{sig}=="), format!("{input}.{}", sig.replace(['-', '_'], "+")), format!(" {p}")] {
        if bad == p {
            continue;
        }
        assert_eq!(check(&verifier(), &bad), Err(DpopError::Malformed(Malformed::Base64)), "{bad}");
    }
    let header = BASE64URL_NOPAD.encode(br#"{"typ":"dpop+jwt"}"#);
    let padded = format!("{header}==.e30.AAAA");
    assert_eq!(check(&verifier(), &padded), Err(DpopError::Malformed(Malformed::Base64)));
}

#[test]
fn refuses_header_that_is_not_a_json_object() {
    let key = key(0x2a);
    let claims = proof().claims.to_string();
    assert_eq!(check(&verifier(), &sign_raw(&key, "not json", &claims)), Err(DpopError::Malformed(Malformed::Json)));
    assert_eq!(check(&verifier(), &sign_raw(&key, "[1,2]", &claims)), Err(DpopError::Malformed(Malformed::NotObject)));
}

#[test]
fn refuses_duplicate_keys_in_header() {
    let p = proof();
    let jwk = public_jwk(&p.key).to_string();
    let header = format!(r#"{{"typ":"dpop+jwt","alg":"ES256","alg":"none","jwk":{jwk}}}"#);
    let proof = sign_raw(&p.key, &header, &p.claims.to_string());
    assert_eq!(check(&verifier(), &proof), Err(DpopError::DuplicateKey));
}

#[test]
fn refuses_duplicate_keys_in_payload() {
    let p = proof();
    let payload = format!(
        r#"{{"jti":"j","htm":"POST","htu":"{URI}","htu":"https://evil.example/mcp","iat":{NOW},"ath":"{}"}}"#,
        access_token_hash(TOKEN)
    );
    let proof = sign_raw(&p.key, &p.header.to_string(), &payload);
    assert_eq!(check(&verifier(), &proof), Err(DpopError::DuplicateKey));
}

#[test]
fn refuses_oversized_proof() {
    let proof = proof().claim("pad", json!("x".repeat(9_000))).sign();
    assert_eq!(check(&verifier(), &proof), Err(DpopError::Malformed(Malformed::TooLarge)));
}

#[test]
fn refuses_crit_header() {
    let proof = proof().header("crit", json!(["b64"])).header("b64", json!(false)).sign();
    assert_eq!(check(&verifier(), &proof), Err(DpopError::Malformed(Malformed::Crit)));
}

// ---- Check 3: required claims --------------------------------------------------

#[test]
fn refuses_missing_claims() {
    for claim in ["jti", "htm", "htu", "iat"] {
        let proof = proof().without_claim(claim).sign();
        assert_eq!(check(&verifier(), &proof), Err(DpopError::MissingClaim(claim)), "{claim}");
    }
    let proof = proof().without_header("jwk").sign();
    assert_eq!(check(&verifier(), &proof), Err(DpopError::MissingClaim("jwk")));
}

#[test]
fn refuses_claims_of_the_wrong_type() {
    for (claim, value) in [
        ("jti", json!(7)),
        ("jti", json!("")),
        ("htm", json!(["POST"])),
        ("htu", json!({"u": URI})),
        ("iat", json!("1700000000")),
        ("iat", json!(-1)),
        ("ath", json!(null)),
        ("nonce", json!(1)),
    ] {
        let proof = proof().claim(claim, value.clone()).sign();
        assert_eq!(check(&verifier(), &proof), Err(DpopError::InvalidClaim(claim)), "{claim}={value}");
    }
}

// ---- Check 4: typ ----------------------------------------------------------------

#[test]
fn refuses_wrong_typ() {
    for typ in [json!("JWT"), json!("at+jwt"), json!("dpop+jwt "), json!(null)] {
        let proof = proof().header("typ", typ.clone()).sign();
        assert_eq!(check(&verifier(), &proof), Err(DpopError::WrongType), "{typ}");
    }
    assert_eq!(check(&verifier(), &proof().without_header("typ").sign()), Err(DpopError::WrongType));
}

// ---- Check 5: alg ----------------------------------------------------------------

#[test]
fn refuses_alg_none() {
    let p = proof().header("alg", json!("none"));
    let unsigned = format!("{}.", p.sign().rsplit_once('.').unwrap().0);
    assert_eq!(check(&verifier(), &unsigned), Err(DpopError::Malformed(Malformed::Segments)));
    // Even with some bytes where the signature goes, `none` is never an algorithm.
    assert_eq!(check(&verifier(), &p.sign()), Err(DpopError::AlgNotAllowed));
}

#[test]
fn refuses_hs256_signed_with_the_public_key() {
    use aws_lc_rs::hmac;
    let p = proof().header("alg", json!("HS256"));
    let input = format!(
        "{}.{}",
        BASE64URL_NOPAD.encode(p.header.to_string().as_bytes()),
        BASE64URL_NOPAD.encode(p.claims.to_string().as_bytes())
    );
    // The classic confusion: the "secret" is the public key every party knows.
    let secret = p.header["jwk"].to_string();
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()), input.as_bytes());
    let forged = format!("{input}.{}", BASE64URL_NOPAD.encode(tag.as_ref()));
    assert_eq!(check(&verifier(), &forged), Err(DpopError::AlgNotAllowed));
}

#[test]
fn refuses_unknown_and_lowercase_algs() {
    for alg in [json!("es256"), json!("ES384"), json!("EdDSA"), json!(256), json!(null)] {
        let proof = proof().header("alg", alg.clone()).sign();
        assert_eq!(check(&verifier(), &proof), Err(DpopError::AlgNotAllowed), "{alg}");
    }
}

#[test]
fn refuses_alg_outside_the_configured_list() {
    let v = DpopVerifier::new(DpopConfig { algs: vec![SigAlg::Rs256], ..DpopConfig::default() }).unwrap();
    assert_eq!(check(&v, &proof().sign()), Err(DpopError::AlgNotAllowed));
    let none = DpopVerifier::new(DpopConfig { algs: vec![], ..DpopConfig::default() });
    assert_eq!(none.err(), Some(DpopConfigError::NoAlgorithms));
}

#[test]
fn refuses_ec_key_with_rsa_alg() {
    let proof = proof().header("alg", json!("RS256")).sign();
    assert_eq!(check(&verifier(), &proof), Err(DpopError::KeyAlgMismatch));
}

// ---- Check 6: signature ------------------------------------------------------------

#[test]
fn refuses_signature_by_another_key() {
    // The header names key 0x2a; key 0x2b signed.
    let proof = proof().signed_by(key(0x2b)).sign();
    assert_eq!(check(&verifier(), &proof), Err(DpopError::BadSignature));
}

#[test]
fn refuses_payload_changed_after_signing() {
    let original = proof().sign();
    let (header, rest) = original.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let other = proof().claim("htu", json!("https://mcp.example.com/admin"));
    let payload = BASE64URL_NOPAD.encode(other.claims.to_string().as_bytes());
    let tampered = format!("{header}.{payload}.{sig}");
    let v = verifier();
    let result = v.verify(&tampered, "POST", "https://mcp.example.com/admin", Some(TOKEN), None, at(NOW));
    assert_eq!(result, Err(DpopError::BadSignature));
}

#[test]
fn refuses_der_or_truncated_signatures() {
    let p = proof().sign();
    let (input, sig) = p.rsplit_once('.').unwrap();
    let raw = BASE64URL_NOPAD.decode(sig.as_bytes()).unwrap();
    let der = Signature::from_slice(&raw).unwrap().to_der();
    for bad in [der.as_bytes(), &raw[..63], &[0u8; 64][..]] {
        let proof = format!("{input}.{}", BASE64URL_NOPAD.encode(bad));
        assert_eq!(check(&verifier(), &proof), Err(DpopError::BadSignature));
    }
}

// ---- Check 7: jwk ----------------------------------------------------------------

#[test]
fn refuses_private_key_in_jwk() {
    let mut jwk = public_jwk(&key(0x2a));
    jwk["d"] = json!(BASE64URL_NOPAD.encode(&[0x2a; 32]));
    assert_eq!(check(&verifier(), &proof().header("jwk", jwk).sign()), Err(DpopError::PrivateKey));
}

#[test]
fn refuses_symmetric_jwk() {
    let jwk = json!({"kty": "oct", "k": BASE64URL_NOPAD.encode(b"shared secret")});
    let proof = proof().header("jwk", jwk).sign();
    assert_eq!(check(&verifier(), &proof), Err(DpopError::InvalidJwk(JwkError::Symmetric)));
}

#[test]
fn refuses_invalid_ec_point() {
    let mut jwk = public_jwk(&key(0x2a));
    let mut y = BASE64URL_NOPAD.decode(jwk["y"].as_str().unwrap().as_bytes()).unwrap();
    y[31] ^= 1;
    jwk["y"] = json!(BASE64URL_NOPAD.encode(&y));
    let proof = proof().header("jwk", jwk).sign();
    assert_eq!(check(&verifier(), &proof), Err(DpopError::InvalidJwk(JwkError::InvalidPoint)));
}

#[test]
fn refuses_unknown_curve_and_jwk_that_is_not_an_object() {
    let mut jwk = public_jwk(&key(0x2a));
    jwk["crv"] = json!("P-384");
    assert_eq!(
        check(&verifier(), &proof().header("jwk", jwk).sign()),
        Err(DpopError::InvalidJwk(JwkError::UnsupportedCrv))
    );
    let jwk = json!(jkt(&key(0x2a)));
    assert_eq!(
        check(&verifier(), &proof().header("jwk", jwk).sign()),
        Err(DpopError::InvalidJwk(JwkError::NotAnObject))
    );
}

// ---- Check 8: htm ----------------------------------------------------------------

#[test]
fn refuses_htm_mismatch() {
    let v = verifier();
    let p = proof().sign();
    assert_eq!(v.verify(&p, "GET", URI, Some(TOKEN), None, at(NOW)), Err(DpopError::HtmMismatch));
    let lower = proof().claim("htm", json!("post")).sign();
    assert_eq!(check(&v, &lower), Err(DpopError::HtmMismatch));
}

// ---- Check 9: htu ----------------------------------------------------------------

#[test]
fn refuses_htu_for_another_path() {
    assert_eq!(check_uri("https://mcp.example.com/admin", URI), Err(DpopError::HtuMismatch));
}

#[test]
fn htu_query_is_ignored_on_both_sides() {
    assert!(check_uri("https://mcp.example.com/mcp?x=1", URI).is_ok());
    assert!(check_uri(URI, "https://mcp.example.com/mcp?session=abc").is_ok());
}

#[test]
fn htu_fragment_is_ignored() {
    assert!(check_uri("https://mcp.example.com/mcp#top", URI).is_ok());
}

#[test]
fn htu_default_port_matches_other_port_does_not() {
    assert!(check_uri("https://mcp.example.com:443/mcp", URI).is_ok());
    assert_eq!(check_uri("https://mcp.example.com:8443/mcp", URI), Err(DpopError::HtuMismatch));
}

#[test]
fn htu_scheme_and_host_case_match() {
    assert!(check_uri("HTTPS://MCP.EXAMPLE.COM/mcp", URI).is_ok());
}

#[test]
fn refuses_htu_with_other_scheme_or_host() {
    assert_eq!(check_uri("http://mcp.example.com/mcp", URI), Err(DpopError::HtuMismatch));
    assert_eq!(check_uri("https://mcp.example.com.evil.example/mcp", URI), Err(DpopError::HtuMismatch));
}

#[test]
fn refuses_htu_trailing_slash_trick() {
    assert_eq!(check_uri("https://mcp.example.com/mcp/", URI), Err(DpopError::HtuMismatch));
    assert_eq!(check_uri(URI, "https://mcp.example.com/mcp/"), Err(DpopError::HtuMismatch));
}

#[test]
fn refuses_htu_with_other_path_case() {
    assert_eq!(check_uri("https://mcp.example.com/MCP", URI), Err(DpopError::HtuMismatch));
}

#[test]
fn htu_percent_encoding_and_dot_segments_normalise() {
    assert!(check_uri("https://mcp.example.com/%6d%63%70", URI).is_ok());
    assert!(check_uri("https://mcp.example.com/x/../mcp", URI).is_ok());
}

#[test]
fn refuses_relative_or_odd_htu() {
    assert_eq!(check_uri("/mcp", URI), Err(DpopError::HtuMismatch));
    assert_eq!(check_uri("https://mcp.example.com\\mcp", URI), Err(DpopError::HtuMismatch));
    assert_eq!(check_uri(URI, "/mcp"), Err(DpopError::RequestUri));
}

// ---- Check 10: nonce -------------------------------------------------------------

fn nonce_verifier() -> (DpopVerifier, Arc<NonceSource>) {
    let source = Arc::new(NonceSource::from_secret(&[9; 32], Duration::from_secs(60)));
    let config = DpopConfig { nonce: Some(source.clone()), ..DpopConfig::default() };
    (DpopVerifier::new(config).unwrap(), source)
}

#[test]
fn accepts_current_nonce() {
    let (v, source) = nonce_verifier();
    let proof = proof().claim("nonce", json!(source.issue(at(NOW)))).sign();
    assert!(check(&v, &proof).is_ok());
    assert!(v.nonce_source().is_some());
}

#[test]
fn refuses_missing_nonce_when_required() {
    let (v, _) = nonce_verifier();
    let err = check(&v, &proof().sign()).unwrap_err();
    assert_eq!(err, DpopError::NonceMissing);
    assert!(err.is_nonce_error());
}

#[test]
fn refuses_wrong_nonce() {
    let (v, _) = nonce_verifier();
    let foreign = NonceSource::from_secret(&[1; 32], Duration::from_secs(60)).issue(at(NOW));
    for nonce in [foreign, "made-up".to_owned()] {
        let proof = proof().claim("nonce", json!(nonce)).sign();
        assert_eq!(check(&v, &proof), Err(DpopError::NonceInvalid));
    }
}

#[test]
fn refuses_expired_nonce() {
    let (v, source) = nonce_verifier();
    let proof = proof().claim("nonce", json!(source.issue(at(NOW - 180)))).sign();
    assert_eq!(check(&v, &proof), Err(DpopError::NonceExpired));
}

// ---- Check 11: iat ---------------------------------------------------------------

#[test]
fn iat_window_edges_are_inclusive() {
    let v = verifier();
    assert!(check(&v, &proof().claim("iat", json!(NOW - 25)).claim("jti", json!("old")).sign()).is_ok());
    assert!(check(&v, &proof().claim("iat", json!(NOW + 15)).claim("jti", json!("new")).sign()).is_ok());
}

#[test]
fn refuses_stale_iat() {
    assert_eq!(check(&verifier(), &proof().claim("iat", json!(NOW - 26)).sign()), Err(DpopError::IatTooOld));
    assert_eq!(check(&verifier(), &proof().claim("iat", json!(0)).sign()), Err(DpopError::IatTooOld));
}

#[test]
fn refuses_future_iat() {
    assert_eq!(check(&verifier(), &proof().claim("iat", json!(NOW + 16)).sign()), Err(DpopError::IatInFuture));
    assert_eq!(check(&verifier(), &proof().claim("iat", json!(u64::MAX)).sign()), Err(DpopError::IatInFuture));
    assert_eq!(check(&verifier(), &proof().claim("iat", json!(1e300)).sign()), Err(DpopError::IatInFuture));
}

#[test]
fn iat_window_is_configurable() {
    let config = DpopConfig { lifetime: Duration::from_secs(60), clock_skew: Duration::ZERO, ..DpopConfig::default() };
    let v = DpopVerifier::new(config).unwrap();
    assert!(check(&v, &proof().claim("iat", json!(NOW - 60)).sign()).is_ok());
    assert_eq!(check(&v, &proof().claim("iat", json!(NOW + 1)).sign()), Err(DpopError::IatInFuture));
}

// ---- Check 12: ath and cnf.jkt ---------------------------------------------------

#[test]
fn refuses_wrong_ath() {
    let proof = proof().claim("ath", json!(access_token_hash("another token"))).sign();
    assert_eq!(check(&verifier(), &proof), Err(DpopError::AthMismatch));
}

#[test]
fn refuses_missing_ath_with_a_token() {
    assert_eq!(check(&verifier(), &proof().without_claim("ath").sign()), Err(DpopError::AthMissing));
}

#[test]
fn refuses_key_other_than_the_bound_one() {
    let proof = proof().sign();
    let result = verifier().verify(&proof, "POST", URI, Some(TOKEN), Some(&jkt(&key(0x2b))), at(NOW));
    assert_eq!(result, Err(DpopError::JktMismatch));
}

#[test]
fn refuses_whole_proof_from_another_key_with_the_token() {
    // An attacker with the token but not the key signs a proof with their own key.
    let attacker = key(0x66);
    let proof = proof().header("jwk", public_jwk(&attacker)).signed_by(attacker).sign();
    assert_eq!(check(&verifier(), &proof), Err(DpopError::JktMismatch));
}

// ---- §11.1: jti replay -----------------------------------------------------------

#[test]
fn refuses_replayed_jti() {
    let v = verifier();
    let proof = proof().sign();
    assert!(check(&v, &proof).is_ok());
    assert_eq!(check(&v, &proof), Err(DpopError::Replayed));
    // A fresh proof reusing the jti, signed again: still the same (jti, htu).
    let again = proof_with_iat(NOW + 1);
    assert_eq!(v.verify(&again, "POST", URI, Some(TOKEN), None, at(NOW + 1)), Err(DpopError::Replayed));
}

fn proof_with_iat(iat: u64) -> String {
    proof().claim("iat", json!(iat)).sign()
}

#[test]
fn same_jti_for_another_htu_is_accepted() {
    let v = verifier();
    assert!(check(&v, &proof().sign()).is_ok());
    let other = proof().claim("htu", json!("https://mcp.example.com/other")).sign();
    assert!(v.verify(&other, "POST", "https://mcp.example.com/other", Some(TOKEN), None, at(NOW)).is_ok());
}

#[test]
fn replay_is_detected_across_htu_spellings() {
    let v = verifier();
    assert!(check(&v, &proof().sign()).is_ok());
    let respelled = proof().claim("htu", json!("HTTPS://mcp.example.com:443/mcp?x")).sign();
    assert_eq!(check(&v, &respelled), Err(DpopError::Replayed));
}

#[test]
fn replayed_jti_is_forgotten_after_the_window() {
    let v = verifier();
    assert!(check(&v, &proof().sign()).is_ok());
    let later = NOW + 26;
    let proof = proof_with_iat(later);
    assert!(v.verify(&proof, "POST", URI, Some(TOKEN), None, at(later)).is_ok());
}

#[test]
fn refused_proofs_are_not_remembered() {
    let v = verifier();
    let bad = proof().signed_by(key(0x2b)).sign();
    assert_eq!(check(&v, &bad), Err(DpopError::BadSignature));
    assert_eq!(v.replay_entries(), 0);
    assert!(check(&v, &proof().sign()).is_ok());
}

#[test]
fn full_replay_cache_refuses_new_proofs() {
    let v = DpopVerifier::new(DpopConfig { replay_capacity: 1, ..DpopConfig::default() }).unwrap();
    assert!(check(&v, &proof().claim("jti", json!("first")).sign()).is_ok());
    assert_eq!(check(&v, &proof().claim("jti", json!("second")).sign()), Err(DpopError::ReplayCacheFull));
    // Once the first entry's window has passed, there is room again.
    let later = NOW + 26;
    let proof = proof().claim("jti", json!("third")).claim("iat", json!(later)).sign();
    assert!(v.verify(&proof, "POST", URI, Some(TOKEN), None, at(later)).is_ok());
}

#[test]
fn one_key_past_its_replay_quota_is_refused_others_are_not() {
    let config = DpopConfig { replay_capacity: 100, replay_entries_per_key: 2, ..DpopConfig::default() };
    let v = DpopVerifier::new(config).unwrap();
    assert!(check(&v, &proof().claim("jti", json!("a")).sign()).is_ok());
    assert!(check(&v, &proof().claim("jti", json!("b")).sign()).is_ok());
    assert_eq!(check(&v, &proof().claim("jti", json!("c")).sign()), Err(DpopError::ReplayKeyQuota));
    // Another key (no token binding here) still has its whole quota.
    let other = proof().header("jwk", public_jwk(&key(0x2b))).signed_by(key(0x2b)).claim("jti", json!("c")).sign();
    assert!(v.verify(&other, "POST", URI, Some(TOKEN), None, at(NOW)).is_ok());
}

// ---- Errors ------------------------------------------------------------------------

#[test]
fn errors_never_show_the_proof_or_token() {
    let secret_jti = "jti-SECRET-VALUE";
    let secret_token = "token-SECRET-VALUE";
    let proof = proof().claim("jti", json!(secret_jti)).claim("ath", json!("ath-SECRET-VALUE"));
    let text = proof.sign();
    let v = verifier();
    let mut errors = vec![v.verify(&text, "POST", URI, Some(secret_token), None, at(NOW)).unwrap_err()];
    errors.push(check(&v, &format!("{text}x")).unwrap_err());
    errors.push(check(&v, &text.replace('.', "")).unwrap_err());
    for e in &errors {
        for shown in [format!("{e}"), format!("{e:?}")] {
            assert!(!shown.contains("SECRET"), "{shown}");
            assert!(!shown.contains(&text[..20]), "{shown}");
        }
        assert!(!e.reason().is_empty());
    }
}

#[test]
fn reasons_are_distinct_per_check() {
    let all = [
        DpopError::MultipleProofs,
        DpopError::Malformed(Malformed::Segments),
        DpopError::DuplicateKey,
        DpopError::MissingClaim("jti"),
        DpopError::InvalidClaim("jti"),
        DpopError::WrongType,
        DpopError::AlgNotAllowed,
        DpopError::BadSignature,
        DpopError::PrivateKey,
        DpopError::InvalidJwk(JwkError::InvalidPoint),
        DpopError::KeyAlgMismatch,
        DpopError::HtmMismatch,
        DpopError::HtuMismatch,
        DpopError::RequestUri,
        DpopError::NonceMissing,
        DpopError::NonceInvalid,
        DpopError::NonceExpired,
        DpopError::IatTooOld,
        DpopError::IatInFuture,
        DpopError::AthMissing,
        DpopError::AthMismatch,
        DpopError::JktMismatch,
        DpopError::Replayed,
        DpopError::ReplayCacheFull,
        DpopError::ReplayKeyQuota,
    ];
    let mut reasons: Vec<_> = all.iter().map(DpopError::reason).collect();
    reasons.sort_unstable();
    reasons.dedup();
    assert_eq!(reasons.len(), all.len());
}
