//! Remediation requests: manual triggers from operators and proposals from
//! the agents' policy rules. Each is validated against the agent's typed
//! action allowlist, recorded, waits for an approval (mode `approve`) and for
//! a fleet lease (at most `max_concurrent` hosts acting per rule), travels
//! down the agent's stream with that lease, and is closed by the agent's
//! report. The agent's local safety rules still decide. For a rule that lists candidate
//! actions, which one a proposal runs is chosen here from their verified outcomes
//! ([`preferences`]).
//!
//! The states and the decisions that need no database are in
//! [`crate::domain::remediation`].

mod preferences;

use crate::error::{Code, Coded};
use std::collections::HashMap;
use std::sync::Arc;

use super::audit::Audit;
use super::streams::Streams;
use crate::domain::remediation::{
    check_decidable, check_reject_reason, expiry_reason, proposal_state, report_state, ActionQuery,
    ActionRecord, ActionState, Approval, Decision, ProposalIn, ReportIn,
};
use crate::domain::{new_id, now_ms, valid_agent_id, Ingested};
use crate::store::{Store, StoreError, Wake};
use crate::telemetry::Telemetry;

/// How long a lease handed out with a request stays valid: longer than the
/// longest action plus its verification (policies allow at most 600 s).
const LEASE_MS: i64 = 15 * 60 * 1000;

