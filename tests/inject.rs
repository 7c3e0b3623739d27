//! The injection engine through its three doors: `mcp-pep inject` on a manifest of every
//! kind (golden file), idempotence and uninjection, the webhook's JSON patch against the
//! offline result, and every refused input as a case naming its object.

use mcp_pep::inject::manifest::inject_stream;
use mcp_pep::inject::webhook::{WebhookMetrics, review};
use mcp_pep::inject::{InjectDefaults, Outcome};
use serde_json::{Value, json};

const INPUT: &str = include_str!("inject/workloads.yaml");
const GOLDEN: &str = "tests/inject/workloads.injected.yaml";

fn defaults() -> InjectDefaults {
    InjectDefaults { image: "ghcr.io/mcp-pep/mcp-pep:0.1.0".into(), ..InjectDefaults::default() }
}

/// `MCP_PEP_BLESS=1 cargo test --test inject` rewrites the golden file; review the diff.
#[test]
fn every_kind_is_injected_as_the_golden_file_says() {
    let (out, reports) = inject_stream(INPUT, &defaults(), false);
    if std::env::var_os("MCP_PEP_BLESS").is_some() {
        std::fs::write(GOLDEN, &out).unwrap();
    }
    let golden = std::fs::read_to_string(GOLDEN).unwrap();
    assert_eq!(out, golden, "inject output differs from {GOLDEN} (MCP_PEP_BLESS=1 to rewrite)");
    let report: Vec<String> = reports.iter().map(ToString::to_string).collect();
    assert_eq!(
        report,
        [
            "pod/tool-server injected",
            "deployment/agent injected",
            "statefulset/db-tools injected",
            "daemonset/node-agent injected",
            "replicaset/rs-agent injected",
            "job/batch-agent injected",
            "cronjob/nightly-agent injected",
            "pod/listed injected",
            "configmap/kept skipped: not a workload",
            "pod/opted-out skipped: annotation mcp-pep.io/inject: disabled",
            "pod/on-host-network skipped: hostNetwork pod",
            "service/tool-server skipped: not a workload",
        ]
    );
    // What injection must not touch is kept byte for byte, comments included.
    for kept in [
        "# Opted out: left byte for byte.\napiVersion: v1\nkind: Pod\nmetadata: {name: opted-out, annotations: {mcp-pep.io/inject: disabled}}",
        "# Not a workload: left byte for byte.\napiVersion: v1\nkind: Service",
    ] {
        assert!(out.contains(kept), "{kept:?} was rewritten");
    }
}

/// The injected documents, parsed.
fn docs(stream: &str) -> Vec<Value> {
    stream.split("\n---\n").filter_map(|d| yaml_serde::from_str::<Value>(d).ok()).filter(|v| !v.is_null()).collect()
}

#[test]
fn injecting_twice_changes_nothing_and_uninjecting_restores_the_input() {
    let (once, _) = inject_stream(INPUT, &defaults(), false);
    let (twice, _) = inject_stream(&once, &defaults(), false);
    assert_eq!(once, twice, "inject is not idempotent");
    let (back, reports) = inject_stream(&once, &defaults(), true);
    assert!(reports.iter().all(|r| r.outcome.is_ok()));
    assert_eq!(docs(&back), docs(INPUT), "uninject after inject is not the input");
    let (again, _) = inject_stream(&back, &defaults(), true);
    assert_eq!(again, back, "uninjecting an uninjected manifest changed it");
}

#[test]
fn what_the_sidecar_looks_like() {
    let (out, _) = inject_stream(INPUT, &defaults(), false);
    let deployment = &docs(&out)[1];
    let pod = &deployment["spec"]["template"];
    let sidecar = &pod["spec"]["initContainers"][0];
    assert_eq!(sidecar["name"], "mcp-pep", "the sidecar comes first, before the user's init containers");
    assert_eq!(pod["spec"]["initContainers"][1]["name"], "setup");
    assert_eq!(sidecar["restartPolicy"], "Always");
    assert_eq!(sidecar["startupProbe"]["httpGet"]["path"], "/readyz");
    let security = &sidecar["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"][0], "ALL");
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    let volumes = pod["spec"]["volumes"].as_array().unwrap();
    let policies = volumes.iter().find(|v| v["name"] == "mcp-pep-policies").unwrap();
    assert_eq!(policies["configMap"]["name"], "mcp-pep-policies");
    let mounts = sidecar["volumeMounts"].as_array().unwrap();
    assert!(mounts.iter().all(|m| m.get("subPath").is_none()), "a subPath mount never sees a ConfigMap update");
    let csi = volumes.iter().find(|v| v["name"] == "mcp-pep-spiffe").unwrap();
    assert_eq!((csi["csi"]["driver"].as_str(), csi["csi"]["readOnly"].as_bool()), (Some("csi.spiffe.io"), Some(true)));
    // Both app containers are pointed at the sidecar; their own env stays.
    for container in pod["spec"]["containers"].as_array().unwrap() {
        let env = container["env"].as_array().unwrap();
        assert!(env.iter().any(|e| e["name"] == "MCP_SERVER_URL" && e["value"] == "http://127.0.0.1:15001/mcp"));
    }
    assert_eq!(pod["spec"]["containers"][0]["env"][0]["name"], "LOG");
    assert_eq!(pod["metadata"]["annotations"]["prometheus.io/port"], "9090");
    // An app with its own scrape annotations keeps them.
    let cronjob = &docs(&out)[6];
    let annotations = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "false");
    // The generated configuration is one the proxy accepts, and names the pod's identity.
    let config = sidecar["env"][0]["value"].as_str().unwrap();
    let parsed = mcp_pep::config::Config::parse(config).unwrap();
    assert_eq!(
        parsed.identity.local_spiffe_id.as_deref(),
        Some("spiffe://mcp-identity.local/ns/agents/sa/trusted-agent")
    );
}

