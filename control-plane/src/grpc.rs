//! The agent-facing gRPC edge: mTLS, identity from the client certificate,
//! and the `Connect` stream. Protobuf stops here (see [`pb`]).

// tonic's `Status` is large, but it is what tonic handlers return; boxing it
// here would only add conversions at every call.
#![allow(clippy::result_large_err)]

pub mod pb;
pub mod quic;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sco_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use sco_proto::v1::enrollment_service_server::{EnrollmentService, EnrollmentServiceServer};
use sco_proto::v1::{
    agent_message, control_message, Ack, AgentMessage, ControlMessage, ModelChunk, ServerHeartbeat,
};
use sco_proto::v1::{CertificateResponse, EnrollRequest, RenewRequest};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use crate::domain::HostInfo;
use crate::error::{Code, Coded};
use crate::fleet::{now_ms, Crowded, EnrollError, Fleet, Full, Issued};

pub struct AgentSvc {
    fleet: Arc<Fleet>,
    heartbeat: Duration,
    dead_after: Duration,
    shutdown: watch::Receiver<bool>,
}

impl AgentSvc {
    pub fn new(
        fleet: Arc<Fleet>,
        heartbeat: Duration,
        dead_after: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            fleet,
            heartbeat,
            dead_after,
            shutdown,
        }
    }

    pub fn into_server(self) -> AgentServiceServer<Self> {
        AgentServiceServer::new(self).max_decoding_message_size(4 * 1024 * 1024)
    }
}

/// TLS for the agent port. A client certificate, when presented, must be
/// signed by the fleet CA and valid (TLS refuses it otherwise). Clients
/// without one get only the enrollment service: every `AgentService` call
/// requires a verified certificate ([`identity`]). The CA certificate is
/// sent with ours so that a new agent can pin it by fingerprint.
pub fn tls_config(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> ServerTlsConfig {
    let mut chain = cert_pem.to_vec();
    if !chain.ends_with(b"\n") {
        chain.push(b'\n');
    }
    chain.extend_from_slice(ca_pem);
    ServerTlsConfig::new()
        .identity(Identity::from_pem(chain, key_pem))
        .client_ca_root(Certificate::from_pem(ca_pem))
        .client_auth_optional(true)
}

/// The agent id is the common name of the verified client certificate, over TCP (tonic's
/// TLS) or QUIC (the connection's, [`sco_proto::quic::QuicConnectInfo`]).
fn identity<T>(req: &Request<T>) -> Result<String, Status> {
    let certs = req
        .peer_certs()
        .or_else(|| {
            req.extensions()
                .get::<sco_proto::quic::QuicConnectInfo>()
                .and_then(|i| i.peer_certs.clone())
        })
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    crate::pki::agent_id_from_der(leaf.as_ref())
        .ok_or_else(|| Status::unauthenticated("client certificate does not name a valid agent id"))
}

/// Which transport a request came over (`grpc`: HTTP/2 over TCP and TLS; `quic`: over a QUIC
/// stream), and the peer's address.
fn transport_of<T>(req: &Request<T>) -> (&'static str, Option<std::net::SocketAddr>) {
    match req.extensions().get::<sco_proto::quic::QuicConnectInfo>() {
        Some(q) => ("quic", Some(q.remote_addr)),
        None => ("grpc", req.remote_addr()),
    }
}

/// What goes down one agent's stream, in order. Boxed in the channel: a channel allocates its
/// slots up front, and a box is 8 bytes where a message or status is a few hundred (thousands
/// of streams each hold one).
struct Outbound(mpsc::Sender<Box<Result<ControlMessage, Status>>>);

impl Outbound {
    async fn send(
        &self,
        m: Result<ControlMessage, Status>,
    ) -> Result<(), mpsc::error::SendError<Box<Result<ControlMessage, Status>>>> {
        self.0.send(Box::new(m)).await
    }
}

/// The response stream of `Connect`: [`Outbound`]'s messages, unboxed.
pub struct ConnectStream(ReceiverStream<Box<Result<ControlMessage, Status>>>);

impl futures::Stream for ConnectStream {
    type Item = Result<ControlMessage, Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.0)
            .poll_next(cx)
            .map(|m| m.map(|b| *b))
    }
}

