//! A small MCP tool server (Streamable HTTP, 2026-07-28 and 2025-11-25, chosen per
//! request by `MCP-Protocol-Version`) with one tool per category of the trust model. Its
//! tools only describe what they would do: the demo never touches files, databases or
//! the network. It doubles as the benchmark upstream.
//!
//! On 2026-07-28 it also shows what the sidecar checks on the way back: lists marked
//! `cacheScope: "public"` for an hour (the sidecar makes them private and short),
//! `call_api`'s `endpoint` mirrored to `Mcp-Param-Endpoint`, and `write_file` asking
//! for confirmation by a form elicitation (`input_required`) before it "writes".

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, ValueEnum};
use futures_util::stream;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::body::{Body, BodyError, full, json_response};
use crate::listener::{self, ListenerOptions};

pub const PROTOCOL_VERSION: &str = "2025-11-25";
pub const MODERN_PROTOCOL_VERSION: &str = "2026-07-28";

/// The tools, as (name, category, description, argument name).
pub const TOOLS: &[(&str, &str, &str, &str)] = &[
    ("read_file", "filesystem", "Read a file under the workspace (simulated).", "path"),
    ("write_file", "filesystem", "Write a file under the workspace (simulated).", "path"),
    ("query_database", "database", "Run a read-only SQL query (simulated).", "query"),
    ("call_api", "api", "Call an internal REST API (simulated).", "endpoint"),
    ("execute_command", "shell", "Run a shell command (simulated, never executed).", "command"),
    ("fetch_url", "network", "Fetch an external URL (simulated, never fetched).", "url"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ResponseMode {
    /// Answer requests with `application/json`.
    #[default]
    Json,
    /// Answer requests with a one-event `text/event-stream`.
    Sse,
}

#[derive(Args, Clone)]
pub struct DemoServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// How requests are answered.
    #[arg(long, value_enum, default_value_t = ResponseMode::Json)]
    pub mode: ResponseMode,
    /// Tools in `tools/list`: the six real ones, then generated `tool_NNN` (list-size
    /// benchmarks; the shipped catalog does not know them).
    #[arg(long, default_value_t = TOOLS.len())]
    pub tools: usize,
    /// Events in an SSE `tools/call` answer (`--mode sse`): `notifications/message`
    /// events before the result (streaming benchmarks).
    #[arg(long, default_value_t = 1)]
    pub sse_events: usize,
}

pub async fn run_demo_server(args: DemoServerArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen).await?;
    println!(
        "demo-server listening on http://{}/mcp ({:?} responses, {} tools)",
        listener.local_addr()?,
        args.mode,
        args.tools
    );
    DemoServer::new(args.mode)
        .with_tools(args.tools)
        .with_sse_events(args.sse_events)
        .serve(listener, None, listener::shutdown_signal())
        .await;
    Ok(())
}

#[derive(Clone)]
pub struct DemoServer {
    mode: ResponseMode,
    sessions: Arc<Mutex<HashSet<String>>>,
    /// `tools/list`'s items, made once.
    tools: Arc<Vec<Value>>,
    sse_events: usize,
}

impl Default for DemoServer {
    fn default() -> Self {
        DemoServer::new(ResponseMode::default())
    }
}

impl DemoServer {
    pub fn new(mode: ResponseMode) -> Self {
        DemoServer { mode, sessions: Arc::default(), tools: Arc::new(tool_list(TOOLS.len())), sse_events: 1 }
    }

    /// Lists `n` tools: the real ones first, then generated ones.
    pub fn with_tools(mut self, n: usize) -> Self {
        self.tools = Arc::new(tool_list(n));
        self
    }

    /// Answers an SSE `tools/call` with `n` events (at least the result).
    pub fn with_sse_events(mut self, n: usize) -> Self {
        self.sse_events = n.max(1);
        self
    }

    /// Serves plain HTTP, or HTTPS when `tls` is given (an mTLS upstream in tests and the demo).
    pub async fn serve(
        self,
        listener: TcpListener,
        tls: Option<listener::TlsAccept>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let service = tower::service_fn(move |req: Request<Body>| {
            let this = self.clone();
            async move { Ok::<_, Infallible>(this.handle(req).await) }
        });
        let options = ListenerOptions { shutdown_grace: Duration::from_millis(200), ..Default::default() };
        listener::serve(listener, service, options, tls, shutdown).await;
    }

