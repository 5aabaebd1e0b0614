//! `GET /metrics/fleet`: the whole fleet in one Prometheus scrape (text exposition format
//! 0.0.4). Per host: whether it is connected, when it was last heard from, when its newest
//! rollup window ended and every value of that rollup; per host, family and severity: the
//! open anomaly events and their highest score.
//!
//! The values are one gauge family, `sco_host_metric`, with the metric's name as the
//! control plane stores it (`metric="cpu.total_pct"`, `device="/"`) rather than one family per
//! metric with a sanitised name: a Grafana dashboard templates on the `metric` label
//! (`label_values(sco_host_metric, metric)`), the names match `GET /monitoring/metrics` and
//! policy documents exactly (no lossy `.` → `_` mapping, no collisions), and a metric a new
//! agent collects appears without a change here. Every host series carries `host` (the agent
//! id), `hostname` and the host's labels as `label_<key>` (the key with every character
//! outside `[A-Za-z0-9_]` replaced by `_`), so dashboards filter by `label_env="prod"`
//! without a join.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::error::AppError;
use super::AppState;
use crate::fleet::{FleetSnapshot, Host};

/// The Prometheus text format, which every Prometheus-compatible scraper reads.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The fleet's hosts, their newest values and open anomalies for Prometheus. Three
/// queries whatever the size of the fleet; the text is built once, off the async threads.
#[utoipa::path(get, path = "/metrics/fleet", tag = "fleet", security(("bearer" = ["viewer"])),
    responses(
        (status = 200, description = "Prometheus text format: sco_host_connected, \
            sco_host_last_seen_timestamp_seconds, sco_host_rollup_timestamp_seconds, \
            sco_host_metric, sco_anomaly_open, sco_anomaly_open_score",
            body = String, content_type = "text/plain; version=0.0.4; charset=utf-8"),
        (status = 401, description = "missing or invalid token", body = inline(super::error::ErrorBody)),
        (status = 403, description = "role too low", body = inline(super::error::ErrorBody)),
    ))]
pub async fn scrape(State(state): State<AppState>) -> Result<impl IntoResponse, AppError> {
    let snapshot = state
        .fleet
        .hosts
        .fleet_snapshot(state.stale_after_ms)
        .await?;
    // Thousands of hosts make hundreds of thousands of lines: CPU work for a blocking thread.
    let text = tokio::task::spawn_blocking(move || encode(&snapshot))
        .await
        .map_err(AppError::internal)?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text))
}

/// The exposition of a snapshot.
pub fn encode(s: &FleetSnapshot) -> String {
    let mut out = String::with_capacity(160 * (s.hosts.len() * 3 + s.latest.len()) + 1024);
    // Each host's labels, rendered once and reused for each of its series.
    let host_labels: HashMap<&str, String> = s
        .hosts
        .iter()
        .map(|h| (h.id.as_str(), host_label_set(h)))
        .collect();
    let labels_of = |id: &str| {
        host_labels
            .get(id)
            .cloned()
            .unwrap_or_else(|| label_set(&[("host", id)]))
    };

    family(
        &mut out,
        "sco_host_connected",
        "Whether the host's agent is connected (1) or not (0).",
    );
    for h in &s.hosts {
        sample(
            &mut out,
            "sco_host_connected",
            &host_labels[h.id.as_str()],
            &[],
            if h.connected { 1.0 } else { 0.0 },
        );
    }
    family(
        &mut out,
        "sco_host_last_seen_timestamp_seconds",
        "When the control plane last heard from the host's agent (Unix seconds).",
    );
    for h in &s.hosts {
        sample(
            &mut out,
            "sco_host_last_seen_timestamp_seconds",
            &host_labels[h.id.as_str()],
            &[],
            ms_to_secs(h.last_seen_ms),
        );
    }

    family(
        &mut out,
        "sco_host_rollup_timestamp_seconds",
        "End of the connected host's newest stored rollup window (Unix seconds).",
    );
    let mut previous: Option<&str> = None;
    for v in &s.latest {
        if previous != Some(v.host_id.as_str()) {
            previous = Some(v.host_id.as_str());
            sample(
                &mut out,
                "sco_host_rollup_timestamp_seconds",
                &labels_of(v.host_id.as_str()),
                &[],
                ms_to_secs(v.ts_ms),
            );
        }
    }
    family(
        &mut out,
        "sco_host_metric",
        "Last value of a metric in the connected host's newest stored rollup; metric and device as in GET /monitoring/metrics.",
    );
    let mut current: (&str, String) = ("", String::new());
    for v in &s.latest {
        if current.0 != v.host_id {
            current = (v.host_id.as_str(), labels_of(v.host_id.as_str()));
        }
        sample(
            &mut out,
            "sco_host_metric",
            &current.1,
            &[("metric", v.metric.as_str()), ("device", v.device.as_str())],
            v.value,
        );
    }

    family(
        &mut out,
        "sco_anomaly_open",
        "Open anomaly events of the host, family and severity.",
    );
    for a in &s.open_anomalies {
        sample(
            &mut out,
            "sco_anomaly_open",
            &anomaly_labels(a),
            &[],
            a.count as f64,
        );
    }
    family(
        &mut out,
        "sco_anomaly_open_score",
        "Highest current score (0 to 1) of the open anomaly events of the host, family and severity.",
    );
    for a in &s.open_anomalies {
        sample(
            &mut out,
            "sco_anomaly_open_score",
            &anomaly_labels(a),
            &[],
            a.max_score,
        );
    }
    out
}