/// With the webhook's Redis (`--state-redis-url` and its Secrets), the ingress pod's sidecar
/// shares it: the Secrets projected read-only, the config naming their files; egress pods
/// are unchanged; uninjection takes the volume away again.
#[test]
fn ingress_sidecars_get_the_shared_state_and_its_secrets() {
    let with_redis = InjectDefaults {
        state_redis_url: Some("rediss://redis.infra.svc:6380/0".into()),
        state_redis_password_secret: Some("redis-auth".into()),
        state_redis_ca_secret: Some("redis-ca".into()),
        ..defaults()
    };
    let (out, _) = inject_stream(INPUT, &with_redis, false);
    let all = docs(&out);
    let tool_server = &all[0]["spec"];
    assert_eq!(all[0]["metadata"]["annotations"]["mcp-pep.io/mode"], "ingress");
    let volume = tool_server["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "mcp-pep-state").unwrap();
    let sources = volume["projected"]["sources"].as_array().unwrap();
    assert_eq!(sources[0]["secret"]["name"], "redis-auth");
    assert_eq!(sources[0]["secret"]["items"][0], json!({"key": "password", "path": "password"}));
    assert_eq!(sources[1]["secret"]["name"], "redis-ca");
    let sidecar = &tool_server["initContainers"][0];
    let mount = sidecar["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == "mcp-pep-state").unwrap();
    assert_eq!(
        (mount["mountPath"].as_str(), mount["readOnly"].as_bool()),
        (Some("/var/run/secrets/mcp-pep/state"), Some(true))
    );
    let config = mcp_pep::config::Config::parse(sidecar["env"][0]["value"].as_str().unwrap()).unwrap();
    assert_eq!(config.state.backend, "redis");
    assert_eq!(
        config.state.redis.password_file.as_deref(),
        Some(std::path::Path::new("/var/run/secrets/mcp-pep/state/password"))
    );
    // The egress agent keeps its state in memory and gets no Secret.
    let agent = &all[1]["spec"]["template"]["spec"];
    assert!(agent["volumes"].as_array().unwrap().iter().all(|v| v["name"] != "mcp-pep-state"));
    // Idempotent, and uninjection restores the input.
    let (twice, _) = inject_stream(&out, &with_redis, false);
    assert_eq!(out, twice);
    let (back, _) = inject_stream(&out, &with_redis, true);
    assert_eq!(docs(&back), docs(INPUT));
}

/// Each refused input, and what the report must name.
#[test]
fn refused_inputs_name_the_object_and_the_problem() {
    let pod = |annotations: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p, annotations: {{{annotations}}}}}\nspec:\n  containers: [{{name: app, image: x}}]\n{extra}"
        )
    };
    let cases = [
        ("key: [unclosed".to_owned(), "document error: not YAML"),
        (pod("mcp-pep.io/upstrem: http://x/mcp", ""), "pod/p error: unknown annotation mcp-pep.io/upstrem"),
        (pod("mcp-pep.io/mode: egress", ""), "pod/p error: annotation mcp-pep.io/upstream is required"),
        (pod("mcp-pep.io/mode: ingress, mcp-pep.io/port: nope", ""), "pod/p error: annotation mcp-pep.io/port must be a port"),
        (
            pod("mcp-pep.io/mode: ingress", "  initContainers: [{name: mcp-pep, image: other}]"),
            "pod/p error: the pod already has a container named mcp-pep",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {mcp-pep.io/mode: ingress}}\nspec:\n  containers: [{name: mcp-pep, image: x}]\n".to_owned(),
            "pod/p error: the pod already has a container named mcp-pep",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {mcp-pep.io/upstream: \"http://t/mcp\"}}\nspec:\n  containers: [{name: app, image: x, env: [{name: MCP_SERVER_URL, value: \"http://elsewhere/mcp\"}]}]\n".to_owned(),
            "pod/p error: a container already sets MCP_SERVER_URL",
        ),
        ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {}\n".to_owned(), "deployment/d error: Deployment without template"),
    ];
    for (input, want) in cases {
        let (_, reports) = inject_stream(&input, &defaults(), false);
        let text: Vec<String> = reports.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|r| r.starts_with(want)), "{input}\nwant {want:?}, got {text:?}");
    }
}

