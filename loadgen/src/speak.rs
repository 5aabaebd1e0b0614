//! The messages a simulated agent sends, shaped as `sco-agent` shapes them
//! (`agent/src/pb.rs`): hello, heartbeats with the detector's state, rollups of
//! one wall-clock window with min/mean/max/last per metric and the top
//! processes, anomaly events (opened with context, updated, closed), policy
//! statuses and action reports. Values are synthetic but plausible; sizes
//! and cardinalities follow a small Linux server.

use rand::{Rng, RngExt};
use sco_proto::v1::{
    agent_message, anomaly_event, ActionReport, AgentMessage, AnomalyEvent, Contributor,
    DetectorState, Heartbeat, Hello, MetricRollup, MetricSummary, PolicyStatus, ProcessSample,
    Series,
};

/// Host-wide metrics, as the agent names them (`policy/src/metrics.rs`).
const HOST_METRICS: &[&str] = &[
    "cpu.total_pct",
    "cpu.user_pct",
    "cpu.system_pct",
    "cpu.iowait_pct",
    "cpu.steal_pct",
    "load.1",
    "load.5",
    "load.15",
    "mem.used_bytes",
    "mem.available_bytes",
    "mem.cached_bytes",
    "mem.used_pct",
    "swap.used_bytes",
    "swap.used_pct",
    "proc.count",
    "psi.cpu.some_pct",
    "psi.cpu.full_pct",
    "psi.memory.some_pct",
    "psi.memory.full_pct",
    "psi.io.some_pct",
    "psi.io.full_pct",
];
const DISK_METRICS: &[&str] = &[
    "disk.read_bytes_per_s",
    "disk.write_bytes_per_s",
    "disk.reads_per_s",
    "disk.writes_per_s",
    "disk.busy_pct",
];
const NET_METRICS: &[&str] = &[
    "net.rx_bytes_per_s",
    "net.tx_bytes_per_s",
    "net.rx_packets_per_s",
    "net.tx_packets_per_s",
    "net.rx_errors_per_s",
    "net.tx_errors_per_s",
    "net.rx_drops_per_s",
    "net.tx_drops_per_s",
];
const SPACE_METRICS: &[&str] = &["disk.used_bytes", "disk.used_pct"];
const DISKS: &[&str] = &["sda", "sdb", "nvme0n1", "nvme1n1"];
const INTERFACES: &[&str] = &["lo", "eth0", "eth1", "docker0"];
const MOUNTS: &[&str] = &["/", "/boot", "/var", "/home", "/srv", "/data"];

/// The (metric, device) series of a host with about `n` metrics: host-wide
/// ones first, then disks, interfaces and mounts in turn, as many as `n` asks.
pub fn metric_set(n: usize) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = HOST_METRICS
        .iter()
        .map(|m| (m.to_string(), String::new()))
        .collect();
    let mut groups: Vec<Vec<(String, String)>> = Vec::new();
    for i in 0..DISKS.len().max(INTERFACES.len()).max(MOUNTS.len()) {
        if let Some(d) = DISKS.get(i) {
            groups.push(
                DISK_METRICS
                    .iter()
                    .map(|m| (m.to_string(), d.to_string()))
                    .collect(),
            );
        }
        if let Some(n) = INTERFACES.get(i) {
            groups.push(
                NET_METRICS
                    .iter()
                    .map(|m| (m.to_string(), n.to_string()))
                    .collect(),
            );
        }
        if let Some(p) = MOUNTS.get(i) {
            groups.push(
                SPACE_METRICS
                    .iter()
                    .map(|m| (m.to_string(), p.to_string()))
                    .collect(),
            );
        }
    }
    for g in groups {
        if out.len() >= n {
            break;
        }
        out.extend(g);
    }
    out.truncate(n.max(1));
    out
}

fn envelope(body: agent_message::Body, produced_at_ms: i64) -> AgentMessage {
    AgentMessage {
        seq: 0,
        produced_at_ms,
        body: Some(body),
    }
}

pub struct HostFacts {
    pub hostname: String,
    pub labels: Vec<(String, String)>,
    pub run_started_ms: i64,
    pub cert_not_after_ms: i64,
}

