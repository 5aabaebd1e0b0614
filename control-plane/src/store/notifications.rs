//! Notifications, silences and acknowledgements.
//!
//! The router reads events and actions not yet routed (`anomalies.notified_rank`,
//! `close_notified`, `remediation_actions.notified_state`) and writes one row per channel and
//! event; `(channel, subject, event)` is unique, so routing twice (two replicas, a retry after
//! a crash) writes nothing new. The dispatcher claims a due row by moving its
//! `claimed_until_ms` forward in a conditional update: one replica sends it.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{audited, Store, StoreError};
use crate::domain::{Contributor, Severity};
use crate::notify::{
    Ack, ActionView, EventView, HostView, NewNotification, Notification, NotificationQuery, Silence,
};

const NOTIFICATION_COLUMNS: &str = "id, channel, kind, subject, event, host_id, severity, family,
    summary, state, attempts, next_attempt_ms, last_error, silence_id, created_ms, sent_ms";

const SILENCE_COLUMNS: &str = "id, labels, hosts, families, starts_ms, ends_ms, comment,
    created_by, created_ms, expired_by";

fn host_from(r: &AnyRow) -> Result<HostView, StoreError> {
    let labels: Option<String> = r.try_get("labels")?;
    let enrolled: Option<String> = r.try_get("enrolled_labels")?;
    let mut all: BTreeMap<String, String> = labels
        .and_then(|l| serde_json::from_str(&l).ok())
        .unwrap_or_default();
    // labels given at enrollment win, as everywhere else
    all.extend(
        enrolled
            .and_then(|l| serde_json::from_str::<BTreeMap<String, String>>(&l).ok())
            .unwrap_or_default(),
    );
    let hostname: Option<String> = r.try_get("hostname")?;
    Ok(HostView {
        id: r.try_get("host_id")?,
        hostname: hostname.unwrap_or_default(),
        labels: all,
    })
}

fn event_from(r: &AnyRow) -> Result<EventView, StoreError> {
    let severity: String = r.try_get("severity")?;
    let contributors: String = r.try_get("contributors")?;
    let close_notified: i64 = r.try_get("close_notified")?;
    Ok(EventView {
        id: r.try_get("id")?,
        host: host_from(r)?,
        open: r.try_get::<String, _>("status")? == "open",
        severity: Severity::parse(&severity).unwrap_or(Severity::Low),
        family: r.try_get("family")?,
        top_metric: r.try_get("top_metric")?,
        contributors: serde_json::from_str::<Vec<Contributor>>(&contributors).unwrap_or_default(),
        started_ms: r.try_get("started_ms")?,
        ended_ms: r.try_get("ended_ms")?,
        recovered_ms: r.try_get("recovered_ms")?,
        close_reason: r.try_get("close_reason")?,
        peak_score: r.try_get("peak_score")?,
        notified_rank: r.try_get("notified_rank")?,
        close_notified: close_notified != 0,
        acked_by: r.try_get("acked_by")?,
        ack_note: r.try_get("ack_note")?,
    })
}

const EVENT_SELECT: &str = "SELECT a.id, a.host_id, a.status, a.severity, a.family, a.top_metric,
    a.contributors, a.started_ms, a.ended_ms, a.recovered_ms, a.close_reason, a.peak_score, a.notified_rank,
    a.close_notified, a.acked_by, a.ack_note, h.hostname, h.labels, h.enrolled_labels
    FROM anomalies a LEFT JOIN hosts h ON h.id = a.host_id";

fn notification_from(r: &AnyRow) -> Result<Notification, StoreError> {
    Ok(Notification {
        id: r.try_get("id")?,
        channel: r.try_get("channel")?,
        kind: r.try_get("kind")?,
        subject: r.try_get("subject")?,
        event: r.try_get("event")?,
        host_id: r.try_get("host_id")?,
        severity: r.try_get("severity")?,
        family: r.try_get("family")?,
        summary: r.try_get("summary")?,
        state: r.try_get("state")?,
        attempts: r.try_get("attempts")?,
        next_attempt_ms: r.try_get("next_attempt_ms")?,
        last_error: r.try_get("last_error")?,
        silence_id: r.try_get("silence_id")?,
        created_ms: r.try_get("created_ms")?,
        sent_ms: r.try_get("sent_ms")?,
    })
}

