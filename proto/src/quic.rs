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
