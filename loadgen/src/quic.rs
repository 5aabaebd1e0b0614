//! The uplink over QUIC (`--quic`): what `agent/src/quic.rs` does, for many agents at once. Each
//! simulated agent's gRPC session runs over one bidirectional stream of its own QUIC connection,
//! with its own certificate ([`sco_proto::quic::client_config`]); the connections share a few
//! UDP sockets ([`Sockets`]), so a run is not bounded by file descriptors the way one TCP
//! connection per agent is.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use sco_proto::quic::QuicStream;
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
