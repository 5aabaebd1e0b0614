//! Rule evaluation: which rules of the policies in force fire at this tick.
//!
//! A rule's condition must hold for `for_secs` without interruption; it then
//! fires once. While it keeps holding it fires again only after its
//! cooldown (at least a minute), so a condition that an action did not fix
//! is not proposed on every tick; once it stops holding, the next time it
//! holds is a new episode. Whether an action then really runs is decided by
//! the remediator (limits, budget, breaker, lease), not here; it also keeps
//! a rule that fires again while it cools down (a long cooldown, or a
//! condition that flaps) from reporting the same refusal each time
//! ([`crate::remediate::Remediator::precheck`]).

use std::collections::HashMap;

use sco_models::detect::{Anomaly, EventChange, EventKind, Family, Severity};

use super::store::PolicyStore;
use super::{Condition, Rule};
use sco_policy::glob_match;

/// An open anomaly event as the rules see it.
#[derive(Debug, Clone)]
struct OpenEvent {
    started_ms: i64,
    severity: Severity,
    family: Family,
    metrics: Vec<String>,
}

/// A rule whose condition fired.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub policy: String,
    pub revision: u64,
    pub rule: Rule,
    /// What held: the matching anomaly and the state values, for the report.
    pub evidence: serde_json::Value,
}

impl Trigger {
    /// `policy/rule`: the key of limits, breakers and fleet leases.
    pub fn qualified(&self) -> String {
        format!("{}/{}", self.policy, self.rule.name)
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Episode {
    since_ms: Option<i64>,
    fired_ms: Option<i64>,
}

#[derive(Debug, Default)]
pub struct Engine {
    open: HashMap<u64, OpenEvent>,
    episodes: HashMap<String, Episode>,
}

impl Engine {
    /// Follows the detector's events.
    pub fn on_event(&mut self, change: &EventChange) {
        let e: &Anomaly = &change.event;
        match change.kind {
            // closed, or held open after recovering in case it comes back: not an anomaly now
            EventKind::Closed => {
                self.open.remove(&e.local_id);
            }
            _ if e.recovered_ms.is_some() => {
                self.open.remove(&e.local_id);
            }
            _ => {
                self.open.insert(
                    e.local_id,
                    OpenEvent {
                        started_ms: e.started_ms,
                        severity: e.severity,
                        family: e.family,
                        metrics: e.contributors.iter().map(|c| c.metric.clone()).collect(),
                    },
                );
            }
        }
    }

    /// Rules that fire at `now_ms` given the latest metric values (keyed as
    /// the detector names them).
    pub fn evaluate(
        &mut self,
        policies: &PolicyStore,
        values: &HashMap<String, f64>,
        now_ms: i64,
    ) -> Vec<Trigger> {
        let mut fired = Vec::new();
        let mut seen = Vec::new();
        for (name, revision, policy) in policies.iter() {
            for rule in &policy.rules {
                // A new revision of the policy starts every episode afresh.
                let key = format!("{name}/{}@{revision}", rule.name);
                let evidence = self.holds(&rule.when, values);
                let ep = self.episodes.entry(key.clone()).or_default();
                seen.push(key);
                let Some(evidence) = evidence else {
                    *ep = Episode::default();
                    continue;
                };
                let since = *ep.since_ms.get_or_insert(now_ms);
                let held_ms = now_ms - since;
                if held_ms < secs_ms(rule.when.for_secs) {
                    continue;
                }
                let again_after = secs_ms(rule.cooldown_secs.max(60));
                if ep.fired_ms.is_some_and(|t| now_ms - t < again_after) {
                    continue;
                }
                ep.fired_ms = Some(now_ms);
                let mut evidence = evidence;
                evidence["held_ms"] = held_ms.into();
                fired.push(Trigger {
                    policy: name.to_string(),
                    revision,
                    rule: rule.clone(),
                    evidence,
                });
            }
        }
        // Rules that left (policy replaced) start over if they come back.
        self.episodes.retain(|k, _| seen.contains(k));
        fired
    }

    /// Evidence if `c` holds now.
    fn holds(&self, c: &Condition, values: &HashMap<String, f64>) -> Option<serde_json::Value> {
        let mut evidence = serde_json::json!({});
        if let Some(a) = &c.anomaly {
            let event = self.open.iter().find(|(_, e)| {
                e.severity >= a.min_severity
                    && (a.families.is_empty() || a.families.contains(&e.family))
                    && (a.metrics.is_empty()
                        || e.metrics
                            .iter()
                            .any(|m| a.metrics.iter().any(|g| glob_match(g, m))))
            })?;
            evidence["anomaly"] = serde_json::json!({
                "local_id": event.0,
                "started_ms": event.1.started_ms,
                "severity": event.1.severity,
                "family": event.1.family,
                "metrics": event.1.metrics,
            });
        }
        let mut state = Vec::new();
        for s in &c.state {
            let v = *values.get(&s.metric)?;
            if !s.op.holds(v, s.value) {
                return None;
            }
            state.push(serde_json::json!({ "condition": s.to_string(), "value": v }));
        }
        if !state.is_empty() {
            evidence["state"] = state.into();
        }
        Some(evidence)
    }
}

fn secs_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse;
    use crate::policy::test_keys::{keypair, public, sign};
    use sco_models::detect::{Contributor, Family};

    fn store(dir: &std::path::Path, yaml: &str) -> PolicyStore {
        let k = keypair();
        let db = sled::open(dir).expect("db");
        let mut s = PolicyStore::open(&db, Some(public(&k))).expect("open");
        s.apply(sign(&k, &parse(yaml).expect("valid"), 1))
            .expect("apply");
        s
    }

    fn event(kind: EventKind, id: u64, metric: &str, severity: Severity) -> EventChange {
        EventChange {
            kind,
            event: Anomaly {
                local_id: id,
                family: Family::of(metric),
                close_reason: None,
                recovered_ms: None,
                started_ms: 0,
                updated_ms: 0,
                ended_ms: None,
                score: 0.9,
                peak_score: 0.9,
                severity,
                contributors: vec![Contributor {
                    metric: metric.into(),
                    value: 99.0,
                    expected_low: 0.0,
                    expected_high: 20.0,
                    contribution: 1.0,
                }],
            },
        }
    }

    const POLICY: &str = "name: p\nrules:\n  - name: r\n    when:\n      anomaly: { metrics: ['cpu.*'], min_severity: medium }\n      \
         state: ['cpu.total_pct > 80']\n      for_secs: 2\n    action: { type: kill_process, pattern: '*burn*' }\n    cooldown_secs: 0\n";

    #[test]
    fn fires_once_per_episode_after_the_condition_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path(), POLICY);
        let mut e = Engine::default();
        let hot: HashMap<String, f64> = [("cpu.total_pct".to_string(), 95.0)].into();
        let cold: HashMap<String, f64> = [("cpu.total_pct".to_string(), 5.0)].into();

