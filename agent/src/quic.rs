//! The uplink over QUIC (an endpoint written `quic://host:port`): a gRPC channel whose one
//! connection is a bidirectional stream of a QUIC connection, so the session above it (hello,
//! outbox, acks, heartbeats, renewal) is the very code that runs over TCP. QUIC does the TLS:
//! TLS 1.3, this agent's certificate and key, the fleet CA, the same server name rule as over
//! TCP, and no 0-RTT. The client socket is bound to the wildcard address, so the connection
//! follows the host when its address changes (QUIC connection migration).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use sco_proto::quic::{QuicStream, SCHEME};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::config::ServerSection;

/// The agent's QUIC sockets, one per address family, bound at first use and kept for the
/// next connections: one UDP socket for the agent's life instead of one per reconnection.
#[derive(Default)]
pub struct Sockets {
    v4: std::sync::Mutex<Option<quinn::Endpoint>>,
    v6: std::sync::Mutex<Option<quinn::Endpoint>>,
}

impl Sockets {
    /// The socket for connections to `target`, bound to the wildcard of its family: the kernel
    /// picks the source address of every datagram, so a changed address is used at once and
    /// QUIC migrates the connection.
    fn for_target(&self, target: SocketAddr) -> Result<quinn::Endpoint, String> {
        let (slot, bind): (_, SocketAddr) = if target.is_ipv4() {
            (&self.v4, (Ipv4Addr::UNSPECIFIED, 0).into())
        } else {
            (&self.v6, (Ipv6Addr::UNSPECIFIED, 0).into())
        };
        // a poisoned lock still holds a usable endpoint (or none)
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(endpoint) = slot.as_ref() {
            return Ok(endpoint.clone());
        }
        let endpoint =
            quinn::Endpoint::client(bind).map_err(|e| format!("QUIC socket {bind}: {e}"))?;
        *slot = Some(endpoint.clone());
        Ok(endpoint)
    }
}

/// A gRPC channel to `endpoint` (`quic://host:port`) over QUIC, from one of `sockets`. Errors
/// are plain text, for the caller's own error type.
pub async fn channel(
    sockets: &Sockets,
    server: &ServerSection,
    endpoint: &str,
    heartbeat: Duration,
    dead_after: Duration,
    connect_timeout: Duration,
) -> Result<Channel, String> {
    let rest = endpoint
        .strip_prefix(SCHEME)
        .ok_or_else(|| format!("endpoint {endpoint:?} is not a QUIC endpoint"))?
        .trim_end_matches('/');
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("endpoint {endpoint:?} has no port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("endpoint {endpoint:?} has an invalid port {port:?}"))?;
    let bare_host = host.trim_matches(['[', ']']).to_string();
    let server_name = server
        .server_name
        .clone()
        .unwrap_or_else(|| bare_host.clone());
    let config = client_config(server, heartbeat, dead_after)?;
    let addr = tokio::time::timeout(
        connect_timeout,
        tokio::net::lookup_host((bare_host.as_str(), port)),
    )
    .await
    .map_err(|_| format!("resolving {bare_host}: timed out"))?
    .map_err(|e| format!("resolving {bare_host}: {e}"))?
    .next()
    .ok_or_else(|| format!("{bare_host} resolves to no address"))?;
    let quic = sockets.for_target(addr)?;
    let connector = tower::service_fn(move |_: Uri| {
        let quic = quic.clone();
        let config = config.clone();
        let server_name = server_name.clone();
        async move {
            let connection = quic
                .connect_with(config, addr, &server_name)
                .map_err(std::io::Error::other)?
                .await
                .map_err(std::io::Error::other)?;
            let (send, recv) = connection.open_bi().await.map_err(std::io::Error::other)?;
            tracing::debug!(%addr, "QUIC connection open");
            Ok::<_, std::io::Error>(TokioIo::new(QuicStream::new(connection, send, recv)))
        }
    });
    // The URI only names the authority for HTTP/2; the connector above makes the connection.
    Endpoint::from_shared(format!("http://{host}:{port}"))
        .map_err(|e| format!("endpoint {endpoint}: {e}"))?
        .connect_timeout(connect_timeout)
        .http2_keep_alive_interval(heartbeat)
        .keep_alive_timeout(dead_after)
        .connect_with_connector(connector)
        .await
        .map_err(|e| format!("connect {endpoint}: {}", crate::uplink::error_chain(&e)))
}

/// [`sco_proto::quic::client_config`] from this agent's certificate, key and fleet CA, read at
/// every connection, so a renewed certificate is used from the next.
fn client_config(
    server: &ServerSection,
    heartbeat: Duration,
    dead_after: Duration,
) -> Result<quinn::ClientConfig, String> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    sco_proto::quic::client_config(
        &read(&server.ca)?,
        &read(&server.cert)?,
        &read(&server.key)?,
        heartbeat,
        dead_after,
    )
    .map_err(|e| {
        format!(
            "{e} (CA {}, certificate {}, key {})",
            server.ca.display(),
            server.cert.display(),
            server.key.display()
        )
    })
}