    async fn handle(&self, req: Request<Body>) -> Response<Body> {
        if req.uri().path() != "/mcp" {
            return status(StatusCode::NOT_FOUND);
        }
        let modern = req.headers().get("mcp-protocol-version").is_some_and(|v| v == MODERN_PROTOCOL_VERSION);
        let session = req.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let known =
            |s: &Option<String>| s.as_ref().is_some_and(|s| self.sessions.lock().is_ok_and(|set| set.contains(s)));
        match *req.method() {
            Method::GET if known(&session) => keepalive_stream(),
            Method::DELETE if known(&session) => {
                if let (Some(s), Ok(mut set)) = (&session, self.sessions.lock()) {
                    set.remove(s);
                }
                status(StatusCode::OK)
            }
            Method::GET | Method::DELETE if modern => status(StatusCode::METHOD_NOT_ALLOWED),
            Method::GET | Method::DELETE => status(StatusCode::NOT_FOUND),
            Method::POST => {
                let Ok(body) = req.into_body().collect().await else {
                    return status(StatusCode::BAD_REQUEST);
                };
                let Ok(message) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
                    return json_response(StatusCode::BAD_REQUEST, &error(Value::Null, -32700, "parse error"));
                };
                let method = message.get("method").and_then(Value::as_str).unwrap_or_default();
                if !modern && method != "initialize" && !known(&session) {
                    return status(StatusCode::NOT_FOUND);
                }
                let Some(id) = message.get("id").cloned() else {
                    return status(StatusCode::ACCEPTED); // notifications and responses
                };
                if modern {
                    let (code, answer) = answer_modern(method, id, message.get("params"), &self.tools);
                    let mut resp = self.respond(&answer, method == "tools/call");
                    *resp.status_mut() = code;
                    return resp;
                }
                let (answer, new_session) = self.answer(method, id, message.get("params"));
                let mut resp = self.respond(&answer, method == "tools/call");
                if let Some(s) = new_session.and_then(|s| HeaderValue::from_str(&s).ok()) {
                    resp.headers_mut().insert("mcp-session-id", s);
                }
                resp
            }
            _ => status(StatusCode::METHOD_NOT_ALLOWED),
        }
    }

    fn answer(&self, method: &str, id: Value, params: Option<&Value>) -> (Value, Option<String>) {
        let result = match method {
            "initialize" => {
                let session = uuid::Uuid::new_v4().to_string();
                if let Ok(mut set) = self.sessions.lock() {
                    set.insert(session.clone());
                }
                let result = json!({
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "mcp-pep-demo-server", "version": env!("CARGO_PKG_VERSION")},
                });
                return (json!({"jsonrpc": "2.0", "id": id, "result": result}), Some(session));
            }
            "ping" => json!({}),
            "tools/list" => json!({"tools": *self.tools}),
            "tools/call" => match call_result(params) {
                Ok(result) => result,
                Err(message) => return (error(id, -32602, &message), None),
            },
            _ => {
                return (error(id, -32601, &format!("method {method:?} not found")), None);
            }
        };
        (json!({"jsonrpc": "2.0", "id": id, "result": result}), None)
    }

    fn respond(&self, message: &Value, call: bool) -> Response<Body> {
        match self.mode {
            ResponseMode::Json => json_response(StatusCode::OK, message),
            ResponseMode::Sse => {
                let mut event = String::new();
                let before = if call { self.sse_events - 1 } else { 0 };
                for k in 1..=before {
                    let note = json!({"jsonrpc": "2.0", "method": "notifications/message",
                        "params": {"level": "info", "logger": "demo", "data": format!("step {k} of {before}")}});
                    event.push_str(&format!("event: message\nid: {k}\ndata: {note}\n\n"));
                }
                event.push_str(&format!("event: message\nid: {}\ndata: {message}\n\n", before + 1));
                let mut resp = Response::new(full(event));
                resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
                resp
            }
        }
    }
}

