//! When requests go out and how their latency is counted.
//!
//! Fixed rate (open loop): request `i` is due at `start + i / rate`, whatever happened to
//! earlier ones. A pacing thread hands out the due times; a free connection takes the next
//! one. A request's latency is counted from its *due* time, not from when a connection got
//! to send it, so a stall delays and counts every request that was due during it
//! (coordinated omission corrected, as wrk2 does). Max throughput (closed loop): every
//! connection sends its next request as soon as the last one is answered.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::{Mutex, mpsc};

/// One request's result: `Err(kind)` names what went wrong (`status_401`, `connect`, …).
pub type Outcome = Result<(), String>;

/// A connection that sends request number `i` and reads its answer to the end.
pub trait Worker: Send + 'static {
    fn call(&mut self, i: u64) -> impl Future<Output = Outcome> + Send;
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Fixed { rate: f64 },
    Max,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    pub warmup: Duration,
    pub duration: Duration,
    /// Fixed rate: how long past the end a backlog is still worked off.
    pub drain: Duration,
}

/// Latencies in nanoseconds, 1 µs to 100 s, three significant digits.
pub fn histogram() -> Histogram<u64> {
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1_000, 100_000_000_000, 3).expect("constant, valid bounds")
}

/// What the workers measured inside the measurement window.
#[derive(Debug)]
pub struct Recorder {
    /// Answered requests (latency from the due time when the rate is fixed).
    pub latency: Histogram<u64>,
    /// How late a request went out after its due time (fixed rate only).
    pub wait: Histogram<u64>,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder { latency: histogram(), wait: histogram(), ok: 0, errors: BTreeMap::new() }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1_000)
}

impl Recorder {
    pub fn record(&mut self, latency: Duration, wait: Duration, outcome: Outcome) {
        match outcome {
            Ok(()) => {
                self.ok += 1;
                self.latency.saturating_record(nanos(latency));
                self.wait.saturating_record(nanos(wait));
            }
            Err(kind) => *self.errors.entry(kind).or_default() += 1,
        }
    }

    pub fn merge(&mut self, other: Recorder) {
        self.latency.add(&other.latency).ok();
        self.wait.add(&other.wait).ok();
        self.ok += other.ok;
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The due time of request `i` at `rate` per second.
pub fn due(start: Instant, rate: f64, i: u64) -> Instant {
    start + Duration::from_secs_f64(i as f64 / rate)
}

/// How many requests are due in `span` at `rate`.
pub fn due_count(rate: f64, span: Duration) -> u64 {
    (rate * span.as_secs_f64()).floor() as u64
}

/// Runs `plan` on `workers` (one connection each). `at_measure` is called when the
/// warm-up ends and the measurement window starts.
pub async fn run<W: Worker>(plan: &Plan, workers: Vec<W>, at_measure: impl FnOnce() + Send + 'static) -> Recorder {
    let start = Instant::now() + Duration::from_millis(5);
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    let marker = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        at_measure();
    });
    let tasks: Vec<_> = match plan.mode {
        Mode::Fixed { rate } => {
            let (tx, rx) = mpsc::unbounded_channel::<(u64, Instant)>();
            let count = due_count(rate, plan.warmup + plan.duration);
            // A thread, not a tokio timer: tokio's timers tick in milliseconds, which would
            // add up to a millisecond to every request at 1 k req/s.
            std::thread::spawn(move || {
                for i in 0..count {
                    let at = due(start, rate, i);
                    let now = Instant::now();
                    if at > now {
                        std::thread::sleep(at - now);
                    }
                    if tx.send((i, at)).is_err() {
                        return;
                    }
                }
            });
            let rx = Arc::new(Mutex::new(rx));
            let give_up = end + plan.drain;
            workers
                .into_iter()
                .map(|mut worker| {
                    let rx = rx.clone();
                    tokio::spawn(async move {
                        let mut rec = Recorder::default();
                        loop {
                            let next = rx.lock().await.recv().await;
                            let Some((i, at)) = next else { break };
                            if Instant::now() > give_up {
                                rec.record(Duration::ZERO, Duration::ZERO, Err("unsent_at_end".into()));
                                continue;
                            }
                            let begun = Instant::now();
                            let outcome = worker.call(i).await;
                            if at >= measure_from {
                                rec.record(Instant::now() - at, begun.saturating_duration_since(at), outcome);
                            }
                        }
                        rec
                    })
                })
                .collect()
        }
        Mode::Max => {
            let next = Arc::new(AtomicU64::new(0));
            workers
                .into_iter()
                .map(|mut worker| {
                    let next = next.clone();
                    tokio::spawn(async move {
                        let mut rec = Recorder::default();
                        tokio::time::sleep_until(start.into()).await;
                        while Instant::now() < end {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let begun = Instant::now();
                            let outcome = worker.call(i).await;
                            if begun >= measure_from {
                                rec.record(begun.elapsed(), Duration::ZERO, outcome);
                            }
                        }
                        rec
                    })
                })
                .collect()
        }
    };
    let mut total = Recorder::default();
    for task in tasks {
        match task.await {
            Ok(rec) => total.merge(rec),
            Err(_) => *total.errors.entry("worker_panicked".into()).or_default() += 1,
        }
    }
    marker.abort();
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_are_evenly_spaced_from_the_start() {
        let start = Instant::now();
        let cases = [(1000.0, 0, 0), (1000.0, 1, 1_000_000), (1000.0, 1500, 1_500_000_000), (250.0, 3, 12_000_000)];
        for (rate, i, want_ns) in cases {
            assert_eq!(due(start, rate, i) - start, Duration::from_nanos(want_ns), "rate {rate}, request {i}");
        }
        assert_eq!(due_count(1000.0, Duration::from_secs(5)), 5000);
        assert_eq!(due_count(333.0, Duration::from_millis(1500)), 499);
    }

