//! `mcp-pep demo`: the tool server, one sidecar per agent, and a scripted session for
//! each agent that prints every call, the decision and its latency.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::credentials::{self, DemoIssuer, SigningKey};
use super::server::{DemoServer, PROTOCOL_VERSION, ResponseMode};
use crate::auth::config::IssuerConfig;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::policy::{PolicySet, PolicyStore};
use crate::server::Server;

/// The shipped policies, embedded so that the demo runs from any directory.
pub const EMBEDDED_POLICIES: &[(&str, &str)] = &[
    ("policies/mcp.rego", include_str!("../../policies/mcp.rego")),
    ("policies/catalog.rego", include_str!("../../policies/catalog.rego")),
    ("policies/trust_boundaries.rego", include_str!("../../policies/trust_boundaries.rego")),
    ("policies/tool_access.rego", include_str!("../../policies/tool_access.rego")),
];
pub const EMBEDDED_DATA: &str = include_str!("../../policies/catalog.json");

const AGENTS: [&str; 3] = ["trusted-agent", "semi-trusted-agent", "untrusted-agent"];

#[derive(Args, Clone)]
pub struct DemoArgs {
    /// Use this policy directory instead of the embedded shipped policies.
    #[arg(long)]
    pub policy_dir: Option<PathBuf>,
    /// Log filter for the proxies (decision lines are at info).
    #[arg(long, default_value = "warn")]
    pub log_level: String,
}

pub fn embedded_policy_set() -> anyhow::Result<PolicySet> {
    let data: Value = serde_json::from_str(EMBEDDED_DATA)?;
    Ok(PolicySet::from_sources(EMBEDDED_POLICIES, Some(data), "data.mcp.decision")?)
}

pub async fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let until = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let tool_listener = TcpListener::bind("127.0.0.1:0").await?;
    let upstream = format!("http://{}/mcp", tool_listener.local_addr()?);
    let mut tasks =
        vec![tokio::spawn(DemoServer::new(ResponseMode::Json).serve(tool_listener, None, until(stopped.clone())))];
    println!("demo tool server   {upstream}");

    let policies = Arc::new(PolicyStore::new());
    match &args.policy_dir {
        Some(dir) => policies.replace(PolicySet::load(dir, "data.mcp.decision")?),
        None => policies.replace(embedded_policy_set()?),
    }
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();

    for agent in AGENTS {
        let spiffe_id = format!("spiffe://mcp-identity.local/ns/mcp-agents/sa/{agent}");
        let mut config = Config { listen: "127.0.0.1:0".into(), admin_listen: String::new(), ..Config::default() };
        config.upstream.url = Some(upstream.clone());
        config.policy.dir = Some(std::env::temp_dir());
        config.identity.local_spiffe_id = Some(spiffe_id.clone());
        // The demo shows why: production keeps reasons in the decision log only.
        config.policy.expose_reasons = true;
        let settings = config.validate("demo")?;
        let server = Server::bind_with(&settings, policies.clone(), Arc::new(Metrics::new()?)).await?;
        let url = format!("http://{}/mcp", server.mcp_addr());
        tasks.push(tokio::spawn(server.run(until(stopped.clone()))));
        println!("\n{agent}  sidecar {url}\n  identity {spiffe_id} (loopback caller = the pod's workload)");
        if let Err(e) = script(&client, &url).await {
            println!("  session failed: {e:#}");
        }
    }
    match credentials_part(&client, &upstream, &policies, &stopped, &until).await {
        Ok(task) => tasks.push(task),
        Err(e) => println!("  credentials part failed: {e:#}"),
    }
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    println!("\nEvery denial carries a decision id; run with --log-level info to see the decision log.");
    Ok(())
}

