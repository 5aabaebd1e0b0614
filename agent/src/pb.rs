//! Conversion of the agent's domain types to protobuf, in one place: every message the
//! agent builds is built here.

use sco_models::detect::EventKind;
use sco_proto::v1::{
    agent_message, anomaly_event, ActionCommand, ActionProposal, ActionReport, AgentMessage,
    AnomalyEvent, Contributor, DetectorState, Heartbeat, Hello, MetricRollup, MetricSummary,
    ModelChunk, ModelOffer, ModelRequest, ModelStatus, PolicyUpdate, ProcessSample, Series,
};

use crate::collect::ProcessInfo;
use crate::config::Config;
use crate::detect::{ContextSeries, EventReport};
use crate::fleet_model::{Chunk, Offer};
use crate::policy::SignedPolicy;
use crate::requests::{Command, ModelReport, PolicyStatus, Proposal, Report};
use crate::rollup::Rollup;
use crate::status::Status;

fn envelope(body: agent_message::Body, seq: u64, produced_at_ms: i64) -> AgentMessage {
    AgentMessage {
        seq,
        produced_at_ms,
        body: Some(body),
    }
}

/// What the agent says about itself when it connects (`last_seq` is set per connection).
pub fn hello(config: &Config, run_started_ms: i64, model: &str) -> Hello {
    let host = crate::host::HostInfo::read(&config.agent.host_paths().root);
    Hello {
        hostname: host.hostname,
        os: host.os,
        kernel: host.kernel,
        agent_version: crate::VERSION.to_string(),
        labels: config.agent.labels.clone().into_iter().collect(),
        interval_ms: u32::try_from(config.agent.interval_ms).unwrap_or(u32::MAX),
        last_seq: 0,
        run_started_ms,
        model: model.to_string(),
        cert_not_after_ms: crate::identity::cert_validity(&config.server.cert)
            .map_or(0, |(_, na)| na),
    }
}

pub fn hello_message(hello: Hello, produced_at_ms: i64) -> AgentMessage {
    envelope(agent_message::Body::Hello(hello), 0, produced_at_ms)
}

pub fn heartbeat_message(
    outbox_pending: u64,
    outbox_dropped_total: u64,
    cert_not_after_ms: i64,
    detector: &Status,
    produced_at_ms: i64,
) -> AgentMessage {
    envelope(
        agent_message::Body::Heartbeat(Heartbeat {
            outbox_pending,
            outbox_dropped_total,
            cert_not_after_ms,
            detector: Some(detector_state(detector)),
        }),
        0,
        produced_at_ms,
    )
}

pub fn detector_state(s: &Status) -> DetectorState {
    DetectorState {
        state: s.detector.clone(),
        warm_until_ms: s.warm_until_ms,
        calibrated_at_ms: s.calibrated_at_ms,
        restored: s.restored,
        model: s.model.clone(),
    }
}

pub fn command(c: ActionCommand) -> Command {
    Command {
        id: c.id,
        action_json: c.action_json,
        mode: c.mode,
        lease_token: c.lease_token,
        lease_expires_ms: c.lease_expires_ms,
        requested_by: c.requested_by,
        rule: c.rule,
    }
}

pub fn signed_policy(p: PolicyUpdate) -> SignedPolicy {
    SignedPolicy {
        name: p.name,
        revision: p.revision,
        document: p.document,
        signature: p.signature,
    }
}

pub fn report_message(r: Report, produced_at_ms: i64) -> AgentMessage {
    envelope(
        agent_message::Body::ActionReport(ActionReport {
            command_id: r.command_id,
            rule: r.rule,
            decision: r.decision,
            reason: r.reason,
            report_json: r.report_json,
        }),
        0,
        produced_at_ms,
    )
}

