//! The agent's identity: enrollment with a one-time token (pinning the
//! fleet CA by fingerprint, as `kubeadm join` does), and certificate renewal
//! at two thirds of its lifetime. Private keys are generated here and never
//! leave the host.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sco_proto::v1::agent_service_client::AgentServiceClient;
use sco_proto::v1::enrollment_service_client::EnrollmentServiceClient;
use sco_proto::v1::{CertificateResponse, EnrollRequest, RenewRequest};
use sha2::Digest;
use tokio::sync::watch;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::config::{endpoint_uri, ServerSection};

mod der;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot reach {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error(
        "the server at {endpoint} did not present a CA with fingerprint {expected}; it presented {presented:?}. \
         Check --ca-sha256 (sco-control-plane prints the right one) or whether something intercepts the connection"
    )]
    Fingerprint {
        endpoint: String,
        expected: String,
        presented: Vec<String>,
    },
    #[error("refused by the control plane: {0}")]
    Refused(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key generation failed")]
    Key,
}

/// Paths of the three identity files.
#[derive(Debug, Clone)]
pub struct IdentityFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The fleet's policy verifying key (hex).
    pub policy_key: PathBuf,
}

impl IdentityFiles {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            policy_key: dir.join("policy.pub"),
            cert: dir.join("agent.pem"),
            key: dir.join("agent.key"),
        }
    }
    pub fn of(server: &ServerSection) -> Self {
        Self {
            ca: server.ca.clone(),
            policy_key: server.policy_key_path(),
            cert: server.cert.clone(),
            key: server.key.clone(),
        }
    }
}

/// (not_before, not_after) of the first certificate in a PEM file, Unix ms.
pub fn cert_validity(path: &Path) -> Option<(i64, i64)> {
    let pem = std::fs::read(path).ok()?;
    let der = CertificateDer::pem_slice_iter(&pem).next()?.ok()?;
    let (not_before, not_after) = der::validity(der.as_ref())?;
    Some((not_before * 1000, not_after * 1000))
}

fn sha256_hex(der: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(der))
}

/// Accepts any chain but records it: used only to find the pinned CA among
/// the certificates the server presents, never to send data.
#[derive(Debug)]
struct Capture {
    chain: Mutex<Vec<CertificateDer<'static>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut chain) = self.chain.lock() {
            chain.push(end_entity.clone().into_owned());
            chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        }
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn host_port(endpoint: &str) -> Result<(String, String), IdentityError> {
    let uri = endpoint_uri(endpoint).map_err(IdentityError::Invalid)?;
    let rest = uri
        .trim_start_matches("https://")
        .trim_start_matches(sco_proto::quic::SCHEME)
        .trim_end_matches('/');
    let (host, _) = rest
        .rsplit_once(':')
        .ok_or_else(|| IdentityError::Invalid(format!("endpoint {endpoint:?} has no port")))?;
    Ok((host.trim_matches(['[', ']']).to_string(), rest.to_string()))
}

