//! What the sidecar holds from SPIRE at one moment: its own X.509-SVID, the X.509 trust
//! bundles and the JWT bundles of the trust domains it accepts. A source (Workload API or
//! files) builds a new [`Material`] on every rotation and swaps it into the
//! [`SvidStore`] whole; handshakes and verifications read the store, so new connections
//! use rotated material without a restart and never see half of an update.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;
use serde_json::Value;

use super::svid::{SvidError, leaf_spiffe_id, not_after};
use crate::context::{IdentitySource, SpiffeIdentity};

#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    #[error("the SVID has no certificate")]
    EmptyChain,
    #[error("the SVID is not an X.509-SVID: {0}")]
    Svid(#[from] SvidError),
    #[error("the SVID's key does not fit its certificate or cannot sign: {0}")]
    Key(rustls::Error),
    #[error("the bundle of {0} has no usable CA certificate")]
    Bundle(String),
    #[error("the JWT bundle of {td} is not a JWKS: {reason}")]
    JwtBundle { td: String, reason: String },
}

/// The sidecar's own SVID, ready for rustls.
pub struct OwnSvid {
    pub key: Arc<CertifiedKey>,
    pub id: SpiffeIdentity,
    /// The leaf's notAfter (Unix time), for the expiry gauge.
    pub not_after: i64,
}

/// One trust domain's X.509 authorities, with the client verifier built from them once
/// per rotation rather than once per handshake.
pub struct X509Bundle {
    pub roots: Arc<RootCertStore>,
    pub client_verifier: Arc<dyn ClientCertVerifier>,
}

/// Which `use` a JWT authority must declare, by where its key set came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    /// A SPIFFE bundle document (it mixes `x509-svid` and `jwt-svid` keys): `jwt-svid` only.
    SpiffeBundle,
    /// The Workload API's JWT bundles hold JWT authorities only: absent or `jwt-svid`.
    WorkloadApi,
    /// A SPIRE OIDC discovery JWKS: absent or `sig`.
    Oidc,
}

/// The raw parts a source hands over.
#[derive(Default)]
pub struct RawMaterial {
    pub svid: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    pub x509_bundles: Vec<(String, Vec<CertificateDer<'static>>)>,
    pub jwt_bundles: Vec<(String, Vec<Jwk>)>,
}

#[derive(Default)]
pub struct Material {
    pub svid: Option<OwnSvid>,
    pub x509_bundles: HashMap<String, X509Bundle>,
    /// JWT authorities by trust domain, then `kid`.
    pub jwt_bundles: HashMap<String, HashMap<String, Jwk>>,
}

impl Material {
    pub fn build(raw: RawMaterial, provider: &Arc<CryptoProvider>) -> Result<Material, MaterialError> {
        let svid = match raw.svid {
            None => None,
            Some((chain, key)) => {
                let leaf = chain.first().ok_or(MaterialError::EmptyChain)?;
                let id = leaf_spiffe_id(leaf, IdentitySource::Local)?;
                let not_after = not_after(leaf).unwrap_or(0);
                let key = CertifiedKey::from_der(chain, key, provider).map_err(MaterialError::Key)?;
                Some(OwnSvid { key: Arc::new(key), id, not_after })
            }
        };
        let mut x509_bundles = HashMap::new();
        for (td, certs) in raw.x509_bundles {
            let mut roots = RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(MaterialError::Bundle(td));
            }
            let roots = Arc::new(roots);
            let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|_| MaterialError::Bundle(td.clone()))?;
            x509_bundles.insert(td, X509Bundle { roots, client_verifier });
        }
        let jwt_bundles = raw
            .jwt_bundles
            .into_iter()
            .map(|(td, keys)| {
                let by_kid = keys.into_iter().filter_map(|k| Some((k.common.key_id.clone()?, k))).collect();
                (td, by_kid)
            })
            .collect();
        Ok(Material { svid, x509_bundles, jwt_bundles })
    }
}

/// The JWT authorities of a JWKS document that may sign JWT-SVIDs; keys of another `use`
/// and keys without `kid` (JWT-SVID §3 requires one) are left out.
pub fn jwt_authorities(td: &str, jwks: &[u8], rule: KeyUse) -> Result<Vec<Jwk>, MaterialError> {
    let bad = |reason: String| MaterialError::JwtBundle { td: td.into(), reason };
    let doc: Value = serde_json::from_slice(jwks).map_err(|e| bad(e.to_string()))?;
    let keys = doc.get("keys").and_then(Value::as_array).ok_or_else(|| bad("no \"keys\" array".into()))?;
    let mut out = Vec::new();
    for key in keys {
        let key_use = key.get("use").and_then(Value::as_str);
        let allowed = match rule {
            KeyUse::SpiffeBundle => key_use == Some("jwt-svid"),
            KeyUse::WorkloadApi => matches!(key_use, None | Some("jwt-svid")),
            KeyUse::Oidc => matches!(key_use, None | Some("sig")),
        };
        if !allowed || key.get("kid").and_then(Value::as_str).is_none() {
            continue;
        }
        match serde_json::from_value::<Jwk>(key.clone()) {
            Ok(jwk) if !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) => out.push(jwk),
            Ok(_) => {}
            Err(e) => tracing::warn!(trust_domain = td, error = %e, "skipping a JWT authority that is not a JWK"),
        }
    }
    Ok(out)
}

/// The current material, swapped whole on rotation.
pub struct SvidStore {
    current: ArcSwap<Material>,
    /// How many times material was installed.
    revision: AtomicU64,
}

impl Default for SvidStore {
    fn default() -> Self {
        SvidStore { current: ArcSwap::from_pointee(Material::default()), revision: AtomicU64::new(0) }
    }
}

impl SvidStore {
    pub fn load(&self) -> Arc<Material> {
        self.current.load_full()
    }

    pub fn set(&self, material: Material) {
        self.current.store(Arc::new(material));
        self.revision.fetch_add(1, Ordering::Release);
    }

    /// Which installation is current: a verification cached under an older revision
    /// may rest on a key that a rotation withdrew.
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// Whether material has been installed at least once.
    pub fn has_material(&self) -> bool {
        self.revision() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = r#""kty":"EC","crv":"P-256","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA""#;

    fn kids(doc: &str, rule: KeyUse) -> Vec<String> {
        let mut kids: Vec<String> =
            jwt_authorities("td", doc.as_bytes(), rule).unwrap().into_iter().filter_map(|k| k.common.key_id).collect();
        kids.sort();
        kids
    }

    #[test]
    fn only_jwt_authorities_of_the_right_use_count() {
        let doc = format!(
            r#"{{"keys":[{{{KEY},"kid":"jwt","use":"jwt-svid"}},{{{KEY},"kid":"x509","use":"x509-svid"}},
                {{{KEY},"kid":"bare"}},{{{KEY},"kid":"sig","use":"sig"}},{{{KEY},"kid":"enc","use":"enc"}},
                {{{KEY},"use":"jwt-svid"}}]}}"#
        );
        assert_eq!(kids(&doc, KeyUse::SpiffeBundle), ["jwt"]);
        assert_eq!(kids(&doc, KeyUse::WorkloadApi), ["bare", "jwt"]);
        assert_eq!(kids(&doc, KeyUse::Oidc), ["bare", "sig"]);
    }

    #[test]
    fn a_document_without_keys_is_an_error() {
        assert!(jwt_authorities("td", b"{}", KeyUse::SpiffeBundle).is_err());
        assert!(jwt_authorities("td", b"not json", KeyUse::SpiffeBundle).is_err());
    }
}
