//! Decisions as OPA decision-log events, one JSON object per line, so that a pipeline
//! built for OPA's decision logs (console or file) ingests mcp-pep's unchanged:
//! `decision_id`, `path`, `input`, `result`, `timestamp`, `labels`, `bundles.<name>.revision`,
//! `metrics.timer_rego_query_eval_ns`, and `erased` naming what was masked (OPA's field).
//!
//! Tool arguments are erased unless configured: they are the caller's data, not the
//! decision's. Credentials never reach the input, so they cannot reach the log.
//!
//! Lines are written by one thread from a bounded queue: a slow disk or pipe never holds
//! a request. A full queue drops the event and counts it (`decision_log_dropped_total`).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::metrics::Metrics;

/// The bundle name the revision is reported under (`bundles.policies.revision`).
pub const BUNDLE: &str = "policies";
const QUEUE: usize = 8192;

/// Where events go and what they show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionLogOptions {
    /// `None`: standard output.
    pub file: Option<PathBuf>,
    /// Keep `input.mcp.arguments` (default: erased).
    pub arguments: bool,
}

/// The fields of one event that the policy stage knows.
pub struct Event<'a> {
    pub decision_id: &'a str,
    pub entrypoint: &'a str,
    pub input: Value,
    pub allow: bool,
    pub reasons: &'a [String],
    pub revision: &'a str,
    pub eval: Duration,
}

pub struct DecisionLog {
    queue: SyncSender<String>,
    arguments: bool,
    labels: Value,
    metrics: Arc<Metrics>,
}

impl DecisionLog {
    /// Opens the sink (the file is appended to) and starts the writer thread.
    pub fn start(options: &DecisionLogOptions, metrics: Arc<Metrics>) -> std::io::Result<Arc<Self>> {
        let mut sink: Box<dyn Write + Send> = match &options.file {
            None => Box::new(std::io::stdout()),
            Some(path) => Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
        };
        let (queue, lines) = sync_channel::<String>(QUEUE);
        std::thread::Builder::new().name("decision-log".into()).spawn(move || {
            for line in lines {
                // One write per line keeps lines whole for a reader tailing the file.
                if sink.write_all(line.as_bytes()).and_then(|()| sink.flush()).is_err() {
                    eprintln!("mcp-pep: the decision log cannot be written");
                }
            }
        })?;
        let labels = json!({
            "id": uuid::Uuid::new_v4().to_string(),
            "app": "mcp-pep",
            "version": env!("CARGO_PKG_VERSION"),
        });
        Ok(Arc::new(DecisionLog { queue, arguments: options.arguments, labels, metrics }))
    }

    pub fn record(&self, event: Event<'_>) {
        let mut input = event.input;
        let mut erased = Vec::new();
        if !self.arguments
            && let Some(arguments) = input.pointer_mut("/mcp/arguments")
            && !arguments.is_null()
        {
            *arguments = Value::Null;
            erased.push("/input/mcp/arguments");
        }
        let mut line = json!({
            "decision_id": event.decision_id,
            "path": opa_path(event.entrypoint),
            "input": input,
            "result": {"allow": event.allow, "reasons": event.reasons},
            "timestamp": rfc3339(SystemTime::now()),
            "labels": self.labels,
            "bundles": {BUNDLE: {"revision": event.revision}},
            "metrics": {"timer_rego_query_eval_ns": u64::try_from(event.eval.as_nanos()).unwrap_or(u64::MAX)},
        });
        if !erased.is_empty() {
            line["erased"] = json!(erased);
        }
        let mut text = line.to_string();
        text.push('\n');
        // Full (the writer fell behind) or gone (it died): the event is lost, and counted.
        if self.queue.try_send(text).is_err() {
            self.metrics.decision_log_dropped.inc();
        }
    }
}

/// `data.mcp.decision` → `mcp/decision`, as OPA names the queried document.
fn opa_path(entrypoint: &str) -> String {
    entrypoint.strip_prefix("data.").unwrap_or(entrypoint).replace('.', "/")
}

/// RFC 3339 in UTC with nanoseconds, as OPA writes `timestamp`.
fn rfc3339(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let cases = [
            (0, 0, "1970-01-01T00:00:00.000000000Z"),
            (951_782_400, 5, "2000-02-29T00:00:00.000000005Z"),
            (1_796_306_400, 123_000_000, "2026-12-03T14:00:00.123000000Z"),
            (4_107_542_399, 0, "2100-02-28T23:59:59.000000000Z"),
        ];
        for (secs, nanos, want) in cases {
            assert_eq!(rfc3339(UNIX_EPOCH + Duration::new(secs, nanos)), want, "{secs}");
        }
    }

    #[test]
    fn paths_are_opa_document_paths() {
        assert_eq!(opa_path("data.mcp.decision"), "mcp/decision");
        assert_eq!(opa_path("mcp.decision"), "mcp/decision");
    }
}
