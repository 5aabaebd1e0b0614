//! One simulated agent: a producer that fills its outbox on the agent's
//! schedule (a rollup per wall-clock window, anomaly events at random), and
//! an uplink that does what `agent/src/uplink.rs` does: connect over mTLS
//! with the agent's own certificate, say hello, send everything unacked in
//! order, then new messages and heartbeats; apply acks; answer policy updates
//! with a status and commands with a report; declare the connection dead when
//! nothing is heard; reconnect with exponential backoff and jitter.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngExt;
use sco_proto::v1::agent_service_client::AgentServiceClient;
use sco_proto::v1::{control_message, AgentMessage};
use tokio::sync::{mpsc, watch, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

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
    pub uri: String,
    pub server_name: String,
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
    /// With `--quic`: the run's UDP sockets and the control plane's address.
    pub quic: Option<(crate::quic::Sockets, std::net::SocketAddr)>,
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
    Lost { kind: &'static str, message: String },
}

fn lost(kind: &'static str, message: impl Into<String>) -> End {
    End::Lost {
        kind,
        message: message.into(),
    }
}

fn ended_by(s: &tonic::Status) -> End {
    let message = format!("{}: {}", s.code(), s.message());
    match s.code() {
        tonic::Code::PermissionDenied => lost("refused", message),
        tonic::Code::Unavailable => lost("unavailable", message),
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => lost("stream_cancelled", message),
        tonic::Code::Unknown | tonic::Code::Internal => lost("stream_error", message),
        _ => lost("stream_other", message),
    }
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
    pub async fn produce(self: Arc<Self>, shared: Arc<Shared>, mut phase: watch::Receiver<Phase>) {
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
                r = phase.changed() => {
                    if r.is_err() || *phase.borrow() != Phase::Run {
                        return;
                    }
                }
                () = tokio::time::sleep_until(instant_at(seal_at)) => {
                    let (ws, now) = (window_start, now_ms());
                    self.push(&shared, Kind::Rollup, |_| {
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
                        let seq = self.push(&shared, Kind::Anomaly, |seq| {
                            speak::anomaly(&mut rng, facts, &event, step, seq, now)
                        });
                        event.open_seq = seq;
                        lock(&self.outbox).note_opened(seq);
                        open = Some((event, step));
                    } else if let Some((event, _)) = open.take() {
                        self.push(&shared, Kind::Anomaly, |seq| {
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

    /// Keeps a stream to the control plane until [`Phase::Stop`].
    pub async fn uplink(self: Arc<Self>, shared: Arc<Shared>, mut phase: watch::Receiver<Phase>) {
        let mut backoff = shared.backoff_initial;
        loop {
            if *phase.borrow() == Phase::Stop {
                return;
            }
            let started = Instant::now();
            let mut heard = false;
            let mut connected = false;
            let end = self
                .session(&shared, &mut phase, &mut heard, &mut connected)
                .await;
            if connected {
                shared.stats.connected.fetch_sub(1, Ordering::Relaxed);
            }
            match end {
                End::Shutdown => return,
                End::Lost { kind, message } => {
                    tracing::debug!(agent = %self.id, kind, %message, "stream lost");
                    shared.stats.error(kind, &message);
                    if connected {
                        shared.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if heard && started.elapsed() > Duration::from_secs(5) {
                backoff = shared.backoff_initial;
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
        phase: &mut watch::Receiver<Phase>,
        heard: &mut bool,
        connected: &mut bool,
    ) -> End {
        let stats = &shared.stats;
        let channel: Channel = match (&self.quic, &shared.quic) {
            (Some((config, socket)), Some((_, addr))) => {
                match crate::quic::channel(
                    socket.clone(),
                    config.clone(),
                    *addr,
                    &shared.server_name,
                    shared.heartbeat,
                    shared.dead_after,
                )
                .await
                {
                    Ok(c) => c,
                    Err(e) => return lost("connect", e),
                }
            }
            _ => {
                let tls = ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&shared.ca_pem))
                    .identity(self.tls_identity.clone())
                    .domain_name(shared.server_name.clone());
                let endpoint = match Endpoint::from_shared(shared.uri.clone())
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
            Err(s) => return ended_by(&s),
        };
        *connected = true;
        stats.connected.fetch_add(1, Ordering::Relaxed);
        stats.connects.fetch_add(1, Ordering::Relaxed);
        self.ever_connected.store(true, Ordering::Relaxed);

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