/// Finds the CA whose SHA-256 is `fingerprint` among the certificates the
/// server presents (the control plane sends its CA in its chain).
pub async fn fetch_pinned_ca(endpoint: &str, fingerprint: &str) -> Result<String, IdentityError> {
    let expected = fingerprint.trim().to_ascii_lowercase().replace(':', "");
    if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(IdentityError::Invalid(format!(
            "--ca-sha256 {fingerprint:?} is not a SHA-256 hex fingerprint (64 hex digits)"
        )));
    }
    let (host, addr) = host_port(endpoint)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let capture = Arc::new(Capture {
        chain: Mutex::new(Vec::new()),
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| IdentityError::Invalid(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let connect_err = |reason: String| IdentityError::Connect {
        endpoint: endpoint.to_string(),
        reason,
    };
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(&addr),
    )
    .await
    .map_err(|_| connect_err("timed out".into()))?
    .map_err(|e| connect_err(e.to_string()))?;
    let name = ServerName::try_from(host.clone())
        .map_err(|e| IdentityError::Invalid(format!("server name {host:?}: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // The handshake may still fail after the certificate was seen (e.g. the
    // server wants a client certificate); the chain is what matters here.
    let _ = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp)).await;
    let chain = capture.chain.lock().map(|c| c.clone()).unwrap_or_default();
    let presented: Vec<String> = chain.iter().map(|c| sha256_hex(c.as_ref())).collect();
    let Some(ca) = chain.iter().find(|c| sha256_hex(c.as_ref()) == expected) else {
        return Err(IdentityError::Fingerprint {
            endpoint: endpoint.to_string(),
            expected,
            presented,
        });
    };
    Ok(pem_encode("CERTIFICATE", ca.as_ref()))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A new private key (PKCS#8 PEM) and a CSR for it (PEM).
fn key_and_csr() -> Result<(String, String), IdentityError> {
    let (key, csr) = der::key_and_csr("sco-agent").map_err(|_| IdentityError::Key)?;
    Ok((
        pem_encode("PRIVATE KEY", &key),
        pem_encode("CERTIFICATE REQUEST", &csr),
    ))
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut f = opts.open(&tmp).map_err(io)?;
        f.write_all(contents.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    // Rename is atomic: a crash leaves the old file or the new one, never half.
    std::fs::rename(&tmp, path).map_err(io)
}

/// Writes key and certificate so that a reader never sees a new certificate
/// with an old key for longer than the two renames.
fn store_identity(
    files: &IdentityFiles,
    ca: Option<&str>,
    key: &str,
    cert: &str,
) -> Result<(), IdentityError> {
    if let Some(dir) = files.cert.parent() {
        std::fs::create_dir_all(dir).map_err(|source| IdentityError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    if let Some(ca) = ca {
        write_file(&files.ca, ca, false)?;
    }
    write_file(&files.key, key, true)?;
    write_file(&files.cert, cert, false)
}

/// Keeps the policy verifying key the control plane sent with a
/// certificate (a fleet whose key was rotated hands out the new one).
fn store_policy_key(files: &IdentityFiles, key_hex: &str) -> Result<(), IdentityError> {
    let key_hex = key_hex.trim();
    if key_hex.is_empty() {
        return Ok(());
    }
    if key_hex.len() != 64 || hex::decode(key_hex).is_err() {
        return Err(IdentityError::Invalid(
            "the control plane sent an invalid policy key".into(),
        ));
    }
    if std::fs::read_to_string(&files.policy_key).is_ok_and(|k| k.trim() == key_hex) {
        return Ok(());
    }
    write_file(&files.policy_key, &format!("{key_hex}\n"), false)
}

fn refused(s: tonic::Status) -> IdentityError {
    IdentityError::Refused(s.message().to_string())
}

pub struct Enrolled {
    pub agent_id: String,
    pub not_after_ms: i64,
}

/// `sco-agent enroll`: nothing is written unless enrollment succeeds.
pub async fn enroll(
    endpoint: &str,
    token: &str,
    ca_sha256: &str,
    server_name: Option<&str>,
    files: &IdentityFiles,
) -> Result<Enrolled, IdentityError> {
    if token.trim().is_empty() {
        return Err(IdentityError::Invalid("--token is empty".into()));
    }
    if crate::config::is_quic(endpoint) {
        return Err(IdentityError::Invalid(format!(
            "--endpoint {endpoint:?}: enrollment is served on the control plane's TCP port \
             (grpc_listen, host:port), not over QUIC"
        )));
    }
    let ca_pem = fetch_pinned_ca(endpoint, ca_sha256).await?;
    let (host, _) = host_port(endpoint)?;
    let (key, csr) = key_and_csr()?;
    let uri = endpoint_uri(endpoint).map_err(IdentityError::Invalid)?;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca_pem))
        .domain_name(server_name.unwrap_or(&host).to_string());
    let channel = Endpoint::from_shared(uri.clone())
        .map_err(|e| IdentityError::Invalid(format!("endpoint {uri}: {e}")))?
        .tls_config(tls)
        .map_err(|e| IdentityError::Invalid(e.to_string()))?
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| IdentityError::Connect {
            endpoint: endpoint.to_string(),
            reason: e.to_string(),
        })?;
    let hostname = crate::host::hostname();
    let response: CertificateResponse = EnrollmentServiceClient::new(channel)
        .enroll(EnrollRequest {
            token: token.trim().to_string(),
            csr_pem: csr,
            hostname,
        })
        .await
        .map_err(refused)?
        .into_inner();
    store_identity(files, Some(&ca_pem), &key, &response.certificate_pem)?;
    store_policy_key(files, &response.policy_key)?;
    Ok(Enrolled {
        agent_id: response.agent_id,
        not_after_ms: response.not_after_ms,
    })
}

/// Renews the certificate over an mTLS channel authenticated by the current
/// one; returns the new expiry.
pub async fn renew(server: &ServerSection, endpoint: &str) -> Result<i64, IdentityError> {
    let files = IdentityFiles::of(server);
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| IdentityError::Io {
            path: p.to_path_buf(),
            source,
        })
    };
    let (host, _) = host_port(endpoint)?;
    let uri = endpoint_uri(endpoint).map_err(IdentityError::Invalid)?;
    let channel = if crate::config::is_quic(&uri) {
        // `Renew` is served over QUIC too: the current certificate authenticates it the same way.
        // a renewal is rare: its socket lasts as long as its connection
        crate::quic::channel(
            &crate::quic::Sockets::default(),
            server,
            &uri,
            Duration::from_secs(server.heartbeat_secs),
            Duration::from_secs(server.dead_after_secs),
            Duration::from_secs(10),
        )
        .await
        .map_err(|reason| IdentityError::Connect {
            endpoint: endpoint.to_string(),
            reason,
        })?
    } else {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&files.ca)?))
            .identity(Identity::from_pem(read(&files.cert)?, read(&files.key)?))
            .domain_name(server.server_name.clone().unwrap_or(host));
        Endpoint::from_shared(uri.clone())
            .map_err(|e| IdentityError::Invalid(format!("endpoint {uri}: {e}")))?
            .tls_config(tls)
            .map_err(|e| IdentityError::Invalid(e.to_string()))?
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .map_err(|e| IdentityError::Connect {
                endpoint: endpoint.to_string(),
                reason: e.to_string(),
            })?
    };
    let (key, csr) = key_and_csr()?;
    let response = AgentServiceClient::new(channel)
        .renew(RenewRequest { csr_pem: csr })
        .await
        .map_err(refused)?
        .into_inner();
    store_identity(&files, None, &key, &response.certificate_pem)?;
    store_policy_key(&files, &response.policy_key)?;
    Ok(response.not_after_ms)
}

