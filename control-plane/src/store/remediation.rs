//! Remediation requests, agent reports and the audit log.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{claim_message, Store, StoreError};
use crate::fleet::{
    ActionQuery, ActionRecord, AuditEntry, AuditQuery, Ingested, PendingCommand, ReportIn,
};

const ACTION_SELECT: &str = "SELECT id, host_id, rule, action, mode, state, reason, requested_by,
    created_at_ms, updated_at_ms, report FROM remediation_actions";

fn action_from_row(r: &AnyRow) -> Result<ActionRecord, StoreError> {
    let action: String = r.try_get("action")?;
    let report: String = r.try_get("report")?;
    Ok(ActionRecord {
        id: r.try_get("id")?,
        host_id: r.try_get("host_id")?,
        rule: r.try_get("rule")?,
        action: serde_json::from_str(&action).unwrap_or(serde_json::Value::Null),
        mode: r.try_get("mode")?,
        state: r.try_get("state")?,
        reason: r.try_get("reason")?,
        requested_by: r.try_get("requested_by")?,
        created_at_ms: r.try_get("created_at_ms")?,
        updated_at_ms: r.try_get("updated_at_ms")?,
        report: serde_json::from_str(&report).ok(),
    })
}

impl Store {
    pub async fn insert_action(&self, a: &ActionRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO remediation_actions (id, host_id, rule, action, mode, state, reason, requested_by,
                                              created_at_ms, updated_at_ms, report)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, '')",
        )
        .bind(&a.id)
        .bind(&a.host_id)
        .bind(&a.rule)
        .bind(a.action.to_string())
        .bind(&a.mode)
        .bind(&a.state)
        .bind(&a.reason)
        .bind(&a.requested_by)
        .bind(a.created_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Requests not yet handed to the host's agent, oldest first.
    pub async fn pending_actions(&self, host: &str) -> Result<Vec<ActionRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "{ACTION_SELECT} WHERE host_id = $1 AND state = 'pending' ORDER BY created_at_ms, id"
        ))
        .bind(host)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(action_from_row).collect()
    }

    pub async fn mark_action_sent(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE remediation_actions SET state = 'sent', updated_at_ms = $2 WHERE id = $1 AND state = 'pending'")
            .bind(id)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores an agent's report once per (host, seq). Only the host the
    /// request was for can report on it.
    pub async fn record_action_report(
        &self,
        host: &str,
        r: &ReportIn,
        now_ms: i64,
    ) -> Result<(Ingested, bool), StoreError> {
        let mut tx = self.pool.begin().await?;
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
        tx.commit().await?;
        Ok((Ingested::Stored, updated > 0))
    }

    pub async fn actions(&self, q: &ActionQuery) -> Result<Vec<ActionRecord>, StoreError> {
        let mut sql = format!("{ACTION_SELECT} WHERE 1 = 1");
        let mut binds: Vec<&str> = Vec::new();
        for (col, v) in [("host_id", &q.host), ("state", &q.state), ("rule", &q.rule)] {
            if let Some(v) = v {
                binds.push(v);
                sql.push_str(&format!(" AND {col} = ${}", binds.len()));
            }
        }
        sql.push_str(&format!(
            " ORDER BY created_at_ms DESC, id LIMIT ${}",
            binds.len() + 1
        ));
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = query.bind(b);
        }
        let rows = query.bind(q.limit).fetch_all(&self.pool).await?;
        rows.iter().map(action_from_row).collect()
    }

    pub async fn action(&self, id: &str) -> Result<Option<ActionRecord>, StoreError> {
        let row = sqlx::query(&format!("{ACTION_SELECT} WHERE id = $1"))
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
        let mut query = sqlx::query(&sql);
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

impl ActionRecord {
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