/// A running request without a report this long after it was sent is
/// marked failed (the agent's report, if it ever arrives, still wins).
const REPORT_WAIT_MS: i64 = LEASE_MS + 5 * 60 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("{0}")]
    Invalid(String),
    #[error("no host {0:?}")]
    NoHost(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// A decision's own field is invalid (the message names it).
    #[error("{0}")]
    Invalid(String),
    #[error("no remediation action {0:?}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Parses `action` with the agent's typed allowlist and runs the agent's
/// static checks of it (one target for `kill_process`, strict names,
/// ranges): what the agent would refuse without looking at the host. The
/// host checks (protected processes, allowlisted paths, limits) stay with
/// the agent. Errors start with `action: `.
pub fn check_action(action: &serde_json::Value) -> Result<sco_policy::Action, String> {
    let typed = serde_json::from_value::<sco_policy::Action>(action.clone())
        .map_err(|e| format!("action: {e}"))?;
    typed
        .check()
        .map_err(|(_, reason)| format!("action: {reason}"))?;
    Ok(typed)
}

fn lease() -> (String, i64) {
    (hex::encode(rand::random::<[u8; 16]>()), now_ms() + LEASE_MS)
}

/// The remediation service: requests (manual triggers, breaker resets, agents' proposals),
/// decisions on them, their delivery with fleet leases, reports and expiry.
pub struct Remediation {
    store: Store,
    telemetry: Arc<Telemetry>,
    streams: Arc<Streams>,
    audit: Arc<Audit>,
    /// How long a proposal waits for an approval or a fleet lease.
    proposal_ttl_ms: i64,
}

impl Remediation {
    pub fn new(
        store: Store,
        telemetry: Arc<Telemetry>,
        streams: Arc<Streams>,
        audit: Arc<Audit>,
        proposal_ttl: std::time::Duration,
    ) -> Self {
        Self {
            store,
            telemetry,
            streams,
            audit,
            proposal_ttl_ms: proposal_ttl.as_millis().min(i64::MAX as u128) as i64,
        }
    }

    /// Records a manual request and hands it to the agent if it is connected
    /// here (otherwise when it next connects).
    pub async fn trigger(
        &self,
        actor: &str,
        host: &str,
        action: serde_json::Value,
        mode: &str,
    ) -> Result<ActionRecord, TriggerError> {
        if mode != "dry_run" && mode != "execute" {
            return Err(TriggerError::Invalid(format!(
                "mode: {mode:?} is not dry_run or execute"
            )));
        }
        // Refused here already, with the agent's own message, rather than
        // stored, leased and sent only for the agent to refuse on sight.
        check_action(&action).map_err(TriggerError::Invalid)?;
        let detail = serde_json::json!({ "action": action, "mode": mode });
        self.manual_request(
            actor,
            host,
            "manual",
            action,
            mode,
            "remediation.trigger",
            detail,
        )
        .await
    }

    /// Records a request an operator made, audits it and sends it if the
    /// agent is connected here.
    #[allow(clippy::too_many_arguments)]
    async fn manual_request(
        &self,
        actor: &str,
        host: &str,
        rule: &str,
        action: serde_json::Value,
        mode: &str,
        audit_action: &str,
        mut detail: serde_json::Value,
    ) -> Result<ActionRecord, TriggerError> {
        if !valid_agent_id(host) {
            return Err(TriggerError::Invalid(format!(
                "host: invalid host id {host:?}"
            )));
        }
        if self.store.host(host, i64::MAX, now_ms()).await?.is_none() {
            return Err(TriggerError::NoHost(host.to_string()));
        }
        let now = now_ms();
        let record = ActionRecord {
            id: new_id("act"),
            host_id: host.to_string(),
            rule: rule.to_string(),
            policy: String::new(),
            action,
            mode: mode.to_string(),
            approval: Approval::Manual,
            state: ActionState::Approved,
            reason: String::new(),
            requested_by: actor.to_string(),
            decided_by: actor.to_string(),
            max_concurrent: 0,
            expires_at_ms: 0,
            evidence: None,
            created_at_ms: now,
            updated_at_ms: now,
            report: None,
        };
        self.store.insert_action(&record).await?;
        detail["request"] = record.id.clone().into();
        self.audit
            .record(actor, audit_action, host, "requested", detail)
            .await;
        self.dispatch(host).await?;
        Ok(self.store.action(&record.id).await?.unwrap_or(record))
    }

    /// Asks an agent to close the circuit breaker of one of its rules (only
    /// a human may). Travels like a request, is reported and audited.
    pub async fn reset_breaker(
        &self,
        actor: &str,
        host: &str,
        rule: &str,
    ) -> Result<ActionRecord, TriggerError> {
        let rule_ok = (1..=128).contains(&rule.len())
            && rule
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"@._:/-".contains(&b));
        if !rule_ok {
            return Err(TriggerError::Invalid(format!(
                "rule: {:?} does not match ^[A-Za-z0-9@._:/-]{{1,128}}$",
                rule.chars().take(140).collect::<String>()
            )));
        }
        let action = serde_json::json!({ "type": "reset_breaker" });
        let detail = serde_json::json!({ "rule": rule });
        self.manual_request(
            actor,
            host,
            rule,
            action,
            "reset_breaker",
            "remediation.breaker_reset",
            detail,
        )
        .await
    }

    /// Sends this host's requests that may run now: approved ones and auto
    /// proposals, each once it holds a fleet lease for its rule.
    pub async fn dispatch(&self, host: &str) -> Result<(), StoreError> {
        if !self.streams.is_connected_here(host) {
            // the replica holding its stream sends it, woken now rather than at its next tick
            self.store.announce(Wake::Ticks).await;
            return Ok(());
        }
        let actions = self.store.dispatchable_actions(host).await?;
        self.dispatch_actions(host, actions).await
    }

    /// Sends what may run now of `actions`, all requests of `host`.
    async fn dispatch_actions(
        &self,
        host: &str,
        actions: Vec<ActionRecord>,
    ) -> Result<(), StoreError> {
        for a in actions {
            let (token, expires) = lease();
            if a.max_concurrent > 0
                && !self
                    .store
                    .claim_lease(&a.rule, a.max_concurrent, &a.id, expires, now_ms())
                    .await?
            {
                let waiting = format!(
                    "waiting for a fleet lease: {} hosts already run rule {}",
                    a.max_concurrent, a.rule
                );
                if a.reason != waiting {
                    self.store.set_action_reason(&a.id, &waiting).await?;
                }
                continue;
            }
            if !self
                .store
                .transition_action(&a.id, a.state, ActionState::Running, "", None, now_ms())
                .await?
            {
                // Another dispatch (a tick, a decision, another replica) moved it on first.
                // If that one made it run, the lease it runs under is this same row: keep it.
                self.store.release_lease_unless_running(&a.id).await?;
                continue;
            }
            if a.approval != Approval::Manual {
                self.audit.record(
                    "control-plane",
                    "remediation.lease",
                    host,
                    "granted",
                    serde_json::json!({ "request": a.id, "rule": a.rule, "max_concurrent": a.max_concurrent, "expires_ms": expires }),
                )
                .await;
            }
            if !self.streams.send_command(host, a.command(token, expires)) {
                // The stream went away between the check and the send: the
                // request waits for the next connection.
                self.store
                    .transition_action(&a.id, ActionState::Running, a.state, "", None, now_ms())
                    .await?;
                self.store.release_lease(&a.id).await?;
                break;
            }
        }
        Ok(())
    }

    /// Expires requests nobody approved (or no lease freed up for) in time,
    /// and dispatches what may run on the agents connected here.
    /// Expires requests nobody decided on in time and fails those whose report never came.
    /// Fleet-wide: run by the holder of the ticks lease.
    pub async fn expire_remediation(&self) -> Result<(), StoreError> {
        let now = now_ms();
        for a in self.store.expiring_actions(now).await? {
            let reason = expiry_reason(a.state, a.approval);
            if self
                .store
                .transition_action(&a.id, a.state, ActionState::Expired, reason, None, now)
                .await?
            {
                self.audit
                    .record(
                        "control-plane",
                        "remediation.expired",
                        &a.host_id,
                        "expired",
                        serde_json::json!({ "request": a.id, "rule": a.rule, "reason": reason }),
                    )
                    .await;
            }
        }
        for a in self.store.stale_running(now - REPORT_WAIT_MS).await? {
            let reason = format!(
                "no report from the agent within {} minutes of sending; it may still report",
                REPORT_WAIT_MS / 60_000
            );
            if self
                .store
                .transition_action(
                    &a.id,
                    ActionState::Running,
                    ActionState::Failed,
                    &reason,
                    None,
                    now,
                )
                .await?
            {
                self.store.release_lease(&a.id).await?;
                self.audit
                    .record(
                        "control-plane",
                        "remediation.lost",
                        &a.host_id,
                        "failed",
                        serde_json::json!({ "request": a.id, "rule": a.rule, "reason": reason }),
                    )
                    .await;
            }
        }
        Ok(())
    }

    /// Sends the requests that may run now to the agents whose streams this replica holds.
    pub async fn tick_remediation(&self) -> Result<(), StoreError> {
        let mut by_host: HashMap<String, Vec<ActionRecord>> = HashMap::new();
        for a in self.store.all_dispatchable_actions().await? {
            if self.streams.is_connected_here(&a.host_id) {
                by_host.entry(a.host_id.clone()).or_default().push(a);
            }
        }
        for (host, actions) in by_host {
            self.dispatch_actions(&host, actions).await?;
        }
        Ok(())
    }

    /// Approves or rejects a proposal of an `approve` rule. A rejection's reason is kept as
    /// the request's reason and in the audit entry.
    pub async fn decide(
        &self,
        actor: &str,
        id: &str,
        decision: Decision,
    ) -> Result<ActionRecord, DecideError> {
        let reason = match &decision {
            Decision::Approve => String::new(),
            Decision::Reject { reason } => {
                check_reject_reason(reason).map_err(DecideError::Invalid)?
            }
        };
        let a = self
            .store
            .action(id)
            .await?
            .ok_or_else(|| DecideError::NotFound(id.to_string()))?;
        let verb = decision.verb();
        let now = now_ms();
        check_decidable(&a, now)
            .map_err(|why| DecideError::Conflict(format!("cannot {verb} {id}: {why}")))?;
        let to = decision.state();
        if !self
            .store
            .transition_action(id, ActionState::Proposed, to, &reason, Some(actor), now)
            .await?
        {
            return Err(DecideError::Conflict(format!(
                "cannot {verb} {id}: it changed meanwhile"
            )));
        }
        let mut detail = serde_json::json!({ "request": id, "rule": a.rule, "action": a.action });
        if !reason.is_empty() {
            detail["reason"] = reason.into();
        }
        self.audit
            .record(
                actor,
                &format!("remediation.{verb}"),
                &a.host_id,
                to.as_str(),
                detail,
            )
            .await;
        if matches!(decision, Decision::Approve) {
            self.dispatch(&a.host_id).await?;
        }
        Ok(self.store.action(id).await?.unwrap_or(a))
    }

    /// Records a proposal from an agent's policy rule (once per message).
    pub async fn proposal(&self, agent_id: &str, p: ProposalIn) -> Result<Ingested, StoreError> {
        let action: serde_json::Value = serde_json::from_str(&p.action_json).unwrap_or_default();
        let typed = check_action(&action);
        let now = now_ms();
        let (state, reason) = proposal_state(
            &p.mode,
            &p.decision,
            &p.reason,
            typed.as_ref().map(|_| ()).map_err(String::as_str),
        );
        let mut record = ActionRecord {
            id: p.id.clone(),
            host_id: agent_id.to_string(),
            rule: p.rule.clone(),
            policy: p.policy.clone(),
            action,
            mode: if p.mode == "dry_run" {
                "dry_run"
            } else {
                "execute"
            }
            .into(),
            // an unknown mode was refused above; the record keeps what it can name
            approval: Approval::parse(&p.mode).unwrap_or(Approval::DryRun),
            state,
            reason,
            requested_by: format!("agent:{agent_id}"),
            decided_by: String::new(),
            max_concurrent: p.max_concurrent.max(1),
            expires_at_ms: if state == ActionState::Proposed {
                now + self.proposal_ttl_ms
            } else {
                0
            },
            evidence: serde_json::from_str(&p.evidence_json).ok(),
            created_at_ms: now,
            updated_at_ms: now,
            report: serde_json::from_str(&p.report_json).ok(),
        };
        self.choose_candidate(&p, &mut record).await?;
        let ingested = self
            .store
            .insert_proposal(&record, p.seq, p.produced_at_ms)
            .await?;
        if ingested == Ingested::Stored {
            self.telemetry.ingest_messages.inc();
            tracing::info!(agent_id, request = %record.id, rule = %record.rule, state = state.as_str(), "remediation proposal");
            self.audit
                .record(
                    &format!("agent:{agent_id}"),
                    "remediation.proposal",
                    agent_id,
                    state.as_str(),
                    serde_json::json!({
                        "request": record.id, "policy": p.policy, "revision": p.revision,
                        "rule": record.rule, "mode": p.mode, "action": record.action,
                        "reason": record.reason, "evidence": record.evidence,
                    }),
                )
                .await;
            if state == ActionState::Proposed && record.approval == Approval::Auto {
                self.dispatch(agent_id).await?;
            }
        }
        Ok(ingested)
    }

    /// Stores an agent's report on a request and frees its lease.
    pub async fn action_report(
        &self,
        agent_id: &str,
        mut r: ReportIn,
    ) -> Result<Ingested, StoreError> {
        r.decision = report_state(&r.decision).as_str().into();
        let (ingested, matched) = self
            .store
            .record_action_report(agent_id, &r, now_ms())
            .await?;
        let (command_id, state, reason, report_json) =
            (&r.command_id, &r.decision, &r.reason, &r.report_json);
        if ingested == Ingested::Stored {
            self.telemetry.ingest_messages.inc();
            let detail: serde_json::Value =
                serde_json::from_str(report_json).unwrap_or(serde_json::Value::Null);
            self.audit.record(
                &format!("agent:{agent_id}"),
                "remediation.report",
                agent_id,
                state,
                serde_json::json!({ "request": command_id, "matched": matched, "reason": reason, "report": detail }),
            )
            .await;
            // the report is stored: a failure to learn from it is logged, not retried
            if matched {
                if let Err(e) = self.learn(command_id).await {
                    tracing::warn!(request = %command_id, error = %e, "outcome not learnt");
                }
            }
        }
        Ok(ingested)
    }

    pub async fn actions(&self, q: &ActionQuery) -> Result<Vec<ActionRecord>, StoreError> {
        self.store.actions(q).await
    }
}

