//! The credentials stage: every message carries an access token from a trusted issuer,
//! bound by DPoP to a key the caller proves it holds (RFC 9449), and bound to the
//! workload that presents it (`binding`). A JWT-SVID, when configured, proves the
//! caller's SPIFFE ID first. The verified token travels on as a `VerifiedToken` request
//! extension and the settled identity replaces the `PeerIdentity`; the client's
//! `Authorization`, `DPoP` and JWT-SVID headers never reach the upstream.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use tower::Service;

use super::binding::{BindingError, bind};
use super::challenge::{ChallengeError, Challenges};
use super::config::AuthSettings;
use super::dpop::{DpopError, single_proof};
use super::jwt_svid::{JwtSvidError, JwtSvidVerifier};
use super::metadata::ResourceMetadata;
use super::token::TokenError;
use crate::body::Body;
use crate::context::{ConnInfo, IdentitySource, PeerIdentity, PeerSvid, VerifiedToken};
use crate::error::{Rejection, Stage, code};
use crate::metrics::Metrics;
use crate::stage::{Next, PipelineStage, StageFuture};
use crate::state::{FirstUse, SharedState, StateError};

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
    #[error("no JWT-SVID")]
    NoJwtSvid,
    #[error("invalid JWT-SVID: {0}")]
    JwtSvid(#[from] JwtSvidError),
    #[error("the JWT-SVID names {jwt}, the client certificate {cert}")]
    JwtSvidMismatch { jwt: String, cert: String },
    #[error("{0}")]
    Binding(#[from] BindingError),
    /// The replay check could not be made: never a pass.
    #[error("{0}")]
    State(#[from] StateError),
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
            CredentialsError::NoJwtSvid => "jwt_svid_missing",
            CredentialsError::JwtSvid(e) => e.reason(),
            CredentialsError::JwtSvidMismatch { .. } => "jwt_svid_mismatch",
            CredentialsError::Binding(e) => e.reason(),
            CredentialsError::State(_) => "state_unavailable",
        }
    }

    /// A workload-identity failure, not a token one: no OAuth challenge applies.
    fn is_identity(&self) -> bool {
        matches!(
            self,
            CredentialsError::NoJwtSvid | CredentialsError::JwtSvid(_) | CredentialsError::JwtSvidMismatch { .. }
        )
    }

    /// Our side failed (the issuer's keys are unreachable): the client's token may be
    /// fine, so no challenge tells it otherwise.
    fn is_unavailable(&self) -> bool {
        matches!(
            self,
            CredentialsError::Token(TokenError::Keys(_))
                | CredentialsError::JwtSvid(JwtSvidError::Keys(_))
                | CredentialsError::State(_)
        )
    }

    fn challenge(&self) -> (StatusCode, ChallengeError) {
        match self {
            CredentialsError::Missing => (StatusCode::UNAUTHORIZED, ChallengeError::Missing),
            CredentialsError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, ChallengeError::InvalidRequest),
            CredentialsError::Proof(DpopError::MultipleProofs) => {
                (StatusCode::BAD_REQUEST, ChallengeError::InvalidRequest)
            }
            // JWT-SVID refusals are 401 too; `refusal` leaves their challenge out.
            CredentialsError::Token(_)
            | CredentialsError::TokenBinding(_)
            | CredentialsError::Binding(_)
            | CredentialsError::NoJwtSvid
            | CredentialsError::JwtSvid(_)
            | CredentialsError::JwtSvidMismatch { .. } => (StatusCode::UNAUTHORIZED, ChallengeError::InvalidToken),
            // Answered 503 by `refusal` before a challenge is looked at.
            CredentialsError::State(_) => (StatusCode::SERVICE_UNAVAILABLE, ChallengeError::InvalidToken),
            CredentialsError::Proof(e) if e.is_nonce_error() => {
                (StatusCode::UNAUTHORIZED, ChallengeError::UseDpopNonce)
            }
            CredentialsError::NoProof | CredentialsError::Proof(_) => {
                (StatusCode::UNAUTHORIZED, ChallengeError::InvalidDpopProof)
            }
        }
    }
}

/// The credentials stage; `Off` when neither an issuer nor JWT-SVIDs are configured.
#[derive(Clone)]
pub enum CredentialsStage {
    Off,
    On(Arc<Credentials>),
}

