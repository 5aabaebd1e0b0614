//! Protobuf to domain conversion for the agent stream, in one place.

use sco_proto::v1::{
    anomaly_event, ActionCommand, AnomalyEvent, Hello, MetricRollup, ProcessSample,
};

use crate::fleet::{
    AnomalyChange, ChangeKind, Contributor, DetectorStatus, HostInfo, MetricRow, ProcessRow,
    RollupBatch, Series, Severity,
};

/// Largest values we accept from an agent, so a broken or hostile agent
/// cannot make the database store absurd rows.
const MAX_METRICS_PER_ROLLUP: usize = 10_000;
const MAX_NAME_LEN: usize = 128;
const MAX_DEVICE_LEN: usize = 256;

fn clip(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

pub fn host_info(h: Hello) -> HostInfo {
    HostInfo {
        hostname: clip(&h.hostname, 253),
        os: clip(&h.os, 128),
        kernel: clip(&h.kernel, 128),
        agent_version: clip(&h.agent_version, 64),
        labels: h
            .labels
            .into_iter()
            .take(64)
            .map(|(k, v)| (clip(&k, 63), clip(&v, 256)))
            .collect(),
        interval_ms: i64::from(h.interval_ms),
        run_started_ms: h.run_started_ms,
        model: clip(&h.model, 128),
        cert_not_after_ms: h.cert_not_after_ms,
        transport: String::new(),
    }
}

pub fn command(c: crate::fleet::PendingCommand) -> ActionCommand {
    ActionCommand {
        id: c.id,
        action_json: c.action_json,
        mode: c.mode,
        lease_token: c.lease_token,
        lease_expires_ms: c.lease_expires_ms,
        requested_by: c.requested_by,
        rule: c.rule,
    }
}

pub fn policy(p: crate::fleet::PolicyRevision) -> sco_proto::v1::PolicyUpdate {
    sco_proto::v1::PolicyUpdate {
        name: p.name,
        revision: u64::try_from(p.revision).unwrap_or(0),
        document: p.document,
        signature: p.signature,
    }
}

pub fn model_offer(o: crate::fleet::ModelOffer) -> sco_proto::v1::ModelOffer {
    sco_proto::v1::ModelOffer {
        number: u64::try_from(o.number).unwrap_or(0),
        version: o.version,
        manifest: o.manifest,
        signature: o.signature,
        size: u64::try_from(o.size).unwrap_or(0),
    }
}

pub fn model_status(
    seq: u64,
    produced_at_ms: i64,
    m: sco_proto::v1::ModelStatus,
) -> Result<crate::domain::models::ModelStatusIn, String> {
    if m.error.len() > 4096 || m.active_model.len() > 256 {
        return Err("invalid model status: error or model name too long".into());
    }
    Ok(crate::domain::models::ModelStatusIn {
        seq: seq_i64(seq)?,
        produced_at_ms,
        number: revision_i64(m.number)?,
        applied: m.applied,
        error: m.error,
        active_number: revision_i64(m.active_number)?,
        active_model: m.active_model,
    })
}

fn seq_i64(seq: u64) -> Result<i64, String> {
    i64::try_from(seq)
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| format!("sequence number {seq} out of range"))
}

fn revision_i64(r: u64) -> Result<i64, String> {
    i64::try_from(r).map_err(|_| format!("revision {r} out of range"))
}

pub fn policy_status(
    seq: u64,
    produced_at_ms: i64,
    p: sco_proto::v1::PolicyStatus,
) -> Result<crate::fleet::PolicyStatusIn, String> {
    if p.name.is_empty() || p.name.len() > 64 || p.error.len() > 4096 {
        return Err("invalid policy status: name or error too long".into());
    }
    Ok(crate::fleet::PolicyStatusIn {
        seq: seq_i64(seq)?,
        produced_at_ms,
        name: p.name,
        revision: revision_i64(p.revision)?,
        applied: p.applied,
        error: p.error,
        active_revision: revision_i64(p.active_revision)?,
    })
}

