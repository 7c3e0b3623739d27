//! `mcp-pep-load credentials`: everything a proxy with every check on needs, and the
//! client's side of it, written as files: a trust domain's CA, the agent's X.509-SVID, the
//! proxy's listener SVID, an issuer (its JWKS and key), a DPoP key and tokens for it.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use mcp_pep::demo::pki::{LeafSpec, TestCa};
use serde_json::{Value, json};

use crate::jws::{EcKey, pkcs8_pem, unix_now};

pub const ISSUER: &str = "https://issuer.mcp-pep-load.invalid/realms/agents";
const KID: &str = "mcp-pep-load-1";

#[derive(Args, Debug)]
pub struct CredentialsArgs {
    /// Directory to write into (created).
    #[arg(long)]
    pub out: PathBuf,
    /// The trust domain of the CA and both SVIDs.
    #[arg(long, default_value = "mcp-identity.local")]
    pub trust_domain: String,
    /// The agent's SPIFFE ID: its SVID's URI SAN and the tokens' `azp`.
    #[arg(long, default_value = "spiffe://mcp-identity.local/ns/mcp-agents/sa/trusted-agent")]
    pub spiffe_id: String,
    /// The proxy's SPIFFE ID (its listener certificate, with IP SAN 127.0.0.1).
    #[arg(long, default_value = "spiffe://mcp-identity.local/ns/mcp-tools/sa/mcp-pep")]
    pub proxy_spiffe_id: String,
    /// The tokens' `aud` (the proxy's `auth.audiences`).
    #[arg(long, default_value = "mcp-pep-load")]
    pub audience: String,
    /// Token lifetime in seconds.
    #[arg(long, default_value_t = 86_400)]
    pub ttl_s: u64,
    /// Also write this many further proxy SVIDs from the same CA (`proxy-rot-N.pem` /
    /// `.key`): what an SVID rotation installs (benches/soak.sh).
    #[arg(long, default_value_t = 0)]
    pub rotations: u32,
}

/// The files [`write`] makes, by name.
pub const FILES: [&str; 11] = [
    "ca.pem",
    "agent.pem",
    "agent.key",
    "proxy.pem",
    "proxy.key",
    "jwks.json",
    "issuer.key",
    "dpop.key",
    "token-dpop.jwt",
    "token-bearer.jwt",
    "issuer.txt",
];

/// Keycloak-shaped claims for a client-credentials token of `azp`; bound to `jkt` if given.
pub fn token_claims(azp: &str, audience: &str, ttl_s: u64, jkt: Option<&str>) -> Value {
    let now = unix_now();
    let mut claims = json!({
        "iss": ISSUER, "aud": audience, "sub": "service-account-mcp-pep-load", "azp": azp,
        "iat": now, "exp": now + ttl_s, "typ": "Bearer",
        "scope": "mcp:tools", "realm_access": {"roles": ["agent"]},
    });
    if let Some(jkt) = jkt {
        claims["typ"] = json!("DPoP");
        claims["cnf"] = json!({"jkt": jkt});
    }
    claims
}

fn write_file(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

pub fn write(args: &CredentialsArgs) -> anyhow::Result<()> {
    let dir = &args.out;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca = TestCa::new(&args.trust_domain)?;
    let agent = ca.leaf(&LeafSpec::svid(&args.spiffe_id).with_ip(IpAddr::V4(Ipv4Addr::LOCALHOST)))?;
    let mut proxy_spec = LeafSpec::svid(&args.proxy_spiffe_id).with_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    proxy_spec.dns.push("localhost".into());
    // The SVIDs outlive the tokens: a day by default.
    proxy_spec.not_after = std::time::SystemTime::now() + std::time::Duration::from_secs(args.ttl_s.max(3600));
    let proxy = ca.leaf(&proxy_spec)?;
    for n in 1..=args.rotations {
        // A new key and serial each time, as SPIRE rotates an SVID.
        let next = ca.leaf(&proxy_spec)?;
        write_file(dir, &format!("proxy-rot-{n}.pem"), &next.chain_pem())?;
        write_file(dir, &format!("proxy-rot-{n}.key"), &next.key_pem())?;
    }
    write_file(dir, "ca.pem", &ca.cert_pem())?;
    write_file(dir, "agent.pem", &agent.chain_pem())?;
    write_file(dir, "agent.key", &agent.key_pem())?;
    write_file(dir, "proxy.pem", &proxy.chain_pem())?;
    write_file(dir, "proxy.key", &proxy.key_pem())?;

    let (issuer, issuer_der) = EcKey::generate()?;
    let mut jwk = issuer.jwk().clone();
    jwk["kid"] = json!(KID);
    jwk["alg"] = json!("ES256");
    jwk["use"] = json!("sig");
    write_file(dir, "jwks.json", &json!({"keys": [jwk]}).to_string())?;
    write_file(dir, "issuer.key", &pkcs8_pem(&issuer_der))?;
    write_file(dir, "issuer.txt", &format!("{ISSUER}\n"))?;

    let (client, client_der) = EcKey::generate()?;
    write_file(dir, "dpop.key", &pkcs8_pem(&client_der))?;
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": KID});
    let bound = token_claims(&args.spiffe_id, &args.audience, args.ttl_s, Some(client.thumbprint()));
    write_file(dir, "token-dpop.jwt", &issuer.sign(&header, &bound)?)?;
    let bearer = token_claims(&args.spiffe_id, &args.audience, args.ttl_s, None);
    write_file(dir, "token-bearer.jwt", &issuer.sign(&header, &bearer)?)?;

    let d = dir.canonicalize().unwrap_or_else(|_| dir.clone());
    println!(
        "wrote {} into {}\n\nproxy configuration that accepts them:\n\nauth:\n  issuers:\n    - issuer: {ISSUER}\n      jwks_file: {d}/jwks.json\n  audiences: [{aud}]\n  public_url: <the URL mcp-pep-load --url is given>\n  dpop: required            # optional: token-bearer.jwt as Bearer\nidentity:\n  source: files\n  files:\n    cert: {d}/proxy.pem\n    key: {d}/proxy.key\n    bundles:\n      {td}: {d}/ca.pem\n  mtls: true\n  trust_domains: [{td}]\n",
        FILES.join(", "),
        d.display(),
        d = d.display(),
        aud = args.audience,
        td = args.trust_domain,
    );
    Ok(())
}
