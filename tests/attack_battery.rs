//! The attack battery: hostile requests as data (`tests/attacks/*.yaml`), each with the
//! answer the proxy must give and what, if anything, may reach the tool server.
//!
//! One proxy per setup (`open`: no credentials, a policy denying the tool `forbidden`;
//! `auth`: Keycloak-shaped DPoP tokens required; `shipped`: the policies in `policies/`
//! with the caller on loopback as the untrusted agent), each in front of a recording
//! upstream. A case is sent by hyper's client (`transport: hyper` / `h2`), or as raw
//! bytes over a TCP stream (`raw`, `h2_raw`) where hyper would normalise what the case
//! is about. The test runs every case and fails with the list of those that did not
//! get their answer; the file format is described in `tests/attacks/README.md`.

#[path = "attack_battery/credentials.rs"]
mod credentials;
mod support;
#[path = "attack_battery/wire.rs"]
mod wire;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use credentials::Creds;
use http::{HeaderName, HeaderValue, Method, Request};
use serde::Deserialize;
use serde_json::json;
use support::dpop::*;
use support::*;
use wire::Answer;

const ISSUER: &str = "https://kc.example.test/realms/agents";
const PUBLIC_URL: &str = "https://mcp.example.test/mcp";
const KID: &str = "kc-es256-1";
/// The header the proxy tells the tool server the caller's SPIFFE ID in.
const IDENTITY_HEADER: &str = "x-spiffe-id";
const OPEN_CALLER: &str = "spiffe://example.org/ns/agents/sa/battery";
const UNTRUSTED: &str = "spiffe://mcp-identity.local/ns/mcp-agents/sa/untrusted-agent";

// ---------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Setup {
    Open,
    Auth,
    Shipped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Transport {
    Hyper,
    H2,
    Raw,
    H2Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Upstream {
    /// Nothing reached the tool server.
    None,
    /// Exactly one request did, carrying exactly the expected bytes.
    Exact,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    why: String,
    setup: Setup,
    #[serde(default = "Case::hyper")]
    transport: Transport,
    /// `Credentials` names (setup `auth`); `none` sends no credential.
    #[serde(default)]
    credentials: Option<String>,
    #[serde(default = "Case::post")]
    method: String,
    #[serde(default = "Case::mcp")]
    path: String,
    /// Sent in order, after `content-type: application/json` and MCP's `accept`
    /// unless `bare` is set.
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    bare: bool,
    #[serde(default)]
    body: Option<String>,
    /// The whole HTTP/1.1 request (`raw`), its lines joined by CRLF: placeholders
    /// `{host}` (the proxy's address), `{port}`, `{auth}`, `{dpop}`, `{CR}`, `{LF}`,
    /// `{len}` (the byte length of what follows the blank line).
    #[serde(default)]
    raw: Option<Vec<String>>,
    /// Characters U+0000..U+00FF of `body`/`raw` are single bytes (for invalid UTF-8).
    #[serde(default)]
    latin1: bool,
    expect: Expect,
}

impl Case {
    fn hyper() -> Transport {
        Transport::Hyper
    }
    fn post() -> String {
        "POST".into()
    }
    fn mcp() -> String {
        "/mcp".into()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// The HTTP status; 0: no answer at all (connection closed, h2 stream reset).
    status: u16,
    /// The JSON-RPC error code of the answer's body.
    #[serde(default)]
    code: Option<i64>,
    upstream: Upstream,
    /// `exact`: the bytes the tool server must get (default: the body sent).
    #[serde(default)]
    forwarded_body: Option<String>,
    /// `exact`: headers the tool server must not get.
    #[serde(default)]
    absent: Vec<String>,
    /// `exact`: headers the tool server must get with exactly these (single) values.
    #[serde(default)]
    present: Vec<(String, String)>,
    /// `exact`: the path and query the tool server must get.
    #[serde(default)]
    upstream_path: Option<String>,
    /// `raw`: whether the proxy must close the connection after its answer (RFC 9112
    /// §6.3) or keep it open; unset: not looked at.
    #[serde(default)]
    closed: Option<bool>,
}

fn bytes_of(text: &str, latin1: bool) -> Vec<u8> {
    if latin1 {
        text.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or_else(|_| panic!("{c:?} is not latin-1"))).collect()
    } else {
        text.as_bytes().to_vec()
    }
}

fn load_cases() -> Vec<(String, Case)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/attacks");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/attacks")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read case file");
        let category = file.file_stem().expect("stem").to_string_lossy().into_owned();
        let parsed: Vec<Case> = yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        cases.extend(parsed.into_iter().map(|c| (category.clone(), c)));
    }
    cases
}

// ---------------------------------------------------------------------------------
// Setups
// ---------------------------------------------------------------------------------

struct Target {
    proxy: TestProxy,
    upstream: TestUpstream,
    /// `auth`: the issuer's key and the client's DPoP key.
    issuer: EcKey,
    client: EcKey,
    _dir: TempDir,
}

