//! One proxy instance: binds its listeners, loads its policies, serves until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::admin::Admin;
use crate::config::Settings;
use crate::listener::{self, ListenerOptions};
use crate::metrics::Metrics;
use crate::policy::{PolicySet, PolicyStore};
use crate::proxy::{build_stack, stack::ProxyService};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
}

pub struct Server {
    mcp: TcpListener,
    admin: Option<TcpListener>,
    service: ProxyService,
    admin_service: Admin,
    options: ListenerOptions,
}

impl Server {
    /// Binds both listeners and loads the policy directory. A policy that fails to load
    /// is logged and counted: the proxy starts not ready and denies every message.
    pub async fn bind(settings: &Settings) -> Result<Server, ServerError> {
        let metrics = Arc::new(Metrics::new()?);
        let policies = Arc::new(PolicyStore::new());
        match PolicySet::load(&settings.policy_dir, &settings.entrypoint) {
            Ok(set) => {
                tracing::info!(dir = %settings.policy_dir.display(), files = set.files().len(), entrypoint = set.entrypoint(), "policies loaded");
                policies.replace(set);
                metrics.policy_reloads.with_label_values(&["ok"]).inc();
            }
            Err(e) => {
                tracing::error!(error = %e, "policies failed to load; denying every message until they do");
                metrics.policy_reloads.with_label_values(&["error"]).inc();
            }
        }
        Server::bind_with(settings, policies, metrics).await
    }

    /// Binds with a policy store supplied by the caller (the demo, tests).
    pub async fn bind_with(
        settings: &Settings,
        policies: Arc<PolicyStore>,
        metrics: Arc<Metrics>,
    ) -> Result<Server, ServerError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })
        };
        let mcp = bind(settings.listen).await?;
        let admin = match settings.admin_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let service = build_stack(&settings.stack, policies.clone(), metrics.clone());
        Ok(Server { mcp, admin, service, admin_service: Admin { metrics, policies }, options: settings.listener })
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

    /// Serves until `shutdown` resolves, then drains both listeners.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let (stop_admin, admin_stopped) = tokio::sync::watch::channel(false);
        let admin_task = self.admin.map(|admin| {
            let service = self.admin_service.clone().service();
            let mut stopped = admin_stopped;
            tokio::spawn(async move {
                let until = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                listener::serve(admin, service, ListenerOptions::default(), until).await;
            })
        });
        tracing::info!(addr = %self.mcp.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving MCP");
        listener::serve(self.mcp, self.service, self.options, shutdown).await;
        let _ = stop_admin.send(true);
        if let Some(task) = admin_task {
            let _ = task.await;
        }
    }
}
