//! Inspection of one typical `tools/call` body: strict JSON parse (duplicate-key and
//! depth checks), JSON-RPC validation, typed McpRequest. Target: ≤ 5 µs per message.
//! `tools_call_2026` is the same call in MCP 2026-07-28 (`_meta` with capabilities and
//! client info, `Mcp-Method`/`Mcp-Name` checked against the body).
//! `inspect_scaling/*`: the same call with bodies from 1 KiB to 1 MiB, once as one long
//! string argument (a `write_file` content) and once as many small arguments (structure):
//! inspection should grow linearly with the body, not worse.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mcp_pep::mcp::jsonrpc::{PostHeaders, parse_body};

const TOOLS_CALL: &str = r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/workspace/src/main.rs","encoding":"utf-8","max_bytes":65536},"_meta":{"progressToken":"p-42"}}}"#;

const TOOLS_CALL_2026: &str = r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/workspace/src/main.rs","encoding":"utf-8","max_bytes":65536},"_meta":{"progressToken":"p-42","io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{"form":{}},"sampling":{}},"io.modelcontextprotocol/clientInfo":{"name":"agent","version":"2.3.0"}}}}"#;

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
    let modern = Bytes::from_static(TOOLS_CALL_2026.as_bytes());
    let modern_headers = PostHeaders {
        protocol_version: Some("2026-07-28".into()),
        mcp_method: Some("tools/call".into()),
        mcp_name: Some("read_file".into()),
        ..Default::default()
    };
    group.throughput(Throughput::Bytes(modern.len() as u64));
    group.bench_function("tools_call_2026", |b| {
        b.iter(|| parse_body(modern.clone(), modern_headers.clone(), 64).map(|r| r.messages.len()))
    });
    group.finish();
}

/// A `tools/call` of about `size` bytes: one string argument, or `size / 32` small ones.
fn sized_call(size: usize, many_keys: bool) -> Bytes {
    let arguments = if many_keys {
        let fields: Vec<String> = (0..size / 32).map(|i| format!(r#""key_{i:08}":"value-{i:012}""#)).collect();
        format!("{{{}}}", fields.join(","))
    } else {
        format!(r#"{{"path":"/workspace/out.txt","content":"{}"}}"#, "a".repeat(size))
    };
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{{"name":"write_file","arguments":{arguments}}}}}"#
    );
    Bytes::from(body)
}

fn inspect_scaling(c: &mut Criterion) {
    let headers = PostHeaders {
        session_id: Some("3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b".into()),
        protocol_version: Some("2025-11-25".into()),
        ..Default::default()
    };
    let mut group = c.benchmark_group("inspect_scaling");
    for kib in [1, 16, 128, 1024] {
        for (shape, many_keys) in [("string", false), ("keys", true)] {
            let body = sized_call(kib * 1024, many_keys);
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_function(format!("{shape}/{kib}KiB"), |b| {
                b.iter(|| parse_body(body.clone(), headers.clone(), 64).map(|r| r.messages.len()))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, inspect, inspect_scaling);
criterion_main!(benches);
