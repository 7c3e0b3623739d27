//! Where an issuer's signing keys come from: a static JWKS file, or the issuer's
//! `jwks_uri` (configured, or found by OIDC discovery) fetched, cached, refreshed
//! periodically and on an unknown `kid` — at most once per `min_refresh`, so a flood of
//! tokens with invented `kid`s cannot make us hammer the issuer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;
use tokio::sync::Mutex;

/// A JWKS or discovery document larger than this is refused.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS is not valid: {0}")]
    Parse(String),
    #[error("fetching {uri} failed: {reason}")]
    Fetch { uri: String, reason: String },
    #[error("discovery document of {0} has no jwks_uri or another issuer")]
    Discovery(String),
    #[error("no signing keys could be fetched yet")]
    Unavailable,
}

type Keys = HashMap<String, DecodingKey>;

/// The signing keys of a JWKS by `kid`; keys without a `kid`, symmetric keys and keys
/// published for another `use` than `sig` (Keycloak lists its `enc` keys too) are skipped.
pub fn keys_of(set: &JwkSet) -> Keys {
    set.keys
        .iter()
        .filter(|jwk| matches!(jwk.common.public_key_use, None | Some(jsonwebtoken::jwk::PublicKeyUse::Signature)))
        .filter_map(|jwk| Some((jwk.common.key_id.clone()?, super::token::decoding_key(jwk)?)))
        .collect()
}

pub enum KeySource {
    Static(Keys),
    Remote(Box<RemoteJwks>),
}

impl KeySource {
    pub fn from_jwks_text(text: &str) -> Result<Self, JwksError> {
        Ok(KeySource::Static(keys_of(&super::token::parse_jwks(text)?)))
    }

    /// The key for `kid`, fetching the JWKS first if it was never fetched or is stale.
    pub async fn key(&self, kid: &str) -> Result<Option<DecodingKey>, JwksError> {
        match self {
            KeySource::Static(keys) => Ok(keys.get(kid).cloned()),
            KeySource::Remote(remote) => remote.key(kid).await,
        }
    }

    /// Whether verification can work: static keys, or remote keys fetched once.
    pub fn is_ready(&self) -> bool {
        match self {
            KeySource::Static(_) => true,
            KeySource::Remote(remote) => remote.has_keys(),
        }
    }

    /// The key set's generation; static keys never change.
    pub fn generation(&self) -> u64 {
        match self {
            KeySource::Static(_) => 0,
            KeySource::Remote(remote) => remote.generation(),
        }
    }

    /// Fetches remote keys now (no-op for static keys).
    pub async fn prefetch(&self) -> Result<(), JwksError> {
        match self {
            KeySource::Static(_) => Ok(()),
            KeySource::Remote(remote) => remote.prefetch().await,
        }
    }

    /// After an unknown `kid`: refetch (rate limited) and look again.
    pub async fn refresh_for(&self, kid: &str) -> Result<Option<DecodingKey>, JwksError> {
        match self {
            KeySource::Static(_) => Ok(None),
            KeySource::Remote(remote) => remote.refresh_for(kid).await,
        }
    }
}

/// How the JWKS location is known.
pub enum JwksLocation {
    /// `{issuer}/.well-known/openid-configuration` names it (`jwks_uri`).
    Discovery {
        issuer: String,
    },
    Uri(Uri),
}

pub struct RemoteJwks {
    location: JwksLocation,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    keys: ArcSwap<Keys>,
    /// Bumped whenever a fetch brings a different key set: verifications cached under an
    /// older generation are redone (a withdrawn key stops working).
    generation: AtomicU64,
    /// SHA-256 of the last JWKS document, to tell a changed set from a refetch.
    last_document: std::sync::Mutex<[u8; 32]>,
    /// When the keys were last fetched (`None`: never) and where from.
    state: Mutex<FetchState>,
    refresh_every: Duration,
    min_refresh: Duration,
}

struct FetchState {
    fetched: Option<Instant>,
    attempted: Option<Instant>,
    jwks_uri: Option<Uri>,
}