async fn start(setup: Setup) -> Target {
    let upstream = TestUpstream::json_ok().await;
    let issuer = EcKey::generate();
    let dir = TempDir::new("battery");
    let mut builder = TestProxy::builder(upstream.url()).configure(|c| {
        c.upstream.identity_header = Some(IDENTITY_HEADER.into());
        c.policy.expose_reasons = true;
    });
    match setup {
        Setup::Open => {
            builder = builder.configure(|c| c.identity.local_spiffe_id = Some(OPEN_CALLER.into()));
        }
        Setup::Auth => {
            let mut jwk = issuer.jwk();
            jwk["kid"] = json!(KID);
            let jwks = dir.write("jwks.json", &json!({"keys": [jwk]}).to_string());
            builder = builder.configure(|c| {
                c.auth.issuers =
                    serde_json::from_value(json!([{"issuer": ISSUER, "jwks_file": jwks}])).expect("issuer config");
                c.auth.public_url = Some(PUBLIC_URL.into());
                c.auth.audiences = vec![PUBLIC_URL.into()];
            });
        }
        Setup::Shipped => {
            let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
            let mut files: Vec<_> = std::fs::read_dir(&shipped)
                .expect("policies/")
                .map(|e| e.expect("entry").path())
                .filter(|p| !p.to_string_lossy().ends_with("_test.rego"))
                .collect();
            files.sort();
            // Written after the builder's default mcp.rego: the shipped one replaces it.
            for file in files {
                let name = file.file_name().expect("name").to_string_lossy().into_owned();
                let text = std::fs::read_to_string(&file).expect("policy file");
                builder = builder.file(&name, &text);
            }
            builder = builder.configure(|c| c.identity.local_spiffe_id = Some(UNTRUSTED.into()));
        }
    }
    let proxy = builder.start().await;
    Target { proxy, upstream, issuer, client: EcKey::generate(), _dir: dir }
}

// ---------------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------------

async fn send_case(target: &Target, case: &Case, creds: &Creds) -> Result<Answer, String> {
    let body = case.body.as_deref().map(|b| bytes_of(b, case.latin1)).unwrap_or_default();
    match case.transport {
        Transport::Hyper | Transport::H2 => {
            let url = target.proxy.url_for(&case.path);
            let method = Method::from_bytes(case.method.as_bytes()).map_err(|e| e.to_string())?;
            let mut builder = Request::builder().method(method).uri(url);
            if !case.bare {
                builder = builder
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream");
            }
            let Some(headers) = builder.headers_mut() else { return Err("request builder".into()) };
            for (name, value) in &case.headers {
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("{name}: {e}"))?;
                let value = HeaderValue::from_bytes(&bytes_of(value, case.latin1)).map_err(|e| e.to_string())?;
                headers.append(name, value);
            }
            for a in &creds.authorization {
                headers.append("authorization", a.parse().map_err(|_| "authorization value")?);
            }
            for p in &creds.dpop {
                headers.append("dpop", p.parse().map_err(|_| "dpop value")?);
            }
            let req = builder.body(full_body(body)).map_err(|e| e.to_string())?;
            let resp = if case.transport == Transport::H2 { send_h2(req).await } else { send_raw(req).await };
            match resp {
                Ok(resp) => {
                    let reply = collect(resp).await;
                    Ok(Answer { status: reply.status.as_u16(), body: reply.body.to_vec(), closed: None })
                }
                Err(e) => Ok(Answer { status: 0, body: e.to_string().into_bytes(), closed: None }),
            }
        }
        Transport::Raw => {
            let raw = case.raw.as_ref().ok_or("raw transport without `raw`")?.join("\r\n");
            let text = raw
                .replace("{host}", &target.proxy.mcp_addr.to_string())
                .replace("{port}", &target.proxy.mcp_addr.port().to_string())
                .replace("{CR}", "\r")
                .replace("{LF}", "\n")
                .replace("{auth}", creds.authorization.first().map_or("", String::as_str))
                .replace("{dpop}", creds.dpop.first().map_or("", String::as_str));
            let text = match text.split_once("\r\n\r\n") {
                Some((_, rest)) if text.contains("{len}") => {
                    let len = bytes_of(rest, case.latin1).len();
                    text.replace("{len}", &len.to_string())
                }
                _ => text,
            };
            wire::h1(target.proxy.mcp_addr, &bytes_of(&text, case.latin1), case.expect.closed.is_some()).await
        }
        Transport::H2Raw => raw_h2(target, case, &body).await,
    }
}

/// h2 with prior knowledge, written frame by frame so header names reach the proxy
/// exactly as the case spells them (hyper's client lowercases them).
async fn raw_h2(target: &Target, case: &Case, body: &[u8]) -> Result<Answer, String> {
    let authority = target.proxy.mcp_addr.to_string();
    let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    // Pseudo-headers first; a case's own `:authority` etc. replaces the default.
    let pseudo =
        [(":method", case.method.as_str()), (":scheme", "http"), (":path", &case.path), (":authority", &authority)];
    for (name, value) in pseudo {
        let value = case.headers.iter().find(|(n, _)| n == name).map_or(value, |(_, v)| v.as_str());
        fields.push((name.as_bytes().to_vec(), value.as_bytes().to_vec()));
    }
    if !case.bare {
        fields.push((b"content-type".to_vec(), b"application/json".to_vec()));
        fields.push((b"accept".to_vec(), b"application/json, text/event-stream".to_vec()));
    }
    for (name, value) in case.headers.iter().filter(|(n, _)| !n.starts_with(':')) {
        fields.push((name.as_bytes().to_vec(), bytes_of(value, case.latin1)));
    }
    wire::h2(target.proxy.mcp_addr, &fields, body).await
}