/// A 2026-07-28 answer and its HTTP status.
fn answer_modern(method: &str, id: Value, params: Option<&Value>, tools: &[Value]) -> (StatusCode, Value) {
    let hour = 3_600_000;
    let result = match method {
        "server/discover" => json!({
            "supportedVersions": [MODERN_PROTOCOL_VERSION, PROTOCOL_VERSION],
            "capabilities": {"tools": {}},
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "mcp-pep-demo-server", "version": env!("CARGO_PKG_VERSION")}},
            "cacheScope": "public",
            "ttlMs": hour,
            "resultType": "complete",
        }),
        "tools/list" => json!({"tools": tools, "cacheScope": "public", "ttlMs": hour, "resultType": "complete"}),
        "tools/call" => {
            let name = params.and_then(|p| p.get("name")).and_then(Value::as_str).unwrap_or_default();
            let confirmed = params
                .and_then(|p| p.get("inputResponses")?.get("confirm")?.get("action")?.as_str())
                .is_some_and(|a| a == "accept");
            if name == "write_file" && !confirmed {
                let path = params.and_then(|p| p["arguments"]["path"].as_str()).unwrap_or_default();
                let ask = json!({"method": "elicitation/create", "params": {
                    "mode": "form",
                    "message": format!("Write {path}?"),
                    "requestedSchema": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
                }});
                let result = json!({"resultType": "input_required", "inputRequests": {"confirm": ask}, "requestState": "write-1"});
                return (StatusCode::OK, json!({"jsonrpc": "2.0", "id": id, "result": result}));
            }
            match call_result(params) {
                Ok(mut result) => {
                    result["resultType"] = json!("complete");
                    result
                }
                Err(message) => return (StatusCode::OK, error(id, -32602, &message)),
            }
        }
        _ => return (StatusCode::NOT_FOUND, error(id, -32601, &format!("method {method:?} not found"))),
    };
    (StatusCode::OK, json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

/// A simulated tool call: what the tool would have done.
fn call_result(params: Option<&Value>) -> Result<Value, String> {
    let name = params.and_then(|p| p.get("name")).and_then(Value::as_str).unwrap_or_default();
    let Some((_, category, _, arg)) = TOOLS.iter().find(|t| t.0 == name) else {
        return Err(format!("unknown tool {name:?}"));
    };
    let value = params.and_then(|p| p.get("arguments")).and_then(|a| a.get(*arg)).cloned().unwrap_or(Value::Null);
    let text = format!("[{category}] {name}({arg}={value}) — simulated by the demo server");
    Ok(json!({"content": [{"type": "text", "text": text}], "isError": false}))
}

/// The real tools, then generated ones up to `n` in all.
fn tool_list(n: usize) -> Vec<Value> {
    let mut tools: Vec<Value> = TOOLS.iter().take(n).map(|t| tool_json(*t)).collect();
    for k in tools.len() + 1..=n {
        let name = format!("tool_{k:03}");
        tools.push(tool_json((&name, "filesystem", "A generated tool (simulated), for list-size benchmarks.", "path")));
    }
    tools
}

fn tool_json((name, category, description, arg): (&str, &str, &str, &str)) -> Value {
    let mut property = json!({"type": "string"});
    // SEP-2243: a gateway may route on the endpoint without reading the body.
    if name == "call_api" {
        property["x-mcp-header"] = json!("Endpoint");
    }
    json!({
        "name": name,
        "description": description,
        "inputSchema": {"type": "object", "properties": {arg: property}, "required": [arg]},
        "_meta": {"category": category},
    })
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn status(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(crate::body::empty());
    *resp.status_mut() = status;
    resp
}

/// The server→client stream of a session: a comment every 10 s keeps proxies from
/// timing it out; this server never pushes requests.
fn keepalive_stream() -> Response<Body> {
    let frames = stream::unfold(true, |first| async move {
        if !first {
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        Some((Ok::<_, BodyError>(Frame::data(Bytes::from_static(b": keep-alive\n\n"))), false))
    });
    let mut resp = Response::new(StreamBody::new(frames).boxed_unsync());
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2026-07-28 POST (no session needed): status and body text.
    async fn post(server: &DemoServer, body: Value) -> (StatusCode, String) {
        let req = Request::post("/mcp")
            .header("mcp-protocol-version", MODERN_PROTOCOL_VERSION)
            .body(full(body.to_string()))
            .expect("request");
        let resp = server.handle(req).await;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn list() -> Value {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}})
    }

    fn call() -> Value {
        json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
            "params": {"name": "read_file", "arguments": {"path": "/workspace/a"}}})
    }

    #[tokio::test]
    async fn lists_as_many_tools_as_asked() {
        // tools -> (count, first, last)
        let cases = [
            (6, "read_file", "fetch_url"),
            (50, "read_file", "tool_050"),
            (7, "read_file", "tool_007"),
            (2, "read_file", "write_file"),
        ];
        for (n, first, last) in cases {
            let server = DemoServer::new(ResponseMode::Json).with_tools(n);
            let (status, text) = post(&server, list()).await;
            assert_eq!(status, StatusCode::OK);
            let v: Value = serde_json::from_str(&text).expect("JSON");
            let names: Vec<&str> =
                v["result"]["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
            assert_eq!(names.len(), n, "{n}");
            assert_eq!((names[0], names[n - 1]), (first, last));
            let unique: HashSet<&str> = names.iter().copied().collect();
            assert_eq!(unique.len(), n, "names are unique");
        }
    }

    #[tokio::test]
    async fn an_sse_call_answer_has_the_events_asked_for_result_last() {
        for n in [1, 2, 100] {
            let server = DemoServer::new(ResponseMode::Sse).with_sse_events(n);
            let (status, text) = post(&server, call()).await;
            assert_eq!(status, StatusCode::OK);
            let data: Vec<Value> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .map(|d| serde_json::from_str(d).expect("event JSON"))
                .collect();
            assert_eq!(data.len(), n, "{n} events");
            assert_eq!(data[n - 1]["id"], 9, "the result comes last");
            assert!(data[n - 1]["result"]["content"].is_array());
            assert!(data[..n - 1].iter().all(|e| e["method"] == "notifications/message" && e.get("id").is_none()));
        }
        // Only tool calls stream: a list stays one event.
        let server = DemoServer::new(ResponseMode::Sse).with_sse_events(100);
        let (_, text) = post(&server, list()).await;
        assert_eq!(text.matches("data: ").count(), 1);
    }
}
