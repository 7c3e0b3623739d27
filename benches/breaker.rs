//! The upstream circuit breaker's cost per request: every forwarded request takes a permit
//! and reports its outcome (two short lock holds), and while open a request is refused
//! without calling the upstream.
//!
//! - `closed`: admit + record an answer, one thread;
//! - `closed_two_threads`: the same from two threads at once (wall time per request), so a
//!   contended lock would show;
//! - `open_refusal`: a request refused while the back-off runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use mcp_pep::metrics::Metrics;
use mcp_pep::proxy::breaker::{Breaker, BreakerOptions, Outcome};

fn breaker(failures: u32) -> Breaker {
    let options =
        BreakerOptions { failures, backoff: Duration::from_secs(3600), max_backoff: Duration::from_secs(3600) };
    Breaker::new(options, Arc::new(Metrics::new().expect("metrics")))
}

fn once(b: &Breaker) -> bool {
    match b.admit() {
        Ok(permit) => {
            b.record(permit, Outcome::Answered);
            true
        }
        Err(_) => false,
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker");
    let closed = breaker(5);
    group.bench_function("closed", |b| b.iter(|| once(&closed)));
    let shared = Arc::new(breaker(5));
    group.bench_function("closed_two_threads", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    let shared = shared.clone();
                    s.spawn(move || (0..iters / 2).filter(|_| once(&shared)).count());
                }
            });
            start.elapsed()
        })
    });
    let open = breaker(1);
    if let Ok(permit) = open.admit() {
        open.record(permit, Outcome::Failed);
    }
    group.bench_function("open_refusal", |b| b.iter(|| once(&open)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
