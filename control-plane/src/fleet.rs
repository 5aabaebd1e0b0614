//! The fleet domain: hosts, their connections and the data they send.
//!
//! This module knows nothing of gRPC, HTTP or SQL. The gRPC edge converts
//! protobuf into these types; the store persists them.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

mod enroll;
mod policy;
mod remediation;

pub use enroll::{EnrollError, Issued};
pub use policy::{
    PolicyApiError, PolicyHostStatus, PolicyRevision, PolicyStatusIn, Rollout, RolloutRequest,
};
pub use remediation::{
    ActionQuery, ActionRecord, AuditEntry, AuditQuery, DecideError, PendingCommand, ProposalIn,
    ReportIn, TriggerError, STATES as ACTION_STATES,
};

/// Bounds on enrollment tokens.
pub mod enroll_limits {
    pub const MAX_TOKEN_TTL_SECS: i64 = 30 * 86_400;
    pub const MAX_TOKEN_USES: i64 = 10_000;
}

use crate::store::{Store, StoreError};
use crate::telemetry::Telemetry;

/// What an agent says about itself when it connects. Its identity is not
/// in here: it comes from the client certificate.
#[derive(Debug, Clone, Default)]
pub struct HostInfo {
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub agent_version: String,
    pub labels: BTreeMap<String, String>,
    pub interval_ms: i64,
    /// When the agent process started; tells a reconnect from a restart.
    pub run_started_ms: i64,
    pub model: String,
    /// Expiry of the certificate the agent presents next, 0 if unknown.
    pub cert_not_after_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricRow {
    pub metric: String,
    pub device: String,
    pub min: f64,
    pub mean: f64,
    pub max: f64,
    pub last: f64,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ProcessRow {
    pub pid: u32,
    pub name: String,
    pub cpu_pct: f64,
    pub rss_bytes: u64,
    // rows stored before these fields existed lack them
    #[serde(default)]
    pub cmdline: String,
    /// systemd unit or cgroup path.
    #[serde(default)]
    pub unit: String,
    #[serde(default)]
    pub read_bytes_per_s: f64,
    #[serde(default)]
    pub write_bytes_per_s: f64,
}

/// The anomaly detector's state on a host, from its heartbeats.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DetectorStatus {
    /// "warming_up", "calibrated", or "" before the first heartbeat that said.
    pub state: String,
    /// While warming up: when the warm-up ends (Unix ms), else 0.
    pub warm_until_ms: i64,
    /// When the current calibration was made (Unix ms), 0 while warming up.
    pub calibrated_at_ms: i64,
    /// The calibration was restored at the agent's start (no warm-up).
    pub restored: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RollupBatch {
    pub seq: i64,
    pub produced_at_ms: i64,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub metrics: Vec<MetricRow>,
    pub top_processes: Vec<ProcessRow>,
    pub outbox_dropped_total: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    Stored,
    /// Already stored earlier (a replay after a reconnect): acknowledged
    /// again, written nowhere.
    Duplicate,
}

#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub id: String,
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub agent_version: String,
    pub labels: BTreeMap<String, String>,
    pub interval_ms: i64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub connected: bool,
    pub last_seq: i64,
    pub outbox_dropped_total: i64,
    pub cert_not_after_ms: i64,
    pub revoked: bool,
    pub revoked_at_ms: i64,
    pub detector: DetectorStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "low" => Some(Self::Low),
            "medium" => Some(Self::Medium),
            "high" => Some(Self::High),
            "critical" => Some(Self::Critical),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
    pub fn rank(self) -> i64 {
        self as i64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Opened,
    Updated,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Contributor {
    pub metric: String,
    pub value: f64,
    pub expected_low: f64,
    pub expected_high: f64,
    pub contribution: f64,
}

/// Raw samples around an onset; `None` where nothing was collected.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Series {
    pub metric: String,
    pub start_ms: i64,
    pub step_ms: i64,
    pub values: Vec<Option<f64>>,
}

/// One change of an anomaly event, as the agent reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyChange {
    pub seq: i64,
    pub produced_at_ms: i64,
    pub kind: ChangeKind,
    pub open_seq: i64,
    pub run_started_ms: i64,
    pub started_ms: i64,
    pub updated_ms: i64,
    pub ended_ms: Option<i64>,
    pub score: f64,
    pub peak_score: f64,
    pub severity: Severity,
    pub contributors: Vec<Contributor>,
    pub context: Vec<Series>,
    pub context_processes: Vec<ProcessRow>,
    pub model: String,
    /// "cpu", "memory", "disk_space", "disk_io", "network", "processes" or "host"; empty
    /// from agents that predate families.
    pub family: String,
    /// Why the agent closed it (CLOSED only).
    pub close_reason: String,
    /// Processes that consumed the family's resource before onset (OPENED only).
    pub culprits: Vec<ProcessRow>,
}

impl AnomalyChange {
    pub fn event_id(&self, host: &str) -> String {
        format!("{host}:{}", self.open_seq)
    }
}

/// An anomaly event as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Anomaly {
    pub id: String,
    pub host_id: String,
    pub status: String,
    pub started_ms: i64,
    pub updated_ms: i64,
    pub ended_ms: Option<i64>,
    pub score: f64,
    pub peak_score: f64,
    pub severity: Severity,
    /// What the event is about (see [`AnomalyChange::family`]).
    pub family: String,
    pub top_metric: String,
    pub contributors: Vec<Contributor>,
    /// The processes that consumed the family's resource in the seconds before onset,
    /// heaviest first.
    pub culprits: Vec<ProcessRow>,
    pub model: String,
    /// Why it closed: the agent's reason (e.g. "recovered: cpu under its clear level for
    /// 15 s; lasted 42 s") or "agent restarted".
    pub close_reason: String,
    /// Raw window and top processes at onset; only on single-event reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default)]
pub struct AnomalyQuery {
    pub host: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub min_severity: Option<Severity>,
    /// "open" or "closed".
    pub status: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatestValue {
    pub metric: String,
    pub device: String,
    pub ts_ms: i64,
    pub value: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RollupPoint {
    pub metric: String,
    pub device: String,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub min: f64,
    pub mean: f64,
    pub max: f64,
    pub last: f64,
    pub count: i64,
}

#[derive(Debug, Clone)]
pub struct RollupQuery {
    pub host: String,
    pub metric: Option<String>,
    pub device: Option<String>,
    pub from_ms: i64,
    pub to_ms: i64,
    pub limit: i64,
}

/// An enrollment token as listed (its secret is never stored or shown
/// again after creation).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnrollmentToken {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub max_uses: i64,
    pub uses: i64,
    pub expires_at_ms: i64,
    pub created_by: String,
    pub created_at_ms: i64,
    pub revoked: bool,
}

/// The outcome of presenting an enrollment token.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenUse {
    Ok {
        labels: BTreeMap<String, String>,
    },
    /// No such token, or a wrong secret: the same answer for both.
    Unknown,
    Expired,
    UsedUp,
    Revoked,
}

/// Valid agent ids: what a certificate subject may name.
pub fn valid_agent_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What goes down an agent's stream besides acks and heartbeats.
#[derive(Debug, Clone)]
pub enum Downlink {
    Command(PendingCommand),
    Policy(PolicyRevision),
}

pub(crate) fn new_id(prefix: &str) -> String {
    use rand::Rng;
    format!("{prefix}-{:016x}", rand::thread_rng().gen::<u64>())
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
        }
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

    pub fn store(&self) -> &Store {
        &self.store
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

    pub async fn heartbeat(
        &self,
        agent_id: &str,
        outbox_dropped_total: i64,
        cert_not_after_ms: i64,
        detector: Option<&DetectorStatus>,
    ) -> Result<(), StoreError> {
        self.store
            .touch_host(
                agent_id,
                outbox_dropped_total,
                cert_not_after_ms,
                detector,
                now_ms(),
            )
            .await
    }

    /// Stores a rollup exactly once per (agent id, sequence number).
    pub async fn ingest_rollup(
        &self,
        agent_id: &str,
        batch: &RollupBatch,
    ) -> Result<Ingested, StoreError> {
        let result = self.store.ingest_rollup(agent_id, batch, now_ms()).await?;
        match result {
            Ingested::Stored => {
                self.telemetry.ingest_messages.inc();
                self.telemetry
                    .ingest_rows
                    .inc_by(batch.metrics.len() as u64);
            }
            Ingested::Duplicate => {
                self.telemetry.ingest_duplicates.inc();
            }
        }
        Ok(result)
    }
}
