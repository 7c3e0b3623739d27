//! The X.509-SVID rules a chain check does not make (SPIFFE X509-SVID §4 and §5).
//!
//! webpki proves the chain leads to a trust anchor; these checks prove the leaf is an
//! SVID at all, and which workload it names.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use super::parse_spiffe_id;
use crate::context::{IdentitySource, SpiffeIdentity};

/// Why a leaf certificate is not an X.509-SVID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SvidError {
    #[error("the certificate is not DER X.509")]
    Malformed,
    #[error("the certificate repeats an extension")]
    DuplicateExtension,
    #[error("an SVID has exactly one URI SAN; this one has {0}")]
    UriSanCount(usize),
    #[error("the URI SAN is not a SPIFFE ID: {0}")]
    NotSpiffe(String),
    #[error("the leaf is a CA certificate")]
    LeafIsCa,
    #[error("the leaf has no key usage extension")]
    NoKeyUsage,
    #[error("the leaf's key usage lacks digitalSignature")]
    NoDigitalSignature,
    #[error("the leaf's key usage allows signing certificates or CRLs")]
    SigningUsage,
}

impl SvidError {
    /// A bounded label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            SvidError::Malformed | SvidError::DuplicateExtension => "malformed",
            SvidError::UriSanCount(_) => "uri_san_count",
            SvidError::NotSpiffe(_) => "not_spiffe",
            SvidError::LeafIsCa => "leaf_is_ca",
            SvidError::NoKeyUsage | SvidError::NoDigitalSignature | SvidError::SigningUsage => "key_usage",
        }
    }
}

/// The SPIFFE ID of an X.509-SVID leaf, after the leaf rules:
/// 1. exactly one URI SAN, and it is a SPIFFE ID;
/// 2. not a CA (basicConstraints cA false or absent);
/// 3. key usage present, with digitalSignature and without keyCertSign or cRLSign.
pub fn leaf_spiffe_id(der: &[u8], source: IdentitySource) -> Result<SpiffeIdentity, SvidError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|_| SvidError::Malformed)?;
    if !rest.is_empty() {
        return Err(SvidError::Malformed);
    }

    // 1. One URI SAN, a SPIFFE ID.
    let san = cert.subject_alternative_name().map_err(|_| SvidError::DuplicateExtension)?;
    let uris: Vec<&str> = san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect();
    let [uri] = uris[..] else { return Err(SvidError::UriSanCount(uris.len())) };
    let identity = parse_spiffe_id(uri, source).map_err(|e| SvidError::NotSpiffe(e.to_string()))?;

    // 2. Not a CA.
    let constraints = cert.basic_constraints().map_err(|_| SvidError::DuplicateExtension)?;
    if constraints.is_some_and(|c| c.value.ca) {
        return Err(SvidError::LeafIsCa);
    }

    // 3. Key usage.
    let usage = cert.key_usage().map_err(|_| SvidError::DuplicateExtension)?.ok_or(SvidError::NoKeyUsage)?;
    if !usage.value.digital_signature() {
        return Err(SvidError::NoDigitalSignature);
    }
    if usage.value.key_cert_sign() || usage.value.crl_sign() {
        return Err(SvidError::SigningUsage);
    }
    Ok(identity)
}

/// RFC 8705 §3.1 `x5t#S256`: base64url(SHA-256(DER)), no padding.
pub fn x5t_s256(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    data_encoding::BASE64URL_NOPAD.encode(digest.as_ref())
}

/// The certificate's notAfter as Unix time.
pub fn not_after(der: &[u8]) -> Option<i64> {
    X509Certificate::from_der(der).ok().map(|(_, cert)| cert.validity().not_after.timestamp())
}
