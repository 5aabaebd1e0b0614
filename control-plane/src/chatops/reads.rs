//! The answers to the read intents: fleet and host status, anomalies and why one fired,
//! a metric's history, top processes, remediation actions and policies; each from the
//! fleet's reads, as a short text and the data behind it with links to the REST resources.
//!
//! Long (about 620 lines) because each read intent is its own short answer; they share one shape
//! and stay side by side.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use sco_chat::{ExplainTarget, HostRef, Intent, Lexicon, Scope};

use super::text::{
    action_line, ago, brief_event, bytes, describe_range, display, event_line, event_summary,
    explain_head, family_name, hostname, num, onset_summary, open_counts_summary, open_event_line,
    policy_line, sparkline,
};
use super::{Answer, ChatError, ChatOps, MAX_ITEMS, MAX_LINES, MAX_WINDOWS};
use crate::fleet::{now_ms, ActionQuery, ActionState, Anomaly, AnomalyQuery, RollupQuery};
use crate::store::StoreError;

impl ChatOps {
    /// Anomalies, a metric's history, top processes, actions and policies.
    pub(super) async fn read(
        &self,
        intent: &Intent,
        lex: &Lexicon,
        now: i64,
    ) -> Result<Answer, ChatError> {
        match intent {
            Intent::Anomalies {
                scope,
                min_severity,
                range,
                open_only,
            } => {
                let (host, hosts) = match scope {
                    Scope::Fleet => (None, None),
                    Scope::Host { host } => (Some(host.id.clone()), None),
                    Scope::Selector { labels } => (
                        None,
                        Some(
                            lex.hosts_matching(labels)
                                .into_iter()
                                .map(|h| h.id)
                                .collect::<Vec<_>>(),
                        ),
                    ),
                };
                let mut events = self
                    .fleet
                    .hosts
                    .anomalies(&AnomalyQuery {
                        host,
                        from_ms: range.map(|r| r.from_ms),
                        to_ms: range.map(|r| r.to_ms),
                        min_severity: *min_severity,
                        status: open_only.then(|| "open".to_string()),
                        limit: if hosts.is_some() {
                            1000
                        } else {
                            MAX_ITEMS as i64
                        },
                        offset: 0,
                    })
                    .await?;
                if let Some(hosts) = hosts {
                    events.retain(|e| hosts.contains(&e.host_id));
                }
                events.truncate(MAX_ITEMS);
                let mut text = match events.len() {
                    0 => format!("No {}.", intent.summary()),
                    n => format!("{n} {}:", intent.summary()),
                };
                for e in events.iter().take(MAX_LINES) {
                    text.push_str(&format!("\n• {}", event_line(e, lex)));
                }
                if events.len() > MAX_LINES {
                    text.push_str(&format!("\n… and {} more", events.len() - MAX_LINES));
                }
                let list: Vec<Value> = events.iter().map(event_summary).collect();
                Ok(Answer::new(
                    intent,
                    text,
                    json!({ "anomalies": list, "link": "/anomaly" }),
                ))
            }
            Intent::MetricHistory {
                host,
                metrics,
                range,
            } => {
                let mut series = Vec::new();
                let mut lines = Vec::new();
                for metric in metrics {
                    let points = self
                        .fleet
                        .hosts
                        .rollups(&RollupQuery {
                            host: host.id.clone(),
                            metric: Some(metric.clone()),
                            device: None,
                            from_ms: range.from_ms,
                            to_ms: range.to_ms,
                            limit: MAX_WINDOWS,
                        })
                        .await?;
                    // Windows come oldest first; at the limit the newest are missing.
                    let truncated = points.len() as i64 >= MAX_WINDOWS;
                    let mut by_device: BTreeMap<String, Vec<&crate::fleet::RollupPoint>> =
                        BTreeMap::new();
                    for p in &points {
                        by_device.entry(p.device.clone()).or_default().push(p);
                    }
                    if by_device.is_empty() {
                        lines.push(format!("{metric}: no data in that range"));
                    }
                    for (device, mut pts) in by_device {
                        pts.sort_by_key(|p| p.window_end_ms);
                        let min = pts.iter().map(|p| p.min).fold(f64::INFINITY, f64::min);
                        let max = pts.iter().map(|p| p.max).fold(f64::NEG_INFINITY, f64::max);
                        let count: i64 = pts.iter().map(|p| p.count.max(1)).sum();
                        let mean = pts
                            .iter()
                            .map(|p| p.mean * p.count.max(1) as f64)
                            .sum::<f64>()
                            / count.max(1) as f64;
                        let name = if device.is_empty() {
                            metric.clone()
                        } else {
                            format!("{metric} ({device})")
                        };
                        lines.push(format!(
                            "{name}: min {} · mean {} · max {} ({} windows{})",
                            num(min),
                            num(mean),
                            num(max),
                            pts.len(),
                            if truncated {
                                ", the oldest only: ask for a shorter range"
                            } else {
                                ""
                            }
                        ));
                        series.push(json!({
                            "metric": metric, "device": device,
                            "min": min, "mean": mean, "max": max,
                            "windows": pts.len(), "truncated": truncated,
                            "points": sparkline(&pts),
                        }));
                    }
                }
                let text = format!(
                    "{} on {}, {}:\n{}",
                    metrics.join(", "),
                    host.hostname,
                    describe_range(range.from_ms, range.to_ms, now),
                    lines.join("\n")
                );
                Ok(Answer::new(
                    intent,
                    text,
                    json!({
                        "host": host, "from_ms": range.from_ms, "to_ms": range.to_ms,
                        "series": series, "link": format!("/hosts/{}", host.id),
                    }),
                ))
            }
            Intent::TopProcesses { host, by } => {
                let detail = self
                    .fleet
                    .hosts
                    .host_detail(&host.id, self.stale_after_ms)
                    .await?
                    .ok_or_else(|| ChatError::NotFound(format!("no host {:?}", host.id)))?;
                let mut procs = detail.processes;
                let key = |p: &crate::fleet::ProcessRow| match by {
                    sco_policy::Consumer::Cpu => p.cpu_pct,
                    sco_policy::Consumer::Memory => p.rss_bytes as f64,
                    sco_policy::Consumer::Io => p.read_bytes_per_s + p.write_bytes_per_s,
                };
                procs.sort_by(|a, b| key(b).total_cmp(&key(a)));
                procs.truncate(10);
                let mut text = if procs.is_empty() {
                    format!("{} has not sent its processes yet.", host.hostname)
                } else {
                    format!("Top processes by {} on {}:", by.as_str(), host.hostname)
                };
                for p in procs.iter().take(MAX_LINES) {
                    text.push_str(&format!(
                        "\n• {} (pid {}): cpu {}%, rss {}",
                        p.name,
                        p.pid,
                        num(p.cpu_pct),
                        bytes(p.rss_bytes)
                    ));
                }
                Ok(Answer::new(
                    intent,
                    text,
                    json!({
                        "host": host, "sampled_at_ms": detail.processes_at_ms, "processes": procs,
                        "link": format!("/hosts/{}", host.id),
                    }),
                ))
            }
            Intent::Actions { host, state, range } => {
                let mut actions = self
                    .fleet
                    .remediation
                    .actions(&ActionQuery {
                        host: host.as_ref().map(|h| h.id.clone()),
                        state: *state,
                        rule: None,
                        limit: if range.is_some() {
                            1000
                        } else {
                            MAX_ITEMS as i64
                        },
                    })
                    .await?;
                if let Some(r) = range {
                    actions.retain(|a| a.created_at_ms >= r.from_ms && a.created_at_ms < r.to_ms);
                }
                actions.truncate(MAX_ITEMS);
                let mut text = match actions.len() {
                    0 => format!("No {}.", intent.summary()),
                    n => format!("{n} remediation action{}:", if n == 1 { "" } else { "s" }),
                };
                for a in actions.iter().take(MAX_LINES) {
                    text.push_str(&format!("\n• {}", action_line(a, lex)));
                }
                if actions.len() > MAX_LINES {
                    text.push_str(&format!("\n… and {} more", actions.len() - MAX_LINES));
                }
                let mut answer = Answer::new(
                    intent,
                    text,
                    json!({ "actions": actions, "link": "/remediation/actions" }),
                );
                answer.proposals = actions
                    .iter()
                    .filter(|a| a.state == ActionState::Proposed)
                    .map(|a| (a.id.clone(), action_line(a, lex)))
                    .collect();
                Ok(answer)
            }
            Intent::PolicyStatus { policy: Some(name) } => {
                let status = self.fleet.policies.policy_status(name).await?;
                Ok(Answer::new(
                    intent,
                    policy_line(&status),
                    json!({ "status": status, "link": format!("/policies/{name}/status") }),
                ))
            }
            Intent::PolicyStatus { policy: None } => {
                let policies = self.fleet.policies.policies().await?;
                let mut text = match policies.len() {
                    0 => "No policies yet.".to_string(),
                    n => format!("{n} polic{}:", if n == 1 { "y" } else { "ies" }),
                };
                let mut list = Vec::new();
                for (p, rollout) in &policies {
                    let state = rollout.as_ref().map_or("not rolled out".to_string(), |r| {
                        format!("rollout of revision {} {}", r.revision, r.state.as_str())
                    });
                    text.push_str(&format!("\n• {} revision {}: {state}", p.name, p.revision));
                    list.push(json!({
                        "name": p.name, "revision": p.revision, "rollout": rollout,
                        "link": format!("/policies/{}/status", p.name),
                    }));
                }
                Ok(Answer::new(intent, text, json!({ "policies": list })))
            }
            other => Err(ChatError::Invalid(format!(
                "{} is not answered from the fleet's reads",
                other.name()
            ))),
        }
    }

