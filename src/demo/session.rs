//! `mcp-pep demo`: the whole stack in one process, with real keys and certificates.
//!
//! A throwaway SPIRE (a CA for `mcp-identity.local`, X.509-SVIDs for the sidecar, the
//! tool server and three agents) and a Keycloak stand-in (DPoP-bound tokens whose `azp`
//! is the agent's SPIFFE ID). One sidecar serves mTLS in front of the tool server and
//! speaks mTLS to it. Each agent connects with its own SVID, token and DPoP key; the
//! agents speak MCP 2026-07-28 (no sessions; `_meta` and mirrored headers on every
//! request); the script prints every call with the decision and its latency, then the
//! credential and header attacks the sidecar refuses.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::credentials::{self, DemoIssuer, JwtAuthority, SigningKey};
use super::pki::{Leaf, LeafSpec, TestCa};
use super::server::{DemoServer, MODERN_PROTOCOL_VERSION, ResponseMode};
use crate::auth::config::IssuerConfig;
use crate::config::Config;
use crate::listener::TlsAccept;
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

const TRUST_DOMAIN: &str = "mcp-identity.local";
const AGENTS: [&str; 3] = ["trusted-agent", "semi-trusted-agent", "untrusted-agent"];
const SIDECAR_ID: &str = "spiffe://mcp-identity.local/ns/mcp-tools/sa/mcp-pep";
const TOOL_SERVER_ID: &str = "spiffe://mcp-identity.local/ns/mcp-tools/sa/tool-server";
/// The URL agents use for the MCP endpoint (a Service name in a cluster): the `htu`
/// of their proofs and the `aud` of their tokens.
const PUBLIC_URL: &str = "https://mcp.demo.local/mcp";

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

fn spiffe_id(agent: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/ns/mcp-agents/sa/{agent}")
}

/// Files the sidecar reads (its SVID, the bundle, the issuer's keys), removed on drop.
struct DemoFiles(PathBuf);

impl DemoFiles {
    /// Owner-only: the SVID key is a throwaway, but a key all the same.
    fn write(&self, name: &str, text: &str) -> anyhow::Result<PathBuf> {
        use std::io::Write;
        let path = self.0.join(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(&path)?.write_all(text.as_bytes())?;
        Ok(path)
    }
}

impl Drop for DemoFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub async fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let until = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let localhost = std::net::IpAddr::from([127, 0, 0, 1]);

    // 1. The identity plane: a CA and the SVIDs SPIRE would issue.
    let ca = TestCa::new(TRUST_DOMAIN)?;
    let sidecar_svid = ca.leaf(&LeafSpec::svid(SIDECAR_ID).with_ip(localhost))?;
    let tool_svid = ca.leaf(&LeafSpec::svid(TOOL_SERVER_ID).with_ip(localhost))?;
    // An unpredictable name, created here (never an existing directory or link).
    let files = DemoFiles(std::env::temp_dir().join(format!("mcp-pep-demo-{}", uuid::Uuid::new_v4())));
    std::fs::create_dir(&files.0)?;

    // 2. The tool server, over mTLS: only the sidecar's SVID gets in.
    let tool_listener = TcpListener::bind("127.0.0.1:0").await?;
    let upstream = format!("https://{}/mcp", tool_listener.local_addr()?);
    let tool_tls = tool_server_tls(&ca, &tool_svid)?;
    let mut tasks = vec![tokio::spawn(DemoServer::new(ResponseMode::Json).serve(
        tool_listener,
        Some(tool_tls),
        until(stopped.clone()),
    ))];

    // 3. The authorization server: its keys, and its token endpoint, which takes
    //    JWT-SVIDs signed by SPIRE's JWT authority as client assertions.
    let issuer = Arc::new(DemoIssuer::new()?);
    let jwks_file = files.write("jwks.json", &issuer.jwks().to_string())?;
    let authority = Arc::new(JwtAuthority::new()?);
    let token_listener = TcpListener::bind("127.0.0.1:0").await?;
    let token_endpoint = format!("http://{}/realms/agents/protocol/openid-connect/token", token_listener.local_addr()?);
    tasks.push(tokio::spawn(credentials::serve_token_endpoint(
        token_listener,
        issuer.clone(),
        authority.clone(),
        PUBLIC_URL,
        until(stopped.clone()),
    )));

