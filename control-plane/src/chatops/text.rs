//! How answers read: numbers, sizes, times, hosts, one line per event, action or policy, and
//! the series and onset summaries of the data.

use serde_json::{json, Value};

use sco_chat::{HostRef, Lexicon};

use super::MAX_SERIES_POINTS;
use crate::domain::policy::PolicyRolloutStatus;
use crate::fleet::{ActionRecord, Anomaly, OpenAnomalies};

/// `[end ms, mean]` of each window, averaged into at most [`MAX_SERIES_POINTS`] buckets of
/// consecutive windows (weighted by their sample counts).
pub(super) fn sparkline(pts: &[&crate::fleet::RollupPoint]) -> Vec<Value> {
    let per = pts.len().div_ceil(MAX_SERIES_POINTS).max(1);
    pts.chunks(per)
        .filter_map(|chunk| {
            let last = chunk.last()?;
            let n: i64 = chunk.iter().map(|p| p.count.max(1)).sum();
            let mean = chunk
                .iter()
                .map(|p| p.mean * p.count.max(1) as f64)
                .sum::<f64>()
                / n.max(1) as f64;
            Some(json!([last.window_end_ms, mean]))
        })
        .collect()
}

/// A host as people read it: its hostname, with its id when the two differ.
pub(super) fn hostname(lex: &Lexicon, id: &str) -> String {
    lex.hosts()
        .iter()
        .find(|h| h.id == id)
        .map_or_else(|| id.to_string(), |h| display(&h.host_ref()))
}

pub(super) fn display(h: &HostRef) -> String {
    if h.hostname == h.id || h.hostname.is_empty() {
        h.id.clone()
    } else {
        format!("{} ({})", h.hostname, h.id)
    }
}

pub(super) fn family_name(family: &str) -> &str {
    if family.is_empty() {
        "host"
    } else {
        family
    }
}

pub(super) fn event_line(e: &Anomaly, lex: &Lexicon) -> String {
    format!(
        "{} on {}: {} {}, {}, top {} (score {})",
        e.id,
        hostname(lex, &e.host_id),
        family_name(&e.family),
        e.severity.as_str(),
        status_text(e),
        e.top_metric,
        num(e.peak_score)
    )
}

/// `open`, `closed`, or for an open event that recovered and is held (it ends where it
/// recovered unless it fires again): `open, recovered at 2026-12-05 03:12:07 UTC and held`.
fn status_text(e: &Anomaly) -> String {
    match held(e) {
        Some(held) => format!("open, {held}"),
        None => e.status.clone(),
    }
}

/// `recovered at 2026-12-05 03:12:07 UTC and held` for an open event that recovered and is
/// held open in case it comes back; `None` for one still firing and for a closed one.
fn held(e: &Anomaly) -> Option<String> {
    match e.recovered_ms {
        Some(at) if e.status == "open" => Some(format!(
            "recovered at {} and held",
            sco_policy::utc::utc(at)
        )),
        _ => None,
    }
}

/// `, recovered at … and held` after an event's status, or nothing.
fn held_clause(e: &Anomaly) -> String {
    held(e).map(|h| format!(", {h}")).unwrap_or_default()
}

/// One open event of a host's status: `cpu high since 5 min ago (top: cpu.user_pct)`, or
/// for a held one `cpu high since 5 min ago, recovered at … UTC and held (top: cpu.user_pct)`.
pub(super) fn open_event_line(e: &Anomaly, now: i64) -> String {
    format!(
        "{} {} since {}{} (top: {})",
        family_name(&e.family),
        e.severity.as_str(),
        ago(e.started_ms, now),
        held_clause(e),
        e.top_metric
    )
}

/// The first sentence of why an event fired: `web-1 has a high cpu anomaly (web-1:7), open
/// since 5 min ago, score 0.2 (peak 0.9).`, with `, recovered at … UTC and held` after its
/// age when it is held.
pub(super) fn explain_head(e: &Anomaly, host_name: &str, now: i64) -> String {
    format!(
        "{host_name} has a {} {} anomaly ({}), {} since {}{}, score {} (peak {}).",
        e.severity.as_str(),
        family_name(&e.family),
        e.id,
        e.status,
        ago(e.started_ms, now),
        held_clause(e),
        num(e.score),
        num(e.peak_score)
    )
}

/// A host's open events in the fleet's status, from their counts per family and severity:
/// `3 open anomalies (cpu high, memory low)`, with `, 2 of them recovered and held` when some
/// recovered and are held open in case they come back (`, recovered and held` of a single
/// one); `None` when the host has none open.
pub(super) fn open_counts_summary(rows: &[&OpenAnomalies]) -> Option<String> {
    let count: i64 = rows.iter().map(|o| o.count).sum();
    if count <= 0 {
        return None;
    }
    let held: i64 = rows.iter().map(|o| o.held).sum();
    let kinds: Vec<String> = rows
        .iter()
        .filter(|o| o.count > 0)
        .map(|o| format!("{} {}", family_name(&o.family), o.severity.as_str()))
        .collect();
    let held = match held {
        0 => String::new(),
        _ if count == 1 => ", recovered and held".to_string(),
        n => format!(", {n} of them recovered and held"),
    };
    Some(format!(
        "{count} open anomal{} ({}){held}",
        if count == 1 { "y" } else { "ies" },
        kinds.join(", ")
    ))
}