pub fn proposal(
    seq: u64,
    produced_at_ms: i64,
    agent_id: &str,
    p: sco_proto::v1::ActionProposal,
) -> Result<crate::fleet::ProposalIn, String> {
    // Ids are the agent's own; prefixed with its id they are unique.
    if p.id.is_empty()
        || p.id.len() > 64
        || !p.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(format!("invalid proposal id {:?}", clip(&p.id, 80)));
    }
    if p.rule.len() > 160 || !p.rule.contains('/') || p.policy.len() > 64 {
        return Err("invalid proposal: rule must be policy/rule".into());
    }
    if p.action_json.len() > 16 * 1024
        || p.report_json.len() > 256 * 1024
        || p.evidence_json.len() > 64 * 1024
        || p.reason.len() > 4096
    {
        return Err("invalid proposal: a field is too large".into());
    }
    Ok(crate::fleet::ProposalIn {
        seq: seq_i64(seq)?,
        produced_at_ms,
        id: format!("{agent_id}:{}", p.id),
        policy: p.policy,
        revision: revision_i64(p.revision)?,
        rule: p.rule,
        action_json: p.action_json,
        mode: p.mode,
        decision: p.decision,
        reason: p.reason,
        report_json: p.report_json,
        evidence_json: p.evidence_json,
        max_concurrent: i64::from(p.max_concurrent.min(10_000)),
    })
}

fn processes(p: Vec<ProcessSample>) -> Vec<ProcessRow> {
    p.into_iter()
        .take(200)
        .map(|p| ProcessRow {
            pid: p.pid,
            name: clip(&p.name, 128),
            cpu_pct: finite_or_zero(p.cpu_pct),
            rss_bytes: p.rss_bytes,
            cmdline: clip(&p.cmdline, 512),
            unit: clip(&p.unit, 256),
            read_bytes_per_s: finite_or_zero(p.read_bytes_per_s),
            write_bytes_per_s: finite_or_zero(p.write_bytes_per_s),
        })
        .collect()
}

