//! Configuration: a YAML file, overridden by flags and `MCP_PEP_*` variables, validated
//! into typed [`Settings`] before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{StatusCode, Uri};
use serde::Deserialize;

use crate::auth::config::{AuthConfig, IssuerConfig};
use crate::context::IdentitySource;
use crate::identity::config::{IdentityConfig, IdentitySettings};
use crate::identity::parse_spiffe_id;
use crate::listener::ListenerOptions;
use crate::mcp::InspectLimits;
use crate::policy::PolicyOptions;
use crate::proxy::StackConfig;
use crate::proxy::breaker::BreakerOptions;
use crate::proxy::upstream::UpstreamTimeouts;
use crate::state::config::{StateConfig, StateSettings};

/// The file's shape. Every key is optional; unknown keys are errors (a typo must not
/// silently fall back to a default on a security component).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: String,
    pub admin_listen: String,
    pub mcp_path: String,
    pub allowed_origins: Vec<String>,
    /// `Host` names the MCP listener answers to (DNS rebinding); empty: derived from
    /// `listen` and `auth.public_url`; `["*"]`: any.
    pub allowed_hosts: Vec<String>,
    pub shutdown_grace_ms: u64,
    pub upstream: UpstreamConfig,
    pub policy: PolicyConfig,
    pub limits: LimitsConfig,
    pub sessions: SessionsConfig,
    pub mcp: McpConfig,
    pub identity: IdentityConfig,
    pub auth: AuthConfig,
    /// Where replay entries and session bindings live (memory, or Redis for replicas).
    pub state: StateConfig,
    pub log: LogConfig,
}

/// MCP 2026-07-28 rules that need a choice.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// `Mcp-Param-*` headers on a call to a tool whose schema this sidecar has not seen
    /// in a `tools/list` answer: `refuse` (400, -32020; the client re-lists and retries)
    /// or `strip` (the server never sees an unchecked mirror).
    pub unverified_param_headers: String,
    /// The longest `ttlMs` a client is told for a filtered, per-caller answer.
    pub max_cache_ttl_ms: u64,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            unverified_param_headers: "refuse".into(),
            max_cache_ttl_ms: crate::policy::AnswerOptions::default().max_cache_ttl_ms,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    pub url: Option<String>,
    /// The tool server's SPIFFE ID; required for an `https://` URL (mTLS with the
    /// sidecar's SVID, the server verified against its trust domain's bundle).
    pub spiffe_id: Option<String>,
    /// Tell the tool server the caller's verified SPIFFE ID in this request header
    /// (e.g. `x-spiffe-id`); a value the client sent in it is always removed.
    pub identity_header: Option<String>,
    pub connect_timeout_ms: u64,
    pub response_header_timeout_ms: u64,
    /// From an answer's headers to its last byte (answers that are not SSE).
    pub response_body_timeout_ms: u64,
    /// The longest silence inside an SSE stream before it is ended; 0: never.
    pub stream_idle_timeout_ms: u64,
    pub pool_idle_timeout_ms: u64,
    pub pool_max_idle_per_host: usize,
    /// Transport failures in a row that open the circuit breaker; 0: off.
    pub breaker_failures: u32,
    /// How long an open breaker refuses at first; doubled after each failed probe.
    pub breaker_backoff_ms: u64,
    pub breaker_max_backoff_ms: u64,
    /// Obtain the agent's token and sign its DPoP proofs (egress); off when unset.
    pub credentials: Option<OutboundConfig>,
}

