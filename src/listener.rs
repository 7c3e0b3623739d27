//! Accepts connections, serves HTTP/1.1 and h2 on each, and shuts down gracefully.
//!
//! Shutdown is injected as a future (as in mini-redis): SIGTERM in production, a
//! channel in tests. In-flight requests finish; connections still open after the grace
//! period (long-lived SSE streams) are closed.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::{Service, ServiceExt};

use crate::body::{Body, boxed};
use crate::context::{ConnInfo, PeerSvid};

/// Called once per TLS handshake with its outcome: the client certificate (already
/// verified by the rustls configuration) or the error. Returns the peer's identity;
/// `None` closes the connection. The identity module supplies it, so the listener
/// knows TLS but not SPIFFE.
pub type OnHandshake =
    Arc<dyn Fn(Result<Option<&CertificateDer<'static>>, &std::io::Error>) -> Option<Arc<PeerSvid>> + Send + Sync>;

/// TLS on the listener: the handshake runs in the connection's task, bounded by
/// `timeout`, so a slow or silent client cannot hold up the accept loop.
#[derive(Clone)]
pub struct TlsAccept {
    pub acceptor: TlsAcceptor,
    pub timeout: Duration,
    /// Settles the client's identity (mTLS); `None` for TLS that authenticates only the
    /// server (the injection webhook), whose connections carry no peer identity.
    pub on_handshake: Option<OnHandshake>,
}

#[derive(Debug, Clone)]
pub struct ListenerOptions {
    /// Connections served at once; further accepts wait for a slot.
    pub max_connections: usize,
    /// How long open connections may run after shutdown starts.
    pub shutdown_grace: Duration,
    /// HTTP/1: a request's headers must be complete this long after its first byte
    /// (and an idle keep-alive connection is closed after it): slowloris bound.
    pub header_read_timeout: Duration,
    /// Bytes of request headers (HTTP/1 read buffer, h2 header list).
    pub max_header_bytes: usize,
    /// HTTP/1: headers per request.
    pub max_headers: usize,
    /// h2: streams open at once per connection.
    pub h2_max_concurrent_streams: u32,
    /// Counts connections hyper ended with an error, by [`connection_error_reason`].
    pub connection_errors: ConnectionErrors,
    /// `mcp_pep_open_connections`, when the listener has metrics.
    pub open_connections: OpenConnections,
}

/// A gauge of the connections open now; each connection's task holds one count until it
/// ends, however it ends (a leak shows as a gauge that does not return to zero).
#[derive(Clone, Default)]
pub struct OpenConnections(pub Option<prometheus::IntGauge>);

impl std::fmt::Debug for OpenConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "OpenConnections(counted)" } else { "OpenConnections(off)" })
    }
}

struct Counted(Option<prometheus::IntGauge>);

impl Counted {
    fn new(gauge: &OpenConnections) -> Self {
        if let Some(g) = &gauge.0 {
            g.inc();
        }
        Counted(gauge.0.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.dec();
        }
    }
}

/// `mcp_pep_connection_errors_total`, when the listener has metrics.
#[derive(Clone, Default)]
pub struct ConnectionErrors(pub Option<prometheus::IntCounterVec>);

impl std::fmt::Debug for ConnectionErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "ConnectionErrors(counted)" } else { "ConnectionErrors(off)" })
    }
}

/// A bounded label for why hyper ended a connection: the refusals that happen before a
/// request reaches any stage (431, header timeout, unparsable request) are told apart.
pub fn connection_error_reason(error: &(dyn std::error::Error + 'static)) -> &'static str {
    let Some(hyper_error) = error.downcast_ref::<hyper::Error>() else { return "other" };
    if hyper_error.is_timeout() {
        "header_timeout"
    } else if hyper_error.is_parse_too_large() {
        "headers_too_large"
    } else if hyper_error.is_parse() || hyper_error.is_parse_status() {
        "malformed"
    } else if hyper_error.is_incomplete_message() {
        "incomplete"
    } else {
        "io"
    }
}

impl Default for ListenerOptions {
    fn default() -> Self {
        ListenerOptions {
            max_connections: 4096,
            shutdown_grace: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            h2_max_concurrent_streams: 100,
            connection_errors: ConnectionErrors::default(),
            open_connections: OpenConnections::default(),
        }
    }
}

/// Serves `service` on `listener` (over TLS when `tls` is given) until `shutdown`
/// resolves, then drains.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    options: ListenerOptions,
    tls: Option<TlsAccept>,
    shutdown: impl Future<Output = ()>,
) where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        // hyper's floor for the read buffer is 8 KiB.
        .max_buf_size(options.max_header_bytes.max(8192))
        .max_headers(options.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(options.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(options.max_header_bytes).unwrap_or(u32::MAX));
    let mut connections = JoinSet::new();
    let mut backoff = Duration::from_millis(5);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
        };
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => { backoff = Duration::from_millis(5); accepted }
                Err(e) => {
                    // EMFILE and friends: wait rather than spin, and keep serving.
                    tracing::warn!(error = %e, ?backoff, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let errors = options.connection_errors.clone();
        let counted = Counted::new(&options.open_connections);
        connections.spawn(async move {
            let _counted = counted;
            match tls {
                None => {
                    let info = ConnInfo { remote, peer_svid: None };
                    serve_connection(stream, info, service, builder, watcher, errors).await;
                }
                Some(tls) => {
                    let Some((stream, peer_svid)) = handshake(stream, &tls).await else { return drop(permit) };
                    serve_connection(stream, ConnInfo { remote, peer_svid }, service, builder, watcher, errors).await;
                }
            }
            drop(permit);
        });
        // Reap finished connections so the set does not grow with history.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::debug!("all connections drained"),
        () = tokio::time::sleep(options.shutdown_grace) => {
            tracing::info!(open = connections.len(), "shutdown grace elapsed; closing open connections");
        }
    }
    connections.shutdown().await;
}

/// The TLS handshake, bounded in time; `None` when it failed or the peer was refused.
async fn handshake(
    stream: TcpStream,
    tls: &TlsAccept,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, Option<Arc<PeerSvid>>)> {
    let accepted = match tokio::time::timeout(tls.timeout, tls.acceptor.accept(stream)).await {
        Ok(accepted) => accepted,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")),
    };
    match accepted {
        Ok(stream) => {
            let Some(on_handshake) = &tls.on_handshake else { return Some((stream, None)) };
            let leaf = stream.get_ref().1.peer_certificates().and_then(|certs| certs.first());
            let peer = on_handshake(Ok(leaf))?;
            Some((stream, Some(peer)))
        }
        Err(e) => {
            match &tls.on_handshake {
                Some(on_handshake) => {
                    on_handshake(Err(&e));
                }
                None => tracing::debug!(error = %e, "TLS handshake failed"),
            }
            None
        }
    }
}

async fn serve_connection<S, IO>(
    io: IO,
    conn_info: ConnInfo,
    service: S,
    builder: auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    errors: ConnectionErrors,
) where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let remote = conn_info.remote;
    let hyper_service = service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(conn_info.clone());
        service.clone().oneshot(req.map(boxed))
    });
    let conn = builder.serve_connection(TokioIo::new(io), hyper_service).into_owned();
    if let Err(e) = watcher.watch(conn).await {
        let reason = connection_error_reason(&*e);
        tracing::debug!(error = %e, reason, %remote, "connection ended with an error");
        if let Some(counter) = &errors.0 {
            counter.with_label_values(&[reason]).inc();
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
}
