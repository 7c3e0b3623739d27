//! `inject::webhook::review`: the AdmissionReview the injection webhook is POSTed.
//!
//! Input: the body as received; when it is a JSON object but not an AdmissionReview, it
//! is also reviewed as the `request.object` of one (so that mutations work on pods).
//! - never panics;
//! - refused exactly when an independent reading finds no v1 AdmissionReview with a
//!   string `request.uid` and an object `request.object`;
//! - answered: a v1 AdmissionReview whose response has the request's uid and
//!   `allowed: true`; a patch comes with `patchType: JSONPatch` and is base64 of RFC 6902
//!   operations that json-patch (an independent implementation) applies to
//!   `request.object`, giving what `inject_object` makes of it; no patch with a warning;
//! - the patched object, reviewed again, needs no patch (injection is idempotent).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mcp_pep::inject::webhook::{WebhookMetrics, review};
use mcp_pep::inject::{InjectDefaults, Outcome, inject_object};
use serde_json::{Value, json};

static METRICS: LazyLock<WebhookMetrics> = LazyLock::new(|| WebhookMetrics::new().unwrap());
static DEFAULTS: LazyLock<InjectDefaults> = LazyLock::new(InjectDefaults::default);

fn admission(object: &Value, namespace: Option<&str>) -> Vec<u8> {
    let mut request = json!({"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "object": object});
    if let Some(ns) = namespace {
        request["namespace"] = json!(ns);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}).to_string().into_bytes()
}

/// The object after the answer's patch, if the answer has one.
fn patched(response: &Value, object: &Value) -> Option<Value> {
    let Some(encoded) = response.get("patch") else {
        assert!(response.get("patchType").is_none(), "a patchType without a patch");
        return None;
    };
    assert_eq!(response["patchType"], "JSONPatch");
    assert!(response.get("warnings").is_none(), "a patch and a warning that the pod was not injected");
    let bytes = data_encoding::BASE64
        .decode(encoded.as_str().expect("the patch is a string").as_bytes())
        .expect("the patch is base64");
    let ops: json_patch::Patch = serde_json::from_slice(&bytes).expect("the patch is RFC 6902 operations");
    assert!(!ops.0.is_empty(), "an empty patch was sent");
    let mut doc = object.clone();
    json_patch::patch(&mut doc, &ops).unwrap_or_else(|e| panic!("the patch does not apply to the object: {e}"));
    Some(doc)
}

fn check(body: &[u8]) {
    let answer = review(body, &DEFAULTS, &METRICS);
    // The independent reading of what makes a review answerable.
    let reading = serde_json::from_slice::<Value>(body).ok().filter(|r| {
        r.get("apiVersion") == Some(&json!("admission.k8s.io/v1"))
            && r.get("kind") == Some(&json!("AdmissionReview"))
            && r.pointer("/request/uid").is_some_and(Value::is_string)
            && r.pointer("/request/object").is_some_and(Value::is_object)
    });
    let (answer, reading) = match (answer, reading) {
        (Ok(answer), Some(reading)) => (answer, reading),
        (Err(_), None) => return,
        (Err(e), Some(_)) => panic!("a well-formed AdmissionReview was refused: {e}"),
        (Ok(_), None) => panic!("a body that is no AdmissionReview was answered"),
    };
    let request = &reading["request"];
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    let response = &answer["response"];
    assert_eq!(response["uid"], request["uid"]);
    assert_eq!(response["allowed"], true, "the webhook never denies");

    let object = &request["object"];
    let namespace = request.get("namespace").and_then(Value::as_str);
    let Some(after) = patched(response, object) else { return };
    // What the engine itself makes of the object.
    let mut yaml: yaml_serde::Value = yaml_serde::to_value(object).unwrap();
    let outcome = inject_object(&mut yaml, &DEFAULTS, namespace, false);
    assert!(matches!(outcome, Ok(Outcome::Injected | Outcome::Uninjected)), "patched after {outcome:?}");
    assert_eq!(after, serde_json::to_value(&yaml).unwrap(), "the patched object is not the injected one");

    let again = review(&admission(&after, namespace), &DEFAULTS, &METRICS).expect("the patched pod is a review");
    assert_eq!(patched(&again["response"], &after), None, "injecting the injected object changes it again: {after}");
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Ok(object @ Value::Object(_)) = serde_json::from_slice::<Value>(data)
        && object.get("kind") != Some(&json!("AdmissionReview"))
    {
        check(&admission(&object, None));
        check(&admission(&object, Some("agents")));
    }
});
