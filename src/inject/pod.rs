//! The pod spec change itself: what injection adds and uninjection takes away again,
//! on an order-keeping YAML tree (`yaml_serde::Value`), so that a user's keys stay where
//! they wrote them.

use yaml_serde::{Mapping, Value};

use super::InjectError;
use super::settings::{Mode, POLICY_DIR, PodSettings, SPIFFE_DIR, STATE_DIR};

pub const CONTAINER: &str = "mcp-pep";
const POLICY_VOLUME: &str = "mcp-pep-policies";
const SPIFFE_VOLUME: &str = "mcp-pep-spiffe";
const STATE_VOLUME: &str = "mcp-pep-state";
/// distroless `nonroot`.
pub const UID: i64 = 65532;
const SCRAPE: [(&str, &str); 3] =
    [("prometheus.io/scrape", "true"), ("prometheus.io/port", ""), ("prometheus.io/path", "/metrics")];

/// A mapping from `(key, value)` pairs, in order.
fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Mapping(pairs.into_iter().map(|(k, v)| (Value::from(k), v)).collect())
}

fn s(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

/// `map[key]` as a mapping, created when absent.
fn mapping<'a>(map: &'a mut Mapping, key: &str) -> Result<&'a mut Mapping, InjectError> {
    map.entry(Value::from(key))
        .or_insert_with(|| Value::Mapping(Mapping::new()))
        .as_mapping_mut()
        .ok_or_else(|| InjectError::Malformed(format!("{key} is not a mapping")))
}

/// `map[key]` as a sequence, created when absent.
fn sequence<'a>(map: &'a mut Mapping, key: &str) -> Result<&'a mut Vec<Value>, InjectError> {
    map.entry(Value::from(key))
        .or_insert_with(|| Value::Sequence(Vec::new()))
        .as_sequence_mut()
        .ok_or_else(|| InjectError::Malformed(format!("{key} is not a list")))
}

fn named(item: &Value, name: &str) -> bool {
    item.get("name").and_then(Value::as_str) == Some(name)
}

/// The URL the agent is pointed at in egress mode.
fn local_url(settings: &PodSettings) -> String {
    format!("http://127.0.0.1:{}/mcp", settings.port)
}

/// Adds the sidecar to a pod spec that does not have it. `metadata` is the pod's (or
/// pod template's) metadata.
pub fn inject(metadata: &mut Mapping, spec: &mut Mapping, settings: &PodSettings) -> Result<(), InjectError> {
    let containers = spec.get("containers").and_then(Value::as_sequence).map_or(0, Vec::len);
    if containers == 0 {
        return Err(InjectError::Malformed("the pod has no containers".into()));
    }
    let taken =
        |key: &str| spec.get(key).and_then(Value::as_sequence).is_some_and(|c| c.iter().any(|c| named(c, CONTAINER)));
    if taken("containers") || taken("initContainers") {
        return Err(InjectError::Malformed(format!("the pod already has a container named {CONTAINER}")));
    }
    for volume in [POLICY_VOLUME, SPIFFE_VOLUME, STATE_VOLUME] {
        if spec.get("volumes").and_then(Value::as_sequence).is_some_and(|v| v.iter().any(|v| named(v, volume))) {
            return Err(InjectError::Malformed(format!("the pod already has a volume named {volume}")));
        }
    }
    // 1. The agent's MCP URL points at the sidecar (egress).
    if settings.mode == Mode::Egress {
        let url = local_url(settings);
        for container in sequence(spec, "containers")? {
            let container = container
                .as_mapping_mut()
                .ok_or_else(|| InjectError::Malformed("a container is not a mapping".into()))?;
            let env = sequence(container, "env")?;
            match env.iter().find(|e| named(e, &settings.url_env)) {
                Some(existing) if existing.get("value").and_then(Value::as_str) == Some(url.as_str()) => {}
                Some(_) => {
                    return Err(InjectError::Malformed(format!(
                        "a container already sets {}; the sidecar would not be in the path",
                        settings.url_env
                    )));
                }
                None => env.push(map([("name", s(&settings.url_env)), ("value", s(url.clone()))])),
            }
        }
    }
    // 2. The sidecar, first, so the app starts once it is ready (native sidecar).
    sequence(spec, "initContainers")?.insert(0, sidecar(settings));
    // 3. The policies as a directory (hot reload sees the ConfigMap's swap) and the
    //    Workload API socket.
    let volumes = sequence(spec, "volumes")?;
    volumes.push(map([("name", s(POLICY_VOLUME)), ("configMap", map([("name", s(&settings.policy_configmap))]))]));
    volumes.push(map([
        ("name", s(SPIFFE_VOLUME)),
        ("csi", map([("driver", s(&settings.csi_driver)), ("readOnly", Value::Bool(true))])),
    ]));
    //    The Redis password and CA as files, from the pod's namespace (never in the env).
    if let Some(sources) = state_sources(settings) {
        volumes.push(map([
            ("name", s(STATE_VOLUME)),
            ("projected", map([("defaultMode", Value::from(0o440)), ("sources", Value::Sequence(sources))])),
        ]));
    }
    // 4. Scrape annotations, unless the app has its own.
    let annotations = mapping(metadata, "annotations")?;
    if !annotations.keys().any(|k| k.as_str().is_some_and(|k| k.starts_with("prometheus.io/"))) {
        for (key, value) in SCRAPE {
            let value = if value.is_empty() { settings.admin_port.to_string() } else { value.to_owned() };
            annotations.insert(s(key), s(value));
        }
    }
    annotations.insert(s(super::INJECTED), s(env!("CARGO_PKG_VERSION")));
    Ok(())
}

