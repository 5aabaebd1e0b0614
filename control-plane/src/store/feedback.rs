//! Verdicts on anomaly events (`anomaly_feedback`).

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{audited, Store, StoreError};
use crate::domain::feedback::{Feedback, FeedbackQuery};

const FEEDBACK_SELECT: &str = "SELECT id, anomaly_id, host_id, verdict, note, scope, policy,
    policy_revision, target, detection, created_by, created_at_ms, undone_by, undone_at_ms,
    withdrawn_revision FROM anomaly_feedback";

fn json_or_null(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

fn feedback_from_row(r: &AnyRow) -> Result<Feedback, StoreError> {
    let scope: String = r.try_get("scope")?;
    let target: String = r.try_get("target")?;
    let detection: String = r.try_get("detection")?;
    let undone_at_ms: i64 = r.try_get("undone_at_ms")?;
    Ok(Feedback {
        id: r.try_get("id")?,
        anomaly_id: r.try_get("anomaly_id")?,
        host_id: r.try_get("host_id")?,
        verdict: r.try_get("verdict")?,
        note: r.try_get("note")?,
        scope: json_or_null(&scope),
        policy: r.try_get("policy")?,
        policy_revision: r.try_get("policy_revision")?,
        target: json_or_null(&target),
        detection: json_or_null(&detection),
        created_by: r.try_get("created_by")?,
        created_at_ms: r.try_get("created_at_ms")?,
        undone: undone_at_ms > 0,
        undone_by: r.try_get("undone_by")?,
        undone_at_ms: (undone_at_ms > 0).then_some(undone_at_ms),
        withdrawn_revision: r.try_get("withdrawn_revision")?,
    })
}

fn text_of(v: &serde_json::Value) -> String {
    if v.is_null() {
        String::new()
    } else {
        v.to_string()
    }
}

impl Store {
    pub async fn insert_feedback(&self, f: &Feedback) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO anomaly_feedback (id, anomaly_id, host_id, verdict, note, scope, policy,
                policy_revision, target, detection, created_by, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&f.id)
        .bind(&f.anomaly_id)
        .bind(&f.host_id)
        .bind(&f.verdict)
        .bind(&f.note)
        .bind(f.scope.to_string())
        .bind(&f.policy)
        .bind(f.policy_revision)
        .bind(text_of(&f.target))
        .bind(text_of(&f.detection))
        .bind(&f.created_by)
        .bind(f.created_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn feedback(&self, id: &str) -> Result<Option<Feedback>, StoreError> {
        let row = sqlx::query(audited(format!("{FEEDBACK_SELECT} WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(feedback_from_row).transpose()
    }

    /// Verdicts, newest first.
    pub async fn feedback_list(&self, q: &FeedbackQuery) -> Result<Vec<Feedback>, StoreError> {
        let mut clauses = vec!["1 = 1".to_string()];
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if q.anomaly.is_some() {
            clauses.push(format!("anomaly_id = {}", next()));
        }
        if q.host.is_some() {
            clauses.push(format!("host_id = {}", next()));
        }
        if q.from_ms.is_some() {
            clauses.push(format!("created_at_ms >= {}", next()));
        }
        if q.to_ms.is_some() {
            clauses.push(format!("created_at_ms < {}", next()));
        }
        if q.active_only {
            clauses.push("undone_at_ms = 0".to_string());
        }
        let (limit, offset) = (next(), next());
        let sql = format!(
            "{FEEDBACK_SELECT} WHERE {} ORDER BY created_at_ms DESC, id LIMIT {limit} OFFSET {offset}",
            clauses.join(" AND ")
        );
        let mut query = sqlx::query(audited(sql));
        for v in [&q.anomaly, &q.host].into_iter().flatten() {
            query = query.bind(v.clone());
        }
        for v in [q.from_ms, q.to_ms].into_iter().flatten() {
            query = query.bind(v);
        }
        let rows = query
            .bind(q.limit)
            .bind(q.offset)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(feedback_from_row).collect()
    }

    /// The verdicts on any of `anomalies`, oldest first.
    pub async fn feedback_for(&self, anomalies: &[String]) -> Result<Vec<Feedback>, StoreError> {
        if anomalies.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (1..=anomalies.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "{FEEDBACK_SELECT} WHERE anomaly_id IN ({}) ORDER BY created_at_ms, id",
            marks.join(", ")
        );
        let mut query = sqlx::query(audited(sql));
        for a in anomalies {
            query = query.bind(a.clone());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(feedback_from_row).collect()
    }

    /// Marks a verdict undone; false when it was already.
    pub async fn mark_feedback_undone(
        &self,
        id: &str,
        by: &str,
        at_ms: i64,
        withdrawn_revision: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE anomaly_feedback SET undone_by = $1, undone_at_ms = $2, withdrawn_revision = $3
             WHERE id = $4 AND undone_at_ms = 0",
        )
        .bind(by)
        .bind(at_ms.max(1))
        .bind(withdrawn_revision)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
