//! Policy evaluation on the shipped policies (the `cargo bench` numbers in
//! docs/benchmarks.md):
//! - `decision_tools_call`: the request path — input document built from the typed
//!   message and decided through the decision cache, each call under a new JSON-RPC id
//!   (the shipped policies do not read it, so an agent repeating a call hits);
//! - `decision_tools_call_miss`: the same, each call with new arguments (never cached:
//!   a full evaluation plus the cache's key and insert);
//! - `decision_uncached`: input document evaluated on the per-thread warmed regorus
//!   engine without the cache;
//! - `build_input`: the input document alone;
//! - `fresh_engine`: the same decision on a fresh clone of the template engine;
//! - `list_filter_50_tools`: a 50-tool `tools/list` answer filtered item by item through
//!   the cache (the same caller listing again), and `_uncached`;
//! - `two_threads`: decisions on two threads at once (per decision, wall time), to show
//!   evaluation does not serialise on a lock.
//!
//!
//! `policy_scaling/*` show how a first decision grows with the data (each a full
//! evaluation, no cache): `catalog_tools/N` with N tools in `data.mcp_pep.tools`,
//! `identities/N` with N SPIFFE IDs in `data.mcp_pep.identities`, and
//! `list_filter/N` filtering a `tools/list` answer of N tools (all in the catalog).
//!
//! Before criterion runs, 20 000 single decisions of each kind are timed and p50/p99
//! printed, since criterion reports means and medians of batches, not per-call
//! percentiles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::BatchSize;
use criterion::{Criterion, criterion_group, criterion_main};
use mcp_pep::context::{IdentitySource, JsonRpcId, McpMessage, McpRequest, PeerIdentity};
use mcp_pep::demo::session::{EMBEDDED_DATA, EMBEDDED_POLICIES, embedded_policy_set};
use mcp_pep::identity::parse_spiffe_id;
use mcp_pep::mcp::jsonrpc::{PostHeaders, parse_body};
use mcp_pep::mcp::list::{ListKind, filter_message};
use mcp_pep::policy::PolicySet;
use mcp_pep::policy::input::{self, Caller, HttpFacts, Phase};

// Measured with the allocator the binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TOOLS_CALL: &str = r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/workspace/src/main.rs"}}}"#;
const HTTP: HttpFacts<'static> = HttpFacts { method: "POST", path: "/mcp" };

struct Fixture {
    set: Arc<PolicySet>,
    request: McpRequest,
    identity: PeerIdentity,
}

impl Fixture {
    fn new() -> Self {
        let set = Arc::new(embedded_policy_set().expect("shipped policies compile"));
        let request = parse_body(Bytes::from_static(TOOLS_CALL.as_bytes()), PostHeaders::default(), 64).expect("valid");
        let spiffe_id = "spiffe://mcp-identity.local/ns/mcp-agents/sa/semi-trusted-agent";
        let identity = PeerIdentity::Spiffe(parse_spiffe_id(spiffe_id, IdentitySource::Local).expect("valid"));
        Fixture { set, request, identity }
    }

    fn input(&self) -> regorus::Value {
        input::build_value(&self.request.messages[0], &self.request, self.caller(), HTTP, Phase::Call)
            .expect("builds")
            .value
    }

    fn caller(&self) -> Caller<'_> {
        Caller { identity: Some(&self.identity), token: None }
    }

    fn decide(&self) -> bool {
        self.set.evaluate(self.input()).is_ok_and(|d| d.allow)
    }

    /// The message under JSON-RPC id `n`; with `new_path`, reading another file.
    fn message(&self, n: i64, new_path: bool) -> McpMessage {
        let mut message = self.request.messages[0].clone();
        message.id = Some(JsonRpcId::Number(n));
        if new_path {
            message.arguments = Some(serde_json::json!({"path": format!("/workspace/src/file{n}.rs")}));
        }
        message
    }

    /// The request path: the input document, decided through the cache.
    fn decide_cached(&self, message: &McpMessage) -> bool {
        let doc = input::build_value(message, &self.request, self.caller(), HTTP, Phase::Call).expect("builds");
        self.set.decide(doc).0.is_ok_and(|d| d.allow)
    }
}