    pub(super) async fn fleet_status(
        &self,
        intent: &Intent,
        selector: &sco_chat::Selector,
    ) -> Result<Answer, ChatError> {
        let snapshot = self.fleet.hosts.fleet_snapshot(self.stale_after_ms).await?;
        let hosts: Vec<_> = snapshot
            .hosts
            .iter()
            .filter(|h| selector.iter().all(|(k, v)| h.labels.get(k) == Some(v)))
            .collect();
        // each host's open events: how many, how many of them held, and how they read
        let open = |id: &str| -> (i64, i64, Option<String>) {
            let rows: Vec<_> = snapshot
                .open_anomalies
                .iter()
                .filter(|o| o.host_id == id)
                .collect();
            (
                rows.iter().map(|o| o.count).sum(),
                rows.iter().map(|o| o.held).sum(),
                open_counts_summary(&rows),
            )
        };
        let connected = hosts.iter().filter(|h| h.connected).count();
        let mut text = format!(
            "{} host{}: {connected} connected, {} disconnected.",
            hosts.len(),
            if hosts.len() == 1 { "" } else { "s" },
            hosts.len() - connected
        );
        let mut troubled = 0;
        let mut list = Vec::new();
        for h in &hosts {
            let (count, held, summary) = open(&h.id);
            if let Some(summary) = summary {
                troubled += 1;
                if troubled <= MAX_LINES {
                    text.push_str(&format!("\n• {} ({}): {summary}", h.hostname, h.id));
                }
            }
            list.push(json!({
                "id": h.id, "hostname": h.hostname, "connected": h.connected,
                "labels": h.labels, "agent_version": h.agent_version,
                "last_seen_ms": h.last_seen_ms, "open_anomalies": count,
                "held_anomalies": held,
                "link": format!("/hosts/{}", h.id),
            }));
        }
        if troubled == 0 && !hosts.is_empty() {
            text.push_str(" No open anomalies.");
        }
        list.truncate(MAX_ITEMS);
        Ok(Answer::new(
            intent,
            text,
            json!({ "hosts": list, "link": "/hosts" }),
        ))
    }

