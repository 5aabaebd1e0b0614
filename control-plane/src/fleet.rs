//! The fleet domain: hosts, their connections and the data they send.
//!
//! This module knows nothing of gRPC, HTTP or SQL. The gRPC edge converts
//! protobuf into these types; the store persists them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

mod enroll;
mod feedback;
mod ingest;
mod policy;
mod queries;
mod remediation;

pub use enroll::{EnrollError, Issued};
pub use feedback::{FeedbackError, FeedbackRequest, MAX_NOTE_CHARS};
pub use ingest::HEARTBEAT_FLUSH_EVERY;
pub use policy::PolicyApiError;
pub use queries::{FleetSnapshot, HostDetail};
pub use remediation::{DecideError, TriggerError};

// The records the services take and give, for the edges (gRPC, HTTP) that name them here.
pub use crate::domain::feedback::{Feedback, FeedbackQuery};
pub use crate::domain::policy::{
    HostPolicyState, PolicyHostStatus, PolicyRevision, PolicyRolloutStatus, PolicyStatusIn,
    Rollout, RolloutRequest, RolloutState,
};
pub use crate::domain::remediation::{
    ActionQuery, ActionRecord, ActionState, Approval, AuditEntry, AuditQuery, Decision,
    PendingCommand, ProposalIn, ReportIn,
};
pub use crate::domain::{
    now_ms, valid_agent_id, Anomaly, AnomalyChange, AnomalyQuery, ChangeKind, Contributor,
    DetectorStatus, EnrollmentToken, Host, HostInfo, HostLatestValue, Ingested, LatestValue,
    MetricRow, OpenAnomalies, ProcessRow, RollupBatch, RollupPoint, RollupQuery, Series, Severity,
    TokenUse,
};

/// Bounds on enrollment tokens.
pub mod enroll_limits {
    pub const MAX_TOKEN_TTL_SECS: i64 = 30 * 86_400;
    pub const MAX_TOKEN_USES: i64 = 10_000;
}

use crate::store::{Store, StoreError};
use crate::telemetry::Telemetry;

/// What goes down an agent's stream besides acks and heartbeats.
#[derive(Debug, Clone)]
pub enum Downlink {
    Command(PendingCommand),
    Policy(PolicyRevision),
}

pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

struct LiveStream {
    generation: u64,
    /// Requests and policies for this agent, delivered down its stream.
    downlink: tokio::sync::mpsc::Sender<Downlink>,
    /// Policy revisions sent down this stream, by policy name.
    policies_sent: HashMap<String, i64>,
    /// Closes the stream with the given reason (revocation, replacement).
    close: tokio::sync::watch::Sender<Option<String>>,
}

/// What a stream session holds while it lives.
pub struct StreamHandle {
    pub generation: u64,
    pub downlink: tokio::sync::mpsc::Receiver<Downlink>,
    /// Turns `Some(reason)` when the stream must close.
    pub closed: tokio::sync::watch::Receiver<Option<String>>,
}

pub struct Fleet {
    store: Store,
    telemetry: Arc<Telemetry>,
    /// Live streams per agent id; the generation tells a stale stream's
    /// goodbye from the current one's.
    streams: Mutex<HashMap<String, LiveStream>>,
    generation: AtomicU64,
    pub(crate) ca: Option<Arc<crate::pki::Ca>>,
    pub(crate) cert_ttl: std::time::Duration,
    pub(crate) policy_signer: Option<Arc<crate::pki::PolicySigner>>,
    /// How long a proposal waits for an approval or a fleet lease.
    pub(crate) proposal_ttl_ms: i64,
    /// Heartbeats heard and not yet written.
    heartbeats: ingest::Heartbeats,
    /// The group commit of rollups; without it each rollup is its own transaction.
    rollup_writer: Option<ingest::RollupWriter>,
    /// When a rollup was last stored (Unix ms), which says the database works without asking it.
    last_stored_ms: AtomicI64,
    /// This process among the replicas (the holder name of leases).
    replica_id: String,
    /// Another replica asked for the ticks (a request, a decision, a rollout) now.
    wake_ticks: tokio::sync::Notify,
    /// Another replica revoked a host.
    wake_revocations: tokio::sync::Notify,
}

