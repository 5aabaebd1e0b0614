//! Conversion of the agent's domain types to protobuf, in one place.

use sco_proto::v1::{agent_message, AgentMessage, MetricRollup, MetricSummary, ProcessSample};

use crate::collect::ProcessInfo;
use crate::rollup::Rollup;

pub fn rollup_message(r: Rollup, produced_at_ms: i64, dropped_total: u64) -> AgentMessage {
    AgentMessage {
        seq: 0,
        produced_at_ms,
        body: Some(agent_message::Body::Rollup(MetricRollup {
            window_start_ms: r.window_start_ms,
            window_end_ms: r.window_end_ms,
            metrics: r
                .metrics
                .into_iter()
                .map(|((name, device), s)| MetricSummary {
                    name: name.to_string(),
                    device,
                    min: s.min,
                    mean: s.mean(),
                    max: s.max,
                    last: s.last,
                    count: s.count,
                })
                .collect(),
            top_processes: r.top_processes.iter().map(process).collect(),
            outbox_dropped_total: dropped_total,
        })),
    }
}

pub fn process(p: &ProcessInfo) -> ProcessSample {
    ProcessSample {
        pid: p.pid,
        name: p.name.clone(),
        cpu_pct: p.cpu_pct,
        rss_bytes: p.rss_bytes,
        cmdline: p.cmdline.clone(),
        unit: p.unit.clone(),
        read_bytes_per_s: p.read_bytes_per_s,
        write_bytes_per_s: p.write_bytes_per_s,
    }
}
