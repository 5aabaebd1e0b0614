//! Operators' verdicts on anomaly events. A verdict that teaches the detector something
//! becomes a generated policy (`feedback-<id>`) whose detection settings
//! `sco_policy::feedback::derive` computes from the event, signed and rolled out (with its
//! canary) by the same code as a policy an admin writes; undoing the verdict withdraws that
//! policy the same way. A true positive is recorded only.

use std::sync::Arc;

use sco_policy::feedback::{derive, EventFacts, Evidence, Scope, Verdict};

use super::audit::Audit;
use super::policy::Policies;
use crate::domain::feedback::{policy_name, Feedback, FeedbackQuery};
use crate::domain::policy::RolloutRequest;
use crate::domain::{new_id, now_ms};
use crate::error::ServiceError;
use crate::store::{Store, StoreError};

/// Longest note kept with a verdict, in characters.
pub const MAX_NOTE_CHARS: usize = 1000;

/// A verdict as asked for.
#[derive(Debug, Clone)]
pub struct FeedbackRequest {
    pub verdict: Verdict,
    pub note: String,
    pub scope: Scope,
}

/// The feedback service: operators' verdicts, the policies they generate (created, rolled
/// out and withdrawn through the policies service), and the training export.
pub struct Verdicts {
    store: Store,
    audit: Arc<Audit>,
    policies: Arc<Policies>,
}

impl Verdicts {
    pub fn new(store: Store, audit: Arc<Audit>, policies: Arc<Policies>) -> Self {
        Self {
            store,
            audit,
            policies,
        }
    }

