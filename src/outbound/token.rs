//! Getting, checking and keeping the access token the upstream requests carry.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use data_encoding::BASE64URL_NOPAD;
use http::{Method, Request, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::sync::{Mutex, OnceCell};

use super::{DpopKey, OutboundError};
use crate::metrics::Metrics;

/// Keycloak's SPIFFE client authentication; RFC 7523 for a Kubernetes service-account
/// style issuer.
const JWT_SPIFFE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Where the client assertion (a JWT-SVID) comes from.
pub enum AssertionSource {
    /// The SPIFFE Workload API (`FetchJWTSVID` for the token endpoint's audience).
    WorkloadApi { socket: Option<String>, source: OnceCell<spiffe::JwtSource> },
    /// A file a helper keeps fresh (e.g. spiffe-helper's `jwt_svids`); re-read every time.
    File(PathBuf),
}

impl AssertionSource {
    async fn jwt_svid(&self, audience: &str) -> Result<String, OutboundError> {
        match self {
            AssertionSource::File(path) => std::fs::read_to_string(path)
                .map(|t| t.trim().to_owned())
                .map_err(|e| OutboundError::NoSvid(format!("{}: {e}", path.display()))),
            AssertionSource::WorkloadApi { socket, source } => {
                let source = source
                    .get_or_try_init(|| async {
                        let builder = spiffe::JwtSource::builder();
                        let builder = match socket {
                            Some(socket) => builder.endpoint(socket),
                            None => builder,
                        };
                        builder.build().await
                    })
                    .await
                    .map_err(|e| OutboundError::NoSvid(format!("Workload API: {e}")))?;
                let svid = source.fetch_jwt_svid([audience]).await.map_err(|e| OutboundError::NoSvid(e.to_string()))?;
                Ok(svid.token().to_owned())
            }
        }
    }
}

/// The checked `upstream.credentials` section.
pub struct OutboundSettings {
    /// The realm URL (`https://kc/realms/R`): discovery, and the assertion's audience.
    pub issuer: String,
    /// Instead of discovery.
    pub token_endpoint: Option<Uri>,
    /// `jwt-spiffe` (Keycloak) or `jwt-bearer`.
    pub assertion_type: String,
    pub assertion_audience: String,
    pub assertion_source: AssertionSource,
    pub scope: Option<String>,
    pub audience: Option<String>,
    pub resource: Option<String>,
    /// Refresh this long before `exp`.
    pub refresh_margin: Duration,
    /// The upstream URL as the resource server sees it: the proofs' `htu`.
    pub htu: String,
    /// A new DPoP key for every token (else one per process).
    pub new_key_per_token: bool,
    /// RFC 7591 registration with the JWT-SVID as `software_statement` before the first
    /// token (the SPIFFE DCR SPI of seeds 000/001; upstream Keycloak has none).
    pub registration: Option<Registration>,
}

pub struct Registration {
    pub endpoint: Uri,
    pub client_name: String,
}

/// A token in hand.
#[derive(Clone)]
struct Token {
    value: Arc<str>,
    expires_at: u64,
    key: Arc<DpopKey>,
}

/// What an upstream request is sent with.
pub struct Credential {
    pub token: Arc<str>,
    pub key: Arc<DpopKey>,
}

pub struct OutboundCredentials {
    settings: Arc<OutboundSettings>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    key: std::sync::Mutex<Arc<DpopKey>>,
    /// Held across a token request: one refresh at a time, the others wait for it.
    token: Mutex<Option<Token>>,
    token_endpoint: OnceCell<Uri>,
    /// Set once the client is registered (or registration is off).
    registered: OnceCell<()>,
    /// The resource server's last `DPoP-Nonce` (RFC 9449 §8), sent in the next proofs.
    nonce: std::sync::Mutex<Option<String>>,
    /// The token endpoint's own nonce (RFC 9449 §8 at the authorization server).
    issuer_nonce: std::sync::Mutex<Option<String>>,
    /// Whether the last token request succeeded (readiness).
    healthy: std::sync::atomic::AtomicBool,
    expires_at: AtomicU64,
    metrics: Arc<Metrics>,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl OutboundCredentials {
    pub fn new(settings: Arc<OutboundSettings>, metrics: Arc<Metrics>) -> Result<Self, OutboundError> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| OutboundError::Unreachable(format!("no TLS roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(OutboundCredentials {
            settings,
            client: Client::builder(TokioExecutor::new()).build(connector),
            key: std::sync::Mutex::new(Arc::new(DpopKey::generate()?)),
            token: Mutex::new(None),
            token_endpoint: OnceCell::new(),
            registered: OnceCell::new(),
            nonce: std::sync::Mutex::new(None),
            issuer_nonce: std::sync::Mutex::new(None),
            healthy: std::sync::atomic::AtomicBool::new(false),
            expires_at: AtomicU64::new(0),
            metrics,
        })
    }

    /// Keeps a token ready: fetched at start, refreshed ahead of expiry, retried every 5 s
    /// while none can be had (so `/readyz` recovers without a restart).
    pub async fn keep_fresh(self: Arc<Self>) {
        loop {
            let wait = match self.credential(None).await {
                Ok(_) => {
                    let until =
                        self.expires_at.load(Ordering::Relaxed).saturating_sub(self.settings.refresh_margin.as_secs());
                    Duration::from_secs(until.saturating_sub(now()).max(1))
                }
                Err(_) => Duration::from_secs(5),
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// The proofs' `htu`.
    pub fn htu(&self) -> &str {
        &self.settings.htu
    }

    /// `/readyz`: the last token request succeeded and its token is still valid.
    pub fn is_ready(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && self.expires_at.load(Ordering::Relaxed) > now()
    }

    pub fn nonce(&self) -> Option<String> {
        self.nonce.lock().ok().and_then(|n| n.clone())
    }

    pub fn set_nonce(&self, nonce: &str) {
        if let Ok(mut slot) = self.nonce.lock() {
            *slot = Some(nonce.to_owned());
        }
    }

    /// The token to send now: the cached one unless it is within the refresh margin of
    /// its expiry (or `refused` names it: the resource server said `invalid_token`).
    pub async fn credential(&self, refused: Option<&str>) -> Result<Credential, OutboundError> {
        let mut slot = self.token.lock().await;
        let margin = self.settings.refresh_margin.as_secs();
        if let Some(token) = slot.as_ref()
            && token.expires_at > now() + margin
            && refused != Some(&*token.value)
        {
            return Ok(Credential { token: token.value.clone(), key: token.key.clone() });
        }
        // 1 + 2 retries with capped, jittered backoff: an issuer blip is ridden out, an
        // outage answered within about a second.
        let mut delay = Duration::from_millis(100);
        let mut last = None;
        for attempt in 0..3 {
            if attempt > 0 {
                let jitter = Duration::from_millis(u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 50);
                tokio::time::sleep(delay + jitter).await;
                delay = (delay * 3).min(Duration::from_secs(1));
            }
            let started = Instant::now();
            match self.request_token().await {
                Ok(token) => {
                    self.metrics.outbound_token_requests.with_label_values(&["ok"]).inc();
                    self.metrics.outbound_token_duration.observe(started.elapsed().as_secs_f64());
                    self.metrics.outbound_token_expiry.set(i64::try_from(token.expires_at).unwrap_or(i64::MAX));
                    self.healthy.store(true, Ordering::Relaxed);
                    self.expires_at.store(token.expires_at, Ordering::Relaxed);
                    tracing::info!(
                        jkt = token.key.thumbprint(),
                        expires_at = token.expires_at,
                        "outbound token obtained"
                    );
                    let credential = Credential { token: token.value.clone(), key: token.key.clone() };
                    *slot = Some(token);
                    return Ok(credential);
                }
                Err(e) => {
                    self.metrics.outbound_token_requests.with_label_values(&[e.label()]).inc();
                    tracing::warn!(error = %e, attempt, "outbound token request failed");
                    // A refusal will not change by asking again at once.
                    let retry = !matches!(e, OutboundError::Refused { .. } | OutboundError::BadAnswer(_));
                    last = Some(e);
                    if !retry {
                        break;
                    }
                }
            }
        }
        self.healthy.store(false, Ordering::Relaxed);
        // Never an expired token on the wire: a still-valid one is used past the margin.
        if let Some(token) = slot.as_ref()
            && token.expires_at > now()
            && refused != Some(&*token.value)
        {
            return Ok(Credential { token: token.value.clone(), key: token.key.clone() });
        }
        *slot = None;
        Err(last.unwrap_or_else(|| OutboundError::Unreachable("no attempt".into())))
    }

    async fn token_endpoint(&self) -> Result<Uri, OutboundError> {
        if let Some(uri) = &self.settings.token_endpoint {
            return Ok(uri.clone());
        }
        self.token_endpoint
            .get_or_try_init(|| async {
                let url = format!("{}/.well-known/openid-configuration", self.settings.issuer.trim_end_matches('/'));
                let req = Request::get(&url)
                    .body(Full::new(Bytes::new()))
                    .map_err(|e| OutboundError::Unreachable(e.to_string()))?;
                let (status, body) = self.send(req).await?;
                if !status.is_success() {
                    return Err(OutboundError::Unreachable(format!("{url}: HTTP {status}")));
                }
                let doc: Value =
                    serde_json::from_slice(&body).map_err(|e| OutboundError::BadAnswer(format!("discovery: {e}")))?;
                let endpoint = doc
                    .get("token_endpoint")
                    .and_then(Value::as_str)
                    .ok_or_else(|| OutboundError::BadAnswer("discovery has no token_endpoint".into()))?;
                endpoint
                    .parse::<Uri>()
                    .map_err(|_| OutboundError::BadAnswer(format!("token_endpoint {endpoint:?} is not a URL")))
            })
            .await
            .cloned()
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> Result<(http::StatusCode, Bytes), OutboundError> {
        let uri = req.uri().to_string();
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .map_err(|_| OutboundError::Unreachable(format!("{uri}: timed out")))?
            .map_err(|e| OutboundError::Unreachable(format!("{uri}: {e}")))?;
        let status = resp.status();
        let nonce = resp.headers().get("dpop-nonce").and_then(|v| v.to_str().ok()).map(str::to_owned);
        if let (Some(nonce), Ok(mut slot)) = (nonce, self.issuer_nonce.lock()) {
            *slot = Some(nonce);
        }
        let body = Limited::new(resp.into_body(), 1024 * 1024)
            .collect()
            .await
            .map_err(|e| OutboundError::Unreachable(format!("{uri}: {e}")))?
            .to_bytes();
        Ok((status, body))
    }

    /// Registers the client by RFC 7591 with the JWT-SVID as software statement; an
    /// answer that it exists already (409, or a 400 saying so) counts as registered.
    async fn register(&self) -> Result<(), OutboundError> {
        let Some(registration) = &self.settings.registration else { return Ok(()) };
        self.registered
            .get_or_try_init(|| async {
                let statement = self.settings.assertion_source.jwt_svid(&self.settings.assertion_audience).await?;
                let body = serde_json::json!({
                    "software_statement": statement,
                    "client_name": registration.client_name,
                    "grant_types": ["client_credentials"],
                });
                let req = Request::post(registration.endpoint.clone())
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::ACCEPT, "application/json")
                    .body(Full::new(Bytes::from(body.to_string())))
                    .map_err(|e| OutboundError::Unreachable(e.to_string()))?;
                let (status, answer) = self.send(req).await?;
                let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
                let exists = status == http::StatusCode::CONFLICT
                    || (status == http::StatusCode::BAD_REQUEST && text.contains("already"));
                if status.is_success() || exists {
                    tracing::info!(status = status.as_u16(), "client registered (or already registered)");
                    return Ok(());
                }
                if status.is_server_error() {
                    return Err(OutboundError::Unreachable(format!("registration endpoint answered HTTP {status}")));
                }
                let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
                Err(OutboundError::Refused {
                    error: answer
                        .get("error")
                        .and_then(Value::as_str)
                        .map_or_else(|| format!("registration HTTP {status}"), str::to_owned),
                    description: answer.get("error_description").and_then(Value::as_str).map(str::to_owned),
                })
            })
            .await
            .map(|_| ())
    }

    /// One token request (and one retry when the token endpoint asks for a nonce).
    async fn request_token(&self) -> Result<Token, OutboundError> {
        self.register().await?;
        let endpoint = self.token_endpoint().await?;
        if self.settings.new_key_per_token
            && let Ok(mut key) = self.key.lock()
        {
            *key = Arc::new(DpopKey::generate()?);
        }
        let key = self.key.lock().map_err(|_| OutboundError::Key("lock".into()))?.clone();
        // RFC 9449: the endpoint without query and fragment.
        let htu = format!(
            "{}://{}{}",
            endpoint.scheme_str().unwrap_or("https"),
            endpoint.authority().map_or("", |a| a.as_str()),
            endpoint.path()
        );
        for _ in 0..2 {
            // Fresh for every request: Keycloak refuses an assertion issued over 300 s ago.
            let assertion = self.settings.assertion_source.jwt_svid(&self.settings.assertion_audience).await?;
            let nonce = self.issuer_nonce.lock().ok().and_then(|n| n.clone());
            let proof = key.proof("POST", &htu, None, nonce.as_deref())?;
            let assertion_type = if self.settings.assertion_type == "jwt-bearer" { JWT_BEARER } else { JWT_SPIFFE };
            let form = {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "client_credentials");
                form.append_pair("client_assertion_type", assertion_type);
                form.append_pair("client_assertion", &assertion);
                let optional = [
                    ("scope", &self.settings.scope),
                    ("audience", &self.settings.audience),
                    ("resource", &self.settings.resource),
                ];
                for (name, value) in optional {
                    if let Some(value) = value {
                        form.append_pair(name, value);
                    }
                }
                form.finish()
            };
            let req = Request::builder()
                .method(Method::POST)
                .uri(endpoint.clone())
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::ACCEPT, "application/json")
                .header("dpop", proof)
                .body(Full::new(Bytes::from(form)))
                .map_err(|e| OutboundError::Unreachable(e.to_string()))?;
            let (status, body) = self.send(req).await?;
            let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if status.is_success() {
                return check_answer(&answer, key);
            }
            let error = answer.get("error").and_then(Value::as_str).unwrap_or("").to_owned();
            if error == "use_dpop_nonce" && self.issuer_nonce.lock().is_ok_and(|n| n.is_some()) {
                continue;
            }
            if status.is_server_error() {
                return Err(OutboundError::Unreachable(format!("token endpoint answered HTTP {status}")));
            }
            let description = answer.get("error_description").and_then(Value::as_str).map(str::to_owned);
            return Err(OutboundError::Refused {
                error: if error.is_empty() { format!("HTTP {status}") } else { error },
                description,
            });
        }
        Err(OutboundError::Refused {
            error: "use_dpop_nonce".into(),
            description: Some("the nonce was refused too".into()),
        })
    }
}

/// The token endpoint's answer, checked: a DPoP token bound to `key`, with an expiry.
fn check_answer(answer: &Value, key: Arc<DpopKey>) -> Result<Token, OutboundError> {
    let bad = |why: &str| OutboundError::BadAnswer(why.to_owned());
    let token_type = answer.get("token_type").and_then(Value::as_str).unwrap_or_default();
    if !token_type.eq_ignore_ascii_case("dpop") {
        return Err(bad(&format!("token_type {token_type:?}, not DPoP")));
    }
    let token = answer.get("access_token").and_then(Value::as_str).ok_or_else(|| bad("no access_token"))?;
    // The client reads its own token's claims (it cannot verify them: the resource server
    // does); a token for another key would fail at every request.
    let payload = token.split('.').nth(1).ok_or_else(|| bad("access_token is not a JWT"))?;
    let claims: Value = BASE64URL_NOPAD
        .decode(payload.as_bytes())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| bad("access_token payload is not JSON"))?;
    match claims.pointer("/cnf/jkt").and_then(Value::as_str) {
        Some(jkt) if jkt == key.thumbprint() => {}
        Some(_) => return Err(bad("the token is bound to another key")),
        None => return Err(bad("the token is not DPoP-bound (no cnf.jkt)")),
    }
    let exp = claims.get("exp").and_then(Value::as_u64).ok_or_else(|| bad("the token has no exp"))?;
    if exp <= now() {
        return Err(bad("the token is already expired"));
    }
    // `expires_in` may say sooner than `exp`: the earlier one counts.
    let expires_at = answer.get("expires_in").and_then(Value::as_u64).map_or(exp, |s| exp.min(now() + s));
    Ok(Token { value: token.into(), expires_at, key })
}