// ---------------------------------------------------------------------------------
// Checking
// ---------------------------------------------------------------------------------

async fn run_case(target: &Target, case: &Case) -> Result<(), String> {
    let variant = case.credentials.as_deref().unwrap_or("none");
    let creds =
        if case.setup == Setup::Auth { target.creds(variant) } else { Creds { authorization: vec![], dpop: vec![] } };
    if variant == "replay" {
        // The first use passes; the case is about the second.
        let before = target.upstream.requests().len();
        let first = send_case(target, case, &creds).await?;
        if first.status != 200 || target.upstream.requests().len() != before + 1 {
            return Err(format!("the first use was not forwarded: {first:?}"));
        }
    }
    let before = target.upstream.requests().len();
    let answer = send_case(target, case, &creds).await?;
    // Anything forwarded arrives before the answer; a short grace catches a late one.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let seen = target.upstream.requests();
    let mut problems = Vec::new();
    if answer.status != case.expect.status {
        problems.push(format!("status {} (want {})", answer.status, case.expect.status));
    }
    if case.expect.closed.is_some() && answer.closed != case.expect.closed {
        problems.push(format!("connection closed: {:?} (want {:?})", answer.closed, case.expect.closed));
    }
    if let Some(code) = case.expect.code
        && answer.code() != Some(code)
    {
        problems.push(format!("JSON-RPC code {:?} (want {code})", answer.code()));
    }
    let new = &seen[before..];
    match case.expect.upstream {
        Upstream::None => {
            if !new.is_empty() {
                problems.push(format!("{} request(s) reached the upstream: {:?}", new.len(), new[0]));
            }
        }
        Upstream::Exact => match new {
            [one] => check_forwarded(case, one, &mut problems),
            _ => problems.push(format!("{} request(s) reached the upstream (want 1)", new.len())),
        },
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}; answer body: {}", problems.join("; "), String::from_utf8_lossy(&answer.body)))
    }
}

fn check_forwarded(case: &Case, got: &Recorded, problems: &mut Vec<String>) {
    let want = match (&case.expect.forwarded_body, &case.body) {
        (Some(b), _) => bytes_of(b, case.latin1),
        (None, Some(b)) => bytes_of(b, case.latin1),
        (None, None) => Vec::new(),
    };
    if got.body.as_ref() != want.as_slice() {
        problems.push(format!(
            "the upstream got {:?}, want {:?}",
            String::from_utf8_lossy(&got.body),
            String::from_utf8_lossy(&want)
        ));
    }
    for name in &case.expect.absent {
        if let Some(v) = got.headers.get(name.as_str()) {
            problems.push(format!("{name}: {v:?} reached the upstream"));
        }
    }
    for (name, value) in &case.expect.present {
        let values: Vec<_> = got.headers.get_all(name.as_str()).iter().collect();
        if values.len() != 1 || values[0].as_bytes() != value.as_bytes() {
            problems.push(format!("the upstream got {name}: {values:?}, want {value:?}"));
        }
    }
    if let Some(path) = &case.expect.upstream_path {
        let got_path = got.uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
        if got_path != path {
            problems.push(format!("the upstream got path {got_path:?}, want {path:?}"));
        }
    }
    for name in ["authorization", "dpop", "cookie"] {
        if got.headers.contains_key(name) {
            problems.push(format!("{name} reached the upstream"));
        }
    }
}

#[tokio::test]
async fn the_attack_battery() {
    let cases = load_cases();
    let mut names = HashSet::new();
    for (_, case) in &cases {
        assert!(names.insert(case.name.clone()), "case name {:?} twice", case.name);
        assert!(!case.why.trim().is_empty(), "{}: no `why`", case.name);
    }
    assert!(cases.len() >= 60, "the battery has {} cases, the issue asks for at least 60", cases.len());
    let mut targets = BTreeMap::new();
    let mut failures = Vec::new();
    let mut per_category: BTreeMap<&str, usize> = BTreeMap::new();
    for (category, case) in &cases {
        *per_category.entry(category.as_str()).or_default() += 1;
        if let std::collections::btree_map::Entry::Vacant(slot) = targets.entry(case.setup) {
            slot.insert(start(case.setup).await);
        }
        let target = &targets[&case.setup];
        if let Err(problem) = run_case(target, case).await {
            failures.push(format!("{category}/{}: {problem}", case.name));
        }
    }
    eprintln!("attack battery: {} cases {per_category:?}", cases.len());
    for (_, target) in targets {
        target.proxy.stop().await;
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
