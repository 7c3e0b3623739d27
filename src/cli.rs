//! The command line. `anyhow` lives here only: below this, errors are typed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogConfig, Overrides, Settings};
use crate::server::Server;

#[derive(Parser)]
#[command(name = "mcp-pep", version, about = "Policy-enforcing reverse proxy for the Model Context Protocol")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Run(RunArgs),
    /// Validate the configuration (and load the policies) without starting.
    CheckConfig(RunArgs),
    /// Run a built-in MCP tool server and proxies in one process, and a scripted session.
    Demo(crate::demo::DemoArgs),
    /// Run the built-in MCP tool server (demo and benchmark upstream).
    DemoServer(crate::demo::DemoServerArgs),
    /// Work with a policy directory: evaluate an input, run its tests, compile it.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Add the mcp-pep sidecar to the workloads of Kubernetes manifests (stdout), with a
    /// report per object on stderr.
    Inject(InjectArgs),
    /// Serve the MutatingAdmissionWebhook that injects the sidecar into new pods.
    Webhook(crate::inject::webhook::WebhookArgs),
}

#[derive(Args)]
struct InjectArgs {
    /// A manifest file, a directory of them (recursive), or `-` for stdin.
    #[arg(default_value = "-")]
    input: String,
    /// Remove the sidecar instead.
    #[arg(long)]
    uninject: bool,
    #[command(flatten)]
    defaults: crate::inject::InjectDefaults,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Evaluate the entrypoint for an input document: decision, reasons, evaluation time.
    Eval {
        #[command(flatten)]
        policies: PolicyArgs,
        /// A JSON input document (or, with --jsonl, one document per line).
        #[arg(long)]
        input: PathBuf,
        /// Read one input per line and print one decision per line.
        #[arg(long)]
        jsonl: bool,
        /// Evaluations used to measure the evaluation time (single input only).
        #[arg(long, default_value_t = 1000)]
        iterations: u32,
    },
    /// Run every `test_*` rule of the `*_test.rego` files (as `opa test` does).
    Test {
        #[command(flatten)]
        policies: PolicyArgs,
    },
    /// Compile the policies and data and check the entrypoint; errors name file:line.
    Check {
        #[command(flatten)]
        policies: PolicyArgs,
    },
}

#[derive(Args)]
struct PolicyArgs {
    /// Directory of *.rego and data files.
    #[arg(long, env = "MCP_PEP_POLICY_DIR")]
    policy_dir: PathBuf,
    /// The decision rule.
    #[arg(long, default_value = "data.mcp.decision")]
    entrypoint: String,
}

#[derive(Args, Clone)]
struct RunArgs {
    /// YAML configuration file.
    #[arg(long, env = "MCP_PEP_CONFIG")]
    config: Option<PathBuf>,
    /// The configuration file's text itself (what the injector sets in the sidecar's env).
    #[arg(long, env = "MCP_PEP_CONFIG_YAML", hide_env_values = true, conflicts_with = "config")]
    config_yaml: Option<String>,
    /// Address to serve MCP on, e.g. 127.0.0.1:8080.
    #[arg(long, env = "MCP_PEP_LISTEN")]
    listen: Option<String>,
    /// URL of the MCP tool server, e.g. http://127.0.0.1:3000/mcp.
    #[arg(long, env = "MCP_PEP_UPSTREAM")]
    upstream: Option<String>,
    /// Directory of *.rego and data files (a mounted ConfigMap).
    #[arg(long, env = "MCP_PEP_POLICY_DIR")]
    policy_dir: Option<PathBuf>,
    /// Address of /metrics, /healthz, /readyz; empty to disable.
    #[arg(long, env = "MCP_PEP_ADMIN_LISTEN")]
    admin_listen: Option<String>,
    /// A trusted token issuer (OIDC discovery from this URL); repeatable. Turns on the
    /// credentials check.
    #[arg(long = "issuer", env = "MCP_PEP_ISSUER", value_delimiter = ',')]
    issuers: Vec<String>,
    /// An accepted token audience; repeatable (default: the public URL).
    #[arg(long = "audience", env = "MCP_PEP_AUDIENCE", value_delimiter = ',')]
    audiences: Vec<String>,
    /// The URL clients use for the MCP endpoint (DPoP `htu`, resource metadata).
    #[arg(long, env = "MCP_PEP_PUBLIC_URL")]
    public_url: Option<String>,
}

