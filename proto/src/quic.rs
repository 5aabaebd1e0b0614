//! The QUIC uplink's byte stream: one QUIC connection per agent session carries one
//! bidirectional stream, and the very same gRPC (HTTP/2) session runs over it as over TCP and
//! TLS, so every message, acknowledgement and the outbox behave the same on both transports.
//! QUIC does the TLS itself (TLS 1.3, client certificate required, ALPN [`ALPN`]).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use quinn::rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The ALPN protocol both sides require on QUIC: the agent protocol's gRPC session.
pub const ALPN: &[u8] = b"sco-agent/1";

/// The scheme an agent endpoint is written with to use QUIC (`quic://host:port`).
pub const SCHEME: &str = "quic://";

/// One bidirectional QUIC stream and the connection it belongs to, read and written like a
/// TCP socket. Dropping it ends the connection (code 0) once what was written has been
/// delivered: one session, one connection.
pub struct QuicStream {
    connection: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
}

impl QuicStream {
    pub fn new(
        connection: quinn::Connection,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) -> Self {
        Self {
            connection,
            send,
            recv,
        }
    }

    pub fn connection(&self) -> &quinn::Connection {
        &self.connection
    }
}

/// How long the last data of a finished stream may take to be acknowledged before its
/// connection is closed anyway.
const LINGER: Duration = Duration::from_secs(2);

impl Drop for QuicStream {
    fn drop(&mut self) {
        // Closing the connection at once would discard what is still queued (an HTTP/2 GOAWAY, a
        // final status): finish this side, and close once the peer has acknowledged it all.
        let _ = self.send.finish();
        let delivered = self.send.stopped();
        let connection = self.connection.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let _ = tokio::time::timeout(LINGER, delivered).await;
                    connection.close(0u32.into(), b"session over");
                });
            }
            Err(_) => connection.close(0u32.into(), b"session over"),
        }
    }
}

impl AsyncRead for QuicStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        AsyncRead::poll_read(Pin::new(&mut self.recv), cx, buf)
    }
}

impl AsyncWrite for QuicStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.send), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.send), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_shutdown(Pin::new(&mut self.send), cx)
    }
}

/// What a gRPC handler knows of a QUIC connection (a request extension, as tonic's
/// `TlsConnectInfo` is over TCP): the peer's verified certificate chain and its address when
/// the stream was accepted (a migrating client may have moved since).
#[derive(Debug, Clone)]
pub struct QuicConnectInfo {
    pub remote_addr: SocketAddr,
    pub peer_certs: Option<Arc<Vec<CertificateDer<'static>>>>,
}

impl tonic::transport::server::Connected for QuicStream {
    type ConnectInfo = QuicConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        let peer_certs = self
            .connection
            .peer_identity()
            .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
            .map(|certs| Arc::new(*certs));
        QuicConnectInfo {
            remote_addr: self.connection.remote_address(),
            peer_certs,
        }
    }
}

/// An agent's QUIC client configuration, the same for the agent and the load generator: TLS 1.3
/// with the agent's certificate chain and key, the fleet CA as the only root, ALPN [`ALPN`], no
/// early data (nothing an agent sends first is safe to replay); QUIC keep-alive every
/// `heartbeat`, a connection silent for `dead_after` given up. All three are PEM. Errors are
/// plain text naming the part that is wrong.
pub fn client_config(
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
    heartbeat: Duration,
    dead_after: Duration,
) -> Result<quinn::ClientConfig, String> {
    use quinn::crypto::rustls::QuicClientConfig;
    use quinn::rustls;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;

    let certs = |pem: &[u8], what: &str| -> Result<Vec<CertificateDer<'static>>, String> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{what}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("{what}: no certificate"));
        }
        Ok(certs)
    };
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs(ca_pem, "CA certificate")? {
        roots.add(ca).map_err(|e| format!("CA certificate: {e}"))?;
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("agent key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs(cert_pem, "agent certificate")?, key)
        .map_err(|e| format!("agent certificate: {e}"))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.enable_early_data = false;
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| format!("QUIC TLS: {e}"))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(heartbeat));
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(dead_after)
            .map_err(|e| format!("idle timeout {dead_after:?}: {e}"))?,
    ));
    config.transport_config(Arc::new(transport));
    Ok(config)
}
