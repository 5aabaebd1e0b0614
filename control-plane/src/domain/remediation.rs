//! Remediation requests (proposals, approvals, leases, reports) and the audit log: the
//! records, the request state machine, and the decisions on what an agent sent as pure
//! functions.
//!
//! States: `proposed` (waiting for an approval or a lease), `approved` (waiting for a lease
//! or for the agent to connect), `running` (sent with a lease), then `succeeded`, `failed`,
//! `refused` (by the agent's rules), `dry_run`, `rejected` (by an operator) or `expired`
//! (nobody approved, or no lease, in time).

use serde::{Deserialize, Serialize};

/// The states' names are `sco-policy`'s (ChatOps filters by them too); their rules are here.
pub use sco_policy::ActionState;

/// The request state machine: which states are final and which moves the control plane makes.
pub trait Transitions: Copy {
    /// No further change: the request is done, one way or another.
    fn is_final(self) -> bool;
    /// The transitions the control plane makes. A running request goes back to where it was
    /// when its stream vanished before the send; the agent's report ends a running one (and
    /// may still replace `failed` after the control plane gave up waiting for it).
    fn can_become(self, to: ActionState) -> bool;
}

impl Transitions for ActionState {
    fn is_final(self) -> bool {
        !matches!(
            self,
            ActionState::Proposed | ActionState::Approved | ActionState::Running
        )
    }

    fn can_become(self, to: ActionState) -> bool {
        use ActionState::*;
        matches!(
            (self, to),
            (Proposed, Approved | Rejected | Running | Expired)
                | (Approved, Running | Expired)
                | (Running, Proposed | Approved)
                | (Running | Failed, Succeeded | Failed | Refused | DryRun)
        )
    }
}

/// How a request gets to run: an operator asked (`manual`), or the mode of the policy rule
/// that proposed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    Manual,
    Auto,
    Approve,
    DryRun,
}

impl Approval {
    pub const ALL: [Approval; 4] = [
        Approval::Manual,
        Approval::Auto,
        Approval::Approve,
        Approval::DryRun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Approval::Manual => "manual",
            Approval::Auto => "auto",
            Approval::Approve => "approve",
            Approval::DryRun => "dry_run",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// The state and reason a proposal from an agent is recorded with: its rule's mode and the
/// agent's decision must agree, and its action must pass the static checks (`action`: the
/// check's error), else it is recorded as refused, saying why.
pub fn proposal_state(
    mode: &str,
    decision: &str,
    reason: &str,
    action: Result<(), &str>,
) -> (ActionState, String) {
    match (Approval::parse(mode), decision, action) {
        (_, _, Err(e)) => (ActionState::Refused, format!("invalid {e}")),
        (Some(Approval::Auto | Approval::Approve), "proposed", Ok(())) => {
            (ActionState::Proposed, reason.to_string())
        }
        (Some(Approval::DryRun), "dry_run", Ok(())) => (ActionState::DryRun, reason.to_string()),
        (Some(_), "refused", Ok(())) => (ActionState::Refused, reason.to_string()),
        (_, d, Ok(())) => (
            ActionState::Refused,
            format!("invalid proposal: mode {mode:?}, decision {d:?}"),
        ),
    }
}

/// The final state an agent's report puts a request in.
pub fn report_state(decision: &str) -> ActionState {
    match decision {
        "executed" => ActionState::Succeeded,
        "dry_run" => ActionState::DryRun,
        "refused" => ActionState::Refused,
        _ => ActionState::Failed,
    }
}

/// Why a request that waited too long expires.
pub fn expiry_reason(state: ActionState, approval: Approval) -> &'static str {
    if state == ActionState::Proposed && approval == Approval::Approve {
        "nobody approved it in time"
    } else {
        "no fleet lease in time"
    }
}

/// Whether an operator may approve or reject the request now; else why not.
pub fn check_decidable(a: &ActionRecord, now_ms: i64) -> Result<(), String> {
    if a.state != ActionState::Proposed || a.approval != Approval::Approve {
        return Err(format!(
            "it is {} ({}), only proposals of approve rules wait for a decision",
            a.state,
            a.approval.as_str()
        ));
    }
    if a.expires_at_ms > 0 && a.expires_at_ms <= now_ms {
        return Err("it expired".into());
    }
    Ok(())
}

/// The longest reason an operator may give for a rejection, in characters.
pub const MAX_REJECT_REASON_CHARS: usize = 500;

/// An operator's decision on a proposal of an `approve` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Approve,
    /// `reason` (may be empty) is kept as the rejected request's reason.
    Reject {
        reason: String,
    },
}

