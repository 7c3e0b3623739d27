#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

//! `mcp-pep-load`: a load generator that speaks MCP the way agents do (Streamable HTTP,
//! HTTP/1.1 or h2, keep-alive or a connection per request, optional mTLS with an SVID,
//! Bearer or DPoP-bound tokens with a fresh proof on every request, both MCP eras), at a
//! fixed rate with coordinated-omission-corrected percentiles or at maximum throughput,
//! and reports one JSON line per run. It drives any MCP endpoint by URL.

mod conn;
mod creds;
mod jws;
mod mcp;
mod procstat;
mod proofs;
mod report;
mod sched;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use http::{HeaderName, HeaderValue, Uri};
use serde_json::json;

use crate::conn::{Connector, TlsFiles};
use crate::mcp::{Auth, Client, Era, McpWorker, Method, Shape};
use crate::proofs::{ProofPool, spawn_refill};
use crate::report::{ProcessUse, Report};
use crate::sched::{Mode, Plan};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "mcp-pep-load", version, about = "MCP load generator: DPoP, mTLS, both MCP eras, HDR percentiles")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Drive an MCP endpoint and print one JSON line of results.
    Run(Box<RunArgs>),
    /// Write a CA, SVIDs, an issuer's JWKS, a DPoP key and tokens for it into a directory.
    Credentials(creds::CredentialsArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Http {
    #[value(name = "1.1")]
    H1,
    #[value(name = "2")]
    H2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AuthKind {
    None,
    Bearer,
    Dpop,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The MCP endpoint, e.g. http://127.0.0.1:8080/mcp (https:// for TLS).
    #[arg(long)]
    url: String,
    #[arg(long, value_enum, default_value = "1.1")]
    http: Http,
    /// A new connection (and TLS handshake) for every request instead of keep-alive.
    #[arg(long)]
    new_connection: bool,
    /// Connections (closed loop), or the most requests in flight (fixed rate).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Requests per second, scheduled open loop; without it: maximum throughput.
    #[arg(long)]
    rate: Option<f64>,
    /// Measured seconds.
    #[arg(long, default_value_t = 5.0)]
    duration_s: f64,
    /// Seconds of load before the measurement (not recorded).
    #[arg(long, default_value_t = 1.0)]
    warmup_s: f64,
    /// Tokio worker threads of the generator.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[arg(long, value_enum, default_value = "none")]
    auth: AuthKind,
    /// The access token (bearer or DPoP-bound), e.g. from `credentials`.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The DPoP key (PKCS#8 PEM) the token is bound to.
    #[arg(long)]
    dpop_key: Option<PathBuf>,
    /// The proofs' `htu` (the proxy's `auth.public_url`); default: --url.
    #[arg(long)]
    htu: Option<String>,
    /// Proofs signed before the measurement; default: enough for the run (bounded).
    #[arg(long)]
    proof_pool: Option<usize>,
    /// Proofs older than this are not sent (the proxy accepts 25 s by default).
    #[arg(long, default_value_t = 20.0)]
    proof_max_age_s: f64,
    /// CA bundle (PEM) that signs the server's certificate.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Client certificate chain (PEM), e.g. an X.509-SVID.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long)]
    key: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "legacy")]
    era: Era,
    #[arg(long, value_enum, default_value = "tools/call")]
    method: Method,
    #[arg(long, default_value = "read_file")]
    tool: String,
    /// The tool's arguments (JSON object).
    #[arg(long, default_value = r#"{"path":"/workspace/README.md"}"#)]
    arguments: String,
    /// New arguments on every request: each `{n}` in --arguments becomes the request's number.
    #[arg(long)]
    vary_arguments: bool,
    /// Extra request header, `name: value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// A process (e.g. the proxy) whose CPU time and RSS over the measurement are reported.
    #[arg(long)]
    watch_pid: Option<u32>,
    /// `key=value` copied into the JSON line (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Append the JSON line to this file too.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Exit 1 unless every request was answered successfully.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Credentials(args) => creds::write(&args),
        Command::Run(args) => run_command(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-pep-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_command(args: RunArgs) -> anyhow::Result<()> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads.max(1)).enable_all().build()?;
    let failed = runtime.block_on(run(args))?;
    if failed { Err(anyhow!("--check: not every request was answered successfully")) } else { Ok(()) }
}

