//! The OPA-shaped decision log: one event per decision, in the fields OPA's decision-log
//! pipelines read, traceable to the response and the policy revision, arguments erased.

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::Value;
use support::*;

/// Reads the log until it holds `n` events.
async fn events(path: &std::path::Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + STEP;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> =
            text.lines().map(|l| serde_json::from_str(l).expect("each line is one JSON object")).collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn call_with_secret(id: i64, tool: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"password":"ARG-SECRET"}}}}}}"#
    )
}

#[tokio::test]
async fn decisions_are_opa_decision_log_events() {
    let upstream = TestUpstream::json_ok().await;
    for keep_arguments in [false, true] {
        let dir = TempDir::new("decision-log");
        let path = dir.path().join("decisions.log");
        let proxy = TestProxy::builder(upstream.url())
            .configure(|c| {
                c.log.decision_log = path.display().to_string();
                c.log.decision_log_arguments = keep_arguments;
            })
            .start()
            .await;
        let allowed = proxy.post(call_with_secret(1, "echo"), &[("authorization", "Bearer TOKEN-SECRET")]).await;
        let denied = proxy.post(call_with_secret(2, "forbidden"), &[]).await;
        assert_eq!(allowed.status, StatusCode::OK);
        let ready = proxy.admin_get("/readyz").await.text();
        let revision = ready.lines().find_map(|l| l.strip_prefix("policy revision: ")).unwrap_or("?").to_owned();

        let logged = events(&path, 2).await;
        assert_eq!(logged.len(), 2, "{logged:?}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("TOKEN-SECRET"), "a credential reached the decision log");
        assert_eq!(text.contains("ARG-SECRET"), keep_arguments, "arguments kept: {keep_arguments}: {text}");
        for (event, reply, allow) in [(&logged[0], &allowed, true), (&logged[1], &denied, false)] {
            assert_eq!(event["decision_id"].as_str(), reply.header("mcp-pep-decision-id"), "{event}");
            assert_eq!(event["path"], "mcp/decision");
            assert_eq!(event["result"]["allow"], allow, "{event}");
            assert_eq!(event["bundles"]["policies"]["revision"], revision.as_str());
            assert_eq!(event["input"]["mcp"]["method"], "tools/call", "{event}");
            assert!(event["timestamp"].as_str().is_some_and(|t| t.ends_with('Z') && t.len() == 30), "{event}");
            assert!(event["labels"]["id"].is_string() && event["labels"]["app"] == "mcp-pep");
            assert!(event["metrics"]["timer_rego_query_eval_ns"].as_u64().is_some());
            if keep_arguments {
                assert!(event.get("erased").is_none());
                assert_eq!(event["input"]["mcp"]["arguments"]["password"], "ARG-SECRET");
            } else {
                assert_eq!(event["erased"], serde_json::json!(["/input/mcp/arguments"]), "{event}");
            }
        }
        assert!(logged[1]["result"]["reasons"].as_array().is_some_and(|r| !r.is_empty()));
        proxy.stop().await;
    }
}
