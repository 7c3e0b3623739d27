//! Black-box tests of policy hot reload: a ConfigMap-style directory swapped under a
//! running proxy, with and without load, broken pushes, a start without a policy, and
//! reload turned off.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mcp_pep::config::Config;
use serde_json::{Value, json};
use support::*;
use tokio::task::JoinSet;

/// The reload interval of these tests.
const INTERVAL: Duration = Duration::from_millis(50);
/// How long a push may take to show: many intervals, for slow debug builds on busy CI.
const RELOAD_DEADLINE: Duration = Duration::from_secs(3);

/// Push A: allows every call. Push B: denies every call with the reason `policy B`.
/// Each push is a rule file and a data file that name the same version; rules of one
/// push with data of the other deny with `mixed pushes`, a third answer.
fn push(version: &str) -> Vec<(&'static str, String)> {
    let decision = match version {
        "A" => r#"{"allow": true, "reasons": []}"#,
        _ => r#"{"allow": false, "reasons": ["policy B"]}"#,
    };
    let rules = format!(
        r#"package mcp

import rego.v1

rules_version := "{version}"

default decision := {{"allow": false, "reasons": ["mixed pushes"]}}

decision := {decision} if data.pushed.version == rules_version
"#
    );
    vec![("rules.rego", rules), ("pushed.json", format!(r#"{{"pushed": {{"version": "{version}"}}}}"#))]
}

/// A policy directory laid out as the kubelet lays out a mounted ConfigMap: the files
/// live in `..<timestamp>/`, `..data` points there, and the visible names are symlinks
/// through `..data`.
struct ConfigMapDir {
    root: TempDir,
    version: u32,
}

impl ConfigMapDir {
    fn new(files: &[(&str, String)]) -> ConfigMapDir {
        let mut dir = ConfigMapDir { root: TempDir::new("configmap"), version: 0 };
        dir.publish(files);
        dir
    }

    fn path(&self) -> &Path {
        self.root.path()
    }

    /// Publishes a new version the way the kubelet's atomic writer does.
    fn publish(&mut self, files: &[(&str, String)]) {
        use std::os::unix::fs::symlink;
        let root = self.root.path();
        let old = std::fs::read_link(root.join("..data")).ok();
        self.version += 1;
        let name = format!("..2026_11_23_05_00_00.{:09}", self.version);
        // 1. The new version's files in a new timestamped directory.
        std::fs::create_dir(root.join(&name)).expect("version dir");
        for (file, text) in files {
            std::fs::write(root.join(&name).join(file), text).expect("policy file");
        }
        // 2. `..data_tmp` points at it, 3. and is renamed over `..data`: the atomic swap.
        symlink(&name, root.join("..data_tmp")).expect("..data_tmp");
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("swap ..data");
        // 4. Visible names for new files; names no longer in the push go.
        for (file, _) in files {
            let link = root.join(file);
            if std::fs::symlink_metadata(&link).is_err() {
                symlink(format!("..data/{file}"), link).expect("visible symlink");
            }
        }
        for entry in std::fs::read_dir(root).expect("read configmap dir") {
            let entry = entry.expect("dir entry");
            let visible = entry.file_name().to_string_lossy().into_owned();
            if !visible.starts_with('.') && !files.iter().any(|(f, _)| *f == visible) {
                std::fs::remove_file(entry.path()).expect("remove visible symlink");
            }
        }
        // 5. The old version goes.
        if let Some(old) = old {
            std::fs::remove_dir_all(root.join(old)).expect("remove old version");
        }
    }
}

fn builder(upstream: &TestUpstream) -> ProxyBuilder {
    TestProxy::builder(upstream.url()).configure(|c| {
        c.policy.reload_interval_ms = INTERVAL.as_millis() as u64;
        c.policy.expose_reasons = true;
    })
}

/// `A` (forwarded), `B` (denied by push B), or a summary of the answer when it is neither.
fn classify(reply: &Reply) -> String {
    let body: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    if reply.status == StatusCode::OK && body.get("result").is_some() {
        return "A".into();
    }
    if reply.status == StatusCode::OK && body["error"]["data"]["reasons"] == json!(["policy B"]) {
        return "B".into();
    }
    match body.get("error") {
        // Decision ids differ per answer: leave them out, so alike answers count together.
        Some(error) => format!("{} error {} {}", reply.status, error["code"], error["data"]["reasons"]),
        None => format!("{} {}", reply.status, reply.text()),
    }
}

async fn decision(proxy: &TestProxy) -> String {
    classify(&proxy.post(tools_call(1, "echo"), &[]).await)
}

/// Asks until the proxy answers `want`; every answer before must be `A` or `B`.
async fn wait_for_decision(proxy: &TestProxy, want: &str) {
    let deadline = Instant::now() + RELOAD_DEADLINE;
    loop {
        let got = decision(proxy).await;
        if got == want {
            return;
        }
        assert!(got == "A" || got == "B", "waiting for {want}, got {got}");
        assert!(Instant::now() < deadline, "still {got} after {RELOAD_DEADLINE:?}, expected {want}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn reloads(proxy: &TestProxy, result: &str) -> f64 {
    metric(&proxy.metrics().await, "mcp_pep_policy_reloads_total", &[("result", result)]).unwrap_or(0.0)
}

/// Waits until `mcp_pep_policy_reloads_total{result}` reads `want`.
async fn wait_for_reloads(proxy: &TestProxy, result: &str, want: f64) {
    let deadline = Instant::now() + RELOAD_DEADLINE;
    loop {
        let got = reloads(proxy, result).await;
        if got == want {
            return;
        }
        assert!(got < want, "policy_reloads_total{{result={result}}} is {got}, expected {want}");
        assert!(Instant::now() < deadline, "policy_reloads_total{{result={result}}} still {got}, expected {want}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn configmap_swap_changes_the_decision() {
    let upstream = TestUpstream::json_ok().await;
    let mut dir = ConfigMapDir::new(&push("A"));
    let proxy = builder(&upstream).start_in(dir.path()).await;
    assert_eq!(decision(&proxy).await, "A");

    dir.publish(&push("B"));
    wait_for_decision(&proxy, "B").await;
    wait_for_reloads(&proxy, "ok", 2.0).await;
    assert_eq!(reloads(&proxy, "error").await, 0.0);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_never_mixes_two_pushes() {
    const SWAPS: usize = 6;
    let upstream = TestUpstream::json_ok().await;
    let mut dir = ConfigMapDir::new(&push("A"));
    let proxy = builder(&upstream).start_in(dir.path()).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = JoinSet::new();
    for sender in 0..4_i64 {
        let (stop, url) = (stop.clone(), proxy.url());
        senders.spawn(async move {
            // One client per task: keep-alive connections, as an agent would hold.
            let client = Client::builder(TokioExecutor::new()).build_http::<ReqBody>();
            let mut answers: BTreeMap<String, usize> = BTreeMap::new();
            let mut id = sender * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                let req = post_request(&url, full_body(tools_call(id, "echo")), &[]);
                let answer = match tokio::time::timeout(STEP, client.request(req)).await {
                    Ok(Ok(resp)) => classify(&collect(resp).await),
                    Ok(Err(e)) => format!("no answer: {e}"),
                    Err(_) => format!("no answer within {STEP:?}"),
                };
                *answers.entry(answer).or_default() += 1;
            }
            answers
        });
    }

    for swap in 0..SWAPS {
        let version = if swap % 2 == 0 { "B" } else { "A" };
        dir.publish(&push(version));
        wait_for_decision(&proxy, version).await;
        // Let the senders run a while under this push.
        tokio::time::sleep(INTERVAL).await;
    }
    stop.store(true, Ordering::Relaxed);

    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(joined) = senders.join_next().await {
        for (answer, n) in joined.expect("sender did not panic") {
            *answers.entry(answer).or_default() += n;
        }
    }
    let others: Vec<_> = answers.iter().filter(|(a, _)| *a != "A" && *a != "B").collect();
    assert!(others.is_empty(), "answers that are neither push A's nor push B's: {others:?}");
    assert!(answers.get("A").is_some_and(|n| *n > 0), "push A never answered: {answers:?}");
    assert!(answers.get("B").is_some_and(|n| *n > 0), "push B never answered: {answers:?}");
    // Every push loaded once, none failed (a mixed load would fail or answer `mixed`).
    wait_for_reloads(&proxy, "ok", (1 + SWAPS) as f64).await;
    assert_eq!(reloads(&proxy, "error").await, 0.0);
    proxy.stop().await;
}

#[tokio::test]
async fn broken_push_keeps_the_last_good_policies_until_fixed() {
    let upstream = TestUpstream::json_ok().await;
    let mut dir = ConfigMapDir::new(&push("A"));
    let proxy = builder(&upstream).start_in(dir.path()).await;
    assert_eq!(decision(&proxy).await, "A");

    let mut broken = push("B");
    broken[0].1 = "package mcp\n\nimport rego.v1\n\ndecision := {\"allow\": \n".into();
    dir.publish(&broken);
    wait_for_reloads(&proxy, "error", 1.0).await;
    // Many ticks later: the old decisions, and the broken push counted once.
    for _ in 0..10 {
        assert_eq!(decision(&proxy).await, "A");
        tokio::time::sleep(INTERVAL).await;
    }
    assert_eq!(reloads(&proxy, "error").await, 1.0);
    assert_eq!(reloads(&proxy, "ok").await, 1.0);
    assert_eq!(proxy.admin_get("/readyz").await.status, StatusCode::OK);

    dir.publish(&push("B"));
    wait_for_decision(&proxy, "B").await;
    wait_for_reloads(&proxy, "ok", 2.0).await;
    assert_eq!(reloads(&proxy, "error").await, 1.0);
    proxy.stop().await;
}

#[tokio::test]
async fn bad_data_and_missing_entrypoint_are_failed_reloads_too() {
    let upstream = TestUpstream::json_ok().await;
    let mut dir = ConfigMapDir::new(&push("A"));
    let proxy = builder(&upstream).start_in(dir.path()).await;

    let mut bad_data = push("B");
    bad_data[1].1 = r#"{"pushed": {"version": "B""#.into();
    dir.publish(&bad_data);
    wait_for_reloads(&proxy, "error", 1.0).await;
    assert_eq!(decision(&proxy).await, "A");

    let mut no_entrypoint = push("B");
    no_entrypoint[0].1 = "package other\n\nimport rego.v1\n\nallow := true\n".into();
    dir.publish(&no_entrypoint);
    wait_for_reloads(&proxy, "error", 2.0).await;
    assert_eq!(decision(&proxy).await, "A");

    // The last good content again: nothing to load, and nothing failed.
    dir.publish(&push("A"));
    for _ in 0..5 {
        assert_eq!(decision(&proxy).await, "A");
        tokio::time::sleep(INTERVAL).await;
    }
    assert_eq!(reloads(&proxy, "error").await, 2.0);
    assert_eq!(reloads(&proxy, "ok").await, 1.0);
    proxy.stop().await;
}

#[tokio::test]
async fn first_good_push_makes_a_proxy_started_without_policy_ready() {
    let upstream = TestUpstream::json_ok().await;
    let mut dir = ConfigMapDir::new(&[("rules.rego", "package mcp\n\ndecision := {\n".into())]);
    let proxy = builder(&upstream).start_in(dir.path()).await;
    assert_eq!(proxy.admin_get("/readyz").await.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(proxy.post(tools_call(1, "echo"), &[]).await.status, StatusCode::SERVICE_UNAVAILABLE);

    dir.publish(&push("A"));
    let deadline = Instant::now() + RELOAD_DEADLINE;
    while proxy.admin_get("/readyz").await.status != StatusCode::OK {
        assert!(Instant::now() < deadline, "not ready {RELOAD_DEADLINE:?} after a good push");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(decision(&proxy).await, "A");
    assert_eq!(upstream.wait_for_requests(1).await.len(), 1);
    assert_eq!(reloads(&proxy, "error").await, 1.0);
    assert_eq!(reloads(&proxy, "ok").await, 1.0);
    proxy.stop().await;
}

#[tokio::test]
async fn reload_interval_zero_never_reloads() {
    let upstream = TestUpstream::json_ok().await;
    let mut dir = ConfigMapDir::new(&push("A"));
    let off = builder(&upstream).configure(|c| c.policy.reload_interval_ms = 0).start_in(dir.path()).await;
    // The same directory with reload on shows when the push is visible.
    let on = builder(&upstream).start_in(dir.path()).await;

    dir.publish(&push("B"));
    wait_for_decision(&on, "B").await;
    // Past the default interval too: a 0 taken for "the default" would have reloaded.
    let default = Duration::from_millis(Config::default().policy.reload_interval_ms);
    tokio::time::sleep(default + 10 * INTERVAL).await;
    assert_eq!(decision(&off).await, "A");
    assert_eq!(reloads(&off, "ok").await, 1.0);
    assert_eq!(reloads(&off, "error").await, 0.0);
    off.stop().await;
    on.stop().await;
}

#[test]
fn reload_interval_is_validated() {
    let dir = TempDir::new("reload-config");
    let validate = |ms: u64| {
        let mut config = Config::default();
        config.upstream.url = Some("http://127.0.0.1:1/mcp".into());
        config.policy.dir = Some(dir.path().to_path_buf());
        config.policy.reload_interval_ms = ms;
        config.validate("test")
    };
    assert_eq!(Config::default().policy.reload_interval_ms, 1000);
    assert_eq!(validate(1000).expect("default is valid").policy_reload_interval, Some(Duration::from_secs(1)));
    assert_eq!(validate(0).expect("0 is valid").policy_reload_interval, None);
    assert_eq!(validate(10).expect("10 ms is valid").policy_reload_interval, Some(Duration::from_millis(10)));
    for bad in [1, 9, 3_600_001, u64::MAX] {
        let e = validate(bad).err().unwrap_or_else(|| panic!("{bad} ms accepted"));
        assert!(e.to_string().contains("policy.reload_interval_ms"), "{e}");
    }
    let parsed = Config::parse("policy:\n  reload_interval_ms: 0\n").expect("key parses");
    assert_eq!(parsed.policy.reload_interval_ms, 0);
}

/// The revision in `/readyz` and the one `policy_revision_info` series.
async fn revision(proxy: &TestProxy) -> (String, Vec<String>) {
    let ready = proxy.admin_get("/readyz").await.text();
    let from_readyz = ready.lines().find_map(|l| l.strip_prefix("policy revision: ")).unwrap_or("").to_owned();
    let metrics = proxy.metrics().await;
    let series = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("mcp_pep_policy_revision_info{revision=\""))
        .map(|rest| rest.split('"').next().unwrap_or("").to_owned())
        .collect();
    (from_readyz, series)
}

#[tokio::test]
async fn every_push_has_a_content_revision_in_readyz_and_metrics() {
    let upstream = TestUpstream::json_ok().await;
    let mut dir = ConfigMapDir::new(&push("A"));
    let proxy = builder(&upstream).start_in(dir.path()).await;
    let (a, series) = revision(&proxy).await;
    assert!(a.starts_with("sha256:") && a.len() == 7 + 64, "{a:?}");
    assert_eq!(series, vec![a.clone()]);

    dir.publish(&push("B"));
    wait_for_decision(&proxy, "B").await;
    let (b, series) = revision(&proxy).await;
    assert_ne!(a, b, "another push, the same revision");
    assert_eq!(series, vec![b.clone()], "the old revision is still reported");

    // The same bytes again (a new ConfigMap version, same content): the same revision.
    dir.publish(&push("A"));
    wait_for_decision(&proxy, "A").await;
    assert_eq!(revision(&proxy).await.0, a);
    proxy.stop().await;
}
