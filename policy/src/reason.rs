//! Why an action was refused or failed: one code the agent reports and the control plane
//! stores and shows.

use serde::{Deserialize, Serialize};

/// Machine-readable reason of a refusal or failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    InvalidAction,
    InvalidName,
    NoLease,
    LeaseExpired,
    CircuitOpen,
    CooldownActive,
    RuleRateLimited,
    BudgetExhausted,
    ProtectedProcess,
    NoMatchingProcess,
    TooManyProcesses,
    OutsideAllowlist,
    UnsafeFile,
    ChecksumMismatch,
    NotAllowed,
    /// A command the action runs (`remediate.systemctl`, `remediate.journalctl`) is not an
    /// executable file on this host, e.g. in a container without the host's systemd: refused
    /// before anything is counted, since trying could only fail.
    CommandMissing,
    Unsupported,
    CommandFailed,
    Timeout,
    SignalFailed,
    ProcessSurvived,
    Io,
    Http,
    Storage,
}