/// `upstream.credentials`: the token the sidecar obtains for its agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// The realm URL, e.g. `https://keycloak.example.com/realms/agents`.
    pub issuer: String,
    /// Instead of OIDC discovery.
    pub token_endpoint: Option<String>,
    /// `jwt-spiffe` (Keycloak) or `jwt-bearer`.
    pub assertion_type: String,
    /// The JWT-SVID's audience; default: the issuer (what Keycloak requires).
    pub assertion_audience: Option<String>,
    /// A file holding a fresh JWT-SVID instead of the Workload API.
    pub assertion_file: Option<PathBuf>,
    pub scope: Option<String>,
    pub audience: Option<String>,
    pub resource: Option<String>,
    pub refresh_margin_s: u64,
    /// The upstream's URL as the resource server sees it (the proofs' `htu`); default:
    /// `upstream.url`.
    pub public_url: Option<String>,
    pub new_key_per_token: bool,
    /// Register the client first (RFC 7591, the JWT-SVID as `software_statement`).
    pub registration_endpoint: Option<String>,
    /// The `client_name` registered; default `mcp-pep-agent`.
    pub client_name: Option<String>,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            issuer: String::new(),
            token_endpoint: None,
            assertion_type: "jwt-spiffe".into(),
            assertion_audience: None,
            assertion_file: None,
            scope: None,
            audience: None,
            resource: None,
            refresh_margin_s: 60,
            public_url: None,
            new_key_per_token: false,
            registration_endpoint: None,
            client_name: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub dir: Option<PathBuf>,
    pub entrypoint: String,
    pub deny_status: u16,
    pub expose_reasons: bool,
    /// How often the policy directory is read for changes; 0 turns hot reload off.
    pub reload_interval_ms: u64,
    /// Decisions kept for reuse per loaded set (inputs that agree on every path the
    /// policies can read share one); 0 turns the cache off.
    pub decision_cache_entries: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_body_bytes: usize,
    pub max_json_depth: usize,
    pub max_connections: usize,
    /// HTTP/1: from a request's first byte to the end of its headers; also how long an
    /// idle keep-alive connection is kept.
    pub header_read_timeout_ms: u64,
    /// From the end of the headers to the body's last byte.
    pub body_read_timeout_ms: u64,
    /// Bytes of request headers (HTTP/1 line + headers, h2 header list).
    pub max_header_bytes: usize,
    /// HTTP/1: headers per request.
    pub max_headers: usize,
    /// h2: concurrent streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// Requests per second per caller (SPIFFE ID, else token subject, else address); 0: off.
    pub rate_per_caller: f64,
    /// Requests a caller may send at once after being idle.
    pub rate_burst_per_caller: u32,
    /// SSE answers one caller may hold open; 0: unbounded.
    pub max_streams_per_caller: usize,
    /// Callers the rate and stream tables track at once.
    pub max_callers: usize,
    /// Where the rate buckets live: `auto` (shared with `state.backend: redis`, else
    /// replica), `replica` (this process) or `shared` (the state backend; needs redis).
    pub rate_scope: String,
    /// With shared buckets, when the backend cannot answer: `refuse` (503) or `local`
    /// (this replica's own bucket until it answers again).
    pub rate_on_state_error: String,
    /// An answer the proxy must read whole to check (a list, one SSE event); larger: 502.
    pub max_answer_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// Bind each `Mcp-Session-Id` to the caller that created it (design §2).
    pub bind: bool,
    pub idle_timeout_s: u64,
    pub max_sessions: usize,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        let options = crate::mcp::SessionOptions::default();
        SessionsConfig {
            bind: true,
            idle_timeout_s: options.idle_timeout.as_secs(),
            max_sessions: options.max_sessions,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `mcp_pep=debug`.
    pub level: String,
    /// OPA decision-log events: `""` off, `stdout`, or a file path (appended).
    pub decision_log: String,
    /// Keep tool arguments in decision-log events (default: erased).
    pub decision_log_arguments: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            admin_listen: "127.0.0.1:9090".into(),
            mcp_path: "/mcp".into(),
            // Pages served from this machine are not a DNS-rebinding threat.
            allowed_origins: ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"].map(String::from).to_vec(),
            allowed_hosts: Vec::new(),
            shutdown_grace_ms: 10_000,
            upstream: UpstreamConfig::default(),
            policy: PolicyConfig::default(),
            limits: LimitsConfig::default(),
            sessions: SessionsConfig::default(),
            mcp: McpConfig::default(),
            identity: IdentityConfig::default(),
            auth: AuthConfig::default(),
            state: StateConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            url: None,
            spiffe_id: None,
            identity_header: None,
            connect_timeout_ms: 5_000,
            response_header_timeout_ms: 60_000,
            response_body_timeout_ms: UpstreamTimeouts::default().response_body.as_millis() as u64,
            stream_idle_timeout_ms: 0,
            pool_idle_timeout_ms: 90_000,
            pool_max_idle_per_host: 256,
            breaker_failures: BreakerOptions::default().failures,
            breaker_backoff_ms: BreakerOptions::default().backoff.as_millis() as u64,
            breaker_max_backoff_ms: BreakerOptions::default().max_backoff.as_millis() as u64,
            credentials: None,
        }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            dir: None,
            entrypoint: "data.mcp.decision".into(),
            deny_status: 200,
            expose_reasons: false,
            reload_interval_ms: 1_000,
            decision_cache_entries: crate::policy::engine::DEFAULT_CACHE_ENTRIES,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let inspect = InspectLimits::default();
        let listener = ListenerOptions::default();
        let callers = crate::limits::CallerLimits::default();
        LimitsConfig {
            max_body_bytes: inspect.max_body_bytes,
            max_json_depth: inspect.max_depth,
            max_connections: listener.max_connections,
            header_read_timeout_ms: listener.header_read_timeout.as_millis() as u64,
            body_read_timeout_ms: inspect.body_read_timeout.as_millis() as u64,
            max_header_bytes: listener.max_header_bytes,
            max_headers: listener.max_headers,
            h2_max_concurrent_streams: listener.h2_max_concurrent_streams,
            rate_per_caller: callers.rate_per_second,
            rate_burst_per_caller: callers.burst,
            max_streams_per_caller: callers.max_streams,
            max_callers: callers.max_callers,
            rate_scope: "auto".into(),
            rate_on_state_error: "refuse".into(),
            max_answer_bytes: crate::policy::AnswerOptions::default().max_answer_bytes,
        }
    }
}