fn admission(object: &Value) -> Vec<u8> {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": "agents",
                    "operation": "CREATE", "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                    "object": object, "oldObject": null, "dryRun": false}
    })
    .to_string()
    .into_bytes()
}

/// The webhook sees the pods controllers create: every workload's pod template as a Pod.
fn pods_of_input() -> Vec<Value> {
    let mut pods = Vec::new();
    for doc in docs(INPUT) {
        let json: Value = serde_json::to_value(&doc).unwrap();
        let template = match json["kind"].as_str() {
            Some("Pod") => Some(json.clone()),
            Some("CronJob") => Some(json["spec"]["jobTemplate"]["spec"]["template"].clone()),
            Some("List") | Some("Service") | None => None,
            Some(_) => Some(json["spec"]["template"].clone()),
        };
        if let Some(mut pod) = template {
            pod["apiVersion"] = json!("v1");
            pod["kind"] = json!("Pod");
            pod["metadata"]["name"] = json!(format!("{}-abc12", json["metadata"]["name"].as_str().unwrap_or("pod")));
            if let Some(ns) = json["metadata"]["namespace"].as_str() {
                pod["metadata"]["namespace"] = json!(ns);
            }
            pods.push(pod);
        }
    }
    pods
}

#[test]
fn the_webhook_patch_gives_what_offline_injection_gives() {
    let metrics = WebhookMetrics::new().unwrap();
    let mut patched_pods = 0;
    for pod in pods_of_input() {
        let answer = review(&admission(&pod), &defaults(), &metrics).unwrap();
        let response = &answer["response"];
        assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(response["allowed"], true);
        // Offline: the same pod through the engine.
        let mut offline: yaml_serde::Value = yaml_serde::to_value(&pod).unwrap();
        let outcome = mcp_pep::inject::inject_object(&mut offline, &defaults(), Some("agents"), false).unwrap();
        let expected: Value =
            if outcome == Outcome::Injected { serde_json::to_value(&offline).unwrap() } else { pod.clone() };
        let mut patched = pod.clone();
        if let Some(encoded) = response["patch"].as_str() {
            assert_eq!(response["patchType"], "JSONPatch");
            let bytes = data_encoding::BASE64.decode(encoded.as_bytes()).unwrap();
            let ops: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
            json_patch::patch(&mut patched, &ops).unwrap();
            patched_pods += 1;
        }
        assert_eq!(patched, expected, "the webhook's patch for {} differs from inject", pod["metadata"]["name"]);
    }
    assert_eq!(patched_pods, 7, "every workload's pod but the opted-out and host-network ones is patched");
}

#[test]
fn the_webhook_admits_what_it_cannot_inject_with_a_warning_and_refuses_what_it_cannot_read() {
    let metrics = WebhookMetrics::new().unwrap();
    let bad = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": {"mcp-pep.io/typo": "x"}},
                     "spec": {"containers": [{"name": "a", "image": "x"}]}});
    let answer = review(&admission(&bad), &defaults(), &metrics).unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none());
    let warning = answer["response"]["warnings"][0].as_str().unwrap();
    assert!(warning.contains("pod/p") && warning.contains("mcp-pep.io/typo"), "{warning}");
    for (body, why) in [
        (b"not json".to_vec(), "not an AdmissionReview"),
        (
            json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}).to_string().into_bytes(),
            "admission.k8s.io/v1",
        ),
        (
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"object": {}}})
                .to_string()
                .into_bytes(),
            "uid",
        ),
        (
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u"}})
                .to_string()
                .into_bytes(),
            "object",
        ),
    ] {
        let err = review(&body, &defaults(), &metrics).unwrap_err().to_string();
        assert!(err.contains(why), "{err}");
    }
}

/// The command: stdout is the manifest, stderr the report; an error writes no manifest
/// (a half-injected one must not reach `kubectl apply`) and exits 1.
#[test]
fn the_command_reports_on_stderr_and_fails_closed() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let run = |input: &str, args: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-pep"))
            .arg("inject")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let ok = run(INPUT, &["-", "--image", "ghcr.io/mcp-pep/mcp-pep:0.1.0"]);
    assert!(ok.status.success());
    assert_eq!(String::from_utf8_lossy(&ok.stdout), std::fs::read_to_string(GOLDEN).unwrap());
    assert!(String::from_utf8_lossy(&ok.stderr).contains("deployment/agent injected"));
    let bad = run(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {mcp-pep.io/nope: x}}\nspec: {containers: [{name: a, image: x}]}\n",
        &[],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(bad.stdout.is_empty(), "a manifest was written despite the error");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("pod/p error: unknown annotation mcp-pep.io/nope"));
}
