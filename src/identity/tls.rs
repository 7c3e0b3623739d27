//! rustls configurations backed by the [`SvidStore`]: the mTLS listener presents the
//! sidecar's X.509-SVID and accepts only client X.509-SVIDs of the configured trust
//! domains; the upstream client presents the same SVID and accepts only the expected
//! tool server. Every handshake reads the store, so rotation needs no restart.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error, ServerConfig, SignatureScheme,
};

use super::material::SvidStore;
use super::svid::{SvidError, leaf_spiffe_id};
use crate::context::IdentitySource;

/// The one crypto provider of the process (aws-lc-rs, as for tokens and DPoP).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Why a peer's certificate was refused, kept typed inside rustls's error.
#[derive(Debug, thiserror::Error)]
pub enum PeerCertError {
    #[error("not an X.509-SVID: {0}")]
    Svid(#[from] SvidError),
    #[error("trust domain {0} is not accepted")]
    TrustDomain(String),
    #[error("no trust bundle for {0}")]
    NoBundle(String),
    #[error("expected {expected}, the peer is {actual}")]
    UnexpectedId { expected: String, actual: String },
}

impl PeerCertError {
    fn into_rustls(self) -> Error {
        Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(self))))
    }
}

/// The mTLS listener's configuration: HTTP/2 and HTTP/1.1 by ALPN.
pub fn server_config(store: Arc<SvidStore>, trust_domains: BTreeSet<String>) -> Result<ServerConfig, Error> {
    let provider = provider();
    let verifier = Arc::new(SpiffeClientVerifier { store: store.clone(), trust_domains, provider: provider.clone() });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SvidResolver(store)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // No resumption: a resumed session skips the client certificate check, so a client
    // whose CA left the bundle, or whose SVID expired, would keep getting in.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// The upstream client's configuration: present our SVID, accept only `expected`.
pub fn client_config(store: Arc<SvidStore>, expected: String) -> Result<ClientConfig, Error> {
    let provider = provider();
    let verifier = Arc::new(SpiffeServerVerifier { store: store.clone(), expected, provider: provider.clone() });
    // No ALPN here: the HTTP connector sets it (and refuses a preset one).
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(SvidResolver(store)));
    // No resumption: it would skip the server certificate check after a bundle rotation,
    // and a resumed session would not present a rotated SVID.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// Hands out the current SVID, server and client side alike.
struct SvidResolver(Arc<SvidStore>);

impl fmt::Debug for SvidResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SvidResolver")
    }
}

impl ResolvesServerCert for SvidResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.load().svid.as_ref().map(|s| s.key.clone())
    }
}

impl ResolvesClientCert for SvidResolver {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.load().svid.as_ref().map(|s| s.key.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

struct SpiffeClientVerifier {
    store: Arc<SvidStore>,
    trust_domains: BTreeSet<String>,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for SpiffeClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpiffeClientVerifier").field("trust_domains", &self.trust_domains).finish()
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    /// SPIFFE peers pick their SVID by identity, not by CA name: no hints.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        // 1. The leaf is an X.509-SVID, naming one SPIFFE ID.
        let id = leaf_spiffe_id(end_entity, IdentitySource::Mtls).map_err(|e| PeerCertError::from(e).into_rustls())?;
        // 2. Its trust domain is one we accept.
        let td = &*id.trust_domain;
        if !self.trust_domains.contains(td) {
            return Err(PeerCertError::TrustDomain(td.into()).into_rustls());
        }
        // 3. The chain leads to *that* trust domain's bundle (a CA of another domain may
        //    not vouch for this one), with validity and client-auth EKU checked by webpki.
        let material = self.store.load();
        let bundle = material.x509_bundles.get(td).ok_or_else(|| PeerCertError::NoBundle(td.into()).into_rustls())?;
        bundle.client_verifier.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

struct SpiffeServerVerifier {
    store: Arc<SvidStore>,
    expected: String,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for SpiffeServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpiffeServerVerifier").field("expected", &self.expected).finish()
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    /// The server is named by the SPIFFE ID in its SVID, not by the host we dialled.
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        // 1. An X.509-SVID naming exactly the expected workload.
        let id = leaf_spiffe_id(end_entity, IdentitySource::Mtls).map_err(|e| PeerCertError::from(e).into_rustls())?;
        if *id.spiffe_id != *self.expected {
            let e = PeerCertError::UnexpectedId { expected: self.expected.clone(), actual: id.spiffe_id.to_string() };
            return Err(e.into_rustls());
        }
        // 2. Its chain leads to its trust domain's bundle.
        let material = self.store.load();
        let td = &*id.trust_domain;
        let bundle = material.x509_bundles.get(td).ok_or_else(|| PeerCertError::NoBundle(td.into()).into_rustls())?;
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &bundle.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