impl Fleet {
    pub fn new(store: Store, telemetry: Arc<Telemetry>) -> Self {
        Self {
            store,
            telemetry,
            streams: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            ca: None,
            cert_ttl: std::time::Duration::from_secs(86_400),
            policy_signer: None,
            proposal_ttl_ms: 15 * 60 * 1000,
            heartbeats: ingest::Heartbeats::default(),
            rollup_writer: None,
            last_stored_ms: AtomicI64::new(0),
            replica_id: new_id("replica"),
            wake_ticks: tokio::sync::Notify::new(),
            wake_revocations: tokio::sync::Notify::new(),
        }
    }

    /// Gives up this replica's leases on fleet-wide work (at shutdown).
    pub async fn release_leases(&self) {
        if let Err(e) = self.store.release_leases(&self.replica_id).await {
            tracing::warn!(error = %e, "cannot give up the leases; they expire by themselves");
        }
    }

    /// Listens for the other replicas' wake-ups (PostgreSQL `LISTEN`) until `stop`; on SQLite
    /// there are none. A lost connection is listened on again after a second; the periodic
    /// polls cover the gap.
    pub async fn run_wake_listener(
        &self,
        url: String,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            let mut listener = match self.store.listen(&url).await {
                Ok(Some(l)) => l,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for other replicas; polling only");
                    tokio::select! {
                        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                        _ = stop.changed() => return,
                    }
                }
            };
            loop {
                let next = tokio::select! {
                    n = listener.recv() => n,
                    _ = stop.changed() => return,
                };
                match next {
                    Ok(Some(crate::store::Wake::Ticks)) => self.wake_ticks.notify_one(),
                    Ok(Some(crate::store::Wake::Revocations)) => self.wake_revocations.notify_one(),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the listening connection; listening again");
                        break;
                    }
                }
            }
        }
    }

    /// Stores rollups of all streams together, a group per transaction, by writer tasks
    /// started here (so it needs a Tokio runtime).
    pub fn with_group_commit(mut self) -> Self {
        self.rollup_writer = Some(ingest::RollupWriter::start(
            self.store.clone(),
            self.telemetry.clone(),
        ));
        self
    }

    /// Lets this fleet sign policy revisions.
    pub fn with_policy_signer(mut self, signer: crate::pki::PolicySigner) -> Self {
        self.policy_signer = Some(Arc::new(signer));
        self
    }

    /// How long proposals wait for an approval or a lease before expiring.
    pub fn with_proposal_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.proposal_ttl_ms = ttl.as_millis().min(i64::MAX as u128) as i64;
        self
    }

    /// Lets this fleet issue certificates (enrollment, renewal).
    pub fn with_ca(mut self, ca: crate::pki::Ca, cert_ttl: std::time::Duration) -> Self {
        self.ca = Some(Arc::new(ca));
        self.cert_ttl = cert_ttl;
        self
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<String, LiveStream>> {
        // A poisoned lock only means another stream task panicked while
        // holding it; the map itself is still consistent.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn connected_agents(&self) -> usize {
        self.streams().len()
    }

    /// Records a new stream. A second stream of the same agent replaces the
    /// first, which is closed.
    pub async fn connected(
        &self,
        agent_id: &str,
        info: &HostInfo,
    ) -> Result<StreamHandle, StoreError> {
        self.store.upsert_host(agent_id, info, now_ms()).await?;
        // Events left open by an earlier run of this agent can never be
        // closed by the new run.
        let closed = self
            .store
            .close_orphaned_anomalies(agent_id, info.run_started_ms, now_ms())
            .await?;
        if closed > 0 {
            tracing::info!(
                agent_id,
                closed,
                "closed anomalies left open by an earlier agent run"
            );
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let (close, closed) = tokio::sync::watch::channel(None);
        let (downlink, downlink_rx) = tokio::sync::mpsc::channel(64);
        let count = {
            let mut s = self.streams();
            let live = LiveStream {
                generation,
                downlink,
                policies_sent: HashMap::new(),
                close,
            };
            if let Some(old) = s.insert(agent_id.to_string(), live) {
                let _ = old
                    .close
                    .send(Some("replaced by a newer stream of the same agent".into()));
            }
            s.len()
        };
        self.telemetry.agents_connected.set(count as i64);
        tracing::info!(agent_id, hostname = %info.hostname, "agent connected");
        Ok(StreamHandle {
            generation,
            downlink: downlink_rx,
            closed,
        })
    }

    /// Queues a request on the agent's live stream here; false when it has
    /// none (it gets the request when it next connects).
    pub fn send_command(&self, agent_id: &str, command: PendingCommand) -> bool {
        match self.streams().get(agent_id) {
            Some(s) => s.downlink.try_send(Downlink::Command(command)).is_ok(),
            None => false,
        }
    }

    /// Sends a policy revision unless this agent's stream already got it.
    pub fn send_policy(&self, agent_id: &str, revision: PolicyRevision) -> bool {
        let mut streams = self.streams();
        let Some(s) = streams.get_mut(agent_id) else {
            return false;
        };
        if s.policies_sent.get(&revision.name) == Some(&revision.revision) {
            return false;
        }
        let (name, rev) = (revision.name.clone(), revision.revision);
        if s.downlink.try_send(Downlink::Policy(revision)).is_ok() {
            s.policies_sent.insert(name, rev);
            true
        } else {
            false
        }
    }

    /// Agents with a live stream on this replica.
    pub fn connected_ids(&self) -> Vec<String> {
        self.streams().keys().cloned().collect()
    }

    pub fn is_connected_here(&self, agent_id: &str) -> bool {
        self.streams().contains_key(agent_id)
    }

    /// Closes the live stream of an agent on this replica, if any.
    pub fn close_stream(&self, agent_id: &str, reason: &str) -> bool {
        match self.streams().get(agent_id) {
            Some(s) => s.close.send(Some(reason.to_string())).is_ok(),
            None => false,
        }
    }

    pub async fn disconnected(&self, agent_id: &str, generation: u64) {
        let (current, count) = {
            let mut s = self.streams();
            let current = s.get(agent_id).is_some_and(|l| l.generation == generation);
            if current {
                s.remove(agent_id);
            }
            (current, s.len())
        };
        self.telemetry.agents_connected.set(count as i64);
        if current {
            if let Err(e) = self.store.set_disconnected(agent_id, now_ms()).await {
                tracing::warn!(agent_id, error = %e, "cannot record disconnect");
            }
            tracing::info!(agent_id, "agent disconnected");
        }
    }

    /// Stores one anomaly change exactly once per (agent id, sequence number).
    pub async fn ingest_anomaly(
        &self,
        agent_id: &str,
        change: &AnomalyChange,
    ) -> Result<Ingested, StoreError> {
        let result = self
            .store
            .ingest_anomaly(agent_id, change, now_ms())
            .await?;
        match result {
            Ingested::Stored => {
                self.telemetry.ingest_messages.inc();
                if change.kind == ChangeKind::Opened {
                    self.telemetry.anomalies_opened.inc();
                    tracing::info!(agent_id, event = %change.event_id(agent_id), severity = change.severity.as_str(),
                        top = change.contributors.first().map_or("", |c| c.metric.as_str()), "anomaly opened");
                }
            }
            Ingested::Duplicate => {
                self.telemetry.ingest_duplicates.inc();
            }
        }
        Ok(result)
    }

    /// A durable message that cannot be stored: recorded, counted, logged
    /// and acknowledged, so one bad message never blocks an agent's stream.
    pub async fn reject(
        &self,
        agent_id: &str,
        seq: u64,
        produced_at_ms: i64,
        reason: &str,
    ) -> Result<(), StoreError> {
        let Ok(seq) = i64::try_from(seq) else {
            tracing::warn!(
                agent_id,
                seq,
                reason,
                "rejected agent message with an out-of-range sequence number"
            );
            return Ok(());
        };
        if seq > 0
            && self
                .store
                .reject_message(agent_id, seq, produced_at_ms, now_ms())
                .await?
        {
            self.telemetry.ingest_rejected.inc();
        }
        tracing::warn!(agent_id, seq, reason, "rejected invalid agent message");
        Ok(())
    }

    /// Stores a rollup exactly once per (agent id, sequence number); with the group commit,
    /// together with other streams' rollups. Returns once it is committed.
    pub async fn ingest_rollup(
        &self,
        agent_id: &str,
        batch: RollupBatch,
    ) -> Result<Ingested, StoreError> {
        let rows = batch.metrics.len() as u64;
        let result = match &self.rollup_writer {
            Some(w) => w.write(agent_id, batch).await?,
            None => self.store.ingest_rollup(agent_id, &batch, now_ms()).await?,
        };
        self.last_stored_ms.store(now_ms(), Ordering::Relaxed);
        match result {
            Ingested::Stored => {
                self.telemetry.ingest_messages.inc();
                self.telemetry.ingest_rows.inc_by(rows);
            }
            Ingested::Duplicate => {
                self.telemetry.ingest_duplicates.inc();
            }
        }
        Ok(result)
    }
}
