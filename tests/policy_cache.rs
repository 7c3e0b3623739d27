//! The decision cache never changes a decision: for the shipped policies and for
//! policies that read what the shipped ones do not (the JSON-RPC id, the session, a
//! computed path), a cached decision equals a fresh evaluation, input after input,
//! including inputs that differ only where some policy looks; and the proxy counts hits.

mod support;

use mcp_pep::demo::session::embedded_policy_set;
use mcp_pep::policy::PolicySet;
use mcp_pep::policy::engine::CacheOutcome;
use mcp_pep::policy::input::InputValue;
use serde_json::{Value, json};

/// A small deterministic generator (xorshift), so a failure names its input.
struct Rng(u64);

impl Rng {
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        &items[(self.0 % items.len() as u64) as usize]
    }
}

fn identity(rng: &mut Rng) -> Value {
    let ids = [
        Some("spiffe://mcp-identity.local/ns/mcp-agents/sa/trusted-agent"),
        Some("spiffe://mcp-identity.local/ns/mcp-agents/sa/semi-trusted-agent"),
        Some("spiffe://mcp-identity.local/ns/mcp-agents/sa/untrusted-agent"),
        Some("spiffe://evil.example/ns/x/sa/y"),
        None,
    ];
    match rng.pick(&ids) {
        None => Value::Null,
        Some(id) => {
            json!({"spiffe_id": id, "trust_domain": "td", "path": "/p", "source": *rng.pick(&["mtls", "local", "jwt-svid"])})
        }
    }
}

/// An input document of contract version 1 with every field varied.
fn input(rng: &mut Rng) -> Value {
    let method = *rng.pick(&["tools/call", "tools/list", "initialize", "prompts/get", "resources/read", "other/x"]);
    let tool = *rng.pick(&["read_file", "write_file", "execute_command", "fetch_url", "query_database", "nope"]);
    let arguments = rng
        .pick(&[
            json!({"path": "/workspace/a.md"}),
            json!({"path": "/workspace/../etc/passwd"}),
            json!({"path": "/etc/passwd"}),
            json!({"url": "https://api.example.com/x"}),
            json!({"url": "http://api.example.com/x"}),
            json!({}),
            Value::Null,
            // Numbers regorus prints alike must not share a key: 1 and 1.0 are told apart.
            json!({"n": 1}),
            json!({"n": 1.0}),
            json!({"n": 0.5}),
            json!({"n": -1}),
        ])
        .clone();
    json!({
        "version": 1,
        "kind": *rng.pick(&["request", "request", "notification", "response", "stream"]),
        "phase": *rng.pick(&["call", "call", "list"]),
        "identity": identity(rng),
        "token": rng.pick(&[Value::Null, json!({"subject": "a", "claims": {"jti": "1"}}), json!({"subject": "b", "claims": {"jti": "2"}})]).clone(),
        "mcp": {
            "method": method,
            "id": *rng.pick(&[1, 2, 3, 4]),
            "tool": if method == "tools/call" { Value::from(tool) } else { Value::Null },
            "prompt": if method == "prompts/get" { Value::from(tool) } else { Value::Null },
            "resource": if method == "resources/read" { Value::from("file:///x") } else { Value::Null },
            "arguments": arguments,
            "is_error": false,
            "batch": false,
            "session_id": *rng.pick(&["s1", "s2"]),
            "protocol_version": "2025-06-18",
        },
        "http": {"method": "POST", "path": "/mcp"},
    })
}

/// `inputs` decided through the cache equal fresh evaluations, and the cache was used.
fn assert_cache_agrees(set: &PolicySet, seed: u64, expect_hits: bool) {
    let mut rng = Rng(seed);
    let mut hits = 0;
    for n in 0..3000 {
        let doc = input(&mut rng);
        let fresh = set.evaluate(regorus::Value::from(doc.clone())).expect("evaluates");
        let (cached, outcome) = set.decide(InputValue::from_json(&doc));
        assert_eq!(cached.expect("evaluates"), fresh, "input {n}: {doc}");
        hits += usize::from(outcome == CacheOutcome::Hit);
    }
    assert_eq!(hits > 0, expect_hits, "{hits} hits");
}