pub const MODEL: &str = "sco-loadgen-synthetic/1";

pub fn hello(h: &HostFacts, last_seq: u64, interval_ms: u32, now_ms: i64) -> AgentMessage {
    envelope(
        agent_message::Body::Hello(Hello {
            hostname: h.hostname.clone(),
            os: "Debian GNU/Linux 12 (bookworm) (sco-loadgen)".into(),
            kernel: "6.1.0-loadgen".into(),
            agent_version: format!("sco-loadgen {}", env!("CARGO_PKG_VERSION")),
            labels: h.labels.iter().cloned().collect(),
            interval_ms,
            last_seq,
            run_started_ms: h.run_started_ms,
            model: MODEL.into(),
            cert_not_after_ms: h.cert_not_after_ms,
        }),
        now_ms,
    )
}

pub fn heartbeat(h: &HostFacts, pending: u64, now_ms: i64) -> AgentMessage {
    envelope(
        agent_message::Body::Heartbeat(Heartbeat {
            outbox_pending: pending,
            outbox_dropped_total: 0,
            cert_not_after_ms: h.cert_not_after_ms,
            detector: Some(DetectorState {
                state: "calibrated".into(),
                warm_until_ms: 0,
                calibrated_at_ms: h.run_started_ms,
                restored: false,
                model: MODEL.into(),
            }),
        }),
        now_ms,
    )
}

fn value(rng: &mut impl Rng, metric: &str) -> f64 {
    if metric.ends_with("_pct") {
        rng.random_range(0.0..60.0)
    } else if metric.ends_with("_bytes") {
        rng.random_range(1.0e8..8.0e9_f64).round()
    } else if metric.starts_with("load.") {
        rng.random_range(0.0..4.0)
    } else if metric == "proc.count" {
        rng.random_range(150.0..400.0_f64).round()
    } else {
        rng.random_range(0.0..5.0e6)
    }
}

pub fn processes(rng: &mut impl Rng, n: usize) -> Vec<ProcessSample> {
    const NAMES: &[(&str, &str)] = &[
        ("postgres", "postgresql@15-main.service"),
        ("nginx", "nginx.service"),
        ("java", "app.service"),
        ("node", "web.service"),
        ("containerd", "containerd.service"),
        ("systemd-journald", "systemd-journald.service"),
    ];
    (0..n)
        .map(|i| {
            let (name, unit) = NAMES[i % NAMES.len()];
            ProcessSample {
                pid: rng.random_range(300..60_000),
                name: name.into(),
                cpu_pct: rng.random_range(0.0..80.0),
                rss_bytes: rng.random_range(10_000_000..2_000_000_000),
                cmdline: format!("/usr/bin/{name} --config /etc/{name}/{name}.conf"),
                unit: unit.into(),
                read_bytes_per_s: rng.random_range(0.0..1.0e6),
                write_bytes_per_s: rng.random_range(0.0..1.0e6),
            }
        })
        .collect()
}

/// The rollup of one window, sealed as the agent seals it (by the first
/// sample after the window, `produced_at_ms`).
pub fn rollup(
    rng: &mut impl Rng,
    metrics: &[(String, String)],
    window_start_ms: i64,
    window_end_ms: i64,
    samples: u32,
    produced_at_ms: i64,
) -> AgentMessage {
    let metrics = metrics
        .iter()
        .map(|(name, device)| {
            let a = value(rng, name);
            let b = value(rng, name);
            let (min, max) = if a < b { (a, b) } else { (b, a) };
            MetricSummary {
                name: name.clone(),
                device: device.clone(),
                min,
                mean: (min + max) / 2.0,
                max,
                last: rng.random_range(min..=max),
                count: samples,
            }
        })
        .collect();
    envelope(
        agent_message::Body::Rollup(MetricRollup {
            window_start_ms,
            window_end_ms,
            metrics,
            top_processes: processes(rng, 5),
            outbox_dropped_total: 0,
        }),
        produced_at_ms,
    )
}

/// What changes in an anomaly event's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStep {
    Opened,
    Updated,
    Closed,
}

