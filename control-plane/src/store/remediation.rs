//! Remediation requests, agent reports and the audit log.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{audited, claim_message, Store, StoreError};
use crate::domain::remediation::{
    ActionQuery, ActionRecord, ActionState, Approval, AuditEntry, AuditQuery, ReportIn,
};
use crate::domain::Ingested;

const ACTION_SELECT: &str =
    "SELECT id, host_id, rule, policy, action, mode, approval, state, reason,
    requested_by, decided_by, max_concurrent, expires_at_ms, evidence, created_at_ms, updated_at_ms,
    report FROM remediation_actions";

fn action_from_row(r: &AnyRow) -> Result<ActionRecord, StoreError> {
    let action: String = r.try_get("action")?;
    let report: String = r.try_get("report")?;
    let evidence: String = r.try_get("evidence")?;
    let approval: String = r.try_get("approval")?;
    let approval = Approval::parse(&approval)
        .ok_or_else(|| StoreError::Unreadable(format!("request approval {approval:?}")))?;
    let state: String = r.try_get("state")?;
    let state = ActionState::parse(&state)
        .ok_or_else(|| StoreError::Unreadable(format!("request state {state:?}")))?;
    Ok(ActionRecord {
        id: r.try_get("id")?,
        host_id: r.try_get("host_id")?,
        rule: r.try_get("rule")?,
        policy: r.try_get("policy")?,
        action: serde_json::from_str(&action).unwrap_or(serde_json::Value::Null),
        mode: r.try_get("mode")?,
        approval,
        state,
        reason: r.try_get("reason")?,
        requested_by: r.try_get("requested_by")?,
        decided_by: r.try_get("decided_by")?,
        max_concurrent: r.try_get("max_concurrent")?,
        expires_at_ms: r.try_get("expires_at_ms")?,
        evidence: serde_json::from_str(&evidence).ok(),
        created_at_ms: r.try_get("created_at_ms")?,
        updated_at_ms: r.try_get("updated_at_ms")?,
        report: serde_json::from_str(&report).ok(),
    })
}

const ACTION_INSERT: &str =
    "INSERT INTO remediation_actions (id, host_id, rule, policy, action, mode,
        approval, state, reason, requested_by, decided_by, max_concurrent, expires_at_ms, evidence,
        created_at_ms, updated_at_ms, report)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, $16)";

fn bind_action<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    a: &ActionRecord,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    q.bind(a.id.clone())
        .bind(a.host_id.clone())
        .bind(a.rule.clone())
        .bind(a.policy.clone())
        .bind(a.action.to_string())
        .bind(a.mode.clone())
        .bind(a.approval.as_str())
        .bind(a.state.as_str())
        .bind(a.reason.clone())
        .bind(a.requested_by.clone())
        .bind(a.decided_by.clone())
        .bind(a.max_concurrent)
        .bind(a.expires_at_ms)
        .bind(a.evidence.as_ref().map_or(String::new(), |e| e.to_string()))
        .bind(a.created_at_ms)
        .bind(a.report.as_ref().map_or(String::new(), |e| e.to_string()))
}

