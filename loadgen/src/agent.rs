//! One simulated agent: a producer that fills its outbox on the agent's
//! schedule (a rollup per wall-clock window, anomaly events at random), and
//! an uplink that does what `agent/src/uplink.rs` does: connect over mTLS
//! with the agent's own certificate, say hello, send everything unacked in
//! order, then new messages and heartbeats; apply acks; answer policy updates
//! with a status and commands with a report; declare the connection dead when
//! nothing is heard; reconnect with exponential backoff and jitter. A new stream
//! refused by a full or overloaded control plane (`RESOURCE_EXHAUSTED`) is a
//! refusal, not an error: the agent connects at once to a replica the refusal
//! names (or the next endpoint of its list) and backs off only when every one it
//! tries is full.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngExt;
use sco_proto::v1::agent_service_client::AgentServiceClient;
use sco_proto::v1::{control_message, AgentMessage};
use tokio::sync::{mpsc, watch, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint as GrpcEndpoint, Identity};

use crate::endpoint::{self, Endpoint, Transport, MAX_HINTS};
use crate::outbox::Outbox;
use crate::speak::{self, Event, EventStep, HostFacts};
use crate::stats::{Kind, Stats};

/// Messages sent per batch before looking at incoming acks again (as the agent).
const SEND_BATCH: usize = 256;

/// Where the whole run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Run,
    /// No new data; streams stay up until their outboxes are empty.
    Drain,
    Stop,
}

/// What every simulated agent shares.
pub struct Shared {
    /// The endpoints of `--target`, in order (the agent's endpoint list).
    pub targets: Vec<Endpoint>,
    /// `--server-name`: the name every server certificate must carry (else each endpoint's
    /// host), for the replicas a refusal names too.
    pub server_name: Option<String>,
    pub ca_pem: Vec<u8>,
    pub window_ms: i64,
    /// Span of the rollup send offsets ([`sco_proto::spread`]).
    pub spread_ms: u64,
    pub interval_ms: u32,
    pub heartbeat: Duration,
    pub dead_after: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Anomaly events opened per agent and hour (0: none).
    pub events_per_hour: f64,
    /// An alarm storm: from this wall-clock time (ms) and over this span (ms), every agent
    /// opens an event (one with an event open already, once it has closed).
    pub event_storm: Option<(i64, i64)>,
    pub metrics: Vec<(String, String)>,
    pub stats: Arc<Stats>,
    /// With `--quic`: the run's UDP sockets.
    pub quic: Option<crate::quic::Sockets>,
}

/// A client identity: certificate and key for agent `id`.
pub struct Credentials {
    pub id: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub not_after_ms: i64,
}

pub struct Agent {
    pub id: String,
    facts: HostFacts,
    tls_identity: Identity,
    /// With `--quic`: this agent's QUIC client configuration and its socket.
    quic: Option<(quinn::ClientConfig, quinn::Endpoint)>,
    pub outbox: Mutex<Outbox>,
    new_data: Notify,
    pub ever_connected: AtomicBool,
    /// Its producer may still push data: true until [`Agent::produce`] has returned, so a
    /// drain that finds the outbox empty knows no message is about to join it.
    pub producing: AtomicBool,
    /// A new stream of this agent was refused at least once.
    pub ever_refused: AtomicBool,
    /// The endpoint of its latest stream (as the agent lists it), once connected.
    pub last_endpoint: Mutex<Option<String>>,
    /// Policy revisions this agent has been sent (name, revision), to count its first receipt.
    policies_seen: Mutex<std::collections::HashSet<(String, u64)>>,
}

fn lock(o: &Mutex<Outbox>) -> std::sync::MutexGuard<'_, Outbox> {
    o.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The monotonic instant of a wall-clock time (now when it is past).
fn instant_at(ms: i64) -> tokio::time::Instant {
    let ahead = u64::try_from(ms - now_ms()).unwrap_or(0);
    tokio::time::Instant::now() + Duration::from_millis(ahead)
}

