//! SPIFFE identity costs: the X.509-SVID leaf rules on a client certificate, a whole
//! mTLS handshake against the sidecar's rustls configuration (in memory, no sockets:
//! SVID resolver, SPIFFE client verifier, TLS 1.3 with ECDSA P-256), and a JWT-SVID
//! verified for the first time and from the cache.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use mcp_pep::auth::jwt_svid::JwtSvidVerifier;
use mcp_pep::context::IdentitySource;
use mcp_pep::demo::credentials::SigningKey;
use mcp_pep::demo::pki::{LeafSpec, TestCa};
use mcp_pep::identity::material::{KeyUse, Material, RawMaterial, SvidStore, jwt_authorities};
use mcp_pep::identity::svid::leaf_spiffe_id;
use mcp_pep::identity::tls::{provider, server_config};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConnection};
use serde_json::json;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TD: &str = "mcp-identity.local";
const AGENT: &str = "spiffe://mcp-identity.local/ns/mcp-agents/sa/trusted-agent";
const AUDIENCE: &str = "spiffe://mcp-identity.local/ns/mcp-tools/sa/mcp-pep";

/// Moves every pending TLS record between the two ends until neither has more to say.
fn handshake(client: &mut ClientConnection, server: &mut ServerConnection) {
    let mut buf = Vec::with_capacity(8192);
    while client.is_handshaking() || server.is_handshaking() {
        buf.clear();
        while client.wants_write() {
            client.write_tls(&mut buf).expect("client writes");
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).expect("server reads");
        }
        server.process_new_packets().expect("server accepts the client SVID");
        buf.clear();
        while server.wants_write() {
            server.write_tls(&mut buf).expect("server writes");
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).expect("client reads");
        }
        client.process_new_packets().expect("client accepts the server SVID");
    }
}

fn identity(c: &mut Criterion) {
    let localhost = std::net::IpAddr::from([127, 0, 0, 1]);
    let ca = TestCa::new(TD).expect("CA");
    let sidecar = ca
        .leaf(&LeafSpec::svid("spiffe://mcp-identity.local/ns/mcp-tools/sa/mcp-pep").with_ip(localhost))
        .expect("sidecar SVID");
    let agent = ca.leaf(&LeafSpec::svid(AGENT)).expect("agent SVID");

    let authority = SigningKey::generate().expect("JWT authority");
    let mut jwk = authority.jwk();
    jwk["kid"] = json!("k1");
    jwk["use"] = json!("jwt-svid");
    let doc = json!({"keys": [jwk]}).to_string();
    let raw = RawMaterial {
        svid: Some((sidecar.chain.clone(), sidecar.key_der())),
        x509_bundles: vec![(TD.into(), vec![ca.cert.clone()])],
        jwt_bundles: vec![(TD.into(), jwt_authorities(TD, doc.as_bytes(), KeyUse::SpiffeBundle).expect("bundle"))],
    };
    let store = Arc::new(SvidStore::default());
    store.set(Material::build(raw, &provider()).expect("material"));

    let server = Arc::new(server_config(store.clone(), BTreeSet::from([TD.to_owned()])).expect("server config"));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.clone()).expect("root");
    let client = Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(agent.chain.clone(), agent.key_der())
            .expect("client config"),
    );

    let mut group = c.benchmark_group("identity");
    group.bench_function("svid_leaf_rules", |b| {
        b.iter(|| leaf_spiffe_id(&agent.chain[0], IdentitySource::Mtls).expect("an SVID"))
    });
    group.bench_function("mtls_handshake", |b| {
        b.iter(|| {
            let mut client = ClientConnection::new(client.clone(), ServerName::IpAddress(localhost.into()))
                .expect("client connection");
            let mut server = ServerConnection::new(server.clone()).expect("server connection");
            handshake(&mut client, &mut server);
            server.peer_certificates().map(|c| c.len())
        })
    });

    let verifier = JwtSvidVerifier::new(vec![AUDIENCE.into()], BTreeSet::from([TD.to_owned()]), store);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let mint = |jti: u64| {
        let claims = json!({"sub": AGENT, "aud": AUDIENCE, "exp": now + 300, "jti": jti});
        authority.sign(&json!({"alg": "ES256", "kid": "k1"}), &claims).expect("JWT-SVID")
    };
    let verify = |jwt: &str| verifier.verify(jwt).now_or_never().expect("bundled keys never wait").expect("valid");
    let mut jti = 0;
    group.bench_function("jwt_svid_first_sight", |b| {
        b.iter_batched(
            || {
                jti += 1;
                mint(jti)
            },
            |jwt| verify(&jwt),
            BatchSize::SmallInput,
        )
    });
    let cached = mint(0);
    verify(&cached);
    group.bench_function("jwt_svid_cached", |b| b.iter(|| verify(&cached)));
    group.finish();
}

criterion_group!(benches, identity);
criterion_main!(benches);
