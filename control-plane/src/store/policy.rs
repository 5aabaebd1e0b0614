//! Policy revisions, rollouts and per-host policy status.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::rows::Val;
use super::{audited, Store, StoreError};
use crate::domain::policy::{
    PolicyHostStatus, PolicyRevision, PolicyStatusIn, Rollout, RolloutState,
};
use crate::domain::remediation::AuditEntry;
use crate::domain::Ingested;

const REVISION_SELECT: &str =
    "SELECT name, revision, document, signature, source, created_by, created_at_ms FROM policies";

fn revision_from_row(r: &AnyRow) -> Result<PolicyRevision, StoreError> {
    Ok(PolicyRevision {
        name: r.try_get("name")?,
        revision: r.try_get("revision")?,
        document: r.try_get("document")?,
        signature: r.try_get("signature")?,
        source: r.try_get("source")?,
        created_by: r.try_get("created_by")?,
        created_at_ms: r.try_get("created_at_ms")?,
    })
}

const ROLLOUT_COLUMNS: &str = "id, name, revision, previous_revision, canary_percent,
    canary_hosts, canary_secs, max_new_anomalies, baseline_anomalies, state, reason, started_by,
    started_at_ms, updated_at_ms, target";

/// Where rollouts of one kind live: policy rollouts and model rollouts have the same columns
/// and the same rules (`domain::policy::decide`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RolloutTable {
    Policies,
    Models,
}

impl RolloutTable {
    fn name(self) -> &'static str {
        match self {
            RolloutTable::Policies => "policy_rollouts",
            RolloutTable::Models => "model_rollouts",
        }
    }
}

pub(crate) fn rollout_from_row(r: &AnyRow) -> Result<Rollout, StoreError> {
    let hosts: String = r.try_get("canary_hosts")?;
    let state: String = r.try_get("state")?;
    let state = RolloutState::parse(&state)
        .ok_or_else(|| StoreError::Unreadable(format!("rollout state {state:?}")))?;
    let target: String = r.try_get("target")?;
    let target = serde_json::from_str(&target)
        .map_err(|e| StoreError::Unreadable(format!("rollout target {target:?}: {e}")))?;
    Ok(Rollout {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        revision: r.try_get("revision")?,
        previous_revision: r.try_get("previous_revision")?,
        canary_percent: r.try_get("canary_percent")?,
        canary_hosts: serde_json::from_str(&hosts).unwrap_or_default(),
        canary_secs: r.try_get("canary_secs")?,
        max_new_anomalies: r.try_get("max_new_anomalies")?,
        baseline_anomalies: r.try_get("baseline_anomalies")?,
        target,
        state,
        reason: r.try_get("reason")?,
        started_by: r.try_get("started_by")?,
        started_at_ms: r.try_get("started_at_ms")?,
        updated_at_ms: r.try_get("updated_at_ms")?,
    })
}