enum End {
    Shutdown,
    Lost {
        kind: &'static str,
        message: String,
    },
    /// The control plane refused the new stream (`RESOURCE_EXHAUSTED`): `reason` from its
    /// message ([`endpoint::refusal_reason`]), `elsewhere` the replicas with room it named.
    Refused {
        reason: &'static str,
        message: String,
        elsewhere: Vec<Endpoint>,
    },
}

fn lost(kind: &'static str, message: impl Into<String>) -> End {
    End::Lost {
        kind,
        message: message.into(),
    }
}

/// How a gRPC status ends a stream that was open.
fn ended_by(s: &tonic::Status) -> End {
    let message = format!("{}: {}", s.code(), s.message());
    match s.code() {
        tonic::Code::PermissionDenied => lost("permission_denied", message),
        tonic::Code::Unavailable => lost("unavailable", message),
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => lost("stream_cancelled", message),
        tonic::Code::Unknown | tonic::Code::Internal => lost("stream_error", message),
        _ => lost("stream_other", message),
    }
}

/// How a gRPC status answers the opening of a stream: `RESOURCE_EXHAUSTED` is a full or
/// overloaded control plane turning the new stream away (with the replicas it names);
/// anything else ends it as [`ended_by`] says.
fn refused_by(s: &tonic::Status, server_name: Option<&str>) -> End {
    if s.code() != tonic::Code::ResourceExhausted {
        return ended_by(s);
    }
    End::Refused {
        reason: endpoint::refusal_reason(s.message()),
        message: format!("{}: {}", s.code(), s.message()),
        elsewhere: endpoint::redirect_hints(s, server_name),
    }
}