fn anomaly_labels(a: &crate::fleet::OpenAnomalies) -> String {
    label_set(&[
        ("host", a.host_id.as_str()),
        ("family", a.family.as_str()),
        ("severity", a.severity.as_str()),
    ])
}

fn family(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
}

/// One sample line: `name{<labels>,<extra>} value`.
fn sample(out: &mut String, name: &str, labels: &str, extra: &[(&str, &str)], value: f64) {
    out.push_str(name);
    out.push('{');
    out.push_str(labels);
    for (k, v) in extra {
        if out.as_bytes().last() != Some(&b'{') {
            out.push(',');
        }
        push_label(out, k, v);
    }
    out.push_str("} ");
    push_value(out, value);
    out.push('\n');
}

/// `host="..",hostname="..",label_<key>="..",...` of one host.
fn host_label_set(h: &Host) -> String {
    let mut out = String::new();
    push_label(&mut out, "host", &h.id);
    out.push(',');
    push_label(&mut out, "hostname", &h.hostname);
    let mut seen: Vec<String> = Vec::with_capacity(h.labels.len());
    for (key, value) in &h.labels {
        let name = label_name(key);
        // Two keys that sanitise to the same name would make an invalid series; the first
        // (in key order) wins.
        if seen.contains(&name) {
            continue;
        }
        out.push(',');
        push_label(&mut out, &name, value);
        seen.push(name);
    }
    out
}

fn label_set(labels: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_label(&mut out, k, v);
    }
    out
}

/// A host label's Prometheus name: `label_` and the key with every character outside
/// `[A-Za-z0-9_]` replaced by `_`.
pub fn label_name(key: &str) -> String {
    let mut name = String::with_capacity(6 + key.len());
    name.push_str("label_");
    name.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    name
}

fn push_label(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    escape_label_value(out, value);
    out.push('"');
}

/// The text format's escaping of label values: backslash, double quote and line feed.
pub fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn push_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