impl Store {
    pub async fn insert_action(&self, a: &ActionRecord) -> Result<(), StoreError> {
        bind_action(sqlx::query(ACTION_INSERT), a)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores a proposal once per (host, seq); a proposal id seen before is
    /// left as it is.
    pub async fn insert_proposal(
        &self,
        a: &ActionRecord,
        seq: i64,
        produced_at_ms: i64,
    ) -> Result<Ingested, StoreError> {
        let mut tx = self.begin_write().await?;
        if !claim_message(
            &mut tx,
            &a.host_id,
            seq,
            "proposal",
            produced_at_ms,
            a.created_at_ms,
        )
        .await?
        {
            tx.rollback().await?;
            return Ok(Ingested::Duplicate);
        }
        bind_action(
            sqlx::query(audited(format!(
                "{ACTION_INSERT} ON CONFLICT (id) DO NOTHING"
            ))),
            a,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ingested::Stored)
    }

    /// Requests of `host` that may be sent once they hold a lease: approved
    /// ones and auto proposals, oldest first.
    pub async fn dispatchable_actions(&self, host: &str) -> Result<Vec<ActionRecord>, StoreError> {
        let rows = sqlx::query(audited(format!(
            "{ACTION_SELECT} WHERE host_id = $1
               AND (state = 'approved' OR (state = 'proposed' AND approval = 'auto'))
             ORDER BY created_at_ms, id"
        )))
        .bind(host)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(action_from_row).collect()
    }

    /// [`Store::dispatchable_actions`] of the whole fleet, oldest first, in
    /// one query (the periodic dispatch costs the same for 10 hosts or 10 000).
    pub async fn all_dispatchable_actions(&self) -> Result<Vec<ActionRecord>, StoreError> {
        let rows = sqlx::query(audited(format!(
            "{ACTION_SELECT} WHERE state = 'approved' OR (state = 'proposed' AND approval = 'auto')
             ORDER BY created_at_ms, id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(action_from_row).collect()
    }

    /// Proposed or approved requests whose time is up.
    pub async fn expiring_actions(&self, now_ms: i64) -> Result<Vec<ActionRecord>, StoreError> {
        let rows = sqlx::query(audited(format!(
            "{ACTION_SELECT} WHERE state IN ('proposed', 'approved')
               AND expires_at_ms > 0 AND expires_at_ms <= $1"
        )))
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(action_from_row).collect()
    }

    /// Requests sent before `before_ms` that never got a report.
    pub async fn stale_running(&self, before_ms: i64) -> Result<Vec<ActionRecord>, StoreError> {
        let rows = sqlx::query(audited(format!(
            "{ACTION_SELECT} WHERE state = 'running' AND updated_at_ms < $1"
        )))
        .bind(before_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(action_from_row).collect()
    }

    /// Moves a request from `from` to `to`; false when it was not in `from`.
    pub async fn transition_action(
        &self,
        id: &str,
        from: ActionState,
        to: ActionState,
        reason: &str,
        decided_by: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE remediation_actions SET state = $3, reason = $4,
                decided_by = CASE WHEN $5 = '' THEN decided_by ELSE $5 END, updated_at_ms = $6
             WHERE id = $1 AND state = $2",
        )
        .bind(id)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(reason)
        .bind(decided_by.unwrap_or(""))
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    pub async fn set_action_reason(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE remediation_actions SET reason = $2 WHERE id = $1")
            .bind(id)
            .bind(reason)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Takes one of the `max` slots of `rule` for `action_id`, if one is free
    /// (never taken, or its lease expired). Each slot is one row, so two
    /// replicas can never take the same slot. A request that already holds a
    /// live slot of the rule keeps it (with the new expiry) and takes no other.
    pub async fn claim_lease(
        &self,
        rule: &str,
        max: i64,
        action_id: &str,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let held = sqlx::query(
            "UPDATE remediation_leases SET expires_at_ms = $1
             WHERE rule = $2 AND action_id = $3 AND expires_at_ms > $4",
        )
        .bind(expires_at_ms)
        .bind(rule)
        .bind(action_id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if held > 0 {
            return Ok(true);
        }
        for slot in 0..max.clamp(0, 1000) {
            let n = sqlx::query(
                "INSERT INTO remediation_leases (rule, slot, action_id, expires_at_ms)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (rule, slot) DO UPDATE SET action_id = excluded.action_id,
                    expires_at_ms = excluded.expires_at_ms
                 WHERE remediation_leases.expires_at_ms <= $5",
            )
            .bind(rule)
            .bind(slot)
            .bind(action_id)
            .bind(expires_at_ms)
            .bind(now_ms)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if n > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub async fn release_lease(&self, action_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM remediation_leases WHERE action_id = $1")
            .bind(action_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Gives back the lease of a request that another dispatch of it moved on from, unless
    /// that dispatch made it run: a lease is keyed by the request, so the running one holds
    /// the same lease this dispatch found.
    pub async fn release_lease_unless_running(&self, action_id: &str) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM remediation_leases WHERE action_id = $1
             AND NOT EXISTS (SELECT 1 FROM remediation_actions WHERE id = $1 AND state = $2)",
        )
        .bind(action_id)
        .bind(ActionState::Running.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores an agent's report once per (host, seq) and frees the
    /// request's lease. Only the host the request was for can report on it.
    pub async fn record_action_report(
        &self,
        host: &str,
        r: &ReportIn,
        now_ms: i64,
    ) -> Result<(Ingested, bool), StoreError> {
        let mut tx = self.begin_write().await?;
        if !claim_message(
            &mut tx,
            host,
            r.seq,
            "action_report",
            r.produced_at_ms,
            now_ms,
        )
        .await?
        {
            tx.rollback().await?;
            return Ok((Ingested::Duplicate, false));
        }
        let updated = sqlx::query(
            "UPDATE remediation_actions SET state = $3, reason = $4, report = $5, updated_at_ms = $6
             WHERE id = $1 AND host_id = $2",
        )
        .bind(&r.command_id)
        .bind(host)
        .bind(&r.decision)
        .bind(&r.reason)
        .bind(&r.report_json)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated > 0 {
            sqlx::query("DELETE FROM remediation_leases WHERE action_id = $1")
                .bind(&r.command_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok((Ingested::Stored, updated > 0))
    }

    pub async fn actions(&self, q: &ActionQuery) -> Result<Vec<ActionRecord>, StoreError> {
        let mut sql = format!("{ACTION_SELECT} WHERE 1 = 1");
        let mut binds: Vec<&str> = Vec::new();
        let state = q.state.map(|s| s.as_str().to_string());
        for (col, v) in [("host_id", &q.host), ("state", &state), ("rule", &q.rule)] {
            if let Some(v) = v {
                binds.push(v);
                sql.push_str(&format!(" AND {col} = ${}", binds.len()));
            }
        }
        sql.push_str(&format!(
            " ORDER BY created_at_ms DESC, id LIMIT ${}",
            binds.len() + 1
        ));
        let mut query = sqlx::query(audited(sql));
        for b in binds {
            query = query.bind(b);
        }
        let rows = query.bind(q.limit).fetch_all(&self.pool).await?;
        rows.iter().map(action_from_row).collect()
    }

    pub async fn action(&self, id: &str) -> Result<Option<ActionRecord>, StoreError> {
        let row = sqlx::query(audited(format!("{ACTION_SELECT} WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(action_from_row).transpose()
    }

    pub async fn audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (id, at_ms, actor, action, host_id, result, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&e.id)
        .bind(e.at_ms)
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.host_id)
        .bind(&e.result)
        .bind(e.detail.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn audit_log(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let mut sql = String::from(
            "SELECT id, at_ms, actor, action, host_id, result, detail FROM audit_log WHERE 1 = 1",
        );
        let mut binds: Vec<&str> = Vec::new();
        for (col, v) in [
            ("host_id", &q.host),
            ("actor", &q.actor),
            ("action", &q.action),
        ] {
            if let Some(v) = v {
                binds.push(v);
                sql.push_str(&format!(" AND {col} = ${}", binds.len()));
            }
        }
        sql.push_str(&format!(
            " ORDER BY at_ms DESC, id LIMIT ${}",
            binds.len() + 1
        ));
        let mut query = sqlx::query(audited(sql));
        for b in binds {
            query = query.bind(b);
        }
        let rows = query.bind(q.limit).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let detail: String = r.try_get("detail")?;
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at_ms: r.try_get("at_ms")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    host_id: r.try_get("host_id")?,
                    result: r.try_get("result")?,
                    detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect()
    }
}
