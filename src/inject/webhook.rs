//! `mcp-pep webhook`: a MutatingAdmissionWebhook around [`inject_object`].
//!
//! AdmissionReview v1 in, a JSON Patch out — never a replaced object, so the apiserver
//! keeps every field of the pod this binary does not know. A pod it cannot inject is
//! admitted unchanged with a warning (the chart's `failurePolicy` covers the webhook being
//! down, not a bad annotation); a review it cannot read is a 400 naming the problem.
//! The serving certificate is re-read when its files change (cert-manager rotates it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use prometheus::{Encoder as _, IntCounterVec, Opts, Registry, TextEncoder};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde_json::{Value, json};

use super::{InjectDefaults, Outcome, inject_object, label, patch};
use crate::body::{Body, json_response, text_response};
use crate::listener::{self, ListenerOptions, TlsAccept};

/// An AdmissionReview larger than this is refused (the apiserver's own limit is 3 MiB).
const MAX_REVIEW_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, clap::Args)]
pub struct WebhookArgs {
    /// HTTPS address of `/mutate` and `/healthz`.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// PEM certificate chain (re-read when it changes).
    #[arg(long)]
    pub tls_cert: PathBuf,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1).
    #[arg(long)]
    pub tls_key: PathBuf,
    /// Plain-HTTP address of `/metrics` and `/healthz`; empty to disable.
    #[arg(long, default_value = "127.0.0.1:9091")]
    pub metrics_listen: String,
    #[command(flatten)]
    pub defaults: InjectDefaults,
}

/// Why a review could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("not an AdmissionReview: {0}")]
    Invalid(String),
}

/// The webhook's counters.
#[derive(Clone)]
pub struct WebhookMetrics {
    registry: Registry,
    reviews: IntCounterVec,
}

impl WebhookMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reviews = IntCounterVec::new(
            Opts::new("mcp_pep_webhook_reviews_total", "AdmissionReviews answered, by outcome"),
            &["outcome"],
        )?;
        registry.register(Box::new(reviews.clone()))?;
        Ok(WebhookMetrics { registry, reviews })
    }

    fn count(&self, outcome: &str) {
        self.reviews.with_label_values(&[outcome]).inc();
    }

    fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

/// Answers one AdmissionReview (the body of a POST to `/mutate`).
pub fn review(body: &[u8], defaults: &InjectDefaults, metrics: &WebhookMetrics) -> Result<Value, ReviewError> {
    let invalid = |why: &str| ReviewError::Invalid(why.to_owned());
    let review: Value = serde_json::from_slice(body).map_err(|e| ReviewError::Invalid(e.to_string()))?;
    if review.get("apiVersion").and_then(Value::as_str) != Some("admission.k8s.io/v1")
        || review.get("kind").and_then(Value::as_str) != Some("AdmissionReview")
    {
        return Err(invalid("want apiVersion admission.k8s.io/v1, kind AdmissionReview"));
    }
    let request = review.get("request").ok_or_else(|| invalid("no request"))?;
    let uid = request.get("uid").and_then(Value::as_str).ok_or_else(|| invalid("request.uid missing"))?;
    let object = request.get("object").filter(|o| o.is_object()).ok_or_else(|| invalid("request.object missing"))?;
    let namespace = request.get("namespace").and_then(Value::as_str);
    let mut response = json!({ "uid": uid, "allowed": true });
    let mut yaml: yaml_serde::Value =
        yaml_serde::to_value(object).map_err(|e| ReviewError::Invalid(format!("request.object: {e}")))?;
    let what = label(&yaml);
    match inject_object(&mut yaml, defaults, namespace, false) {
        Ok(Outcome::Injected | Outcome::Uninjected) => {
            let changed = serde_json::to_value(&yaml).map_err(|e| ReviewError::Invalid(e.to_string()))?;
            let ops = patch::diff(object, &changed);
            if !ops.is_empty() {
                let encoded = data_encoding::BASE64.encode(Value::Array(ops).to_string().as_bytes());
                response["patchType"] = json!("JSONPatch");
                response["patch"] = json!(encoded);
            }
            metrics.count("injected");
            tracing::info!(object = %what, namespace, "injected");
        }
        Ok(Outcome::Skipped(why)) => {
            metrics.count("skipped");
            tracing::debug!(object = %what, namespace, why, "not injected");
        }
        Ok(Outcome::Other) => metrics.count("other"),
        Err(e) => {
            metrics.count("error");
            tracing::warn!(object = %what, namespace, error = %e, "admitted without the sidecar");
            response["warnings"] = json!([format!("mcp-pep: {what} admitted without the mcp-pep sidecar: {e}")]);
        }
    }
    Ok(json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response }))
}