impl RunArgs {
    fn settings(&self) -> anyhow::Result<Settings> {
        let mut config = match &self.config_yaml {
            Some(text) => Config::parse(text).map_err(|e| anyhow::anyhow!("MCP_PEP_CONFIG_YAML: {e}"))?,
            None => Config::load(self.config.as_deref())?,
        };
        config.apply(Overrides {
            listen: self.listen.clone(),
            upstream: self.upstream.clone(),
            policy_dir: self.policy_dir.clone(),
            admin_listen: self.admin_listen.clone(),
            issuers: self.issuers.clone(),
            audiences: self.audiences.clone(),
            public_url: self.public_url.clone(),
        });
        let origin = match (&self.config, &self.config_yaml) {
            (Some(path), _) => path.display().to_string(),
            (None, Some(_)) => "MCP_PEP_CONFIG_YAML".to_owned(),
            (None, None) => "configuration".to_owned(),
        };
        Ok(config.validate(&origin)?)
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mcp-pep: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => {
            let settings = args.settings()?;
            init_logging(&settings.log);
            runtime()?.block_on(async {
                let server = Server::bind(&settings).await?;
                // One line on stdout with the bound addresses (ports may be 0 in tests); in
                // the log's format, so a JSON log stays one object per line.
                let mcp = format!(
                    "{}://{}{}",
                    if settings.identity.mtls { "https" } else { "http" },
                    server.mcp_addr(),
                    settings.stack.mcp_path
                );
                let admin = server.admin_addr().map_or_else(|| "-".to_owned(), |a| format!("http://{a}"));
                if settings.log.format == "json" {
                    println!("{}", serde_json::json!({"message": "mcp-pep listening", "mcp": mcp, "admin": admin}));
                } else {
                    println!("mcp-pep listening mcp={mcp} admin={admin}");
                }
                server.run(crate::listener::shutdown_signal()).await;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig(args) => {
            let settings = args.settings()?;
            let set = crate::policy::PolicySet::load(&settings.policy_dir, &settings.entrypoint)
                .with_context(|| format!("policy.dir {}", settings.policy_dir.display()))?;
            println!(
                "configuration ok: listen {} upstream {} policies {} files, entrypoint {}",
                settings.listen,
                settings.stack.upstream_url,
                set.files().len(),
                set.entrypoint()
            );
            let identity = &settings.identity;
            if let Some(source) = &identity.source {
                let material = identity.store.load();
                let svid = material.svid.as_ref().map_or_else(
                    || "not loaded yet".to_owned(),
                    |s| format!("{} (expires at {})", s.id.spiffe_id, s.not_after),
                );
                println!(
                    "identity: source {} mtls {} trust domains {:?} svid {svid}",
                    source.label(),
                    if identity.mtls { "on" } else { "off" },
                    identity.trust_domains,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => {
            init_logging(&LogConfig { format: "text".into(), level: args.log_level.clone(), ..LogConfig::default() });
            runtime()?.block_on(crate::demo::run_demo(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(command) => policy_command(command),
        Command::Inject(args) => {
            let stream = crate::inject::manifest::read_input(&args.input).with_context(|| args.input.clone())?;
            let (out, reports) = crate::inject::manifest::inject_stream(&stream, &args.defaults, args.uninject);
            for report in &reports {
                eprintln!("{report}");
            }
            if reports.iter().any(|r| r.outcome.is_err()) {
                // Nothing on stdout: a half-injected manifest must not be applied.
                return Ok(ExitCode::from(1));
            }
            print!("{out}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Webhook(args) => {
            init_logging(&LogConfig { format: "json".into(), level: "info".into(), ..LogConfig::default() });
            runtime()?.block_on(crate::inject::webhook::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::DemoServer(args) => {
            init_logging(&LogConfig::default());
            runtime()?.block_on(crate::demo::run_demo_server(args))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn init_logging(log: &LogConfig) {
    // RUST_LOG wins over the file, as operators expect.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if log.format == "json" { builder.json().try_init() } else { builder.try_init() };
}

fn policy_command(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    use crate::policy::{PolicySet, testing};
    match command {
        PolicyCommand::Check { policies } => {
            let set = PolicySet::load(&policies.policy_dir, &policies.entrypoint)?;
            println!("ok: {} files compiled, entrypoint {} evaluates", set.files().len(), set.entrypoint());
            match set.reads() {
                crate::policy::reads::InputReads::Paths(paths) if paths.iter().any(Vec::is_empty) => {
                    println!("input read: all of it (a bare `input` reference); decision cache off")
                }
                crate::policy::reads::InputReads::Paths(paths) => {
                    let paths: Vec<String> = paths.iter().map(|p| p.join(".")).collect();
                    println!("input read: {}; decisions cached by these paths", paths.join(", "))
                }
                crate::policy::reads::InputReads::Impure(name) => {
                    println!("input read: calls {name}, whose answer can change; decision cache off")
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Test { policies } => {
            let results = testing::run(&policies.policy_dir)?;
            let failed = results.iter().filter(|r| r.failure.is_some()).count();
            for r in &results {
                match &r.failure {
                    None => println!("PASS {}.{}", r.test.package, r.test.name),
                    Some(why) => println!("FAIL {}.{} ({}): {why}", r.test.package, r.test.name, r.test.file.display()),
                }
            }
            println!("policy test: {} passed, {failed} failed", results.len() - failed);
            Ok(if failed == 0 && !results.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        PolicyCommand::Eval { policies, input, jsonl, iterations } => {
            let set = PolicySet::load(&policies.policy_dir, &policies.entrypoint)?;
            let text = std::fs::read_to_string(&input).with_context(|| format!("reading {}", input.display()))?;
            // One compact line per value (`to_json_str` pretty-prints).
            let json = |v: &regorus::Value| -> anyhow::Result<String> {
                match v {
                    regorus::Value::Undefined => Ok("null".to_owned()),
                    v => Ok(serde_json::to_string(&serde_json::from_str::<serde_json::Value>(&v.to_json_str()?)?)?),
                }
            };
            if jsonl {
                for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                    let doc = regorus::Value::from_json_str(line)
                        .with_context(|| format!("{} line {}", input.display(), n + 1))?;
                    let value = set.evaluate_raw(doc)?;
                    println!("{}", json(&value)?);
                }
                return Ok(ExitCode::SUCCESS);
            }
            let doc = regorus::Value::from_json_str(&text).with_context(|| format!("parsing {}", input.display()))?;
            let value = set.evaluate_raw(doc.clone())?;
            let decision = crate::policy::engine::decision_from(&value);
            let mut times: Vec<f64> = (0..iterations.max(1))
                .map(|_| {
                    let started = std::time::Instant::now();
                    let _ = set.evaluate_raw(doc.clone());
                    started.elapsed().as_secs_f64() * 1e6
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
            let out = serde_json::json!({
                "allow": decision.allow,
                "reasons": decision.reasons,
                "result": serde_json::from_str::<serde_json::Value>(&json(&value)?)?,
                "eval_us": {"p50": pct(0.5), "p99": pct(0.99), "iterations": times.len()},
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(if decision.allow { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}