/// Another open event named in passing: `cpu high`, or `cpu high (recovered at … UTC and
/// held)`.
pub(super) fn brief_event(e: &Anomaly) -> String {
    let kind = format!("{} {}", family_name(&e.family), e.severity.as_str());
    match held(e) {
        Some(held) => format!("{kind} ({held})"),
        None => kind,
    }
}

/// An event without its context series (those are at its link).
pub(super) fn event_summary(e: &Anomaly) -> Value {
    json!({
        "id": e.id, "host_id": e.host_id, "status": e.status, "severity": e.severity.as_str(),
        "family": e.family, "top_metric": e.top_metric, "score": e.score,
        "peak_score": e.peak_score, "started_ms": e.started_ms, "ended_ms": e.ended_ms,
        "close_reason": e.close_reason, "recovered_ms": e.recovered_ms,
        "link": format!("/anomaly/{}", e.id), "host_link": format!("/hosts/{}", e.host_id),
    })
}

pub(super) fn action_line(a: &ActionRecord, lex: &Lexicon) -> String {
    let kind = a.action["type"].as_str().unwrap_or("action");
    let why = if a.reason.is_empty() {
        String::new()
    } else {
        format!(" ({})", a.reason)
    };
    format!(
        "{} {kind} on {} by {}: {}{why}",
        a.id,
        hostname(lex, &a.host_id),
        a.rule,
        a.state.as_str()
    )
}

pub(super) fn policy_line(s: &PolicyRolloutStatus) -> String {
    let in_sync = s.hosts.iter().filter(|h| h.in_sync).count();
    let failing: Vec<&str> = s
        .hosts
        .iter()
        .filter(|h| !h.error.is_empty())
        .map(|h| h.host_id.as_str())
        .collect();
    let mut text = match &s.rollout {
        Some(r) => format!(
            "Policy {}: rollout of revision {} is {}; {in_sync} of {} hosts in sync.",
            s.name,
            r.revision,
            r.state.as_str(),
            s.hosts.len()
        ),
        None => format!("Policy {} has not been rolled out.", s.name),
    };
    if !failing.is_empty() {
        text.push_str(&format!(" Refused on: {}.", failing.join(", ")));
    }
    text
}

/// Min, mean and max of each context series of an event (the seconds around its onset).
pub(super) fn onset_summary(context: Option<&Value>) -> Vec<Value> {
    let Some(series) = context.and_then(|c| c["series"].as_array().or(c.as_array())) else {
        return Vec::new();
    };
    series
        .iter()
        .filter_map(|s| {
            let metric = s["metric"].as_str()?;
            let values: Vec<f64> = s["values"]
                .as_array()?
                .iter()
                .filter_map(Value::as_f64)
                .collect();
            if values.is_empty() {
                return None;
            }
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            Some(json!({ "metric": metric, "min": min, "mean": mean, "max": max, "samples": values.len() }))
        })
        .collect()
}

/// A number as people read it: no more than three decimals, no trailing zeros.
pub(super) fn num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let digits = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 1.0 {
        1
    } else {
        3
    };
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

pub(super) fn bytes(b: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if b as f64 >= 1024.0 * MIB {
        format!("{} GiB", num(b as f64 / (1024.0 * MIB)))
    } else {
        format!("{} MiB", num(b as f64 / MIB))
    }
}

