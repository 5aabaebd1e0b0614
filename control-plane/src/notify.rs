//! Alerts to people: anomaly events and remediation outcomes told to the channels of
//! `[notify]` (Slack, webhooks, PagerDuty, e-mail), once per event opening, acknowledgement,
//! reminder and closing, never once per tick; silences for maintenance; acknowledgements.
//!
//! Two loops share the work through the database, so a crash loses nothing and replicas never
//! send one notification twice:
//! - the **router** reads events and actions not yet routed, picks the channels whose filters
//!   match (severity, family, host labels, subject), checks silences, and writes one
//!   notification row per channel (`pending`, or `silenced` with the silence that held it);
//! - the **dispatcher** claims due rows, renders each for its channel ([`send`]) and records
//!   `sent`, a retry with exponential backoff, or `failed` once the attempts are used up or the
//!   receiver refused it for good (a 4xx other than 408 and 429).
//!
//! An event that escalates is told to the channels whose `min_severity` it now reaches. A
//! closing is told only to the channels that were told the opening (a silenced opening has a
//! silenced closing). When a silence ends while the event it held is still open, the opening is
//! sent then.
//!
//! This file is the two loops and the one-line summaries they share (about 640 lines besides
//! tests: the router's steps read best in one place); the records are in `notify/records.rs`,
//! acknowledgements and silences in `notify/silences.rs`, rendering per channel in `notify/send.rs`.

mod records;
pub mod send;
mod silences;

pub use records::{
    Ack, ActionView, EventView, HostView, NewNotification, Notification, NotificationQuery,
    Silence, SilenceIn,
};

use crate::error::ServiceError;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::{ChannelConfig, ChannelKind, NotifySection, Subject};
use crate::domain::now_ms;
use crate::store::{Store, StoreError};
use sco_policy::Family;

/// Routed per pass, per kind (events, actions).
const ROUTE_BATCH: i64 = 200;
/// Sent per pass; each send has its own timeout.
const SEND_BATCH: i64 = 50;
/// A closed event that ended longer ago than this is not told when first routed.
const STALE_MS: i64 = 3_600_000;
/// Longest silence.
pub const MAX_SILENCE_MS: i64 = 30 * 86_400_000;

/// The service: routing, delivery, silences and acknowledgements.
pub struct Notifier {
    store: Store,
    channels: Vec<send::Channel>,
    console_url: Option<String>,
    max_attempts: u32,
    /// This process as the holder of the routing lease (one replica routes at a time).
    holder: String,
}

/// The lease whose holder routes; it lapses this long after its holder stops renewing it.
const ROUTE_LEASE: &str = "notify-route";
const ROUTE_LEASE_MS: i64 = 10_000;

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