impl Store {
    pub async fn latest_policy_revision(&self, name: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT MAX(revision) AS r FROM policies WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("r")?.unwrap_or(0))
    }

    /// Inserts a revision; [`StoreError::Conflict`] when that revision
    /// number was taken meanwhile.
    pub async fn insert_policy_revision(&self, p: &PolicyRevision) -> Result<(), StoreError> {
        let done = sqlx::query(
            "INSERT INTO policies (name, revision, document, signature, source, created_by, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&p.name)
        .bind(p.revision)
        .bind(&p.document)
        .bind(&p.signature)
        .bind(&p.source)
        .bind(&p.created_by)
        .bind(p.created_at_ms)
        .execute(&self.pool)
        .await;
        match done {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict(
                format!("policy {} revision {}", p.name, p.revision),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Every revision of `name`, oldest first.
    pub async fn policy_revisions(&self, name: &str) -> Result<Vec<PolicyRevision>, StoreError> {
        let rows = sqlx::query(audited(format!(
            "{REVISION_SELECT} WHERE name = $1 ORDER BY revision"
        )))
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(revision_from_row).collect()
    }

    pub async fn policy_revision(
        &self,
        name: &str,
        revision: i64,
    ) -> Result<Option<PolicyRevision>, StoreError> {
        let row = sqlx::query(audited(format!(
            "{REVISION_SELECT} WHERE name = $1 AND revision = $2"
        )))
        .bind(name)
        .bind(revision)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(revision_from_row).transpose()
    }

    /// The newest revision of every policy, by name.
    pub async fn latest_policies(&self) -> Result<Vec<PolicyRevision>, StoreError> {
        let rows = sqlx::query(audited(format!(
            "{REVISION_SELECT} p WHERE revision = (SELECT MAX(revision) FROM policies q WHERE q.name = p.name)
             ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(revision_from_row).collect()
    }

    pub async fn insert_rollout(&self, r: &Rollout) -> Result<(), StoreError> {
        self.insert_rollout_in(RolloutTable::Policies, r).await
    }

    pub(crate) async fn insert_rollout_in(
        &self,
        table: RolloutTable,
        r: &Rollout,
    ) -> Result<(), StoreError> {
        sqlx::query(audited(format!(
            "INSERT INTO {} ({ROLLOUT_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14)",
            table.name()
        )))
        .bind(&r.id)
        .bind(&r.name)
        .bind(r.revision)
        .bind(r.previous_revision)
        .bind(r.canary_percent)
        .bind(serde_json::to_string(&r.canary_hosts).unwrap_or_else(|_| "[]".into()))
        .bind(r.canary_secs)
        .bind(r.max_new_anomalies)
        .bind(r.baseline_anomalies)
        .bind(r.state.as_str())
        .bind(&r.reason)
        .bind(&r.started_by)
        .bind(r.started_at_ms)
        .bind(serde_json::to_string(&r.target).unwrap_or_else(|_| "{}".into()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Moves a rollout from `from` to `to`; false when it was not in `from`
    /// (another replica got there first).
    pub async fn transition_rollout(
        &self,
        id: &str,
        from: RolloutState,
        to: RolloutState,
        reason: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.transition_rollout_in(RolloutTable::Policies, id, from, to, reason, now_ms)
            .await
    }

    pub(crate) async fn transition_rollout_in(
        &self,
        table: RolloutTable,
        id: &str,
        from: RolloutState,
        to: RolloutState,
        reason: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(audited(format!(
            "UPDATE {} SET state = $3, reason = $4, updated_at_ms = $5
             WHERE id = $1 AND state = $2",
            table.name()
        )))
        .bind(id)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(reason)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// Rollouts of `name`, newest first.
    pub async fn rollouts(&self, name: &str) -> Result<Vec<Rollout>, StoreError> {
        self.rollouts_in(RolloutTable::Policies, name).await
    }

    pub(crate) async fn rollouts_in(
        &self,
        table: RolloutTable,
        name: &str,
    ) -> Result<Vec<Rollout>, StoreError> {
        let rows = sqlx::query(audited(format!(
            "SELECT {ROLLOUT_COLUMNS} FROM {} WHERE name = $1
             ORDER BY started_at_ms DESC, id DESC",
            table.name()
        )))
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rollout_from_row).collect()
    }

    /// The newest rollout of every policy.
    pub async fn current_rollouts(&self) -> Result<Vec<Rollout>, StoreError> {
        let rows = sqlx::query(audited(format!(
            "SELECT {ROLLOUT_COLUMNS} FROM policy_rollouts r
             WHERE started_at_ms = (SELECT MAX(started_at_ms) FROM policy_rollouts s
             WHERE s.name = r.name) ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rollout_from_row).collect()
    }

    /// Stores agents' policy statuses (of any hosts) in one transaction, each exactly once per
    /// (host, seq), with the audit entry `audits[i]` of each status `items[i]` that is new. A
    /// host that reports on one policy twice in the group ends as the later report (by
    /// sequence number) leaves it, as one write after the other would. The results are in the
    /// order of `items`; on an error nothing is stored.
    pub async fn record_policy_statuses(
        &self,
        items: &[(&str, &PolicyStatusIn)],
        audits: &[AuditEntry],
        now_ms: i64,
    ) -> Result<Vec<Ingested>, StoreError> {
        if audits.len() != items.len() {
            return Err(StoreError::Db(format!(
                "{} audit entries for {} policy statuses",
                audits.len(),
                items.len()
            )));
        }
        let mut tx = self.begin_write().await?;
        let fresh = self
            .claim_group(&mut tx, items, "policy_status", now_ms)
            .await?;
        if !fresh.contains(&true) {
            tx.rollback().await?;
            return Ok(vec![Ingested::Duplicate; items.len()]);
        }
        // per (policy, host): the newest report, and the newest time it was applied at
        let mut newest: std::collections::BTreeMap<(&str, &str), (&PolicyStatusIn, i64)> =
            std::collections::BTreeMap::new();
        for (i, &(host, s)) in items.iter().enumerate() {
            if !fresh[i] {
                continue;
            }
            let applied_at = if s.applied { s.produced_at_ms } else { 0 };
            match newest.get_mut(&(s.name.as_str(), host)) {
                Some((kept, at)) => {
                    if s.seq > kept.seq {
                        *kept = s;
                        if applied_at > 0 {
                            *at = applied_at;
                        }
                    } else if *at == 0 {
                        *at = applied_at;
                    }
                }
                None => {
                    newest.insert((s.name.as_str(), host), (s, applied_at));
                }
            }
        }
        let rows: Vec<Vec<Val>> = newest
            .iter()
            .map(|(&(name, host), &(s, applied_at))| {
                vec![
                    Val::Text(name),
                    Val::Text(host),
                    Val::Int(s.revision),
                    Val::Int(s.active_revision),
                    Val::Int(applied_at),
                    Val::Text(&s.error),
                    Val::Int(now_ms),
                ]
            })
            .collect();
        self.rows_statement(
            &mut tx,
            "INSERT INTO policy_status (name, host_id, revision, applied_revision, applied_at_ms, error, updated_at_ms)",
            7,
            &rows,
            "ON CONFLICT (name, host_id) DO UPDATE SET revision = excluded.revision,
                applied_revision = excluded.applied_revision,
                applied_at_ms = CASE WHEN excluded.applied_at_ms > 0 THEN excluded.applied_at_ms
                                     ELSE policy_status.applied_at_ms END,
                error = excluded.error, updated_at_ms = excluded.updated_at_ms",
        )
        .await?;
        let details: Vec<(usize, String)> = (0..items.len())
            .filter(|&i| fresh[i])
            .map(|i| (i, audits[i].detail.to_string()))
            .collect();
        let rows: Vec<Vec<Val>> = details
            .iter()
            .map(|(i, detail)| {
                let e = &audits[*i];
                vec![
                    Val::Text(&e.id),
                    Val::Int(e.at_ms),
                    Val::Text(&e.actor),
                    Val::Text(&e.action),
                    Val::Text(&e.host_id),
                    Val::Text(&e.result),
                    Val::Text(detail),
                ]
            })
            .collect();
        self.rows_statement(
            &mut tx,
            "INSERT INTO audit_log (id, at_ms, actor, action, host_id, result, detail)",
            7,
            &rows,
            "",
        )
        .await?;
        tx.commit().await?;
        Ok(fresh.into_iter().map(Ingested::from).collect())
    }

    /// `(host, policy, revision in force)` of the hosts among `hosts`, where
    /// some revision is in force (a query per 500 hosts).
    pub async fn applied_policies(
        &self,
        hosts: &[String],
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        let mut out = Vec::new();
        for chunk in hosts.chunks(500) {
            let mut sql = String::from(
                "SELECT host_id, name, applied_revision FROM policy_status
                 WHERE applied_revision > 0 AND host_id IN ",
            );
            super::push_placeholders(&mut sql, 1, chunk.len());
            let mut q = sqlx::query(audited(sql));
            for h in chunk {
                q = q.bind(h);
            }
            for r in q.fetch_all(&self.pool).await? {
                out.push((
                    r.try_get("host_id")?,
                    r.try_get("name")?,
                    r.try_get("applied_revision")?,
                ));
            }
        }
        Ok(out)
    }

    pub async fn policy_statuses(&self, name: &str) -> Result<Vec<PolicyHostStatus>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, host_id, revision, applied_revision, applied_at_ms, error, updated_at_ms
             FROM policy_status WHERE name = $1 ORDER BY host_id",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PolicyHostStatus {
                    name: r.try_get("name")?,
                    host_id: r.try_get("host_id")?,
                    revision: r.try_get("revision")?,
                    applied_revision: r.try_get("applied_revision")?,
                    applied_at_ms: r.try_get("applied_at_ms")?,
                    error: r.try_get("error")?,
                    updated_at_ms: r.try_get("updated_at_ms")?,
                })
            })
            .collect()
    }

    /// Anomaly events of `hosts` that opened in `[from_ms, to_ms)`.
    pub async fn count_anomalies_opened(
        &self,
        hosts: &[String],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<i64, StoreError> {
        let mut total = 0;
        for h in hosts {
            let row = sqlx::query(
                "SELECT COUNT(*) AS n FROM anomalies WHERE host_id = $1 AND started_ms >= $2 AND started_ms < $3",
            )
            .bind(h)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_one(&self.pool)
            .await?;
            total += row.try_get::<i64, _>("n")?;
        }
        Ok(total)
    }
}