/// A `tools/list` answer with 50 tools, 10 of each category of the catalog's tools.
fn fifty_tools() -> String {
    let names = ["read_file", "query_database", "call_api", "execute_command", "fetch_url"];
    let tools: Vec<String> = (0..50)
        .map(|i| {
            format!(
                r#"{{"name":"{}","description":"tool {i}","inputSchema":{{"type":"object","properties":{{"path":{{"type":"string"}}}}}}}}"#,
                names[i % names.len()]
            )
        })
        .collect();
    format!(r#"{{"jsonrpc":"2.0","id":42,"result":{{"tools":[{}],"nextCursor":"page-2"}}}}"#, tools.join(","))
}

fn print_percentiles(fixture: &Fixture) {
    let report = |name: &str, mut samples: Vec<Duration>| {
        samples.sort();
        let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
        eprintln!("policy/{name} single-call latency: p50 {:?}, p99 {:?} ({} calls)", at(0.5), at(0.99), samples.len());
    };
    let timed = |new_path: bool| -> Vec<Duration> {
        (0..20_000)
            .map(|n| {
                let message = fixture.message(1_000 + n, new_path);
                let started = Instant::now();
                std::hint::black_box(fixture.decide_cached(&message));
                started.elapsed()
            })
            .collect()
    };
    report("decision_tools_call", timed(false));
    report("decision_tools_call_miss", timed(true));
    let uncached = (0..20_000)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(fixture.decide());
            started.elapsed()
        })
        .collect();
    report("decision_uncached", uncached);
}

fn policy(c: &mut Criterion) {
    let fixture = Fixture::new();
    assert!(fixture.decide(), "the benchmark measures an allowed call");
    print_percentiles(&fixture);

    let mut group = c.benchmark_group("policy");
    let mut n = 1_000_000;
    for (name, new_path) in [("decision_tools_call", false), ("decision_tools_call_miss", true)] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    n += 1;
                    fixture.message(n, new_path)
                },
                |message| fixture.decide_cached(&message),
                BatchSize::SmallInput,
            )
        });
    }
    group.bench_function("decision_uncached", |b| b.iter(|| fixture.decide()));
    group.bench_function("build_input", |b| b.iter(|| fixture.input()));
    group.bench_function("fresh_engine", |b| b.iter(|| fixture.set.evaluate_fresh(fixture.input()).map(|d| d.allow)));

    let list = fifty_tools();
    let id = JsonRpcId::Number(42);
    let item_input = |name: &str| {
        let mut message = fixture.request.messages[0].clone();
        message.target = Some(name.into());
        message.arguments = None;
        input::build_value(&message, &fixture.request, fixture.caller(), HTTP, Phase::List).expect("builds").value
    };
    let kept = filter_message(&list, &id, ListKind::Tools, |name| {
        fixture.set.evaluate(item_input(name)).is_ok_and(|d| d.allow)
    });
    assert!(kept.expect("filters").is_some_and(|out| out.len() < list.len()), "the list bench removes items");
    group.bench_function("list_filter_50_tools_uncached", |b| {
        b.iter(|| {
            filter_message(&list, &id, ListKind::Tools, |name| {
                fixture.set.evaluate(item_input(name)).is_ok_and(|d| d.allow)
            })
        })
    });
    let item_doc = |name: &str| {
        let mut message = fixture.request.messages[0].clone();
        message.target = Some(name.into());
        message.arguments = None;
        input::build_value(&message, &fixture.request, fixture.caller(), HTTP, Phase::List).expect("builds")
    };
    group.bench_function("list_filter_50_tools", |b| {
        b.iter(|| {
            filter_message(&list, &id, ListKind::Tools, |name| {
                fixture.set.decide(item_doc(name)).0.is_ok_and(|d| d.allow)
            })
        })
    });

    group.bench_function("two_threads", |b| {
        b.iter_custom(|iters| {
            let per_thread = iters.div_ceil(2);
            let started = Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..2 {
                    scope.spawn(|| {
                        for _ in 0..per_thread {
                            std::hint::black_box(fixture.decide());
                        }
                    });
                }
            });
            // Criterion divides by `iters`: wall time per decision across both threads.
            started.elapsed()
        })
    });
    group.finish();
}

