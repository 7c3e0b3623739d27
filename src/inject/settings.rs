//! What one pod asks for: the injector's defaults, overridden by the pod's
//! `mcp-pep.io/*` annotations, checked, and turned into the sidecar's configuration.

use std::collections::BTreeMap;

use super::InjectError;

/// The annotation prefix; every key under it must be one of [`KNOWN`].
pub const PREFIX: &str = "mcp-pep.io/";

/// Every annotation the injector reads (without the prefix), plus the two it writes.
const KNOWN: &[&str] = &[
    "inject",
    "injected",
    "mode",
    "upstream",
    "upstream-spiffe-id",
    "port",
    "app-port",
    "admin-port",
    "url-env",
    "policy-configmap",
    "trust-domain",
    "mtls",
    "issuer",
    "public-url",
    "audience",
    "log-format",
    "log-level",
    "cpu-request",
    "memory-request",
    "cpu-limit",
    "memory-limit",
    "image",
    "token-issuer",
    "token-audience",
    "state",
    "state-key-prefix",
];

/// Defaults for every pod, from the injector's flags (the chart's values).
#[derive(Debug, Clone, clap::Args)]
pub struct InjectDefaults {
    /// The sidecar image.
    #[arg(long, env = "MCP_PEP_INJECT_IMAGE", default_value = concat!("ghcr.io/mcp-pep/mcp-pep:", env!("CARGO_PKG_VERSION")))]
    pub image: String,
    /// The trust domain whose SVIDs are accepted.
    #[arg(long, env = "MCP_PEP_INJECT_TRUST_DOMAIN", default_value = "mcp-identity.local")]
    pub trust_domain: String,
    /// The ConfigMap holding the Rego policies.
    #[arg(long, env = "MCP_PEP_INJECT_POLICY_CONFIGMAP", default_value = "mcp-pep-policies")]
    pub policy_configmap: String,
    /// The SPIFFE CSI driver's name.
    #[arg(long, env = "MCP_PEP_INJECT_CSI_DRIVER", default_value = "csi.spiffe.io")]
    pub csi_driver: String,
    /// The Workload API socket's file name in the CSI volume.
    #[arg(long, env = "MCP_PEP_INJECT_SOCKET_NAME", default_value = "spire-agent.sock")]
    pub socket_name: String,
    /// A token issuer for every sidecar (per pod: `mcp-pep.io/issuer`).
    #[arg(long, env = "MCP_PEP_INJECT_ISSUER")]
    pub issuer: Option<String>,
    /// `json` or `text`.
    #[arg(long, env = "MCP_PEP_INJECT_LOG_FORMAT", default_value = "json")]
    pub log_format: String,
    /// The Redis that ingress sidecars share their DPoP replay cache and sessions in
    /// (`state.backend: redis`; replicas of one tool server behind one Service). Unset:
    /// each sidecar keeps its own, in memory. Per pod: `mcp-pep.io/state: memory` opts out.
    #[arg(long, env = "MCP_PEP_INJECT_STATE_REDIS_URL")]
    pub state_redis_url: Option<String>,
    /// A Secret in each pod's namespace whose key `password` is the Redis AUTH password.
    #[arg(long, env = "MCP_PEP_INJECT_STATE_REDIS_PASSWORD_SECRET")]
    pub state_redis_password_secret: Option<String>,
    /// A Secret in each pod's namespace whose key `ca.crt` is the PEM CA of a rediss:// Redis.
    #[arg(long, env = "MCP_PEP_INJECT_STATE_REDIS_CA_SECRET")]
    pub state_redis_ca_secret: Option<String>,
}

impl Default for InjectDefaults {
    fn default() -> Self {
        InjectDefaults {
            image: concat!("ghcr.io/mcp-pep/mcp-pep:", env!("CARGO_PKG_VERSION")).into(),
            trust_domain: "mcp-identity.local".into(),
            policy_configmap: "mcp-pep-policies".into(),
            csi_driver: "csi.spiffe.io".into(),
            socket_name: "spire-agent.sock".into(),
            issuer: None,
            log_format: "json".into(),
            state_redis_url: None,
            state_redis_password_secret: None,
            state_redis_ca_secret: None,
        }
    }
}

