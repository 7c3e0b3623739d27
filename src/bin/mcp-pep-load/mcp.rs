//! MCP over Streamable HTTP as an agent speaks it: the JSON-RPC body and headers of each
//! request (2025-11-25 with the session `initialize` opened, or 2026-07-28 stateless with
//! `_meta` and the standard headers), its credentials, and the answer read to the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use data_encoding::BASE64;
use http::{HeaderName, HeaderValue, Request, Uri, header};
use http_body_util::{BodyExt, Full};

use crate::conn::{Connector, ReqBody, Sender};
use crate::jws::ProofTemplate;
use crate::proofs::ProofPool;
use crate::sched::{Outcome, Worker};

pub const LEGACY: &str = "2025-11-25";
pub const MODERN: &str = "2026-07-28";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Era {
    /// 2025-11-25: a session from `initialize`, `Mcp-Session-Id` on every request.
    Legacy,
    /// 2026-07-28: stateless; `_meta`, `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`.
    Modern,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Method {
    #[value(name = "tools/call")]
    #[serde(rename = "tools/call")]
    ToolsCall,
    #[value(name = "tools/list")]
    #[serde(rename = "tools/list")]
    ToolsList,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::ToolsCall => "tools/call",
            Method::ToolsList => "tools/list",
        }
    }
}

pub enum Auth {
    None,
    Bearer(String),
    /// `Authorization: DPoP <token>` and a fresh proof from the pool on every request.
    Dpop {
        token: String,
        pool: Arc<ProofPool<ProofTemplate>>,
    },
}