impl Coded for TriggerError {
    fn code(&self) -> Code {
        match self {
            TriggerError::Invalid(_) => Code::Invalid,
            TriggerError::NoHost(_) => Code::NotFound,
            TriggerError::Store(e) => e.code(),
        }
    }
}

impl Coded for DecideError {
    fn code(&self) -> Code {
        match self {
            DecideError::Invalid(_) => Code::Invalid,
            DecideError::NotFound(_) => Code::NotFound,
            DecideError::Conflict(_) => Code::Conflict,
            DecideError::Store(e) => e.code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::store::sqlite_url;

    #[test]
    fn actions_get_the_agents_static_checks() {
        let cases = [
            (json!({"type": "kill_process", "pid": 4242}), None),
            (
                json!({"type": "kill_process", "pattern": "*runaway*"}),
                None,
            ),
            (
                json!({"type": "kill_process"}),
                Some("kill_process needs one target"),
            ),
            (
                json!({"type": "kill_process", "name": "a", "pid": 3}),
                Some("kill_process needs one target"),
            ),
            (
                json!({"type": "kill_process", "name": "nginx; rm -rf /"}),
                Some("\"nginx; rm -rf /\""),
            ),
            (
                json!({"type": "kill_process", "pid": 9, "grace_secs": 100000}),
                Some("grace_secs 100000"),
            ),
            (
                json!({"type": "journal_vacuum", "max_size_mb": 0}),
                Some("max_size_mb"),
            ),
            (json!({"type": "rm_rf", "path": "/"}), Some("rm_rf")),
        ];
        for (action, want) in cases {
            match (check_action(&action), want) {
                (Ok(_), None) => {}
                (Err(e), Some(w)) => {
                    assert!(e.starts_with("action: ") && e.contains(w), "{action}: {e}")
                }
                (got, _) => panic!("{action}: got {got:?}, wanted an error with {want:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_kill_without_target_is_refused_before_it_is_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(&sqlite_url(dir.path()))
            .await
            .expect("sqlite store");
        let telemetry = Arc::new(Telemetry::default());
        let streams = Arc::new(Streams::new(telemetry.clone()));
        let audit = Arc::new(Audit::new(store.clone()));
        let remediation = Remediation::new(
            store,
            telemetry,
            streams,
            audit,
            std::time::Duration::from_secs(900),
        );
        let err = remediation
            .trigger(
                "admin",
                "agent-1",
                json!({"type": "kill_process"}),
                "execute",
            )
            .await
            .expect_err("no target");
        match err {
            TriggerError::Invalid(m) => assert!(
                m.starts_with("action: kill_process needs one target"),
                "{m}"
            ),
            other => panic!("expected invalid, got {other:?}"),
        }
        // A valid action passes the checks and only then meets the host
        // lookup: the refusal above came before anything was stored.
        let err = remediation
            .trigger(
                "admin",
                "agent-1",
                json!({"type": "kill_process", "pid": 4242}),
                "execute",
            )
            .await
            .expect_err("unknown host");
        assert!(matches!(err, TriggerError::NoHost(_)), "{err:?}");
        let stored = remediation
            .actions(&ActionQuery {
                limit: 10,
                ..ActionQuery::default()
            })
            .await
            .expect("actions");
        assert!(stored.is_empty(), "{stored:?}");
    }
}
