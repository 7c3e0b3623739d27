//! Inspection of one typical `tools/call` body: strict JSON parse (duplicate-key and
//! depth checks), JSON-RPC validation, typed McpRequest. Target: ≤ 5 µs per message.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mcp_pep::mcp::jsonrpc::{PostHeaders, parse_body};

const TOOLS_CALL: &str = r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/workspace/src/main.rs","encoding":"utf-8","max_bytes":65536},"_meta":{"progressToken":"p-42"}}}"#;

fn inspect(c: &mut Criterion) {
    let body = Bytes::from_static(TOOLS_CALL.as_bytes());
    let headers = PostHeaders {
        session_id: Some("3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b".into()),
        protocol_version: Some("2025-11-25".into()),
        ..Default::default()
    };
    let mut group = c.benchmark_group("inspect");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("tools_call", |b| {
        b.iter(|| parse_body(body.clone(), headers.clone(), 64).map(|r| r.messages.len()))
    });
    group.finish();
}

criterion_group!(benches, inspect);
criterion_main!(benches);
