//! One proxy instance: binds its listeners, loads its policies, serves until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::Admin;
use crate::config::Settings;
use crate::identity::config::IdentitySettings;
use crate::identity::source::SvidSource;
use crate::listener::{self, ListenerOptions, TlsAccept};
use crate::metrics::Metrics;
use crate::policy::PolicyStore;
use crate::policy::reload::PolicyReloader;
use crate::proxy::{build_stack, stack::ProxyService};
use crate::state::{SharedState, StateError};

/// How often to retry fetching issuer keys that are still missing, and then to refresh
/// stale ones.
const KEY_RETRY: Duration = Duration::from_secs(5);
/// How often the state backend is swept (memory) or pinged (Redis: a down backend is
/// seen by `/readyz`, and a recovered one brought back, within this).
const STATE_UPKEEP_MEMORY: Duration = Duration::from_secs(5);
const STATE_UPKEEP_SHARED: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("outbound credentials: {0}")]
    Outbound(#[from] crate::outbound::OutboundError),
    #[error("state backend: {0}")]
    State(#[from] StateError),
}

pub struct Server {
    mcp: TcpListener,
    admin: Option<TcpListener>,
    service: ProxyService,
    admin_service: Admin,
    options: ListenerOptions,
    /// mTLS on the MCP listener.
    tls: Option<TlsAccept>,
    /// Keeps the SVID store current (Workload API or files).
    svid_source: Option<(SvidSource, Arc<IdentitySettings>)>,
    /// Keeps the policy store in step with the policy directory while serving; `None`
    /// when reload is off or the caller supplied the store.
    reloader: Option<(PolicyReloader, Duration)>,
}

impl Server {
    /// Binds both listeners and loads the policy directory. A policy that fails to load
    /// is logged and counted: the proxy starts not ready and denies every message, until
    /// a good push is picked up by the reloader (unless `policy.reload_interval_ms` is 0).
    pub async fn bind(settings: &Settings) -> Result<Server, ServerError> {
        let metrics = Arc::new(Metrics::new()?);
        let policies = Arc::new(PolicyStore::new());
        let mut reloader = PolicyReloader::new(
            settings.policy_dir.clone(),
            settings.entrypoint.clone(),
            policies.clone(),
            metrics.clone(),
        )
        .with_cache_entries(settings.policy_cache_entries);
        // The first load goes through the reloader too, so its first look compares
        // with what was loaded here instead of loading the same files again.
        reloader.load_initial().await;
        let mut server = Server::bind_with(settings, policies, metrics).await?;
        server.reloader = settings.policy_reload_interval.map(|interval| (reloader, interval));
        Ok(server)
    }

    /// Binds with a policy store supplied by the caller (the demo, tests).
    pub async fn bind_with(
        settings: &Settings,
        policies: Arc<PolicyStore>,
        metrics: Arc<Metrics>,
    ) -> Result<Server, ServerError> {
        let bind = |addr: SocketAddr| async move {
            match TcpListener::bind(addr).await {
                // `[::]` serves IPv4 and IPv6 (what a pod on a dual-stack or IPv6 cluster
                // needs); where the kernel has no IPv6, the same port on 0.0.0.0.
                Err(e) if addr.ip() == std::net::Ipv6Addr::UNSPECIFIED => {
                    let v4 = SocketAddr::from(([0, 0, 0, 0], addr.port()));
                    tracing::info!(error = %e, "no IPv6 here; listening on {v4}");
                    TcpListener::bind(v4).await.map_err(|source| ServerError::Bind { addr: v4, source })
                }
                bound => bound.map_err(|source| ServerError::Bind { addr, source }),
            }
        };
        let mcp = bind(settings.listen).await?;
        let admin = match settings.admin_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let outbound = match &settings.stack.outbound {
            Some(s) => Some(Arc::new(crate::outbound::OutboundCredentials::new(s.clone(), metrics.clone())?)),
            None => None,
        };
        let sessions = settings.stack.sessions.unwrap_or_default();
        let state = Arc::new(SharedState::from_settings(
            &settings.state,
            settings.replay,
            sessions.idle_timeout.as_secs(),
            sessions.max_sessions,
            metrics.clone(),
        )?);
        let breaker = Arc::new(crate::proxy::breaker::Breaker::new(settings.stack.breaker, metrics.clone()));
        let service = build_stack(
            &settings.stack,
            policies.clone(),
            metrics.clone(),
            outbound.clone(),
            state.clone(),
            breaker.clone(),
        );
        let identity = &settings.identity;
        let tls = if identity.mtls {
            let config = crate::identity::tls::server_config(identity.store.clone(), identity.trust_domains.clone())?;
            Some(TlsAccept {
                acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
                timeout: identity.handshake_timeout,
                on_handshake: Some(crate::identity::on_handshake(metrics.clone())),
            })
        } else {
            None
        };
        if let Some(svid) = identity.store.load().svid.as_ref() {
            metrics.svid_expiry.set(svid.not_after);
        }
        let options = crate::listener::ListenerOptions {
            connection_errors: crate::listener::ConnectionErrors(Some(metrics.connection_errors.clone())),
            open_connections: crate::listener::OpenConnections(Some(metrics.open_connections.clone())),
            ..settings.listener.clone()
        };
        Ok(Server {
            mcp,
            admin,
            service,
            admin_service: Admin {
                metrics,
                policies,
                auth: settings.stack.auth.clone(),
                svid: identity.source.as_ref().map(|_| identity.store.clone()),
                outbound,
                state,
                breaker,
            },
            options,
            tls,
            svid_source: identity.source.clone().map(|source| (source, identity.clone())),
            reloader: None,
        })
    }

    pub fn mcp_addr(&self) -> SocketAddr {
        self.mcp.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn policies(&self) -> Arc<PolicyStore> {
        self.admin_service.policies.clone()
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.admin_service.metrics.clone()
    }

    /// Serves until `shutdown` resolves, then drains both listeners. Policy reloading
    /// stops when `shutdown` resolves: the set that is loaded then serves the drain.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        // Dropping the sender stops the reloader too, should `run` itself be dropped.
        let (stop_reloader, reloader_stopped) = watch::channel(false);
        let metrics = self.admin_service.metrics.clone();
        let keys_task = self.admin_service.auth.clone().map(|auth| {
            let mut stopped = reloader_stopped.clone();
            tokio::spawn(async move {
                // Fetch the issuers' keys before the first request needs them, and keep
                // trying while any is missing (`/readyz` says so meanwhile).
                while !auth.tokens.is_ready() {
                    auth.tokens.prefetch().await;
                    tokio::select! {
                        _ = stopped.wait_for(|s| *s) => return,
                        () = tokio::time::sleep(KEY_RETRY) => {}
                    }
                }
                // Then keep the keys fresh (a withdrawn key must end tokens served from
                // the cache).
                loop {
                    auth.tokens.refresh_stale().await;
                    tokio::select! {
                        _ = stopped.wait_for(|s| *s) => return,
                        () = tokio::time::sleep(KEY_RETRY) => {}
                    }
                }
            })
        });
        // The state backend swept (memory) or checked (Redis): `/readyz` follows it, and
        // the gauges of replay entries and sessions stay current.
        let state_task = {
            let state = self.admin_service.state.clone();
            let mut stopped = reloader_stopped.clone();
            let every = if state.backend() == "memory" { STATE_UPKEEP_MEMORY } else { STATE_UPKEEP_SHARED };
            tokio::spawn(async move {
                loop {
                    let now =
                        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                    state.maintain(now).await;
                    tokio::select! {
                        _ = stopped.wait_for(|s| *s) => return,
                        () = tokio::time::sleep(every) => {}
                    }
                }
            })
        };
        // The agent's token, ready before its first call and refreshed ahead of expiry.
        let outbound_task = self.admin_service.outbound.clone().map(|outbound| {
            let mut stopped = reloader_stopped.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = stopped.wait_for(|s| *s) => {}
                    () = outbound.keep_fresh() => {}
                }
            })
        });
        let svid_task = self.svid_source.map(|(source, identity)| {
            let stopped = reloader_stopped.clone();
            tokio::spawn(source.run(identity.store.clone(), metrics.clone(), stopped))
        });
        let reload_task = self.reloader.map(|(reloader, interval)| {
            let mut stopped = reloader_stopped;
            tokio::spawn(reloader.run(interval, async move {
                let _ = stopped.wait_for(|s| *s).await;
            }))
        });
        let shutdown = async move {
            shutdown.await;
            let _ = stop_reloader.send(true);
        };
        let (stop_admin, admin_stopped) = tokio::sync::watch::channel(false);
        let admin_task = self.admin.map(|admin| {
            let service = self.admin_service.clone().service();
            let mut stopped = admin_stopped;
            tokio::spawn(async move {
                let until = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                listener::serve(admin, service, ListenerOptions::default(), None, until).await;
            })
        });
        tracing::info!(addr = %self.mcp.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving MCP");
        listener::serve(self.mcp, self.service, self.options, self.tls, shutdown).await;
        let _ = stop_admin.send(true);
        if let Some(task) = admin_task {
            let _ = task.await;
        }
        if let Some(task) = outbound_task {
            let _ = task.await;
        }
        if let Some(task) = keys_task {
            let _ = task.await;
        }
        let _ = state_task.await;
        if let Some(task) = reload_task {
            let _ = task.await;
        }
        if let Some(task) = svid_task {
            let _ = task.await;
        }
    }
}