pub fn proposal_message(p: Proposal, produced_at_ms: i64) -> AgentMessage {
    envelope(
        agent_message::Body::Proposal(ActionProposal {
            id: p.id,
            policy: p.policy,
            revision: p.revision,
            rule: p.rule,
            action_json: p.action_json,
            mode: p.mode,
            decision: p.decision,
            reason: p.reason,
            report_json: p.report_json,
            evidence_json: p.evidence_json,
            max_concurrent: p.max_concurrent,
        }),
        0,
        produced_at_ms,
    )
}

pub fn policy_status_message(s: PolicyStatus, produced_at_ms: i64) -> AgentMessage {
    envelope(
        agent_message::Body::PolicyStatus(sco_proto::v1::PolicyStatus {
            name: s.name,
            revision: s.revision,
            applied: s.applied,
            error: s.error,
            active_revision: s.active_revision,
        }),
        0,
        produced_at_ms,
    )
}

pub fn rollup_message(r: Rollup, produced_at_ms: i64, dropped_total: u64) -> AgentMessage {
    envelope(
        agent_message::Body::Rollup(MetricRollup {
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
        }),
        0,
        produced_at_ms,
    )
}

/// The durable message of an anomaly event change; `seq` is its own sequence number.
pub fn anomaly_message(r: &EventReport<'_>, seq: u64, produced_at_ms: i64) -> AgentMessage {
    let e = &r.change.event;
    let kind = match r.change.kind {
        EventKind::Opened => anomaly_event::Kind::Opened,
        EventKind::Updated => anomaly_event::Kind::Updated,
        EventKind::Closed => anomaly_event::Kind::Closed,
    };
    envelope(
        agent_message::Body::Anomaly(AnomalyEvent {
            kind: kind as i32,
            open_seq: r.open_seq,
            run_started_ms: r.run_started_ms,
            started_ms: e.started_ms,
            updated_ms: e.updated_ms,
            ended_ms: e.ended_ms.unwrap_or(0),
            score: e.score,
            peak_score: e.peak_score,
            severity: e.severity.as_str().to_string(),
            contributors: e
                .contributors
                .iter()
                .map(|c| Contributor {
                    metric: c.metric.clone(),
                    value: c.value,
                    expected_low: c.expected_low,
                    expected_high: c.expected_high,
                    contribution: c.contribution,
                })
                .collect(),
            context: r.context.iter().map(series).collect(),
            context_processes: r.processes.iter().map(process).collect(),
            model: r.model.to_string(),
            family: e.family.as_str().to_string(),
            close_reason: e.close_reason.clone().unwrap_or_default(),
            culprits: r.culprits.iter().map(process).collect(),
            recovered_ms: match r.change.kind {
                EventKind::Updated => e.recovered_ms.unwrap_or(0),
                _ => 0,
            },
        }),
        seq,
        produced_at_ms,
    )
}

fn series(s: &ContextSeries) -> Series {
    Series {
        metric: s.metric.clone(),
        start_ms: s.start_ms,
        step_ms: s.step_ms,
        values: s.values.clone(),
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

pub fn model_offer(o: ModelOffer) -> Offer {
    Offer {
        number: o.number,
        version: o.version,
        manifest: o.manifest,
        signature: o.signature,
        size: o.size,
    }
}

pub fn model_chunk(c: ModelChunk) -> Chunk {
    Chunk {
        number: c.number,
        offset: c.offset,
        data: c.data,
    }
}

/// Not durable: asks for the rest of an offered model.
pub fn model_request_message(number: u64, offset: u64, produced_at_ms: i64) -> AgentMessage {
    envelope(
        agent_message::Body::ModelRequest(ModelRequest { number, offset }),
        0,
        produced_at_ms,
    )
}

pub fn model_status_message(r: ModelReport, produced_at_ms: i64) -> AgentMessage {
    envelope(
        agent_message::Body::ModelStatus(ModelStatus {
            number: r.number,
            applied: r.applied,
            error: r.error,
            active_number: r.active_number,
            active_model: r.active_model,
        }),
        0,
        produced_at_ms,
    )
}