/// What every request of a run looks like.
pub struct Shape {
    pub era: Era,
    pub method: Method,
    pub tool: String,
    /// The `arguments` JSON; with `vary`, every `{n}` becomes the request's number.
    pub arguments: String,
    pub vary: bool,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Shape {
    /// Refuses arguments that are not a JSON object (with `{n}` filled in).
    pub fn check(&self) -> anyhow::Result<()> {
        let sample = self.arguments.replace("{n}", "0");
        let value: serde_json::Value =
            serde_json::from_str(&sample).with_context(|| format!("--arguments {sample:?} is not JSON"))?;
        if !value.is_object() {
            bail!("--arguments must be a JSON object");
        }
        if self.vary && !self.arguments.contains("{n}") {
            bail!("--vary-arguments needs a {{n}} in --arguments, e.g. '{{\"path\":\"/workspace/f-{{n}}.txt\"}}'");
        }
        Ok(())
    }

    /// The JSON-RPC body of request `i` (its id is `i + 1`).
    pub fn body(&self, i: u64) -> String {
        let id = i + 1;
        let meta = match self.era {
            Era::Legacy => String::new(),
            Era::Modern => format!(
                r#""_meta":{{"io.modelcontextprotocol/protocolVersion":"{MODERN}","io.modelcontextprotocol/clientCapabilities":{{}}}}"#
            ),
        };
        let params = match self.method {
            Method::ToolsList => meta,
            Method::ToolsCall => {
                let tool = serde_json::Value::from(self.tool.as_str());
                let arguments =
                    if self.vary { self.arguments.replace("{n}", &i.to_string()) } else { self.arguments.clone() };
                let sep = if meta.is_empty() { "" } else { "," };
                format!(r#""name":{tool},"arguments":{arguments}{sep}{meta}"#)
            }
        };
        format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{}","params":{{{params}}}}}"#, self.method.name())
    }
}

/// A header value as 2026-07-28 sends it: plain when it is printable ASCII, else base64.
fn header_value(value: &str) -> HeaderValue {
    if value.bytes().all(|b| (0x21..0x7f).contains(&b))
        && let Ok(v) = HeaderValue::from_str(value)
    {
        return v;
    }
    HeaderValue::from_str(&format!("=?base64?{}?=", BASE64.encode(value.as_bytes())))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Everything the connections of one run share.
pub struct Client {
    pub connector: Connector,
    pub url: Uri,
    pub shape: Shape,
    pub auth: Auth,
    pub session: Option<HeaderValue>,
    pub new_connection: bool,
    pub timeout: Duration,
    /// SSE events and answers seen (for events per answer).
    pub events: AtomicU64,
    pub answers: AtomicU64,
}

impl Client {
    fn request(&self, body: String, method_header: &str, name: Option<&str>) -> Result<Request<ReqBody>, String> {
        let mut req = Request::post(if self.connector.is_h2() {
            self.url.clone()
        } else {
            self.url.path_and_query().map_or("/", |p| p.as_str()).parse().map_err(|_| "url".to_owned())?
        });
        let headers = req.headers_mut().ok_or("request")?;
        if !self.connector.is_h2() {
            let host = self.url.authority().map(|a| a.as_str()).unwrap_or_default();
            headers.insert(header::HOST, HeaderValue::from_str(host).map_err(|_| "host".to_owned())?);
        }
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
        match self.shape.era {
            Era::Legacy => {
                headers.insert("mcp-protocol-version", HeaderValue::from_static(LEGACY));
                if let Some(session) = &self.session {
                    headers.insert("mcp-session-id", session.clone());
                }
            }
            Era::Modern => {
                headers.insert("mcp-protocol-version", HeaderValue::from_static(MODERN));
                headers.insert("mcp-method", header_value(method_header));
                if let Some(name) = name {
                    headers.insert("mcp-name", header_value(name));
                }
            }
        }
        match &self.auth {
            Auth::None => {}
            Auth::Bearer(token) => {
                headers.insert(
                    header::AUTHORIZATION,
                    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| "token".to_owned())?,
                );
            }
            Auth::Dpop { token, pool } => {
                let proof = pool.take().map_err(|_| "proof_signing".to_owned())?;
                headers.insert(
                    header::AUTHORIZATION,
                    HeaderValue::from_str(&format!("DPoP {token}")).map_err(|_| "token".to_owned())?,
                );
                headers.insert("dpop", HeaderValue::from_str(&proof).map_err(|_| "proof".to_owned())?);
            }
        }
        for (name, value) in &self.shape.headers {
            headers.insert(name.clone(), value.clone());
        }
        req.body(Full::new(Bytes::from(body))).map_err(|_| "request".to_owned())
    }

    /// Request `i` of the run.
    fn call_request(&self, i: u64) -> Result<Request<ReqBody>, String> {
        let name = (self.shape.method == Method::ToolsCall).then_some(self.shape.tool.as_str());
        self.request(self.shape.body(i), self.shape.method.name(), name)
    }

    /// Sends `req` on `sender` and reads the answer to its end.
    async fn exchange(
        &self,
        sender: &mut Sender,
        req: Request<ReqBody>,
    ) -> Result<(http::response::Parts, Bytes), String> {
        let work = async {
            let resp = sender.send(req).await?;
            let (parts, body) = resp.into_parts();
            let bytes = body.collect().await.map_err(|_| "body".to_owned())?.to_bytes();
            Ok((parts, bytes))
        };
        tokio::time::timeout(self.timeout, work).await.map_err(|_| "timeout".to_owned())?
    }

    /// Opens an MCP session (2025-11-25): `initialize`, then `notifications/initialized`.
    /// Returns the session id, if the server gave one.
    pub async fn open_session(&self) -> anyhow::Result<Option<HeaderValue>> {
        let mut sender = self.connector.connect().await.map_err(|e| anyhow!("connecting: {e}"))?;
        let init = format!(
            r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{LEGACY}","capabilities":{{}},"clientInfo":{{"name":"mcp-pep-load","version":"{}"}}}}}}"#,
            env!("CARGO_PKG_VERSION")
        );
        let req = self.request(init, "initialize", None).map_err(|e| anyhow!("initialize: {e}"))?;
        let (parts, body) = self.exchange(&mut sender, req).await.map_err(|e| anyhow!("initialize: {e}"))?;
        if !parts.status.is_success() {
            bail!("initialize answered {}: {}", parts.status, String::from_utf8_lossy(&body));
        }
        let session = parts.headers.get("mcp-session-id").cloned();
        let client = Client { session: session.clone(), ..self.shallow() };
        let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned();
        let req = client.request(note, "notifications/initialized", None).map_err(|e| anyhow!("initialized: {e}"))?;
        let (parts, body) = self.exchange(&mut sender, req).await.map_err(|e| anyhow!("initialized: {e}"))?;
        if !parts.status.is_success() {
            bail!("notifications/initialized answered {}: {}", parts.status, String::from_utf8_lossy(&body));
        }
        Ok(session)
    }

    /// A copy for one exchange with other settings (the proof pool is shared).
    fn shallow(&self) -> Client {
        Client {
            connector: self.connector.clone(),
            url: self.url.clone(),
            shape: Shape {
                era: self.shape.era,
                method: self.shape.method,
                tool: self.shape.tool.clone(),
                arguments: self.shape.arguments.clone(),
                vary: self.shape.vary,
                headers: self.shape.headers.clone(),
            },
            auth: match &self.auth {
                Auth::None => Auth::None,
                Auth::Bearer(t) => Auth::Bearer(t.clone()),
                Auth::Dpop { token, pool } => Auth::Dpop { token: token.clone(), pool: pool.clone() },
            },
            session: self.session.clone(),
            new_connection: self.new_connection,
            timeout: self.timeout,
            events: AtomicU64::new(0),
            answers: AtomicU64::new(0),
        }
    }
}

/// Whether an answer is a success: 200, a JSON-RPC result (every event read for SSE), no
/// JSON-RPC error, no tool error.
pub fn judge(status: http::StatusCode, sse: bool, body: &[u8]) -> Result<u64, String> {
    if status != http::StatusCode::OK {
        return Err(format!("status_{}", status.as_u16()));
    }
    let text = String::from_utf8_lossy(body);
    let events = if sse { text.lines().filter(|l| l.starts_with("data:")).count() as u64 } else { 0 };
    if sse && events == 0 {
        return Err("sse_no_events".into());
    }
    if text.contains(r#""error":{"#) {
        return Err("jsonrpc_error".into());
    }
    if text.contains(r#""isError":true"#) {
        return Err("tool_error".into());
    }
    if !text.contains(r#""result":"#) {
        return Err("no_result".into());
    }
    Ok(events)
}

/// One connection of the run.
pub struct McpWorker {
    client: Arc<Client>,
    sender: Option<Sender>,
}

impl McpWorker {
    pub fn new(client: Arc<Client>) -> McpWorker {
        McpWorker { client, sender: None }
    }
}

impl Worker for McpWorker {
    async fn call(&mut self, i: u64) -> Outcome {
        let client = self.client.clone();
        let req = client.call_request(i)?;
        let mut sender = match self.sender.take() {
            Some(s) => s,
            None => client.connector.connect().await?,
        };
        let (parts, body) = client.exchange(&mut sender, req).await?;
        if !client.new_connection {
            self.sender = Some(sender);
        }
        let sse =
            parts.headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let events = judge(parts.status, sse, &body)?;
        client.events.fetch_add(events, Ordering::Relaxed);
        client.answers.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(era: Era, method: Method, vary: bool) -> Shape {
        Shape {
            era,
            method,
            tool: "read_file".into(),
            arguments: r#"{"path":"/workspace/f-{n}.txt"}"#.into(),
            vary,
            headers: Vec::new(),
        }
    }

    #[test]
    fn bodies_per_era_method_and_argument_mode() {
        let meta = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;
        let cases = [
            (
                shape(Era::Legacy, Method::ToolsCall, true),
                7,
                r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/workspace/f-7.txt"}}}"#.to_owned(),
            ),
            (
                shape(Era::Legacy, Method::ToolsCall, false),
                7,
                r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/workspace/f-{n}.txt"}}}"#.to_owned(),
            ),
            (
                shape(Era::Modern, Method::ToolsCall, true),
                0,
                format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"read_file","arguments":{{"path":"/workspace/f-0.txt"}},{meta}}}}}"#),
            ),
            (shape(Era::Legacy, Method::ToolsList, false), 2, r#"{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{}}"#.to_owned()),
            (
                shape(Era::Modern, Method::ToolsList, false),
                2,
                format!(r#"{{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{{{meta}}}}}"#),
            ),
        ];
        for (shape, i, want) in cases {
            let body = shape.body(i);
            assert_eq!(body, want);
            serde_json::from_str::<serde_json::Value>(&body).expect("valid JSON");
        }
    }

    #[test]
    fn argument_checks() {
        let mut s = shape(Era::Legacy, Method::ToolsCall, true);
        assert!(s.check().is_ok());
        s.arguments = r#"{"path":"/workspace/a"}"#.into();
        assert!(s.check().is_err(), "vary without {{n}}");
        s.vary = false;
        assert!(s.check().is_ok());
        s.arguments = "[1]".into();
        assert!(s.check().is_err(), "not an object");
        s.arguments = "{".into();
        assert!(s.check().is_err(), "not JSON");
    }

    #[test]
    fn answers_are_judged() {
        use http::StatusCode as S;
        let ok = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":false}}"#.as_slice();
        let sse = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n".as_slice();
        /// (status, SSE, body) -> events or the error kind
        type Case<'a> = (S, bool, &'a [u8], Result<u64, &'a str>);
        let cases: [Case; 8] = [
            (S::OK, false, ok, Ok(0)),
            (S::OK, true, sse, Ok(2)),
            (S::OK, true, b": keep-alive\n\n", Err("sse_no_events")),
            (S::UNAUTHORIZED, false, ok, Err("status_401")),
            (S::FORBIDDEN, false, br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32001}}"#, Err("status_403")),
            (
                S::OK,
                false,
                br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"denied"}}"#,
                Err("jsonrpc_error"),
            ),
            (S::OK, false, br#"{"jsonrpc":"2.0","id":1,"result":{"isError":true}}"#, Err("tool_error")),
            (S::OK, false, b"{}", Err("no_result")),
        ];
        for (status, is_sse, body, want) in cases {
            assert_eq!(judge(status, is_sse, body), want.map_err(str::to_owned), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn header_values_are_base64_when_not_plain_ascii() {
        assert_eq!(header_value("read_file"), "read_file");
        assert_eq!(header_value("grüße"), "=?base64?Z3LDvMOfZQ==?=");
    }
}