pub struct Event {
    pub open_seq: u64,
    pub started_ms: i64,
    pub family: &'static str,
}

pub const FAMILIES: &[&str] = &["cpu", "memory", "disk_io", "network"];

fn family_metric(family: &str) -> &'static str {
    match family {
        "cpu" => "cpu.total_pct",
        "memory" => "mem.used_pct",
        "disk_io" => "disk.busy_pct:sda",
        _ => "net.rx_bytes_per_s:eth0",
    }
}

/// One change of an event; the opening one carries its own sequence number
/// as `open_seq` and the context the agent captures at onset.
pub fn anomaly(
    rng: &mut impl Rng,
    h: &HostFacts,
    e: &Event,
    step: EventStep,
    seq: u64,
    now_ms: i64,
) -> AgentMessage {
    let metric = family_metric(e.family);
    let score = rng.random_range(0.5..0.99);
    let kind = match step {
        EventStep::Opened => anomaly_event::Kind::Opened,
        EventStep::Updated => anomaly_event::Kind::Updated,
        EventStep::Closed => anomaly_event::Kind::Closed,
    };
    let (context, context_processes, culprits) = if step == EventStep::Opened {
        let series = [
            metric,
            "cpu.user_pct",
            "psi.cpu.some_pct",
            "mem.used_pct",
            "load.1",
        ]
        .iter()
        .map(|m| Series {
            metric: m.to_string(),
            start_ms: e.started_ms - 60_000,
            step_ms: 1000,
            values: (0..60).map(|_| rng.random_range(0.0..100.0)).collect(),
        })
        .collect();
        (series, processes(rng, 5), processes(rng, 3))
    } else {
        (Vec::new(), Vec::new(), Vec::new())
    };
    envelope(
        agent_message::Body::Anomaly(AnomalyEvent {
            kind: kind as i32,
            open_seq: if step == EventStep::Opened {
                seq
            } else {
                e.open_seq
            },
            run_started_ms: h.run_started_ms,
            started_ms: e.started_ms,
            updated_ms: now_ms,
            ended_ms: if step == EventStep::Closed { now_ms } else { 0 },
            score,
            peak_score: score.max(0.9),
            severity: "medium".into(),
            contributors: vec![Contributor {
                metric: metric.into(),
                value: 97.0,
                expected_low: 5.0,
                expected_high: 40.0,
                contribution: 0.8,
            }],
            context,
            context_processes,
            model: MODEL.into(),
            family: e.family.into(),
            close_reason: if step == EventStep::Closed {
                format!("recovered: {metric} back in its expected range")
            } else {
                String::new()
            },
            culprits,
            recovered_ms: 0,
        }),
        now_ms,
    )
}

/// The agent's answer to a policy update: applied (the load generator
/// simulates a host that accepts what the control plane signs).
pub fn policy_status(name: &str, revision: u64, now_ms: i64) -> AgentMessage {
    envelope(
        agent_message::Body::PolicyStatus(PolicyStatus {
            name: name.to_string(),
            revision,
            applied: true,
            error: String::new(),
            active_revision: revision,
        }),
        now_ms,
    )
}

/// The agent's answer to an action command: refused, since a simulated
/// host runs nothing (the agent decides; this one always says no).
pub fn action_report(command_id: &str, rule: &str, now_ms: i64) -> AgentMessage {
    let command_id: String = command_id.chars().take(64).collect();
    envelope(
        agent_message::Body::ActionReport(ActionReport {
            command_id: command_id.clone(),
            rule: rule.to_string(),
            decision: "refused".into(),
            reason: "simulated host: the load generator runs no actions".into(),
            report_json: serde_json::json!({
                "command_id": command_id, "decision": "refused",
                "reason": "simulated host"
            })
            .to_string(),
        }),
        now_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sets_have_the_asked_size_and_no_repeats() {
        for n in [1, 21, 60, 100] {
            let set = metric_set(n);
            assert!(set.len() <= n, "{n}: {}", set.len());
            let mut seen = std::collections::HashSet::new();
            assert!(set.iter().all(|k| seen.insert(k.clone())));
        }
        assert_eq!(metric_set(60).len(), 60);
    }
}
