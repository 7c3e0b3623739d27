//! ES256 keys that sign compact JWS: the issuer's tokens (`credentials`) and the
//! client's DPoP proofs. Keys are PKCS#8 PEM files, so that `credentials` can write a
//! token bound to a key that a later `run` loads.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use mcp_pep::auth::dpop::access_token_hash;
use mcp_pep::demo::credentials::SigningKey;
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

/// The demo's ES256 signing key, with its JWK and thumbprint worked out once: every proof
/// carries the JWK.
pub struct EcKey {
    key: SigningKey,
    jwk: Value,
    thumbprint: String,
}

impl EcKey {
    /// A new key and its PKCS#8 document (to write with [`pkcs8_pem`]).
    pub fn generate() -> anyhow::Result<(EcKey, Vec<u8>)> {
        let (key, der) = SigningKey::generate_pkcs8()?;
        Ok((EcKey::new(key)?, der))
    }

    pub fn from_pem_file(path: &std::path::Path) -> anyhow::Result<EcKey> {
        let der = PrivatePkcs8KeyDer::from_pem_file(path).with_context(|| format!("reading {}", path.display()))?;
        EcKey::new(SigningKey::from_pkcs8(der.secret_pkcs8_der())?)
    }

    fn new(key: SigningKey) -> anyhow::Result<EcKey> {
        Ok(EcKey { jwk: key.jwk(), thumbprint: key.thumbprint()?, key })
    }

    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// RFC 7638 thumbprint: a bound token's `cnf.jkt`.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    pub fn sign(&self, header: &Value, payload: &Value) -> anyhow::Result<String> {
        self.key.sign(header, payload)
    }
}

pub fn pkcs8_pem(der: &[u8]) -> String {
    mcp_pep::demo::pki::pem("PRIVATE KEY", der)
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What every proof of one run shares: the key, `htm`, `htu` and `ath`.
pub struct ProofTemplate {
    pub key: EcKey,
    pub htm: String,
    pub htu: String,
    pub ath: String,
}

impl ProofTemplate {
    pub fn new(key: EcKey, htu: &str, token: &str) -> ProofTemplate {
        ProofTemplate { key, htm: "POST".into(), htu: htu.into(), ath: access_token_hash(token) }
    }

    /// A fresh proof (RFC 9449 §4.2): a new `jti`, `iat` now.
    pub fn sign(&self) -> anyhow::Result<String> {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.key.jwk()});
        let payload = json!({
            "jti": uuid::Uuid::new_v4().to_string(),
            "htm": self.htm,
            "htu": self.htu,
            "iat": unix_now(),
            "ath": self.ath,
        });
        self.key.sign(&header, &payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_survives_its_pem_file_and_proofs_verify() {
        let (key, der) = EcKey::generate().expect("key");
        let dir = std::env::temp_dir().join(format!("mcp-pep-load-jws-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("k.pem");
        std::fs::write(&path, pkcs8_pem(&der)).expect("write");
        let again = EcKey::from_pem_file(&path).expect("load");
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(key.thumbprint(), again.thumbprint());

        // The proxy's own verifier accepts the proof, bound to the key and the token.
        let template = ProofTemplate::new(again, "http://127.0.0.1:1/mcp", "tok");
        let proof = template.sign().expect("proof");
        let verifier = mcp_pep::auth::dpop::DpopVerifier::new(Default::default()).expect("verifier");
        let checked = verifier
            .verify(&proof, "POST", "http://127.0.0.1:1/mcp", Some("tok"), None, SystemTime::now())
            .expect("valid proof");
        assert_eq!(checked.jkt(), key.thumbprint());
        assert!(
            verifier.verify(&proof, "POST", "http://127.0.0.1:1/mcp", Some("other"), None, SystemTime::now()).is_err(),
            "ath binds the proof to its token"
        );
        assert_ne!(template.sign().expect("proof"), proof, "every proof is new");
    }
}
