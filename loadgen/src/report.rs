//! The report at the end of a run: per step, ack latency percentiles,
//! throughput, errors by kind, reconnects and the processes' cost; over the
//! run, totals and the database check. Printed as text, or as JSON with
//! `--json` (what the end-to-end test reads).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::check::DbCheck;
use crate::stats::{counts_text, ErrorCount, Latency, PolicyReceipt};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProcCost {
    /// Mean CPU over the step, percent of one core.
    pub cpu_pct: f64,
    pub rss_mib_max: f64,
    pub rss_mib_end: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Step {
    pub agents: u64,
    pub secs: f64,
    pub connected_at_end: u64,
    /// Fewest agents connected at a progress sample once all of the step's
    /// agents had been connected together (drops show here).
    pub connected_min: u64,
    /// Seconds from the step's start until all its agents were connected
    /// together; None when that never happened.
    pub all_connected_after_secs: Option<f64>,
    /// Durable messages acknowledged per second over the step.
    pub acked_per_s: f64,
    pub rollups_per_s: f64,
    pub heartbeats_per_s: f64,
    pub acked: u64,
    pub produced: u64,
    pub resent: u64,
    pub ack: Latency,
    pub errors: BTreeMap<String, ErrorCount>,
    /// New streams refused by a full or overloaded control plane (`RESOURCE_EXHAUSTED`), by
    /// reason (`full`, `overloaded`, `other`); not errors.
    #[serde(default)]
    pub refused: BTreeMap<String, ErrorCount>,
    /// Refusals followed at once to a replica the refusal named.
    #[serde(default)]
    pub redirects: u64,
    pub reconnects: u64,
    pub pending_at_end: u64,
    pub control_plane: Option<ProcCost>,
    pub loadgen: Option<ProcCost>,
    /// How late the load generator's own runtime woke a task that asked to wake every 50 ms:
    /// while this is small against `ack`, the ack latencies are the control plane's.
    #[serde(default)]
    pub loadgen_lag: Latency,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Totals {
    pub agents: u64,
    pub agents_ever_connected: u64,
    pub all_connected: bool,
    pub produced: u64,
    pub acked: u64,
    pub acked_by_kind: BTreeMap<String, u64>,
    pub sent: u64,
    pub resent: u64,
    pub heartbeats: u64,
    pub policies_received: u64,
    pub commands_received: u64,
    pub connects: u64,
    pub reconnects: u64,
    pub errors: BTreeMap<String, ErrorCount>,
    /// New streams refused by a full or overloaded control plane (`RESOURCE_EXHAUSTED`), by
    /// reason (`full`: at its stream limit, `overloaded`: admission by load, `other`); not
    /// errors: the agent went to a replica the refusal named, or tried again after a backoff.
    #[serde(default)]
    pub refused: BTreeMap<String, ErrorCount>,
    /// Refusals followed at once to a replica the refusal named (`sco-redirect`).
    #[serde(default)]
    pub redirects: u64,
    /// Agents refused at least once, and of those the ones that never had a stream (these
    /// fail the run; the others do not).
    #[serde(default)]
    pub agents_refused: u64,
    #[serde(default)]
    pub agents_refused_never_connected: u64,
    /// Agents by the endpoint of their latest stream (`host:port`, `quic://host:port`).
    #[serde(default)]
    pub agents_by_endpoint: BTreeMap<String, u64>,
    pub pending_at_end: u64,
    /// Every outbox was empty before the streams were closed.
    pub drained: bool,
    pub drain_secs: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Settings {
    pub target: String,
    /// `grpc` (gRPC over TCP and TLS, one connection per agent) or `quic`.
    pub transport: String,
    /// How the identities were made ("issued by the fleet CA").
    pub identities: String,
    pub id_prefix: String,
    pub metrics_per_rollup: u64,
    pub window_secs: f64,
    /// Span over which the agents' rollups are spread after each window's end.
    #[serde(default)]
    pub spread_secs: f64,
    pub heartbeat_secs: f64,
    pub events_per_hour: f64,
    /// When every agent opened an event at once, seconds after the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_storm_at_secs: Option<f64>,
    pub connect_rate: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub settings: Settings,
    pub steps: Vec<Step>,
    pub totals: Totals,
    /// Over the whole run.
    pub ack: Latency,
    /// Each policy revision the agents were sent: how many agents, first and last receipt.
    #[serde(default)]
    pub policies: Vec<PolicyReceipt>,
    /// None when no database URL was given.
    pub database: Option<DbCheck>,
    /// Every agent had a stream at some point (refused ones included, once admitted here or
    /// elsewhere), something was acknowledged, and the database check (when asked) passed.
    pub passed: bool,
}

fn errors_text(e: &BTreeMap<String, ErrorCount>) -> String {
    if e.is_empty() {
        return "none".into();
    }
    counts_text(e)
}

fn cost(c: &Option<ProcCost>) -> String {
    c.as_ref().map_or("-".into(), |c| {
        format!("{:.0}% / {:.0} MiB", c.cpu_pct, c.rss_mib_max)
    })
}

impl Report {
    pub fn text(&self) -> String {
        let mut s = String::new();
        let st = &self.settings;
        let _ = writeln!(
            s,
            "sco-loadgen against {} over {} ({}; ids {}*), {} metrics per rollup every {} s (sent over {} s), heartbeat {} s, {} events/agent/h{}",
            st.target, st.transport, st.identities, st.id_prefix, st.metrics_per_rollup, st.window_secs, st.spread_secs, st.heartbeat_secs, st.events_per_hour,
            st.event_storm_at_secs.map_or(String::new(), |at| format!(", every agent opening an event at {at} s"))
        );
        let _ = writeln!(
            s,
            "{:>7} {:>6} {:>11} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6} {:>7} {:>16} {:>16} {:>11}  errors",
            "agents",
            "secs",
            "conn min/end",
            "up s",
            "acked/s",
            "rollup/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "reconn",
            "refused",
            "cp cpu/rss",
            "loadgen cpu/rss",
            "lag p99/max"
        );
        for p in &self.steps {
            let _ = writeln!(
                s,
                "{:>7} {:>6.0} {:>5}/{:<5} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>6} {:>7} {:>16} {:>16} {:>11}  {}",
                p.agents,
                p.secs,
                p.connected_min,
                p.connected_at_end,
                p.all_connected_after_secs
                    .map_or("never".into(), |s| format!("{s:.1}")),
                p.acked_per_s,
                p.rollups_per_s,
                p.ack.p50_ms,
                p.ack.p90_ms,
                p.ack.p99_ms,
                p.ack.max_ms,
                p.reconnects,
                p.refused.values().map(|e| e.count).sum::<u64>(),
                cost(&p.control_plane),
                cost(&p.loadgen),
                format!("{:.0}/{:.0}", p.loadgen_lag.p99_ms, p.loadgen_lag.max_ms),
                errors_text(&p.errors)
            );
        }
        let t = &self.totals;
        let _ = writeln!(
            s,
            "totals: {} of {} agents connected; {} produced, {} acked ({}), {} resent, {} heartbeats, {} reconnects; {} pending at the end ({})",
            t.agents_ever_connected,
            t.agents,
            t.produced,
            t.acked,
            t.acked_by_kind
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
            t.resent,
            t.heartbeats,
            t.reconnects,
            t.pending_at_end,
            if t.drained { format!("drained in {:.1} s", t.drain_secs) } else { "not drained".into() }
        );
        let _ = writeln!(
            s,
            "ack latency over the run: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms ({} acks)",
            self.ack.p50_ms, self.ack.p90_ms, self.ack.p99_ms, self.ack.max_ms, self.ack.count
        );
        for p in &self.policies {
            let _ = writeln!(
                s,
                "policy {} revision {}: sent to {} agents, first at {} ms, last at {} ms (unix), {} ms apart",
                p.name,
                p.revision,
                p.agents,
                p.first_ms,
                p.last_ms,
                p.last_ms - p.first_ms
            );
        }
        for (k, v) in &t.errors {
            let _ = writeln!(s, "error {k}: {} (e.g. {})", v.count, v.example);
        }
        if !t.refused.is_empty() {
            let _ = writeln!(
                s,
                "refused: {} new streams ({}), {} followed at once to a replica named; {} agents refused at least once, {} of them never connected; agents by endpoint at the end: {}",
                t.refused.values().map(|e| e.count).sum::<u64>(),
                counts_text(&t.refused),
                t.redirects,
                t.agents_refused,
                t.agents_refused_never_connected,
                t.agents_by_endpoint
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            for (k, v) in &t.refused {
                let _ = writeln!(s, "refused {k}: {} (e.g. {})", v.count, v.example);
            }
        }
        match &self.database {
            None => {
                let _ = writeln!(s, "database check: not run (no --database-url)");
            }
            Some(d) => {
                let _ = writeln!(
                    s,
                    "database check (settled after {} s): {}: {} agents, {} acked, {} stored, {} lost, {} duplicated, {} gaps, {} stored unacked, {} rejected, {} agents exact",
                    d.settled_secs,
                    if d.passed { "PASSED" } else { "FAILED" },
                    d.agents_checked, d.messages_acked, d.messages_stored, d.lost, d.duplicated, d.gaps, d.stored_unacked, d.rejected, d.agents_exact
                );
                for p in &d.problems {
                    let _ = writeln!(s, "  {p}");
                }
            }
        }
        let _ = writeln!(
            s,
            "result: {}",
            if self.passed { "passed" } else { "FAILED" }
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_report_counts_refusals_apart_from_errors() {
        let mut r = Report::default();
        assert!(!r.text().contains("refused:"), "{}", r.text());
        let count = |n, example: &str| ErrorCount {
            count: n,
            example: example.into(),
        };
        r.totals.refused = BTreeMap::from([
            (
                "full".to_string(),
                count(2, "holds its limit of 8 agent streams"),
            ),
            (
                "overloaded".to_string(),
                count(1, "this replica is overloaded"),
            ),
        ]);
        r.totals.redirects = 2;
        r.totals.agents_refused = 2;
        r.totals.agents_refused_never_connected = 1;
        r.totals.agents_by_endpoint = BTreeMap::from([("a:1".to_string(), 3)]);
        r.steps.push(Step {
            refused: r.totals.refused.clone(),
            ..Step::default()
        });
        let text = r.text();
        assert!(
            text.contains(
                "refused: 3 new streams (full 2, overloaded 1), 2 followed at once to a replica \
                 named; 2 agents refused at least once, 1 of them never connected; agents by \
                 endpoint at the end: a:1 3"
            ),
            "{text}"
        );
        assert!(
            text.contains("refused overloaded: 1 (e.g. this replica is overloaded)"),
            "{text}"
        );
        assert!(!text.contains("error "), "{text}");
        // the step's row: 3 refused, no errors
        let row = text.lines().nth(2).unwrap_or_default();
        assert!(
            row.trim_end()
                .ends_with("3                -                -         0/0  none"),
            "{row}"
        );
    }
}