/// Takes away what [`inject`] added; a pod without the sidecar is left as it is.
/// `settings` (from the same annotations) names the URL variable that was added.
pub fn uninject(metadata: &mut Mapping, spec: &mut Mapping, settings: Option<&PodSettings>) {
    let remove_named = |spec: &mut Mapping, key: &str, names: &[&str]| {
        if let Some(items) = spec.get_mut(key).and_then(Value::as_sequence_mut) {
            items.retain(|item| !names.iter().any(|n| named(item, n)));
            if items.is_empty() {
                spec.remove(key);
            }
        }
    };
    remove_named(spec, "initContainers", &[CONTAINER]);
    remove_named(spec, "volumes", &[POLICY_VOLUME, SPIFFE_VOLUME, STATE_VOLUME]);
    if let Some(settings) = settings.filter(|s| s.mode == Mode::Egress) {
        let url = local_url(settings);
        for container in spec.get_mut("containers").and_then(Value::as_sequence_mut).into_iter().flatten() {
            let Some(container) = container.as_mapping_mut() else { continue };
            if let Some(env) = container.get_mut("env").and_then(Value::as_sequence_mut) {
                env.retain(|e| {
                    !(named(e, &settings.url_env) && e.get("value").and_then(Value::as_str) == Some(url.as_str()))
                });
                if env.is_empty() {
                    container.remove("env");
                }
            }
        }
    }
    if let Some(annotations) = metadata.get_mut("annotations").and_then(Value::as_mapping_mut) {
        let ours = settings.map_or_else(|| "9090".to_owned(), |s| s.admin_port.to_string());
        let scrape_is_ours = SCRAPE.iter().all(|(k, v)| {
            let want = if v.is_empty() { ours.as_str() } else { v };
            annotations.get(*k).and_then(Value::as_str) == Some(want)
        });
        if scrape_is_ours {
            for (key, _) in SCRAPE {
                annotations.remove(key);
            }
        }
        annotations.remove(super::INJECTED);
        if annotations.is_empty() {
            metadata.remove("annotations");
        }
    }
}

/// The projected volume's sources for the shared state's Secrets; `None`: nothing to mount.
fn state_sources(settings: &PodSettings) -> Option<Vec<Value>> {
    let state = settings.state.as_ref()?;
    let secret = |name: &str, key: &str| {
        map([(
            "secret",
            map([("name", s(name)), ("items", Value::Sequence(vec![map([("key", s(key)), ("path", s(key))])]))]),
        )])
    };
    let sources: Vec<Value> = [(state.password_secret.as_deref(), "password"), (state.ca_secret.as_deref(), "ca.crt")]
        .into_iter()
        .filter_map(|(name, key)| name.map(|n| secret(n, key)))
        .collect();
    (!sources.is_empty()).then_some(sources)
}

/// The sidecar container.
fn sidecar(settings: &PodSettings) -> Value {
    let probe = |path: &str, failure_threshold: i64| {
        map([
            ("httpGet", map([("path", s(path)), ("port", s("admin"))])),
            ("periodSeconds", Value::from(if path == "/healthz" { 10 } else { 2 })),
            ("failureThreshold", Value::from(failure_threshold)),
        ])
    };
    let [(_, cpu_req), (_, mem_req), (_, cpu_lim), (_, mem_lim)] = &settings.resources;
    let env = vec![
        map([("name", s("MCP_PEP_CONFIG_YAML")), ("value", s(settings.config_yaml()))]),
        map([
            ("name", s("SPIFFE_ENDPOINT_SOCKET")),
            ("value", s(format!("unix://{SPIFFE_DIR}/{}", settings.socket_name))),
        ]),
    ];
    let mut mounts = vec![
        map([("name", s(POLICY_VOLUME)), ("mountPath", s(POLICY_DIR)), ("readOnly", Value::Bool(true))]),
        map([("name", s(SPIFFE_VOLUME)), ("mountPath", s(SPIFFE_DIR)), ("readOnly", Value::Bool(true))]),
    ];
    if state_sources(settings).is_some() {
        mounts.push(map([("name", s(STATE_VOLUME)), ("mountPath", s(STATE_DIR)), ("readOnly", Value::Bool(true))]));
    }
    map([
        ("name", s(CONTAINER)),
        ("image", s(&settings.image)),
        ("args", Value::Sequence(vec![s("run")])),
        ("env", Value::Sequence(env)),
        (
            "ports",
            Value::Sequence(vec![
                map([("name", s("mcp")), ("containerPort", Value::from(settings.port))]),
                map([("name", s("admin")), ("containerPort", Value::from(settings.admin_port))]),
            ]),
        ),
        // Policies loaded and the SVID in: up to 2 minutes (a SPIRE agent may be slow).
        ("startupProbe", probe("/readyz", 60)),
        ("readinessProbe", probe("/readyz", 3)),
        ("livenessProbe", probe("/healthz", 3)),
        (
            "resources",
            map([
                ("requests", map([("cpu", s(cpu_req)), ("memory", s(mem_req))])),
                ("limits", map([("cpu", s(cpu_lim)), ("memory", s(mem_lim))])),
            ]),
        ),
        (
            "securityContext",
            map([
                ("runAsNonRoot", Value::Bool(true)),
                ("runAsUser", Value::from(UID)),
                ("runAsGroup", Value::from(UID)),
                ("readOnlyRootFilesystem", Value::Bool(true)),
                ("allowPrivilegeEscalation", Value::Bool(false)),
                ("capabilities", map([("drop", Value::Sequence(vec![s("ALL")]))])),
                ("seccompProfile", map([("type", s("RuntimeDefault"))])),
            ]),
        ),
        ("volumeMounts", Value::Sequence(mounts)),
        // A native sidecar (KEP-753): runs for the pod's life, started before the app.
        ("restartPolicy", s("Always")),
    ])
}