/// JWT-SVIDs in a request header.
pub struct JwtSvidCheck {
    pub header: HeaderName,
    /// Absent header: refused (`true`) or the connection's identity stands (`false`).
    pub required: bool,
    pub verifier: JwtSvidVerifier,
}

pub struct Credentials {
    /// Access tokens; `None`: only JWT-SVIDs are checked.
    settings: Option<Arc<AuthSettings>>,
    jwt_svid: Option<JwtSvidCheck>,
    challenges: Challenges,
    metrics: Arc<Metrics>,
    /// Where used DPoP proofs are remembered (this process, or Redis for replicas).
    state: Arc<SharedState>,
}

impl CredentialsStage {
    pub fn new(
        settings: Option<Arc<AuthSettings>>,
        jwt_svid: Option<JwtSvidCheck>,
        metadata: Option<&ResourceMetadata>,
        metrics: Arc<Metrics>,
        state: Arc<SharedState>,
    ) -> Self {
        if settings.is_none() && jwt_svid.is_none() {
            return CredentialsStage::Off;
        }
        let algs: Vec<&str> =
            settings.as_ref().map(|s| s.dpop.algs().iter().map(|a| a.name()).collect()).unwrap_or_default();
        let metadata_url = metadata.map(|m| m.url.clone()).unwrap_or_default();
        let challenges = Challenges::new(&algs, metadata_url, settings.as_ref().is_some_and(|s| !s.dpop_required));
        CredentialsStage::On(Arc::new(Credentials { settings, jwt_svid, challenges, metrics, state }))
    }
}

impl PipelineStage for CredentialsStage {
    fn call(&self, mut req: Request<Body>, mut next: Next) -> StageFuture {
        let CredentialsStage::On(credentials) = self else { return next.call(req) };
        let credentials = credentials.clone();
        Box::pin(async move {
            let started = Instant::now();
            let identity = req.extensions().get::<PeerIdentity>().cloned().unwrap_or(PeerIdentity::Anonymous);
            let peer_svid = req.extensions().get::<ConnInfo>().and_then(|c| c.peer_svid.clone());
            let settled = credentials.settle(req.headers(), req.method(), identity, peer_svid).await;
            credentials.metrics.authn_duration.observe(started.elapsed().as_secs_f64());
            match settled {
                Ok((token, identity)) => {
                    if let Some(check) = &credentials.jwt_svid {
                        req.headers_mut().remove(&check.header);
                    }
                    if let Some(token) = token {
                        req.extensions_mut().insert(token);
                    }
                    req.extensions_mut().insert(identity);
                    next.call(req).await
                }
                Err(e) => Err(credentials.refusal(&e)),
            }
        })
    }
}

impl Credentials {
    /// The message's token (when tokens are checked) and the caller's identity, every
    /// proof agreeing:
    /// 1. a JWT-SVID proves a SPIFFE ID (equal to the client certificate's, if any);
    /// 2. the access token and its DPoP proof;
    /// 3. the token bound to that workload (`binding`).
    ///
    /// Takes the request's parts, not the request: its body is not `Sync`.
    async fn settle(
        &self,
        headers: &HeaderMap,
        method: &Method,
        mut identity: PeerIdentity,
        peer_svid: Option<Arc<PeerSvid>>,
    ) -> Result<(Option<VerifiedToken>, PeerIdentity), CredentialsError> {
        // 1. JWT-SVID.
        if let Some(check) = &self.jwt_svid {
            match single_header(headers, &check.header)? {
                None if check.required => return Err(CredentialsError::NoJwtSvid),
                None => {}
                Some(value) => {
                    // In `Authorization` a JWT-SVID comes as a Bearer token (SPIFFE JWT-SVID §4).
                    let jwt = if check.header == http::header::AUTHORIZATION {
                        value
                            .strip_prefix("Bearer ")
                            .ok_or(CredentialsError::InvalidRequest("a JWT-SVID in Authorization needs Bearer"))?
                    } else {
                        value
                    };
                    let proven = check.verifier.verify(jwt).await?;
                    match &identity {
                        // A certificate proved the caller: the JWT-SVID must name it too.
                        PeerIdentity::Spiffe(cert) if cert.source == IdentitySource::Mtls => {
                            if cert.spiffe_id != proven.spiffe_id {
                                return Err(CredentialsError::JwtSvidMismatch {
                                    jwt: proven.spiffe_id.to_string(),
                                    cert: cert.spiffe_id.to_string(),
                                });
                            }
                        }
                        _ => identity = PeerIdentity::Spiffe(proven),
                    }
                }
            }
        }

        // 2. and 3. The access token, bound to the workload.
        let Some(settings) = &self.settings else { return Ok((None, identity)) };
        let token = self.authenticate(settings, headers, method).await?;
        let identity = bind(identity, &token, settings.spiffe_id_claim.as_deref(), peer_svid.as_ref())?;
        Ok((Some(token), identity))
    }