/// Next to an agent or in front of a tool server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// mcp-pep on 127.0.0.1; the agent's MCP URL points at it; upstream is remote.
    Egress,
    /// mcp-pep on the pod's MCP port (mTLS); the tool server on 127.0.0.1.
    Ingress,
}

/// Everything the sidecar of one pod is made from.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSettings {
    pub mode: Mode,
    pub upstream: String,
    pub upstream_spiffe_id: Option<String>,
    pub port: u16,
    pub admin_port: u16,
    pub url_env: String,
    pub policy_configmap: String,
    pub trust_domain: String,
    pub mtls: bool,
    pub issuer: Option<String>,
    pub public_url: Option<String>,
    pub audience: Option<String>,
    /// Egress: obtain the agent's token from this issuer (`upstream.credentials`).
    pub token_issuer: Option<String>,
    pub token_audience: Option<String>,
    pub log_format: String,
    pub log_level: String,
    pub resources: [(&'static str, String); 4],
    pub image: String,
    pub csi_driver: String,
    pub socket_name: String,
    /// The pod's SPIFFE ID under SPIRE's default template (`/ns/<ns>/sa/<sa>`): what
    /// loopback callers (the agent next to it) are.
    pub local_spiffe_id: String,
    /// Shared state on Redis; `None`: in memory.
    pub state: Option<InjectedState>,
}

/// `state.redis` of an injected sidecar: the webhook's Redis, the pod's key prefix, and
/// the Secrets (in the pod's namespace) its password and CA are mounted from.
#[derive(Debug, Clone, PartialEq)]
pub struct InjectedState {
    pub url: String,
    pub key_prefix: String,
    pub password_secret: Option<String>,
    pub ca_secret: Option<String>,
}

/// Reads the pod's annotations (`None` for the prefix's own keys that are not settings).
pub fn pod_settings(
    annotations: &BTreeMap<String, String>,
    defaults: &InjectDefaults,
    namespace: &str,
    service_account: &str,
) -> Result<PodSettings, InjectError> {
    for key in annotations.keys() {
        if let Some(name) = key.strip_prefix(PREFIX)
            && !KNOWN.contains(&name)
        {
            return Err(InjectError::UnknownAnnotation(key.clone()));
        }
    }
    let get = |name: &str| annotations.get(&format!("{PREFIX}{name}")).map(String::as_str);
    let bad = |name: &str, why: &str| InjectError::BadAnnotation { key: format!("{PREFIX}{name}"), why: why.into() };
    let mode = match get("mode").unwrap_or("egress") {
        "egress" => Mode::Egress,
        "ingress" => Mode::Ingress,
        _ => return Err(bad("mode", "must be egress or ingress")),
    };
    let port_of = |name: &str, default: u16| -> Result<u16, InjectError> {
        match get(name) {
            None => Ok(default),
            Some(v) => v.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad(name, "must be a port (1-65535)")),
        }
    };
    let port = port_of("port", if mode == Mode::Egress { 15001 } else { 8443 })?;
    let app_port = port_of("app-port", 8080)?;
    let admin_port = port_of("admin-port", 9090)?;
    if admin_port == port || (mode == Mode::Ingress && (app_port == port || app_port == admin_port)) {
        return Err(bad("port", "the MCP, admin and app ports must differ"));
    }
    let upstream = match (mode, get("upstream")) {
        (_, Some(url)) => url.to_owned(),
        (Mode::Ingress, None) => format!("http://127.0.0.1:{app_port}/mcp"),
        (Mode::Egress, None) => return Err(bad("upstream", "is required in egress mode (the remote tool server)")),
    };
    let parsed: http::Uri = upstream.parse().map_err(|_| bad("upstream", "is not a URL"))?;
    let https = match parsed.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(bad("upstream", "must be http:// or https://")),
    };
    let upstream_spiffe_id = get("upstream-spiffe-id").map(str::to_owned);
    if https != upstream_spiffe_id.is_some() {
        return Err(bad("upstream-spiffe-id", "is required with an https:// upstream, and only then"));
    }
    let mtls = match get("mtls") {
        None => mode == Mode::Ingress,
        Some("true") => true,
        Some("false") => false,
        Some(_) => return Err(bad("mtls", "must be true or false")),
    };
    let log_format = get("log-format").unwrap_or(&defaults.log_format).to_owned();
    if !matches!(log_format.as_str(), "json" | "text") {
        return Err(bad("log-format", "must be json or text"));
    }
    let url_env = get("url-env").unwrap_or("MCP_SERVER_URL").to_owned();
    let env_name_ok = !url_env.is_empty()
        && url_env.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !url_env.as_bytes()[0].is_ascii_digit();
    if !env_name_ok {
        return Err(bad("url-env", "must be an environment variable name"));
    }
    let quantity = |name: &str, default: &str| -> Result<String, InjectError> {
        let v = get(name).unwrap_or(default);
        let ok = !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.');
        if ok { Ok(v.to_owned()) } else { Err(bad(name, "must be a Kubernetes quantity")) }
    };
    let resources = [
        ("cpu-request", quantity("cpu-request", "50m")?),
        ("memory-request", quantity("memory-request", "32Mi")?),
        ("cpu-limit", quantity("cpu-limit", "1")?),
        ("memory-limit", quantity("memory-limit", "128Mi")?),
    ];
    let trust_domain = get("trust-domain").unwrap_or(&defaults.trust_domain).to_owned();
    let issuer = get("issuer").map(str::to_owned).or_else(|| defaults.issuer.clone());
    let public_url = get("public-url").map(str::to_owned);
    if get("token-issuer").is_some_and(|t| !t.starts_with("https://") && !t.starts_with("http://")) {
        return Err(bad("token-issuer", "must be the issuer's URL (the Keycloak realm)"));
    }
    if get("token-issuer").is_some() && mode != Mode::Egress {
        return Err(bad("token-issuer", "is for egress sidecars (next to an agent)"));
    }
    if issuer.is_some() && public_url.is_none() {
        return Err(bad("public-url", "is required with an issuer (the URL agents use: the DPoP htu)"));
    }
    // Replicas of a tool server share state; an egress sidecar serves one agent only.
    let shared = match get("state") {
        None => mode == Mode::Ingress && defaults.state_redis_url.is_some(),
        Some("memory") => false,
        Some("redis") if defaults.state_redis_url.is_some() => true,
        Some("redis") => return Err(bad("state", "redis needs the webhook's --state-redis-url")),
        Some(_) => return Err(bad("state", "must be memory or redis")),
    };
    let key_prefix = get("state-key-prefix").map_or_else(|| format!("mcp-pep:{namespace}:"), str::to_owned);
    if key_prefix.len() > 128 || key_prefix.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err(bad("state-key-prefix", "must be at most 128 bytes without spaces"));
    }
    let state = match (&defaults.state_redis_url, shared) {
        (Some(url), true) => Some(InjectedState {
            url: url.clone(),
            key_prefix,
            password_secret: defaults.state_redis_password_secret.clone(),
            ca_secret: defaults.state_redis_ca_secret.clone(),
        }),
        _ => None,
    };
    Ok(PodSettings {
        mode,
        upstream,
        upstream_spiffe_id,
        port,
        admin_port,
        url_env,
        policy_configmap: get("policy-configmap").unwrap_or(&defaults.policy_configmap).to_owned(),
        local_spiffe_id: format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"),
        trust_domain,
        mtls,
        issuer,
        public_url,
        audience: get("audience").map(str::to_owned),
        token_issuer: get("token-issuer").map(str::to_owned),
        token_audience: get("token-audience").map(str::to_owned),
        log_format,
        log_level: get("log-level").unwrap_or("info").to_owned(),
        resources,
        image: get("image").unwrap_or(&defaults.image).to_owned(),
        csi_driver: defaults.csi_driver.clone(),
        socket_name: defaults.socket_name.clone(),
        state,
    })
}

