//! The control plane's records: hosts, the data they send, anomaly events, enrollment
//! tokens, policy revisions and rollouts, remediation requests and the audit log, with the
//! rules that need no storage (state machines, validity). The services in [`crate::fleet`]
//! decide with them and the store in [`crate::store`] persists them; neither is named here.

use std::collections::BTreeMap;

use serde::Serialize;

pub mod choice;
pub mod feedback;
pub mod models;
pub mod policy;
pub mod remediation;

pub use sco_policy::Severity;

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
    /// The transport of this stream: `grpc` (HTTP/2 over TCP and TLS) or `quic`. Set by the
    /// control plane, not said by the agent.
    pub transport: String,
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

/// What an agent's heartbeats said last, kept in memory and written for many
/// hosts at once (heartbeats are most of what agents send; none of it needs
/// a write of its own).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostBeat {
    pub host_id: String,
    /// When the control plane last heard the agent (Unix ms).
    pub seen_ms: i64,
    pub outbox_dropped_total: i64,
    /// 0 when the agent did not say.
    pub cert_not_after_ms: i64,
    /// `None` leaves the stored detector state as it is.
    pub detector: Option<DetectorStatus>,
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

/// Whether a durable message was new (its claim was fresh): stored, or a duplicate.
impl From<bool> for Ingested {
    fn from(fresh: bool) -> Self {
        if fresh {
            Ingested::Stored
        } else {
            Ingested::Duplicate
        }
    }
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
    /// How its current or last stream came: `grpc` (HTTP/2 over TCP) or `quic`; empty if
    /// not seen since the control plane recorded it.
    pub transport: String,
    pub revoked: bool,
    pub revoked_at_ms: i64,
    pub detector: DetectorStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Opened,
    Updated,
    Closed,
}

/// The detector's explanation of one metric's part (shared with the agent, `sco-policy`).
pub use sco_policy::Contributor;

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
    /// When it recovered, while the agent holds it open in case it comes back (UPDATED only).
    pub recovered_ms: Option<i64>,
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
    /// Open only: when it recovered, while its agent holds it open a while in case the same
    /// trouble comes back (not alarming meanwhile; null while it fires).
    pub recovered_ms: Option<i64>,
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

/// One value of a host's newest stored rollup (the fleet-wide scrape reads these for every
/// host at once).
#[derive(Debug, Clone, PartialEq)]
pub struct HostLatestValue {
    pub host_id: String,
    pub metric: String,
    pub device: String,
    /// End of the rollup window (Unix ms).
    pub ts_ms: i64,
    pub value: f64,
}

/// Open anomaly events of one host, family and severity.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAnomalies {
    pub host_id: String,
    /// Empty from agents that predate families.
    pub family: String,
    pub severity: Severity,
    pub count: i64,
    /// How many of them recovered and are held open in case they come back (`recovered_ms`
    /// set): the host is back to normal for these, yet they stay open until closed.
    pub held: i64,
    /// The highest current score among them.
    pub max_score: f64,
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

/// Now, in milliseconds since the Unix epoch: the control plane's one clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A fresh record id: `prefix` and 64 random bits in hex.
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}
