//! What every decision yields: a structured, serializable [`ActionReport`]
//! the caller pushes through the outbox, and the reason codes it carries.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use sco_policy::action::{Action, Consumer};
pub use sco_policy::Reason;

/// Whether an action really runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Resolve everything (pids, files, argv), record it, change nothing.
    /// Needs no lease; limits and breaker are checked but not consumed, so
    /// a dry run also tells whether the real action would be refused.
    DryRun,
    /// Run the action (needs a lease).
    Execute,
    /// Whether a rule that will ask to execute (mode `auto` or `approve`)
    /// could run now, checked when it fires: like a dry run nothing runs and
    /// nothing is consumed; the lease is checked later, when the approved
    /// request executes (and every other check again with it).
    Precheck,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::DryRun => "dry_run",
            Mode::Execute => "execute",
            Mode::Precheck => "precheck",
        }
    }
}

/// What the agent decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The action ran and succeeded.
    Executed,
    /// Dry run: the report says what would have happened.
    DryRun,
    /// Refused before anything ran; `reason` says why.
    Refused,
    /// The action ran (or started) and did not succeed.
    Failed,
}

/// A process an action signalled (or would signal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessEntry {
    pub pid: u32,
    pub name: String,
    pub cmdline: String,
    /// `would_signal` (dry run), `terminated` (gone after TERM), `killed`
    /// (gone after KILL), `survived`, or `vanished` (gone before any signal).
    pub outcome: String,
}

/// The process a `top_consumer` kill chose, with the usage it was chosen
/// by (measured over a short window right before the action).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumerEntry {
    pub resource: Consumer,
    pub pid: u32,
    pub name: String,
    pub cmdline: String,
    /// Percent of one core.
    pub cpu_pct: f64,
    pub rss_bytes: u64,
    pub read_bytes_per_s: f64,
    pub write_bytes_per_s: f64,
    /// Length of the measurement.
    pub window_ms: u64,
}

/// A file an action deleted (or would delete).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: PathBuf,
    pub bytes: u64,
    pub mtime_ms: i64,
    /// `would_delete`, `deleted`, or `skipped: <why>`.
    pub outcome: String,
}

/// The record of one decision. Built for every request, whatever the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionReport {
    /// Unique per agent and increasing, also across restarts.
    pub id: u64,
    pub rule: String,
    pub action: Action,
    pub mode: Mode,
    pub decision: Decision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<Reason>,
    /// Human-readable reason of a refusal or failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Lease token the action ran under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
    /// Command line run (or that would run); empty for in-process actions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pids: Vec<ProcessEntry>,
    /// The process a `top_consumer` kill chose, also when it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_consumer: Option<ConsumerEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileEntry>,
    /// Bytes freed (or that would be freed) by `clean_paths`.
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// First bytes of the command's stdout (or the webhook's answer).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stdout: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr: String,
    /// Other facts worth keeping (skipped symlinks, truncated output, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub started_ms: i64,
    pub ended_ms: i64,
}

impl ActionReport {
    pub(crate) fn new(rule: &str, action: &Action, mode: Mode, started_ms: i64) -> Self {
        Self {
            id: 0,
            rule: rule.to_string(),
            action: action.clone(),
            mode,
            decision: Decision::Refused,
            reason_code: None,
            reason: None,
            lease: None,
            argv: Vec::new(),
            pids: Vec::new(),
            top_consumer: None,
            files: Vec::new(),
            bytes: 0,
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
            notes: Vec::new(),
            started_ms,
            ended_ms: started_ms,
        }
    }

    pub(crate) fn refuse(&mut self, (code, reason): (Reason, String)) {
        self.decision = Decision::Refused;
        self.reason_code = Some(code);
        self.reason = Some(reason);
    }

    pub(crate) fn fail(&mut self, code: Reason, reason: String) {
        self.decision = Decision::Failed;
        self.reason_code = Some(code);
        self.reason = Some(reason);
    }
}
