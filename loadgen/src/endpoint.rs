//! Where a simulated agent connects, and what a refusal says: the endpoints of `--target` (the
//! agent's `server.endpoints`, in order) and the replicas a full or overloaded control plane
//! names when it turns a new stream away (`RESOURCE_EXHAUSTED` with the
//! [`sco_proto::REDIRECT_METADATA`] metadata), read as `agent/src/uplink.rs` reads them.

use std::net::SocketAddr;

/// Replicas named in one refusal that an agent considers, at most (as the agent does).
pub const MAX_HINTS: usize = sco_proto::MAX_REDIRECT_HINTS;

/// Why a control plane refused a new stream, from its status message
/// (`control-plane/src/grpc.rs`, `redirect`).
pub const FULL: &str = "full";
pub const OVERLOADED: &str = "overloaded";
/// `RESOURCE_EXHAUSTED` with a message that names neither.
pub const OTHER: &str = "other";

/// How a session reaches an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// gRPC over TCP and TLS.
    Tcp,
    /// The same gRPC session over one stream of a QUIC connection (`quic://host:port`).
    Quic,
}

/// One place to connect to.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub transport: Transport,
    /// `host:port` (an IPv6 address in brackets).
    pub authority: String,
    /// The name the server certificate must carry: `--server-name` when given, else the host.
    pub server_name: String,
    /// The address, resolved once at start for the endpoints of `--target` over QUIC; a named
    /// replica is resolved when it is tried.
    pub addr: Option<SocketAddr>,
}

impl Endpoint {
    /// `host:port`, `https://host:port` (TCP) or `quic://host:port`; `bare` is the transport
    /// of an endpoint without a scheme. Anything else is refused with the reason.
    pub fn parse(text: &str, bare: Transport, server_name: Option<&str>) -> Result<Self, String> {
        let (transport, rest) = if let Some(rest) = text.strip_prefix(sco_proto::quic::SCHEME) {
            (Transport::Quic, rest)
        } else if let Some(rest) = text.strip_prefix("https://") {
            (Transport::Tcp, rest)
        } else if text.contains("://") {
            return Err(format!(
                "{text:?} must use https or quic (mTLS is mandatory)"
            ));
        } else {
            (bare, text)
        };
        let authority = rest.trim_end_matches('/');
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} has no port"))?;
        if host.is_empty() || host.contains('/') {
            return Err(format!("{text:?} has no host"));
        }
        port.parse::<u16>()
            .map_err(|_| format!("{text:?} has an invalid port {port:?}"))?;
        Ok(Self {
            transport,
            authority: authority.to_string(),
            server_name: server_name
                .map_or_else(|| host.trim_matches(['[', ']']).to_string(), str::to_string),
            addr: None,
        })
    }

    /// Whether two endpoints name the same server over the same transport.
    pub fn same_as(&self, other: &Endpoint) -> bool {
        self.transport == other.transport && self.authority == other.authority
    }

    /// As the agent would list it: `host:port`, or `quic://host:port`.
    pub fn label(&self) -> String {
        match self.transport {
            Transport::Tcp => self.authority.clone(),
            Transport::Quic => format!("{}{}", sco_proto::quic::SCHEME, self.authority),
        }
    }
}

/// The reason of a refusal, from its status message: [`FULL`] (the replica holds its stream
/// limit), [`OVERLOADED`] (its runtime is late: admission by load) or [`OTHER`].
pub fn refusal_reason(message: &str) -> &'static str {
    if message.contains("overloaded") {
        OVERLOADED
    } else if message.contains("holds its limit") {
        FULL
    } else {
        OTHER
    }
}

