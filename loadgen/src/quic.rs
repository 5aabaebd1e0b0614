//! The uplink over QUIC (`--quic`): what `agent/src/quic.rs` does, for many agents at once. Each
//! simulated agent's gRPC session runs over one bidirectional stream of its own QUIC connection,
//! with its own certificate (TLS 1.3, ALPN [`ALPN`], no early data); the connections share a few
//! UDP sockets ([`Sockets`]), so a run is not bounded by file descriptors the way one TCP
//! connection per agent is.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sco_proto::quic::{QuicStream, ALPN};
use tonic::transport::{Channel, Endpoint, Uri};

/// Agents whose connections share one UDP socket.
pub const AGENTS_PER_SOCKET: usize = 500;

/// The run's client sockets, bound at start.
pub struct Sockets {
    endpoints: Vec<quinn::Endpoint>,
}

impl Sockets {
    /// One socket per [`AGENTS_PER_SOCKET`] agents, bound to the wildcard address of
    /// `target`'s family.
    pub fn bind(agents: usize, target: SocketAddr) -> Result<Self, String> {
        let bind: SocketAddr = if target.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let endpoints = (0..agents.div_ceil(AGENTS_PER_SOCKET).max(1))
            .map(|_| quinn::Endpoint::client(bind).map_err(|e| format!("QUIC socket {bind}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { endpoints })
    }

    /// The socket of the agent numbered `n`.
    pub fn for_agent(&self, n: usize) -> quinn::Endpoint {
        self.endpoints[n % self.endpoints.len()].clone()
    }
}

/// The QUIC client configuration of one agent: its certificate and key, the fleet CA as the
/// only root, QUIC keep-alive every `heartbeat`, a connection silent for `dead_after` given up.
pub fn client_config(
    ca_pem: &[u8],
    cert_pem: &str,
    key_pem: &str,
    heartbeat: Duration,
    dead_after: Duration,
) -> Result<quinn::ClientConfig, String> {
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
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| format!("agent key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs(cert_pem.as_bytes(), "agent certificate")?, key)
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

/// A gRPC channel to `addr` whose one connection is a stream of a new QUIC connection from
/// `socket`.
pub async fn channel(
    socket: quinn::Endpoint,
    config: quinn::ClientConfig,
    addr: SocketAddr,
    server_name: &str,
    heartbeat: Duration,
    dead_after: Duration,
) -> Result<Channel, String> {
    let name = server_name.to_string();
    let connector = tower::service_fn(move |_: Uri| {
        let (socket, config, name) = (socket.clone(), config.clone(), name.clone());
        async move {
            let connection = socket
                .connect_with(config, addr, &name)
                .map_err(std::io::Error::other)?
                .await
                .map_err(std::io::Error::other)?;
            let (send, recv) = connection.open_bi().await.map_err(std::io::Error::other)?;
            Ok::<_, std::io::Error>(TokioIo::new(QuicStream::new(connection, send, recv)))
        }
    });
    // The URI only names the authority for HTTP/2; the connector makes the connection.
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(heartbeat)
        .keep_alive_timeout(dead_after)
        .connect_with_connector(connector)
        .await
        .map_err(|e| crate::agent::error_chain(&e))
}