impl RemoteJwks {
    pub fn new(location: JwksLocation, refresh_every: Duration, min_refresh: Duration) -> Result<Self, JwksError> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| JwksError::Fetch { uri: "native roots".into(), reason: e.to_string() })?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(RemoteJwks {
            location,
            client: Client::builder(TokioExecutor::new()).build(connector),
            keys: ArcSwap::from_pointee(Keys::new()),
            generation: AtomicU64::new(0),
            last_document: std::sync::Mutex::new([0; 32]),
            state: Mutex::new(FetchState { fetched: None, attempted: None, jwks_uri: None }),
            refresh_every,
            min_refresh,
        })
    }

    pub(crate) async fn key(&self, kid: &str) -> Result<Option<DecodingKey>, JwksError> {
        let stale = {
            let state = self.state.lock().await;
            state.fetched.is_none_or(|t| t.elapsed() >= self.refresh_every)
        };
        if stale {
            // A failed periodic refresh keeps the keys we have.
            if let Err(e) = self.fetch(false).await {
                if self.keys.load().is_empty() {
                    return Err(e);
                }
                tracing::warn!(error = %e, "JWKS refresh failed; keeping the cached keys");
            }
        }
        Ok(self.keys.load().get(kid).cloned())
    }

    pub(crate) async fn refresh_for(&self, kid: &str) -> Result<Option<DecodingKey>, JwksError> {
        self.fetch(true).await?;
        let keys = self.keys.load();
        if keys.is_empty() {
            // Nothing was ever fetched (the last try failed within `min_refresh`): the
            // issuer is unavailable, the token is not at fault.
            return Err(JwksError::Unavailable);
        }
        Ok(keys.get(kid).cloned())
    }

    /// Which key set is current (see `generation`).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Fetches again if the keys are older than `refresh_every` (the background task
    /// calls this, so key removals are seen even while every token is a cache hit).
    pub async fn refresh_if_stale(&self) -> Result<(), JwksError> {
        let stale = self.state.lock().await.fetched.is_none_or(|t| t.elapsed() >= self.refresh_every);
        if stale { self.fetch(false).await } else { Ok(()) }
    }

    /// Whether keys were fetched at least once.
    pub fn has_keys(&self) -> bool {
        !self.keys.load().is_empty()
    }

    /// Fetches now unless a fetch happened within `min_refresh` (startup, readiness).
    pub async fn prefetch(&self) -> Result<(), JwksError> {
        self.fetch(false).await
    }

    /// Fetches the JWKS unless another fetch happened within `min_refresh`.
    async fn fetch(&self, on_unknown_kid: bool) -> Result<(), JwksError> {
        let mut state = self.state.lock().await;
        if state.attempted.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return Ok(());
        }
        state.attempted = Some(Instant::now());
        let uri = match (&state.jwks_uri, &self.location) {
            (Some(uri), _) => uri.clone(),
            (None, JwksLocation::Uri(uri)) => uri.clone(),
            (None, JwksLocation::Discovery { issuer }) => {
                let uri = self.discover(issuer).await?;
                state.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let text = self.get(&uri).await?;
        let mut digest = [0u8; 32];
        digest.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes()).as_ref());
        let keys = keys_of(&super::token::parse_jwks(&text)?);
        tracing::info!(%uri, keys = keys.len(), on_unknown_kid, "JWKS fetched");
        self.keys.store(Arc::new(keys));
        if let Ok(mut last) = self.last_document.lock()
            && *last != digest
        {
            *last = digest;
            self.generation.fetch_add(1, Ordering::Release);
        }
        state.fetched = Some(Instant::now());
        Ok(())
    }

    async fn discover(&self, issuer: &str) -> Result<Uri, JwksError> {
        let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let uri: Uri = url.parse().map_err(|_| JwksError::Discovery(issuer.into()))?;
        let doc: serde_json::Value =
            serde_json::from_str(&self.get(&uri).await?).map_err(|e| JwksError::Parse(e.to_string()))?;
        // OIDC Discovery §4.3: the document's issuer must be the one we asked.
        if doc.get("issuer").and_then(|v| v.as_str()) != Some(issuer) {
            return Err(JwksError::Discovery(issuer.into()));
        }
        doc.get("jwks_uri")
            .and_then(|v| v.as_str())
            .and_then(|u| u.parse().ok())
            .ok_or_else(|| JwksError::Discovery(issuer.into()))
    }

    async fn get(&self, uri: &Uri) -> Result<String, JwksError> {
        let fail = |reason: String| JwksError::Fetch { uri: uri.to_string(), reason };
        let req = Request::get(uri.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| fail(e.to_string()))?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .map_err(|_| fail("timed out".into()))?
            .map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("status {}", resp.status())));
        }
        let body = Limited::new(resp.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| fail("not UTF-8".into()))
    }
}
