//! Black-box tests of list filtering: the items of `tools/list`, `prompts/list`,
//! `resources/list` and `resources/templates/list` answers are decided one by one
//! (`phase: "list"`) and the denied ones removed, keeping every other byte, in JSON
//! answers and inside SSE streams.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use support::*;
use tokio::sync::oneshot;

/// Allows every message (phase `call`); in phase `list` allows the items whose name
/// does not start with `secret`, each by the field of the method it is used with.
const LIST_POLICY: &str = r#"package mcp

import rego.v1

default decision := false

decision if input.phase == "call"

decision if {
	input.phase == "list"
	input.mcp.method == "tools/call"
	is_string(input.mcp.tool)
	not startswith(input.mcp.tool, "secret")
}

decision if {
	input.phase == "list"
	input.mcp.method == "prompts/get"
	is_string(input.mcp.prompt)
	not startswith(input.mcp.prompt, "secret")
}

decision if {
	input.phase == "list"
	input.mcp.method == "resources/read"
	is_string(input.mcp.resource)
	not startswith(input.mcp.resource, "secret")
}
"#;

/// Four tools, two of them `secret…`; odd whitespace everywhere but between the items,
/// a `nextCursor` and a `_meta`.
const FOUR_TOOLS: &str = "{ \"jsonrpc\" : \"2.0\",\"id\":11,\n  \"result\" : {\"tools\":[\
{\"name\":\"alpha\",\"description\":\"first\\ttool \\u00e9\",\"inputSchema\":{ \"type\" :\"object\" }},\
{\"name\":\"secret_key_dump\",\"description\":\"x\"},\
{ \"name\" : \"beta\" , \"annotations\":{\"readOnlyHint\":true}},\
{\"name\":\"secret2\"}] ,\r\n  \"nextCursor\" : \"page-2\",\t\"_meta\":{ \"trace\" : [1, 2 ,3] } }\n}\n";

/// [`FOUR_TOOLS`] with the two secret tools spliced out, nothing else changed.
const FOUR_TOOLS_FILTERED: &str = "{ \"jsonrpc\" : \"2.0\",\"id\":11,\n  \"result\" : {\"tools\":[\
{\"name\":\"alpha\",\"description\":\"first\\ttool \\u00e9\",\"inputSchema\":{ \"type\" :\"object\" }},\
{ \"name\" : \"beta\" , \"annotations\":{\"readOnlyHint\":true}}] ,\r\n  \"nextCursor\" : \"page-2\",\t\"_meta\":{ \"trace\" : [1, 2 ,3] } }\n}\n";

/// A `*/list` request body.
fn list_request(id: Value, method: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {}}).to_string()
}

async fn start(upstream: &TestUpstream, rego: &str) -> TestProxy {
    TestProxy::builder(upstream.url()).policy(rego).start().await
}

/// Answers every request `200 application/json` with `body`.
async fn json_upstream(body: impl Into<Bytes>) -> TestUpstream {
    let body: Bytes = body.into();
    TestUpstream::start(move |_| {
        let body = body.clone();
        async move {
            let mut resp = Response::new(up_body(body));
            resp.headers_mut().insert(http::header::CONTENT_TYPE, "application/json".parse().unwrap());
            resp
        }
    })
    .await
}

/// Answers `200 text/event-stream`: the `before` chunks, then (if given) waits for
/// `release`, then the `after` chunks, then ends. One request only.
async fn sse_upstream(before: Vec<Bytes>, release: Option<oneshot::Receiver<()>>, after: Vec<Bytes>) -> TestUpstream {
    let script = Arc::new(Mutex::new(Some((before, release, after))));
    TestUpstream::start(move |_| {
        let script = script.lock().unwrap().take();
        async move {
            let (before, release, after) = script.expect("the SSE upstream answers one request");
            let state = (before.into_iter(), release, after.into_iter());
            let frames = futures_util::stream::unfold(state, |(mut before, mut release, mut after)| async move {
                if let Some(chunk) = before.next() {
                    return Some((Ok::<_, Infallible>(Frame::data(chunk)), (before, release, after)));
                }
                if let Some(rx) = release.take() {
                    let _ = rx.await;
                }
                let chunk = after.next()?;
                Some((Ok(Frame::data(chunk)), (before, release, after)))
            });
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(BodyExt::boxed(StreamBody::new(frames)))
                .unwrap()
        }
    })
    .await
}

/// `stream` cut into chunks at the given byte offsets.
fn chunks_at(stream: &[u8], cuts: &[usize]) -> Vec<Bytes> {
    let mut chunks = Vec::new();
    let mut from = 0;
    for &cut in cuts {
        chunks.push(Bytes::copy_from_slice(&stream[from..cut]));
        from = cut;
    }
    chunks.push(Bytes::copy_from_slice(&stream[from..]));
    chunks
}