    // 4. The sidecar: mTLS in, DPoP-bound tokens bound to the caller's SPIFFE ID, the
    //    shipped policies, mTLS out.
    let policies = Arc::new(PolicyStore::new());
    match &args.policy_dir {
        Some(dir) => policies.replace(PolicySet::load(dir, "data.mcp.decision")?),
        None => policies.replace(embedded_policy_set()?),
    }
    let config = sidecar_config(&files, &sidecar_svid, &ca, &upstream, &jwks_file)?;
    let settings = config.validate("demo")?;
    let server = Server::bind_with(&settings, policies.clone(), Arc::new(Metrics::new()?)).await?;
    let url = format!("https://{}/mcp", server.mcp_addr());
    tasks.push(tokio::spawn(server.run(until(stopped.clone()))));
    println!("SPIFFE trust domain {TRUST_DOMAIN}: a fresh CA, X.509-SVIDs for every workload");
    println!("tool server  {upstream}  ({TOOL_SERVER_ID}, mTLS)");
    println!("sidecar      {url}  ({SIDECAR_ID}, mTLS in and out; public URL {PUBLIC_URL})");
    println!(
        "issuer       {} (token endpoint {token_endpoint}; DPoP-bound tokens, azp = the agent's SPIFFE ID)",
        credentials::ISSUER
    );

    // 5. Three agents. Each MCP client holds nothing: its own sidecar (egress) has the
    //    pod's SVID, obtains a DPoP-bound token with a JWT-SVID, signs every proof, and
    //    decides the agent's calls with the shipped policies before any token is spent.
    let mut agents = Vec::new();
    let plain = Client::builder(TokioExecutor::new()).build_http();
    for name in AGENTS {
        let agent = Agent::new(name, &ca, &issuer)?;
        let egress = egress_config(&files, &agent, &ca, &url, &token_endpoint, &authority)?.validate("demo egress")?;
        let sidecar = Server::bind_with(&egress, policies.clone(), Arc::new(Metrics::new()?)).await?;
        let local = format!("http://{}/mcp", sidecar.mcp_addr());
        tasks.push(tokio::spawn(sidecar.run(until(stopped.clone()))));
        println!("\n{name}  {} — its MCP client holds no credential", agent.spiffe_id);
        println!("  sidecar      {local}: X.509-SVID for mTLS, JWT-SVID (aud {}) -> DPoP token", credentials::ISSUER);
        if let Err(e) = script(&Session { agent: &agent, url: &local, plain: Some(&plain) }).await {
            println!("  session failed: {e:#}");
        }
        agents.push(agent);
    }
    if let [trusted, _, untrusted] = &agents[..]
        && let Err(e) = attacks(trusted, untrusted, &url).await
    {
        println!("  credentials part failed: {e:#}");
    }
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    println!("\nEvery denial carries a decision id; run with --log-level info to see the decision log.");
    Ok(())
}

/// The sidecar next to one agent: plain HTTP on loopback for the agent, the pod's SVID
/// and a token it obtains itself towards the tool server's sidecar.
fn egress_config(
    files: &DemoFiles,
    agent: &Agent,
    ca: &TestCa,
    ingress: &str,
    token_endpoint: &str,
    authority: &JwtAuthority,
) -> anyhow::Result<Config> {
    let name = agent.spiffe_id.rsplit('/').next().unwrap_or("agent");
    let mut config = Config { listen: "127.0.0.1:0".into(), admin_listen: String::new(), ..Config::default() };
    config.upstream.url = Some(ingress.to_owned());
    config.upstream.spiffe_id = Some(SIDECAR_ID.into());
    config.policy.dir = Some(std::env::temp_dir());
    config.policy.expose_reasons = true;
    let identity = &mut config.identity;
    identity.source = "files".into();
    identity.files.cert = Some(files.write(&format!("{name}.pem"), &agent.svid.chain_pem())?);
    identity.files.key = Some(files.write(&format!("{name}.key"), &agent.svid.key_pem())?);
    identity.files.bundles.insert(TRUST_DOMAIN.into(), files.write(&format!("{name}-bundle.pem"), &ca.cert_pem())?);
    identity.trust_domains = vec![TRUST_DOMAIN.into()];
    // The agent is the pod's workload (docs/threat-model.md, the loopback rule).
    identity.local_spiffe_id = Some(agent.spiffe_id.clone());
    config.upstream.credentials = Some(crate::config::OutboundConfig {
        issuer: credentials::ISSUER.into(),
        token_endpoint: Some(token_endpoint.into()),
        // SPIRE would hand it out per request; the demo's lasts its 5 minutes.
        assertion_file: Some(files.write(&format!("{name}.jwt-svid"), &authority.jwt_svid(&agent.spiffe_id)?)?),
        public_url: Some(PUBLIC_URL.into()),
        ..Default::default()
    });
    Ok(config)
}

