//! REST over TLS (`[rest] tls = true`) against a real control plane: HTTPS
//! works for a client trusting the fleet CA, with the security headers and
//! HSTS; plain HTTP and clients not trusting the CA get nothing.
//!
//! The client is rustls (ring) with tokio-rustls and hyper, so the tree
//! keeps a single crypto provider.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::header;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sco_control_plane::pki::Ca;
use sco_tests::{Db, Sandbox};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS client config trusting only the CA in `ca_pem`, offering HTTP/1.1.
fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Connects and completes the TLS handshake for server name `localhost`
/// (the sandbox's server certificate names `localhost` and `127.0.0.1`).
async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("server name");
    tokio::time::timeout(
        TIMEOUT,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .expect("TLS handshake finishes")
}

/// `GET path` over an established TLS stream; the response with its whole
/// body.
async fn get(tls: TlsStream<TcpStream>, path: &str) -> hyper::Response<Vec<u8>> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP/1.1 handshake");
    let conn = tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header(header::HOST, "localhost")
        .body(String::new())
        .expect("request");
    let response = tokio::time::timeout(TIMEOUT, sender.send_request(request))
        .await
        .expect("response in time")
        .expect("response");
    let (parts, body) = response.into_parts();
    let read_body = async {
        let mut body = std::pin::pin!(body);
        let mut bytes = Vec::new();
        while let Some(frame) =
            std::future::poll_fn(|cx| hyper::body::Body::poll_frame(body.as_mut(), cx)).await
        {
            if let Ok(data) = frame.expect("body frame").into_data() {
                bytes.extend_from_slice(&data);
            }
        }
        bytes
    };
    let bytes = tokio::time::timeout(TIMEOUT, read_body)
        .await
        .expect("body in time");
    drop(sender);
    conn.abort();
    hyper::Response::from_parts(parts, bytes)
}

/// `GET /health` over HTTPS: a JSON "ok" with every security header.
async fn https_health(sb: &Sandbox, trusted: &Arc<rustls::ClientConfig>) {
    let tls = tls_connect(sb.http_addr, trusted.clone())
        .await
        .expect("a client trusting the fleet CA completes the handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let response = get(tls, "/health").await;
    assert_eq!(response.status(), hyper::StatusCode::OK);
    let body: Value = serde_json::from_slice(response.body()).expect("/health body is JSON");
    assert_eq!(body, json!({"status": "ok"}));

    let headers = response.headers();
    for (name, value) in [
        (
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        assert_eq!(
            headers.get(&name).and_then(|v| v.to_str().ok()),
            Some(value),
            "header {name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_is_served_over_tls_only() {
    let Some(mut sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    sb.control_plane_extra = "[rest]\ntls = true\n".into();
    let _cp = sb.start_control_plane();
    let trusted = client_config(&sb.ca.cert_pem);

    https_health(&sb, &trusted).await;

    // Plain HTTP on the TLS port gets no HTTP response at all: the server
    // answers at once with a TLS alert, which the client cannot parse.
    let plain = reqwest::Client::new()
        .get(format!("{}/health", sb.base_url()))
        .timeout(TIMEOUT)
        .send()
        .await;
    assert!(
        matches!(&plain, Err(e) if !e.is_timeout()),
        "plain HTTP must be refused, got {plain:?}"
    );

    // A client trusting another CA rejects the server certificate: for a
    // bad signature, as that CA has the fleet CA's subject name (or for an
    // unknown issuer, were the names different).
    let other_ca = Ca::generate().expect("another CA");
    let err = tls_connect(sb.http_addr, client_config(&other_ca.cert_pem))
        .await
        .expect_err("a client not trusting the fleet CA fails the handshake");
    let cause = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    assert!(
        matches!(
            cause,
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadSignature | rustls::CertificateError::UnknownIssuer
            ))
        ),
        "unexpected handshake error: {err}"
    );

    // Failed clients leave the listener serving.
    https_health(&sb, &trusted).await;
}