/// Where the sidecar finds its policies and the Workload API socket.
pub const POLICY_DIR: &str = "/etc/mcp-pep/policies";
pub const SPIFFE_DIR: &str = "/spiffe-workload-api";
/// Where the Redis password and CA are mounted (read-only, from the pod's Secrets).
pub const STATE_DIR: &str = "/var/run/secrets/mcp-pep/state";

impl PodSettings {
    /// The sidecar's configuration file (YAML), carried in `MCP_PEP_CONFIG_YAML`.
    pub fn config_yaml(&self) -> String {
        // `[::]`: the pod's IPv4 and IPv6 addresses (the proxy falls back to 0.0.0.0 where
        // the node has no IPv6); egress stays on the pod's loopback.
        let listen_host = if self.mode == Mode::Egress { "127.0.0.1" } else { "[::]" };
        let mut identity = serde_json::json!({ "source": "workload_api" });
        if self.mtls {
            identity["mtls"] = true.into();
        }
        identity["trust_domains"] = serde_json::json!([self.trust_domain]);
        if self.mode == Mode::Egress {
            // The agent next to the sidecar shares the pod's network namespace and its
            // SPIFFE ID (docs/threat-model.md, the loopback rule).
            identity["local_spiffe_id"] = self.local_spiffe_id.clone().into();
        }
        let mut upstream = serde_json::json!({ "url": self.upstream });
        if let Some(id) = &self.upstream_spiffe_id {
            upstream["spiffe_id"] = id.clone().into();
        }
        if let Some(issuer) = &self.token_issuer {
            // The agent holds nothing: its sidecar gets the token with the pod's JWT-SVID.
            let mut credentials = serde_json::json!({ "issuer": issuer });
            if let Some(audience) = &self.token_audience {
                credentials["audience"] = audience.clone().into();
            }
            upstream["credentials"] = credentials;
        }
        let mut config = serde_json::json!({
            "listen": format!("{listen_host}:{}", self.port),
            // Probes and Prometheus reach the pod's IP.
            "admin_listen": format!("[::]:{}", self.admin_port),
            "upstream": upstream,
            "policy": { "dir": POLICY_DIR },
            "identity": identity,
            "log": { "format": self.log_format, "level": self.log_level },
        });
        if let Some(issuer) = &self.issuer {
            let mut auth = serde_json::json!({ "issuers": [{ "issuer": issuer }], "public_url": self.public_url });
            if let Some(audience) = &self.audience {
                auth["audiences"] = serde_json::json!([audience]);
            }
            config["auth"] = auth;
        }
        if let Some(state) = &self.state {
            let mut redis = serde_json::json!({ "url": state.url, "key_prefix": state.key_prefix });
            if state.password_secret.is_some() {
                redis["password_file"] = format!("{STATE_DIR}/password").into();
            }
            if state.ca_secret.is_some() {
                redis["ca_file"] = format!("{STATE_DIR}/ca.crt").into();
            }
            config["state"] = serde_json::json!({ "backend": "redis", "redis": redis });
        }
        // JSON is YAML; one line keeps the env var readable in `kubectl describe`.
        config.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (format!("{PREFIX}{k}"), (*v).to_owned())).collect()
    }

    fn settings(pairs: &[(&str, &str)]) -> Result<PodSettings, InjectError> {
        pod_settings(&annotations(pairs), &InjectDefaults::default(), "agents", "trusted-agent")
    }

    /// Each refused annotation set, and the key the error names.
    #[test]
    fn bad_annotations_are_errors_naming_the_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("mode", "sideways")], "mode"),
            (&[], "upstream"),
            (&[("upstream", "ftp://x/mcp")], "upstream"),
            (&[("upstream", "https://tools:8443/mcp")], "upstream-spiffe-id"),
            (&[("upstream", "http://tools/mcp"), ("upstream-spiffe-id", "spiffe://td/x")], "upstream-spiffe-id"),
            (&[("mode", "ingress"), ("port", "0")], "port"),
            (&[("mode", "ingress"), ("port", "99999")], "port"),
            (&[("mode", "ingress"), ("port", "8080")], "port"),
            (&[("mode", "ingress"), ("admin-port", "8443")], "port"),
            (&[("mode", "ingress"), ("mtls", "yes")], "mtls"),
            (&[("mode", "ingress"), ("log-format", "xml")], "log-format"),
            (&[("upstream", "http://t/mcp"), ("url-env", "9LIVES")], "url-env"),
            (&[("upstream", "http://t/mcp"), ("url-env", "A-B")], "url-env"),
            (&[("mode", "ingress"), ("cpu-limit", "1; rm -rf")], "cpu-limit"),
            (&[("mode", "ingress"), ("issuer", "https://kc/realms/r")], "public-url"),
            (&[("mode", "ingress"), ("typo", "x")], "typo"),
            (&[("mode", "ingress"), ("token-issuer", "https://kc/realms/r")], "token-issuer"),
            (&[("upstream", "http://t/mcp"), ("token-issuer", "kc")], "token-issuer"),
            (&[("mode", "ingress"), ("state", "redis")], "state"),
            (&[("mode", "ingress"), ("state", "etcd")], "state"),
            (&[("mode", "ingress"), ("state-key-prefix", "a b")], "state-key-prefix"),
        ];
        for (pairs, key) in cases {
            let err = settings(pairs).expect_err(&format!("{pairs:?} was accepted"));
            assert!(err.to_string().contains(&format!("{PREFIX}{key}")), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn defaults_per_mode() {
        let ingress = settings(&[("mode", "ingress")]).unwrap();
        assert_eq!((ingress.port, ingress.admin_port, ingress.mtls), (8443, 9090, true));
        assert_eq!(ingress.upstream, "http://127.0.0.1:8080/mcp");
        // The pod's addresses of both families (an IPv6 pod IP is probed too).
        let config = crate::config::Config::parse(&ingress.config_yaml()).unwrap();
        assert_eq!((config.listen.as_str(), config.admin_listen.as_str()), ("[::]:8443", "[::]:9090"));
        let egress =
            settings(&[("upstream", "https://tools:8443/mcp"), ("upstream-spiffe-id", "spiffe://td/t")]).unwrap();
        assert_eq!((egress.port, egress.mtls), (15001, false));
        assert_eq!(egress.local_spiffe_id, "spiffe://mcp-identity.local/ns/agents/sa/trusted-agent");
    }

    /// The generated configuration is one the proxy accepts.
    #[test]
    fn the_generated_config_parses() {
        for pairs in [
            &[("mode", "ingress"), ("issuer", "https://kc/realms/r"), ("public-url", "https://t/mcp")][..],
            &[("upstream", "https://tools:8443/mcp"), ("upstream-spiffe-id", "spiffe://td/t")][..],
            &[
                ("upstream", "https://tools:8443/mcp"),
                ("upstream-spiffe-id", "spiffe://td/t"),
                ("token-issuer", "https://kc/realms/agents"),
                ("token-audience", "https://tools:8443/mcp"),
            ][..],
        ] {
            let yaml = settings(pairs).unwrap().config_yaml();
            let config = crate::config::Config::parse(&yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
            assert_eq!(config.policy.dir.as_deref(), Some(std::path::Path::new(POLICY_DIR)));
        }
    }

    /// With the webhook's Redis, ingress sidecars share it (their own prefix per
    /// namespace, the password and CA as files); egress sidecars and opted-out pods do not.
    #[test]
    fn ingress_sidecars_share_the_webhooks_redis() {
        let defaults = InjectDefaults {
            state_redis_url: Some("rediss://redis.infra.svc:6380/0".into()),
            state_redis_password_secret: Some("redis-auth".into()),
            state_redis_ca_secret: Some("redis-ca".into()),
            ..InjectDefaults::default()
        };
        let of = |pairs: &[(&str, &str)]| pod_settings(&annotations(pairs), &defaults, "tools", "files").unwrap();
        let ingress = of(&[("mode", "ingress")]);
        let config = crate::config::Config::parse(&ingress.config_yaml()).unwrap();
        assert_eq!(config.state.backend, "redis");
        assert_eq!(config.state.redis.url.as_deref(), Some("rediss://redis.infra.svc:6380/0"));
        assert_eq!(config.state.redis.key_prefix, "mcp-pep:tools:");
        assert_eq!(
            config.state.redis.password_file.as_deref(),
            Some(std::path::Path::new(&format!("{STATE_DIR}/password")))
        );
        assert_eq!(config.state.redis.ca_file.as_deref(), Some(std::path::Path::new(&format!("{STATE_DIR}/ca.crt"))));
        let prefixed = of(&[("mode", "ingress"), ("state-key-prefix", "mcp-pep:files:")]);
        assert_eq!(prefixed.state.unwrap().key_prefix, "mcp-pep:files:");
        assert_eq!(of(&[("mode", "ingress"), ("state", "memory")]).state, None);
        let egress = of(&[("upstream", "http://t/mcp")]);
        assert_eq!(egress.state, None);
        assert!(!egress.config_yaml().contains("state"));
        assert!(of(&[("upstream", "http://t/mcp"), ("state", "redis")]).state.is_some());
        // Without the webhook's Redis nothing changes.
        assert_eq!(settings(&[("mode", "ingress")]).unwrap().state, None);
    }
}