fn silence_from(r: &AnyRow) -> Result<Silence, StoreError> {
    let labels: String = r.try_get("labels")?;
    let hosts: String = r.try_get("hosts")?;
    let families: String = r.try_get("families")?;
    Ok(Silence {
        id: r.try_get("id")?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        hosts: serde_json::from_str(&hosts).unwrap_or_default(),
        families: serde_json::from_str(&families).unwrap_or_default(),
        starts_ms: r.try_get("starts_ms")?,
        ends_ms: r.try_get("ends_ms")?,
        comment: r.try_get("comment")?,
        created_by: r.try_get("created_by")?,
        created_ms: r.try_get("created_ms")?,
        expired_by: r.try_get("expired_by")?,
    })
}

impl Store {
    /// Open events whose severity rose past what was routed, and closed events whose closing
    /// was not routed, oldest first. Two indexed reads (open events; the partial index of
    /// unrouted closings), never a scan of the history.
    pub async fn unrouted_events(&self, limit: i64) -> Result<Vec<EventView>, StoreError> {
        let mut out = Vec::new();
        for filter in [
            "a.status = 'open' AND a.severity_rank > a.notified_rank",
            "a.close_notified = 0 AND a.status = 'closed'",
        ] {
            let rows = sqlx::query(audited(format!(
                "{EVENT_SELECT} WHERE {filter} ORDER BY a.started_ms LIMIT $1"
            )))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            for r in &rows {
                out.push(event_from(r)?);
            }
        }
        Ok(out)
    }

