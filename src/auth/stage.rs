//! The credentials stage: every message carries an access token from a trusted issuer,
//! bound by DPoP to a key the caller proves it holds (RFC 9449). The verified token
//! travels on as a `VerifiedToken` request extension; the client's `Authorization` and
//! `DPoP` headers never reach the upstream (the upstream stage strips them).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use tower::Service;

use super::challenge::{ChallengeError, Challenges};
use super::config::AuthSettings;
use super::dpop::{DpopError, single_proof};
use super::metadata::ResourceMetadata;
use super::token::TokenError;
use crate::body::Body;
use crate::context::VerifiedToken;
use crate::error::{Rejection, Stage, code};
use crate::metrics::Metrics;
use crate::stage::{Next, PipelineStage, StageFuture};

/// Why credentials were refused.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("no credentials")]
    Missing,
    #[error("{0}")]
    InvalidRequest(&'static str),
    #[error("invalid token: {0}")]
    Token(#[from] TokenError),
    #[error("{0}")]
    TokenBinding(&'static str),
    #[error("a DPoP-bound token needs a DPoP proof")]
    NoProof,
    #[error("invalid DPoP proof: {0}")]
    Proof(#[from] DpopError),
}

impl CredentialsError {
    fn reason(&self) -> &'static str {
        match self {
            CredentialsError::Missing => "missing",
            CredentialsError::InvalidRequest(_) => "invalid_request",
            CredentialsError::Token(e) => e.reason(),
            CredentialsError::TokenBinding(_) => "token_binding",
            CredentialsError::NoProof => "no_proof",
            CredentialsError::Proof(e) => e.reason(),
        }
    }

    /// Our side failed (the issuer's keys are unreachable): the client's token may be
    /// fine, so no challenge tells it otherwise.
    fn is_unavailable(&self) -> bool {
        matches!(self, CredentialsError::Token(TokenError::Keys(_)))
    }

    fn challenge(&self) -> (StatusCode, ChallengeError) {
        match self {
            CredentialsError::Missing => (StatusCode::UNAUTHORIZED, ChallengeError::Missing),
            CredentialsError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, ChallengeError::InvalidRequest),
            CredentialsError::Proof(DpopError::MultipleProofs) => {
                (StatusCode::BAD_REQUEST, ChallengeError::InvalidRequest)
            }
            CredentialsError::Token(_) | CredentialsError::TokenBinding(_) => {
                (StatusCode::UNAUTHORIZED, ChallengeError::InvalidToken)
            }
            CredentialsError::Proof(e) if e.is_nonce_error() => {
                (StatusCode::UNAUTHORIZED, ChallengeError::UseDpopNonce)
            }
            CredentialsError::NoProof | CredentialsError::Proof(_) => {
                (StatusCode::UNAUTHORIZED, ChallengeError::InvalidDpopProof)
            }
        }
    }
}

/// The credentials stage; `Off` when no issuer is configured.
#[derive(Clone)]
pub enum CredentialsStage {
    Off,
    On(Arc<Credentials>),
}

pub struct Credentials {
    settings: Arc<AuthSettings>,
    challenges: Challenges,
    metrics: Arc<Metrics>,
}

impl CredentialsStage {
    pub fn new(
        settings: Option<Arc<AuthSettings>>,
        metadata: Option<&ResourceMetadata>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let Some(settings) = settings else { return CredentialsStage::Off };
        let algs: Vec<&str> = settings.dpop.algs().iter().map(|a| a.name()).collect();
        let metadata_url = metadata.map(|m| m.url.clone()).unwrap_or_default();
        let challenges = Challenges::new(&algs, metadata_url, !settings.dpop_required);
        CredentialsStage::On(Arc::new(Credentials { settings, challenges, metrics }))
    }
}

impl PipelineStage for CredentialsStage {
    fn call(&self, mut req: Request<Body>, mut next: Next) -> StageFuture {
        let CredentialsStage::On(credentials) = self else { return next.call(req) };
        let credentials = credentials.clone();
        Box::pin(async move {
            let started = Instant::now();
            let verified = credentials.authenticate(req.headers(), req.method()).await;
            credentials.metrics.authn_duration.observe(started.elapsed().as_secs_f64());
            match verified {
                Ok(token) => {
                    req.extensions_mut().insert(token);
                    next.call(req).await
                }
                Err(e) => Err(credentials.refusal(&e)),
            }
        })
    }
}

impl Credentials {
    /// Takes the request's parts, not the request: its body is not `Sync`, so a borrowed
    /// request could not be held across the JWKS fetch.
    async fn authenticate(&self, headers: &HeaderMap, method: &Method) -> Result<VerifiedToken, CredentialsError> {
        // 1. Exactly one Authorization header, scheme DPoP or Bearer.
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let value = values.next().ok_or(CredentialsError::Missing)?;
        if values.next().is_some() {
            return Err(CredentialsError::InvalidRequest("more than one Authorization header"));
        }
        let value = value.to_str().map_err(|_| CredentialsError::InvalidRequest("Authorization is not ASCII"))?;
        let (scheme, token) = value.split_once(' ').ok_or(CredentialsError::Missing)?;
        let token = token.trim();
        let dpop_scheme = if scheme.eq_ignore_ascii_case("dpop") {
            true
        } else if scheme.eq_ignore_ascii_case("bearer") {
            false
        } else {
            return Err(CredentialsError::Missing);
        };
        if token.is_empty() || token.contains(' ') {
            return Err(CredentialsError::InvalidRequest("malformed Authorization value"));
        }

        // 2. At most one DPoP proof (RFC 9449 §4.3 check 1).
        let proof = single_proof(headers.get_all("dpop").iter().map(HeaderValue::as_bytes))?;

        // 3. The access token.
        let verified = self.settings.tokens.verify(token).await?;

        // 4. The scheme agrees with the binding; a bound token always comes with a proof.
        if !dpop_scheme {
            if proof.is_some() {
                return Err(CredentialsError::InvalidRequest("a DPoP proof with the Bearer scheme"));
            }
            if verified.dpop_jkt().is_some() {
                return Err(CredentialsError::TokenBinding("a DPoP-bound token presented as Bearer"));
            }
            if self.settings.dpop_required {
                return Err(CredentialsError::TokenBinding("a DPoP-bound token is required"));
            }
            return Ok(verified);
        }
        let jkt = verified.dpop_jkt().ok_or(CredentialsError::TokenBinding("the token is not DPoP-bound"))?;
        let proof = proof.ok_or(CredentialsError::NoProof)?;

        // 5. The proof, against the URL clients use for this resource (`auth.public_url`).
        let htu = self.settings.public_url.to_string();
        self.settings.dpop.verify(proof, method.as_str(), &htu, Some(token), Some(jkt), SystemTime::now())?;
        Ok(verified)
    }

    fn refusal(&self, e: &CredentialsError) -> Rejection {
        let description = e.to_string();
        if e.is_unavailable() {
            tracing::warn!(error = %description, "cannot verify credentials: issuer keys unavailable");
            return Rejection::new(
                Stage::Credentials,
                e.reason(),
                StatusCode::SERVICE_UNAVAILABLE,
                code::UNAUTHENTICATED,
                "credentials cannot be verified right now",
            );
        }
        let (status, challenge) = e.challenge();
        tracing::info!(reason = e.reason(), error = %description, "credentials refused");
        let mut rejection =
            Rejection::new(Stage::Credentials, e.reason(), status, code::UNAUTHENTICATED, description.clone())
                .with_header(header::WWW_AUTHENTICATE, self.challenges.header(challenge, &description));
        if challenge == ChallengeError::UseDpopNonce
            && let Some(nonce) = self.settings.dpop.nonce_source()
            && let Ok(value) = HeaderValue::from_str(&nonce.issue(SystemTime::now()))
        {
            rejection = rejection.with_header(HeaderName::from_static("dpop-nonce"), value);
        }
        rejection
    }
}
