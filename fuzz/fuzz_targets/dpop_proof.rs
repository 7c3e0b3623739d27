//! `auth::dpop::DpopVerifier::verify` (with the JWK reader of `auth::jwk`) on `DPoP`
//! header values.
//!
//! Byte 0 picks the mode (bit 0) and the request (bits 1–2); the rest is either
//! - raw: the `DPoP` header value as received (seeds: the RFC 9449 examples, with their
//!   requests), or
//! - built: choices for a proof this target signs itself with a fixed P-256 key, each
//!   choice one whose verdict is known (a valid or a broken `typ`, `alg`, `jwk`, claim).
//!
//! Checked:
//! - never panics;
//! - accepted ⇒ an independent reading agrees: three canonical base64url segments, `typ`
//!   `dpop+jwt`, the signature verifies (aws-lc-rs, called here) under the header's `jwk`
//!   over exactly `header.payload`, `htm`/`htu` name the request, `iat` is in the window,
//!   `ath` hashes the token, `jkt` is the RFC 7638 thumbprint computed here from the
//!   header's text, and the same proof a second time is `Replayed`;
//! - built: the verdict is the model's (the first §4.3 check that fails, in the
//!   verifier's documented order, or acceptance);
//! - an accepted proof with any one byte changed, or cut short, is refused.
#![no_main]

use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
use data_encoding::{BASE64, BASE64URL_NOPAD};
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use mcp_pep::auth::dpop::{DpopConfig, DpopError, DpopVerifier, Malformed, VerifiedProof, access_token_hash};
use mcp_pep::auth::jwk::JwkError;
use serde_json::{Value, json};

/// A P-256 key made for this target (PKCS#8); its proofs are signed here.
const KEY_PKCS8: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgzRPgzRUFuIF3/j3I4or946bC5/aXWrB2KLoRh85T+3ahRANCAAQNJvRpRMvBtwKZqMYCFZTm4AQrc4RF5Tpvv4446TQHa4D+XgNdfY34cg9Pzv+8VeGcF0EZGFHpLgz1gMtW00T/";
/// The public key of RFC 9449 Figure 1: another client's key.
const OTHER_X: &str = "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs";
const OTHER_Y: &str = "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA";

const NOW: u64 = 1_700_000_000;
const URI: &str = "https://mcp.example.com/mcp";
const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2lnbmF0dXJl";
/// `DpopConfig::default()`: 10 s lifetime + 15 s skew into the past, 15 s into the future.
const MAX_AGE: u64 = 25;
const SKEW: u64 = 15;

struct Key {
    pair: EcdsaKeyPair,
    x: String,
    y: String,
    jkt: String,
}

static KEY: LazyLock<Key> = LazyLock::new(|| {
    let der = BASE64.decode(KEY_PKCS8.as_bytes()).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    let (x, y) = (BASE64URL_NOPAD.encode(&point[1..33]), BASE64URL_NOPAD.encode(&point[33..65]));
    let jkt = ec_thumbprint(&x, &y);
    Key { pair, x, y, jkt }
});

fn sha256_b64(text: &str) -> String {
    BASE64URL_NOPAD.encode(digest::digest(&digest::SHA256, text.as_bytes()).as_ref())
}