    /// Takes the request's parts, not the request: its body is not `Sync`, so a borrowed
    /// request could not be held across the JWKS fetch.
    async fn authenticate(
        &self,
        settings: &AuthSettings,
        headers: &HeaderMap,
        method: &Method,
    ) -> Result<VerifiedToken, CredentialsError> {
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
        let verified = settings.tokens.verify(token).await?;

        // 4. The scheme agrees with the binding; a bound token always comes with a proof.
        if !dpop_scheme {
            if proof.is_some() {
                return Err(CredentialsError::InvalidRequest("a DPoP proof with the Bearer scheme"));
            }
            if verified.dpop_jkt().is_some() {
                return Err(CredentialsError::TokenBinding("a DPoP-bound token presented as Bearer"));
            }
            if settings.dpop_required {
                return Err(CredentialsError::TokenBinding("a DPoP-bound token is required"));
            }
            return Ok(verified);
        }
        let jkt = verified.dpop_jkt().ok_or(CredentialsError::TokenBinding("the token is not DPoP-bound"))?;
        let proof = proof.ok_or(CredentialsError::NoProof)?;

        // 5. The proof, against the URL clients use for this resource (`auth.public_url`).
        let now = SystemTime::now();
        let checked =
            settings.dpop.check_at(proof, method.as_str(), settings.htu.as_ref(), Some(token), Some(jkt), now)?;

        // 6. Its first use (RFC 9449 §11.1), in the state every replica shares. An error
        //    there refuses the request (503): an unrecorded proof would be replayable.
        let now_secs = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        match self.state.first_use(checked.replay_key, checked.proof.jkt(), checked.expires_at, now_secs).await? {
            FirstUse::New => Ok(verified),
            FirstUse::Seen => Err(DpopError::Replayed.into()),
            FirstUse::Full => Err(DpopError::ReplayCacheFull.into()),
            FirstUse::KeyQuota => Err(DpopError::ReplayKeyQuota.into()),
        }
    }

    fn refusal(&self, e: &CredentialsError) -> Rejection {
        let description = e.to_string();
        if let CredentialsError::State(state) = e {
            return Rejection::new(
                Stage::Credentials,
                e.reason(),
                StatusCode::SERVICE_UNAVAILABLE,
                code::UNAUTHENTICATED,
                // The backend's own message (hosts, addresses) stays in the log.
                format!("the DPoP replay check cannot be made right now ({})", state.kind()),
            );
        }
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
        if e.is_identity() || self.settings.is_none() {
            // Not an OAuth token problem: an OAuth challenge would send the client to
            // its authorization server for nothing.
            return Rejection::new(Stage::Credentials, e.reason(), status, code::UNAUTHENTICATED, description);
        }
        let mut rejection =
            Rejection::new(Stage::Credentials, e.reason(), status, code::UNAUTHENTICATED, description.clone())
                .with_header(header::WWW_AUTHENTICATE, self.challenges.header(challenge, &description));
        if challenge == ChallengeError::UseDpopNonce
            && let Some(nonce) = self.settings.as_ref().and_then(|s| s.dpop.nonce_source())
            && let Ok(value) = HeaderValue::from_str(&nonce.issue(SystemTime::now()))
        {
            rejection = rejection.with_header(HeaderName::from_static("dpop-nonce"), value);
        }
        rejection
    }
}

/// At most one value of `name`, as ASCII text.
fn single_header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, CredentialsError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(CredentialsError::InvalidRequest("more than one JWT-SVID header"));
    }
    value.to_str().map(|v| Some(v.trim())).map_err(|_| CredentialsError::InvalidRequest("JWT-SVID is not ASCII"))
}