    pub(super) async fn host_status(
        &self,
        intent: &Intent,
        host: &HostRef,
    ) -> Result<Answer, ChatError> {
        let detail = self
            .fleet
            .hosts
            .host_detail(&host.id, self.stale_after_ms)
            .await?
            .ok_or_else(|| ChatError::NotFound(format!("no host {:?}", host.id)))?;
        let open = self.open_events(&host.id).await?;
        let h = &detail.host;
        let mut text = format!(
            "{} ({}) is {}, last seen {}.",
            h.hostname,
            h.id,
            if h.connected {
                "connected"
            } else {
                "disconnected"
            },
            ago(h.last_seen_ms, now_ms())
        );
        let key: Vec<String> = ["cpu.total_pct", "mem.used_pct", "load.1", "swap.used_pct"]
            .iter()
            .filter_map(|m| {
                detail
                    .latest
                    .iter()
                    .find(|v| v.metric == *m && v.device.is_empty())
                    .map(|v| format!("{m} {}", num(v.value)))
            })
            .collect();
        if !key.is_empty() {
            text.push_str(&format!(" Now: {}.", key.join(", ")));
        }
        match open.len() {
            0 => text.push_str(" No open anomalies."),
            n => {
                text.push_str(&format!(
                    " {n} open anomal{}:",
                    if n == 1 { "y" } else { "ies" }
                ));
                let now = now_ms();
                for e in open.iter().take(MAX_LINES) {
                    text.push_str(&format!("\n• {}", open_event_line(e, now)));
                }
            }
        }
        Ok(Answer::new(
            intent,
            text,
            json!({
                "host": {
                    "id": h.id, "hostname": h.hostname, "connected": h.connected,
                    "labels": h.labels, "agent_version": h.agent_version,
                    "last_seen_ms": h.last_seen_ms, "detector": h.detector,
                },
                "latest": detail.latest,
                "anomalies": open.iter().map(event_summary).collect::<Vec<_>>(),
                "link": format!("/hosts/{}", h.id),
            }),
        ))
    }