impl AgentSvc {
    async fn refuse_revoked(&self, agent_id: &str) -> Result<(), Status> {
        match self.fleet.enrollment.is_revoked(agent_id).await {
            Ok(false) => Ok(()),
            Ok(true) => Err(Status::permission_denied(format!(
                "agent {agent_id} is revoked"
            ))),
            Err(e) => {
                tracing::error!(error = %e, "cannot check revocation");
                Err(Status::unavailable("storage unavailable, retry later"))
            }
        }
    }
}

/// The gRPC status of a service error: the one place that maps codes for gRPC. Of a storage
/// failure (which the caller logs) the agent is told only to retry.
fn status(e: &impl Coded) -> Status {
    let message = e.to_string();
    match e.code() {
        Code::Invalid => Status::invalid_argument(message),
        Code::Denied => Status::permission_denied(message),
        Code::NotFound => Status::not_found(message),
        Code::Conflict => Status::already_exists(message),
        Code::Precondition => Status::failed_precondition(message),
        Code::Unauthenticated => Status::unauthenticated(message),
        Code::Throttled => Status::resource_exhausted(message),
        Code::Unavailable => Status::unavailable("storage unavailable, retry later"),
        Code::Internal => Status::internal("internal error"),
    }
}

/// The refusal of a new stream by a full or overloaded replica: `RESOURCE_EXHAUSTED`, naming the
/// replicas with room in the message and, for the agent, in [`sco_proto::REDIRECT_METADATA`].
fn redirect(full: &Full) -> Status {
    let elsewhere = full.elsewhere.join(",");
    let why = match full.why {
        Crowded::Limit(limit) => format!("this replica holds its limit of {limit} agent streams"),
        Crowded::Lag { lag_ms, max_lag_ms } => format!(
            "this replica is overloaded (its runtime runs {lag_ms} ms late, over \
             replicas.max_lag_ms = {max_lag_ms}) and takes no new agent streams"
        ),
    };
    let mut s = Status::resource_exhausted(if elsewhere.is_empty() {
        format!("{why} and knows no replica with room; try another endpoint")
    } else {
        format!("{why}; connect to {elsewhere}")
    });
    // each address was checked when its replica read its config; a list that still is not a
    // valid header value is left out of the metadata (the message names it all the same)
    if !elsewhere.is_empty() {
        if let Ok(v) = elsewhere.parse() {
            s.metadata_mut().insert(sco_proto::REDIRECT_METADATA, v);
        }
    }
    s
}

fn enroll_status(e: EnrollError) -> Status {
    if e.code() == Code::Unavailable {
        tracing::error!(error = %e, "enrollment storage error");
    }
    status(&e)
}

fn certificate_response(i: Issued) -> CertificateResponse {
    CertificateResponse {
        agent_id: i.agent_id,
        certificate_pem: i.certificate_pem,
        ca_pem: i.ca_pem,
        not_after_ms: i.not_after_ms,
        policy_key: i.policy_key,
    }
}

/// Enrollment is served to clients without a certificate: the token is
/// the credential.
pub struct EnrollSvc {
    fleet: Arc<Fleet>,
}

impl EnrollSvc {
    pub fn new(fleet: Arc<Fleet>) -> Self {
        Self { fleet }
    }
    pub fn into_server(self) -> EnrollmentServiceServer<Self> {
        EnrollmentServiceServer::new(self).max_decoding_message_size(64 * 1024)
    }
}

#[tonic::async_trait]
impl EnrollmentService for EnrollSvc {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<CertificateResponse>, Status> {
        let r = request.into_inner();
        let issued = self
            .fleet
            .enrollment
            .enroll(&r.token, &r.csr_pem, &r.hostname)
            .await
            .map_err(enroll_status)?;
        Ok(Response::new(certificate_response(issued)))
    }
}

