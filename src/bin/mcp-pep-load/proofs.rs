//! A pool of DPoP proofs signed ahead of time, so that signing (≈ 20 µs of CPU each)
//! does not compete with the proxy during the measurement. A proof is accepted only for a
//! while after its `iat` (the proxy's window is `proof_lifetime_s + clock_skew_s`, 25 s by
//! default), so proofs older than `max_age` are dropped, and a background thread refills
//! the pool when it runs low. What was signed when is counted, so a report says whether
//! signing happened during the measurement.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Something that makes one fresh proof.
pub trait Sign: Send + Sync + 'static {
    fn sign(&self) -> anyhow::Result<String>;
}

impl Sign for crate::jws::ProofTemplate {
    fn sign(&self) -> anyhow::Result<String> {
        crate::jws::ProofTemplate::sign(self)
    }
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct ProofStats {
    /// Signed before the measurement started.
    pub signed_ahead: u64,
    /// Signed by the refill thread while the measurement ran.
    pub signed_during_run: u64,
    /// Signed on the request path because the pool was empty.
    pub signed_inline: u64,
    /// Dropped unused because they were older than `max_age`.
    pub expired: u64,
}

pub struct ProofPool<S: Sign> {
    signer: S,
    queue: Mutex<VecDeque<(Instant, String)>>,
    /// Pool size after a fill.
    target: usize,
    /// The refill thread fills up when fewer than this are left.
    low: usize,
    max_age: Duration,
    measuring: AtomicBool,
    stop: AtomicBool,
    ahead: AtomicU64,
    during: AtomicU64,
    inline: AtomicU64,
    expired: AtomicU64,
}

impl<S: Sign> ProofPool<S> {
    pub fn new(signer: S, target: usize, max_age: Duration) -> ProofPool<S> {
        let target = target.max(1);
        ProofPool {
            signer,
            queue: Mutex::new(VecDeque::with_capacity(target)),
            target,
            // Low, so that a pool sized for the whole run is not topped up near its end,
            // while the measurement runs.
            low: (target / 10).max(1),
            max_age,
            measuring: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            ahead: AtomicU64::new(0),
            during: AtomicU64::new(0),
            inline: AtomicU64::new(0),
            expired: AtomicU64::new(0),
        }
    }

