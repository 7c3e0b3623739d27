//! A throwaway SPIFFE PKI, made with real keys, for the demo and the tests: a CA per
//! trust domain and X.509-SVIDs signed by it — including, for negative tests, leaves
//! that break one SVID rule each.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

pub use rcgen::Error;

/// A trust domain's certificate authority.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert: CertificateDer<'static>,
}

/// What goes into a leaf; [`LeafSpec::svid`] is a valid X.509-SVID.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub uris: Vec<String>,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub is_ca: bool,
    pub key_usages: Vec<KeyUsagePurpose>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl LeafSpec {
    /// One URI SAN, digitalSignature, server and client auth, valid for an hour.
    pub fn svid(spiffe_id: &str) -> LeafSpec {
        let now = SystemTime::now();
        LeafSpec {
            uris: vec![spiffe_id.into()],
            dns: Vec::new(),
            ips: Vec::new(),
            is_ca: false,
            key_usages: vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyAgreement],
            not_before: now - Duration::from_secs(60),
            not_after: now + Duration::from_secs(3600),
        }
    }

    /// Adds an IP SAN (SPIFFE allows DNS and IP SANs beside the one URI SAN), so that
    /// ordinary TLS clients can check the name of a server SVID.
    pub fn with_ip(mut self, ip: IpAddr) -> LeafSpec {
        self.ips.push(ip);
        self
    }
}

/// A leaf certificate with its key.
pub struct Leaf {
    /// Leaf only: SVIDs here are signed directly by the root.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivatePkcs8KeyDer<'static>,
}

impl Leaf {
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
    pub fn chain_pem(&self) -> String {
        self.chain.iter().map(|c| pem("CERTIFICATE", c)).collect()
    }
    pub fn key_pem(&self) -> String {
        pem("PRIVATE KEY", self.key.secret_pkcs8_der())
    }
}

fn time(at: SystemTime) -> OffsetDateTime {
    let secs = at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(0)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl TestCa {
    pub fn new(trust_domain: &str) -> Result<TestCa, Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, format!("{trust_domain} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.subject_alt_names = vec![SanType::URI(format!("spiffe://{trust_domain}").try_into()?)];
        let now = SystemTime::now();
        params.not_before = time(now - Duration::from_secs(3600));
        params.not_after = time(now + Duration::from_secs(30 * 24 * 3600));
        let cert = params.self_signed(&key)?;
        Ok(TestCa { issuer: Issuer::new(params, key), cert: cert.der().clone() })
    }

    pub fn cert_pem(&self) -> String {
        pem("CERTIFICATE", &self.cert)
    }

    pub fn leaf(&self, spec: &LeafSpec) -> Result<Leaf, Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        for uri in &spec.uris {
            params.subject_alt_names.push(SanType::URI(uri.clone().try_into()?));
        }
        for dns in &spec.dns {
            params.subject_alt_names.push(SanType::DnsName(dns.clone().try_into()?));
        }
        for ip in &spec.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.is_ca = if spec.is_ca { IsCa::Ca(BasicConstraints::Unconstrained) } else { IsCa::ExplicitNoCa };
        params.key_usages = spec.key_usages.clone();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = time(spec.not_before);
        params.not_after = time(spec.not_after);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf { chain: vec![cert.der().clone()], key: PrivatePkcs8KeyDer::from(key.serialize_der()) })
    }
}

/// RFC 7468 text encoding.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = data_encoding::BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