impl Decision {
    /// `approve` or `reject`.
    pub fn verb(&self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject { .. } => "reject",
        }
    }

    /// The state the request takes.
    pub fn state(&self) -> ActionState {
        match self {
            Decision::Approve => ActionState::Approved,
            Decision::Reject { .. } => ActionState::Rejected,
        }
    }
}

/// A rejection's reason as it is stored: trimmed, one line, at most
/// [`MAX_REJECT_REASON_CHARS`] characters; blank is no reason. Else why not, naming the field.
pub fn check_reject_reason(reason: &str) -> Result<String, String> {
    let reason = reason.trim();
    let chars = reason.chars().count();
    if chars > MAX_REJECT_REASON_CHARS {
        return Err(format!(
            "reason: {chars} characters, at most {MAX_REJECT_REASON_CHARS}"
        ));
    }
    if reason.chars().any(char::is_control) {
        return Err("reason: one line of text without control characters".into());
    }
    Ok(reason.to_string())
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionRecord {
    pub id: String,
    pub host_id: String,
    /// `manual`, or `policy/rule` for proposals.
    pub rule: String,
    pub policy: String,
    pub action: serde_json::Value,
    /// "dry_run", "execute" or "reset_breaker".
    pub mode: String,
    /// How it gets to run.
    pub approval: Approval,
    pub state: ActionState,
    pub reason: String,
    pub requested_by: String,
    /// Who approved or rejected it.
    pub decided_by: String,
    /// Hosts of the fleet allowed to run this rule at once (0: no limit).
    pub max_concurrent: i64,
    /// Proposed or approved requests expire at this time (0: never).
    pub expires_at_ms: i64,
    /// Why the rule fired, as the agent saw it.
    pub evidence: Option<serde_json::Value>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// The agent's structured report, once it arrived.
    pub report: Option<serde_json::Value>,
}

/// A request on its way to an agent (the vocabulary both sides share).
pub use sco_policy::Command as PendingCommand;

/// An agent's report on one request, as received.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportIn {
    pub seq: i64,
    pub produced_at_ms: i64,
    pub command_id: String,
    /// executed, dry_run, refused or failed.
    pub decision: String,
    pub reason: String,
    pub report_json: String,
}

/// A policy rule that fired on an agent, as received.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposalIn {
    pub seq: i64,
    pub produced_at_ms: i64,
    pub id: String,
    pub policy: String,
    pub revision: i64,
    pub rule: String,
    pub action_json: String,
    /// auto, approve or dry_run.
    pub mode: String,
    /// proposed, dry_run or refused.
    pub decision: String,
    pub reason: String,
    pub report_json: String,
    pub evidence_json: String,
    pub max_concurrent: i64,
}

#[derive(Debug, Clone, Default)]
pub struct ActionQuery {
    pub host: Option<String>,
    pub state: Option<ActionState>,
    pub rule: Option<String>,
    pub limit: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: String,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub host_id: String,
    pub result: String,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub host: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub limit: i64,
}