/// When to renew: at two thirds of the certificate's lifetime.
pub fn renew_at_ms(not_before_ms: i64, not_after_ms: i64) -> i64 {
    not_before_ms + (not_after_ms - not_before_ms) * 2 / 3
}

/// Keeps the certificate fresh until `shutdown`. Failures retry with
/// exponential backoff and are logged as errors once a sixth of the
/// lifetime is left.
pub async fn renewal_loop(server: ServerSection, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Duration::from_secs(1);
    let mut attempt = 0usize;
    loop {
        let Some((nb, na)) = cert_validity(&server.cert) else {
            tracing::error!(path = %server.cert.display(), "cannot read the agent certificate; renewal paused");
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(30)) => continue,
                _ = shutdown.changed() => return,
            }
        };
        let now = crate::clock::now_ms();
        let due = renew_at_ms(nb, na);
        if now < due {
            let wait = Duration::from_millis(u64::try_from(due - now).unwrap_or(0));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        let endpoint = &server.endpoints[attempt % server.endpoints.len()];
        match renew(&server, endpoint).await {
            Ok(not_after_ms) => {
                tracing::info!(not_after_ms, "agent certificate renewed");
                backoff = Duration::from_secs(1);
                attempt = 0;
            }
            Err(e) => {
                let left_ms = na - crate::clock::now_ms();
                if left_ms < (na - nb) / 6 {
                    tracing::error!(error = %e, left_ms, "certificate renewal keeps failing and expiry is near");
                } else {
                    tracing::warn!(error = %e, "certificate renewal failed; retrying");
                }
                attempt += 1;
                let delay = rand::random_range(backoff / 2..=backoff);
                // Never sleep past expiry by much: retries stay frequent.
                let cap =
                    Duration::from_millis(u64::try_from((na - nb) / 20).unwrap_or(1000).max(1000))
                        .min(Duration::from_secs(300));
                backoff = (backoff * 2).min(cap);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_at_two_thirds() {
        assert_eq!(renew_at_ms(0, 3000), 2000);
        assert_eq!(renew_at_ms(1000, 1900), 1600);
    }

    #[tokio::test]
    async fn bad_fingerprints_are_refused_before_connecting() {
        let err = fetch_pinned_ca("127.0.0.1:1", "abc")
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("--ca-sha256"), "{err}");
    }
}