#[tonic::async_trait]
impl AgentService for AgentSvc {
    async fn renew(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<CertificateResponse>, Status> {
        let agent_id = identity(&request)?;
        let r = request.into_inner();
        let issued = self
            .fleet
            .enrollment
            .renew(&agent_id, &r.csr_pem)
            .await
            .map_err(enroll_status)?;
        Ok(Response::new(certificate_response(issued)))
    }

    type ConnectStream = ConnectStream;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let agent_id = identity(&request)?;
        self.refuse_revoked(&agent_id).await?;
        let (transport, remote) = transport_of(&request);
        let slot = self
            .fleet
            .replicas
            .admit(transport == "quic")
            .await
            .map_err(|full| {
                match full.why {
                    Crowded::Limit(limit) => tracing::info!(%agent_id, limit,
                        elsewhere = ?full.elsewhere, "stream limit reached; agent sent elsewhere"),
                    Crowded::Lag { lag_ms, .. } => tracing::info!(%agent_id, lag_ms,
                        elsewhere = ?full.elsewhere, "overloaded; agent sent elsewhere"),
                }
                redirect(&full)
            })?;
        tracing::info!(%agent_id, transport, remote = ?remote, "agent stream opened");
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(256);
        let tx = Outbound(tx);
        let session = Session {
            fleet: self.fleet.clone(),
            agent_id,
            transport,
            heartbeat: self.heartbeat,
            dead_after: self.dead_after,
            shutdown: self.shutdown.clone(),
        };
        tokio::spawn(async move {
            session.run(inbound, tx).await;
            drop(slot);
        });
        Ok(Response::new(ConnectStream(ReceiverStream::new(rx))))
    }
}

struct Session {
    fleet: Arc<Fleet>,
    agent_id: String,
    /// `grpc` or `quic` ([`transport_of`]), recorded with the host.
    transport: &'static str,
    heartbeat: Duration,
    dead_after: Duration,
    shutdown: watch::Receiver<bool>,
}