/// POSTs `body` and returns the response with its body still streaming.
async fn post_streaming(proxy: &TestProxy, body: String) -> Response<Incoming> {
    send_raw(post_request(&proxy.url(), full_body(body), &[])).await.expect("response headers")
}

/// Reads the rest of the stream into `seen`.
async fn read_to_end(body: &mut Incoming, seen: &mut Vec<u8>) {
    while let Some(frame) = tokio::time::timeout(STEP, body.frame()).await.expect("stream ends in time") {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    seen.extend_from_slice(&data);
                }
            }
            Err(e) => panic!("stream failed: {e}; got so far: {:?}", String::from_utf8_lossy(seen)),
        }
    }
}

/// The events of an SSE stream read by the WHATWG rules (`\r\n`, `\n` or `\r` end a
/// line, an empty line ends an event), each as its fields in order; comments skipped.
fn sse_events(raw: &[u8]) -> Vec<Vec<(String, String)>> {
    let text = String::from_utf8_lossy(raw).replace("\r\n", "\n").replace('\r', "\n");
    let mut events = Vec::new();
    let mut current = Vec::new();
    let mut lines: Vec<&str> = text.split('\n').collect();
    // What follows the last line ending is an unterminated line, not an empty one.
    let unterminated = lines.pop().unwrap_or_default();
    assert!(unterminated.is_empty(), "stream ends inside a line: {unterminated:?}");
    for line in lines {
        if line.is_empty() {
            if !current.is_empty() {
                events.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        current.push((name.to_owned(), value.strip_prefix(' ').unwrap_or(value).to_owned()));
    }
    assert!(current.is_empty(), "unterminated last event: {current:?}");
    events
}

/// An event's data lines joined with `\n`.
fn event_data(event: &[(String, String)]) -> String {
    event.iter().filter(|(k, _)| k == "data").map(|(_, v)| v.as_str()).collect::<Vec<_>>().join("\n")
}

/// The event's fields other than `data`, in order.
fn non_data_fields(event: &[(String, String)]) -> Vec<(String, String)> {
    event.iter().filter(|(k, _)| k != "data").cloned().collect()
}

fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------
// JSON answers
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn json_tools_list_loses_denied_tools_and_keeps_every_other_byte() {
    let upstream = json_upstream(FOUR_TOOLS).await;
    let proxy = start(&upstream, LIST_POLICY).await;

    let reply = proxy.post(list_request(json!(11), "tools/list"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.text(), FOUR_TOOLS_FILTERED, "filtered answer is not the original minus the denied tools");
    assert_eq!(
        reply.header("content-length"),
        Some(FOUR_TOOLS_FILTERED.len().to_string().as_str()),
        "Content-Length does not describe the filtered body"
    );
    // The list request itself reached the upstream unchanged.
    let seen = upstream.wait_for_requests(1).await;
    assert_eq!(seen[0].body, Bytes::from(list_request(json!(11), "tools/list")));
    proxy.stop().await;
}

#[tokio::test]
async fn json_list_is_byte_identical_when_every_item_is_allowed() {
    let all_allowed = FOUR_TOOLS_FILTERED;
    let upstream = json_upstream(all_allowed).await;
    let proxy = start(&upstream, LIST_POLICY).await;
    let reply = proxy.post(list_request(json!(11), "tools/list"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.text(), all_allowed);
    assert_eq!(reply.header("content-length"), Some(all_allowed.len().to_string().as_str()));
    proxy.stop().await;
}

#[tokio::test]
async fn prompts_list_is_filtered_by_prompt_name() {
    let upstream = json_upstream(
        r#"{"jsonrpc":"2.0","id":2,"result":{"prompts":[{"name":"greet","arguments":[{"name":"secret_arg"}]},{"name":"secret_prompt","description":"d"},{"name":"summarise"}],"nextCursor":"p2"}}"#,
    )
    .await;
    let proxy = start(&upstream, LIST_POLICY).await;
    let reply = proxy.post(list_request(json!(2), "prompts/list"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.text(),
        r#"{"jsonrpc":"2.0","id":2,"result":{"prompts":[{"name":"greet","arguments":[{"name":"secret_arg"}]},{"name":"summarise"}],"nextCursor":"p2"}}"#
    );
    proxy.stop().await;
}

#[tokio::test]
async fn resources_list_is_filtered_by_uri_not_name() {
    // The names say the opposite of the URIs: deciding by name removes the wrong one.
    let upstream = json_upstream(
        r#"{"jsonrpc":"2.0","id":"r-1","result":{"resources":[{"uri":"file:///pub/readme.md","name":"secret-readme"},{"uri":"secret://db/creds","name":"db"}]}}"#,
    )
    .await;
    let proxy = start(&upstream, LIST_POLICY).await;
    let reply = proxy.post(list_request(json!("r-1"), "resources/list"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.text(),
        r#"{"jsonrpc":"2.0","id":"r-1","result":{"resources":[{"uri":"file:///pub/readme.md","name":"secret-readme"}]}}"#
    );
    proxy.stop().await;
}

#[tokio::test]
async fn resource_templates_list_is_filtered_by_uri_template() {
    let upstream = json_upstream(
        r#"{"jsonrpc":"2.0","id":3,"result":{"resourceTemplates":[{"uriTemplate":"secret://{key}","name":"keys"},{"uriTemplate":"file:///pub/{path}","name":"secret-files"}],"nextCursor":"t2"}}"#,
    )
    .await;
    let proxy = start(&upstream, LIST_POLICY).await;
    let reply = proxy.post(list_request(json!(3), "resources/templates/list"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.text(),
        r#"{"jsonrpc":"2.0","id":3,"result":{"resourceTemplates":[{"uriTemplate":"file:///pub/{path}","name":"secret-files"}],"nextCursor":"t2"}}"#
    );
    proxy.stop().await;
}

#[tokio::test]
async fn items_without_a_name_are_dropped() {
    let upstream = json_upstream(
        r#"{"jsonrpc":"2.0","id":4,"result":{"tools":[{"title":"no name"},{"name":7},{"name":"alpha"},{"name":null}]}}"#,
    )
    .await;
    let proxy = start(&upstream, LIST_POLICY).await;
    let reply = proxy.post(list_request(json!(4), "tools/list"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.text(), r#"{"jsonrpc":"2.0","id":4,"result":{"tools":[{"name":"alpha"}]}}"#);
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------
// The input an item is decided with
// ---------------------------------------------------------------------------------

const LISTER: &str = "spiffe://example.org/ns/agents/sa/lister";

/// The conditions under which an item is allowed in phase `list`, by key.
const INPUT_CONDITIONS: &[(&str, &str)] = &[
    ("phase", r#"input.phase == "list""#),
    ("kind", r#"input.kind == "request""#),
    ("method", r#"input.mcp.method == "tools/call""#),
    ("arguments", "input.mcp.arguments == null"),
    ("id", "input.mcp.id == 77"),
    ("tool", r#"input.mcp.tool in {"probe", "probe-b"}"#),
    ("prompt", "input.mcp.prompt == null"),
    ("resource", "input.mcp.resource == null"),
    ("version", "input.version == 2"),
    ("era", r#"input.mcp.era == "legacy""#),
    ("capabilities", "input.mcp.client_capabilities == null"),
    ("input_request", "input.mcp.input_request == null"),
    ("batch", "input.mcp.batch == false"),
    ("is_error", "input.mcp.is_error == false"),
    ("session", r#"input.mcp.session_id == "sess-list""#),
    ("protocol", r#"input.mcp.protocol_version == "2025-11-25""#),
    ("identity", r#"input.identity.spiffe_id == "spiffe://example.org/ns/agents/sa/lister""#),
    ("http_method", r#"input.http.method == "POST""#),
    ("http_path", r#"input.http.path == "/mcp""#),
];

/// Allows every call; allows a list item only if all [`INPUT_CONDITIONS`] hold, with
/// the one named `replace.0` replaced by `replace.1`.
fn input_policy(replace: Option<(&str, &str)>) -> String {
    let conditions: Vec<&str> = INPUT_CONDITIONS
        .iter()
        .map(|(key, cond)| match replace {
            Some((k, other)) if k == *key => other,
            _ => *cond,
        })
        .collect();
    format!(
        "package mcp\n\nimport rego.v1\n\ndefault decision := false\n\ndecision if input.phase == \"call\"\n\n\
         decision if {{\n\t{}\n}}\n",
        conditions.join("\n\t")
    )
}

const PROBES: &str =
    r#"{"jsonrpc":"2.0","id":77,"result":{"tools":[{"name":"probe"},{"name":"other"},{"name":"probe-b"}]}}"#;

/// Lists the [`PROBES`] through a proxy with `rego`, as request `id`; the reply text.
async fn list_probes(rego: &str, id: i64) -> String {
    let upstream = json_upstream(PROBES).await;
    let proxy = TestProxy::builder(upstream.url())
        .policy(rego)
        .configure(|c| c.identity.local_spiffe_id = Some(LISTER.into()))
        .start()
        .await;
    let reply = proxy
        .post(
            list_request(json!(id), "tools/list"),
            &[("mcp-session-id", "sess-list"), ("mcp-protocol-version", "2025-11-25")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(upstream.requests().len(), 1, "the list request was not forwarded");
    proxy.stop().await;
    reply.text()
}

#[tokio::test]
async fn items_are_decided_with_the_documented_list_input() {
    let out = list_probes(&input_policy(None), 77).await;
    assert_eq!(
        out, r#"{"jsonrpc":"2.0","id":77,"result":{"tools":[{"name":"probe"},{"name":"probe-b"}]}}"#,
        "every condition on the list input holds, so only `other` (not a probe) is removed"
    );
}

#[tokio::test]
async fn items_are_removed_when_one_input_condition_is_false() {
    const NONE_KEPT: &str = r#"{"jsonrpc":"2.0","id":77,"result":{"tools":[]}}"#;
    for (key, other) in [
        ("phase", r#"input.phase == "call""#),
        ("kind", r#"input.kind == "response""#),
        ("method", r#"input.mcp.method == "tools/list""#),
        ("arguments", "input.mcp.arguments == {}"),
        ("id", "input.mcp.id == 78"),
        ("id", r#"input.mcp.id == "77""#),
        ("tool", r#"input.mcp.tool == "other-than-all""#),
    ] {
        let out = list_probes(&input_policy(Some((key, other))), 77).await;
        assert_eq!(out, NONE_KEPT, "with `{other}` instead of the {key} condition, items were allowed");
    }
    // The same policy, but listed as request 78: `input.mcp.id == 77` is false.
    let upstream_answer_for_78 = PROBES.replace("\"id\":77", "\"id\":78");
    let upstream = json_upstream(upstream_answer_for_78).await;
    let proxy = TestProxy::builder(upstream.url())
        .policy(&input_policy(None))
        .configure(|c| c.identity.local_spiffe_id = Some(LISTER.into()))
        .start()
        .await;
    let reply = proxy
        .post(
            list_request(json!(78), "tools/list"),
            &[("mcp-session-id", "sess-list"), ("mcp-protocol-version", "2025-11-25")],
        )
        .await;
    assert_eq!(reply.text(), r#"{"jsonrpc":"2.0","id":78,"result":{"tools":[]}}"#);
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------
// SSE answers
// ---------------------------------------------------------------------------------

const PRIMING: &[u8] = b"id: p\ndata: \n\n";
const NOTIFICATION: &[u8] = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":{\"tools\":[{\"name\":\"secret_in_a_log\"}]}}}\n\n";
const ANSWER_DATA: &str = r#"{"jsonrpc":"2.0","id":21,"result":{"tools":[{"name":"alpha"},{"name":"secret_x"},{"name":"beta"}],"nextCursor":"n-2","_meta":{"m":1}}}"#;
const ANSWER_FILTERED: &str = r#"{"jsonrpc":"2.0","id":21,"result":{"tools":[{"name":"alpha"},{"name":"beta"}],"nextCursor":"n-2","_meta":{"m":1}}}"#;
const AFTER: &[u8] = b": still here\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"t\",\"progress\":1}}\n\n";

fn answer_event(data: &str) -> Vec<u8> {
    format!("id: 7\nevent: message\nretry: 2500\ndata: {data}\n\n").into_bytes()
}

/// The SSE test stream: priming event, notification, list answer, one more event.
fn sse_stream() -> Vec<u8> {
    [PRIMING, NOTIFICATION, &answer_event(ANSWER_DATA), AFTER].concat()
}

fn sse_stream_filtered() -> Vec<u8> {
    [PRIMING, NOTIFICATION, &answer_event(ANSWER_FILTERED), AFTER].concat()
}

#[tokio::test]
async fn sse_list_answer_is_filtered_and_the_other_events_pass_untouched() {
    let stream = sse_stream();
    // Cut inside the priming event, inside the notification's data and inside the
    // list answer (in a tool name, and between the last data line and the empty line).
    let answer_at = PRIMING.len() + NOTIFICATION.len();
    let answer_len = answer_event(ANSWER_DATA).len();
    let cuts = [5, PRIMING.len() + 20, answer_at + 40, answer_at + answer_len - 1, answer_at + answer_len + 3];
    let upstream = sse_upstream(chunks_at(&stream, &cuts), None, Vec::new()).await;
    let proxy = start(&upstream, LIST_POLICY).await;

    let resp = post_streaming(&proxy, list_request(json!(21), "tools/list")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers().get("content-type").unwrap(), "text/event-stream");
    let mut body = resp.into_body();
    let mut seen = Vec::new();
    read_to_end(&mut body, &mut seen).await;
    assert_eq!(text(&seen), text(&sse_stream_filtered()));
    proxy.stop().await;
}

#[tokio::test]
async fn sse_with_crlf_line_endings_is_filtered() {
    let crlf = |b: &[u8]| text(b).replace('\n', "\r\n").into_bytes();
    let (priming, notification, after) = (crlf(PRIMING), crlf(NOTIFICATION), crlf(AFTER));
    let answer = crlf(&answer_event(ANSWER_DATA));
    let stream = [&priming[..], &notification, &answer, &after].concat();
    // Cut between every `\r` and its `\n` of the answer event's last two line endings.
    let answer_end = priming.len() + notification.len() + answer.len();
    let cuts = [priming.len() - 1, answer_end - 3, answer_end - 1];
    let upstream = sse_upstream(chunks_at(&stream, &cuts), None, Vec::new()).await;
    let proxy = start(&upstream, LIST_POLICY).await;

    let resp = post_streaming(&proxy, list_request(json!(21), "tools/list")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut seen = Vec::new();
    read_to_end(&mut body, &mut seen).await;

    let head = [&priming[..], &notification].concat();
    assert!(seen.starts_with(&head), "events before the answer altered: {:?}", text(&seen));
    assert!(seen.ends_with(&after), "event after the answer altered: {:?}", text(&seen));
    let middle = &seen[head.len()..seen.len() - after.len()];
    let events = sse_events(middle);
    assert_eq!(events.len(), 1, "the answer is not one event: {:?}", text(middle));
    assert_eq!(
        non_data_fields(&events[0]),
        fields(&[("id", "7"), ("event", "message"), ("retry", "2500")]),
        "{:?}",
        text(middle)
    );
    assert_eq!(event_data(&events[0]), ANSWER_FILTERED);
    proxy.stop().await;
}

#[tokio::test]
async fn sse_answer_sent_with_content_length_reaches_the_client_whole() {
    let stream = Bytes::from(sse_stream());
    let upstream = TestUpstream::start(move |_| {
        let stream = stream.clone();
        async move {
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "text/event-stream")
                .header("content-length", stream.len())
                .body(up_body(stream))
                .unwrap()
        }
    })
    .await;
    let proxy = start(&upstream, LIST_POLICY).await;

    let resp = post_streaming(&proxy, list_request(json!(21), "tools/list")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let headers = resp.headers().clone();
    let mut body = resp.into_body();
    let mut seen = Vec::new();
    read_to_end(&mut body, &mut seen).await;
    assert_eq!(text(&seen), text(&sse_stream_filtered()));
    if let Some(length) = headers.get("content-length") {
        assert_eq!(length.to_str().unwrap(), seen.len().to_string(), "stale Content-Length");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn sse_events_before_the_answer_are_not_held_back() {
    let (release, released) = oneshot::channel();
    let rest = [NOTIFICATION, &answer_event(ANSWER_DATA), AFTER].concat();
    let upstream = sse_upstream(vec![Bytes::from_static(PRIMING)], Some(released), vec![Bytes::from(rest)]).await;
    let proxy = start(&upstream, LIST_POLICY).await;

    let resp = post_streaming(&proxy, list_request(json!(21), "tools/list")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut seen = Vec::new();
    // The upstream holds the list answer until released: only a proxy that forwards
    // each event as soon as it is whole gets here.
    read_until(&mut body, &mut seen, b"\n\n", Duration::from_secs(3)).await;
    assert_eq!(text(&seen), text(PRIMING), "priming event altered");

    release.send(()).expect("upstream still waiting");
    read_to_end(&mut body, &mut seen).await;
    assert_eq!(text(&seen), text(&sse_stream_filtered()));
    proxy.stop().await;
}

#[tokio::test]
async fn sse_list_answers_under_other_ids_are_filtered_too() {
    let other_number = b"data: {\"jsonrpc\":\"2.0\",\"id\":99,\"result\":{\"tools\":[{\"name\":\"secret_99\"}]}}\n\n";
    let other_string =
        b"data: {\"jsonrpc\":\"2.0\",\"id\":\"21\",\"result\":{\"tools\":[{\"name\":\"secret_s\"}]}}\n\n";
    // The TypeScript SDK matches ids by Number(id): "21" answers request 21 for it. Any
    // list result on the stream is filtered, whatever its id.
    let stream = [PRIMING, other_number, other_string, &answer_event(ANSWER_DATA), AFTER].concat();
    let upstream = sse_upstream(vec![Bytes::from(stream)], None, Vec::new()).await;
    let proxy = start(&upstream, LIST_POLICY).await;

    let resp = post_streaming(&proxy, list_request(json!(21), "tools/list")).await;
    let mut body = resp.into_body();
    let mut seen = Vec::new();
    read_to_end(&mut body, &mut seen).await;
    let filtered_number: &[u8] = b"data: {\"jsonrpc\":\"2.0\",\"id\":99,\"result\":{\"tools\":[]}}\n\n";
    let filtered_string: &[u8] = b"data: {\"jsonrpc\":\"2.0\",\"id\":\"21\",\"result\":{\"tools\":[]}}\n\n";
    let want = [PRIMING, filtered_number, filtered_string, &answer_event(ANSWER_FILTERED), AFTER].concat();
    assert_eq!(text(&seen), text(&want));
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------
// Answers that cannot be filtered
// ---------------------------------------------------------------------------------

/// Checks a refusal of list request `id`: 502 with a JSON-RPC error carrying the id.
fn assert_refused(reply: &Reply, id: Value) {
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    assert_eq!(body["id"], id, "{body}");
    assert!(body["error"]["code"].is_i64(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body.get("result").is_none(), "{body}");
    assert!(!reply.text().contains("secret"), "an item of the refused answer leaked: {}", reply.text());
}

#[tokio::test]
async fn json_answer_with_duplicate_items_keys_is_refused() {
    let upstream = json_upstream(
        r#"{"jsonrpc":"2.0","id":31,"result":{"tools":[{"name":"alpha"}],"tools":[{"name":"secret_x"}]}}"#,
    )
    .await;
    let proxy = start(&upstream, LIST_POLICY).await;
    let reply = proxy.post(list_request(json!(31), "tools/list"), &[]).await;
    assert_refused(&reply, json!(31));
    proxy.stop().await;
}

#[tokio::test]
async fn json_answer_with_a_duplicate_name_in_an_item_is_refused() {
    let upstream =
        json_upstream(r#"{"jsonrpc":"2.0","id":"d-2","result":{"tools":[{"name":"alpha","name":"secret_x"}]}}"#).await;
    let proxy = start(&upstream, LIST_POLICY).await;
    let reply = proxy.post(list_request(json!("d-2"), "tools/list"), &[]).await;
    assert_refused(&reply, json!("d-2"));
    proxy.stop().await;
}

#[tokio::test]
async fn json_answer_without_the_items_array_is_refused() {
    for answer in [
        r#"{"jsonrpc":"2.0","id":32,"result":{"tool":[{"name":"secret_x"}]}}"#,
        r#"{"jsonrpc":"2.0","id":32,"result":{"tools":{"name":"secret_x"}}}"#,
        r#"{"jsonrpc":"2.0","id":32,"result":[{"name":"secret_x"}]}"#,
    ] {
        let upstream = json_upstream(answer).await;
        let proxy = start(&upstream, LIST_POLICY).await;
        let reply = proxy.post(list_request(json!(32), "tools/list"), &[]).await;
        assert_refused(&reply, json!(32));
        proxy.stop().await;
    }
}

#[tokio::test]
async fn json_answer_that_is_not_utf8_is_refused() {
    let mut answer = br#"{"jsonrpc":"2.0","id":33,"result":{"tools":[{"name":"alpha","description":"caf"#.to_vec();
    answer.push(0xE9);
    answer.extend_from_slice(br#""},{"name":"secret_x"}]}}"#);
    let upstream = json_upstream(answer).await;
    let proxy = start(&upstream, LIST_POLICY).await;
    let reply = proxy.post(list_request(json!(33), "tools/list"), &[]).await;
    assert_refused(&reply, json!(33));
    proxy.stop().await;
}

#[tokio::test]
async fn sse_answer_with_duplicate_items_keys_becomes_an_error_event() {
    let dup = r#"{"jsonrpc":"2.0","id":41,"result":{"tools":[{"name":"alpha"}],"tools":[{"name":"secret_x"}]}}"#;
    let stream = [PRIMING, NOTIFICATION, &answer_event(dup), AFTER].concat();
    let upstream = sse_upstream(vec![Bytes::from(stream)], None, Vec::new()).await;
    let proxy = start(&upstream, LIST_POLICY).await;

    let resp = post_streaming(&proxy, list_request(json!(41), "tools/list")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut seen = Vec::new();
    read_to_end(&mut body, &mut seen).await;

    let head = [PRIMING, NOTIFICATION].concat();
    assert!(seen.starts_with(&head), "events before the answer altered: {:?}", text(&seen));
    assert!(seen.ends_with(AFTER), "event after the answer altered: {:?}", text(&seen));
    let middle = &seen[head.len()..seen.len() - AFTER.len()];
    assert!(!text(middle).contains("secret"), "an item of the refused answer leaked: {:?}", text(middle));
    let events = sse_events(middle);
    assert_eq!(events.len(), 1, "{:?}", text(middle));
    assert_eq!(non_data_fields(&events[0]), fields(&[("id", "7"), ("event", "message"), ("retry", "2500")]));
    let error: Value = serde_json::from_str(&event_data(&events[0])).expect("error event data is JSON");
    assert_eq!(error["jsonrpc"], "2.0", "{error}");
    assert_eq!(error["id"], 41, "{error}");
    assert!(error["error"]["code"].is_i64(), "{error}");
    assert!(error.get("result").is_none(), "{error}");
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------
// What is not filtered
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn tools_call_answers_are_never_filtered() {
    // Looks like a list answer (even an unfilterable one) but answers a tools/call.
    let answer = r#"{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"secret_x"}],"tools":[{"name":"secret_y"}]}}"#;
    let upstream = json_upstream(answer).await;
    let proxy = start(&upstream, LIST_POLICY).await;
    let reply = proxy.post(tools_call(5, "alpha"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.text(), answer);
    proxy.stop().await;

    let event = format!("id: 1\ndata: {ANSWER_DATA}\n\n").replace("\"id\":21", "\"id\":5");
    let stream = [PRIMING, event.as_bytes()].concat();
    let upstream = sse_upstream(vec![Bytes::from(stream.clone())], None, Vec::new()).await;
    let proxy = start(&upstream, LIST_POLICY).await;
    let resp = post_streaming(&proxy, tools_call(5, "alpha")).await;
    let mut body = resp.into_body();
    let mut seen = Vec::new();
    read_to_end(&mut body, &mut seen).await;
    assert_eq!(text(&seen), text(&stream));
    let metrics = proxy.metrics().await;
    assert_eq!(metric(&metrics, "mcp_pep_list_items_total", &[]).unwrap_or(0.0), 0.0, "{metrics}");
    proxy.stop().await;
}

#[tokio::test]
async fn list_request_without_a_policy_is_denied_before_the_upstream() {
    let upstream = json_upstream(FOUR_TOOLS).await;
    let proxy = start(&upstream, "package mcp\n\nimport rego.v1\n\ndecision := {\"allow\": true\n").await;
    let reply = proxy.post(list_request(json!(11), "tools/list"), &[]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.text());
    assert_eq!(reply.json()["id"], 11, "{}", reply.text());
    assert!(!reply.text().contains("secret"), "{}", reply.text());
    assert!(upstream.requests().is_empty(), "list request forwarded without a policy");
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn list_items_metric_counts_decided_items() {
    // Three tools denied, one allowed; listed twice.
    let upstream = json_upstream(
        r#"{"jsonrpc":"2.0","id":12,"result":{"tools":[{"name":"secret_a"},{"name":"alpha"},{"name":"secret_b"},{"name":"secret_c"}]}}"#,
    )
    .await;
    let proxy = start(&upstream, LIST_POLICY).await;
    for _ in 0..2 {
        let reply = proxy.post(list_request(json!(12), "tools/list"), &[]).await;
        assert_eq!(reply.text(), r#"{"jsonrpc":"2.0","id":12,"result":{"tools":[{"name":"alpha"}]}}"#);
    }
    let metrics = proxy.metrics().await;
    let items = |method, decision| {
        metric(&metrics, "mcp_pep_list_items_total", &[("method", method), ("decision", decision)]).unwrap_or(0.0)
    };
    assert_eq!(items("tools/call", "deny"), 6.0, "{metrics}");
    assert_eq!(items("tools/call", "allow"), 2.0, "{metrics}");
    assert_eq!(items("prompts/get", "deny") + items("resources/read", "deny"), 0.0, "{metrics}");
    proxy.stop().await;

    // One prompt denied, two allowed: counted under the method a prompt is used with.
    let upstream = json_upstream(
        r#"{"jsonrpc":"2.0","id":2,"result":{"prompts":[{"name":"p"},{"name":"secret_p"},{"name":"q"}]}}"#,
    )
    .await;
    let proxy = start(&upstream, LIST_POLICY).await;
    let reply = proxy.post(list_request(json!(2), "prompts/list"), &[]).await;
    assert_eq!(reply.text(), r#"{"jsonrpc":"2.0","id":2,"result":{"prompts":[{"name":"p"},{"name":"q"}]}}"#);
    let metrics = proxy.metrics().await;
    let items = |method, decision| {
        metric(&metrics, "mcp_pep_list_items_total", &[("method", method), ("decision", decision)]).unwrap_or(0.0)
    };
    assert_eq!(items("prompts/get", "deny"), 1.0, "{metrics}");
    assert_eq!(items("prompts/get", "allow"), 2.0, "{metrics}");
    assert_eq!(items("tools/call", "deny") + items("tools/call", "allow"), 0.0, "{metrics}");
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------
// Answers of other shapes: a denied item must never reach the caller
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn list_request_in_a_batch_of_one_does_not_reveal_denied_items() {
    // Batches are allowed before 2025-06-18; the answer to a batch is an array.
    let upstream =
        json_upstream(r#"[{"jsonrpc":"2.0","id":61,"result":{"tools":[{"name":"alpha"},{"name":"secret_x"}]}}]"#).await;
    let proxy = start(&upstream, LIST_POLICY).await;
    let reply = proxy
        .post(r#"[{"jsonrpc":"2.0","id":61,"method":"tools/list"}]"#, &[("mcp-protocol-version", "2025-03-26")])
        .await;
    assert!(
        !reply.text().contains("secret_x"),
        "a tools/list wrapped in a batch of one got the unfiltered list ({}): {}",
        reply.status,
        reply.text()
    );
    proxy.stop().await;
}

#[tokio::test]
async fn list_request_in_a_batch_of_two_does_not_reveal_denied_items() {
    let upstream = json_upstream(
        r#"[{"jsonrpc":"2.0","id":62,"result":{"tools":[{"name":"alpha"},{"name":"secret_x"}]}},{"jsonrpc":"2.0","id":63,"result":{}}]"#,
    )
    .await;
    let proxy = start(&upstream, LIST_POLICY).await;
    let reply = proxy
        .post(
            r#"[{"jsonrpc":"2.0","id":62,"method":"tools/list"},{"jsonrpc":"2.0","id":63,"method":"ping"}]"#,
            &[("mcp-protocol-version", "2025-03-26")],
        )
        .await;
    assert!(
        !reply.text().contains("secret_x"),
        "a tools/list in a batch of two got the unfiltered list ({}): {}",
        reply.status,
        reply.text()
    );
    proxy.stop().await;
}

#[tokio::test]
async fn sse_list_answer_with_invalid_utf8_does_not_reveal_denied_items() {
    // One stray Latin-1 byte in a description: browsers' and the SDKs' SSE readers decode
    // it as U+FFFD and read the list. As a JSON answer the same bytes are refused.
    let mut event =
        b"id: 7\ndata: {\"jsonrpc\":\"2.0\",\"id\":21,\"result\":{\"tools\":[{\"name\":\"alpha\",\"description\":\"caf"
            .to_vec();
    event.push(0xE9);
    event.extend_from_slice(b"\"},{\"name\":\"secret_x\"}]}}\n\n");
    let stream = [PRIMING, &event].concat();
    let upstream = sse_upstream(vec![Bytes::from(stream)], None, Vec::new()).await;
    let proxy = start(&upstream, LIST_POLICY).await;

    let resp = post_streaming(&proxy, list_request(json!(21), "tools/list")).await;
    let mut body = resp.into_body();
    let mut seen = Vec::new();
    read_to_end(&mut body, &mut seen).await;
    assert!(
        !text(&seen).contains("secret_x"),
        "an SSE list answer with invalid UTF-8 passed unfiltered: {:?}",
        text(&seen)
    );
    proxy.stop().await;
}

#[tokio::test]
async fn sse_stream_opening_with_a_byte_order_mark_is_still_filtered() {
    // Clients skip a BOM at the start of the stream and read the first event's data.
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    // The data line comes first, so the BOM sits right before its field name.
    let answer = format!("data: {ANSWER_DATA}\nid: 7\n\n").into_bytes();
    let stream = [BOM, &answer, AFTER].concat();
    let upstream = sse_upstream(vec![Bytes::from(stream)], None, Vec::new()).await;
    let proxy = start(&upstream, LIST_POLICY).await;
    let resp = post_streaming(&proxy, list_request(json!(21), "tools/list")).await;
    let mut body = resp.into_body();
    let mut seen = Vec::new();
    read_to_end(&mut body, &mut seen).await;
    assert!(!text(&seen).contains("secret"), "a BOM let the list through: {:?}", text(&seen));
    assert!(seen.starts_with(BOM), "the BOM itself is passed on");
    proxy.stop().await;
}

#[tokio::test]
async fn unterminated_last_sse_event_is_filtered_too() {
    // The stream ends without the event's closing empty line; a lenient reader may still
    // take it as the answer.
    let answer = format!("id: 7\ndata: {ANSWER_DATA}\n").into_bytes();
    let stream = [PRIMING, &answer].concat();
    let upstream = sse_upstream(vec![Bytes::from(stream)], None, Vec::new()).await;
    let proxy = start(&upstream, LIST_POLICY).await;
    let resp = post_streaming(&proxy, list_request(json!(21), "tools/list")).await;
    let mut body = resp.into_body();
    let mut seen = Vec::new();
    read_to_end(&mut body, &mut seen).await;
    assert!(!text(&seen).contains("secret"), "an unterminated list event leaked: {:?}", text(&seen));
    assert!(text(&seen).contains("alpha"), "the allowed items are kept: {:?}", text(&seen));
    proxy.stop().await;
}