    fn count_signed(&self) {
        let counter = if self.measuring.load(Ordering::Relaxed) { &self.during } else { &self.ahead };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops proofs older than `max_age` at `now` from the front (the oldest).
    fn drop_expired(&self, queue: &mut VecDeque<(Instant, String)>, now: Instant) {
        while queue.front().is_some_and(|(made, _)| now.saturating_duration_since(*made) > self.max_age) {
            queue.pop_front();
            self.expired.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Signs until the pool holds `target` proofs, at most `target` of them: when signing
    /// them all takes longer than `max_age`, the first expire meanwhile and the pool is
    /// left short (takers then sign inline, which the stats show).
    pub fn fill(&self) -> anyhow::Result<()> {
        let mut budget = self.target;
        loop {
            let missing = {
                let mut queue = self.queue.lock().map_err(|_| anyhow::anyhow!("proof pool poisoned"))?;
                self.drop_expired(&mut queue, Instant::now());
                self.target.saturating_sub(queue.len()).min(budget)
            };
            if missing == 0 {
                return Ok(());
            }
            budget -= missing.min(256);
            // Sign outside the lock, in batches, so takers are not held up.
            let batch: Vec<(Instant, String)> = (0..missing.min(256))
                .map(|_| self.signer.sign().map(|p| (Instant::now(), p)))
                .collect::<anyhow::Result<_>>()?;
            for _ in &batch {
                self.count_signed();
            }
            self.queue.lock().map_err(|_| anyhow::anyhow!("proof pool poisoned"))?.extend(batch);
        }
    }

    /// The oldest proof still fresh; signed here if the pool ran dry.
    pub fn take(&self) -> anyhow::Result<String> {
        if let Ok(mut queue) = self.queue.lock() {
            self.drop_expired(&mut queue, Instant::now());
            if let Some((_, proof)) = queue.pop_front() {
                return Ok(proof);
            }
        }
        self.inline.fetch_add(1, Ordering::Relaxed);
        self.signer.sign()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.queue.lock().map_or(0, |q| q.len())
    }

    /// From now on signing counts as `signed_during_run`.
    pub fn start_measuring(&self) {
        self.measuring.store(true, Ordering::Relaxed);
    }

    pub fn stats(&self) -> ProofStats {
        ProofStats {
            signed_ahead: self.ahead.load(Ordering::Relaxed),
            signed_during_run: self.during.load(Ordering::Relaxed),
            signed_inline: self.inline.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
        }
    }

    /// One refill check: drop what expired (or is about to, within `horizon`), and fill
    /// up when fewer than `low` fresh proofs are left. Returns whether it signed.
    pub fn refill_once(&self, horizon: Duration) -> anyhow::Result<bool> {
        let needs = {
            let mut queue = self.queue.lock().map_err(|_| anyhow::anyhow!("proof pool poisoned"))?;
            self.drop_expired(&mut queue, Instant::now() + horizon);
            queue.len() < self.low
        };
        if needs {
            self.fill()?;
        }
        Ok(needs)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The refill thread: checks every `period` until [`ProofPool::stop`].
pub fn spawn_refill<S: Sign>(pool: Arc<ProofPool<S>>, period: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !pool.stop.load(Ordering::Relaxed) {
            if let Err(e) = pool.refill_once(period * 2) {
                eprintln!("mcp-pep-load: proof refill failed: {e:#}");
                return;
            }
            std::thread::sleep(period);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbered "proofs", so a test can see which one it got.
    struct Counter(AtomicU64);
    impl Sign for Counter {
        fn sign(&self) -> anyhow::Result<String> {
            Ok(format!("p{}", self.0.fetch_add(1, Ordering::Relaxed)))
        }
    }

    fn pool(target: usize, max_age: Duration) -> ProofPool<Counter> {
        ProofPool::new(Counter(AtomicU64::new(0)), target, max_age)
    }

    #[test]
    fn fills_ahead_and_hands_out_each_proof_once_oldest_first() {
        let pool = pool(8, Duration::from_secs(20));
        pool.fill().expect("fill");
        assert_eq!(pool.len(), 8);
        pool.start_measuring();
        let taken: Vec<String> = (0..8).map(|_| pool.take().expect("proof")).collect();
        assert_eq!(taken, (0..8).map(|i| format!("p{i}")).collect::<Vec<_>>());
        // Empty: the next one is signed inline, and counted as such.
        assert_eq!(pool.take().expect("proof"), "p8");
        assert_eq!(pool.stats(), ProofStats { signed_ahead: 8, signed_during_run: 0, signed_inline: 1, expired: 0 });
    }

    #[test]
    fn expired_proofs_are_dropped_never_handed_out() {
        let pool = pool(4, Duration::from_millis(30));
        pool.fill().expect("fill");
        std::thread::sleep(Duration::from_millis(60));
        let proof = pool.take().expect("proof");
        assert_eq!(proof, "p4", "the four stale proofs were skipped");
        assert_eq!(pool.stats().expired, 4);
    }

    #[test]
    fn refills_only_below_the_low_mark_and_counts_it_as_during_the_run() {
        let pool = pool(20, Duration::from_secs(20));
        pool.fill().expect("fill");
        pool.start_measuring();
        for _ in 0..17 {
            pool.take().expect("proof");
        }
        assert!(!pool.refill_once(Duration::ZERO).expect("check"), "3 left, low mark is 2: no signing");
        pool.take().expect("proof");
        pool.take().expect("proof");
        assert!(pool.refill_once(Duration::ZERO).expect("check"), "1 left: refilled");
        assert_eq!(pool.len(), 20);
        assert_eq!(pool.stats().signed_during_run, 19);
    }

    #[test]
    fn a_fill_slower_than_the_proof_window_ends() {
        // Every proof is stale by the time the next is signed: the fill still stops after
        // `target` signatures instead of chasing its own expiry.
        struct Slow(AtomicU64);
        impl Sign for Slow {
            fn sign(&self) -> anyhow::Result<String> {
                std::thread::sleep(Duration::from_millis(2));
                Ok(format!("p{}", self.0.fetch_add(1, Ordering::Relaxed)))
            }
        }
        let pool = ProofPool::new(Slow(AtomicU64::new(0)), 300, Duration::from_millis(1));
        pool.fill().expect("fill");
        assert_eq!(pool.stats().signed_ahead, 300);
    }

    #[test]
    fn the_refill_horizon_replaces_proofs_about_to_expire() {
        let pool = pool(4, Duration::from_millis(200));
        pool.fill().expect("fill");
        // Within the horizon every proof would expire before it is used: all replaced.
        assert!(pool.refill_once(Duration::from_millis(500)).expect("check"));
        assert_eq!(pool.stats().expired, 4);
        assert_eq!(pool.take().expect("proof"), "p4");
    }

    #[test]
    fn the_refill_thread_keeps_a_draining_pool_supplied() {
        let pool = Arc::new(pool(16, Duration::from_secs(20)));
        pool.fill().expect("fill");
        pool.start_measuring();
        let refill = spawn_refill(pool.clone(), Duration::from_millis(5));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            assert!(seen.insert(pool.take().expect("proof")), "a proof was handed out twice");
            std::thread::sleep(Duration::from_micros(200));
        }
        pool.stop();
        refill.join().expect("refill thread");
        let stats = pool.stats();
        assert!(stats.signed_during_run > 0, "the refill thread signed: {stats:?}");
    }
}