impl Session {
    async fn run(mut self, mut inbound: Streaming<AgentMessage>, tx: Outbound) {
        let first = tokio::time::timeout(self.dead_after, inbound.message()).await;
        let hello = match first {
            Ok(Ok(Some(AgentMessage {
                body: Some(agent_message::Body::Hello(h)),
                ..
            }))) => h,
            Ok(Ok(Some(_))) => {
                let _ = tx
                    .send(Err(Status::invalid_argument(
                        "the first message must be a hello",
                    )))
                    .await;
                return;
            }
            Ok(Err(s)) => {
                tracing::debug!(agent_id = %self.agent_id, status = %s, "stream failed before hello");
                return;
            }
            Ok(Ok(None)) | Err(_) => return,
        };
        let mut handle = match self
            .fleet
            .hosts
            .connected(
                &self.agent_id,
                &HostInfo {
                    transport: self.transport.into(),
                    ..pb::host_info(hello)
                },
            )
            .await
        {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(agent_id = %self.agent_id, error = %e, "cannot record host");
                let _ = tx
                    .send(Err(Status::unavailable("storage unavailable, retry later")))
                    .await;
                return;
            }
        };
        if let Err(e) = self
            .fleet
            .policies
            .sync_policies_of(std::slice::from_ref(&self.agent_id))
            .await
        {
            tracing::warn!(agent_id = %self.agent_id, error = %e, "cannot push policies");
        }
        if let Err(e) = self
            .fleet
            .models
            .sync_models_of(std::slice::from_ref(&self.agent_id))
            .await
        {
            tracing::warn!(agent_id = %self.agent_id, error = %e, "cannot offer a model");
        }
        if let Err(e) = self.fleet.remediation.dispatch(&self.agent_id).await {
            tracing::warn!(agent_id = %self.agent_id, error = %e, "cannot deliver pending requests");
        }
        let reason = self
            .serve(&mut inbound, &tx, &mut handle.closed, &mut handle.downlink)
            .await;
        tracing::info!(agent_id = %self.agent_id, %reason, "stream closed");
        self.fleet
            .hosts
            .disconnected(&self.agent_id, handle.generation)
            .await;
    }

    async fn serve(
        &mut self,
        inbound: &mut Streaming<AgentMessage>,
        tx: &Outbound,
        closed: &mut watch::Receiver<Option<String>>,
        downlink: &mut mpsc::Receiver<Box<crate::fleet::Downlink>>,
    ) -> String {
        let mut ticker = tokio::time::interval(self.heartbeat);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        // Durable messages being stored, in the order they came: each in its own task, so that
        // this loop keeps sending heartbeats and reading while the database works (an agent
        // that hears nothing for its dead-after time reconnects), and so that a stream's
        // rollups can share group commits. Acks leave in order, each after its own commit.
        let mut storing = Storing::default();
        // A message read that cannot start yet (see `Storing::may_start`); nothing more is
        // read until it has, which is this stream's back-pressure.
        let mut waiting: Option<AgentMessage> = None;
        loop {
            if let Some(msg) = waiting.take_if(|m| storing.may_start(m)) {
                storing.start(&self.fleet, &self.agent_id, msg);
            }
            let reading = waiting.is_none() && storing.has_room();
            tokio::select! {
                _ = self.shutdown.changed() => return "control plane shutting down".into(),
                Some(d) = downlink.recv() => {
                    let (body, what) = match *d {
                        crate::fleet::Downlink::Command(c) => {
                            let what = format!("remediation request {}", c.id);
                            (control_message::Body::Command(pb::command(c)), what)
                        }
                        crate::fleet::Downlink::Policy(p) => {
                            let what = format!("policy {} revision {}", p.name, p.revision);
                            (control_message::Body::Policy(pb::policy(p)), what)
                        }
                        crate::fleet::Downlink::Model(m) => {
                            let what = format!("model offer {} ({})", m.number, m.version);
                            (control_message::Body::ModelOffer(pb::model_offer(m)), what)
                        }
                    };
                    if tx.send(Ok(ControlMessage { body: Some(body) })).await.is_err() {
                        return "agent went away".into();
                    }
                    tracing::info!(agent_id = %self.agent_id, %what, "sent");
                }
                Ok(()) = closed.changed() => {
                    let reason = closed.borrow().clone().unwrap_or_default();
                    let _ = tx.send(Err(Status::permission_denied(reason.clone()))).await;
                    return reason;
                }
                _ = ticker.tick() => {
                    // While this stream does not read (its messages wait for the database),
                    // silence from the agent says nothing about the agent.
                    if !reading {
                        last_heard = Instant::now();
                    } else if last_heard.elapsed() > self.dead_after {
                        return format!("nothing heard for {:?}", self.dead_after);
                    }
                    let beat = ControlMessage {
                        body: Some(control_message::Body::Heartbeat(ServerHeartbeat { server_time_ms: now_ms() })),
                    };
                    if tx.send(Ok(beat)).await.is_err() {
                        return "agent went away".into();
                    }
                }
                Some(stored) = storing.next() => {
                    let ack = match stored {
                        Ok(ack) => ack,
                        Err(status) => {
                            let reason = status.message().to_string();
                            let _ = tx.send(Err(status)).await;
                            return reason;
                        }
                    };
                    if tx.send(Ok(ack)).await.is_err() {
                        return "agent went away".into();
                    }
                }
                msg = inbound.message(), if reading => {
                    let msg = match msg {
                        Ok(Some(m)) => m,
                        Ok(None) => return "agent closed the stream".into(),
                        Err(s) => return format!("stream error: {s}"),
                    };
                    last_heard = Instant::now();
                    match msg.body {
                        // Not durable and never acknowledged: noted in memory, written for
                        // the whole fleet every few seconds.
                        Some(agent_message::Body::Heartbeat(h)) => {
                            let dropped = i64::try_from(h.outbox_dropped_total).unwrap_or(i64::MAX);
                            let detector = h.detector.map(pb::detector_status);
                            self.fleet.hosts.heartbeat(&self.agent_id, dropped, h.cert_not_after_ms, detector);
                        }
                        // Not durable either: the agent asks for the rest of an offered model.
                        Some(agent_message::Body::ModelRequest(r)) => {
                            if let Err(reason) = self.send_model(tx, r.number, r.offset).await {
                                return reason;
                            }
                        }
                        Some(agent_message::Body::Hello(_)) => {
                            let _ = tx.send(Err(Status::invalid_argument("hello sent twice"))).await;
                            return "hello sent twice".into();
                        }
                        None => {
                            let _ = tx.send(Err(Status::invalid_argument("message without a body"))).await;
                            return "message without a body".into();
                        }
                        Some(_) => waiting = Some(msg),
                    }
                }
            }
        }
    }
}