/// The serving certificate, swapped whole when the files change.
#[derive(Debug)]
struct ReloadingCert(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

fn load_cert(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<(CertifiedKey, Vec<u8>)> {
    use anyhow::Context as _;
    let cert_pem = std::fs::read(cert).with_context(|| format!("{}", cert.display()))?;
    let key_pem = std::fs::read(key).with_context(|| format!("{}", key.display()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: not PEM certificates", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{}: no certificate", cert.display());
    let key_der =
        PrivateKeyDer::from_pem_slice(&key_pem).with_context(|| format!("{}: not a PEM key", key.display()))?;
    let provider = crate::identity::tls::provider();
    let certified = CertifiedKey::from_der(chain, key_der, &provider).context("certificate and key do not match")?;
    let mut fingerprint = cert_pem;
    fingerprint.extend_from_slice(&key_pem);
    Ok((certified, fingerprint))
}

/// A bound webhook: its listeners are open, [`BoundWebhook::run`] serves them.
pub struct BoundWebhook {
    listener: tokio::net::TcpListener,
    metrics_listener: Option<tokio::net::TcpListener>,
    tls: TlsAccept,
    resolver: Arc<ReloadingCert>,
    seen: Vec<u8>,
    args: WebhookArgs,
    metrics: WebhookMetrics,
}

impl BoundWebhook {
    /// Loads the certificate (an unreadable one is an error now, not at the first
    /// request) and binds both listeners.
    pub async fn bind(args: WebhookArgs) -> anyhow::Result<BoundWebhook> {
        let (certified, seen) = load_cert(&args.tls_cert, &args.tls_key)?;
        let resolver = Arc::new(ReloadingCert(ArcSwap::from_pointee(certified)));
        let config = rustls::ServerConfig::builder_with_provider(crate::identity::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        let tls = TlsAccept {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            timeout: Duration::from_secs(10),
            on_handshake: None,
        };
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        let metrics_listener = match args.metrics_listen.as_str() {
            "" => None,
            addr => Some(tokio::net::TcpListener::bind(addr).await?),
        };
        Ok(BoundWebhook { listener, metrics_listener, tls, resolver, seen, args, metrics: WebhookMetrics::new()? })
    }

    pub fn addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown`; the certificate files are re-read every `reload`.
    pub async fn run(self, reload: Duration, shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
        let BoundWebhook { listener, metrics_listener, tls, resolver, mut seen, args, metrics } = self;
        // A rotated Secret arrives as new files under the same names.
        let (cert_path, key_path) = (args.tls_cert.clone(), args.tls_key.clone());
        let watcher = tokio::spawn(async move {
            loop {
                tokio::time::sleep(reload).await;
                match load_cert(&cert_path, &key_path) {
                    Ok((certified, bytes)) if bytes != seen => {
                        resolver.0.store(Arc::new(certified));
                        seen = bytes;
                        tracing::info!("serving certificate reloaded");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "serving certificate unreadable; keeping the last one");
                    }
                }
            }
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until = move || {
            let mut rx = stopped.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let side = metrics_listener.map(|l| {
            let m = metrics.clone();
            let service = tower::service_fn(move |req: Request<Body>| {
                let m = m.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(match req.uri().path() {
                        "/metrics" => Response::new(crate::body::full(m.render())),
                        "/healthz" => text_response(StatusCode::OK, "ok\n"),
                        _ => text_response(StatusCode::NOT_FOUND, "not found\n"),
                    })
                }
            });
            tokio::spawn(listener::serve(l, service, ListenerOptions::default(), None, until()))
        });
        let defaults = Arc::new(args.defaults);
        let service = tower::service_fn(move |req: Request<Body>| {
            let (defaults, metrics) = (defaults.clone(), metrics.clone());
            async move { Ok::<_, std::convert::Infallible>(handle(req, &defaults, &metrics).await) }
        });
        let main = tokio::spawn(listener::serve(listener, service, ListenerOptions::default(), Some(tls), until()));
        shutdown.await;
        let _ = stop.send(true);
        let _ = main.await;
        if let Some(side) = side {
            let _ = side.await;
        }
        watcher.abort();
    }
}

/// `mcp-pep webhook`: runs until SIGTERM.
pub async fn run(args: WebhookArgs) -> anyhow::Result<()> {
    let bound = BoundWebhook::bind(args).await?;
    println!(
        "mcp-pep webhook listening https://{}/mutate metrics={}",
        bound.addr()?,
        bound.metrics_addr().map_or_else(|| "-".into(), |a| format!("http://{a}"))
    );
    bound.run(Duration::from_secs(5), listener::shutdown_signal()).await;
    Ok(())
}

async fn handle(req: Request<Body>, defaults: &InjectDefaults, metrics: &WebhookMetrics) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text_response(StatusCode::OK, "ok\n"),
        (&Method::POST, "/mutate") => {
            let body = match Limited::new(req.into_body(), MAX_REVIEW_BYTES).collect().await {
                Ok(body) => body.to_bytes(),
                Err(_) => return text_response(StatusCode::PAYLOAD_TOO_LARGE, "AdmissionReview too large\n"),
            };
            match review(&body, defaults, metrics) {
                Ok(answer) => json_response(StatusCode::OK, &answer),
                Err(e) => {
                    metrics.count("invalid");
                    tracing::warn!(error = %e, "AdmissionReview refused");
                    json_response(StatusCode::BAD_REQUEST, &json!({ "error": e.to_string() }))
                }
            }
        }
        _ => text_response(StatusCode::NOT_FOUND, "not found\n"),
    }
}
