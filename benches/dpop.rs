//! DPoP proof verification: one complete `DpopVerifier::verify` of a fresh ES256 proof
//! bound to an access token (strict JWS parse, JWK point validation, RFC 7638 thumbprint,
//! `htu` normalisation, `ath`, signature, replay-cache insert). Target: p50 ≤ 80 µs.
//!
//! Also the two ES256 signature verifiers the choice was made between (the `p256` crate's
//! pure-Rust ECDSA and aws-lc-rs), on the same key, message and signature.

use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use data_encoding::BASE64URL_NOPAD;
use mcp_pep::auth::dpop::{DpopConfig, DpopVerifier, access_token_hash};
use mcp_pep::auth::jwk::PublicJwk;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey};
use serde_json::json;

const URI: &str = "https://mcp.example.com/mcp";
const TOKEN: &str =
    "eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJhZ2VudCIsImNuZiI6e319.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU";
const NOW: u64 = 1_700_000_000;
/// Distinct proofs signed up front: each is accepted once, so a pass over the pool uses a
/// fresh verifier (built outside the timed region).
const POOL: usize = 2_048;

fn signing_key() -> SigningKey {
    SigningKey::from_slice(&[0x2a; 32]).unwrap_or_else(|e| panic!("fixed key: {e}"))
}

fn jwk(key: &SigningKey) -> serde_json::Value {
    let point = key.verifying_key().to_sec1_point(false);
    let bytes = point.as_bytes();
    json!({"kty": "EC", "crv": "P-256", "x": BASE64URL_NOPAD.encode(&bytes[1..33]), "y": BASE64URL_NOPAD.encode(&bytes[33..65])})
}

fn proof(key: &SigningKey, jti: usize) -> String {
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk(key)});
    let claims = json!({
        "jti": format!("bench-{jti:08}-4f1c2a9e5b7d"), "htm": "POST", "htu": URI, "iat": NOW,
        "ath": access_token_hash(TOKEN),
    });
    let input = format!(
        "{}.{}",
        BASE64URL_NOPAD.encode(header.to_string().as_bytes()),
        BASE64URL_NOPAD.encode(claims.to_string().as_bytes())
    );
    let sig: Signature = key.sign(input.as_bytes());
    format!("{input}.{}", BASE64URL_NOPAD.encode(&sig.to_bytes()))
}

fn verify(c: &mut Criterion) {
    let key = signing_key();
    let jkt = PublicJwk::from_json(&jwk(&key)).map(|k| k.thumbprint()).unwrap_or_default();
    let proofs: Vec<String> = (0..POOL).map(|i| proof(&key, i)).collect();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW);
    let verifier = || DpopVerifier::new(DpopConfig::default()).unwrap_or_else(|e| panic!("{e}"));

    let mut group = c.benchmark_group("dpop");
    group.bench_function("verify_es256_proof", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut remaining = iters as usize;
            while remaining > 0 {
                let v = verifier();
                let batch = remaining.min(POOL);
                let start = Instant::now();
                for p in &proofs[..batch] {
                    let verified = v.verify(p, "POST", URI, Some(TOKEN), Some(&jkt), now);
                    assert!(verified.is_ok());
                }
                total += start.elapsed();
                remaining -= batch;
            }
            total
        })
    });
    // Everything but the signature and the cache: parse, JWK validation, thumbprint, `htu`,
    // `iat`, `ath`, then refused at the `cnf.jkt` step. What a forged proof costs.
    group.bench_function("refuse_wrong_jkt", |b| {
        let v = verifier();
        let other = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
        b.iter(|| v.verify(&proofs[0], "POST", URI, Some(TOKEN), Some(other), now).is_err())
    });
    // A replay is found after the signature check (only verified proofs touch the cache).
    group.bench_function("refuse_replayed_proof", |b| {
        let v = verifier();
        let p = &proofs[0];
        let _ = v.verify(p, "POST", URI, Some(TOKEN), Some(&jkt), now);
        b.iter(|| v.verify(p, "POST", URI, Some(TOKEN), Some(&jkt), now).is_err())
    });
    group.finish();
}

