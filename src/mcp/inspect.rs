//! The inspection layer: reads the body once (bounded), parses it strictly, and hands
//! the typed [`McpRequest`] on as a request extension with the original bytes as body.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, Request, header};
use http_body_util::{BodyExt, Limited};
use tower::Service;

use super::era::{self, UpstreamVersions};
use super::jsonrpc::{InspectError, PostHeaders, parse_body};
use super::mirror::{ParamMirrors, Unverified};
use crate::body::{Body, full};
use crate::context::{Era, McpMessage, McpRequest, MessageKind, MethodLabel};
use crate::error::Rejection;
use crate::metrics::Metrics;
use crate::stage::{Next, PipelineStage, StageFuture};

/// Defaults: 1 MiB body, 64 levels of nesting, 30 s for the body to arrive.
#[derive(Debug, Clone, Copy)]
pub struct InspectLimits {
    pub max_body_bytes: usize,
    pub max_depth: usize,
    /// From the end of the headers to the body's last byte: a client trickling a body
    /// holds a connection and a buffer, so it is cut (408) rather than waited for.
    pub body_read_timeout: Duration,
}

impl Default for InspectLimits {
    fn default() -> Self {
        InspectLimits { max_body_bytes: 1024 * 1024, max_depth: 64, body_read_timeout: Duration::from_secs(30) }
    }
}

/// What inspection checks against that only answers tell: the tools' mirrored headers
/// and the tool server's versions (learned by the answer filter, shared with it).
#[derive(Clone, Default)]
pub struct MirrorCheck {
    /// From forwarded `tools/list` answers.
    pub mirrors: Arc<ParamMirrors>,
    /// From forwarded `server/discover` answers.
    pub versions: Arc<UpstreamVersions>,
    pub unverified: Unverified,
}

/// The inspection stage.
#[derive(Clone)]
pub struct InspectStage {
    limits: InspectLimits,
    mirror: MirrorCheck,
}

impl InspectStage {
    pub fn new(limits: InspectLimits, mirror: MirrorCheck) -> Self {
        InspectStage { limits, mirror }
    }
}

impl PipelineStage for InspectStage {
    fn call(&self, req: Request<Body>, mut next: Next) -> StageFuture {
        let limits = self.limits;
        let mirror = self.mirror.clone();
        Box::pin(async move {
            let modern_header = era::header_is_modern(req.headers());
            let req = match inspect(req, limits, &mirror).await {
                Ok(req) => req,
                Err(e) => {
                    let mut rejection = Rejection::from(e);
                    rejection.era = if modern_header { Era::Modern } else { Era::Legacy };
                    return Err(rejection);
                }
            };
            let (label, era) =
                req.extensions().get::<McpRequest>().map_or(("none", Era::Legacy), |m| (method_label(m), m.era));
            match next.call(req).await {
                Ok(mut resp) => {
                    resp.extensions_mut().insert(MethodLabel(label));
                    Ok(resp)
                }
                Err(mut rejection) => {
                    rejection.method = label;
                    rejection.era = era;
                    Err(rejection)
                }
            }
        })
    }
}

/// Reads and classifies one request; the returned request carries an [`McpRequest`].
pub async fn inspect(
    req: Request<Body>,
    limits: InspectLimits,
    mirror: &MirrorCheck,
) -> Result<Request<Body>, InspectError> {
    let (mut parts, body) = req.into_parts();
    check_connection(&parts.headers)?;
    let session_id = mcp_header(&parts.headers, "mcp-session-id")?.map(Arc::from);
    // MCP: a session id is visible ASCII (0x21-0x7E); a space or tab would split it for
    // some parsers, so the tool server could read another id than the one bound.
    if session_id.as_deref().is_some_and(|id: &str| !id.bytes().all(|b| b.is_ascii_graphic())) {
        return Err(InspectError::BadHeader { header: "mcp-session-id", problem: "not visible ASCII" });
    }
    let protocol_version = mcp_header(&parts.headers, "mcp-protocol-version")?.map(Arc::<str>::from);
    let mcp = match parts.method {
        Method::POST => {
            if !is_json(&parts.headers) {
                return Err(InspectError::UnsupportedMediaType);
            }
            let bytes = read_bounded(&parts.headers, body, &limits).await?;
            let headers = PostHeaders {
                session_id,
                protocol_version,
                mcp_method: mcp_header(&parts.headers, "mcp-method")?.map(str::to_owned),
                mcp_name: mcp_header(&parts.headers, "mcp-name")?.map(str::to_owned),
            };
            let mcp = parse_body(bytes, headers, limits.max_depth).map_err(|e| match e {
                InspectError::UnsupportedVersion { requested, supported: None, id } => {
                    InspectError::UnsupportedVersion { requested, supported: Some(mirror.versions.supported()), id }
                }
                other => other,
            })?;
            let mut mcp = mcp;
            check_mirrors(&mut mcp, &mut parts.headers, mirror)?;
            if mcp.era == Era::Modern {
                // No sessions in 2026-07-28: an id here was never bound to this caller, so
                // it must not reach a dual-era server that might still honour it.
                parts.headers.remove("mcp-session-id");
            }
            mcp
        }
        Method::GET | Method::DELETE => {
            let kind = if parts.method == Method::GET { MessageKind::Stream } else { MessageKind::SessionEnd };
            // 2026-07-28 has no GET stream and no session to end (a modern server answers 405).
            if protocol_version.as_deref().and_then(era::era_of) == Some(Era::Modern) {
                return Err(InspectError::MethodNotAllowed { allow: "POST" });
            }
            McpRequest {
                messages: vec![McpMessage::bare(kind)],
                batch: false,
                session_id,
                protocol_version,
                era: Era::Legacy,
                unverified_mirror: None,
                body: Default::default(),
            }
        }
        _ => return Err(InspectError::MethodNotAllowed { allow: "GET, POST, DELETE" }),
    };
    let body = if parts.method == Method::POST { full(mcp.body.clone()) } else { crate::body::empty() };
    parts.extensions.insert(mcp);
    Ok(Request::from_parts(parts, body))
}

