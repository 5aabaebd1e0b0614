//! Operators' verdicts on anomaly events and what each one changed.

use serde::Serialize;

/// One verdict. A verdict that changes detection generated the signed policy `policy`
/// (revision `policy_revision`) with `target` and `detection`; undoing it withdrew that policy
/// (`withdrawn_revision`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Feedback {
    pub id: String,
    pub anomaly_id: String,
    pub host_id: String,
    /// `true_positive`, `false_positive` or `expected`.
    pub verdict: String,
    pub note: String,
    pub scope: serde_json::Value,
    /// The generated policy's name; empty when the verdict changed nothing.
    pub policy: String,
    pub policy_revision: i64,
    /// The generated policy's target and detection settings (null when none).
    pub target: serde_json::Value,
    pub detection: serde_json::Value,
    pub created_by: String,
    pub created_at_ms: i64,
    pub undone: bool,
    pub undone_by: String,
    pub undone_at_ms: Option<i64>,
    pub withdrawn_revision: i64,
}

#[derive(Debug, Clone, Default)]
pub struct FeedbackQuery {
    pub anomaly: Option<String>,
    pub host: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Leave out verdicts that were undone.
    pub active_only: bool,
    pub limit: i64,
    pub offset: i64,
}

/// The policy name of the verdict `id` (`fb-<hex>` gives `feedback-<hex>`).
pub fn policy_name(id: &str) -> String {
    format!("feedback-{}", id.strip_prefix("fb-").unwrap_or(id))
}