        // State alone is not enough: the anomaly part must hold too.
        assert!(e.evaluate(&s, &hot, 0).is_empty());
        // A low-severity or non-CPU anomaly does not match.
        e.on_event(&event(EventKind::Opened, 1, "cpu.total_pct", Severity::Low));
        e.on_event(&event(EventKind::Opened, 2, "mem.used_pct", Severity::High));
        assert!(e.evaluate(&s, &hot, 0).is_empty());
        assert!(e.evaluate(&s, &hot, 5_000).is_empty());
        e.on_event(&event(
            EventKind::Updated,
            1,
            "cpu.total_pct",
            Severity::High,
        ));
        assert!(
            e.evaluate(&s, &hot, 6_000).is_empty(),
            "must hold for 2 s first"
        );
        let t = e.evaluate(&s, &hot, 8_000);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].qualified(), "p/r");
        assert_eq!(t[0].evidence["anomaly"]["local_id"], 1);
        assert_eq!(t[0].evidence["state"][0]["value"], 95.0);
        // Still holding: not again within a minute.
        assert!(e.evaluate(&s, &hot, 30_000).is_empty());
        assert_eq!(e.evaluate(&s, &hot, 68_000).len(), 1);
        // Stops holding, then holds again: a new episode, after for_secs.
        assert!(e.evaluate(&s, &cold, 69_000).is_empty());
        assert!(e.evaluate(&s, &hot, 70_000).is_empty());
        assert_eq!(e.evaluate(&s, &hot, 72_000).len(), 1);
        // An event held after recovering ends the condition; firing again, it holds again.
        let mut held = event(EventKind::Updated, 1, "cpu.total_pct", Severity::High);
        held.event.recovered_ms = Some(150_000);
        e.on_event(&held);
        assert!(e.evaluate(&s, &hot, 150_000).is_empty());
        e.on_event(&event(
            EventKind::Updated,
            1,
            "cpu.total_pct",
            Severity::High,
        ));
        assert!(e.evaluate(&s, &hot, 151_000).is_empty());
        assert_eq!(e.evaluate(&s, &hot, 153_000).len(), 1);
        // Closing the event ends the condition.
        e.on_event(&event(
            EventKind::Closed,
            1,
            "cpu.total_pct",
            Severity::High,
        ));
        assert!(e.evaluate(&s, &hot, 200_000).is_empty());
        // A missing metric never satisfies a state condition.
        e.on_event(&event(
            EventKind::Opened,
            3,
            "cpu.user_pct",
            Severity::Critical,
        ));
        assert!(e.evaluate(&s, &HashMap::new(), 300_000).is_empty());
    }

    #[test]
    fn a_family_condition_ignores_cpu_metrics_of_other_families() {
        // I/O wait is named cpu.* but belongs to disk_io events: `metrics: ['cpu.*']` alone
        // matches an I/O event through it, `families: [cpu]` does not.
        let by_metric = POLICY.replace("state: ['cpu.total_pct > 80']\n      ", "");
        let by_family = by_metric.replace("anomaly: {", "anomaly: { families: [cpu],");
        let io = event(EventKind::Opened, 1, "cpu.iowait_pct", Severity::Critical);
        assert_eq!(io.event.family, Family::DiskIo);
        let values = HashMap::new();
        for (yaml, fires) in [(&by_metric, true), (&by_family, false)] {
            let dir = tempfile::tempdir().expect("tempdir");
            let s = store(dir.path(), yaml);
            let mut e = Engine::default();
            e.on_event(&io);
            assert!(e.evaluate(&s, &values, 0).is_empty());
            assert_eq!(
                e.evaluate(&s, &values, 2_000).len(),
                usize::from(fires),
                "{yaml}"
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path(), &by_family);
        let mut e = Engine::default();
        e.on_event(&io);
        e.on_event(&event(EventKind::Opened, 2, "cpu.user_pct", Severity::High));
        assert!(e.evaluate(&s, &values, 0).is_empty());
        let t = e.evaluate(&s, &values, 2_000);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].evidence["anomaly"]["local_id"], 2);
        assert_eq!(t[0].evidence["anomaly"]["family"], "cpu");
    }
}
