//! Access-token verification (ES256, Keycloak-shaped, static JWKS): `uncached` is the
//! first sight of a token (strict parse, key lookup, signature, claims); `cached` is every
//! later message with the same token (SHA-256 lookup).

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use jsonwebtoken::Algorithm;
use mcp_pep::auth::jwks::KeySource;
use mcp_pep::auth::token::{Issuer, TokenVerifier};
use mcp_pep::demo::credentials::{DemoIssuer, ISSUER, SigningKey};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const AUDIENCE: &str = "https://mcp.example.com/mcp";

fn token(c: &mut Criterion) {
    let issuer = DemoIssuer::new().expect("issuer key");
    let keys = KeySource::from_jwks_text(&issuer.jwks().to_string()).expect("jwks");
    let verifier = TokenVerifier::new(
        vec![Issuer { issuer: ISSUER.into(), keys }],
        vec![AUDIENCE.into()],
        vec![Algorithm::ES256, Algorithm::RS256],
        Duration::from_secs(5),
    );
    let client = SigningKey::generate().expect("client key");
    let token = issuer.token(AUDIENCE, "agent", &client.thumbprint().expect("jkt")).expect("token");
    // Static keys: the futures complete without waiting.
    let verify = |uncached: bool| {
        let future =
            async { if uncached { verifier.verify_uncached(&token).await } else { verifier.verify(&token).await } };
        future.now_or_never().expect("static keys never wait").expect("valid token")
    };
    verify(false);

    let mut group = c.benchmark_group("token");
    group.bench_function("uncached_es256", |b| b.iter(|| verify(true)));
    group.bench_function("cached", |b| b.iter(|| verify(false)));
    group.finish();
}

criterion_group!(benches, token);
criterion_main!(benches);
