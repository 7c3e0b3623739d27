//! Sidecar injection: one engine that turns a workload into the same workload with
//! mcp-pep beside it. `mcp-pep inject` (manifests), `mcp-pep webhook` (admission) and the
//! Helm chart (which deploys the webhook) all call [`inject_object`], so they cannot
//! disagree.
//!
//! Injection is idempotent: an object is always uninjected first, so injecting an
//! injected manifest changes nothing, and a changed annotation is applied on the next run.

pub mod manifest;
pub mod patch;
pub mod pod;
pub mod settings;
pub mod webhook;

use std::collections::BTreeMap;

use yaml_serde::{Mapping, Value};

pub use settings::InjectDefaults;

/// Set on an injected pod: the version that injected it.
pub const INJECTED: &str = "mcp-pep.io/injected";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    #[error("unknown annotation {0} (see docs/deployment.md for the mcp-pep.io/* annotations)")]
    UnknownAnnotation(String),
    #[error("annotation {key} {why}")]
    BadAnnotation { key: String, why: String },
    #[error("{0}")]
    Malformed(String),
    #[error("not YAML: {0}")]
    Yaml(String),
}

/// What became of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Injected,
    Uninjected,
    /// A workload left as it is, and why.
    Skipped(String),
    /// Not a kind that runs pods; passed through.
    Other,
}

/// Where a kind keeps its pod template (metadata and spec), as a path of keys.
fn template_path(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Pod" => &[],
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "ReplicationController" | "Job" => {
            &["spec", "template"]
        }
        "CronJob" => &["spec", "jobTemplate", "spec", "template"],
        _ => return None,
    })
}

/// The object's `kind/name`, for reports and errors.
pub fn label(object: &Value) -> String {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("object").to_ascii_lowercase();
    let name =
        object.get("metadata").and_then(|m| m.get("name").or_else(|| m.get("generateName"))).and_then(Value::as_str);
    format!("{kind}/{}", name.unwrap_or("(unnamed)"))
}

fn annotations_of(metadata: Option<&Value>) -> BTreeMap<String, String> {
    let Some(annotations) = metadata.and_then(|m| m.get("annotations")).and_then(Value::as_mapping) else {
        return BTreeMap::new();
    };
    annotations.iter().filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned()))).collect()
}

/// Injects (or, with `uninject`, removes) the sidecar of one object in place.
/// `namespace` is the admission request's, when the object does not say.
pub fn inject_object(
    object: &mut Value,
    defaults: &InjectDefaults,
    namespace: Option<&str>,
    uninject: bool,
) -> Result<Outcome, InjectError> {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
    let Some(path) = template_path(&kind) else { return Ok(Outcome::Other) };
    let namespace = object
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .or(namespace)
        .unwrap_or("default")
        .to_owned();
    // The pod template's annotations win over the workload's own.
    let mut annotations = annotations_of(object.get("metadata"));
    let mut template = &mut *object;
    for key in path {
        template = template.get_mut(*key).ok_or_else(|| InjectError::Malformed(format!("{kind} without {key}")))?;
    }
    let template =
        template.as_mapping_mut().ok_or_else(|| InjectError::Malformed("the pod template is not a mapping".into()))?;
    if !path.is_empty() {
        annotations.extend(annotations_of(template.get("metadata")));
    }
    let (metadata, spec) = split(template)?;
    let service_account = spec.get("serviceAccountName").and_then(Value::as_str).unwrap_or("default").to_owned();
    let settings = settings::pod_settings(&annotations, defaults, &namespace, &service_account);
    // Only what an injection marked is taken out: a container of the user's that happens
    // to be called mcp-pep is theirs, and is refused below, not removed.
    let was_injected = annotations.contains_key(INJECTED);
    if was_injected {
        pod::uninject(metadata, spec, settings.as_ref().ok());
    }
    if uninject {
        return Ok(if was_injected { Outcome::Uninjected } else { Outcome::Skipped("not injected".into()) });
    }
    // Opted out, or on the node's network (loopback would be the whole host's): left
    // without the sidecar, which a previous injection's is taken out of.
    let skip = if annotations.get("mcp-pep.io/inject").map(String::as_str) == Some("disabled") {
        Some("annotation mcp-pep.io/inject: disabled")
    } else if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        Some("hostNetwork pod")
    } else {
        None
    };
    if let Some(why) = skip {
        return Ok(if was_injected { Outcome::Uninjected } else { Outcome::Skipped(why.into()) });
    }
    pod::inject(metadata, spec, &settings?)?;
    Ok(Outcome::Injected)
}

/// The template's `metadata` and `spec`, both mappings (metadata created if absent).
fn split(template: &mut Mapping) -> Result<(&mut Mapping, &mut Mapping), InjectError> {
    if !template.contains_key("metadata") {
        template.insert(Value::from("metadata"), Value::Mapping(Mapping::new()));
    }
    let mut metadata = None;
    let mut spec = None;
    for (key, value) in template.iter_mut() {
        match key.as_str() {
            Some("metadata") => metadata = value.as_mapping_mut(),
            Some("spec") => spec = value.as_mapping_mut(),
            _ => {}
        }
    }
    match (metadata, spec) {
        (Some(m), Some(s)) => Ok((m, s)),
        (None, _) => Err(InjectError::Malformed("metadata is not a mapping".into())),
        (_, None) => Err(InjectError::Malformed("the pod template has no spec".into())),
    }
}
