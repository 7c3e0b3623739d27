//! A circuit breaker in front of the upstream: after `failures` transport failures in a row
//! (connect refused, DNS, TLS, connect or response-header timeout, a connection dropped
//! before the answer) requests are refused at once for a back-off instead of each waiting
//! for its own failure. When the back-off ends one request goes through as a probe; its
//! answer closes the breaker, its failure opens it again for twice as long (capped),
//! jittered so replicas do not probe in step.
//!
//! An answer with headers, whatever its status, is a success: the tool server is alive.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerOptions {
    /// Consecutive failures that open the breaker; 0: off.
    pub failures: u32,
    /// The first back-off; each failed probe doubles it.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for BreakerOptions {
    fn default() -> Self {
        BreakerOptions { failures: 5, backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(30) }
    }
}

/// What the request that held a [`Permit`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered (headers received).
    Answered,
    /// A transport failure: the upstream is unreachable or hung.
    Failed,
    /// Says nothing about the upstream (no credential, a bad URL).
    Neutral,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// The back-off ended; `probing` while the one probe is under way.
    HalfOpen {
        probing: bool,
    },
}

struct Inner {
    state: State,
    /// The current back-off (before jitter); doubles on each failed probe.
    backoff: Duration,
}

/// Why a request was not let through, for its answer.
#[derive(Debug, Clone, Copy)]
pub struct Refused {
    pub retry_after: Duration,
    pub probing: bool,
}

pub struct Breaker {
    options: BreakerOptions,
    inner: Mutex<Inner>,
    metrics: Arc<Metrics>,
}

/// A request let through; report what it came to with [`Breaker::record`]. A probe
/// dropped unreported (the client went away) frees the probe slot.
pub struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    done: bool,
}

