//! The JSON report of a run: settings, counts, errors by kind, the latency percentiles,
//! a percentile spectrum (for plots), proof signing, and the watched process's CPU and
//! memory.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};

use crate::proofs::ProofStats;
use crate::sched::Recorder;

/// The quantiles of the spectrum a plot draws (HdrHistogram's "1/(1-q)" axis).
pub const SPECTRUM: [f64; 16] =
    [0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99995, 0.99999, 0.999995, 0.999999, 1.0];

fn ms(nanos: u64) -> f64 {
    (nanos as f64 / 1e3).round() / 1e3
}

/// p50, p90, p99, p99.9, max and mean, in milliseconds (µs resolution).
pub fn percentiles(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    json!({
        "p50": ms(h.value_at_quantile(0.5)),
        "p90": ms(h.value_at_quantile(0.9)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p99.9": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
        "mean": (h.mean() / 1e3).round() / 1e3,
    })
}

/// `[quantile, ms]` pairs.
pub fn spectrum(h: &Histogram<u64>) -> Vec<[f64; 2]> {
    if h.is_empty() {
        return Vec::new();
    }
    SPECTRUM.iter().map(|q| [*q, ms(h.value_at_quantile(*q))]).collect()
}

/// CPU and memory of a watched process over the measurement window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProcessUse {
    pub pid: u32,
    pub cpu_s: f64,
    pub cpu_us_per_request: Option<f64>,
    pub rss_kib_before: u64,
    pub rss_kib_max: u64,
}

pub struct Report<'a> {
    pub settings: Value,
    pub tags: &'a BTreeMap<String, String>,
    pub rec: &'a Recorder,
    pub seconds: f64,
    pub corrected: bool,
    pub proofs: Option<ProofStats>,
    pub events_per_answer: Option<f64>,
    pub process: Option<ProcessUse>,
}

impl Report<'_> {
    pub fn json(&self) -> Value {
        let count = self.rec.ok + self.rec.error_count();
        let mut out = json!({
            "settings": self.settings,
            "requests": count,
            "ok": self.rec.ok,
            "errors": self.rec.errors,
            "seconds": self.seconds,
            "req_per_s": if self.seconds > 0.0 { (self.rec.ok as f64 / self.seconds * 10.0).round() / 10.0 } else { 0.0 },
            "latency_ms": percentiles(&self.rec.latency),
            "latency_from": if self.corrected { "due time (coordinated omission corrected)" } else { "send time" },
            "spectrum_ms": spectrum(&self.rec.latency),
            "wait_ms": if self.corrected { percentiles(&self.rec.wait) } else { Value::Null },
            "proofs": self.proofs,
            "sse_events_per_answer": self.events_per_answer,
            "process": self.process,
        });
        for (k, v) in self.tags {
            out[k] = json!(v);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_known_distribution_reports_its_percentiles() {
        let mut rec = Recorder::default();
        for us in 1..=1000u64 {
            rec.record(Duration::from_micros(us), Duration::from_micros(us / 10), Ok(()));
        }
        rec.record(Duration::ZERO, Duration::ZERO, Err("status_401".into()));
        rec.record(Duration::ZERO, Duration::ZERO, Err("status_401".into()));
        let tags = BTreeMap::from([("scenario".to_owned(), "d".to_owned())]);
        let report = Report {
            settings: json!({"rate": 1000}),
            tags: &tags,
            rec: &rec,
            seconds: 2.0,
            corrected: true,
            proofs: Some(ProofStats::default()),
            events_per_answer: None,
            process: None,
        };
        let v = report.json();
        assert_eq!(v["requests"], 1002);
        assert_eq!(v["ok"], 1000);
        assert_eq!(v["errors"]["status_401"], 2);
        assert_eq!(v["req_per_s"], 500.0);
        assert_eq!(v["scenario"], "d");
        assert_eq!(v["settings"]["rate"], 1000);
        let close = |key: &str, want: f64| {
            let got = v["latency_ms"][key].as_f64().expect(key);
            assert!((got - want).abs() <= want * 0.002, "{key}: {got} vs {want}");
        };
        close("p50", 0.5);
        close("p90", 0.9);
        close("p99", 0.99);
        close("p99.9", 0.999);
        close("max", 1.0);
        let spectrum = v["spectrum_ms"].as_array().expect("spectrum");
        assert_eq!(spectrum.len(), SPECTRUM.len());
        let values: Vec<f64> = spectrum.iter().map(|p| p[1].as_f64().expect("ms")).collect();
        assert!(values.windows(2).all(|w| w[0] <= w[1]), "monotone: {values:?}");
        // One line of JSON that parses back.
        let line = v.to_string();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<Value>(&line).expect("JSON"), v);
    }

    #[test]
    fn an_empty_run_has_no_percentiles() {
        let rec = Recorder::default();
        let tags = BTreeMap::new();
        let report = Report {
            settings: json!({}),
            tags: &tags,
            rec: &rec,
            seconds: 1.0,
            corrected: false,
            proofs: None,
            events_per_answer: None,
            process: None,
        };
        let v = report.json();
        assert!(v["latency_ms"].is_null());
        assert_eq!(v["req_per_s"], 0.0);
    }
}