#[test]
fn the_shipped_policies_decide_the_same_through_the_cache() {
    let set = embedded_policy_set().expect("shipped policies");
    assert_cache_agrees(&set, 0x9e37_79b9_7f4a_7c15, true);
}

#[test]
fn a_policy_that_reads_the_id_keeps_decisions_per_id() {
    let rego = r#"package mcp
import rego.v1
default decision := {"allow": false, "reasons": ["odd"]}
decision := {"allow": true, "reasons": []} if input.mcp.id % 2 == 0
"#;
    let set = PolicySet::from_sources(&[("p.rego", rego)], None, "data.mcp.decision").unwrap();
    assert_cache_agrees(&set, 7, true);
}

#[test]
fn a_policy_that_computes_with_argument_numbers_keeps_integers_and_floats_apart() {
    // Exact integer arithmetic tells 1 from 1.0 past 2^53; the cache must too.
    let rego = r#"package mcp
import rego.v1
default decision := {"allow": false, "reasons": ["no"]}
decision := {"allow": true, "reasons": []} if {
    x := input.mcp.arguments.n * 9007199254740993
    x == 9007199254740993
}
"#;
    let set = PolicySet::from_sources(&[("p.rego", rego)], None, "data.mcp.decision").unwrap();
    assert_cache_agrees(&set, 19, true);
}

#[test]
fn policies_reading_through_variables_and_computed_paths_keep_their_decisions() {
    let rego = r#"package mcp
import rego.v1
field := "session_id"
m := input.mcp
default decision := {"allow": false, "reasons": ["no"]}
decision := {"allow": true, "reasons": []} if {
    m[field] == "s1"
    object.get(input, ["token", "claims", "jti"], "0") != "2"
}
"#;
    let set = PolicySet::from_sources(&[("p.rego", rego)], None, "data.mcp.decision").unwrap();
    assert_cache_agrees(&set, 11, true);
}

#[test]
fn a_policy_that_reads_the_whole_input_is_never_cached() {
    let rego = r#"package mcp
import rego.v1
decision := {"allow": count(json.marshal(input)) % 2 == 0, "reasons": []}
"#;
    let set = PolicySet::from_sources(&[("p.rego", rego)], None, "data.mcp.decision").unwrap();
    assert_cache_agrees(&set, 13, false);
}

#[test]
fn a_policy_that_asks_the_clock_is_never_cached() {
    // (This build of regorus has no time builtins: the branch is never taken, but the
    // call alone makes the set uncacheable.)
    let rego = r#"package mcp
import rego.v1
decision := {"allow": false, "reasons": ["late"]} if {
    input.mcp.method == "never"
    time.now_ns() > 0
} else := {"allow": true, "reasons": []}
"#;
    let set = PolicySet::from_sources(&[("p.rego", rego)], None, "data.mcp.decision").unwrap();
    assert!(matches!(set.reads(), mcp_pep::policy::reads::InputReads::Impure(_)));
    assert_cache_agrees(&set, 17, false);
}

/// Through the proxy: the same call under two ids is evaluated once, and counted.
#[tokio::test]
async fn the_proxy_counts_cache_hits_and_misses() {
    let upstream = support::TestUpstream::json_ok().await;
    let proxy = support::TestProxy::builder(upstream.url()).start().await;
    for id in [1, 2] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo"}}}}"#);
        assert_eq!(proxy.post(body, &[]).await.status, 200);
    }
    let text = proxy.metrics().await;
    assert_eq!(support::metric(&text, "mcp_pep_policy_cache_total", &[("result", "miss")]), Some(1.0), "{text}");
    assert_eq!(support::metric(&text, "mcp_pep_policy_cache_total", &[("result", "hit")]), Some(1.0), "{text}");
    proxy.stop().await;
}