    /// Answers at once, except request `stall_at`, which takes `stall`.
    struct Staller {
        stall_at: u64,
        stall: Duration,
    }
    impl Worker for Staller {
        async fn call(&mut self, i: u64) -> Outcome {
            if i == self.stall_at {
                tokio::time::sleep(self.stall).await;
            }
            if i % 100 == 99 { Err("status_503".into()) } else { Ok(()) }
        }
    }

    #[tokio::test]
    async fn a_stall_counts_for_every_request_due_during_it() {
        // 1000 req/s for 0.5 s on one connection; request 10 takes 100 ms. Every request
        // due in those 100 ms waited for it: counted from its due time, ≈ 100 of them
        // are late by 1..100 ms. Counted from when they went out, only one would be.
        let plan = Plan {
            mode: Mode::Fixed { rate: 1000.0 },
            warmup: Duration::ZERO,
            duration: Duration::from_millis(500),
            drain: Duration::from_secs(5),
        };
        let rec = run(&plan, vec![Staller { stall_at: 10, stall: Duration::from_millis(100) }], || {}).await;
        assert_eq!(rec.ok + rec.error_count(), 500, "every due request was sent once");
        assert_eq!(rec.errors.get("status_503"), Some(&5), "errors are counted by kind");
        let late = rec.latency.count_between(10_000_000, u64::MAX);
        assert!((60..=110).contains(&late), "{late} requests ≥ 10 ms late");
        assert!(rec.latency.max() >= 99_000_000, "the stalled request itself: {}", rec.latency.max());
        assert!(rec.wait.value_at_quantile(0.9) >= 10_000_000, "the queue behind the stall is seen as waiting");
    }

    #[tokio::test]
    async fn the_warm_up_is_not_measured() {
        let plan = Plan {
            mode: Mode::Fixed { rate: 1000.0 },
            warmup: Duration::from_millis(200),
            duration: Duration::from_millis(300),
            drain: Duration::from_secs(5),
        };
        let marked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = marked.clone();
        // The stall is in the warm-up: nothing of it reaches the measurement.
        let rec = run(&plan, vec![Staller { stall_at: 10, stall: Duration::from_millis(50) }], move || {
            flag.store(true, Ordering::Relaxed)
        })
        .await;
        assert_eq!(rec.ok + rec.error_count(), 300);
        assert!(rec.latency.max() < 50_000_000, "max {}", rec.latency.max());
        assert!(marked.load(Ordering::Relaxed), "the measurement start was announced");
    }

    struct Slow(Duration);
    impl Worker for Slow {
        async fn call(&mut self, _: u64) -> Outcome {
            tokio::time::sleep(self.0).await;
            Ok(())
        }
    }

    #[tokio::test]
    async fn max_throughput_keeps_every_connection_busy() {
        let plan = Plan {
            mode: Mode::Max,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(300),
            drain: Duration::ZERO,
        };
        let rec = run(&plan, vec![Slow(Duration::from_millis(10)), Slow(Duration::from_millis(10))], || {}).await;
        // Two connections, ≈ 10-11 ms each round trip (tokio's timer): ≈ 2 × 28.
        assert!((20..=62).contains(&rec.ok), "{} requests", rec.ok);
        assert!(rec.latency.value_at_quantile(0.5) >= 10_000_000);
    }
}
