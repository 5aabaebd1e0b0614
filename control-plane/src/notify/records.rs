//! The records of alerting: what routing sees of hosts, events and actions, notification rows,
//! silences, acknowledgements and the service's error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{Contributor, Severity};

/// A host as routing sees it.
#[derive(Debug, Clone, Default)]
pub struct HostView {
    pub id: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
}

/// An anomaly event as routing sees it.
#[derive(Debug, Clone)]
pub struct EventView {
    pub id: String,
    pub host: HostView,
    pub open: bool,
    pub severity: Severity,
    pub family: String,
    pub top_metric: String,
    pub contributors: Vec<Contributor>,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    /// An open event that recovered and is held: when it recovered (it ends there unless it
    /// fires again within the agent's hold).
    pub recovered_ms: Option<i64>,
    pub close_reason: String,
    pub peak_score: f64,
    pub notified_rank: i64,
    pub close_notified: bool,
    pub acked_by: String,
    pub ack_note: String,
}

/// A remediation action as routing sees it.
#[derive(Debug, Clone)]
pub struct ActionView {
    pub id: String,
    pub host: HostView,
    pub rule: String,
    pub action: Value,
    pub mode: String,
    pub state: String,
    pub reason: String,
    pub report: Option<Value>,
    pub requested_by: String,
    pub decided_by: String,
    pub updated_ms: i64,
}

/// A notification row to write.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub id: String,
    pub channel: String,
    pub kind: String,
    pub subject: String,
    pub event: String,
    pub host_id: String,
    pub severity: String,
    pub family: String,
    pub summary: String,
    /// The documented JSON body (what a webhook receives); other kinds are rendered from it.
    pub body: Value,
    pub state: String,
    pub silence_id: String,
    pub created_ms: i64,
}

/// One notification: a channel told (or to be told) one thing about one event or action.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Notification {
    pub id: String,
    pub channel: String,
    /// `slack`, `webhook`, `pagerduty` or `email`.
    pub kind: String,
    /// The anomaly event id or the action id.
    pub subject: String,
    /// `anomaly.opened`, `anomaly.acknowledged`, `anomaly.reminder.N`, `anomaly.closed`,
    /// `remediation.proposed`, `remediation.succeeded`, `remediation.failed`,
    /// `remediation.expired`.
    pub event: String,
    pub host_id: String,
    pub severity: String,
    pub family: String,
    pub summary: String,
    /// `pending`, `sent`, `failed` (given up; `last_error` says why) or `silenced`.
    pub state: String,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_error: String,
    /// The silence that held it back.
    pub silence_id: String,
    pub created_ms: i64,
    pub sent_ms: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct NotificationQuery {
    pub subject: Option<String>,
    pub channel: Option<String>,
    pub state: Option<String>,
    pub host: Option<String>,
    pub from_ms: Option<i64>,
    pub limit: i64,
    pub offset: i64,
}

/// A maintenance window: events matching it are recorded, not sent.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Silence {
    pub id: String,
    /// Hosts carrying every one of these labels (with `hosts`: either matches).
    pub labels: BTreeMap<String, String>,
    /// These host ids.
    pub hosts: Vec<String>,
    /// Only these families (empty: all; remediation outcomes of matching hosts too).
    pub families: Vec<String>,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub comment: String,
    pub created_by: String,
    pub created_ms: i64,
    /// Who ended it early (`DELETE /silences/{id}`).
    pub expired_by: String,
}

impl Silence {
    pub fn active(&self, now_ms: i64) -> bool {
        self.starts_ms <= now_ms && now_ms < self.ends_ms
    }

    /// Whether it holds back news of `host` about `family` (None: a remediation outcome).
    pub fn matches(&self, host: &HostView, family: Option<&str>) -> bool {
        let by_host = self.hosts.iter().any(|h| h == &host.id);
        let by_labels = !self.labels.is_empty()
            && self
                .labels
                .iter()
                .all(|(k, v)| host.labels.get(k).is_some_and(|h| h == v));
        let everywhere = self.hosts.is_empty() && self.labels.is_empty();
        let family_ok = match family {
            Some(f) => self.families.is_empty() || self.families.iter().any(|s| s == f),
            None => true,
        };
        (by_host || by_labels || everywhere) && family_ok
    }
}

/// What a client sends to create a silence.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceIn {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub families: Vec<String>,
    /// Default: now.
    #[serde(default)]
    pub starts_ms: Option<i64>,
    /// Set this or `duration_secs`.
    #[serde(default)]
    pub ends_ms: Option<i64>,
    #[serde(default)]
    pub duration_secs: Option<i64>,
    /// Why (required): "kernel upgrade of the db hosts".
    pub comment: String,
}

/// Who acknowledged an event, when and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Ack {
    pub by: String,
    pub at_ms: Option<i64>,
    pub note: String,
}
