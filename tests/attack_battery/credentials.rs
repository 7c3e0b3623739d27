//! The credential variants of the `auth` setup: honest, forged, confused and replayed
//! tokens and DPoP proofs, by the name a case gives in `credentials:`.

use serde_json::{Value, json};

use super::{ISSUER, KID, PUBLIC_URL, Target};
use crate::support::dpop::*;

/// The `Authorization` and `DPoP` header values a credential variant sends.
pub struct Creds {
    pub authorization: Vec<String>,
    pub dpop: Vec<String>,
}

impl Target {
    fn token(&self, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
        let mut header = token_header(KID);
        let mut claims = token_claims(ISSUER, PUBLIC_URL, "battery-subject", &self.client);
        edit(&mut header, &mut claims);
        self.issuer.jws(&header, &claims)
    }

    fn proof(&self, token: &str, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
        let mut header = proof_header(&self.client);
        let mut claims = proof_claims("POST", PUBLIC_URL, Some(token));
        edit(&mut header, &mut claims);
        self.client.jws(&header, &claims)
    }

    pub fn creds(&self, variant: &str) -> Creds {
        let token = self.token(|_, _| {});
        let dpop = |t: &str| format!("DPoP {t}");
        let one = |auth: String, proof: String| Creds { authorization: vec![auth], dpop: vec![proof] };
        let with_proof = |t: String| {
            let p = self.proof(&t, |_, _| {});
            one(dpop(&t), p)
        };
        let proof_edit = |edit: &dyn Fn(&mut Value, &mut Value)| one(dpop(&token), self.proof(&token, edit));
        match variant {
            "none" => Creds { authorization: vec![], dpop: vec![] },
            "honest" | "replay" => with_proof(token.clone()),
            "token_alg_none" => {
                let claims = token_claims(ISSUER, PUBLIC_URL, "battery-subject", &self.client);
                with_proof(jws(
                    &json!({"alg": "none", "typ": "JWT", "kid": KID}),
                    &claims.to_string(),
                    Signer::Unsigned,
                ))
            }
            "token_hs256_public_key" => {
                // The classic confusion: the issuer's public JWK as an HMAC secret.
                let claims = token_claims(ISSUER, PUBLIC_URL, "battery-subject", &self.client);
                let secret = self.issuer.jwk().to_string();
                with_proof(jws(
                    &json!({"alg": "HS256", "typ": "JWT", "kid": KID}),
                    &claims.to_string(),
                    Signer::Hs(secret.as_bytes()),
                ))
            }
            "token_wrong_iss" => with_proof(self.token(|_, c| c["iss"] = json!("https://kc.evil.test/realms/agents"))),
            "token_wrong_aud" => with_proof(self.token(|_, c| c["aud"] = json!("https://other.example.test/mcp"))),
            "token_expired" => with_proof(self.token(|_, c| {
                c["iat"] = json!(now() - 1200);
                c["exp"] = json!(now() - 600);
            })),
            "token_not_yet_valid" => with_proof(self.token(|_, c| c["nbf"] = json!(now() + 600))),
            "token_unknown_kid" => with_proof(self.token(|h, _| h["kid"] = json!("kc-es256-rotated-away"))),
            "token_kid_of_proof_key" => {
                // Signed by the client's own key, naming it in the header: not the issuer.
                let claims = token_claims(ISSUER, PUBLIC_URL, "battery-subject", &self.client);
                let mut header = token_header(KID);
                header["jwk"] = self.client.jwk();
                with_proof(self.client.jws(&header, &claims))
            }
            "token_without_cnf" => with_proof(self.token(|_, c| {
                c.as_object_mut().expect("claims").remove("cnf");
            })),
            "token_bound_to_other_key" => {
                let other = EcKey::generate();
                with_proof(self.token(|_, c| c["cnf"] = json!({"jkt": other.thumbprint()})))
            }
            "token_duplicate_claim" => {
                let claims = token_claims(ISSUER, PUBLIC_URL, "battery-subject", &self.client).to_string();
                let payload = claims.replacen('{', r#"{"sub":"admin","#, 1);
                with_proof(jws(&token_header(KID), &payload, Signer::Es(&self.issuer)))
            }
            "token_jkt_as_bearer" => Creds { authorization: vec![format!("Bearer {token}")], dpop: vec![] },
            "bearer_with_proof" => {
                Creds { authorization: vec![format!("Bearer {token}")], dpop: vec![self.proof(&token, |_, _| {})] }
            }
            "dpop_without_proof" => Creds { authorization: vec![dpop(&token)], dpop: vec![] },
            "two_proofs" => Creds {
                authorization: vec![dpop(&token)],
                dpop: vec![self.proof(&token, |_, _| {}), self.proof(&token, |_, _| {})],
            },
            "two_authorizations" => Creds {
                authorization: vec![dpop(&token), dpop(&self.token(|_, c| c["sub"] = json!("admin")))],
                dpop: vec![self.proof(&token, |_, _| {})],
            },
            "proof_htm_get" => proof_edit(&|_, c| c["htm"] = json!("GET")),
            "proof_htu_other" => proof_edit(&|_, c| c["htu"] = json!("https://other.example.test/mcp")),
            "proof_htu_internal" => proof_edit(&|_, c| c["htu"] = json!("http://127.0.0.1/mcp")),
            "proof_ath_other" => proof_edit(&|_, c| c["ath"] = json!(sha256_b64(b"another token"))),
            "proof_without_ath" => proof_edit(&|_, c| {
                c.as_object_mut().expect("claims").remove("ath");
            }),
            "proof_iat_stale" => proof_edit(&|_, c| c["iat"] = json!(now() - 3600)),
            "proof_iat_future" => proof_edit(&|_, c| c["iat"] = json!(now() + 3600)),
            "proof_typ_jwt" => proof_edit(&|h, _| h["typ"] = json!("JWT")),
            "proof_jwk_private_d" => proof_edit(&|h, _| h["jwk"]["d"] = json!(b64([7u8; 32]))),
            "proof_jwk_of_other_key" => {
                // Claims the client's key, signed by another: the signature must not verify.
                let other = EcKey::generate();
                let proof = other.jws(&proof_header(&self.client), &proof_claims("POST", PUBLIC_URL, Some(&token)));
                one(dpop(&token), proof)
            }
            "proof_by_other_key" => {
                let other = EcKey::generate();
                let proof = other.jws(&proof_header(&other), &proof_claims("POST", PUBLIC_URL, Some(&token)));
                one(dpop(&token), proof)
            }
            "proof_alg_none" => {
                let claims = proof_claims("POST", PUBLIC_URL, Some(&token));
                let header = json!({"typ": "dpop+jwt", "alg": "none", "jwk": self.client.jwk()});
                one(dpop(&token), jws(&header, &claims.to_string(), Signer::Unsigned))
            }
            "proof_hs256" => {
                let claims = proof_claims("POST", PUBLIC_URL, Some(&token));
                let header = json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": self.client.jwk()});
                let secret = self.client.jwk().to_string();
                one(dpop(&token), jws(&header, &claims.to_string(), Signer::Hs(secret.as_bytes())))
            }
            "proof_without_jti" => proof_edit(&|_, c| {
                c.as_object_mut().expect("claims").remove("jti");
            }),
            "proof_is_the_token" => one(dpop(&token), token.clone()),
            other => panic!("unknown credentials variant {other:?}"),
        }
    }
}