fn number(v: f64) -> String {
    if !v.is_finite() {
        return "?".into();
    }
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn host_name(h: &HostView) -> &str {
    if h.hostname.is_empty() {
        &h.id
    } else {
        &h.hostname
    }
}

/// The one-line summary of an event's news: `[HIGH] cpu on web-1: cpu.user_pct 97.0
/// (expected 2.0–30.0)`.
fn event_summary(e: &EventView, event: &str) -> String {
    let top = e.contributors.first();
    let evidence = top.map_or_else(String::new, |c| {
        format!(
            ": {} {} (expected {}–{})",
            c.metric,
            number(c.value),
            number(c.expected_low),
            number(c.expected_high)
        )
    });
    let head = format!(
        "[{}] {} on {}",
        e.severity.as_str().to_uppercase(),
        e.family,
        host_name(&e.host)
    );
    let text = match event {
        "anomaly.closed" => format!("Resolved {head}: {}", e.close_reason),
        "anomaly.acknowledged" => format!("Acknowledged by {} {head}", e.acked_by),
        ev if ev.starts_with("anomaly.reminder") && e.open && e.recovered_ms.is_some() => {
            format!("Recovered, held open in case it comes back {head}{evidence}")
        }
        ev if ev.starts_with("anomaly.reminder") => format!("Still open {head}{evidence}"),
        _ => format!("{head}{evidence}"),
    };
    clip(&text, 300)
}

fn action_summary(a: &ActionView) -> String {
    let what = a.action["type"].as_str().unwrap_or("action");
    let target = a.action["pattern"]
        .as_str()
        .or_else(|| a.action["unit"].as_str())
        .map(|t| format!(" {t}"))
        .unwrap_or_default();
    let text = match a.state.as_str() {
        "proposed" => format!(
            "Approval needed: {what}{target} on {} ({})",
            host_name(&a.host),
            a.rule
        ),
        "succeeded" => format!(
            "{what}{target} on {} succeeded ({})",
            host_name(&a.host),
            a.rule
        ),
        "failed" => format!(
            "{what}{target} on {} FAILED ({}): {}",
            host_name(&a.host),
            a.rule,
            a.reason
        ),
        _ => format!(
            "Proposal {what}{target} on {} expired unapproved ({})",
            host_name(&a.host),
            a.rule
        ),
    };
    clip(&text, 300)
}

impl Notifier {
    /// Sets up the channels of `[notify]`: reads their secrets and URLs, builds their clients.
    pub fn new(store: Store, config: &NotifySection) -> Result<Self, String> {
        let ca = if config.channels.is_empty() {
            None
        } else {
            match std::fs::read(&config.ca_file) {
                Ok(pem) => Some(pem),
                Err(e) => {
                    // http receivers still work; https ones fail each attempt and say so
                    tracing::warn!(file = %config.ca_file.display(), error = %e,
                        "notify.ca_file unreadable: https receivers will fail");
                    None
                }
            }
        };
        let timeout = Duration::from_millis(config.timeout_ms);
        let channels = config
            .channels
            .iter()
            .map(|c| send::Channel::new(c, ca.as_deref(), timeout))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            store,
            channels,
            console_url: config.console_url.clone(),
            max_attempts: config.max_attempts,
            holder: crate::domain::new_id("notifier"),
        })
    }

    /// Takes the routing lease under `holder` (the replica's id) instead of a name of its own.
    pub fn with_holder(mut self, holder: &str) -> Self {
        self.holder = holder.to_string();
        self
    }

    pub fn channel_names(&self) -> Vec<&str> {
        self.channels
            .iter()
            .map(|c| c.config.name.as_str())
            .collect()
    }

    fn link(&self, fragment: &str) -> Option<String> {
        self.console_url
            .as_ref()
            .map(|u| format!("{}/#/{fragment}", u.trim_end_matches('/')))
    }

    fn event_body(&self, e: &EventView, event: &str, id: &str, at_ms: i64) -> Value {
        let contributors: Vec<Value> = e
            .contributors
            .iter()
            .take(5)
            .map(|c| {
                json!({"metric": c.metric, "value": c.value, "expected_low": c.expected_low,
                    "expected_high": c.expected_high})
            })
            .collect();
        json!({
            "version": 1,
            "id": id,
            "event": event,
            "at_ms": at_ms,
            "summary": event_summary(e, event),
            "url": self.link(&format!("anomalies/{}", e.id)),
            "host": {"id": e.host.id, "hostname": e.host.hostname, "labels": e.host.labels},
            "anomaly": {
                "id": e.id,
                "status": if e.open { "open" } else { "closed" },
                "severity": e.severity.as_str(),
                "family": e.family,
                "top_metric": e.top_metric,
                "contributors": contributors,
                "started_ms": e.started_ms,
                "ended_ms": e.ended_ms,
                "recovered_ms": e.recovered_ms,
                "close_reason": e.close_reason,
                "peak_score": e.peak_score,
                "acked_by": e.acked_by,
                "ack_note": e.ack_note,
            },
        })
    }

    fn action_body(&self, a: &ActionView, event: &str, id: &str, at_ms: i64) -> Value {
        json!({
            "version": 1,
            "id": id,
            "event": event,
            "at_ms": at_ms,
            "summary": action_summary(a),
            "url": self.link(&format!("hosts/{}", a.host.id)),
            "host": {"id": a.host.id, "hostname": a.host.hostname, "labels": a.host.labels},
            "action": {
                "id": a.id,
                "rule": a.rule,
                "action": a.action,
                "mode": a.mode,
                "state": a.state,
                "reason": a.reason,
                "report": a.report,
                "requested_by": a.requested_by,
                "decided_by": a.decided_by,
                "updated_ms": a.updated_ms,
            },
        })
    }

    fn event_matches(c: &ChannelConfig, e: &EventView) -> bool {
        c.wants(Subject::Anomaly)
            && e.severity.rank() >= c.min_severity.rank()
            && (c.families.is_empty() || c.families.iter().any(|f| Family::as_str(*f) == e.family))
            && c.labels
                .iter()
                .all(|(k, v)| e.host.labels.get(k).is_some_and(|h| h == v))
    }

    fn action_matches(c: &ChannelConfig, a: &ActionView) -> bool {
        // PagerDuty pages: a failure or an expired proposal needs someone; a success does not
        let pages =
            c.kind != ChannelKind::Pagerduty || matches!(a.state.as_str(), "failed" | "expired");
        c.wants(Subject::Remediation)
            && pages
            && c.labels
                .iter()
                .all(|(k, v)| a.host.labels.get(k).is_some_and(|h| h == v))
    }

    async fn active_silences(&self, now: i64) -> Result<Vec<Silence>, StoreError> {
        Ok(self
            .store
            .silences(Some(now))
            .await?
            .into_iter()
            .filter(|s| s.active(now))
            .collect())
    }

    /// Writes the notification of `event` for one channel; true when it is new.
    #[allow(clippy::too_many_arguments)]
    async fn enqueue(
        &self,
        channel: &ChannelConfig,
        subject: &str,
        event: &str,
        host: &HostView,
        severity: &str,
        family: &str,
        silence: Option<&Silence>,
        body: impl FnOnce(&str) -> Value,
        now: i64,
    ) -> Result<bool, StoreError> {
        let id = crate::domain::new_id("ntf");
        let body = body(&id);
        let n = NewNotification {
            summary: body["summary"].as_str().unwrap_or_default().to_string(),
            body,
            id,
            channel: channel.name.clone(),
            kind: channel.kind.as_str().to_string(),
            subject: subject.to_string(),
            event: event.to_string(),
            host_id: host.id.clone(),
            severity: severity.to_string(),
            family: family.to_string(),
            state: if silence.is_some() {
                "silenced"
            } else {
                "pending"
            }
            .to_string(),
            silence_id: silence.map(|s| s.id.clone()).unwrap_or_default(),
            created_ms: now,
        };
        let fresh = self.store.insert_notification(&n).await?;
        if fresh {
            tracing::info!(channel = %n.channel, event = %n.event, subject = %n.subject,
                state = %n.state, "notification queued");
        }
        Ok(fresh)
    }

    /// One routing pass; returns how many notifications it wrote.
    pub async fn route(&self) -> Result<usize, StoreError> {
        if self.channels.is_empty() {
            return Ok(0);
        }
        let now = now_ms();
        let silences = self.active_silences(now).await?;
        let silence_for = |host: &HostView, family: Option<&str>| {
            silences.iter().find(|s| s.matches(host, family))
        };
        let mut written = 0;
        for e in self.store.unrouted_events(ROUTE_BATCH).await? {
            // an event over long ago (stored before a channel was set up) is history, not news
            if !e.open && e.ended_ms.is_some_and(|t| t < now - STALE_MS) {
                self.store
                    .mark_event_routed(&e.id, e.severity.rank(), true)
                    .await?;
                continue;
            }
            let silence = silence_for(&e.host, Some(&e.family));
            // an event opened and closed before a pass is still told both ways
            for ch in &self.channels {
                let c = &ch.config;
                if !Self::event_matches(c, &e) {
                    continue;
                }
                if self
                    .enqueue(
                        c,
                        &e.id,
                        "anomaly.opened",
                        &e.host,
                        e.severity.as_str(),
                        &e.family,
                        silence,
                        |id| self.event_body(&e, "anomaly.opened", id, now),
                        now,
                    )
                    .await?
                {
                    written += 1;
                }
            }
            if !e.open {
                let told = self
                    .store
                    .notified_channels(&e.id, "anomaly.opened")
                    .await?;
                for (name, state) in told {
                    let Some(ch) = self.channels.iter().find(|c| c.config.name == name) else {
                        continue;
                    };
                    // a silenced opening gets a silenced closing: nobody was told it began
                    let held = (state == "silenced").then(|| Silence {
                        id: String::new(),
                        labels: BTreeMap::new(),
                        hosts: Vec::new(),
                        families: Vec::new(),
                        starts_ms: 0,
                        ends_ms: 0,
                        comment: String::new(),
                        created_by: String::new(),
                        created_ms: 0,
                        expired_by: String::new(),
                    });
                    if self
                        .enqueue(
                            &ch.config,
                            &e.id,
                            "anomaly.closed",
                            &e.host,
                            e.severity.as_str(),
                            &e.family,
                            held.as_ref(),
                            |id| self.event_body(&e, "anomaly.closed", id, now),
                            now,
                        )
                        .await?
                    {
                        written += 1;
                    }
                }
            }
            self.store
                .mark_event_routed(&e.id, e.severity.rank(), !e.open)
                .await?;
        }
        for a in self.store.unrouted_actions(ROUTE_BATCH).await? {
            if !matches!(
                a.state.as_str(),
                "proposed" | "succeeded" | "failed" | "expired"
            ) || a.updated_ms < now - STALE_MS
            {
                // running, approved, rejected, refused, dry runs, and old news: nobody needs telling
                self.store.mark_action_routed(&a.id, &a.state).await?;
                continue;
            }
            let silence = silence_for(&a.host, None);
            let event = format!("remediation.{}", a.state);
            let severity = if a.state == "failed" { "high" } else { "low" };
            for ch in &self.channels {
                if !Self::action_matches(&ch.config, &a) {
                    continue;
                }
                if self
                    .enqueue(
                        &ch.config,
                        &a.id,
                        &event,
                        &a.host,
                        severity,
                        "",
                        silence,
                        |id| self.action_body(&a, &event, id, now),
                        now,
                    )
                    .await?
                {
                    written += 1;
                }
            }
            self.store.mark_action_routed(&a.id, &a.state).await?;
        }
        written += self.remind(now).await?;
        self.release_ended_silences(now, &silences).await?;
        Ok(written)
    }

    async fn remind(&self, now: i64) -> Result<usize, StoreError> {
        let mut written = 0;
        for ch in &self.channels {
            let every = ch.config.repeat_secs as i64 * 1000;
            if every == 0 {
                continue;
            }
            for (subject, told) in self
                .store
                .events_to_remind(&ch.config.name, now - every, ROUTE_BATCH)
                .await?
            {
                let Some(e) = self.store.event_view(&subject).await? else {
                    continue;
                };
                let event = format!("anomaly.reminder.{told}");
                if self
                    .enqueue(
                        &ch.config,
                        &e.id,
                        &event,
                        &e.host,
                        e.severity.as_str(),
                        &e.family,
                        None,
                        |id| self.event_body(&e, &event, id, now),
                        now,
                    )
                    .await?
                {
                    written += 1;
                }
            }
        }
        Ok(written)
    }

    /// An opening held by a silence that ended while its event is still open is sent now,
    /// unless another active silence holds it.
    async fn release_ended_silences(&self, now: i64, active: &[Silence]) -> Result<(), StoreError> {
        for (id, subject) in self.store.held_by_ended_silences(now).await? {
            let Some(e) = self.store.event_view(&subject).await? else {
                continue;
            };
            let other = active.iter().find(|s| s.matches(&e.host, Some(&e.family)));
            self.store
                .reconsider_silenced(&id, other.map(|s| s.id.as_str()), now)
                .await?;
        }
        Ok(())
    }

    /// One delivery pass over every channel, side by side; returns how many were sent.
    pub async fn deliver(&self) -> Result<usize, StoreError> {
        let passes = self.channels.iter().map(|ch| self.deliver_channel(ch));
        let mut sent = 0;
        for r in futures::future::join_all(passes).await {
            sent += r?;
        }
        Ok(sent)
    }

    /// Sends one channel's due notifications in order (one per subject per pass, so a
    /// closing never overtakes its opening).
    async fn deliver_channel(&self, ch: &send::Channel) -> Result<usize, StoreError> {
        let due = self
            .store
            .due_notifications(&ch.config.name, now_ms(), SEND_BATCH)
            .await?;
        let mut seen = std::collections::HashSet::new();
        let rows: Vec<(Notification, Value)> = due
            .into_iter()
            .filter(|(n, _)| seen.insert(n.subject.clone()))
            .collect();
        let lease = ch.timeout.as_millis() as i64 * 2 + 5_000;
        let mut sent = 0;
        for (n, body) in rows {
            let now = now_ms();
            if !self
                .store
                .claim_notification(&n.id, now, now + lease)
                .await?
            {
                continue;
            }
            let attempts = n.attempts + 1;
            match ch.send(&n, &body).await {
                Ok(()) => {
                    sent += 1;
                    self.store
                        .finish_attempt(&n.id, "sent", attempts, n.next_attempt_ms, "", now_ms())
                        .await?;
                    tracing::info!(channel = %n.channel, event = %n.event, subject = %n.subject,
                        attempts, "notification sent");
                }
                Err(e) => {
                    let give_up = e.permanent || attempts >= i64::from(self.max_attempts);
                    let next = now_ms() + e.retry_after_ms.unwrap_or_else(|| backoff_ms(attempts));
                    let state = if give_up { "failed" } else { "pending" };
                    self.store
                        .finish_attempt(
                            &n.id,
                            state,
                            attempts,
                            next,
                            &clip(&e.message, 500),
                            now_ms(),
                        )
                        .await?;
                    tracing::warn!(channel = %n.channel, event = %n.event, subject = %n.subject,
                        attempts, give_up, error = %e.message, "notification not delivered");
                }
            }
        }
        Ok(sent)
    }

    /// Routes and delivers every `every` until `stop`.
    pub async fn run(self: Arc<Self>, every: Duration, stop: tokio::sync::watch::Receiver<bool>) {
        if self.channels.is_empty() {
            return;
        }
        // routing and each channel's delivery loop on their own: a receiver that hangs until
        // the timeout holds up only its own channel
        let this: &Self = &self;
        // routing is fleet-wide work: the holder of its lease does it (writing a row twice is
        // harmless, reading every replica's way through the same events is not needed)
        let routing = Self::every(every, stop.clone(), || async {
            let leader = this
                .store
                .try_lease(ROUTE_LEASE, &this.holder, now_ms(), ROUTE_LEASE_MS)
                .await;
            match leader {
                Ok(true) => {
                    if let Err(e) = this.route().await {
                        tracing::warn!(error = %e, "notification routing failed; retrying");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot take the routing lease; retrying"),
            }
        });
        let deliveries = this.channels.iter().map(|ch| {
            Self::every(every, stop.clone(), move || async move {
                if let Err(e) = this.deliver_channel(ch).await {
                    tracing::warn!(channel = %ch.config.name, error = %e,
                        "notification delivery failed; retrying");
                }
            })
        });
        tokio::join!(routing, futures::future::join_all(deliveries));
        if let Err(e) = self.store.release_leases(&self.holder).await {
            tracing::debug!(error = %e, "cannot give up the routing lease; it lapses by itself");
        }
    }

    /// Runs `pass` every `every` (never two at once) until `stop`.
    async fn every<F, Fut>(every: Duration, mut stop: tokio::sync::watch::Receiver<bool>, pass: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            tokio::select! {
                () = pass() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// 2 s after the first failure, doubling, at most 5 min, with ±20 % jitter so a receiver
/// that comes back is not hit by every retry at once.
pub fn backoff_ms(attempts: i64) -> i64 {
    let base = 2_000_i64.saturating_mul(1_i64 << attempts.clamp(1, 20).saturating_sub(1));
    let capped = base.min(300_000);
    let jitter = (capped / 5).max(1);
    capped - jitter + rand::random_range(0..=2 * jitter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Contributor, Severity};

    fn host(id: &str, labels: &[(&str, &str)]) -> HostView {
        HostView {
            id: id.into(),
            hostname: String::new(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn silence(labels: &[(&str, &str)], hosts: &[&str], families: &[&str]) -> Silence {
        Silence {
            id: "sil-1".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            families: families.iter().map(|f| f.to_string()).collect(),
            starts_ms: 100,
            ends_ms: 200,
            comment: "maintenance".into(),
            created_by: "op".into(),
            created_ms: 0,
            expired_by: String::new(),
        }
    }

    #[test]
    fn silences_match_by_host_labels_and_family() {
        let db = host("db-1", &[("role", "db")]);
        let web = host("web-1", &[("role", "web")]);
        let by_label = silence(&[("role", "db")], &[], &["disk_io"]);
        assert!(by_label.matches(&db, Some("disk_io")));
        assert!(!by_label.matches(&db, Some("cpu")));
        assert!(!by_label.matches(&web, Some("disk_io")));
        assert!(
            by_label.matches(&db, None),
            "remediation outcomes of the hosts too"
        );
        let by_host = silence(&[], &["web-1"], &[]);
        assert!(by_host.matches(&web, Some("cpu")));
        assert!(!by_host.matches(&db, Some("cpu")));
        let everywhere = silence(&[], &[], &[]);
        assert!(everywhere.matches(&db, Some("memory")));
        assert!(everywhere.active(100) && everywhere.active(199));
        assert!(!everywhere.active(99) && !everywhere.active(200));
    }

    #[test]
    fn backoff_doubles_to_five_minutes_with_jitter() {
        for _ in 0..50 {
            let first = backoff_ms(1);
            assert!((1_600..=2_400).contains(&first), "{first}");
            let third = backoff_ms(3);
            assert!((6_400..=9_600).contains(&third), "{third}");
            let late = backoff_ms(40);
            assert!((240_000..=360_000).contains(&late), "{late}");
        }
    }

    #[test]
    fn summaries_name_severity_family_host_and_evidence() {
        let e = EventView {
            id: "web-1:7".into(),
            host: HostView {
                id: "web-1".into(),
                hostname: "web-1.example".into(),
                labels: BTreeMap::new(),
            },
            open: true,
            severity: Severity::High,
            family: "cpu".into(),
            top_metric: "cpu.user_pct".into(),
            contributors: vec![Contributor {
                metric: "cpu.user_pct".into(),
                value: 97.04,
                expected_low: 2.0,
                expected_high: 30.0,
                contribution: 0.8,
            }],
            started_ms: 0,
            ended_ms: None,
            recovered_ms: None,
            close_reason: String::new(),
            peak_score: 3.0,
            notified_rank: -1,
            close_notified: false,
            acked_by: String::new(),
            ack_note: String::new(),
        };
        assert_eq!(
            event_summary(&e, "anomaly.opened"),
            "[HIGH] cpu on web-1.example: cpu.user_pct 97.0 (expected 2.0–30.0)"
        );
        let held = EventView {
            recovered_ms: Some(60_000),
            ..e.clone()
        };
        assert_eq!(
            event_summary(&held, "anomaly.reminder.1"),
            "Recovered, held open in case it comes back [HIGH] cpu on web-1.example: cpu.user_pct \
             97.0 (expected 2.0–30.0)"
        );
        assert_eq!(
            event_summary(&e, "anomaly.reminder.1"),
            "Still open [HIGH] cpu on web-1.example: cpu.user_pct 97.0 (expected 2.0–30.0)"
        );
        let closed = EventView {
            open: false,
            close_reason: "recovered: cpu under its clear level for 15 s".into(),
            ..e
        };
        assert_eq!(
            event_summary(&closed, "anomaly.closed"),
            "Resolved [HIGH] cpu on web-1.example: recovered: cpu under its clear level for 15 s"
        );
    }
}
