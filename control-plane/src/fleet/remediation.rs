//! Manual remediation requests: validated against the agent's typed action
//! allowlist, recorded, delivered down the agent's stream with a lease, and
//! closed by the agent's report. The agent's local safety rules decide.

use rand::Rng;
use serde::Serialize;

use super::{now_ms, valid_agent_id, Fleet, Ingested};
use crate::store::StoreError;

/// How long a lease handed out with a request stays valid.
const LEASE_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionRecord {
    pub id: String,
    pub host_id: String,
    pub rule: String,
    pub action: serde_json::Value,
    /// "dry_run" or "execute".
    pub mode: String,
    /// pending (not yet delivered), sent, executed, dry_run, refused, failed.
    pub state: String,
    pub reason: String,
    pub requested_by: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// The agent's structured report, once it arrived.
    pub report: Option<serde_json::Value>,
}

/// A request on its way to an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingCommand {
    pub id: String,
    pub action_json: String,
    pub mode: String,
    pub lease_token: String,
    pub lease_expires_ms: i64,
    pub requested_by: String,
    pub rule: String,
}

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

#[derive(Debug, Clone, Default)]
pub struct ActionQuery {
    pub host: Option<String>,
    pub state: Option<String>,
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

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("{0}")]
    Invalid(String),
    #[error("no host {0:?}")]
    NoHost(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::thread_rng().gen::<u64>())
}

fn lease() -> (String, i64) {
    (
        hex::encode(rand::thread_rng().gen::<[u8; 16]>()),
        now_ms() + LEASE_MS,
    )
}

impl Fleet {
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        host: &str,
        result: &str,
        detail: serde_json::Value,
    ) {
        let entry = AuditEntry {
            id: new_id("audit"),
            at_ms: now_ms(),
            actor: actor.to_string(),
            action: action.to_string(),
            host_id: host.to_string(),
            result: result.to_string(),
            detail,
        };
        if let Err(e) = self.store.audit(&entry).await {
            tracing::error!(error = %e, actor, action, host, "cannot write the audit log");
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
        if !valid_agent_id(host) {
            return Err(TriggerError::Invalid(format!(
                "host: invalid host id {host:?}"
            )));
        }
        if mode != "dry_run" && mode != "execute" {
            return Err(TriggerError::Invalid(format!(
                "mode: {mode:?} is not dry_run or execute"
            )));
        }
        // The same typed allowlist the agent enforces: unknown action types
        // and fields are refused here already, with the parser's message.
        serde_json::from_value::<sco_agent::remediate::Action>(action.clone())
            .map_err(|e| TriggerError::Invalid(format!("action: {e}")))?;
        if self.store.host(host, i64::MAX, now_ms()).await?.is_none() {
            return Err(TriggerError::NoHost(host.to_string()));
        }
        let record = ActionRecord {
            id: new_id("act"),
            host_id: host.to_string(),
            rule: "manual".into(),
            action,
            mode: mode.to_string(),
            state: "pending".into(),
            reason: String::new(),
            requested_by: actor.to_string(),
            created_at_ms: now_ms(),
            updated_at_ms: now_ms(),
            report: None,
        };
        self.store.insert_action(&record).await?;
        self.audit(
            actor,
            "remediation.trigger",
            host,
            "requested",
            serde_json::json!({ "request": record.id, "action": record.action, "mode": record.mode }),
        )
        .await;
        let (token, expires) = lease();
        if self.send_command(host, record.command(token, expires)) {
            self.store.mark_action_sent(&record.id, now_ms()).await?;
        }
        Ok(record)
    }

    /// Delivers the requests that waited for this agent to connect.
    pub async fn deliver_pending(&self, host: &str) -> Result<(), StoreError> {
        for record in self.store.pending_actions(host).await? {
            let (token, expires) = lease();
            if !self.send_command(host, record.command(token, expires)) {
                break;
            }
            self.store.mark_action_sent(&record.id, now_ms()).await?;
        }
        Ok(())
    }

    /// Stores an agent's report on a request.
    pub async fn action_report(
        &self,
        agent_id: &str,
        mut r: ReportIn,
    ) -> Result<Ingested, StoreError> {
        if !matches!(
            r.decision.as_str(),
            "executed" | "dry_run" | "refused" | "failed"
        ) {
            r.decision = "failed".into();
        }
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
            self.audit(
                &format!("agent:{agent_id}"),
                "remediation.report",
                agent_id,
                state,
                serde_json::json!({ "request": command_id, "matched": matched, "reason": reason, "report": detail }),
            )
            .await;
        }
        Ok(ingested)
    }
}
