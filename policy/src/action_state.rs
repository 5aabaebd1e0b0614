//! The states of a remediation request, as the REST API, the database and ChatOps name them:
//! `proposed` (waiting for an approval or a lease), `approved` (waiting for a lease or for the
//! agent to connect), `running` (sent with a lease), then `succeeded`, `failed`, `refused` (by
//! the agent's rules), `dry_run`, `rejected` (by an operator) or `expired` (nobody approved, or
//! no lease, in time). Which moves between them the control plane makes is its own rule
//! (`domain::remediation` there).

use serde::{Deserialize, Serialize};

/// Where a remediation request is (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionState {
    Proposed,
    Approved,
    Rejected,
    Running,
    Succeeded,
    Failed,
    Refused,
    Expired,
    DryRun,
}

impl ActionState {
    pub const ALL: [ActionState; 9] = [
        ActionState::Proposed,
        ActionState::Approved,
        ActionState::Rejected,
        ActionState::Running,
        ActionState::Succeeded,
        ActionState::Failed,
        ActionState::Refused,
        ActionState::Expired,
        ActionState::DryRun,
    ];

    /// The name the REST API and the database use.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionState::Proposed => "proposed",
            ActionState::Approved => "approved",
            ActionState::Rejected => "rejected",
            ActionState::Running => "running",
            ActionState::Succeeded => "succeeded",
            ActionState::Failed => "failed",
            ActionState::Refused => "refused",
            ActionState::Expired => "expired",
            ActionState::DryRun => "dry_run",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// `a, b, ...`: every state, for error messages.
    pub fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }
}

impl std::fmt::Display for ActionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_as_serde_writes_them() {
        for s in ActionState::ALL {
            assert_eq!(ActionState::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).expect("serialise");
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(ActionState::parse("dry-run"), None);
        assert!(ActionState::names().starts_with("proposed, approved, "));
    }
}