fn sidecar_config(files: &DemoFiles, svid: &Leaf, ca: &TestCa, upstream: &str, jwks: &Path) -> anyhow::Result<Config> {
    let mut config = Config { listen: "127.0.0.1:0".into(), admin_listen: String::new(), ..Config::default() };
    config.upstream.url = Some(upstream.to_owned());
    config.upstream.spiffe_id = Some(TOOL_SERVER_ID.into());
    config.policy.dir = Some(std::env::temp_dir());
    // The demo shows why: production keeps reasons in the decision log only.
    config.policy.expose_reasons = true;
    let identity = &mut config.identity;
    identity.source = "files".into();
    identity.files.cert = Some(files.write("svid.pem", &svid.chain_pem())?);
    identity.files.key = Some(files.write("svid.key", &svid.key_pem())?);
    identity.files.bundles.insert(TRUST_DOMAIN.into(), files.write("bundle.pem", &ca.cert_pem())?);
    identity.mtls = true;
    identity.trust_domains = vec![TRUST_DOMAIN.into()];
    config.auth.issuers =
        vec![IssuerConfig { issuer: credentials::ISSUER.into(), jwks_uri: None, jwks_file: Some(jwks.to_owned()) }];
    config.auth.public_url = Some(PUBLIC_URL.into());
    Ok(config)
}

/// The tool server's TLS: its SVID, and client certificates of the trust domain only.
fn tool_server_tls(ca: &TestCa, svid: &Leaf) -> anyhow::Result<TlsAccept> {
    let provider = crate::identity::tls::provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.clone())?;
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(svid.chain.clone(), svid.key_der())?;
    Ok(TlsAccept {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        timeout: Duration::from_secs(5),
        on_handshake: Some(crate::identity::on_handshake(Arc::new(Metrics::new()?))),
    })
}

/// One agent: its SVID in the TLS client, its token and DPoP key.
struct Agent {
    spiffe_id: String,
    /// What SPIRE issued the agent's pod (its sidecar presents it).
    svid: Leaf,
    /// Only the credential attacks use these directly: the agents' calls go through
    /// their sidecars with nothing.
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    token: String,
    key: SigningKey,
}

impl Agent {
    fn new(name: &str, ca: &TestCa, issuer: &DemoIssuer) -> anyhow::Result<Agent> {
        let spiffe_id = spiffe_id(name);
        let svid = ca.leaf(&LeafSpec::svid(&spiffe_id))?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert.clone())?;
        let tls = rustls::ClientConfig::builder_with_provider(crate::identity::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(svid.chain.clone(), svid.key_der())?;
        let connector = HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let key = SigningKey::generate()?;
        let token = issuer.token(PUBLIC_URL, &spiffe_id, &key.thumbprint()?)?;
        Ok(Agent { spiffe_id, svid, client, token, key })
    }

    fn proof(&self) -> anyhow::Result<String> {
        credentials::proof(&self.key, "POST", PUBLIC_URL, &self.token)
    }
}

/// One agent's calls in MCP 2026-07-28: discovery, the (filtered) tool list, one call
/// per tool category, and `write_file`'s confirmation round trip.
async fn script(session: &Session<'_>) -> anyhow::Result<()> {
    session.call(1, "server/discover", json!({})).await?;
    session.call(2, "tools/list", json!({})).await?;
    let calls = [
        ("read_file", json!({"path": "/workspace/README.md"})),
        ("read_file", json!({"path": "/workspace/../etc/shadow"})),
        ("write_file", json!({"path": "/workspace/notes.md"})),
        ("query_database", json!({"query": "SELECT count(*) FROM orders"})),
        ("call_api", json!({"endpoint": "/v1/inventory"})),
        ("execute_command", json!({"command": "uname -a"})),
        ("fetch_url", json!({"url": "https://api.example.com/status"})),
    ];
    for (n, (tool, arguments)) in (3..).zip(calls) {
        session.call(n, "tools/call", json!({"name": tool, "arguments": arguments})).await?;
    }
    Ok(())
}