    /// Records a verdict on event `anomaly_id` and, unless it is a true positive, rolls out
    /// the policy it generates.
    pub async fn give_feedback(
        &self,
        actor: &str,
        anomaly_id: &str,
        req: FeedbackRequest,
    ) -> Result<Feedback, ServiceError> {
        if req.note.chars().count() > MAX_NOTE_CHARS
            || req.note.chars().any(|c| c.is_control() && c != '\n')
        {
            return Err(ServiceError::Invalid(format!(
                "note: at most {MAX_NOTE_CHARS} characters, no control characters but newlines"
            )));
        }
        let event = self
            .store
            .anomaly(anomaly_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no anomaly {anomaly_id:?}")))?;
        let family = serde_json::from_value(serde_json::Value::String(event.family.clone()))
            .unwrap_or(sco_policy::Family::Host);
        let facts = EventFacts {
            host: event.host_id.clone(),
            family,
            started_ms: event.started_ms,
            ended_ms: event.ended_ms,
            contributors: event
                .contributors
                .iter()
                .map(|c| Evidence {
                    metric: c.metric.clone(),
                    value: c.value,
                    expected_low: c.expected_low,
                    expected_high: c.expected_high,
                })
                .collect(),
        };
        let lesson = derive(req.verdict, &facts, &req.scope)
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let id = new_id("fb");
        let mut record = Feedback {
            id: id.clone(),
            anomaly_id: event.id.clone(),
            host_id: event.host_id.clone(),
            verdict: req.verdict.as_str().to_string(),
            note: req.note.clone(),
            scope: serde_json::to_value(&req.scope).unwrap_or_default(),
            policy: String::new(),
            policy_revision: 0,
            target: serde_json::Value::Null,
            detection: serde_json::Value::Null,
            created_by: actor.to_string(),
            created_at_ms: now_ms(),
            undone: false,
            undone_by: String::new(),
            undone_at_ms: None,
            withdrawn_revision: 0,
        };
        if let Some(lesson) = lesson {
            let name = policy_name(&id);
            let mut description =
                format!("{} on anomaly {} ({id})", req.verdict.as_str(), event.id);
            if !req.note.is_empty() {
                description.push_str(": ");
                description.extend(req.note.chars().filter(|c| !c.is_control()).take(800));
            }
            let policy = sco_policy::Policy {
                name: name.clone(),
                description,
                target: lesson.target,
                detection: lesson.detection,
                rules: Vec::new(),
            };
            policy
                .validate()
                .map_err(|e| ServiceError::Invalid(format!("generated policy: {e}")))?;
            let (rev, _) = self
                .policies
                .create_policy(actor, &policy.canonical_json())
                .await?;
            self.policies
                .start_rollout(
                    actor,
                    &name,
                    RolloutRequest {
                        revision: Some(rev.revision),
                        canary_percent: 10,
                        canary_secs: 300,
                        max_new_anomalies: 3,
                    },
                )
                .await?;
            record.policy = name;
            record.policy_revision = rev.revision;
            record.target = serde_json::to_value(&policy.target).unwrap_or_default();
            record.detection = serde_json::to_value(&policy.detection).unwrap_or_default();
        }
        self.store.insert_feedback(&record).await?;
        self.audit
            .record(
                actor,
                "anomaly.feedback",
                &record.host_id,
                "stored",
                serde_json::json!({
                    "feedback": record.id,
                    "anomaly": record.anomaly_id,
                    "verdict": record.verdict,
                    "policy": record.policy,
                    "revision": record.policy_revision,
                }),
            )
            .await;
        Ok(record)
    }

    /// Undoes a verdict: withdraws the policy it generated (a signed withdrawal rolled out to
    /// every host, as `DELETE /policies/{name}` does) and marks it undone.
    pub async fn undo_feedback(&self, actor: &str, id: &str) -> Result<Feedback, ServiceError> {
        let record = self
            .store
            .feedback(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no feedback {id:?}")))?;
        if record.undone {
            return Err(ServiceError::Conflict(format!(
                "feedback {id} was already undone by {}",
                record.undone_by
            )));
        }
        let withdrawn = if record.policy.is_empty() {
            0
        } else {
            let (rev, _) = self.policies.withdraw_policy(actor, &record.policy).await?;
            rev.revision
        };
        if !self
            .store
            .mark_feedback_undone(id, actor, now_ms(), withdrawn)
            .await?
        {
            return Err(ServiceError::Conflict(format!(
                "feedback {id} was undone meanwhile"
            )));
        }
        self.audit.record(
            actor,
            "anomaly.feedback.undo",
            &record.host_id,
            "undone",
            serde_json::json!({ "feedback": id, "policy": record.policy, "withdrawal": withdrawn }),
        )
        .await;
        self.store
            .feedback(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no feedback {id:?}")))
    }

    pub async fn feedback_list(&self, q: &FeedbackQuery) -> Result<Vec<Feedback>, StoreError> {
        self.store.feedback_list(q).await
    }

    /// The verdicts on any of `anomalies`, oldest first.
    pub async fn feedback_for(&self, anomalies: &[String]) -> Result<Vec<Feedback>, StoreError> {
        self.store.feedback_for(anomalies).await
    }

    /// The labelled events for training: one JSON object per verdict in force, with the
    /// event's contributors and the raw samples captured at its onset as rows
    /// (`metrics[j]` is `rows[i][j]`, one row per `step_ms` from `start_ms`; null = missing).
    /// `label` is 1 for a true positive, 0 for a false positive or expected work.
    pub async fn feedback_export(
        &self,
        q: &FeedbackQuery,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let records = self.store.feedback_list(q).await?;
        let mut out = Vec::with_capacity(records.len());
        for f in records {
            let Some(event) = self.store.anomaly(&f.anomaly_id).await? else {
                continue;
            };
            let series: Vec<crate::domain::Series> = event
                .context
                .as_ref()
                .and_then(|c| c.get("series"))
                .and_then(|s| serde_json::from_value(s.clone()).ok())
                .unwrap_or_default();
            let len = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
            let rows: Vec<Vec<Option<f64>>> = (0..len)
                .map(|i| {
                    series
                        .iter()
                        .map(|s| s.values.get(i).copied().flatten())
                        .collect()
                })
                .collect();
            out.push(serde_json::json!({
                "feedback_id": f.id,
                "anomaly_id": f.anomaly_id,
                "host": f.host_id,
                "verdict": f.verdict,
                "label": i32::from(f.verdict == Verdict::TruePositive.as_str()),
                "note": f.note,
                "family": event.family,
                "started_ms": event.started_ms,
                "ended_ms": event.ended_ms,
                "severity": event.severity,
                "contributors": event.contributors,
                "metrics": series.iter().map(|s| s.metric.clone()).collect::<Vec<_>>(),
                "start_ms": series.first().map(|s| s.start_ms),
                "step_ms": series.first().map(|s| s.step_ms),
                "rows": rows,
            }));
        }
        Ok(out)
    }
}