/// The shipped policies with `extra_tools` more tools and `extra_ids` more identities
/// in their data (rotating over the catalog's categories and levels).
fn scaled_set(extra_tools: usize, extra_ids: usize) -> PolicySet {
    let mut data: serde_json::Value = serde_json::from_str(EMBEDDED_DATA).expect("catalog.json");
    let kinds =
        [("filesystem", "read"), ("database", "read"), ("api", "read"), ("shell", "execute"), ("network", "read")];
    let tools = data["mcp_pep"]["tools"].as_object_mut().expect("tools");
    for i in 0..extra_tools {
        let (category, operation) = kinds[i % kinds.len()];
        tools.insert(format!("tool_{i:05}"), serde_json::json!({"category": category, "operation": operation}));
    }
    let levels = ["trusted", "semi-trusted", "untrusted"];
    let identities = data["mcp_pep"]["identities"].as_object_mut().expect("identities");
    for i in 0..extra_ids {
        let id = format!("spiffe://mcp-identity.local/ns/tenant-{}/sa/agent-{i:06}", i % 97);
        identities.insert(id, levels[i % levels.len()].into());
    }
    PolicySet::from_sources(EMBEDDED_POLICIES, Some(data), "data.mcp.decision").expect("scaled set compiles")
}

/// A `tools/list` answer naming `n` tools of [`scaled_set`]'s catalog.
fn list_of(n: usize) -> String {
    let tools: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"name":"tool_{i:05}","description":"tool {i}","inputSchema":{{"type":"object"}}}}"#))
        .collect();
    format!(r#"{{"jsonrpc":"2.0","id":42,"result":{{"tools":[{}]}}}}"#, tools.join(","))
}

fn scaling(c: &mut Criterion) {
    let fixture = Fixture::new();
    let mut group = c.benchmark_group("policy_scaling");
    group.sample_size(20).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    let decide = |set: &PolicySet| set.evaluate(fixture.input()).is_ok_and(|d| d.allow);
    for n in [10, 100, 1_000, 10_000] {
        let set = scaled_set(n, 0);
        assert!(decide(&set), "the scaled catalog still allows the call");
        group.bench_function(format!("catalog_tools/{n}"), |b| b.iter(|| decide(&set)));
    }
    for n in [10, 100, 1_000, 10_000, 100_000] {
        let set = scaled_set(0, n);
        assert!(decide(&set), "the scaled identities still allow the call");
        group.bench_function(format!("identities/{n}"), |b| b.iter(|| decide(&set)));
    }
    let id = JsonRpcId::Number(42);
    for n in [10, 100, 1_000] {
        let set = scaled_set(n, 0);
        let list = list_of(n);
        let item_input = |name: &str| {
            let mut message = fixture.request.messages[0].clone();
            message.target = Some(name.into());
            message.arguments = None;
            input::build_value(&message, &fixture.request, fixture.caller(), HTTP, Phase::List).expect("builds").value
        };
        let filter = || {
            filter_message(&list, &id, ListKind::Tools, |name| set.evaluate(item_input(name)).is_ok_and(|d| d.allow))
        };
        assert!(filter().expect("filters").is_some(), "the semi-trusted caller loses the shell and network tools");
        group.bench_function(format!("list_filter/{n}"), |b| b.iter(filter));
    }
    group.finish();
}

criterion_group!(benches, policy, scaling);
criterion_main!(benches);