    pub async fn event_view(&self, id: &str) -> Result<Option<EventView>, StoreError> {
        let row = sqlx::query(audited(format!("{EVENT_SELECT} WHERE a.id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(event_from).transpose()
    }

    /// Records what was routed: the severity rank, and the closing when `closed`.
    pub async fn mark_event_routed(
        &self,
        id: &str,
        rank: i64,
        closed: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE anomalies SET
                notified_rank = CASE WHEN notified_rank > $2 THEN notified_rank ELSE $2 END,
                close_notified = CASE WHEN $3 = 1 THEN 1 ELSE close_notified END
             WHERE id = $1",
        )
        .bind(id)
        .bind(rank)
        .bind(i64::from(closed))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Actions whose state changed since it was last routed (the partial index keeps this to
    /// the changed ones), oldest change first.
    pub async fn unrouted_actions(&self, limit: i64) -> Result<Vec<ActionView>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.id, r.host_id, r.rule, r.action, r.mode, r.state, r.reason, r.report,
                r.requested_by, r.decided_by, r.updated_at_ms, h.hostname, h.labels, h.enrolled_labels
             FROM remediation_actions r LEFT JOIN hosts h ON h.id = r.host_id
             WHERE r.state <> r.notified_state
             ORDER BY r.updated_at_ms LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let action: String = r.try_get("action")?;
                let report: String = r.try_get("report")?;
                Ok(ActionView {
                    id: r.try_get("id")?,
                    host: host_from(r)?,
                    rule: r.try_get("rule")?,
                    action: serde_json::from_str(&action).unwrap_or(serde_json::Value::Null),
                    mode: r.try_get("mode")?,
                    state: r.try_get("state")?,
                    reason: r.try_get("reason")?,
                    report: serde_json::from_str(&report).ok(),
                    requested_by: r.try_get("requested_by")?,
                    decided_by: r.try_get("decided_by")?,
                    updated_ms: r.try_get("updated_at_ms")?,
                })
            })
            .collect()
    }

    /// Records that the action was seen in `state` (unless it moved on meanwhile).
    pub async fn mark_action_routed(&self, id: &str, state: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE remediation_actions SET notified_state = $2 WHERE id = $1 AND state = $2",
        )
        .bind(id)
        .bind(state)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Writes a notification unless this channel was already told this event of this subject.
    pub async fn insert_notification(&self, n: &NewNotification) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "INSERT INTO notifications (id, channel, kind, subject, event, host_id, severity,
                family, summary, body, state, attempts, next_attempt_ms, claimed_until_ms,
                last_error, silence_id, created_ms, sent_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12, 0, '', $13, $14, NULL)
             ON CONFLICT (channel, subject, event) DO NOTHING",
        )
        .bind(&n.id)
        .bind(&n.channel)
        .bind(&n.kind)
        .bind(&n.subject)
        .bind(&n.event)
        .bind(&n.host_id)
        .bind(&n.severity)
        .bind(&n.family)
        .bind(&n.summary)
        .bind(n.body.to_string())
        .bind(&n.state)
        .bind(n.created_ms)
        .bind(&n.silence_id)
        .bind(n.created_ms)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The state of each channel's notification of `event` about `subject`.
    pub async fn notified_channels(
        &self,
        subject: &str,
        event: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT channel, state FROM notifications WHERE subject = $1 AND event = $2",
        )
        .bind(subject)
        .bind(event)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("channel")?, r.try_get("state")?)))
            .collect()
    }

    /// Due notifications, oldest first; a later notification of a subject waits until the
    /// channel's earlier ones are done (a closing is never sent before its opening).
    pub async fn due_notifications(
        &self,
        channel: &str,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<(Notification, serde_json::Value)>, StoreError> {
        let rows = sqlx::query(audited(format!(
            "SELECT {NOTIFICATION_COLUMNS}, body FROM notifications n
             WHERE n.state = 'pending' AND n.next_attempt_ms <= $1 AND n.claimed_until_ms < $1
                AND n.channel = $3
                AND NOT EXISTS (SELECT 1 FROM notifications p WHERE p.channel = n.channel
                    AND p.subject = n.subject AND p.state = 'pending' AND p.created_ms < n.created_ms)
             ORDER BY n.next_attempt_ms LIMIT $2"
        )))
        .bind(now_ms)
        .bind(limit)
        .bind(channel)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let body: String = r.try_get("body")?;
                Ok((
                    notification_from(r)?,
                    serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
                ))
            })
            .collect()
    }

    /// Takes a due notification for `until_ms`; false when another sender has it.
    pub async fn claim_notification(
        &self,
        id: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE notifications SET claimed_until_ms = $3
             WHERE id = $1 AND state = 'pending' AND claimed_until_ms < $2",
        )
        .bind(id)
        .bind(now_ms)
        .bind(until_ms)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// After an attempt: `sent`, `failed` (given up) or `pending` again at `next_attempt_ms`.
    pub async fn finish_attempt(
        &self,
        id: &str,
        state: &str,
        attempts: i64,
        next_attempt_ms: i64,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE notifications SET state = $2, attempts = $3, next_attempt_ms = $4,
                last_error = $5, claimed_until_ms = 0,
                sent_ms = CASE WHEN $2 = 'sent' THEN $6 ELSE sent_ms END
             WHERE id = $1",
        )
        .bind(id)
        .bind(state)
        .bind(attempts)
        .bind(next_attempt_ms)
        .bind(error)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn notifications(
        &self,
        q: &NotificationQuery,
    ) -> Result<Vec<Notification>, StoreError> {
        let mut sql = format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE 1 = 1");
        let mut n = 0;
        let mut next = |sql: &mut String, clause: &str| {
            n += 1;
            sql.push_str(&clause.replace('?', &format!("${n}")));
        };
        if q.subject.is_some() {
            next(&mut sql, " AND subject = ?");
        }
        if q.channel.is_some() {
            next(&mut sql, " AND channel = ?");
        }
        if q.state.is_some() {
            next(&mut sql, " AND state = ?");
        }
        if q.host.is_some() {
            next(&mut sql, " AND host_id = ?");
        }
        if q.from_ms.is_some() {
            next(&mut sql, " AND created_ms >= ?");
        }
        next(&mut sql, " ORDER BY created_ms DESC, id LIMIT ?");
        next(&mut sql, " OFFSET ?");
        let mut query = sqlx::query(audited(sql));
        for v in [&q.subject, &q.channel, &q.state, &q.host]
            .into_iter()
            .flatten()
        {
            query = query.bind(v.clone());
        }
        if let Some(f) = q.from_ms {
            query = query.bind(f);
        }
        let rows = query
            .bind(q.limit)
            .bind(q.offset)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(notification_from).collect()
    }

    /// Open events a channel told and nobody acknowledged, whose last notification in that
    /// channel is older than `before_ms`: (event id, notifications so far).
    pub async fn events_to_remind(
        &self,
        channel: &str,
        before_ms: i64,
        limit: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT n.subject, COUNT(*) AS told FROM anomalies a
                JOIN notifications n ON n.subject = a.id
             WHERE a.status = 'open' AND a.acked_by = '' AND n.channel = $1
                AND EXISTS (SELECT 1 FROM notifications o WHERE o.channel = n.channel
                    AND o.subject = n.subject AND o.event = 'anomaly.opened' AND o.state <> 'silenced')
             GROUP BY n.subject HAVING MAX(n.created_ms) < $2
             LIMIT $3",
        )
        .bind(channel)
        .bind(before_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("subject")?, r.try_get("told")?)))
            .collect()
    }

    /// Openings held back by a silence that has ended, of events still open.
    pub async fn held_by_ended_silences(
        &self,
        now_ms: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT n.id, n.subject FROM anomalies a
                JOIN notifications n ON n.subject = a.id
                JOIN silences s ON s.id = n.silence_id
             WHERE a.status = 'open' AND n.state = 'silenced' AND n.event = 'anomaly.opened'
                AND s.ends_ms <= $1",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("subject")?)))
            .collect()
    }

    /// A silenced notification: sent after all (`silence_id` empty), or held by another silence.
    pub async fn reconsider_silenced(
        &self,
        id: &str,
        silence_id: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match silence_id {
            Some(s) => {
                sqlx::query("UPDATE notifications SET silence_id = $2 WHERE id = $1")
                    .bind(id)
                    .bind(s)
                    .execute(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(
                    "UPDATE notifications SET state = 'pending', next_attempt_ms = $2
                     WHERE id = $1 AND state = 'silenced'",
                )
                .bind(id)
                .bind(now_ms)
                .execute(&self.pool)
                .await?
            }
        };
        Ok(())
    }

    pub async fn insert_silence(&self, s: &Silence) -> Result<(), StoreError> {
        sqlx::query(audited(format!(
            "INSERT INTO silences ({SILENCE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, '')"
        )))
        .bind(&s.id)
        .bind(serde_json::to_string(&s.labels).unwrap_or_else(|_| "{}".into()))
        .bind(serde_json::to_string(&s.hosts).unwrap_or_else(|_| "[]".into()))
        .bind(serde_json::to_string(&s.families).unwrap_or_else(|_| "[]".into()))
        .bind(s.starts_ms)
        .bind(s.ends_ms)
        .bind(&s.comment)
        .bind(&s.created_by)
        .bind(s.created_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Silences that end after `after_ms` (all of them when None), newest first.
    pub async fn silences(&self, after_ms: Option<i64>) -> Result<Vec<Silence>, StoreError> {
        let rows = sqlx::query(audited(format!(
            "SELECT {SILENCE_COLUMNS} FROM silences WHERE ends_ms > $1 ORDER BY created_ms DESC LIMIT 1000"
        )))
        .bind(after_ms.unwrap_or(i64::MIN))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(silence_from).collect()
    }

    pub async fn silence(&self, id: &str) -> Result<Option<Silence>, StoreError> {
        let row = sqlx::query(audited(format!(
            "SELECT {SILENCE_COLUMNS} FROM silences WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(silence_from).transpose()
    }

    /// Ends a silence now; false when it had already ended.
    pub async fn expire_silence(
        &self,
        id: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE silences SET ends_ms = $3, expired_by = $2 WHERE id = $1 AND ends_ms > $3",
        )
        .bind(id)
        .bind(by)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Acknowledges an event once; returns the acknowledgement it has (this one or an
    /// earlier), or None when there is no such event.
    pub async fn ack_anomaly(
        &self,
        id: &str,
        by: &str,
        note: &str,
        now_ms: i64,
    ) -> Result<Option<(Ack, bool)>, StoreError> {
        let r = sqlx::query(
            "UPDATE anomalies SET acked_by = $2, acked_ms = $3, ack_note = $4
             WHERE id = $1 AND acked_by = ''",
        )
        .bind(id)
        .bind(by)
        .bind(now_ms)
        .bind(note)
        .execute(&self.pool)
        .await?;
        let fresh = r.rows_affected() == 1;
        Ok(self.anomaly_ack(id).await?.map(|a| (a, fresh)))
    }

    /// The event's acknowledgement, `Ack::default()` when it has none; None without the event.
    pub async fn anomaly_ack(&self, id: &str) -> Result<Option<Ack>, StoreError> {
        let row = sqlx::query("SELECT acked_by, acked_ms, ack_note FROM anomalies WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(Ack {
                by: r.try_get("acked_by")?,
                at_ms: r.try_get("acked_ms")?,
                note: r.try_get("ack_note")?,
            })
        })
        .transpose()
    }
}