    /// A host's open events, the most severe and then the newest first.
    pub(super) async fn open_events(&self, host: &str) -> Result<Vec<Anomaly>, StoreError> {
        let mut open = self
            .fleet
            .hosts
            .anomalies(&AnomalyQuery {
                host: Some(host.to_string()),
                status: Some("open".into()),
                limit: MAX_ITEMS as i64,
                ..AnomalyQuery::default()
            })
            .await?;
        open.sort_by(|a, b| {
            b.severity
                .rank()
                .cmp(&a.severity.rank())
                .then(b.started_ms.cmp(&a.started_ms))
        });
        Ok(open)
    }

    pub(super) async fn explain(
        &self,
        intent: &Intent,
        target: &ExplainTarget,
        lex: &Lexicon,
        now: i64,
    ) -> Result<Answer, ChatError> {
        let (event, others, host_name) = match target {
            ExplainTarget::Event { id } => {
                let e = self
                    .fleet
                    .hosts
                    .anomaly(id)
                    .await?
                    .ok_or_else(|| ChatError::NotFound(format!("no anomaly {id:?}")))?;
                let name = hostname(lex, &e.host_id);
                (e, Vec::new(), name)
            }
            ExplainTarget::Host { host } => {
                let open = self.open_events(&host.id).await?;
                let Some(first) = open.first() else {
                    let recent = self
                        .fleet
                        .hosts
                        .anomalies(&AnomalyQuery {
                            host: Some(host.id.clone()),
                            limit: 1,
                            ..AnomalyQuery::default()
                        })
                        .await?;
                    let mut text = format!(
                        "Nothing is wrong with {} that I can see: no open anomalies.",
                        host.hostname
                    );
                    if let Some(e) = recent.first() {
                        text.push_str(&format!(
                            " The last one was {} ({} {}, {}, {}).",
                            e.id,
                            family_name(&e.family),
                            e.severity.as_str(),
                            ago(e.started_ms, now),
                            if e.close_reason.is_empty() {
                                e.status.clone()
                            } else {
                                e.close_reason.clone()
                            }
                        ));
                    }
                    return Ok(Answer::new(
                        intent,
                        text,
                        json!({ "host": host, "anomalies": recent.iter().map(event_summary).collect::<Vec<_>>(),
                                "link": format!("/hosts/{}", host.id) }),
                    ));
                };
                let e = self
                    .fleet
                    .hosts
                    .anomaly(&first.id)
                    .await?
                    .unwrap_or_else(|| first.clone());
                let others: Vec<Anomaly> = open.iter().skip(1).cloned().collect();
                (e, others, display(host))
            }
        };
        let mut text = explain_head(&event, &host_name, now);
        let mut contributors = event.contributors.clone();
        contributors.sort_by(|a, b| b.contribution.total_cmp(&a.contribution));
        if let Some(top) = contributors.first() {
            text.push_str(&format!(
                " Top contributor: {} = {} (expected {} to {}).",
                top.metric,
                num(top.value),
                num(top.expected_low),
                num(top.expected_high)
            ));
        }
        let also: Vec<String> = contributors
            .iter()
            .skip(1)
            .take(3)
            .map(|c| {
                format!(
                    "{} = {} (expected {}–{})",
                    c.metric,
                    num(c.value),
                    num(c.expected_low),
                    num(c.expected_high)
                )
            })
            .collect();
        if !also.is_empty() {
            text.push_str(&format!(" Also: {}.", also.join("; ")));
        }
        if !event.culprits.is_empty() {
            let culprits: Vec<String> = event
                .culprits
                .iter()
                .take(3)
                .map(|p| format!("{} (pid {}, cpu {}%)", p.name, p.pid, num(p.cpu_pct)))
                .collect();
            text.push_str(&format!(" Likely culprits: {}.", culprits.join(", ")));
        }
        let onset = onset_summary(event.context.as_ref());
        if let Some(line) = onset.iter().find(|s| {
            contributors
                .first()
                .is_some_and(|c| s["metric"] == c.metric.as_str())
        }) {
            text.push_str(&format!(
                " Around the onset {} ranged {} to {} (mean {}).",
                line["metric"].as_str().unwrap_or_default(),
                num(line["min"].as_f64().unwrap_or(f64::NAN)),
                num(line["max"].as_f64().unwrap_or(f64::NAN)),
                num(line["mean"].as_f64().unwrap_or(f64::NAN)),
            ));
        }
        if !others.is_empty() {
            text.push_str(&format!(
                " {} more open: {}.",
                others.len(),
                others
                    .iter()
                    .take(3)
                    .map(brief_event)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let runbooks = self.runbooks.for_event(&event).await?;
        match runbooks.first() {
            Some(first) => text.push_str(&format!(
                " Runbook: \"{}\" (/runbooks/{}){}.",
                first.title,
                first.id,
                match runbooks.len() {
                    1 => String::new(),
                    n => format!(", and {} more", n - 1),
                }
            )),
            None => text.push_str(" No runbook matches it."),
        }
        Ok(Answer::new(
            intent,
            text,
            json!({
                "anomaly": event_summary(&event),
                "contributors": contributors,
                "culprits": event.culprits,
                "onset": onset,
                "others": others.iter().map(event_summary).collect::<Vec<_>>(),
                "runbooks": runbooks,
                "link": format!("/anomaly/{}", event.id),
            }),
        ))
    }

    /// Runbooks matching free text, best first.
    pub(super) async fn search_runbooks(
        &self,
        intent: &Intent,
        query: &str,
    ) -> Result<Answer, ChatError> {
        let found = self.runbooks.search(query, 5).await?;
        let text = match found.as_slice() {
            [] => format!(
                "No runbook matches {query:?}. GET /runbooks lists them all; ask \"what's wrong \
                 with <host>?\" for the evidence behind an anomaly and the runbooks for it."
            ),
            [one] => format!("One runbook: \"{}\" (/runbooks/{}).", one.title, one.id),
            many => format!(
                "{} runbooks, best first: {}.",
                many.len(),
                many.iter()
                    .map(|c| format!("\"{}\" (/runbooks/{})", c.title, c.id))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        Ok(Answer::new(intent, text, json!({ "runbooks": found })))
    }
}