fn read_trimmed(path: &std::path::Path) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?.trim().to_owned())
}

/// Default pool size: every proof of the run and 20 % more (so that what is left at the end
/// stays above the refill mark, a tenth) when that fits in the proof window, else what 3/4
/// of the window needs (refilled while running); at max throughput the rate is taken as
/// 20 000/s.
fn default_pool(rate: Option<f64>, warmup: f64, duration: f64, max_age: f64) -> usize {
    let per_s = rate.unwrap_or(20_000.0);
    let run = (per_s * (warmup + duration) * 1.2).round() + 64.0;
    (run.min(per_s * max_age * 0.75) as usize).clamp(64, 400_000)
}

fn parse_headers(raw: &[String]) -> anyhow::Result<Vec<(HeaderName, HeaderValue)>> {
    raw.iter()
        .map(|h| {
            let (name, value) = h.split_once(':').ok_or_else(|| anyhow!("--header {h:?}: name: value"))?;
            Ok((HeaderName::try_from(name.trim())?, HeaderValue::try_from(value.trim())?))
        })
        .collect()
}

/// Returns whether `--check` failed.
async fn run(args: RunArgs) -> anyhow::Result<bool> {
    let url: Uri = args.url.parse().with_context(|| format!("--url {}", args.url))?;
    let h2 = args.http == Http::H2;
    let files = TlsFiles { ca: args.ca.as_deref(), cert: args.cert.as_deref(), key: args.key.as_deref() };
    let connector = Connector::new(&url, h2, &files)?;
    let shape = Shape {
        era: args.era,
        method: args.method,
        tool: args.tool.clone(),
        arguments: args.arguments.clone(),
        vary: args.vary_arguments,
        headers: parse_headers(&args.headers)?,
    };
    shape.check()?;
    if args.connections == 0 || args.duration_s <= 0.0 || args.rate.is_some_and(|r| r <= 0.0 || !r.is_finite()) {
        bail!("--connections, --duration-s and --rate must be positive");
    }

    let mut pool = None;
    let auth = match args.auth {
        AuthKind::None => Auth::None,
        AuthKind::Bearer => {
            let file = args.token_file.as_deref().ok_or_else(|| anyhow!("--auth bearer needs --token-file"))?;
            Auth::Bearer(read_trimmed(file)?)
        }
        AuthKind::Dpop => {
            let file = args.token_file.as_deref().ok_or_else(|| anyhow!("--auth dpop needs --token-file"))?;
            let key = args.dpop_key.as_deref().ok_or_else(|| anyhow!("--auth dpop needs --dpop-key"))?;
            let token = read_trimmed(file)?;
            let template = jws::ProofTemplate::new(
                jws::EcKey::from_pem_file(key)?,
                args.htu.as_deref().unwrap_or(&args.url),
                &token,
            );
            let size = args
                .proof_pool
                .unwrap_or_else(|| default_pool(args.rate, args.warmup_s, args.duration_s, args.proof_max_age_s));
            let p = Arc::new(ProofPool::new(template, size, Duration::from_secs_f64(args.proof_max_age_s)));
            let fill = p.clone();
            tokio::task::spawn_blocking(move || fill.fill()).await??;
            pool = Some(p.clone());
            Auth::Dpop { token, pool: p }
        }
    };

    let mut client = Client {
        connector,
        url: url.clone(),
        shape,
        auth,
        session: None,
        new_connection: args.new_connection,
        timeout: Duration::from_millis(args.timeout_ms),
        events: Default::default(),
        answers: Default::default(),
    };
    if args.era == Era::Legacy {
        client.session = client.open_session().await.context("opening the MCP session")?;
    }
    let client = Arc::new(client);
    let refill = pool.as_ref().map(|p| spawn_refill(p.clone(), Duration::from_millis(100)));

    let plan = Plan {
        mode: args.rate.map_or(Mode::Max, |rate| Mode::Fixed { rate }),
        warmup: Duration::from_secs_f64(args.warmup_s.max(0.0)),
        duration: Duration::from_secs_f64(args.duration_s),
        drain: Duration::from_millis(args.timeout_ms),
    };
    let workers = (0..args.connections).map(|_| McpWorker::new(client.clone())).collect();

    // At the start of the measurement: proofs signed from now on count as during the run,
    // and the watched process is sampled.
    let before = Arc::new(Mutex::new(None));
    let rss_max = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (marker_pool, marker_before, pid) = (pool.clone(), before.clone(), args.watch_pid);
    let watcher = pid.map(|pid| {
        let rss_max = rss_max.clone();
        let warmup = plan.warmup;
        let until = Instant::now() + warmup + plan.duration + Duration::from_millis(5);
        tokio::spawn(async move {
            tokio::time::sleep(warmup).await;
            while Instant::now() < until {
                if let Some(s) = procstat::sample(pid) {
                    rss_max.fetch_max(s.rss_kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    });
    let rec = sched::run(&plan, workers, move || {
        if let Some(p) = marker_pool {
            p.start_measuring();
        }
        if let (Some(pid), Ok(mut slot)) = (pid, marker_before.lock()) {
            *slot = procstat::sample(pid);
        }
    })
    .await;
    let after = pid.and_then(procstat::sample);
    if let Some(w) = watcher {
        w.abort();
    }
    if let (Some(p), Some(r)) = (&pool, refill) {
        p.stop();
        r.join().ok();
    }

    let process = match (pid, before.lock().ok().and_then(|s| *s), after) {
        (Some(pid), Some(b), Some(a)) => {
            let cpu = a.cpu_s - b.cpu_s;
            let handled = rec.ok + rec.error_count();
            Some(ProcessUse {
                pid,
                cpu_s: (cpu * 100.0).round() / 100.0,
                cpu_us_per_request: (handled > 0).then(|| (cpu * 1e6 / handled as f64 * 10.0).round() / 10.0),
                rss_kib_before: b.rss_kib,
                rss_kib_max: rss_max.load(Ordering::Relaxed).max(a.rss_kib).max(b.rss_kib),
            })
        }
        _ => None,
    };
    let answers = client.answers.load(Ordering::Relaxed);
    let events = client.events.load(Ordering::Relaxed);
    let settings = json!({
        "url": args.url,
        "http": if h2 { "2" } else { "1.1" },
        "new_connection": args.new_connection,
        "connections": args.connections,
        "mode": if args.rate.is_some() { "fixed" } else { "max" },
        "rate": args.rate,
        "duration_s": args.duration_s,
        "warmup_s": args.warmup_s,
        "threads": args.threads,
        "auth": format!("{:?}", args.auth).to_lowercase(),
        "mtls": args.cert.is_some(),
        "era": args.era,
        "method": args.method,
        "tool": (args.method == Method::ToolsCall).then_some(&args.tool),
        "vary_arguments": args.vary_arguments,
    });
    let mut tags = BTreeMap::new();
    for t in &args.tags {
        let (k, v) = t.split_once('=').ok_or_else(|| anyhow!("--tag {t:?}: key=value"))?;
        tags.insert(k.to_owned(), v.to_owned());
    }
    let report = Report {
        settings,
        tags: &tags,
        rec: &rec,
        seconds: args.duration_s,
        corrected: args.rate.is_some(),
        proofs: pool.as_ref().map(|p| p.stats()),
        events_per_answer: (events > 0 && answers > 0)
            .then(|| (events as f64 / answers as f64 * 100.0).round() / 100.0),
        process,
    };
    let line = report.json().to_string();
    println!("{line}");
    if let Some(out) = &args.out {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(out)?;
        writeln!(file, "{line}")?;
    }
    Ok(args.check && (rec.ok == 0 || rec.error_count() > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_proof_pool_sizes() {
        // (rate, warm-up, duration, max age) -> proofs signed ahead
        let cases = [
            (Some(1000.0), 1.0, 5.0, 20.0, 7264),    // the whole run
            (Some(1000.0), 1.0, 60.0, 20.0, 15_000), // 15 s of it, refilled
            (None, 1.0, 5.0, 20.0, 144_064),
            (Some(1.0), 0.0, 1.0, 20.0, 64),
            (None, 1.0, 600.0, 40.0, 400_000),
        ];
        for (rate, warmup, duration, age, want) in cases {
            assert_eq!(default_pool(rate, warmup, duration, age), want, "{rate:?} {duration}");
        }
    }

    #[test]
    fn headers_parse() {
        let h = parse_headers(&["x-a: 1".into(), "X-B:two words".into()]).expect("headers");
        assert_eq!(h[0].0, "x-a");
        assert_eq!(h[1].1, "two words");
        assert!(parse_headers(&["nocolon".into()]).is_err());
    }
}
