//! The stream to the control plane: connect over mTLS, say hello, resend
//! what the outbox holds, follow it with new messages, apply acks, exchange
//! heartbeats, and reconnect with exponential backoff and jitter. What is sent and not yet
//! acknowledged stays under a window sized from the link's measured delivery rate
//! ([`crate::flight`]), so that a backlog never queues in front of the stream's own keep-alives
//! for longer than the link's liveness checks allow. A replica at its stream
//! limit turns the agent away naming replicas with room: the agent connects to one of them (or
//! the next endpoint of its list) at once, and backs off only when every one it tries is full.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sco_proto::v1::agent_service_client::AgentServiceClient;
use sco_proto::v1::{control_message, AgentMessage, Hello};
use tokio::sync::{mpsc, watch, Mutex, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::clock::now_ms;
use crate::config::{endpoint_uri, ServerSection};
use crate::fleet_model::{Assignment, Downloads, Next};
use crate::flight::Flight;
use crate::outbox::Outbox;
pub use crate::requests::Inbound;
use crate::AgentError;

/// Messages resent per batch before the uplink looks at incoming acks again.
const SEND_BATCH: usize = 256;

/// How long a connection (TCP and TLS, or the QUIC handshake and its stream) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Replicas named in one refusal that the agent considers, at most.
const MAX_HINTS: usize = sco_proto::MAX_REDIRECT_HINTS;

pub struct Uplink {
    pub server: ServerSection,
    /// This host's offset after a window's end at which its rollup is sent
    /// ([`sco_proto::spread`]).
    pub spread_offset_ms: i64,
    pub hello: Hello,
    pub outbox: Arc<Mutex<Outbox>>,
    /// Signalled whenever a new message lands in the outbox.
    pub new_data: Arc<Notify>,
    /// Connection state for observers (tests, status output).
    pub connected: watch::Sender<bool>,
    /// Remediation requests from the control plane, for the remediator.
    pub commands: mpsc::Sender<Inbound>,
    /// The anomaly detector's state, sent with every heartbeat.
    pub detector: watch::Receiver<crate::status::Status>,
    /// Where acknowledgements are noted, for the health endpoint.
    pub activity: Arc<crate::status::Activity>,
    /// Models offered by the fleet: their downloads and checks.
    pub downloads: std::sync::Mutex<Downloads>,
    /// A verified fleet model (or a refusal), for the pipeline to load and report.
    pub fleet_model: watch::Sender<Option<Assignment>>,
    /// The UDP sockets of `quic://` endpoints, kept across reconnections.
    pub quic: crate::quic::Sockets,
}

enum End {
    Shutdown,
    Lost(String),
    /// The control plane refuses this agent (permission denied: revoked).
    Refused(String),
    /// The replica holds all the streams it takes (resource exhausted); `elsewhere` are the
    /// replicas with room it named, usable endpoints only.
    Full {
        reason: String,
        elsewhere: Vec<String>,
    },
}

/// How a gRPC status ends a session: a refusal of this agent, a full replica, or a loss.
fn ended_by(s: &tonic::Status) -> End {
    let text = format!("{}: {}", s.code(), s.message());
    match s.code() {
        tonic::Code::PermissionDenied => End::Refused(text),
        tonic::Code::ResourceExhausted => End::Full {
            reason: text,
            elsewhere: redirect_hints(s),
        },
        _ => End::Lost(text),
    }
}

/// The replicas a full one named ([`sco_proto::REDIRECT_METADATA`]), in its order; anything
/// that is not a usable endpoint is left out (and logged).
fn redirect_hints(s: &tonic::Status) -> Vec<String> {
    let hints = sco_proto::redirect_hints(s).unwrap_or_else(|reason| {
        tracing::warn!(%reason, "ignoring the redirect hints");
        Vec::new()
    });
    hints
        .into_iter()
        .filter(|e| match endpoint_uri(e) {
            Ok(_) => true,
            Err(reason) => {
                tracing::warn!(%reason, "ignoring a redirect hint");
                false
            }
        })
        .map(str::to_string)
        .collect()
}

/// Whether two endpoints name the same server (`cp:7443` and `https://cp:7443` do).
fn same_endpoint(a: &str, b: &str) -> bool {
    match (endpoint_uri(a), endpoint_uri(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

impl Uplink {
    fn tls(&self, endpoint: &str) -> Result<ClientTlsConfig, AgentError> {
        let read = |p: &std::path::Path| {
            std::fs::read(p)
                .map_err(|e| AgentError::Tls(format!("cannot read {}: {e}", p.display())))
        };
        let ca = read(&self.server.ca)?;
        let cert = read(&self.server.cert)?;
        let key = read(&self.server.key)?;
        let domain = match &self.server.server_name {
            Some(name) => name.clone(),
            None => endpoint
                .trim_start_matches("https://")
                .rsplit_once(':')
                .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
                .unwrap_or_default(),
        };
        Ok(ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .identity(Identity::from_pem(cert, key))
            .domain_name(domain))
    }

    fn lock_downloads(&self) -> std::sync::MutexGuard<'_, Downloads> {
        // only this task uses it; a poisoned lock still holds consistent files
        self.downloads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What a model offer or chunk leads to: a request to send, or an assignment for the
    /// pipeline.
    fn model_step(&self, next: Next) -> Option<AgentMessage> {
        match next {
            Next::Request { number, offset } => {
                tracing::info!(number, offset, "asking for a fleet model");
                Some(crate::pb::model_request_message(number, offset, now_ms()))
            }
            Next::Assign(a) => {
                self.fleet_model.send_replace(Some(a));
                None
            }
            Next::Wait => None,
        }
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let initial = Duration::from_millis(self.server.backoff_initial_ms);
        let max = Duration::from_millis(self.server.backoff_max_ms);
        let mut backoff = initial;
        let mut index = 0usize;
        // A replica with room that a full one named, tried next instead of the list.
        let mut hinted: Option<String> = None;
        // Full replicas met since the last stream that worked: while few, the next is tried
        // at once; once every endpoint (and some named ones) turned the agent away, it backs
        // off like after any failure.
        let mut full_in_a_row = 0usize;
        loop {
            let endpoint = hinted.take().unwrap_or_else(|| {
                self.server.endpoints[index % self.server.endpoints.len()].clone()
            });
            let started = Instant::now();
            let mut heard = false;
            let mut refused = false;
            let mut at_once = false;
            match self.session(&endpoint, &mut shutdown, &mut heard).await {
                Ok(End::Shutdown) => break,
                Ok(End::Full { reason, elsewhere }) => {
                    full_in_a_row += 1;
                    at_once = full_in_a_row <= self.server.endpoints.len() + MAX_HINTS;
                    hinted = elsewhere.into_iter().find(|e| !same_endpoint(e, &endpoint));
                    let next = hinted.clone().unwrap_or_else(|| {
                        self.server.endpoints[(index + 1) % self.server.endpoints.len()].clone()
                    });
                    tracing::info!(
                        %endpoint,
                        %reason,
                        %next,
                        at_once,
                        "control plane full; redirected to another endpoint"
                    );
                }
                Ok(End::Refused(reason)) => {
                    refused = true;
                    tracing::error!(
                        %endpoint,
                        %reason,
                        retry_in_secs = self.server.refused_retry_secs,
                        "the control plane refuses this agent; data stays in the outbox; \
                         re-enroll it (sco-agent enroll) to resume"
                    );
                }
                Ok(End::Lost(reason)) | Err(AgentError::Stream(reason)) => {
                    tracing::warn!(%endpoint, %reason, "connection to control plane lost");
                }
                Err(e) => tracing::warn!(%endpoint, error = %e, "cannot connect to control plane"),
            }
            let _ = self.connected.send(false);
            if heard {
                full_in_a_row = 0;
            }
            if heard && started.elapsed() > Duration::from_secs(5) {
                backoff = initial;
            } else {
                // Fail over to the next endpoint only when this one fails.
                index += 1;
            }
            // Full jitter over the upper half avoids reconnect storms after a
            // control-plane restart while keeping a lower bound.
            let delay = if refused {
                Duration::from_secs(self.server.refused_retry_secs)
            } else if at_once {
                Duration::ZERO
            } else {
                rand::random_range(backoff / 2..=backoff)
            };
            if !at_once {
                backoff = (backoff * 2).min(max);
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
        }
    }

    async fn session(
        &self,
        endpoint: &str,
        shutdown: &mut watch::Receiver<bool>,
        heard: &mut bool,
    ) -> Result<End, AgentError> {
        let uri = endpoint_uri(endpoint).map_err(AgentError::Tls)?;
        let heartbeat = Duration::from_secs(self.server.heartbeat_secs);
        let dead_after = Duration::from_secs(self.server.dead_after_secs);
        let channel: Channel = if crate::config::is_quic(&uri) {
            crate::quic::channel(
                &self.quic,
                &self.server,
                &uri,
                heartbeat,
                dead_after,
                CONNECT_TIMEOUT,
            )
            .await
            .map_err(AgentError::Stream)?
        } else {
            Endpoint::from_shared(uri.clone())
                .map_err(|e| AgentError::Tls(format!("endpoint {uri}: {e}")))?
                .tls_config(self.tls(&uri)?)
                .map_err(|e| AgentError::Tls(format!("tls config: {e}")))?
                .connect_timeout(CONNECT_TIMEOUT)
                .http2_keep_alive_interval(heartbeat)
                .keep_alive_timeout(dead_after)
                .connect()
                .await
                .map_err(|e| AgentError::Stream(format!("connect {uri}: {}", error_chain(&e))))?
        };
        let mut client = AgentServiceClient::new(channel);
        let (tx, rx) = mpsc::channel::<AgentMessage>(SEND_BATCH);
        let mut hello = self.hello.clone();
        hello.last_seq = self.outbox.lock().await.last_seq();
        let send = |m| {
            let tx = tx.clone();
            async move {
                tx.send(m)
                    .await
                    .map_err(|_| AgentError::Stream("stream closed".into()))
            }
        };
        send(crate::pb::hello_message(hello, now_ms())).await?;
        let mut inbound = match client.connect(ReceiverStream::new(rx)).await {
            Ok(r) => r.into_inner(),
            Err(s) => return Ok(ended_by(&s)),
        };
        let transport = if crate::config::is_quic(&uri) {
            "quic"
        } else {
            "grpc"
        };
        tracing::info!(%uri, transport, "connected to control plane");
        let _ = self.connected.send(true);

        let mut last_sent = 0u64;
        let mut last_heard = Instant::now();
        let mut flight = Flight::new(dead_after);
        let mut ticker = tokio::time::interval(heartbeat);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let (mut more, mut hold) = (false, None);
            if flight.has_room() {
                let batch = self.outbox.lock().await.after(last_sent, SEND_BATCH)?;
                hold = held_for(&batch, self.spread_offset_ms, now_ms());
                more = batch.len() == SEND_BATCH && hold.is_none();
                if hold.is_none() {
                    for m in batch {
                        if !flight.has_room() {
                            // the rest waits for acknowledgements
                            more = false;
                            break;
                        }
                        last_sent = m.seq;
                        flight.sent(
                            m.seq,
                            prost::Message::encoded_len(&m) as u64,
                            Instant::now(),
                        );
                        send(m).await?;
                    }
                    self.activity.in_flight(flight.in_flight(), flight.window());
                }
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => return Ok(End::Shutdown),
                msg = inbound.message() => match msg {
                    Ok(Some(m)) => {
                        *heard = true;
                        last_heard = Instant::now();
                        match m.body {
                            Some(control_message::Body::Ack(ack)) => {
                                self.outbox.lock().await.ack(ack.up_to_seq)?;
                                flight.acked(ack.up_to_seq, Instant::now());
                                self.activity.acked(now_ms());
                                self.activity.in_flight(flight.in_flight(), flight.window());
                            }
                            Some(control_message::Body::Command(c)) => {
                                if let Err(e) = self.commands.try_send(Inbound::Command(crate::pb::command(c))) {
                                    tracing::warn!(error = %e, "remediation queue full; request dropped");
                                }
                            }
                            Some(control_message::Body::ModelOffer(o)) => {
                                let next = self.lock_downloads().offer(crate::pb::model_offer(o));
                                if let Some(m) = self.model_step(next) {
                                    send(m).await?;
                                }
                            }
                            Some(control_message::Body::ModelChunk(c)) => {
                                let next = self.lock_downloads().chunk(crate::pb::model_chunk(c));
                                if let Some(m) = self.model_step(next) {
                                    send(m).await?;
                                }
                            }
                            Some(control_message::Body::Policy(p)) => {
                                if let Err(e) = self.commands.try_send(Inbound::Policy(crate::pb::signed_policy(p))) {
                                    // Sent again on the next connection.
                                    tracing::warn!(error = %e, "policy queue full; update dropped");
                                }
                            }
                            _ => {}
                        }
                    }
                    Ok(None) => return Ok(End::Lost("control plane closed the stream".into())),
                    Err(s) => return Ok(ended_by(&s)),
                },
                () = std::future::ready(()), if more => {}
                () = tokio::time::sleep(hold.unwrap_or_default()), if hold.is_some() => {}
                () = self.new_data.notified() => {}
                _ = ticker.tick() => {
                    if last_heard.elapsed() > dead_after {
                        return Ok(End::Lost(format!("nothing heard for {dead_after:?}")));
                    }
                    let (pending, dropped) = {
                        let o = self.outbox.lock().await;
                        (o.pending(), o.dropped_total())
                    };
                    let detector = self.detector.borrow().clone();
                    let cert_not_after_ms = crate::identity::cert_validity(&self.server.cert)
                        .map_or(0, |(_, na)| na);
                    send(crate::pb::heartbeat_message(
                        pending,
                        dropped,
                        cert_not_after_ms,
                        &detector,
                        now_ms(),
                    ))
                    .await?;
                }
            }
        }
    }
}

/// How long to keep what the outbox offers before sending it: only when it is nothing but
/// fresh rollups, until the first one's window ended `offset_ms` ago. Anything else in the
/// batch (an event, a status) sends the whole batch at once, and a backlog is never held.
/// The wait is at most `offset_ms`, whatever the clock did.
fn held_for(batch: &[AgentMessage], offset_ms: i64, now_ms: i64) -> Option<Duration> {
    use sco_proto::v1::agent_message::Body;
    if offset_ms <= 0 || batch.is_empty() {
        return None;
    }
    let mut first_end = None;
    for m in batch {
        match &m.body {
            Some(Body::Rollup(r)) => {
                first_end.get_or_insert(r.window_end_ms);
            }
            _ => return None,
        }
    }
    let due = first_end?.saturating_add(offset_ms);
    let wait = due.saturating_sub(now_ms).min(offset_ms);
    (wait > 0).then(|| Duration::from_millis(wait.unsigned_abs()))
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(hint: Option<&str>) -> tonic::Status {
        let mut s = tonic::Status::resource_exhausted("this replica holds its limit");
        if let Some(h) = hint {
            s.metadata_mut().insert(
                sco_proto::REDIRECT_METADATA,
                h.parse().expect("ascii header value"),
            );
        }
        s
    }

    fn rollup(seq: u64, window_end_ms: i64) -> AgentMessage {
        use sco_proto::v1::{agent_message::Body, MetricRollup};
        AgentMessage {
            seq,
            produced_at_ms: window_end_ms,
            body: Some(Body::Rollup(MetricRollup {
                window_start_ms: window_end_ms - 10_000,
                window_end_ms,
                ..Default::default()
            })),
        }
    }

    #[test]
    fn fresh_rollups_wait_for_the_hosts_slot_and_nothing_else_does() {
        let ms = Duration::from_millis;
        // a window that ended 200 ms ago waits for this host's offset of 3 s
        assert_eq!(
            held_for(&[rollup(1, 10_000)], 3_000, 10_200),
            Some(ms(2_800))
        );
        // the first (oldest) rollup decides: its slot has come, the batch goes
        assert_eq!(
            held_for(&[rollup(1, 10_000), rollup(2, 20_000)], 3_000, 13_000),
            None
        );
        // a backlog from before a reconnect goes at once
        assert_eq!(held_for(&[rollup(1, 10_000)], 3_000, 60_000), None);
        // an event behind a held rollup takes it along
        let event = AgentMessage {
            seq: 2,
            produced_at_ms: 10_100,
            body: Some(sco_proto::v1::agent_message::Body::Anomaly(
                Default::default(),
            )),
        };
        assert_eq!(held_for(&[rollup(1, 10_000), event], 3_000, 10_200), None);
        // no spread, or nothing to send
        assert_eq!(held_for(&[rollup(1, 10_000)], 0, 10_200), None);
        assert_eq!(held_for(&[], 3_000, 10_200), None);
        // a clock that stepped back never holds longer than the offset
        assert_eq!(
            held_for(&[rollup(1, 10_000)], 3_000, -50_000),
            Some(ms(3_000))
        );
    }

    #[test]
    fn a_full_replica_names_where_to_go() {
        for (hint, expected) in [
            (None, vec![]),
            (Some("b:7443"), vec!["b:7443"]),
            (
                Some(" b:7443 , https://c:7443,,"),
                vec!["b:7443", "https://c:7443"],
            ),
            // not endpoints: no port, plain http, a bad port
            (Some("b,http://c:1,d:99999,e:1"), vec!["e:1"]),
        ] {
            match ended_by(&full(hint)) {
                End::Full { elsewhere, reason } => {
                    assert_eq!(elsewhere, expected, "{hint:?}");
                    assert!(reason.contains("limit"), "{reason}");
                }
                _ => panic!("{hint:?}: not a full replica"),
            }
        }
        let many = (1..=20).map(|i| format!("r{i}:1")).collect::<Vec<_>>();
        match ended_by(&full(Some(&many.join(",")))) {
            End::Full { elsewhere, .. } => assert_eq!(elsewhere, many[..MAX_HINTS]),
            _ => panic!("not a full replica"),
        }
        assert!(matches!(
            ended_by(&tonic::Status::permission_denied("revoked")),
            End::Refused(_)
        ));
        assert!(matches!(
            ended_by(&tonic::Status::unavailable("down")),
            End::Lost(_)
        ));
    }

    #[test]
    fn endpoints_compare_by_uri() {
        assert!(same_endpoint("cp:7443", "https://cp:7443"));
        assert!(!same_endpoint("cp:7443", "cp:7444"));
        assert!(!same_endpoint("cp:7443", "cq:7443"));
    }
}