/// What the sidecar refuses even with valid keys and certificates in the attacker's hand,
/// and a request whose headers say one thing and whose body another.
async fn attacks(trusted: &Agent, untrusted: &Agent, url: &str) -> anyhow::Result<()> {
    println!("\ncredentials  the trusted agent's token, presented four ways");
    let read = with_meta(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "read_file", "arguments": {"path": "/workspace/README.md"}}}));
    let honest = trusted.proof()?;
    let thief_key = SigningKey::generate()?;
    let stolen = credentials::proof(&thief_key, "POST", PUBLIC_URL, &trusted.token)?;
    // The untrusted agent signs a proof with the trusted agent's key (say it stole both):
    // the token's azp still names the trusted agent, and its certificate does not.
    let cross = trusted.proof()?;
    let cases = [
        ("token + fresh proof by the bound key", trusted, &honest),
        ("the same proof replayed", trusted, &honest),
        ("the token with another key's proof", trusted, &stolen),
        ("token and key used from another workload", untrusted, &cross),
    ];
    for (label, via, proof) in cases {
        let session = Session { agent: via, url, plain: None };
        let started = Instant::now();
        let (status, answer) = session.post_as(&read, &trusted.token, proof, &[]).await?;
        print_outcome(label, status, &answer, started.elapsed());
    }
    println!("\nheaders      the trusted agent's own credentials, headers that disagree with the body");
    let session = Session { agent: trusted, url, plain: None };
    let api = with_meta(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "call_api", "arguments": {"endpoint": "/v1/inventory"}}}));
    type Mismatch<'a> = (&'a str, &'a Value, &'a [(&'a str, &'a str)]);
    let cases: [Mismatch; 3] = [
        ("Mcp-Name says execute_command, the body read_file", &read, &[("mcp-name", "execute_command")]),
        ("Mcp-Param-Endpoint says /admin, the body /v1/inventory", &api, &[("mcp-param-endpoint", "/admin")]),
        ("MCP-Protocol-Version says 2025-11-25, _meta 2026-07-28", &read, &[("mcp-protocol-version", "2025-11-25")]),
    ];
    for (label, message, headers) in cases {
        let started = Instant::now();
        let (status, answer) = session.post_as(message, &trusted.token, &trusted.proof()?, headers).await?;
        print_outcome(label, status, &answer, started.elapsed());
    }
    Ok(())
}

fn print_outcome(label: &str, status: StatusCode, answer: &Value, elapsed: Duration) {
    let verdict = if status == StatusCode::OK && answer.get("result").is_some() { "allowed" } else { "refused" };
    let detail = answer["error"]["message"].as_str().unwrap_or_default();
    let code = answer["error"]["code"].as_i64().map(|c| format!(" {c}")).unwrap_or_default();
    println!("  {label:<56} {verdict:<8} {:>6} µs  HTTP {}{code} {detail}", elapsed.as_micros(), status.as_u16());
}

/// The `_meta` every 2026-07-28 request carries: the version and what the client can do
/// (form elicitations, which `write_file` asks for).
fn with_meta(mut message: Value) -> Value {
    message["params"]["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": MODERN_PROTOCOL_VERSION,
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}},
        "io.modelcontextprotocol/clientInfo": {"name": "mcp-pep-demo", "version": "1"},
    });
    message
}

/// The standard headers a 2026-07-28 client mirrors from the body.
fn mirrored_headers(message: &Value) -> Vec<(&'static str, String)> {
    let mut headers = vec![("mcp-protocol-version", MODERN_PROTOCOL_VERSION.to_owned())];
    if let Some(method) = message["method"].as_str() {
        headers.push(("mcp-method", method.to_owned()));
    }
    if let Some(name) = message["params"]["name"].as_str() {
        headers.push(("mcp-name", name.to_owned()));
    }
    if let Some(endpoint) = message["params"]["arguments"]["endpoint"].as_str() {
        headers.push(("mcp-param-endpoint", endpoint.to_owned()));
    }
    headers
}

