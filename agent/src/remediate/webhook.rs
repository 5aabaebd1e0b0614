//! The notify action's HTTP client: one JSON `POST` to an allowlisted URL, over `http` or
//! `https`, with a time limit, no redirects and no proxies.
//!
//! Built on hyper's HTTP/1 client and rustls, which the agent links anyway for its stream and
//! its local endpoint, rather than a general-purpose client: a webhook needs none of cookies,
//! redirects, proxies, compression or connection pools, and every one of them is code resident
//! in every agent. `https` servers are verified against the notify CA bundle only, never the
//! system's roots: an agent that cannot read its bundle still posts to `http` URLs and says why
//! its `https` posts fail.

use std::future::poll_fn;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// What the server answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The body, lossily decoded and cut at the caller's cap (in characters).
    pub body: String,
}

/// Posts JSON to webhooks; built once, on the first notify action.
pub struct Webhook {
    /// The TLS client for `https` URLs, or why there is none (the bundle's problem).
    tls: Result<tokio_rustls::TlsConnector, String>,
    timeout: Duration,
}

impl Webhook {
    /// A client whose `https` posts trust the certificates of the PEM bundle `ca_file` only, and
    /// whose posts give up after `timeout` (connecting, the handshake and the answer together).
    pub fn new(ca_file: &Path, timeout: Duration) -> Webhook {
        let tls = trusting(ca_file);
        if let Err(e) = &tls {
            tracing::warn!(error = %e, "https webhooks will fail");
        }
        Webhook { tls, timeout }
    }

    /// Posts `body` as JSON to `url` and reads the answer (its body up to `cap` characters).
    /// Errors say what failed: the URL, the connection, the handshake, the exchange, the time.
    pub async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
        cap: usize,
    ) -> Result<Answer, String> {
        match tokio::time::timeout(self.timeout, self.post(url, body, cap)).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }

    async fn post(
        &self,
        url: &str,
        body: &serde_json::Value,
        cap: usize,
    ) -> Result<Answer, String> {
        let uri: Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err("only http and https URLs are posted to".into()),
        };
        let authority = uri.authority().ok_or("the URL names no host")?.clone();
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(hyper::header::HOST, authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "sco-agent")
            .body(body.to_string())
            .map_err(|e| format!("cannot build the request: {e}"))?;
        if https {
            let tls = self.tls.as_ref().map_err(Clone::clone)?;
            let name = ServerName::try_from(host.to_string())
                .map_err(|e| format!("server name {host:?}: {e}"))?;
            let stream = tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake with {authority}: {e}"))?;
            exchange(stream, request, cap).await
        } else {
            exchange(tcp, request, cap).await
        }
    }
}

/// One request on a fresh HTTP/1 connection, closed afterwards.
async fn exchange<S>(stream: S, request: Request<String>, cap: usize) -> Result<Answer, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let driver = tokio::spawn(connection);
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status().as_u16();
        let body = read_capped(response.into_body(), cap).await;
        Ok(Answer { status, body })
    }
    .await;
    driver.abort();
    result
}

/// The body's text up to `cap` characters; the rest is not read. A body cut short by the
/// server keeps what arrived.
async fn read_capped(mut body: Incoming, cap: usize) -> String {
    let mut bytes = Vec::new();
    // Four bytes per character at most: enough bytes for `cap` characters.
    let limit = cap.saturating_mul(4);
    while bytes.len() < limit {
        match poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    bytes.extend_from_slice(data);
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    String::from_utf8_lossy(&bytes).chars().take(cap).collect()
}

/// A TLS client trusting the certificates of the PEM bundle at `ca_file` only.
fn trusting(ca_file: &Path) -> Result<tokio_rustls::TlsConnector, String> {
    let shown = ca_file.display();
    let pem =
        std::fs::read(ca_file).map_err(|e| format!("notify CA bundle {shown} unreadable: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("notify CA bundle {shown}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("notify CA bundle {shown}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("notify CA bundle {shown} holds no certificate"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
