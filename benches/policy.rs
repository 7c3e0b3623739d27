//! Policy decision for one `tools/call` on the shipped policies: input document built
//! from the typed message, evaluated on the per-thread warmed regorus engine.

use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use mcp_pep::context::{IdentitySource, PeerIdentity};
use mcp_pep::demo::session::embedded_policy_set;
use mcp_pep::identity::parse_spiffe_id;
use mcp_pep::mcp::jsonrpc::{PostHeaders, parse_body};
use mcp_pep::policy::input::{self, HttpFacts, Phase};

const TOOLS_CALL: &str = r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/workspace/src/main.rs"}}}"#;

fn policy(c: &mut Criterion) {
    let set = Arc::new(embedded_policy_set().expect("shipped policies compile"));
    let request =
        parse_body(Bytes::from_static(TOOLS_CALL.as_bytes()), PostHeaders::default(), 64).expect("valid body");
    let id = parse_spiffe_id("spiffe://mcp-identity.local/ns/mcp-agents/sa/semi-trusted-agent", IdentitySource::Local)
        .expect("valid SPIFFE ID");
    let identity = PeerIdentity::Spiffe(id);
    let http = HttpFacts { method: "POST", path: "/mcp" };
    let message = &request.messages[0];
    let build = || regorus::Value::from(input::build(message, &request, Some(&identity), http, Phase::Call));
    assert!(set.evaluate(build()).expect("evaluates").allow, "the benchmark measures an allowed call");

    let mut group = c.benchmark_group("policy");
    group.bench_function("build_input", |b| b.iter(build));
    group.bench_function("decision_tools_call", |b| b.iter(|| set.evaluate(build()).map(|d| d.allow)));
    group.finish();
}

criterion_group!(benches, policy);
criterion_main!(benches);
