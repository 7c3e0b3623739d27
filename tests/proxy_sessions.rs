//! Session binding: an `Mcp-Session-Id` the upstream hands out belongs to the caller it
//! was handed to; another caller presenting it, or an id never handed out, gets 404 and
//! never reaches the upstream; DELETE forgets it.

mod support;

use http::{Method, Response, StatusCode};
use support::tls::{Pki, TRUSTED, UNTRUSTED, mtls_request};
use support::{TestProxy, TestUpstream, UpBody, metric, rejections, up_body};

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
const CALL: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}"#;
const SESSION: &str = "upstream-session-1";

/// An upstream that opens session [`SESSION`] on initialize.
async fn upstream_with_sessions() -> TestUpstream {
    TestUpstream::start(|req| async move {
        let mut resp: Response<UpBody> = Response::new(up_body(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#));
        resp.headers_mut().insert("content-type", "application/json".parse().unwrap());
        if String::from_utf8_lossy(&req.body).contains("\"initialize\"") {
            resp.headers_mut().insert("mcp-session-id", SESSION.parse().unwrap());
        }
        resp
    })
    .await
}

async fn start(pki: &Pki, upstream: &TestUpstream) -> TestProxy {
    TestProxy::builder(upstream.url())
        .configure(|c| {
            pki.configure(c);
            c.sessions.bind = true;
        })
        .start()
        .await
}

#[tokio::test]
async fn a_session_is_usable_by_its_creator_only() {
    let (pki, upstream) = (Pki::new(), upstream_with_sessions().await);
    let proxy = start(&pki, &upstream).await;
    let (trusted, untrusted) = (pki.agent(TRUSTED), pki.agent(UNTRUSTED));
    let roots = [&pki.ca];

    let reply = mtls_request(proxy.mcp_addr, Some(&trusted), &roots, Method::POST, INITIALIZE, &[]).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let session = [("mcp-session-id", SESSION)];
    let reply = mtls_request(proxy.mcp_addr, Some(&trusted), &roots, Method::POST, CALL, &session).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(upstream.requests().len(), 2);

    // Another workload with the leaked id: as if the session did not exist.
    let reply = mtls_request(proxy.mcp_addr, Some(&untrusted), &roots, Method::POST, CALL, &session).await.unwrap();
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    assert_eq!(upstream.requests().len(), 2, "the hijack attempt never reached the upstream");
    let text = proxy.metrics().await;
    assert_eq!(rejections(&text, "session", "session_foreign"), 1.0);
    assert_eq!(metric(&text, "mcp_pep_sessions", &[]), Some(1.0));
    proxy.stop().await;
}

#[tokio::test]
async fn a_session_id_never_handed_out_is_404() {
    let (pki, upstream) = (Pki::new(), upstream_with_sessions().await);
    let proxy = start(&pki, &upstream).await;
    let headers = [("mcp-session-id", "guessed")];
    let reply = mtls_request(proxy.mcp_addr, Some(&pki.agent(TRUSTED)), &[&pki.ca], Method::POST, CALL, &headers)
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    assert!(upstream.requests().is_empty());
    assert_eq!(rejections(&proxy.metrics().await, "session", "session_unknown"), 1.0);
    proxy.stop().await;
}

#[tokio::test]
async fn delete_forgets_the_session() {
    let (pki, upstream) = (Pki::new(), upstream_with_sessions().await);
    let proxy = start(&pki, &upstream).await;
    let trusted = pki.agent(TRUSTED);
    let roots = [&pki.ca];
    mtls_request(proxy.mcp_addr, Some(&trusted), &roots, Method::POST, INITIALIZE, &[]).await.unwrap();
    let session = [("mcp-session-id", SESSION)];
    let reply = mtls_request(proxy.mcp_addr, Some(&trusted), &roots, Method::DELETE, "", &session).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let reply = mtls_request(proxy.mcp_addr, Some(&trusted), &roots, Method::POST, CALL, &session).await.unwrap();
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    assert_eq!(metric(&proxy.metrics().await, "mcp_pep_sessions", &[]), Some(0.0));
    proxy.stop().await;
}