impl ActionRecord {
    /// What travels down the agent's stream with the lease.
    pub fn command(&self, lease_token: String, lease_expires_ms: i64) -> PendingCommand {
        PendingCommand {
            id: self.id.clone(),
            action_json: self.action.to_string(),
            mode: self.mode.clone(),
            lease_token,
            lease_expires_ms,
            requested_by: self.requested_by.clone(),
            rule: self.rule.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_reasons_are_one_bounded_line() {
        let long = "x".repeat(MAX_REJECT_REASON_CHARS);
        let too_long = "é".repeat(MAX_REJECT_REASON_CHARS + 1);
        // (given, stored or the error's start)
        let cases: [(&str, Result<&str, &str>); 7] = [
            ("", Ok("")),
            ("   ", Ok("")),
            ("  not during the freeze ", Ok("not during the freeze")),
            (&long, Ok(&long)),
            (&too_long, Err("reason: 501 characters, at most 500")),
            ("two\nlines", Err("reason: one line")),
            ("bell\u{7}", Err("reason: one line")),
        ];
        for (given, want) in cases {
            match (check_reject_reason(given), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, w, "{given:?}"),
                (Err(e), Err(w)) => assert!(e.starts_with(w), "{given:?}: {e}"),
                (got, _) => panic!("{given:?}: got {got:?}, wanted {want:?}"),
            }
        }
        assert_eq!(
            Decision::Reject {
                reason: String::new()
            }
            .state(),
            ActionState::Rejected
        );
        assert_eq!(Decision::Approve.verb(), "approve");
    }

    #[test]
    fn proposals_are_recorded_by_mode_and_decision() {
        use ActionState::*;
        // (mode, decision, action check) -> state
        let cases: [(&str, &str, Result<(), &str>, ActionState); 9] = [
            ("auto", "proposed", Ok(()), Proposed),
            ("approve", "proposed", Ok(()), Proposed),
            ("dry_run", "dry_run", Ok(()), DryRun),
            ("auto", "refused", Ok(()), Refused),
            ("dry_run", "refused", Ok(()), Refused),
            ("auto", "proposed", Err("action: bad"), Refused),
            ("dry_run", "proposed", Ok(()), Refused),
            ("auto", "dry_run", Ok(()), Refused),
            ("sometimes", "proposed", Ok(()), Refused),
        ];
        for (mode, decision, check, want) in cases {
            let (state, reason) = proposal_state(mode, decision, "why", check);
            assert_eq!(state, want, "{mode} {decision} {check:?}");
            match (check, want) {
                (Err(e), _) => assert_eq!(reason, format!("invalid {e}")),
                (Ok(()), Refused) if decision != "refused" => {
                    assert!(reason.starts_with("invalid proposal"), "{reason}")
                }
                _ => assert_eq!(reason, "why"),
            }
        }
    }

    #[test]
    fn reports_end_a_request() {
        for (decision, want) in [
            ("executed", ActionState::Succeeded),
            ("dry_run", ActionState::DryRun),
            ("refused", ActionState::Refused),
            ("failed", ActionState::Failed),
            ("anything else", ActionState::Failed),
        ] {
            let state = report_state(decision);
            assert_eq!(state, want, "{decision}");
            assert!(state.is_final() && ActionState::Running.can_become(state));
        }
    }

    #[test]
    fn the_state_machine() {
        use ActionState::*;
        for s in ActionState::ALL {
            assert_eq!(ActionState::parse(s.as_str()), Some(s));
            // a late "failed" report replaces the reason of a request given up on
            assert_eq!(s.can_become(s), s == Failed, "{s} -> {s}");
            if s.is_final() && s != Failed {
                for to in ActionState::ALL {
                    assert!(!s.can_become(to), "{s} is final, not -> {to}");
                }
            }
        }
        assert!(Proposed.can_become(Approved) && Proposed.can_become(Rejected));
        assert!(
            !Approved.can_become(Rejected),
            "an approval is not taken back"
        );
        assert!(
            Failed.can_become(Succeeded),
            "a late report replaces a given-up wait"
        );
        assert!(!Expired.can_become(Running));
        assert_eq!(ActionState::names().split(", ").count(), 9);
        for a in Approval::ALL {
            assert_eq!(Approval::parse(a.as_str()), Some(a));
        }
    }

    fn proposal(approval: Approval, expires_at_ms: i64) -> ActionRecord {
        ActionRecord {
            id: "p".into(),
            host_id: "h".into(),
            rule: "web/stop".into(),
            policy: "web".into(),
            action: serde_json::json!({}),
            mode: "execute".into(),
            approval,
            state: ActionState::Proposed,
            reason: String::new(),
            requested_by: "agent:h".into(),
            decided_by: String::new(),
            max_concurrent: 1,
            expires_at_ms,
            evidence: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            report: None,
        }
    }

    #[test]
    fn decisions_and_expiry() {
        assert_eq!(check_decidable(&proposal(Approval::Approve, 0), 5), Ok(()));
        assert_eq!(check_decidable(&proposal(Approval::Approve, 10), 5), Ok(()));
        assert_eq!(
            check_decidable(&proposal(Approval::Approve, 10), 10),
            Err("it expired".into())
        );
        let auto = check_decidable(&proposal(Approval::Auto, 0), 5).expect_err("auto");
        assert!(auto.contains("proposed (auto)"), "{auto}");
        let mut approved = proposal(Approval::Approve, 0);
        approved.state = ActionState::Approved;
        assert!(check_decidable(&approved, 5).is_err());
        assert_eq!(
            expiry_reason(ActionState::Proposed, Approval::Approve),
            "nobody approved it in time"
        );
        assert_eq!(
            expiry_reason(ActionState::Proposed, Approval::Auto),
            "no fleet lease in time"
        );
        assert_eq!(
            expiry_reason(ActionState::Approved, Approval::Manual),
            "no fleet lease in time"
        );
    }
}