/// `Mcp-Param-*` headers of a `tools/call` say what its body says (both eras: a
/// dual-era server may read them either way).
fn check_mirrors(mcp: &mut McpRequest, headers: &mut HeaderMap, mirror: &MirrorCheck) -> Result<(), InspectError> {
    let [message] = mcp.messages.as_slice() else { return Ok(()) };
    if message.method.as_deref() != Some("tools/call") {
        return Ok(());
    }
    let tool = message.target.as_deref().unwrap_or_default();
    // Legacy clients do not mirror: only the mirrors they do send must agree.
    let strict = mcp.era == Era::Modern;
    let (arguments, id) = (message.arguments.as_ref(), message.id.as_ref());
    match mirror.mirrors.check(tool, arguments, headers, mirror.unverified, strict, id) {
        Ok(strip) => {
            for name in strip {
                headers.remove(name);
            }
            Ok(())
        }
        // Refused after policy (`unverified_mirror`): a denied call is answered as denied.
        Err(InspectError::ParamMismatch { header, problem, .. }) if problem == super::mirror::UNVERIFIED => {
            mcp.unverified_mirror = Some(header.into());
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// An MCP header the proxy decides on. It is forwarded as sent, so it must read one
/// way only: a repeated or non-visible-ASCII value is refused rather than ignored.
fn mcp_header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, InspectError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(InspectError::BadHeader { header: name, problem: "repeated" });
    }
    first.to_str().map(Some).map_err(|_| InspectError::BadHeader { header: name, problem: "not visible ASCII" })
}

/// `Connection` may not name a header the decision read: the proxy would strip it as
/// hop-by-hop, and the tool server would act without what policy and the session check saw.
fn check_connection(headers: &HeaderMap) -> Result<(), InspectError> {
    let decided = |name: &str| name.starts_with("mcp-") || name == "content-type";
    let named = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or_default().split(','))
        .map(|name| name.trim().to_ascii_lowercase());
    for name in named {
        if decided(&name) {
            return Err(InspectError::BadHeader { header: "connection", problem: "naming a header the decision read" });
        }
    }
    Ok(())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Exactly one `Content-Type`, `application/json`, in UTF-8 if a charset is named: a
/// second type or another charset would let the tool server decode other bytes than the
/// message policy decided.
fn is_json(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else { return false };
    let Ok(value) = value.to_str() else { return false };
    let mut params = value.split(';');
    let essence_ok = params.next().is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    essence_ok
        && params.all(|param| match param.split_once('=') {
            Some((name, charset)) if name.trim().eq_ignore_ascii_case("charset") => {
                charset.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            }
            _ => true,
        })
}

async fn read_bounded(headers: &HeaderMap, body: Body, limits: &InspectLimits) -> Result<bytes::Bytes, InspectError> {
    let limit = limits.max_body_bytes;
    let declared = header_str(headers, header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(InspectError::TooLarge { limit });
    }
    let read = tokio::time::timeout(limits.body_read_timeout, Limited::new(body, limit).collect());
    let Ok(collected) = read.await else {
        return Err(InspectError::BodyTimeout { seconds: limits.body_read_timeout.as_secs() });
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(InspectError::TooLarge { limit }),
        Err(_) => Err(InspectError::BodyRead),
    }
}

/// A batch is labelled `batch`; GET/DELETE by their kind.
fn method_label(mcp: &McpRequest) -> &'static str {
    match mcp.messages.as_slice() {
        [one] => match one.kind {
            MessageKind::Stream => "GET",
            MessageKind::SessionEnd => "DELETE",
            MessageKind::Response => "response",
            _ => Metrics::method_label(one.method.as_deref()),
        },
        _ => "batch",
    }
}