/// A sidecar with `auth` on: an honest DPoP call, a replayed proof, another key's proof.
async fn credentials_part<F, Fut>(
    client: &Client<HttpConnector, Full<Bytes>>,
    upstream: &str,
    policies: &Arc<PolicyStore>,
    stopped: &watch::Receiver<bool>,
    until: &F,
) -> anyhow::Result<tokio::task::JoinHandle<()>>
where
    F: Fn(watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let issuer = DemoIssuer::new()?;
    let jwks_file = std::env::temp_dir().join(format!("mcp-pep-demo-jwks-{}.json", std::process::id()));
    std::fs::write(&jwks_file, issuer.jwks().to_string())?;
    let public_url = "https://mcp.demo.local/mcp";
    let mut config = Config { listen: "127.0.0.1:0".into(), admin_listen: String::new(), ..Config::default() };
    config.upstream.url = Some(upstream.to_owned());
    config.policy.dir = Some(std::env::temp_dir());
    config.identity.local_spiffe_id = Some("spiffe://mcp-identity.local/ns/mcp-agents/sa/trusted-agent".into());
    config.auth.issuers =
        vec![IssuerConfig { issuer: credentials::ISSUER.into(), jwks_uri: None, jwks_file: Some(jwks_file.clone()) }];
    config.auth.public_url = Some(public_url.into());
    let settings = config.validate("demo");
    let _ = std::fs::remove_file(&jwks_file);
    let server = Server::bind_with(&settings?, policies.clone(), Arc::new(Metrics::new()?)).await?;
    let url = format!("http://{}/mcp", server.mcp_addr());
    let task = tokio::spawn(server.run(until(stopped.clone())));
    println!("\ncredentials  sidecar {url} (public URL {public_url})");
    println!("  issuer {} mints DPoP-bound tokens; the agent signs a fresh proof per request", credentials::ISSUER);

    let agent_key = SigningKey::generate()?;
    let token = issuer.token(public_url, "trusted-agent", &agent_key.thumbprint()?)?;
    let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": {"name": "mcp-pep-demo", "version": "1"}}});
    let first = credentials::proof(&agent_key, "POST", public_url, &token)?;
    let (_, session, _) = credentials::call(client, &url, None, &initialize, &token, &first).await?;
    let read = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "read_file", "arguments": {"path": "/workspace/README.md"}}});
    let honest = credentials::proof(&agent_key, "POST", public_url, &token)?;
    let thief_key = SigningKey::generate()?;
    let stolen = credentials::proof(&thief_key, "POST", public_url, &token)?;
    for (label, proof) in [
        ("token + fresh proof by the bound key", &honest),
        ("the same proof replayed", &honest),
        ("the token with another key's proof", &stolen),
    ] {
        let started = Instant::now();
        let (status, _, summary) = credentials::call(client, &url, session.as_deref(), &read, &token, proof).await?;
        let verdict = if status == 200 { "allowed" } else { "refused" };
        println!("  {label:<52} {verdict:<8} {:>6} µs  HTTP {status} {summary}", started.elapsed().as_micros());
    }
    Ok(task)
}

/// One agent's session: the protocol plumbing, then one call per tool category.
async fn script(client: &Client<HttpConnector, Full<Bytes>>, url: &str) -> anyhow::Result<()> {
    let mut session = Session { client, url, id: None, next_id: 1 };
    session.call("initialize", json!({"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": {"name": "mcp-pep-demo", "version": "1"}})).await?;
    session.notify("notifications/initialized").await?;
    session.call("tools/list", json!({})).await?;
    let calls = [
        ("read_file", json!({"path": "/workspace/README.md"})),
        ("read_file", json!({"path": "/workspace/../etc/shadow"})),
        ("write_file", json!({"path": "/workspace/notes.md"})),
        ("query_database", json!({"query": "SELECT count(*) FROM orders"})),
        ("call_api", json!({"endpoint": "/v1/inventory"})),
        ("execute_command", json!({"command": "uname -a"})),
        ("fetch_url", json!({"url": "https://api.example.com/status"})),
    ];
    for (tool, arguments) in calls {
        session.call("tools/call", json!({"name": tool, "arguments": arguments})).await?;
    }
    Ok(())
}

struct Session<'a> {
    client: &'a Client<HttpConnector, Full<Bytes>>,
    url: &'a str,
    id: Option<String>,
    next_id: i64,
}

impl Session<'_> {
    async fn post(&mut self, message: &Value) -> anyhow::Result<(StatusCode, Value, Duration)> {
        let mut req = Request::post(self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", PROTOCOL_VERSION);
        if let Some(id) = &self.id {
            req = req.header("mcp-session-id", id);
        }
        let started = Instant::now();
        let resp = self.client.request(req.body(Full::new(Bytes::from(message.to_string())))?).await?;
        let status = resp.status();
        if let Some(id) = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()) {
            self.id = Some(id.to_owned());
        }
        let body = resp.into_body().collect().await?.to_bytes();
        let elapsed = started.elapsed();
        let value = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body)? };
        Ok((status, value, elapsed))
    }

    async fn notify(&mut self, method: &str) -> anyhow::Result<()> {
        let (status, _, elapsed) = self.post(&json!({"jsonrpc": "2.0", "method": method})).await?;
        let verdict = if status == StatusCode::ACCEPTED { "allowed" } else { "denied" };
        println!("  {method:<52} {verdict:<8} {:>6} µs  (HTTP {})", elapsed.as_micros(), status.as_u16());
        Ok(())
    }

    async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        let label = match params.get("name").and_then(Value::as_str) {
            Some(tool) => format!("{tool} {}", params["arguments"]),
            None => method.to_owned(),
        };
        let (_, answer, elapsed) =
            self.post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await?;
        let (verdict, detail) = match (answer.get("result"), answer.get("error")) {
            (Some(result), _) => ("allowed", summary(method, result)),
            (_, Some(error)) => {
                let reasons: Vec<&str> =
                    error["data"]["reasons"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                ("denied", reasons.join("; "))
            }
            _ => ("?", String::new()),
        };
        println!("  {label:<52} {verdict:<8} {:>6} µs  {detail}", elapsed.as_micros());
        Ok(())
    }
}

fn summary(method: &str, result: &Value) -> String {
    match method {
        "tools/list" => {
            let names: Vec<&str> =
                result["tools"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
            format!("{} tools: {}", names.len(), names.join(", "))
        }
        "tools/call" => result["content"][0]["text"].as_str().unwrap_or_default().to_owned(),
        _ => String::new(),
    }
}