fn es256_verifiers(c: &mut Criterion) {
    let key = signing_key();
    let message = proof(&key, 0);
    let (input, _) = message.rsplit_once('.').unwrap_or_default();
    let sig: Signature = key.sign(input.as_bytes());
    let sig_bytes = sig.to_bytes();
    let point = key.verifying_key().to_sec1_point(false);
    let point = point.as_bytes().to_vec();

    let mut group = c.benchmark_group("es256_verify");
    group.bench_function("p256", |b| {
        b.iter(|| {
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap_or_else(|e| panic!("{e}"));
            vk.verify(input.as_bytes(), &sig).is_ok()
        })
    });
    group.bench_function("aws_lc_rs", |b| {
        b.iter(|| {
            let vk =
                aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED, &point);
            vk.verify(input.as_bytes(), &sig_bytes).is_ok()
        })
    });
    group.finish();
}

/// What an egress sidecar spends per outgoing request: one fresh proof (`jti`, `iat`,
/// `ath` over the token) signed by its in-memory key. And per token refresh: the JWT-SVID
/// read, a proof for the token endpoint, the POST over loopback HTTP to a token endpoint
/// that answers at once, and the answer's checks (`token_type`, `cnf.jkt`, `exp`).
fn outbound(c: &mut Criterion) {
    let key = mcp_pep::outbound::DpopKey::generate().unwrap_or_else(|e| panic!("{e}"));
    let token = "eyJhbGciOiJSUzI1NiJ9.eyJjbmYiOnsiamt0IjoieCJ9fQ.c2lnbmF0dXJl";
    let mut group = c.benchmark_group("outbound");
    group.bench_function("sign_proof", |b| {
        b.iter(|| key.proof("POST", "https://tool-server.mcp-tools.svc:8443/mcp", Some(token), None))
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let endpoint = rt.block_on(token_endpoint());
    let dir = std::env::temp_dir().join(format!("mcp-pep-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let svid = dir.join("jwt-svid");
    std::fs::write(&svid, "a.jwt-svid.value\n").unwrap_or_else(|e| panic!("{e}"));
    let settings = mcp_pep::outbound::OutboundSettings {
        issuer: format!("http://{endpoint}/realms/agents"),
        token_endpoint: Some(format!("http://{endpoint}/token").parse().unwrap_or_else(|e| panic!("{e}"))),
        assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe".into(),
        assertion_audience: format!("http://{endpoint}/realms/agents"),
        assertion_source: mcp_pep::outbound::AssertionSource::File(svid),
        scope: None,
        audience: None,
        resource: None,
        refresh_margin: Duration::from_secs(60),
        htu: "https://tool-server.mcp-tools.svc:8443/mcp".into(),
        new_key_per_token: false,
        registration: None,
    };
    let metrics = std::sync::Arc::new(mcp_pep::metrics::Metrics::new().unwrap_or_else(|e| panic!("{e}")));
    let credentials = mcp_pep::outbound::OutboundCredentials::new(std::sync::Arc::new(settings), metrics)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut current = rt.block_on(credentials.credential(None)).unwrap_or_else(|e| panic!("{e}")).token;
    group.bench_function("token_refresh", |b| {
        // Naming the current token as refused forces a new one, as a 401 invalid_token does.
        b.iter(|| {
            current = rt.block_on(credentials.credential(Some(&current))).unwrap_or_else(|e| panic!("{e}")).token;
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A token endpoint on 127.0.0.1 that binds each token to the key of the request's proof.
async fn token_endpoint() -> std::net::SocketAddr {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| async move {
                let proof = req.headers().get("dpop").and_then(|v| v.to_str().ok()).unwrap_or_default();
                let header = proof.split('.').next().and_then(|h| BASE64URL_NOPAD.decode(h.as_bytes()).ok());
                let header: serde_json::Value =
                    header.and_then(|h| serde_json::from_slice(&h).ok()).unwrap_or_default();
                let jkt = PublicJwk::from_json(&header["jwk"]).map(|k| k.thumbprint()).unwrap_or_default();
                let exp =
                    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) + 300;
                let jti = next_serial();
                let claims = json!({"iss": "bench", "exp": exp, "jti": jti, "cnf": {"jkt": jkt}});
                let token = format!("e30.{}.c2ln", BASE64URL_NOPAD.encode(claims.to_string().as_bytes()));
                let body = json!({"access_token": token, "token_type": "DPoP", "expires_in": 300}).to_string();
                Ok::<_, std::convert::Infallible>(
                    hyper::Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body)))
                        .unwrap_or_default(),
                )
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
            );
        }
    });
    addr
}

/// A distinct value per token (each must differ from the one it replaces).
fn next_serial() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

criterion_group!(benches, verify, es256_verifiers, outbound);
criterion_main!(benches);