/// An agent talking to a sidecar: no session, each request on its own credentials —
/// its sidecar's (`plain`: through its own egress sidecar, with nothing) or, for the
/// attacks, ones it presents itself.
struct Session<'a> {
    agent: &'a Agent,
    url: &'a str,
    plain: Option<&'a Client<HttpConnector, Full<Bytes>>>,
}

impl Session<'_> {
    /// One message: bare to the agent's own sidecar, else with its token and a proof.
    async fn post(&self, message: &Value) -> anyhow::Result<(StatusCode, Value, Duration)> {
        let started = Instant::now();
        let (status, value) = match self.plain {
            Some(client) => {
                let mut req = Request::post(self.url)
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream");
                for (name, value) in mirrored_headers(message) {
                    req = req.header(name, value);
                }
                let resp = client.request(req.body(Full::new(Bytes::from(message.to_string())))?).await?;
                let status = resp.status();
                let body = resp.into_body().collect().await?.to_bytes();
                (status, if body.is_empty() { Value::Null } else { serde_json::from_slice(&body)? })
            }
            None => self.post_as(message, &self.agent.token, &self.agent.proof()?, &[]).await?,
        };
        Ok((status, value, started.elapsed()))
    }

    /// One message with the given token and proof; `overrides` replace mirrored headers.
    async fn post_as(
        &self,
        message: &Value,
        token: &str,
        proof: &str,
        overrides: &[(&str, &str)],
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut req = Request::post(self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof);
        for (name, value) in mirrored_headers(message) {
            if !overrides.iter().any(|(n, _)| *n == name) {
                req = req.header(name, value);
            }
        }
        for (name, value) in overrides {
            req = req.header(*name, *value);
        }
        let resp = self.agent.client.request(req.body(Full::new(Bytes::from(message.to_string())))?).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let value = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body)? };
        Ok((status, value))
    }

    async fn call(&self, id: i64, method: &str, params: Value) -> anyhow::Result<()> {
        let label = match params.get("name").and_then(Value::as_str) {
            Some(tool) => format!("{tool} {}", params["arguments"]),
            None => method.to_owned(),
        };
        let mut message = with_meta(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let (_, mut answer, mut elapsed) = self.post(&message).await?;
        // Multi-round-trip: the server asks (the sidecar let the request through), the
        // agent answers in a retry with a new id, the same arguments and the server's state.
        if answer["result"]["resultType"] == "input_required" {
            let asked: Vec<String> = answer["result"]["inputRequests"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(key, r)| format!("{key}: {} {}", r["method"].as_str().unwrap_or("?"), r["params"]["message"]))
                .collect();
            println!(
                "  {label:<56} {:<8} {:>6} µs  the server asks {}",
                "asked",
                elapsed.as_micros(),
                asked.join(", ")
            );
            message["id"] = json!(id + 100);
            message["params"]["inputResponses"] = json!({"confirm": {"action": "accept", "content": {"ok": true}}});
            message["params"]["requestState"] = answer["result"]["requestState"].clone();
            (_, answer, elapsed) = self.post(&message).await?;
        }
        let (verdict, detail) = match (answer.get("result"), answer.get("error")) {
            (Some(result), _) => ("allowed", summary(method, result)),
            (_, Some(error)) => {
                let reasons: Vec<&str> =
                    error["data"]["reasons"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                ("denied", format!("{} {}", error["code"], reasons.join("; ")))
            }
            _ => ("?", String::new()),
        };
        println!("  {label:<56} {verdict:<8} {:>6} µs  {detail}", elapsed.as_micros());
        Ok(())
    }
}

fn summary(method: &str, result: &Value) -> String {
    let cache = || format!("cacheScope {} ttlMs {}", result["cacheScope"], result["ttlMs"]);
    match method {
        "server/discover" => format!("versions {} ({})", result["supportedVersions"], cache()),
        "tools/list" => {
            let names: Vec<&str> =
                result["tools"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
            format!("{} tools: {} ({})", names.len(), names.join(", "), cache())
        }
        "tools/call" => result["content"][0]["text"].as_str().unwrap_or_default().to_owned(),
        _ => String::new(),
    }
}