impl LimitsConfig {
    /// `rate_scope` and `rate_on_state_error`, settled against the state backend.
    fn rate_scope(&self, state_shared: bool) -> Result<crate::limits::RateScope, (&'static str, String)> {
        use crate::limits::{OnStateError, RateScope};
        let on_error = match self.rate_on_state_error.as_str() {
            "refuse" => OnStateError::Refuse,
            "local" => OnStateError::Local,
            other => {
                return Err(("limits.rate_on_state_error", format!("{other:?} must be refuse or local")));
            }
        };
        match (self.rate_scope.as_str(), state_shared) {
            ("replica", _) | ("auto", false) => Ok(RateScope::Replica),
            ("shared" | "auto", true) => Ok(RateScope::Shared { on_error }),
            ("shared", false) => Err((
                "limits.rate_scope",
                "shared needs state.backend redis (the memory backend is per replica)".into(),
            )),
            (other, _) => Err(("limits.rate_scope", format!("{other:?} must be auto, replica or shared"))),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "text".into(),
            level: "info".into(),
            decision_log: String::new(),
            decision_log_arguments: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: PathBuf, source: std::io::Error },
    #[error("{file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("{origin}: key `{key}`: {problem}")]
    Invalid { origin: String, key: &'static str, problem: String },
}

/// Values from the command line (or `MCP_PEP_*`), which win over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub policy_dir: Option<PathBuf>,
    pub admin_listen: Option<String>,
    /// `--issuer URL`: issuers found by OIDC discovery, added to the file's.
    pub issuers: Vec<String>,
    /// `--audience AUD`: replace the file's audiences.
    pub audiences: Vec<String>,
    pub public_url: Option<String>,
}

/// A configuration that has been checked and can be run.
#[derive(Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// `None` when `admin_listen` is empty: no admin listener.
    pub admin_listen: Option<SocketAddr>,
    pub policy_dir: PathBuf,
    pub entrypoint: String,
    /// How often to look for changed policies; `None` when hot reload is off.
    pub policy_reload_interval: Option<Duration>,
    pub policy_cache_entries: usize,
    pub listener: ListenerOptions,
    pub stack: StackConfig,
    /// SPIFFE material and the mTLS listener.
    pub identity: Arc<IdentitySettings>,
    /// The state backend, checked; built by the server (it needs the runtime).
    pub state: StateSettings,
    /// The memory backend's replay cache bounds.
    pub replay: crate::state::ReplayLimits,
    pub log: LogConfig,
}