impl Session {
    /// Sends model `number`'s file from `offset` on, in chunks; an error ends the stream.
    async fn send_model(&self, tx: &Outbound, number: u64, offset: u64) -> Result<(), String> {
        let Ok(number) = i64::try_from(number) else {
            return Ok(());
        };
        let chunks = match self.fleet.models.chunks(number, offset).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(agent_id = %self.agent_id, number, error = %e, "cannot read a model file");
                return Ok(());
            }
        };
        let n = chunks.len();
        for (offset, data) in chunks {
            let chunk = ControlMessage {
                body: Some(control_message::Body::ModelChunk(ModelChunk {
                    number: number as u64,
                    offset,
                    data,
                })),
            };
            if tx.send(Ok(chunk)).await.is_err() {
                return Err("agent went away".into());
            }
        }
        tracing::info!(agent_id = %self.agent_id, number, from = offset, chunks = n, "model sent");
        Ok(())
    }
}

type Stored = Result<ControlMessage, Status>;

/// The durable messages of one stream being stored, oldest first.
#[derive(Default)]
struct Storing {
    tasks: futures::stream::FuturesOrdered<tokio::task::JoinHandle<Stored>>,
    /// The task running is not a rollup, so nothing else may start beside it.
    exclusive: bool,
}

impl Storing {
    /// Durable messages of one stream being stored at once, at most. A reconnecting agent
    /// resends its whole outbox; this bounds what one stream holds in memory.
    const MAX: usize = 8;

    fn has_room(&self) -> bool {
        self.tasks.len() < Self::MAX
    }

    /// Rollups are independent of each other and may be stored side by side. Anything else
    /// (an anomaly event's update must find its opening, a report its request) starts only
    /// when all before it are stored, and nothing starts beside it.
    fn may_start(&self, msg: &AgentMessage) -> bool {
        let rollup = matches!(msg.body, Some(agent_message::Body::Rollup(_)));
        self.has_room() && !self.exclusive && (rollup || self.tasks.is_empty())
    }

    fn start(&mut self, fleet: &Arc<Fleet>, agent_id: &str, msg: AgentMessage) {
        self.exclusive = !matches!(msg.body, Some(agent_message::Body::Rollup(_)));
        // A task of its own: a transaction is never cut off halfway because the stream
        // ended; its result is then dropped, and the agent resends what was not acked.
        let task = tokio::spawn(store_message(fleet.clone(), agent_id.to_string(), msg));
        self.tasks.push_back(task);
    }

    /// The next result in order; pending while there is nothing to wait for.
    async fn next(&mut self) -> Option<Stored> {
        use futures::StreamExt;
        if self.tasks.is_empty() {
            return std::future::pending().await;
        }
        let done = self.tasks.next().await?;
        // An exclusive task runs alone, so the one finished was it.
        self.exclusive = false;
        Some(done.unwrap_or_else(|e| {
            tracing::error!(error = %e, "storing an agent message failed");
            Err(Status::internal("internal error"))
        }))
    }
}

