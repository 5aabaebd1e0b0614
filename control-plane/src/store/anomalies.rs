//! Anomaly events: one change per durable message, orphans closed when an agent restarts, and
//! the reads of `GET /anomaly`.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::hosts::parse_processes;
use super::{audited, Store, StoreError};
use crate::domain::{
    Anomaly, AnomalyChange, AnomalyQuery, ChangeKind, Ingested, OpenAnomalies, Severity,
};

impl Store {
    /// Stores one anomaly change in one transaction, once per (host, seq).
    pub async fn ingest_anomaly(
        &self,
        host: &str,
        c: &AnomalyChange,
        now_ms: i64,
    ) -> Result<Ingested, StoreError> {
        let stored = self.ingest_anomalies(&[(host, c)], now_ms).await?;
        Ok(stored.first().copied().unwrap_or(Ingested::Duplicate))
    }

    /// Stores the anomaly changes of several agents in one transaction, each once per (host,
    /// seq): what a fleet sends together when something they share fails. An agent's changes
    /// reach the store one at a time (an update after its opening), so a group holds at most
    /// one change of each event.
    pub async fn ingest_anomalies(
        &self,
        items: &[(&str, &AnomalyChange)],
        now_ms: i64,
    ) -> Result<Vec<Ingested>, StoreError> {
        let mut tx = self.begin_write().await?;
        let fresh = self.claim_group(&mut tx, items, "anomaly", now_ms).await?;
        if !fresh.contains(&true) {
            tx.rollback().await?;
            return Ok(vec![Ingested::Duplicate; items.len()]);
        }
        for (&(host, c), _) in items.iter().zip(&fresh).filter(|(_, &f)| f) {
            apply_change(&mut tx, host, c).await?;
        }
        tx.commit().await?;
        Ok(fresh.into_iter().map(Ingested::from).collect())
    }

    /// Closes open events of `host` opened by another run of its agent.
    pub async fn close_orphaned_anomalies(
        &self,
        host: &str,
        run_started_ms: i64,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "UPDATE anomalies SET status = 'closed', ended_ms = $3, close_reason = 'agent restarted'
             WHERE host_id = $1 AND status = 'open' AND run_started_ms <> $2",
        )
        .bind(host)
        .bind(run_started_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    pub async fn anomalies(&self, q: &AnomalyQuery) -> Result<Vec<Anomaly>, StoreError> {
        let mut sql = format!("{ANOMALY_SELECT} WHERE 1 = 1");
        let mut n = 0;
        let mut next = |sql: &mut String, clause: &str| {
            n += 1;
            sql.push_str(&clause.replace('?', &format!("${n}")));
        };
        if q.host.is_some() {
            next(&mut sql, " AND host_id = ?");
        }
        if q.from_ms.is_some() {
            next(&mut sql, " AND started_ms >= ?");
        }
        if q.to_ms.is_some() {
            next(&mut sql, " AND started_ms < ?");
        }
        if q.min_severity.is_some() {
            next(&mut sql, " AND severity_rank >= ?");
        }
        if q.status.is_some() {
            next(&mut sql, " AND status = ?");
        }
        sql.push_str(" ORDER BY started_ms DESC, id");
        next(&mut sql, " LIMIT ?");
        next(&mut sql, " OFFSET ?");
        let mut query = sqlx::query(audited(sql));
        if let Some(h) = &q.host {
            query = query.bind(h);
        }
        if let Some(v) = q.from_ms {
            query = query.bind(v);
        }
        if let Some(v) = q.to_ms {
            query = query.bind(v);
        }
        if let Some(s) = q.min_severity {
            query = query.bind(s.rank());
        }
        if let Some(s) = &q.status {
            query = query.bind(s);
        }
        let rows = query
            .bind(q.limit)
            .bind(q.offset)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| anomaly_from_row(r, false)).collect()
    }