/// Where an agent goes after `endpoint` (tried with the list at `index`) refused it, the
/// `refused_in_a_row`th refusal since its last stream that worked: to a replica the refusal
/// named (`Some`), else to the next endpoint of its list; and whether at once. At once unless
/// that would be the endpoint that just refused (a lone `--target` that names no one), or
/// every endpoint and then some named ones turned it away in a row: then after a backoff, as
/// after any failure.
fn after_refusal(
    targets: &[Endpoint],
    index: usize,
    endpoint: &Endpoint,
    elsewhere: Vec<Endpoint>,
    refused_in_a_row: usize,
) -> (Option<Endpoint>, bool) {
    let hinted = elsewhere.into_iter().find(|e| !e.same_as(endpoint));
    let next_differs = hinted.is_some()
        || targets
            .get((index + 1) % targets.len().max(1))
            .is_some_and(|next| !next.same_as(endpoint));
    let at_once = next_differs && refused_in_a_row <= targets.len() + MAX_HINTS;
    (hinted, at_once)
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

impl Agent {
    pub fn new(
        c: Credentials,
        labels: Vec<(String, String)>,
        run_started_ms: i64,
        quic: Option<(quinn::ClientConfig, quinn::Endpoint)>,
    ) -> Self {
        Self {
            quic,
            facts: HostFacts {
                hostname: c.id.clone(),
                labels,
                run_started_ms,
                cert_not_after_ms: c.not_after_ms,
            },
            tls_identity: Identity::from_pem(c.cert_pem, c.key_pem),
            id: c.id,
            outbox: Mutex::new(Outbox::default()),
            new_data: Notify::new(),
            ever_connected: AtomicBool::new(false),
            producing: AtomicBool::new(true),
            ever_refused: AtomicBool::new(false),
            last_endpoint: Mutex::new(None),
            policies_seen: Mutex::default(),
        }
    }

    fn push(&self, shared: &Shared, kind: Kind, build: impl FnOnce(u64) -> AgentMessage) -> u64 {
        let seq = lock(&self.outbox).push_with(kind, build);
        shared.stats.produced[kind as usize].fetch_add(1, Ordering::Relaxed);
        self.new_data.notify_one();
        seq
    }

    pub fn pending(&self) -> u64 {
        lock(&self.outbox).pending()
    }

    /// Produces the agent's durable data until the run leaves [`Phase::Run`].
    pub async fn produce(self: Arc<Self>, shared: Arc<Shared>, phase: watch::Receiver<Phase>) {
        self.produce_until_drain(&shared, phase).await;
        self.producing.store(false, Ordering::Release);
    }

    async fn produce_until_drain(&self, shared: &Shared, mut phase: watch::Receiver<Phase>) {
        let mut rng = rand::make_rng::<rand::rngs::StdRng>();
        let w = shared.window_ms;
        // The agent's samples tick at its own phase within the interval; the
        // first sample after a window seals it, and the agent sends it at its
        // host's own offset after the window's end, as the real agent does.
        let spread = sco_proto::spread::offset_ms(&self.facts.hostname, shared.spread_ms);
        let offset = rng.random_range(0..i64::from(shared.interval_ms.max(1)))
            + i64::try_from(spread).unwrap_or(0);
        let mut window_start = now_ms().div_euclid(w) * w;
        let samples = u32::try_from(w / i64::from(shared.interval_ms.max(1))).unwrap_or(1);
        let mean_gap_ms = if shared.events_per_hour > 0.0 {
            3_600_000.0 / shared.events_per_hour
        } else {
            f64::INFINITY
        };
        let next_gap = |rng: &mut rand::rngs::StdRng| -> i64 {
            // Exponential gaps: events arrive as a Poisson process.
            let u: f64 = rng.random_range(f64::EPSILON..1.0);
            (-u.ln() * mean_gap_ms).min(1.0e12) as i64
        };
        let mut next_event_ms = now_ms().saturating_add(next_gap(&mut rng));
        let mut open: Option<(Event, EventStep)> = None;
        // this agent's moment in the storm, until its event has opened
        let mut storm_at = shared
            .event_storm
            .map(|(at, span)| at + rng.random_range(0..span.max(1)));
        loop {
            let seal_at = window_start + w + offset;
            let event_at = match (storm_at, &open) {
                (Some(s), None) => next_event_ms.min(s),
                _ => next_event_ms,
            };
            tokio::select! {
                // The phase first: once the drain has begun, nothing new is produced even
                // when a window's seal is due at the same moment.
                biased;
                r = phase.changed() => {
                    if r.is_err() || *phase.borrow() != Phase::Run {
                        return;
                    }
                }
                () = tokio::time::sleep_until(instant_at(seal_at)) => {
                    let (ws, now) = (window_start, now_ms());
                    self.push(shared, Kind::Rollup, |_| {
                        speak::rollup(&mut rng, &shared.metrics, ws, ws + w, samples, now)
                    });
                    window_start += w;
                    // After a stall (a very busy machine), seal the missed windows on the
                    // next turns rather than skipping them, as the agent's collector would.
                }
                () = tokio::time::sleep_until(instant_at(event_at)), if mean_gap_ms.is_finite() || storm_at.is_some() => {
                    let now = now_ms();
                    if open.is_none() && storm_at.is_some_and(|s| now >= s) {
                        storm_at = None;
                    } else if now < next_event_ms {
                        continue;
                    }
                    let facts = &self.facts;
                    let (step, delay_ms) = match &open {
                        None => (EventStep::Opened, 10_000),
                        Some((_, EventStep::Opened)) => (EventStep::Updated, 20_000),
                        Some(_) => (EventStep::Closed, 0),
                    };
                    if step == EventStep::Opened {
                        let family = speak::FAMILIES[rng.random_range(0..speak::FAMILIES.len())];
                        let mut event = Event { open_seq: 0, started_ms: now, family };
                        let seq = self.push(shared, Kind::Anomaly, |seq| {
                            speak::anomaly(&mut rng, facts, &event, step, seq, now)
                        });
                        event.open_seq = seq;
                        lock(&self.outbox).note_opened(seq);
                        open = Some((event, step));
                    } else if let Some((event, _)) = open.take() {
                        self.push(shared, Kind::Anomaly, |seq| {
                            speak::anomaly(&mut rng, facts, &event, step, seq, now)
                        });
                        if step == EventStep::Updated {
                            open = Some((event, step));
                        }
                    }
                    next_event_ms = if step == EventStep::Closed {
                        now.saturating_add(next_gap(&mut rng))
                    } else {
                        now + delay_ms
                    };
                }
            }
        }
    }

    /// Keeps a stream to the control plane until [`Phase::Stop`], as the agent's uplink: the
    /// endpoints of its list in turn (the next one after a failure), a replica a refusal names
    /// at once, and a backoff with jitter after a loss or once every endpoint tried was full.
    pub async fn uplink(self: Arc<Self>, shared: Arc<Shared>, mut phase: watch::Receiver<Phase>) {
        let targets = &shared.targets;
        if targets.is_empty() {
            return;
        }
        let mut backoff = shared.backoff_initial;
        let mut index = 0usize;
        // A replica with room that a refusal named, tried next instead of the list.
        let mut hinted: Option<Endpoint> = None;
        // Refusals since the last stream that worked: while few, the next endpoint is tried at
        // once; once every endpoint (and some named ones) turned the agent away, it backs off.
        let mut refused_in_a_row = 0usize;
        loop {
            if *phase.borrow() == Phase::Stop {
                return;
            }
            let endpoint = hinted
                .take()
                .unwrap_or_else(|| targets[index % targets.len()].clone());
            let started = Instant::now();
            let mut heard = false;
            let mut connected = false;
            let end = self
                .session(&shared, &endpoint, &mut phase, &mut heard, &mut connected)
                .await;
            if connected {
                shared.stats.connected.fetch_sub(1, Ordering::Relaxed);
            }
            let mut at_once = false;
            match end {
                End::Shutdown => return,
                End::Lost { kind, message } => {
                    tracing::debug!(agent = %self.id, endpoint = %endpoint.label(), kind, %message, "stream lost");
                    shared.stats.error(kind, &message);
                    if connected {
                        shared.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                }
                End::Refused {
                    reason,
                    message,
                    elsewhere,
                } => {
                    shared.stats.refusal(reason, &message);
                    self.ever_refused.store(true, Ordering::Relaxed);
                    refused_in_a_row += 1;
                    (hinted, at_once) =
                        after_refusal(targets, index, &endpoint, elsewhere, refused_in_a_row);
                    if at_once && hinted.is_some() {
                        shared.stats.redirects.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::debug!(
                        agent = %self.id,
                        endpoint = %endpoint.label(),
                        reason,
                        next = ?hinted.as_ref().map(Endpoint::label),
                        at_once,
                        "new stream refused"
                    );
                }
            }
            if heard {
                refused_in_a_row = 0;
            }
            if heard && started.elapsed() > Duration::from_secs(5) {
                backoff = shared.backoff_initial;
            } else {
                // the next endpoint of the list only when this one failed
                index += 1;
            }
            if at_once {
                continue;
            }
            // Full jitter over the upper half, as the agent: no reconnect
            // storm in lockstep, and a lower bound.
            let delay = rand::random_range(backoff / 2..=backoff);
            backoff = (backoff * 2).min(shared.backoff_max);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                r = phase.changed() => {
                    if r.is_err() || *phase.borrow() == Phase::Stop {
                        return;
                    }
                }
            }
        }
    }

    async fn session(
        &self,
        shared: &Shared,
        endpoint: &Endpoint,
        phase: &mut watch::Receiver<Phase>,
        heard: &mut bool,
        connected: &mut bool,
    ) -> End {
        let stats = &shared.stats;
        let channel: Channel = match endpoint.transport {
            Transport::Quic => {
                let Some((config, socket)) = &self.quic else {
                    return lost(
                        "config",
                        format!("{} is a QUIC endpoint; run with --quic", endpoint.label()),
                    );
                };
                let addr = match endpoint.addr {
                    Some(a) => a,
                    None => match tokio::net::lookup_host(&endpoint.authority).await {
                        Ok(mut addrs) => match addrs.next() {
                            Some(a) => a,
                            None => {
                                return lost(
                                    "connect",
                                    format!("{} resolves to no address", endpoint.authority),
                                )
                            }
                        },
                        Err(e) => {
                            return lost(
                                "connect",
                                format!("resolving {}: {e}", endpoint.authority),
                            )
                        }
                    },
                };
                match crate::quic::channel(
                    socket.clone(),
                    config.clone(),
                    addr,
                    &endpoint.server_name,
                    shared.heartbeat,
                    shared.dead_after,
                )
                .await
                {
                    Ok(c) => c,
                    Err(e) => return lost("connect", e),
                }
            }
            Transport::Tcp => {
                let tls = ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&shared.ca_pem))
                    .identity(self.tls_identity.clone())
                    .domain_name(endpoint.server_name.clone());
                let endpoint =
                    match GrpcEndpoint::from_shared(format!("https://{}", endpoint.authority))
                        .and_then(|e| e.tls_config(tls))
                    {
                        Ok(e) => e,
                        Err(e) => return lost("config", error_chain(&e)),
                    };
                match endpoint
                    .connect_timeout(Duration::from_secs(10))
                    .http2_keep_alive_interval(shared.heartbeat)
                    .keep_alive_timeout(shared.dead_after)
                    .connect()
                    .await
                {
                    Ok(c) => c,
                    Err(e) => return lost("connect", error_chain(&e)),
                }
            }
        };
        let mut client = AgentServiceClient::new(channel).max_decoding_message_size(16 << 20);
        let (tx, rx) = mpsc::channel::<AgentMessage>(SEND_BATCH);
        let last_seq = lock(&self.outbox).last_seq();
        let hello = speak::hello(&self.facts, last_seq, shared.interval_ms, now_ms());
        if tx.send(hello).await.is_err() {
            return lost("send", "stream closed before hello");
        }
        let mut inbound = match client.connect(ReceiverStream::new(rx)).await {
            Ok(r) => r.into_inner(),
            Err(s) => return refused_by(&s, shared.server_name.as_deref()),
        };
        // A stream that opens once the run has stopped (a place freed as the other agents shut
        // down) is no connection of the run: it is not counted, and nothing is sent on it.
        if *phase.borrow() == Phase::Stop {
            return End::Shutdown;
        }
        *connected = true;
        stats.connected.fetch_add(1, Ordering::Relaxed);
        stats.connects.fetch_add(1, Ordering::Relaxed);
        self.ever_connected.store(true, Ordering::Relaxed);
        *self.last_endpoint.lock().unwrap_or_else(|e| e.into_inner()) = Some(endpoint.label());

        let mut last_sent = 0u64;
        let mut last_heard = Instant::now();
        let mut ticker = tokio::time::interval(shared.heartbeat);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let (batch, resends) =
                lock(&self.outbox).take_after(last_sent, SEND_BATCH, Instant::now());
            let more = batch.len() == SEND_BATCH;
            stats.resent.fetch_add(resends, Ordering::Relaxed);
            for m in batch {
                last_sent = m.seq;
                stats.sent.fetch_add(1, Ordering::Relaxed);
                if tx.send(m).await.is_err() {
                    return lost("send", "stream closed while sending");
                }
            }
            tokio::select! {
                biased;
                r = phase.changed() => {
                    if r.is_err() || *phase.borrow() == Phase::Stop {
                        return End::Shutdown;
                    }
                }
                msg = inbound.message() => match msg {
                    Ok(Some(m)) => {
                        *heard = true;
                        last_heard = Instant::now();
                        match m.body {
                            Some(control_message::Body::Ack(ack)) => {
                                let acked = lock(&self.outbox).ack(ack.up_to_seq, Instant::now());
                                for k in acked.kinds {
                                    stats.acked[k as usize].fetch_add(1, Ordering::Relaxed);
                                }
                                for d in acked.latencies {
                                    stats.ack_latency(d);
                                }
                            }
                            Some(control_message::Body::Heartbeat(_)) => {
                                stats.server_heartbeats.fetch_add(1, Ordering::Relaxed);
                            }
                            Some(control_message::Body::Policy(p)) => {
                                stats.policies_received.fetch_add(1, Ordering::Relaxed);
                                let now = now_ms();
                                if self.policies_seen.lock().unwrap_or_else(|e| e.into_inner()).insert((p.name.clone(), p.revision)) {
                                    stats.policy_received(&p.name, p.revision, now);
                                }
                                self.push(shared, Kind::PolicyStatus, |_| speak::policy_status(&p.name, p.revision, now));
                            }
                            Some(control_message::Body::Command(c)) => {
                                stats.commands_received.fetch_add(1, Ordering::Relaxed);
                                let now = now_ms();
                                self.push(shared, Kind::ActionReport, |_| speak::action_report(&c.id, &c.rule, now));
                            }
                            // Simulated agents run no model: they neither ask for one nor report.
                            Some(
                                control_message::Body::ModelOffer(_)
                                | control_message::Body::ModelChunk(_),
                            )
                            | None => {}
                        }
                    }
                    Ok(None) => return lost("closed_by_server", "the control plane closed the stream"),
                    Err(s) => return ended_by(&s),
                },
                () = std::future::ready(()), if more => {}
                () = self.new_data.notified() => {}
                _ = ticker.tick() => {
                    if last_heard.elapsed() > shared.dead_after {
                        return lost("dead_connection", format!("nothing heard for {:?}", shared.dead_after));
                    }
                    let pending = self.pending();
                    stats.heartbeats.fetch_add(1, Ordering::Relaxed);
                    if tx.send(speak::heartbeat(&self.facts, pending, now_ms())).await.is_err() {
                        return lost("send", "stream closed while sending a heartbeat");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Endpoint {
        Endpoint::parse(text, Transport::Tcp, None).expect("endpoint")
    }

    #[test]
    fn a_refusal_sends_the_agent_on_at_once_until_all_were_full() {
        let one = [at("a:1")];
        // a lone target that names no one: back off, then the same endpoint again
        assert!(matches!(
            after_refusal(&one, 0, &one[0], vec![], 1),
            (None, false)
        ));
        // a replica named (the refused one itself is not followed): there at once
        let (next, at_once) = after_refusal(&one, 0, &one[0], vec![at("a:1"), at("b:2")], 1);
        assert_eq!(next.map(|e| e.label()).as_deref(), Some("b:2"));
        assert!(at_once);
        // the named replica full too, naming no one: back to the list at once
        assert!(matches!(
            after_refusal(&one, 1, &at("b:2"), vec![], 2),
            (None, true)
        ));
        // ... but not for ever: after the endpoints and the hints allowed in a row, a backoff
        let (next, at_once) = after_refusal(&one, 9, &one[0], vec![at("b:2")], 10);
        assert!(next.is_some() && !at_once);
        // two targets, no name: the next of the list at once
        let two = [at("a:1"), at("c:3")];
        assert!(matches!(
            after_refusal(&two, 0, &two[0], vec![], 1),
            (None, true)
        ));
        assert!(matches!(
            after_refusal(&two, 1, &two[1], vec![], 2),
            (None, true)
        ));
        assert!(matches!(
            after_refusal(&two, 1, &two[1], vec![], 11),
            (None, false)
        ));
        // a status other than RESOURCE_EXHAUSTED is no refusal
        assert!(matches!(
            refused_by(&tonic::Status::unavailable("down"), None),
            End::Lost {
                kind: "unavailable",
                ..
            }
        ));
        match refused_by(
            &tonic::Status::resource_exhausted("this replica is overloaded (...)"),
            None,
        ) {
            End::Refused {
                reason, elsewhere, ..
            } => assert_eq!((reason, elsewhere.len()), ("overloaded", 0)),
            _ => panic!("not a refusal"),
        }
    }
}