pub(super) fn ago(ms: i64, now: i64) -> String {
    let secs = (now - ms).max(0) / 1000;
    match secs {
        0..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=172_799 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

pub(super) fn describe_range(from: i64, to: i64, now: i64) -> String {
    if (now - to).abs() < 60_000 {
        let mins = (to - from) / 60_000;
        if mins % 60 == 0 {
            format!("last {} h", mins / 60)
        } else {
            format!("last {mins} min")
        }
    } else {
        format!("from {from} to {to} (Unix ms)")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::Severity;

    fn event(status: &str, recovered_ms: Option<i64>) -> Anomaly {
        Anomaly {
            id: "web-1-0a1b:7".into(),
            host_id: "web-1-0a1b".into(),
            status: status.into(),
            started_ms: 1_796_213_000_000,
            updated_ms: 1_796_213_400_000,
            ended_ms: (status == "closed").then_some(1_796_213_500_000),
            score: 0.2,
            peak_score: 0.9,
            severity: Severity::High,
            family: "cpu".into(),
            top_metric: "cpu.user_pct".into(),
            contributors: Vec::new(),
            culprits: Vec::new(),
            model: "test".into(),
            close_reason: String::new(),
            recovered_ms,
            context: None,
        }
    }

    /// An open event that recovered reads as held, with when it recovered; a firing one and
    /// a closed one do not.
    #[test]
    fn an_event_line_says_held_only_of_an_open_event_that_recovered() {
        let mut lex = Lexicon::new();
        lex.add_host("web-1-0a1b", "web-1", BTreeMap::new());
        let recovered = Some(1_796_213_407_999);

        let held = event_line(&event("open", recovered), &lex);
        assert_eq!(
            held,
            "web-1-0a1b:7 on web-1 (web-1-0a1b): cpu high, \
             open, recovered at 2026-12-02 12:10:07 UTC and held, top cpu.user_pct (score 0.9)"
        );

        let firing = event_line(&event("open", None), &lex);
        assert!(firing.contains(", open, top "), "{firing}");
        assert!(!firing.contains("held"), "{firing}");
        assert!(!firing.contains("recovered"), "{firing}");

        // A closed event keeps no hold, whatever its last update said.
        let closed = event_line(&event("closed", recovered), &lex);
        assert!(closed.contains(", closed, top "), "{closed}");
        assert!(!closed.contains("held"), "{closed}");
    }

    /// A host's status lists a held open event as recovered and held, with when it recovered;
    /// a firing one and a closed one are not.
    #[test]
    fn a_host_status_line_says_held_only_of_an_open_event_that_recovered() {
        let recovered = Some(1_796_213_407_999);
        let now = 1_796_213_720_000; // 12 minutes after the event started

        let held = open_event_line(&event("open", recovered), now);
        assert_eq!(
            held,
            "cpu high since 12 min ago, recovered at 2026-12-02 12:10:07 UTC and held \
             (top: cpu.user_pct)"
        );

        let firing = open_event_line(&event("open", None), now);
        assert_eq!(firing, "cpu high since 12 min ago (top: cpu.user_pct)");

        let closed = open_event_line(&event("closed", recovered), now);
        assert!(!closed.contains("held"), "{closed}");
        assert!(!closed.contains("recovered"), "{closed}");
    }

    /// Why an event fired says it is held, with when it recovered, of an open event that
    /// recovered, both of the event explained and of the others open on its host; not of a
    /// firing event or a closed one.
    #[test]
    fn why_an_event_fired_says_held_only_of_an_open_event_that_recovered() {
        let recovered = Some(1_796_213_407_999);
        let now = 1_796_213_720_000;
        let host = "web-1 (web-1-0a1b)";

        let held = explain_head(&event("open", recovered), host, now);
        assert_eq!(
            held,
            "web-1 (web-1-0a1b) has a high cpu anomaly (web-1-0a1b:7), open since 12 min ago, \
             recovered at 2026-12-02 12:10:07 UTC and held, score 0.2 (peak 0.9)."
        );
        let firing = explain_head(&event("open", None), host, now);
        assert_eq!(
            firing,
            "web-1 (web-1-0a1b) has a high cpu anomaly (web-1-0a1b:7), open since 12 min ago, \
             score 0.2 (peak 0.9)."
        );
        let closed = explain_head(&event("closed", recovered), host, now);
        assert!(closed.contains(", closed since "), "{closed}");
        assert!(!closed.contains("held"), "{closed}");

        assert_eq!(
            brief_event(&event("open", recovered)),
            "cpu high (recovered at 2026-12-02 12:10:07 UTC and held)"
        );
        assert_eq!(brief_event(&event("open", None)), "cpu high");
        assert_eq!(brief_event(&event("closed", recovered)), "cpu high");
    }

    /// The fleet's status says how many of a host's open events recovered and are held, from
    /// the counts per family and severity; nothing of a hold when none recovered.
    #[test]
    fn the_fleet_status_says_how_many_open_events_are_held() {
        let row = |family: &str, severity, count, held| OpenAnomalies {
            host_id: "web-1-0a1b".into(),
            family: family.into(),
            severity,
            count,
            held,
            max_score: 0.9,
        };
        let (cpu, disk, memory) = (
            row("cpu", Severity::High, 2, 1),
            row("disk_io", Severity::Medium, 1, 1),
            row("memory", Severity::Low, 1, 0),
        );
        assert_eq!(
            open_counts_summary(&[&cpu, &disk, &memory]).as_deref(),
            Some(
                "4 open anomalies (cpu high, disk_io medium, memory low), \
                 2 of them recovered and held"
            )
        );
        let firing = row("cpu", Severity::High, 3, 0);
        assert_eq!(
            open_counts_summary(&[&firing, &memory]).as_deref(),
            Some("4 open anomalies (cpu high, memory low)")
        );
        assert_eq!(
            open_counts_summary(&[&disk]).as_deref(),
            Some("1 open anomaly (disk_io medium), recovered and held")
        );
        assert_eq!(
            open_counts_summary(&[&memory]).as_deref(),
            Some("1 open anomaly (memory low)")
        );
        let all = row("cpu", Severity::High, 2, 2);
        assert_eq!(
            open_counts_summary(&[&all]).as_deref(),
            Some("2 open anomalies (cpu high), 2 of them recovered and held")
        );
        assert_eq!(open_counts_summary(&[]), None);
    }
}