fn finite_or_zero(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// The detector state a heartbeat reports; an unknown state is kept as "" (unknown).
pub fn detector_status(d: sco_proto::v1::DetectorState) -> DetectorStatus {
    let state = match d.state.as_str() {
        s @ ("warming_up" | "calibrated") => s.to_string(),
        _ => String::new(),
    };
    DetectorStatus {
        state,
        warm_until_ms: d.warm_until_ms.max(0),
        calibrated_at_ms: d.calibrated_at_ms.max(0),
        restored: d.restored,
    }
}

const MAX_CONTRIBUTORS: usize = 32;
const MAX_CONTEXT_SERIES: usize = 512;
const MAX_CONTEXT_POINTS: usize = 3600;

pub fn anomaly(seq: u64, produced_at_ms: i64, a: AnomalyEvent) -> Result<AnomalyChange, String> {
    let seq = i64::try_from(seq).map_err(|_| format!("sequence number {seq} is out of range"))?;
    let open_seq = i64::try_from(a.open_seq)
        .map_err(|_| format!("open_seq {} is out of range", a.open_seq))?;
    if seq <= 0 || open_seq <= 0 || open_seq > seq {
        return Err(format!(
            "invalid sequence numbers: seq {seq}, open_seq {open_seq}"
        ));
    }
    let kind = match anomaly_event::Kind::try_from(a.kind) {
        Ok(anomaly_event::Kind::Opened) => ChangeKind::Opened,
        Ok(anomaly_event::Kind::Updated) => ChangeKind::Updated,
        Ok(anomaly_event::Kind::Closed) => ChangeKind::Closed,
        _ => return Err(format!("unknown anomaly event kind {}", a.kind)),
    };
    if kind == ChangeKind::Opened && open_seq != seq {
        return Err("an opening event must carry its own sequence number as open_seq".into());
    }
    let severity = Severity::parse(&a.severity)
        .ok_or_else(|| format!("unknown severity {:?}", clip(&a.severity, 32)))?;
    // empty from agents that predate families
    let family = if a.family.is_empty() {
        String::new()
    } else {
        sco_models::Family::parse(&a.family)
            .ok_or_else(|| format!("unknown anomaly family {:?}", clip(&a.family, 32)))?
            .as_str()
            .to_string()
    };
    if ![a.score, a.peak_score].iter().all(|v| v.is_finite()) {
        return Err("anomaly score is not finite".into());
    }
    if a.contributors.len() > MAX_CONTRIBUTORS || a.context.len() > MAX_CONTEXT_SERIES {
        return Err("anomaly event has too many contributors or context series".into());
    }
    let contributors = a
        .contributors
        .into_iter()
        .map(|c| {
            if [c.value, c.expected_low, c.expected_high, c.contribution]
                .iter()
                .all(|v| v.is_finite())
            {
                Ok(Contributor {
                    metric: clip(&c.metric, 256),
                    value: c.value,
                    expected_low: c.expected_low,
                    expected_high: c.expected_high,
                    contribution: c.contribution,
                })
            } else {
                Err(format!(
                    "contributor {} has a non-finite value",
                    clip(&c.metric, 64)
                ))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let context = a
        .context
        .into_iter()
        .map(|s| {
            if s.values.len() > MAX_CONTEXT_POINTS {
                return Err(format!(
                    "context series {} is too long",
                    clip(&s.metric, 64)
                ));
            }
            Ok(Series {
                metric: clip(&s.metric, 256),
                start_ms: s.start_ms,
                step_ms: i64::from(s.step_ms),
                values: s
                    .values
                    .into_iter()
                    .map(|v| v.is_finite().then_some(v))
                    .collect(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AnomalyChange {
        seq,
        produced_at_ms,
        kind,
        open_seq,
        run_started_ms: a.run_started_ms,
        started_ms: a.started_ms,
        updated_ms: a.updated_ms,
        ended_ms: (kind == ChangeKind::Closed).then_some(a.ended_ms),
        score: a.score,
        peak_score: a.peak_score,
        severity,
        contributors,
        context,
        context_processes: processes(a.context_processes),
        model: clip(&a.model, 128),
        family,
        close_reason: clip(&a.close_reason, 256),
        culprits: processes(a.culprits).into_iter().take(16).collect(),
        recovered_ms: (kind == ChangeKind::Updated && a.recovered_ms > 0).then_some(a.recovered_ms),
    })
}

pub fn rollup(seq: u64, produced_at_ms: i64, r: MetricRollup) -> Result<RollupBatch, String> {
    let seq = i64::try_from(seq).map_err(|_| format!("sequence number {seq} is out of range"))?;
    if seq <= 0 {
        return Err("a rollup needs a sequence number above 0".into());
    }
    if r.window_end_ms <= r.window_start_ms {
        return Err(format!(
            "rollup window end {} is not after its start {}",
            r.window_end_ms, r.window_start_ms
        ));
    }
    if r.metrics.len() > MAX_METRICS_PER_ROLLUP {
        return Err(format!(
            "rollup has {} metrics, more than {MAX_METRICS_PER_ROLLUP}",
            r.metrics.len()
        ));
    }
    let mut metrics = Vec::with_capacity(r.metrics.len());
    for m in r.metrics {
        if m.name.is_empty() || m.name.len() > MAX_NAME_LEN || m.device.len() > MAX_DEVICE_LEN {
            return Err(format!(
                "invalid metric name {:?} or device",
                clip(&m.name, 64)
            ));
        }
        if ![m.min, m.mean, m.max, m.last].iter().all(|v| v.is_finite()) {
            return Err(format!("metric {} has a non-finite value", m.name));
        }
        metrics.push(MetricRow {
            metric: m.name,
            device: m.device,
            min: m.min,
            mean: m.mean,
            max: m.max,
            last: m.last,
            count: i64::from(m.count),
        });
    }
    Ok(RollupBatch {
        seq,
        produced_at_ms,
        window_start_ms: r.window_start_ms,
        window_end_ms: r.window_end_ms,
        metrics,
        top_processes: processes(r.top_processes),
        outbox_dropped_total: i64::try_from(r.outbox_dropped_total).unwrap_or(i64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sco_proto::v1::MetricSummary;

    fn valid() -> MetricRollup {
        MetricRollup {
            window_start_ms: 0,
            window_end_ms: 10_000,
            metrics: vec![MetricSummary {
                name: "cpu.total_pct".into(),
                device: String::new(),
                min: 1.0,
                mean: 2.0,
                max: 3.0,
                last: 2.0,
                count: 10,
            }],
            top_processes: vec![],
            outbox_dropped_total: 0,
        }
    }

    #[test]
    fn bad_rollups_are_refused_with_a_reason() {
        assert!(rollup(1, 0, valid()).is_ok());
        assert!(rollup(0, 0, valid())
            .expect_err("seq 0")
            .contains("sequence"));
        assert!(rollup(u64::MAX, 0, valid()).is_err());
        let mut r = valid();
        r.window_end_ms = 0;
        assert!(rollup(1, 0, r).expect_err("window").contains("window"));
        let mut r = valid();
        r.metrics[0].max = f64::NAN;
        assert!(rollup(1, 0, r).expect_err("nan").contains("non-finite"));
        let mut r = valid();
        r.metrics[0].name = String::new();
        assert!(rollup(1, 0, r).is_err());
    }

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("héllo", 2), "h");
    }
}
