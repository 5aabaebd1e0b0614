//! The agent port over QUIC (`quic_listen`): the same `AgentService` as over TCP, its gRPC
//! session carried by one bidirectional stream of each QUIC connection
//! ([`sco_proto::quic::QuicStream`]). QUIC does the TLS: TLS 1.3 with the same server
//! certificate, a client certificate signed by the fleet CA required (enrollment, which has
//! none yet, stays on the TCP port), ALPN [`sco_proto::quic::ALPN`], and no 0-RTT (nothing an
//! agent sends first is safe to replay). Clients may change address (connection migration).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use quinn::crypto::rustls::QuicServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use sco_proto::quic::{QuicStream, ALPN};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    #[error("QUIC TLS: {0}")]
    Pem(String),
    #[error("QUIC TLS: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("QUIC TLS: {0}")]
    Verifier(String),
    #[error("QUIC: {0}")]
    Config(String),
    #[error("cannot listen on {addr} (quic_listen): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Connections accepted at once whose stream is not open yet: the rest wait in quinn.
const BACKLOG: usize = 64;

/// A QUIC server config from the fleet CA, the server certificate and its key (PEM), with
/// QUIC's keep-alive and idle timeout from the agents' heartbeat and dead-after times.
pub fn server_config(
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
    heartbeat: Duration,
    dead_after: Duration,
) -> Result<quinn::ServerConfig, QuicError> {
    let pem = |what: &str, e: rustls::pki_types::pem::Error| QuicError::Pem(format!("{what}: {e}"));
    let mut chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem("server certificate", e))?;
    let ca = CertificateDer::pem_slice_iter(ca_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem("CA certificate", e))?;
    if chain.is_empty() || ca.is_empty() {
        return Err(QuicError::Pem("no certificate in a PEM file".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| pem("server key", e))?;
    // The CA travels with the chain, as on the TCP port.
    chain.extend(ca.iter().cloned());
    let mut roots = rustls::RootCertStore::empty();
    for c in ca {
        roots.add(c)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Required, unlike on the TCP port: no enrollment over QUIC.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| QuicError::Verifier(e.to_string()))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // No 0-RTT: a replayed hello or message must never reach the handler.
    tls.max_early_data_size = 0;
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| QuicError::Config(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport(heartbeat, dead_after)?));
    // Agents move (DHCP, failover links, NAT rebinding): their connection follows them.
    config.migration(true);
    Ok(config)
}

/// Keep-alive every heartbeat, and a connection silent for the dead-after time is gone: the
/// same figures as HTTP/2's keep-alive on the TCP port. One stream per connection.
fn transport(
    heartbeat: Duration,
    dead_after: Duration,
) -> Result<quinn::TransportConfig, QuicError> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(heartbeat));
    t.max_idle_timeout(Some(quinn::IdleTimeout::try_from(dead_after).map_err(
        |e| QuicError::Config(format!("idle timeout {dead_after:?}: {e}")),
    )?));
    t.max_concurrent_bidi_streams(1u32.into());
    t.max_concurrent_uni_streams(0u32.into());
    Ok(t)
}

/// Binds `addr` (UDP) for QUIC.
pub fn bind(addr: SocketAddr, config: quinn::ServerConfig) -> Result<quinn::Endpoint, QuicError> {
    quinn::Endpoint::server(config, addr).map_err(|source| QuicError::Bind { addr, source })
}

/// The gRPC connections arriving on `endpoint`: each accepted QUIC connection's first
/// bidirectional stream, for `tonic`'s `serve_with_incoming_shutdown`. Handshakes run side by
/// side; one that fails (no or a bad certificate, wrong ALPN) is logged and dropped.
pub fn incoming(
    endpoint: quinn::Endpoint,
) -> impl Stream<Item = Result<QuicStream, std::io::Error>> {
    let (tx, rx) = mpsc::channel(BACKLOG);
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let streams = tx.clone();
            tokio::spawn(async move {
                let remote = incoming.remote_address();
                // 0-RTT is never accepted (the TLS config allows no early data), so the
                // handshake completes before any stream data is read.
                let connection = match incoming.await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::info!(%remote, error = %e, "QUIC handshake failed");
                        return;
                    }
                };
                match connection.accept_bi().await {
                    Ok((send, recv)) => {
                        let _ = streams
                            .send(Ok(QuicStream::new(connection, send, recv)))
                            .await;
                    }
                    Err(e) => {
                        tracing::info!(%remote, error = %e, "QUIC connection opened no stream")
                    }
                }
            });
            if tx.is_closed() {
                break;
            }
        }
    });
    ReceiverStream::new(rx)
}