/// Stores a durable message (or records it as rejected when invalid) and returns its
/// acknowledgement. A storage failure ends the stream without an ack, so the agent keeps the
/// message and resends it.
async fn store_message(fleet: Arc<Fleet>, id: String, msg: AgentMessage) -> Stored {
    let (seq, at) = (msg.seq, msg.produced_at_ms);
    let id = id.as_str();
    // Durable messages: converted (an invalid one is recorded as rejected), stored, then
    // acknowledged.
    let stored = match msg.body {
        Some(agent_message::Body::Rollup(r)) => match pb::rollup(seq, at, r) {
            Ok(batch) => fleet.hosts.ingest_rollup(id, batch).await.map(drop),
            Err(reason) => fleet.hosts.reject(id, seq, at, &reason).await,
        },
        Some(agent_message::Body::Anomaly(a)) => match pb::anomaly(seq, at, a) {
            Ok(change) => fleet.hosts.ingest_anomaly(id, &change).await.map(drop),
            Err(reason) => fleet.hosts.reject(id, seq, at, &reason).await,
        },
        Some(agent_message::Body::ActionReport(r)) => {
            let seq_i = i64::try_from(seq).unwrap_or(0);
            if seq_i <= 0 || r.command_id.len() > 64 || r.report_json.len() > 256 * 1024 {
                fleet
                    .hosts
                    .reject(id, seq, at, "invalid action report")
                    .await
            } else {
                let report = crate::fleet::ReportIn {
                    seq: seq_i,
                    produced_at_ms: at,
                    command_id: r.command_id,
                    decision: r.decision,
                    reason: r.reason,
                    report_json: r.report_json,
                };
                fleet.remediation.action_report(id, report).await.map(drop)
            }
        }
        Some(agent_message::Body::PolicyStatus(p)) => match pb::policy_status(seq, at, p) {
            Ok(status) => fleet
                .policies
                .policy_status_report(id, status)
                .await
                .map(drop),
            Err(reason) => fleet.hosts.reject(id, seq, at, &reason).await,
        },
        Some(agent_message::Body::ModelStatus(m)) => match pb::model_status(seq, at, m) {
            Ok(status) => fleet.models.status_report(id, status).await.map(drop),
            Err(reason) => fleet.hosts.reject(id, seq, at, &reason).await,
        },
        Some(agent_message::Body::Proposal(p)) => match pb::proposal(seq, at, id, p) {
            Ok(p) => fleet.remediation.proposal(id, p).await.map(drop),
            Err(reason) => fleet.hosts.reject(id, seq, at, &reason).await,
        },
        // Handled by the stream itself, never sent here.
        Some(
            agent_message::Body::Heartbeat(_)
            | agent_message::Body::Hello(_)
            | agent_message::Body::ModelRequest(_),
        )
        | None => return Err(Status::internal("internal error")),
    };
    if let Err(e) = stored {
        tracing::error!(agent_id = %id, seq, error = %e, "ingest failed");
        return Err(status(&e));
    }
    Ok(ControlMessage {
        body: Some(control_message::Body::Ack(Ack { up_to_seq: seq })),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    use sco_proto::quic::QuicConnectInfo;

    use super::*;

    fn over_quic(peer_certs: Option<Vec<CertificateDer<'static>>>) -> Request<()> {
        let mut req = Request::new(());
        req.extensions_mut().insert(QuicConnectInfo {
            remote_addr: ([192, 0, 2, 7], 40_000).into(),
            peer_certs: peer_certs.map(Arc::new),
        });
        req
    }

    #[test]
    fn the_agent_id_comes_from_the_quic_peer_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = crate::pki::ensure_dev_pki(dir.path()).expect("dev pki");
        let now = time::OffsetDateTime::now_utc();
        let (cert, _) = ca
            .issue_agent("edge-7", now, now + time::Duration::hours(1))
            .expect("issue");
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).expect("pem");
        let req = over_quic(Some(vec![der]));
        assert_eq!(identity(&req).expect("identified"), "edge-7");
        assert_eq!(
            transport_of(&req),
            ("quic", Some(([192, 0, 2, 7], 40_000).into()))
        );

        for req in [
            over_quic(None),
            over_quic(Some(Vec::new())),
            Request::new(()),
        ] {
            let refused = identity(&req).expect_err("no certificate");
            assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        }
        assert_eq!(transport_of(&Request::new(())), ("grpc", None));
    }
}