/// RFC 7638 §3.2, written out here rather than taken from `PublicJwk::thumbprint`.
fn ec_thumbprint(x: &str, y: &str) -> String {
    sha256_b64(&format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#))
}

/// The request a proof comes with.
struct Request {
    method: &'static str,
    uri: &'static str,
    token: Option<&'static str>,
    jkt: Option<String>,
    now: u64,
}

fn request(pick: u8) -> Request {
    match pick & 3 {
        // RFC 9449 §7.1 (Figures 13–14): a resource request with a bound token.
        0 => Request {
            method: "GET",
            uri: "https://resource.example.org/protectedresource",
            token: Some("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into()),
            now: 1_562_262_618,
        },
        // RFC 9449 §4.1 (Figure 3): a token request, no access token yet.
        1 => Request {
            method: "POST",
            uri: "https://server.example.com/token",
            token: None,
            jkt: None,
            now: 1_562_262_616,
        },
        2 => Request { method: "POST", uri: URI, token: Some(TOKEN), jkt: Some(KEY.jkt.clone()), now: NOW },
        _ => Request { method: "POST", uri: URI, token: None, jkt: None, now: NOW },
    }
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// A fresh verifier per check, so that one input's proofs never replay another's.
fn verifier() -> DpopVerifier {
    DpopVerifier::new(DpopConfig { replay_capacity: 16, ..DpopConfig::default() }).unwrap()
}

fn verify(v: &DpopVerifier, proof: &str, req: &Request) -> Result<VerifiedProof, DpopError> {
    v.verify(proof, req.method, req.uri, req.token, req.jkt.as_deref(), at(req.now))
}

// ---------------------------------------------------------------------------------------
// What must hold of any accepted proof.

fn b64_json(segment: &str) -> Value {
    let bytes = BASE64URL_NOPAD.decode(segment.as_bytes()).expect("accepted a segment that is not base64url");
    assert_eq!(BASE64URL_NOPAD.encode(&bytes), segment, "accepted non-canonical base64url");
    serde_json::from_slice(&bytes).expect("accepted a segment that is not JSON")
}

fn str_of<'a>(v: &'a Value, member: &str) -> &'a str {
    v.get(member).and_then(Value::as_str).unwrap_or_else(|| panic!("accepted without a string `{member}`"))
}

fn check_accepted(v: &DpopVerifier, proof: &str, req: &Request, ok: &VerifiedProof) {
    let parts: Vec<&str> = proof.split('.').collect();
    assert_eq!(parts.len(), 3, "accepted a JWS of {} segments", parts.len());
    let (header, payload) = (b64_json(parts[0]), b64_json(parts[1]));
    let signature = BASE64URL_NOPAD.decode(parts[2].as_bytes()).expect("signature is base64url");
    let message = &proof.as_bytes()[..parts[0].len() + 1 + parts[1].len()];

    let typ = str_of(&header, "typ");
    assert!(typ.eq_ignore_ascii_case("dpop+jwt") || typ.eq_ignore_ascii_case("application/dpop+jwt"), "typ {typ:?}");
    assert!(header.get("crit").is_none(), "accepted a crit header");
    let jwk = header.get("jwk").expect("accepted without jwk");
    let jkt = match (str_of(&header, "alg"), str_of(jwk, "kty")) {
        ("ES256", "EC") => {
            assert_eq!(str_of(jwk, "crv"), "P-256");
            let (x, y) = (str_of(jwk, "x"), str_of(jwk, "y"));
            let mut point = vec![0x04];
            point.extend(BASE64URL_NOPAD.decode(x.as_bytes()).unwrap());
            point.extend(BASE64URL_NOPAD.decode(y.as_bytes()).unwrap());
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point)
                .verify(message, &signature)
                .expect("accepted an ES256 proof whose signature does not verify");
            ec_thumbprint(x, y)
        }
        (alg @ ("RS256" | "PS256"), "RSA") => {
            let (n, e) = (str_of(jwk, "n"), str_of(jwk, "e"));
            let key = signature::RsaPublicKeyComponents {
                n: BASE64URL_NOPAD.decode(n.as_bytes()).unwrap(),
                e: BASE64URL_NOPAD.decode(e.as_bytes()).unwrap(),
            };
            let params = if alg == "RS256" {
                &signature::RSA_PKCS1_2048_8192_SHA256
            } else {
                &signature::RSA_PSS_2048_8192_SHA256
            };
            key.verify(params, message, &signature).expect("accepted an RSA proof whose signature does not verify");
            sha256_b64(&format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#))
        }
        (alg, kty) => panic!("accepted alg {alg:?} with a {kty:?} key"),
    };
    assert_eq!(ok.jkt(), jkt, "jkt is not the RFC 7638 thumbprint of the header's jwk");
    if let Some(want) = &req.jkt {
        assert_eq!(&jkt, want, "accepted a key the token is not bound to");
    }

    assert_eq!(str_of(&payload, "jti"), ok.jti());
    assert!(!ok.jti().is_empty());
    assert_eq!(str_of(&payload, "htm"), req.method, "htm is not the request's method");
    let (htu, want) =
        (url::Url::parse(str_of(&payload, "htu")).expect("htu is a URL"), url::Url::parse(req.uri).unwrap());
    assert_eq!(
        (htu.scheme(), htu.host_str(), htu.port_or_known_default()),
        (want.scheme(), want.host_str(), want.port_or_known_default()),
        "htu names another origin"
    );
    let iat = payload.get("iat").and_then(Value::as_f64).expect("iat is a number");
    assert_eq!(ok.iat(), iat as u64);
    assert!(ok.iat() + MAX_AGE >= req.now && ok.iat() <= req.now + SKEW, "iat {} outside the window", ok.iat());
    if let Some(token) = req.token {
        assert_eq!(str_of(&payload, "ath"), sha256_b64(token), "ath is not the token's hash");
    }

    assert_eq!(verify(v, proof, req), Err(DpopError::Replayed), "an accepted proof was accepted twice");
}

/// Any one byte changed, or the last one dropped, and the proof must be refused.
fn check_mutations(proof: &str, req: &Request, u: &mut Unstructured<'_>) {
    let mut bytes = proof.as_bytes().to_vec();
    let at = u.choose_index(bytes.len()).unwrap_or(0);
    let flip = u.int_in_range(1..=255u8).unwrap_or(1);
    bytes[at] ^= flip;
    let refused = match std::str::from_utf8(&bytes) {
        Ok(mutated) => verify(&verifier(), mutated, req),
        // Not UTF-8: never reaches `verify` (`single_proof` refuses it).
        Err(_) => Err(DpopError::Malformed(Malformed::NotUtf8)),
    };
    assert!(refused.is_err(), "byte {at} ^ {flip:#04x} of an accepted proof is accepted too");
    let cut = &proof[..proof.len() - 1];
    assert!(verify(&verifier(), cut, req).is_err(), "an accepted proof cut short is accepted");
}

// ---------------------------------------------------------------------------------------
// Built proofs: every choice comes with the verdict of its check.

/// A member's value (`None`: absent) and what the verifier must say about it.
type Choice = (Option<Value>, Result<(), DpopError>);

fn pick(u: &mut Unstructured<'_>, choices: Vec<Choice>) -> Choice {
    let i = u.choose_index(choices.len()).unwrap_or(0);
    choices.into_iter().nth(i).unwrap()
}

/// True one time in `n`; false when the input has run out (so that a short input builds a
/// valid proof).
fn rare(u: &mut Unstructured<'_>, n: u8) -> bool {
    u.int_in_range(0..=n - 1).is_ok_and(|x| x == n - 1)
}

fn short_string(u: &mut Unstructured<'_>) -> String {
    let len = u.int_in_range(0..=24u8).unwrap_or(0);
    (0..len).map(|_| char::from(u.int_in_range(0x20..=0x7e_u8).unwrap_or(b'a'))).collect()
}

/// Members as JSON text, in order, duplicates kept (serde_json's maps would drop them).
fn object_text(members: &[(String, Value)]) -> String {
    let inner: Vec<String> =
        members.iter().map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v)).collect();
    format!("{{{}}}", inner.join(","))
}