impl Breaker {
    pub fn new(options: BreakerOptions, metrics: Arc<Metrics>) -> Self {
        metrics.upstream_circuit_state.set(0);
        Breaker {
            options,
            inner: Mutex::new(Inner { state: State::Closed { failures: 0 }, backoff: options.backoff }),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves a consistent state: keep going.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lets the request through, or says for how long to wait.
    pub fn admit(&self) -> Result<Permit<'_>, Refused> {
        if self.options.failures == 0 {
            return Ok(Permit { breaker: self, probe: false, done: false });
        }
        let mut inner = self.lock();
        match inner.state {
            State::Closed { .. } => Ok(Permit { breaker: self, probe: false, done: false }),
            State::Open { until } => {
                let now = Instant::now();
                if now < until {
                    return Err(Refused { retry_after: until - now, probing: false });
                }
                inner.state = State::HalfOpen { probing: true };
                drop(inner);
                self.transition("half_open", "back-off over: one probe request goes through");
                Ok(Permit { breaker: self, probe: true, done: false })
            }
            State::HalfOpen { probing: true } => Err(Refused { retry_after: Duration::from_secs(1), probing: true }),
            State::HalfOpen { probing: false } => {
                inner.state = State::HalfOpen { probing: true };
                Ok(Permit { breaker: self, probe: true, done: false })
            }
        }
    }

    /// Reports what a permitted request came to.
    pub fn record(&self, mut permit: Permit<'_>, outcome: Outcome) {
        permit.done = true;
        if self.options.failures == 0 {
            return;
        }
        let mut inner = self.lock();
        match (inner.state, outcome, permit.probe) {
            (_, Outcome::Neutral, true) => inner.state = State::HalfOpen { probing: false },
            (_, Outcome::Neutral, false) => {}
            (State::Closed { .. }, Outcome::Answered, _) => inner.state = State::Closed { failures: 0 },
            (State::Closed { failures }, Outcome::Failed, _) => {
                let failures = failures.saturating_add(1);
                if failures < self.options.failures {
                    inner.state = State::Closed { failures };
                } else {
                    inner.backoff = self.options.backoff;
                    let open_for = jittered(inner.backoff);
                    inner.state = State::Open { until: Instant::now() + open_for };
                    drop(inner);
                    self.transition(
                        "open",
                        &format!("{failures} upstream failures in a row; refusing for {open_for:?}"),
                    );
                }
            }
            (State::HalfOpen { .. }, Outcome::Answered, true) => {
                inner.state = State::Closed { failures: 0 };
                inner.backoff = self.options.backoff;
                drop(inner);
                self.transition("closed", "the probe request was answered");
            }
            (State::HalfOpen { .. }, Outcome::Failed, true) => {
                inner.backoff = (inner.backoff * 2).min(self.options.max_backoff);
                let open_for = jittered(inner.backoff);
                inner.state = State::Open { until: Instant::now() + open_for };
                drop(inner);
                self.transition("open", &format!("the probe request failed; refusing for {open_for:?}"));
            }
            // A request let through before the breaker opened, finishing late: the
            // probe decides, not it.
            _ => {}
        }
    }

    /// `Some(reason)` while requests are being refused (for `/readyz`). A back-off that
    /// is over reads ready: a probe must be able to arrive for the breaker to close.
    pub fn open_reason(&self) -> Option<String> {
        let inner = self.lock();
        match inner.state {
            State::Open { until } => {
                let left = until.saturating_duration_since(Instant::now());
                (!left.is_zero()).then(|| format!("upstream circuit open (refusing for another {}s)", ceil_secs(left)))
            }
            _ => None,
        }
    }

    fn transition(&self, to: &'static str, why: &str) {
        let value = match to {
            "closed" => 0,
            "open" => 1,
            _ => 2,
        };
        self.metrics.upstream_circuit_state.set(value);
        self.metrics.upstream_circuit_transitions.with_label_values(&[to]).inc();
        if to == "open" {
            tracing::warn!(state = to, "upstream circuit breaker: {why}");
        } else {
            tracing::info!(state = to, "upstream circuit breaker: {why}");
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe && !self.done {
            let mut inner = self.breaker.lock();
            if let State::HalfOpen { .. } = inner.state {
                inner.state = State::HalfOpen { probing: false };
            }
        }
    }
}

/// Whole seconds, rounded up, at least 1: `Retry-After`.
pub fn ceil_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// Between half and all of `d` ("equal jitter"): replicas that opened together do not
/// probe together.
fn jittered(d: Duration) -> Duration {
    let mut byte = [0u8; 2];
    let r = aws_lc_rs::rand::fill(&mut byte).map_or(u16::MAX, |()| u16::from_le_bytes(byte));
    let fraction = 0.5 + f64::from(r) / f64::from(u16::MAX) / 2.0;
    d.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures: u32, backoff_ms: u64) -> Breaker {
        let options = BreakerOptions {
            failures,
            backoff: Duration::from_millis(backoff_ms),
            max_backoff: Duration::from_millis(backoff_ms * 4),
        };
        Breaker::new(options, Arc::new(Metrics::new().expect("metrics")))
    }

    fn fail(b: &Breaker) {
        let permit = b.admit().map_err(|_| "refused").expect("admitted");
        b.record(permit, Outcome::Failed);
    }

    #[test]
    fn opens_after_n_consecutive_failures_only() {
        let b = breaker(3, 60_000);
        fail(&b);
        fail(&b);
        // An answer in between starts the count again.
        let permit = b.admit().map_err(|_| "refused").expect("admitted");
        b.record(permit, Outcome::Answered);
        fail(&b);
        fail(&b);
        assert!(b.admit().is_ok(), "two failures since the answer: still closed");
        fail(&b);
        let refused = b.admit().err().expect("open after three in a row");
        assert!(refused.retry_after > Duration::from_secs(29) && refused.retry_after <= Duration::from_secs(60));
        assert!(b.open_reason().is_some());
    }

    #[test]
    fn neutral_outcomes_do_not_count() {
        let b = breaker(1, 60_000);
        for _ in 0..5 {
            let permit = b.admit().map_err(|_| "refused").expect("admitted");
            b.record(permit, Outcome::Neutral);
        }
        assert!(b.admit().is_ok());
    }

    #[test]
    fn one_probe_after_the_backoff_then_closed_or_open_again() {
        let b = breaker(1, 1);
        fail(&b);
        std::thread::sleep(Duration::from_millis(5));
        assert!(b.open_reason().is_none(), "back-off over: ready for a probe");
        let probe = b.admit().map_err(|_| "refused").expect("the probe");
        assert!(b.admit().err().is_some_and(|r| r.probing), "a second request while probing");
        b.record(probe, Outcome::Failed);
        assert!(b.admit().is_err(), "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(10));
        let probe = b.admit().map_err(|_| "refused").expect("the next probe");
        b.record(probe, Outcome::Answered);
        assert!(b.admit().is_ok() && b.admit().is_ok(), "closed");
    }

    #[test]
    fn a_probe_dropped_unreported_frees_the_slot() {
        let b = breaker(1, 1);
        fail(&b);
        std::thread::sleep(Duration::from_millis(5));
        drop(b.admit().map_err(|_| "refused").expect("the probe"));
        assert!(b.admit().is_ok(), "another request may probe");
    }

    #[test]
    fn off_never_refuses() {
        let b = breaker(0, 60_000);
        for _ in 0..10 {
            fail(&b);
        }
        assert!(b.admit().is_ok());
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = breaker(1, 2);
        fail(&b);
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(10));
            let probe = b.admit().map_err(|_| "refused").expect("probe");
            b.record(probe, Outcome::Failed);
        }
        assert_eq!(b.lock().backoff, Duration::from_millis(8), "2 ms doubled, capped at 4x");
    }
}