    /// Open events of the whole fleet counted per host, family and severity, with how many of
    /// them recovered and are held (`recovered_ms` set), in one query.
    pub async fn open_anomaly_counts(&self) -> Result<Vec<OpenAnomalies>, StoreError> {
        let rows = sqlx::query(
            "SELECT host_id, family, severity, COUNT(*) AS n, COUNT(recovered_ms) AS held,
                MAX(score) AS max_score
             FROM anomalies WHERE status = 'open'
             GROUP BY host_id, family, severity ORDER BY host_id, family, severity",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let severity: String = r.try_get("severity")?;
                Ok(OpenAnomalies {
                    host_id: r.try_get("host_id")?,
                    family: r.try_get("family")?,
                    severity: Severity::parse(&severity).unwrap_or(Severity::Low),
                    count: r.try_get("n")?,
                    held: r.try_get("held")?,
                    max_score: r.try_get("max_score")?,
                })
            })
            .collect()
    }

    pub async fn anomaly(&self, id: &str) -> Result<Option<Anomaly>, StoreError> {
        let row = sqlx::query(audited(format!("{ANOMALY_SELECT} WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| anomaly_from_row(&r, true)).transpose()
    }
}

const ANOMALY_SELECT: &str =
    "SELECT id, host_id, status, started_ms, updated_ms, ended_ms, score, peak_score,
    severity, top_metric, contributors, context, model, close_reason, family, culprits, recovered_ms
    FROM anomalies";

fn anomaly_from_row(r: &AnyRow, with_context: bool) -> Result<Anomaly, StoreError> {
    let severity: String = r.try_get("severity")?;
    let contributors: String = r.try_get("contributors")?;
    let culprits: String = r.try_get("culprits")?;
    let context = if with_context {
        let text: String = r.try_get("context")?;
        serde_json::from_str(&text).ok()
    } else {
        None
    };
    Ok(Anomaly {
        id: r.try_get("id")?,
        host_id: r.try_get("host_id")?,
        status: r.try_get("status")?,
        started_ms: r.try_get("started_ms")?,
        updated_ms: r.try_get("updated_ms")?,
        ended_ms: r.try_get("ended_ms")?,
        score: r.try_get("score")?,
        peak_score: r.try_get("peak_score")?,
        severity: Severity::parse(&severity).unwrap_or(Severity::Low),
        family: r.try_get("family")?,
        top_metric: r.try_get("top_metric")?,
        contributors: serde_json::from_str(&contributors).unwrap_or_default(),
        culprits: parse_processes(&culprits),
        model: r.try_get("model")?,
        close_reason: r.try_get("close_reason")?,
        recovered_ms: r.try_get("recovered_ms")?,
        context,
    })
}

/// Opens, updates or closes the event of one change (its message already claimed).
async fn apply_change(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    host: &str,
    c: &AnomalyChange,
) -> Result<(), StoreError> {
    let contributors = serde_json::to_string(&c.contributors).unwrap_or_else(|_| "[]".into());
    let top = c
        .contributors
        .first()
        .map(|m| m.metric.clone())
        .unwrap_or_default();
    let status = if c.kind == ChangeKind::Closed {
        "closed"
    } else {
        "open"
    };
    let close_reason = match c.kind {
        ChangeKind::Closed if c.close_reason.is_empty() => "recovered",
        ChangeKind::Closed => c.close_reason.as_str(),
        _ => "",
    };
    match c.kind {
        ChangeKind::Opened => {
            let context =
                serde_json::json!({ "series": c.context, "processes": c.context_processes });
            let culprits = serde_json::to_string(&c.culprits).unwrap_or_else(|_| "[]".into());
            sqlx::query(
                "INSERT INTO anomalies (id, host_id, run_started_ms, status, started_ms, updated_ms, ended_ms,
                    score, peak_score, severity, severity_rank, top_metric, contributors, context, model, close_reason,
                    family, culprits)
                 VALUES ($1, $2, $3, 'open', $4, $5, NULL, $6, $7, $8, $9, $10, $11, $12, $13, '', $14, $15)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(c.event_id(host))
            .bind(host)
            .bind(c.run_started_ms)
            .bind(c.started_ms)
            .bind(c.updated_ms)
            .bind(c.score)
            .bind(c.peak_score)
            .bind(c.severity.as_str())
            .bind(c.severity.rank())
            .bind(top)
            .bind(contributors)
            .bind(context.to_string())
            .bind(&c.model)
            .bind(&c.family)
            .bind(culprits)
            .execute(&mut **tx)
            .await?;
        }
        ChangeKind::Updated | ChangeKind::Closed => {
            // An event already closed (e.g. by an agent restart) stays
            // closed; its score and severity may still be refined.
            sqlx::query(
                "UPDATE anomalies SET updated_ms = $2, score = $3,
                    peak_score = CASE WHEN peak_score > $4 THEN peak_score ELSE $4 END,
                    severity = CASE WHEN severity_rank > $6 THEN severity ELSE $5 END,
                    severity_rank = CASE WHEN severity_rank > $6 THEN severity_rank ELSE $6 END,
                    contributors = $7,
                    top_metric = $8,
                    ended_ms = CASE WHEN status = 'closed' THEN ended_ms ELSE $9 END,
                    close_reason = CASE WHEN status = 'closed' THEN close_reason ELSE $10 END,
                    recovered_ms = CASE WHEN status = 'closed' THEN recovered_ms ELSE $12 END,
                    status = CASE WHEN status = 'closed' THEN status ELSE $11 END
                 WHERE id = $1",
            )
            .bind(c.event_id(host))
            .bind(c.updated_ms)
            .bind(c.score)
            .bind(c.peak_score)
            .bind(c.severity.as_str())
            .bind(c.severity.rank())
            .bind(contributors)
            .bind(top)
            .bind(c.ended_ms)
            .bind(close_reason)
            .bind(status)
            .bind(c.recovered_ms)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}
