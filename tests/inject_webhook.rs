//! `mcp-pep webhook` as the apiserver meets it: HTTPS with a certificate that is replaced
//! on disk while it runs, AdmissionReview in, a patch out, health and metrics beside.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use mcp_pep::demo::pki::{LeafSpec, TestCa};
use mcp_pep::inject::InjectDefaults;
use mcp_pep::inject::webhook::{BoundWebhook, WebhookArgs};
use rustls::pki_types::ServerName;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// One HTTPS request trusting only `ca`; `Err` when the handshake fails.
async fn https(
    addr: SocketAddr,
    ca: &TestCa,
    method: &str,
    path: &str,
    body: String,
) -> Result<(StatusCode, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.clone()).map_err(|e| e.to_string())?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(format!("https://{addr}{path}"))
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

fn review() -> String {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u-1", "namespace": "tools", "operation": "CREATE",
        "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t", "annotations": {"mcp-pep.io/mode": "ingress"}},
                   "spec": {"containers": [{"name": "server", "image": "x"}]}}}})
    .to_string()
}

#[tokio::test]
async fn serves_reviews_over_tls_and_picks_up_a_new_certificate() {
    let dir = std::env::temp_dir().join(format!("mcp-pep-webhook-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir(&dir).unwrap();
    let localhost = IpAddr::from([127, 0, 0, 1]);
    let (first, second) = (TestCa::new("webhook-a").unwrap(), TestCa::new("webhook-b").unwrap());
    let write = |ca: &TestCa| {
        let leaf = ca.leaf(&LeafSpec::svid("spiffe://webhook/mcp-pep").with_ip(localhost)).unwrap();
        // The key first, then the certificate: a reader between the two sees a mismatch
        // and keeps the old pair.
        std::fs::write(dir.join("tls.key"), leaf.key_pem()).unwrap();
        std::fs::write(dir.join("tls.crt"), leaf.chain_pem()).unwrap();
    };
    write(&first);
    let args = WebhookArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_cert: dir.join("tls.crt"),
        tls_key: dir.join("tls.key"),
        metrics_listen: "127.0.0.1:0".into(),
        defaults: InjectDefaults::default(),
    };
    let bound = BoundWebhook::bind(args).await.unwrap();
    let (addr, metrics) = (bound.addr().unwrap(), bound.metrics_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bound.run(Duration::from_millis(100), async move {
        let _ = stopped.await;
    }));

    let (status, body) = https(addr, &first, "POST", "/mutate", review()).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["response"]["uid"], "u-1");
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    let (status, body) = https(addr, &first, "POST", "/mutate", "{not json".into()).await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("not an AdmissionReview"), "{body}");
    assert_eq!(https(addr, &first, "GET", "/healthz", String::new()).await.unwrap().0, StatusCode::OK);

    let text = http_get(metrics, "/metrics").await;
    assert!(text.contains(r#"mcp_pep_webhook_reviews_total{outcome="injected"} 1"#), "{text}");
    assert!(text.contains(r#"mcp_pep_webhook_reviews_total{outcome="invalid"} 1"#), "{text}");

    // Rotation: the files change, new connections get the new certificate.
    write(&second);
    let mut rotated = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if https(addr, &second, "GET", "/healthz", String::new()).await.is_ok() {
            rotated = true;
            break;
        }
    }
    assert!(rotated, "the new certificate was not picked up");
    assert!(
        https(addr, &first, "GET", "/healthz", String::new()).await.is_err(),
        "the old certificate is still served"
    );
    let _ = stop.send(());
    task.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A plain HTTP GET on the metrics listener.
async fn http_get(addr: SocketAddr, path: &str) -> String {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::get(format!("http://{addr}{path}"))
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned()
}