fn push(members: &mut Vec<(String, Value)>, name: &str, value: Option<Value>) {
    if let Some(v) = value {
        members.push((name.to_owned(), v));
    }
}

fn built(u: &mut Unstructured<'_>) {
    use DpopError::*;
    let req = request(2 | u8::from(rare(u, 4)));
    let key = &*KEY;
    let ec = |x: &str, y: &str| json!({"kty": "EC", "crv": "P-256", "x": x, "y": y});
    let with = |mut v: Value, k: &str, m: Value| {
        v[k] = m;
        v
    };
    let mine = ec(&key.x, &key.y);
    // The first check that fails decides; the steps in the verifier's order.
    let mut verdicts: Vec<Result<(), DpopError>> = Vec::new();

    let (typ, typ_ok) = pick(
        u,
        vec![
            (Some(json!("dpop+jwt")), Ok(())),
            (Some(json!("application/dpop+jwt")), Ok(())),
            (Some(json!("DPoP+JWT")), Ok(())),
            (Some(json!("jwt")), Err(WrongType)),
            (Some(json!(["dpop+jwt"])), Err(WrongType)),
            (None, Err(WrongType)),
        ],
    );
    let (alg, alg_ok) = pick(
        u,
        vec![
            (Some(json!("ES256")), Ok(())),
            (Some(json!("none")), Err(AlgNotAllowed)),
            (Some(json!("HS256")), Err(AlgNotAllowed)),
            (Some(json!("es256")), Err(AlgNotAllowed)),
            (None, Err(AlgNotAllowed)),
            // An allowed algorithm, but not for an EC key.
            (Some(json!("RS256")), Err(KeyAlgMismatch)),
        ],
    );
    let crit = rare(u, 16);
    let mut bad_y = BASE64URL_NOPAD.decode(key.y.as_bytes()).unwrap();
    bad_y[31] ^= 1;
    let (jwk, jwk_ok) = pick(
        u,
        vec![
            (Some(mine.clone()), Ok(())),
            (Some(with(mine.clone(), "alg", json!("ES256"))), Ok(())),
            (Some(with(mine.clone(), "use", json!("sig"))), Ok(())),
            (Some(with(mine.clone(), "kid", json!("k1"))), Ok(())),
            (Some(with(mine.clone(), "d", json!("AAAA"))), Err(PrivateKey)),
            (Some(with(mine.clone(), "use", json!("enc"))), Err(InvalidJwk(JwkError::NotForSignatures))),
            (Some(with(mine.clone(), "alg", json!("RS256"))), Err(InvalidJwk(JwkError::UnsupportedAlg))),
            (Some(with(mine.clone(), "crv", json!("P-384"))), Err(InvalidJwk(JwkError::UnsupportedCrv))),
            (Some(with(mine.clone(), "kty", json!("oct"))), Err(InvalidJwk(JwkError::Symmetric))),
            (Some(ec(&key.x, &BASE64URL_NOPAD.encode(&bad_y))), Err(InvalidJwk(JwkError::InvalidPoint))),
            (Some(json!("not an object")), Err(InvalidJwk(JwkError::NotAnObject))),
            (None, Err(MissingClaim("jwk"))),
            // Another client's key: refused as unbound when the token names ours, else by the
            // signature (see `other_key` below).
            (Some(ec(OTHER_X, OTHER_Y)), Ok(())),
        ],
    );
    let other_key = jwk.as_ref().and_then(|j| j.get("x")).and_then(Value::as_str) == Some(OTHER_X);
    verdicts.push(typ_ok);
    if alg_ok != Err(KeyAlgMismatch) {
        verdicts.push(alg_ok.clone());
    }
    if crit {
        verdicts.push(Err(Malformed(mcp_pep::auth::dpop::Malformed::Crit)));
    }
    verdicts.push(jwk_ok.clone());
    if alg_ok == Err(KeyAlgMismatch) {
        verdicts.push(alg_ok);
    }

    let jti = format!("jti-{}", short_string(u));
    let (jti, jti_ok) = pick(
        u,
        vec![
            (Some(json!(jti)), Ok(())),
            (Some(json!("")), Err(InvalidClaim("jti"))),
            (Some(json!(7)), Err(InvalidClaim("jti"))),
            (None, Err(MissingClaim("jti"))),
        ],
    );
    let (htm, htm_ok) = pick(
        u,
        vec![
            (Some(json!("POST")), Ok(())),
            (Some(json!("post")), Err(HtmMismatch)),
            (Some(json!("GET")), Err(HtmMismatch)),
            (Some(json!("")), Err(InvalidClaim("htm"))),
            (None, Err(MissingClaim("htm"))),
        ],
    );
    let htu_choices: Vec<Choice> = [
        ("https://mcp.example.com/mcp", true),
        ("https://mcp.example.com/mcp?session=1", true),
        ("https://mcp.example.com/mcp#top", true),
        ("HTTPS://MCP.Example.COM/mcp", true),
        ("https://mcp.example.com:443/mcp", true),
        ("https://mcp.example.com/./x/../mcp", true),
        ("https://mcp.example.com/%6Dcp", true),
        ("https://mcp.example.com/MCP", false),
        ("https://mcp.example.com/mcp/", false),
        ("http://mcp.example.com/mcp", false),
        ("https://mcp.example.com:8443/mcp", false),
        ("https://mcp.example.org/mcp", false),
        ("https://user@mcp.example.com/mcp", false),
        ("https:/mcp.example.com/mcp", false),
        ("https://mcp.example.com/mcp%2F", false),
    ]
    .into_iter()
    .map(|(uri, ok)| (Some(json!(uri)), if ok { Ok(()) } else { Err(HtuMismatch) }))
    .chain([(None, Err(MissingClaim("htu")))])
    .collect();
    let (htu, htu_ok) = pick(u, htu_choices);
    // -40 ..= 30 s from NOW; 0 when the input has run out.
    let offset = (i64::from(u.int_in_range(0..=70u8).unwrap_or(0)) + 40) % 71 - 40;
    let iat = NOW.saturating_add_signed(offset);
    let iat_ok = if offset < -(MAX_AGE as i64) {
        Err(IatTooOld)
    } else if offset > SKEW as i64 {
        Err(IatInFuture)
    } else {
        Ok(())
    };
    let (iat, iat_ok) = pick(
        u,
        vec![
            (Some(json!(iat)), iat_ok.clone()),
            // NumericDate allows fractions (truncated).
            (Some(json!(iat as f64 + 0.75)), iat_ok),
            (Some(json!(iat.to_string())), Err(InvalidClaim("iat"))),
            (Some(json!(-1)), Err(InvalidClaim("iat"))),
            (None, Err(MissingClaim("iat"))),
        ],
    );
    let with_token = req.token.is_some();
    let (ath, ath_ok) = pick(
        u,
        vec![
            (Some(json!(access_token_hash(TOKEN))), Ok(())),
            (Some(json!(access_token_hash("another token"))), if with_token { Err(AthMismatch) } else { Ok(()) }),
            (None, if with_token { Err(AthMissing) } else { Ok(()) }),
            (Some(json!(1)), Err(InvalidClaim("ath"))),
        ],
    );
    // `Claims::read` reads jti, htm, htu, iat, ath in that order before comparing any.
    let reads = [&jti_ok, &htm_ok, &htu_ok, &iat_ok, &ath_ok];
    let read_error =
        reads.iter().find_map(|r| r.as_ref().err().filter(|e| matches!(e, MissingClaim(_) | InvalidClaim(_))));
    match read_error {
        Some(e) => verdicts.push(Err(e.clone())),
        None => verdicts.extend([htm_ok, htu_ok, iat_ok, ath_ok]),
    }
    if other_key {
        verdicts.push(if req.jkt.is_some() { Err(JktMismatch) } else { Err(BadSignature) });
    }

    let mut header = Vec::new();
    push(&mut header, "typ", typ);
    push(&mut header, "alg", alg);
    push(&mut header, "jwk", jwk);
    if crit {
        header.push(("crit".into(), json!(["exp"])));
    }
    let mut payload = Vec::new();
    push(&mut payload, "jti", jti);
    push(&mut payload, "htm", htm);
    push(&mut payload, "htu", htu);
    push(&mut payload, "iat", iat);
    push(&mut payload, "ath", ath);
    // Members the verifier does not know are ignored, unless they repeat a known one.
    let extra = short_string(u);
    if !extra.is_empty() {
        let (members, known) = if u.ratio(1, 2).unwrap_or(false) {
            (&mut header, &["typ", "alg", "jwk", "crit"][..])
        } else {
            (&mut payload, &["jti", "htm", "htu", "iat", "ath", "nonce"][..])
        };
        let repeats = members.iter().any(|(k, _)| *k == extra);
        // A known member the choices left out would change their verdict.
        let extra = if !repeats && known.contains(&extra.as_str()) { format!("x-{extra}") } else { extra };
        members.push((extra, json!(short_string(u))));
        if repeats {
            verdicts.insert(0, Err(DuplicateKey));
        }
    }
    // Member order means nothing to the verifier.
    let shuffle = u.ratio(1, 2).unwrap_or(false);
    if shuffle {
        header.reverse();
        payload.reverse();
    }

    let input = format!(
        "{}.{}",
        BASE64URL_NOPAD.encode(object_text(&header).as_bytes()),
        BASE64URL_NOPAD.encode(object_text(&payload).as_bytes())
    );
    let sig = key.pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    let proof = format!("{input}.{}", BASE64URL_NOPAD.encode(sig.as_ref()));

    let expected = verdicts.into_iter().find(Result::is_err).unwrap_or(Ok(()));
    let v = verifier();
    let got = verify(&v, &proof, &req);
    match (&got, expected) {
        (Ok(ok), Ok(())) => {
            assert_eq!(ok.jkt(), key.jkt);
            check_accepted(&v, &proof, &req, ok);
            check_mutations(&proof, &req, u);
        }
        (Err(e), Err(want)) => assert_eq!(*e, want, "refused for another reason than the model's: {proof}"),
        (got, want) => panic!("verify = {got:?}, the model says {want:?}: {proof}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else { return };
    if control & 1 == 1 {
        built(&mut Unstructured::new(rest));
        return;
    }
    let req = request(control >> 1);
    // What the credentials stage does with one header field (check 1 aside).
    let Ok(Some(proof)) = mcp_pep::auth::dpop::single_proof([rest]) else { return };
    let v = verifier();
    if let Ok(ok) = verify(&v, proof, &req) {
        check_accepted(&v, proof, &req, &ok);
        check_mutations(proof, &req, &mut Unstructured::new(data));
    }
});
