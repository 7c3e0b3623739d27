//! `mcp-pep-load` against a real proxy: with every check on (mTLS with the agent's SVID,
//! a DPoP-bound token, a fresh proof per request, the shipped policies) every request is
//! answered 200 and the proxy refuses no proof (none was replayed or stale); a generator
//! sending the wrong credentials reports the refusals and fails `--check`; SSE answers are
//! read to their last event over h2 in the 2026-07-28 era.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use mcp_pep::demo::{DemoServer, ResponseMode};
use serde_json::{Value, json};
use support::*;
use tokio::net::TcpListener;

const PUBLIC_URL: &str = "https://mcp.load.test/mcp";

/// Runs the generator with `args`: its exit status and its JSON line.
async fn load(args: Vec<String>) -> (bool, Value) {
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_mcp-pep-load")).args(&args).output().expect("mcp-pep-load runs")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let json = serde_json::from_str(line)
        .unwrap_or_else(|_| panic!("no JSON line: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), json)
}

/// A demo tool server on an ephemeral port; its URL.
async fn demo_server(server: DemoServer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/mcp", listener.local_addr().expect("addr"));
    tokio::spawn(server.serve(listener, None, std::future::pending()));
    url
}

fn credentials(dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-pep-load"))
        .args(["credentials", "--out"])
        .arg(dir)
        .output()
        .expect("mcp-pep-load runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The shipped policies; `auth:` trusting the generated issuer; mTLS with its CA.
async fn secured_proxy(upstream: String, creds: &Path) -> TestProxy {
    let file = |name: &str| creds.join(name);
    TestProxy::builder(upstream)
        .configure(|c| {
            c.auth.issuers = serde_json::from_value(json!([{
                "issuer": "https://issuer.mcp-pep-load.invalid/realms/agents",
                "jwks_file": file("jwks.json"),
            }]))
            .expect("issuer config");
            c.auth.audiences = vec!["mcp-pep-load".into()];
            c.auth.public_url = Some(PUBLIC_URL.into());
            c.identity.source = "files".into();
            c.identity.files.cert = Some(file("proxy.pem"));
            c.identity.files.key = Some(file("proxy.key"));
            c.identity.files.bundles.insert("mcp-identity.local".into(), file("ca.pem"));
            c.identity.mtls = true;
            c.identity.trust_domains = vec!["mcp-identity.local".into()];
        })
        .start_in(Path::new("policies"))
        .await
}

fn args(list: &[&str], creds: &Path, files: &[(&str, &str)]) -> Vec<String> {
    let mut out: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    for (flag, name) in files {
        out.push(flag.to_string());
        out.push(creds.join(name).display().to_string());
    }
    out
}

/// The agent's mTLS files, its DPoP-bound token and its DPoP key, as generator flags.
const AGENT_DPOP: [(&str, &str); 5] = [
    ("--ca", "ca.pem"),
    ("--cert", "agent.pem"),
    ("--key", "agent.key"),
    ("--token-file", "token-dpop.jwt"),
    ("--dpop-key", "dpop.key"),
];

/// Fresh credentials, a JSON demo tool server and a proxy with every check on in front.
struct Secured {
    _dir: TempDir,
    creds: PathBuf,
    proxy: TestProxy,
    url: String,
}

async fn secured() -> Secured {
    let dir = TempDir::new("load-creds");
    let creds: PathBuf = dir.path().join("c");
    credentials(&creds);
    let upstream = demo_server(DemoServer::new(ResponseMode::Json)).await;
    let proxy = secured_proxy(upstream, &creds).await;
    let url = format!("https://{}/mcp", proxy.mcp_addr);
    Secured { _dir: dir, creds, proxy, url }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_check_on_every_request_is_answered_and_every_proof_accepted() {
    let Secured { _dir, creds, proxy, url } = secured().await;
    let run = [
        "run",
        "--url",
        &url,
        "--htu",
        PUBLIC_URL,
        "--auth",
        "dpop",
        "--rate",
        "200",
        "--duration-s",
        "1",
        "--warmup-s",
        "0.2",
        "--connections",
        "4",
        "--vary-arguments",
        "--arguments",
        r#"{"path":"/workspace/f-{n}.txt"}"#,
        "--check",
    ];
    let (ok, report) = load(args(&run, &creds, &AGENT_DPOP)).await;
    assert!(ok, "--check passed: {report}");
    assert_eq!(report["ok"], 200, "{report}");
    assert_eq!(report["requests"], 200, "{report}");
    assert_eq!(report["errors"], json!({}), "{report}");
    assert_eq!(report["proofs"]["signed_inline"], 0, "the pool was signed ahead: {report}");
    assert_eq!(report["proofs"]["signed_during_run"], 0, "{report}");
    assert_eq!(report["settings"]["mtls"], true);

    let metrics = proxy.metrics().await;
    let refused = metric(&metrics, "mcp_pep_rejections_total", &[]).unwrap_or(0.0);
    assert_eq!(refused, 0.0, "no request (and no proof) refused:\n{metrics}");
    // 200 measured + 40 in the warm-up, each a tools/call with new arguments, each
    // decided (allowed) for the trusted agent the SVID names.
    let allowed = metric(&metrics, "mcp_pep_decisions_total", &[("method", "tools/call"), ("decision", "allow")]);
    assert_eq!(allowed, Some(240.0), "{metrics}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_reported_by_status_and_fail_the_check() {
    let Secured { _dir, creds, proxy, url } = secured().await;
    // 2026-07-28 has no session to open, so every request is measured (10 at 50/s for 0.2 s).
    let refused = |auth: &'static str, files: &[(&str, &str)]| {
        let run = [
            "run",
            "--url",
            &url,
            "--auth",
            auth,
            "--rate",
            "50",
            "--duration-s",
            "0.2",
            "--warmup-s",
            "0",
            "--era",
            "modern",
            "--check",
        ];
        load(args(&run, &creds, files))
    };
    // The DPoP-bound token as a Bearer token, without proofs: the proxy refuses it.
    let (ok, report) = refused("bearer", &AGENT_DPOP[..4]).await;
    assert!(!ok, "--check fails: {report}");
    assert_eq!(report["ok"], 0, "{report}");
    assert_eq!(report["errors"]["status_401"], 10, "{report}");
    // Proofs for another URL than the proxy's public one: refused too.
    let (ok, report) = refused("dpop", &AGENT_DPOP).await;
    assert!(!ok, "--check fails: {report}");
    assert_eq!(report["errors"]["status_401"], 10, "{report}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_answers_are_read_to_the_last_event_over_h2_in_the_2026_era() {
    let url = demo_server(DemoServer::new(ResponseMode::Sse).with_sse_events(100)).await;
    let run = [
        "run",
        "--url",
        &url,
        "--http",
        "2",
        "--era",
        "modern",
        "--duration-s",
        "0.3",
        "--warmup-s",
        "0",
        "--connections",
        "2",
        "--check",
    ];
    let (ok, report) = load(run.iter().map(|s| s.to_string()).collect()).await;
    assert!(ok, "{report}");
    assert!(report["ok"].as_u64().is_some_and(|n| n > 0), "{report}");
    assert_eq!(report["sse_events_per_answer"], 100.0, "{report}");
    assert_eq!(report["settings"]["mode"], "max");
    assert!(report["latency_ms"]["p50"].as_f64().is_some_and(|ms| ms > 0.0), "{report}");
}
