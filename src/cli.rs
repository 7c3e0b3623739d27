//! The command line. `anyhow` lives here only: below this, errors are typed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogConfig, Overrides, Settings};
use crate::server::Server;

#[derive(Parser)]
#[command(
    name = "mcp-pep",
    version,
    about = "Policy-enforcing reverse proxy for the Model Context Protocol"
)]
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
}

#[derive(Args, Clone)]
struct RunArgs {
    /// YAML configuration file.
    #[arg(long, env = "MCP_PEP_CONFIG")]
    config: Option<PathBuf>,
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
}

impl RunArgs {
    fn settings(&self) -> anyhow::Result<Settings> {
        let mut config = Config::load(self.config.as_deref())?;
        config.apply(Overrides {
            listen: self.listen.clone(),
            upstream: self.upstream.clone(),
            policy_dir: self.policy_dir.clone(),
            admin_listen: self.admin_listen.clone(),
        });
        let origin = self
            .config
            .as_ref()
            .map_or_else(|| "configuration".to_owned(), |p| p.display().to_string());
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
                // One line on stdout with the bound addresses (ports may be 0 in tests).
                println!(
                    "mcp-pep listening mcp=http://{}{} admin={}",
                    server.mcp_addr(),
                    settings.stack.mcp_path,
                    server
                        .admin_addr()
                        .map_or_else(|| "-".to_owned(), |a| format!("http://{a}"))
                );
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
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => {
            init_logging(&LogConfig {
                format: "text".into(),
                level: args.log_level.clone(),
            });
            runtime()?.block_on(crate::demo::run_demo(args))?;
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
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn init_logging(log: &LogConfig) {
    // RUST_LOG wins over the file, as operators expect.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