impl Config {
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(file) = file else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read { file: file.into(), source })?;
        Config::parse(&text).map_err(|message| ConfigError::Parse { file: file.into(), message })
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        yaml_serde::from_str(text).map_err(|e| e.to_string())
    }

    pub fn apply(&mut self, overrides: Overrides) {
        if let Some(v) = overrides.listen {
            self.listen = v;
        }
        if let Some(v) = overrides.upstream {
            self.upstream.url = Some(v);
        }
        if let Some(v) = overrides.policy_dir {
            self.policy.dir = Some(v);
        }
        if let Some(v) = overrides.admin_listen {
            self.admin_listen = v;
        }
        for issuer in overrides.issuers {
            self.auth.issuers.push(IssuerConfig { issuer, jwks_uri: None, jwks_file: None });
        }
        if !overrides.audiences.is_empty() {
            self.auth.audiences = overrides.audiences;
        }
        if let Some(v) = overrides.public_url {
            self.auth.public_url = Some(v);
        }
    }

    /// Checks every key; `origin` names the file (or "defaults") in errors.
    /// `upstream.credentials`, checked.
    fn outbound_settings(
        &self,
        c: &OutboundConfig,
        origin: &str,
    ) -> Result<crate::outbound::OutboundSettings, ConfigError> {
        use crate::outbound::{AssertionSource, OutboundSettings};
        let invalid = |key: &'static str, problem: String| ConfigError::Invalid { origin: origin.into(), key, problem };
        let url_ok = |u: &str| {
            u.parse::<Uri>().is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some())
        };
        if !url_ok(&c.issuer) {
            return Err(invalid(
                "upstream.credentials.issuer",
                format!("{:?} must be the issuer's http(s) URL", c.issuer),
            ));
        }
        let token_endpoint = match &c.token_endpoint {
            None => None,
            Some(t) if url_ok(t) => t.parse::<Uri>().ok(),
            Some(t) => {
                return Err(invalid("upstream.credentials.token_endpoint", format!("{t:?} is not an http(s) URL")));
            }
        };
        if !matches!(c.assertion_type.as_str(), "jwt-spiffe" | "jwt-bearer") {
            return Err(invalid(
                "upstream.credentials.assertion_type",
                format!("{:?} must be jwt-spiffe or jwt-bearer", c.assertion_type),
            ));
        }
        let htu = match c.public_url.as_ref().or(self.upstream.url.as_ref()) {
            Some(u) if url_ok(u) => u.split(['?', '#']).next().unwrap_or(u).to_owned(),
            other => {
                return Err(invalid("upstream.credentials.public_url", format!("{other:?} is not an http(s) URL")));
            }
        };
        let assertion_source = match &c.assertion_file {
            Some(path) => AssertionSource::File(path.clone()),
            None => AssertionSource::WorkloadApi {
                socket: self.identity.workload_api_socket.clone(),
                source: tokio::sync::OnceCell::new(),
            },
        };
        let registration = match &c.registration_endpoint {
            None => None,
            Some(e) if url_ok(e) => Some(crate::outbound::Registration {
                endpoint: e
                    .parse()
                    .map_err(|_| invalid("upstream.credentials.registration_endpoint", format!("{e:?}")))?,
                client_name: c.client_name.clone().unwrap_or_else(|| "mcp-pep-agent".into()),
            }),
            Some(e) => {
                return Err(invalid(
                    "upstream.credentials.registration_endpoint",
                    format!("{e:?} is not an http(s) URL"),
                ));
            }
        };
        Ok(OutboundSettings {
            registration,
            issuer: c.issuer.trim_end_matches('/').to_owned(),
            token_endpoint,
            assertion_type: c.assertion_type.clone(),
            assertion_audience: c
                .assertion_audience
                .clone()
                .unwrap_or_else(|| c.issuer.trim_end_matches('/').to_owned()),
            assertion_source,
            scope: c.scope.clone(),
            audience: c.audience.clone(),
            resource: c.resource.clone(),
            refresh_margin: Duration::from_secs(c.refresh_margin_s),
            htu,
            new_key_per_token: c.new_key_per_token,
        })
    }

    /// `upstream.breaker_*`, checked: a back-off between a millisecond and an hour.
    fn breaker_options(&self) -> Result<BreakerOptions, (&'static str, String)> {
        let u = &self.upstream;
        if u.breaker_failures > 0 {
            if !(1..=3_600_000).contains(&u.breaker_backoff_ms) {
                return Err(("upstream.breaker_backoff_ms", "must be between 1 and 3600000".into()));
            }
            if !(u.breaker_backoff_ms..=3_600_000).contains(&u.breaker_max_backoff_ms) {
                return Err((
                    "upstream.breaker_max_backoff_ms",
                    format!("must be between upstream.breaker_backoff_ms ({}) and 3600000", u.breaker_backoff_ms),
                ));
            }
        }
        Ok(BreakerOptions {
            failures: u.breaker_failures,
            backoff: Duration::from_millis(u.breaker_backoff_ms),
            max_backoff: Duration::from_millis(u.breaker_max_backoff_ms),
        })
    }

    /// The `Host` allowlist: as configured, or the loopback names plus `auth.public_url`'s
    /// host. A listener on a wildcard address with no public URL has no names to derive
    /// (a Service, a pod IP): `None`, not checked, and said so at start.
    fn allowed_hosts(&self, listen: SocketAddr) -> Result<Option<Vec<crate::proxy::host::HostPattern>>, String> {
        use crate::proxy::host::HostPattern;
        if self.allowed_hosts.iter().any(|h| h == "*") {
            return if self.allowed_hosts.len() == 1 { Ok(None) } else { Err("\"*\" stands alone".into()) };
        }
        let mut patterns = self
            .allowed_hosts
            .iter()
            .map(|h| HostPattern::parse(h).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        if !patterns.is_empty() {
            return Ok(Some(patterns));
        }
        let public_host = self
            .auth
            .public_url
            .as_deref()
            .and_then(|u| u.parse::<Uri>().ok())
            .and_then(|u| u.host().map(str::to_owned));
        if listen.ip().is_unspecified() && public_host.is_none() {
            tracing::warn!(%listen, "Host is not checked: set allowed_hosts (or auth.public_url) for DNS rebinding protection");
            return Ok(None);
        }
        patterns.extend(HostPattern::loopback());
        if !listen.ip().is_unspecified() && !listen.ip().is_loopback() {
            let ip = match listen.ip() {
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                v4 => v4.to_string(),
            };
            patterns.push(HostPattern::parse(&ip).map_err(|e| e.to_string())?);
        }
        if let Some(host) = public_host {
            patterns.push(HostPattern::parse(&host).map_err(|e| format!("from auth.public_url: {e}"))?);
        }
        Ok(Some(patterns))
    }

    pub fn validate(&self, origin: &str) -> Result<Settings, ConfigError> {
        let invalid = |key: &'static str, problem: String| ConfigError::Invalid { origin: origin.into(), key, problem };
        let addr = |key, v: &str| {
            v.parse::<SocketAddr>().map_err(|e| invalid(key, format!("{v:?} is not an ADDR:PORT ({e})")))
        };
        let listen = addr("listen", &self.listen)?;
        let admin_listen =
            if self.admin_listen.is_empty() { None } else { Some(addr("admin_listen", &self.admin_listen)?) };
        if !self.mcp_path.starts_with('/') {
            return Err(invalid("mcp_path", format!("{:?} must start with '/'", self.mcp_path)));
        }
        let allowed_hosts = self.allowed_hosts(listen).map_err(|problem| invalid("allowed_hosts", problem))?;
        let url = self
            .upstream
            .url
            .as_deref()
            .ok_or_else(|| invalid("upstream.url", "is required (or --upstream)".into()))?;
        let upstream_url: Uri = url.parse().map_err(|e| invalid("upstream.url", format!("{url:?}: {e}")))?;
        let https = upstream_url.scheme_str() == Some("https");
        if !(https || upstream_url.scheme_str() == Some("http")) || upstream_url.authority().is_none() {
            return Err(invalid("upstream.url", format!("{url:?} must be an absolute http:// or https:// URL")));
        }
        let identity = Arc::new(self.identity.validate().map_err(|e| invalid(e.key, e.problem))?);
        let policy_dir =
            self.policy.dir.clone().ok_or_else(|| invalid("policy.dir", "is required (or --policy-dir)".into()))?;
        if !policy_dir.is_dir() {
            return Err(invalid("policy.dir", format!("{} is not a directory", policy_dir.display())));
        }
        if !self.policy.entrypoint.starts_with("data.") {
            return Err(invalid(
                "policy.entrypoint",
                format!("{:?} must be a rule path like data.mcp.decision", self.policy.entrypoint),
            ));
        }
        let deny_status = StatusCode::from_u16(self.policy.deny_status)
            .ok()
            .filter(|s| s.is_success() || s.is_client_error())
            .ok_or_else(|| {
                invalid("policy.deny_status", format!("{} must be a 2xx or 4xx status", self.policy.deny_status))
            })?;
        // Each look reads every policy file: faster than 10 ms is a busy loop, and a
        // bound keeps `now + interval` from overflowing.
        let policy_reload_interval = match self.policy.reload_interval_ms {
            0 => None,
            ms @ 10..=3_600_000 => Some(Duration::from_millis(ms)),
            ms => {
                return Err(invalid(
                    "policy.reload_interval_ms",
                    format!("{ms} must be 0 (off) or between 10 and 3600000"),
                ));
            }
        };
        for origin_value in &self.allowed_origins {
            let exact = origin_value.strip_suffix(":*").unwrap_or(origin_value);
            let parsed: Option<Uri> = exact.parse().ok();
            let ok = parsed.is_some_and(|u| u.scheme().is_some() && u.authority().is_some() && u.path() == "/");
            if !ok || origin_value.ends_with('/') || origin_value == "*" {
                return Err(invalid(
                    "allowed_origins",
                    format!("{origin_value:?} must be an origin like https://app.example.com"),
                ));
            }
        }
        if self.limits.max_body_bytes == 0 {
            return Err(invalid("limits.max_body_bytes", "must be greater than 0".into()));
        }
        // serde_json stops at 128 levels on its own; a higher limit would be a lie.
        if !(1..=128).contains(&self.limits.max_json_depth) {
            return Err(invalid("limits.max_json_depth", "must be between 1 and 128".into()));
        }
        let upstream_identity_header = match &self.upstream.identity_header {
            None => None,
            Some(name) => {
                let header = http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| invalid("upstream.identity_header", format!("{name:?} is not a header name")))?;
                // Headers the proxy owns or strips may not be repurposed.
                let reserved = ["authorization", "dpop", "cookie", "host", "mcp-session-id", "mcp-protocol-version"];
                if reserved.contains(&header.as_str()) || header.as_str().starts_with("proxy-") {
                    return Err(invalid("upstream.identity_header", format!("{name:?} is reserved")));
                }
                Some(header)
            }
        };
        let sessions = match (&self.sessions, self.sessions.bind) {
            (_, false) => None,
            (s, true) if s.idle_timeout_s == 0 || s.max_sessions == 0 => {
                return Err(invalid("sessions", "idle_timeout_s and max_sessions must be greater than 0".into()));
            }
            (s, true) => Some(crate::mcp::SessionOptions {
                idle_timeout: Duration::from_secs(s.idle_timeout_s),
                max_sessions: s.max_sessions,
            }),
        };
        if self.limits.max_connections == 0 {
            return Err(invalid("limits.max_connections", "must be greater than 0".into()));
        }
        let outbound = match &self.upstream.credentials {
            None => None,
            Some(c) => Some(Arc::new(self.outbound_settings(c, origin)?)),
        };
        let unverified_param_headers = match self.mcp.unverified_param_headers.as_str() {
            "refuse" => crate::mcp::Unverified::Refuse,
            "strip" => crate::mcp::Unverified::Strip,
            other => {
                return Err(invalid("mcp.unverified_param_headers", format!("{other:?} must be refuse or strip")));
            }
        };
        if self.auth.enabled() && identity.jwt_svid.as_ref().is_some_and(|j| j.header == http::header::AUTHORIZATION) {
            return Err(invalid(
                "identity.jwt_svid.header",
                "Authorization carries the access token when auth.issuers is set; use another header".into(),
            ));
        }
        let state = self
            .state
            .validate(Duration::from_secs(self.sessions.idle_timeout_s))
            .map_err(|e| invalid(e.key, e.problem))?;
        // Replicas with a random nonce key each would answer every client that moves to
        // another replica `use_dpop_nonce` again.
        if state.is_shared()
            && self.auth.enabled()
            && self.auth.dpop_nonce
            && self.auth.dpop_nonce_secret_file.is_none()
        {
            return Err(invalid(
                "auth.dpop_nonce_secret_file",
                "is required with auth.dpop_nonce and state.backend redis: replicas must share the nonce key".into(),
            ));
        }
        let rate_scope = self.limits.rate_scope(state.is_shared()).map_err(|(key, problem)| invalid(key, problem))?;
        let auth = if self.auth.enabled() {
            let settings = self.auth.validate().map_err(|e| invalid(e.key, e.problem))?;
            Some(Arc::new(settings))
        } else {
            None
        };
        let upstream_tls = match (&self.upstream.spiffe_id, https) {
            (None, false) => None,
            (None, true) => {
                return Err(invalid(
                    "upstream.spiffe_id",
                    "an https:// upstream needs the tool server's SPIFFE ID".into(),
                ));
            }
            (Some(_), false) => {
                return Err(invalid("upstream.url", "upstream.spiffe_id needs an https:// URL".into()));
            }
            (Some(id), true) => {
                parse_spiffe_id(id, IdentitySource::Mtls)
                    .map_err(|e| invalid("upstream.spiffe_id", format!("{id:?}: {e}")))?;
                if identity.source.is_none() {
                    return Err(invalid("upstream.spiffe_id", "upstream mTLS needs identity.source".into()));
                }
                let config = crate::identity::tls::client_config(identity.store.clone(), id.clone())
                    .map_err(|e| invalid("upstream.spiffe_id", e.to_string()))?;
                Some(config)
            }
        };
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid("log.format", format!("{:?} must be text or json", self.log.format)));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(invalid("log.level", format!("{:?} is not a tracing filter", self.log.level)));
        }
        if !(self.limits.rate_per_caller.is_finite() && self.limits.rate_per_caller >= 0.0) {
            return Err(invalid("limits.rate_per_caller", "must be a number of requests per second, 0 for off".into()));
        }
        let ms = Duration::from_millis;
        let breaker = self.breaker_options().map_err(|(key, problem)| invalid(key, problem))?;
        const DAY_MS: u64 = 86_400_000;
        for (key, value) in [
            ("upstream.response_body_timeout_ms", self.upstream.response_body_timeout_ms),
            ("upstream.stream_idle_timeout_ms", self.upstream.stream_idle_timeout_ms),
        ] {
            if value > DAY_MS {
                return Err(invalid(key, format!("{value} must be at most {DAY_MS} (a day)")));
            }
        }
        for (key, value) in [
            ("upstream.connect_timeout_ms", self.upstream.connect_timeout_ms),
            ("upstream.response_header_timeout_ms", self.upstream.response_header_timeout_ms),
            ("upstream.response_body_timeout_ms", self.upstream.response_body_timeout_ms),
            ("limits.header_read_timeout_ms", self.limits.header_read_timeout_ms),
            ("limits.body_read_timeout_ms", self.limits.body_read_timeout_ms),
            ("limits.max_header_bytes", self.limits.max_header_bytes as u64),
            ("limits.max_headers", self.limits.max_headers as u64),
            ("limits.h2_max_concurrent_streams", u64::from(self.limits.h2_max_concurrent_streams)),
            ("limits.rate_burst_per_caller", u64::from(self.limits.rate_burst_per_caller)),
            ("limits.max_callers", self.limits.max_callers as u64),
            ("limits.max_answer_bytes", self.limits.max_answer_bytes as u64),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0".into()));
            }
        }
        Ok(Settings {
            listen,
            admin_listen,
            policy_dir,
            entrypoint: self.policy.entrypoint.clone(),
            policy_reload_interval,
            policy_cache_entries: self.policy.decision_cache_entries,
            listener: ListenerOptions {
                max_connections: self.limits.max_connections,
                shutdown_grace: ms(self.shutdown_grace_ms),
                header_read_timeout: ms(self.limits.header_read_timeout_ms),
                max_header_bytes: self.limits.max_header_bytes,
                max_headers: self.limits.max_headers,
                h2_max_concurrent_streams: self.limits.h2_max_concurrent_streams,
                connection_errors: Default::default(),
                open_connections: Default::default(),
            },
            stack: StackConfig {
                mcp_path: self.mcp_path.clone(),
                allowed_origins: self.allowed_origins.clone(),
                allowed_hosts,
                identity: identity.clone(),
                limits: InspectLimits {
                    max_body_bytes: self.limits.max_body_bytes,
                    max_depth: self.limits.max_json_depth,
                    body_read_timeout: ms(self.limits.body_read_timeout_ms),
                },
                decision_log: match self.log.decision_log.as_str() {
                    "" => None,
                    target => Some(crate::policy::decision_log::DecisionLogOptions {
                        file: (target != "stdout").then(|| PathBuf::from(target)),
                        arguments: self.log.decision_log_arguments,
                    }),
                },
                caller_limits: crate::limits::CallerLimits {
                    rate_per_second: self.limits.rate_per_caller,
                    burst: self.limits.rate_burst_per_caller,
                    max_streams: self.limits.max_streams_per_caller,
                    max_callers: self.limits.max_callers,
                    rate_scope,
                },
                policy: PolicyOptions { deny_status, expose_reasons: self.policy.expose_reasons },
                upstream_url,
                upstream_timeouts: UpstreamTimeouts {
                    connect: ms(self.upstream.connect_timeout_ms),
                    response_header: ms(self.upstream.response_header_timeout_ms),
                    response_body: ms(self.upstream.response_body_timeout_ms),
                    stream_idle: (self.upstream.stream_idle_timeout_ms > 0)
                        .then(|| ms(self.upstream.stream_idle_timeout_ms)),
                    pool_idle: ms(self.upstream.pool_idle_timeout_ms),
                },
                breaker,
                pool_max_idle_per_host: self.upstream.pool_max_idle_per_host,
                upstream_tls,
                upstream_identity_header,
                sessions,
                auth,
                unverified_param_headers,
                answers: crate::policy::AnswerOptions {
                    max_cache_ttl_ms: self.mcp.max_cache_ttl_ms,
                    max_answer_bytes: self.limits.max_answer_bytes,
                },
                outbound,
            },
            identity,
            state,
            replay: crate::state::ReplayLimits {
                capacity: self.auth.dpop_replay_entries,
                per_key: self.auth.dpop_replay_entries_per_key,
                window_secs: self
                    .auth
                    .proof_lifetime_s
                    .saturating_add(self.auth.clock_skew_s.saturating_mul(2))
                    .saturating_add(1),
            },
            log: self.log.clone(),
        })
    }
}