/// The replicas a refusal names, in its order, at most [`MAX_HINTS`]; anything that is not a
/// usable endpoint is left out. A name without a scheme is reached over TCP, as the agent does.
pub fn redirect_hints(s: &tonic::Status, server_name: Option<&str>) -> Vec<Endpoint> {
    let hints = sco_proto::redirect_hints(s).unwrap_or_else(|reason| {
        tracing::debug!(%reason, "ignoring the redirect hints");
        Vec::new()
    });
    hints
        .into_iter()
        .filter_map(|e| match Endpoint::parse(e, Transport::Tcp, server_name) {
            Ok(e) => Some(e),
            Err(reason) => {
                tracing::debug!(%reason, "ignoring a redirect hint");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(message: &str, hint: Option<&str>) -> tonic::Status {
        let mut s = tonic::Status::resource_exhausted(message);
        if let Some(h) = hint {
            s.metadata_mut().insert(
                sco_proto::REDIRECT_METADATA,
                h.parse().expect("metadata value"),
            );
        }
        s
    }

    #[test]
    fn endpoints_parse_as_the_agent_reads_them() {
        let e = Endpoint::parse("cp:7443", Transport::Quic, None).expect("valid");
        assert_eq!(
            (e.transport, e.authority.as_str(), e.server_name.as_str()),
            (Transport::Quic, "cp:7443", "cp")
        );
        assert_eq!(e.label(), "quic://cp:7443");
        let e = Endpoint::parse("https://[::1]:7443/", Transport::Quic, Some("localhost"))
            .expect("valid");
        assert_eq!(
            (e.transport, e.authority.as_str(), e.server_name.as_str()),
            (Transport::Tcp, "[::1]:7443", "localhost")
        );
        assert_eq!(e.label(), "[::1]:7443");
        let e = Endpoint::parse("quic://[::1]:7443", Transport::Tcp, None).expect("valid");
        assert_eq!(
            (e.transport, e.server_name.as_str()),
            (Transport::Quic, "::1")
        );
        for bad in [
            "cp",
            ":7443",
            "cp:99999",
            "cp:port",
            "http://cp:1",
            "https://",
            "a/b:1",
            "",
        ] {
            assert!(
                Endpoint::parse(bad, Transport::Tcp, None).is_err(),
                "{bad:?}"
            );
        }
        let a = Endpoint::parse("cp:1", Transport::Tcp, None).expect("valid");
        assert!(a.same_as(&Endpoint::parse("https://cp:1", Transport::Quic, None).expect("valid")));
        assert!(!a.same_as(&Endpoint::parse("quic://cp:1", Transport::Tcp, None).expect("valid")));
        assert!(!a.same_as(&Endpoint::parse("cp:2", Transport::Tcp, None).expect("valid")));
    }

    #[test]
    fn refusals_say_why_and_where_to_go() {
        // the control plane's own messages (control-plane/src/grpc.rs)
        assert_eq!(
            refusal_reason(
                "this replica holds its limit of 10 agent streams and knows no replica with room; \
                 try another endpoint"
            ),
            FULL
        );
        assert_eq!(
            refusal_reason(
                "this replica is overloaded (its runtime runs 300 ms late, over \
                 replicas.max_lag_ms = 250) and takes no new agent streams; connect to b:1"
            ),
            OVERLOADED
        );
        assert_eq!(refusal_reason("too many login attempts"), OTHER);

        for (hint, expected) in [
            (None, vec![]),
            (Some("b:7443"), vec!["b:7443"]),
            (
                Some(" b:7443 , quic://c:7443,,"),
                vec!["b:7443", "quic://c:7443"],
            ),
            // not endpoints: no port, plain http, a bad port
            (Some("b,http://c:1,d:99999,e:1"), vec!["e:1"]),
        ] {
            let got: Vec<String> = redirect_hints(&refusal("full", hint), None)
                .iter()
                .map(Endpoint::label)
                .collect();
            assert_eq!(got, expected, "{hint:?}");
        }
        let many = (1..=20).map(|i| format!("r{i}:1")).collect::<Vec<_>>();
        let got = redirect_hints(&refusal("full", Some(&many.join(","))), Some("localhost"));
        assert_eq!(got.len(), MAX_HINTS);
        assert!(got.iter().all(|e| e.server_name == "localhost"));
        // a value that is not text is ignored, not trusted
        let mut s = tonic::Status::resource_exhausted("full");
        s.metadata_mut().insert(
            sco_proto::REDIRECT_METADATA,
            tonic::metadata::MetadataValue::try_from(&b"b:1\xff"[..]).expect("opaque bytes"),
        );
        assert!(redirect_hints(&s, None).is_empty());
    }
}