fn ms_to_secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::fleet::{DetectorStatus, HostLatestValue, OpenAnomalies, Severity};

    fn host(id: &str, hostname: &str, connected: bool, labels: &[(&str, &str)]) -> Host {
        Host {
            id: id.into(),
            hostname: hostname.into(),
            os: String::new(),
            kernel: String::new(),
            agent_version: String::new(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            interval_ms: 1000,
            first_seen_ms: 1,
            last_seen_ms: 1_700_000_000_500,
            connected,
            last_seq: 0,
            outbox_dropped_total: 0,
            cert_not_after_ms: 0,
            transport: "grpc".into(),
            revoked: false,
            revoked_at_ms: 0,
            detector: DetectorStatus::default(),
        }
    }

    fn value(host: &str, metric: &str, device: &str, v: f64) -> HostLatestValue {
        HostLatestValue {
            host_id: host.into(),
            metric: metric.into(),
            device: device.into(),
            ts_ms: 1_700_000_000_000,
            value: v,
        }
    }

    #[test]
    fn label_values_are_escaped_per_the_text_format() {
        let cases = [
            ("plain", "plain"),
            (r"C:\temp", r"C:\\temp"),
            (r#"say "hi""#, r#"say \"hi\""#),
            ("two\nlines", r"two\nlines"),
            ("\\\"\n", r#"\\\"\n"#),
            ("tab\tand ünïcode", "tab\tand ünïcode"),
        ];
        for (raw, want) in cases {
            let mut out = String::new();
            escape_label_value(&mut out, raw);
            assert_eq!(out, want, "{raw:?}");
        }
    }

    #[test]
    fn label_names_are_sanitised() {
        let cases = [
            ("env", "label_env"),
            ("app.kubernetes.io/name", "label_app_kubernetes_io_name"),
            ("9lives", "label_9lives"),
            ("rack-α", "label_rack__"),
        ];
        for (key, want) in cases {
            assert_eq!(label_name(key), want, "{key:?}");
        }
    }

    #[test]
    fn a_snapshot_is_one_family_per_name_with_host_labels() {
        let snapshot = FleetSnapshot {
            hosts: vec![
                host(
                    "a-1",
                    "web \"one\"",
                    true,
                    &[
                        ("env", "prod\nx"),
                        ("team.name", "ops"),
                        ("team_name", "dup"),
                    ],
                ),
                host("b-2", "db", false, &[]),
            ],
            latest: vec![
                value("a-1", "cpu.total_pct", "", 12.5),
                value("a-1", "disk.used_pct", "/", 40.0),
                value("a-1", "net.rx_bytes_per_s", "eth0", f64::NAN),
            ],
            open_anomalies: vec![OpenAnomalies {
                host_id: "a-1".into(),
                family: "cpu".into(),
                severity: Severity::High,
                count: 1,
                held: 0,
                max_score: 0.75,
            }],
        };
        let text = encode(&snapshot);
        let a = r#"host="a-1",hostname="web \"one\"",label_env="prod\nx",label_team_name="ops""#;
        for line in [
            format!("sco_host_connected{{{a}}} 1"),
            r#"sco_host_connected{host="b-2",hostname="db"} 0"#.to_string(),
            format!("sco_host_last_seen_timestamp_seconds{{{a}}} 1700000000.5"),
            format!("sco_host_rollup_timestamp_seconds{{{a}}} 1700000000"),
            format!(r#"sco_host_metric{{{a},metric="cpu.total_pct",device=""}} 12.5"#),
            format!(r#"sco_host_metric{{{a},metric="disk.used_pct",device="/"}} 40"#),
            format!(r#"sco_host_metric{{{a},metric="net.rx_bytes_per_s",device="eth0"}} NaN"#),
            r#"sco_anomaly_open{host="a-1",family="cpu",severity="high"} 1"#.to_string(),
            r#"sco_anomaly_open_score{host="a-1",family="cpu",severity="high"} 0.75"#.to_string(),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line}\nin:\n{text}"
            );
        }
        // `team_name` sanitises like `team.name`, which came first: one label, not two.
        assert!(!text.contains("\"dup\""), "{text}");
        // Each family is declared once, before its samples, and every sample line belongs to
        // the family declared last.
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap_or_default();
                assert!(!declared.contains(&name), "{name} declared twice");
                declared.push(name);
            } else if !line.starts_with('#') {
                let name = line.split('{').next().unwrap_or_default();
                assert_eq!(Some(&name), declared.last(), "{line}");
            }
        }
        assert_eq!(declared.len(), 6, "{declared:?}");
    }
}
