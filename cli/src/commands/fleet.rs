//! `get`, `describe`, `approve`/`reject`, `token create` and `revoke`.

use anyhow::bail;
use serde_json::{json, Value};

use super::{emit, emit_json, Ctx};
use crate::cli::{ActionFilter, AnomalyFilter, Describe, Get, TokenCreateArgs};
use crate::client::{segment, Api, Body};
use crate::duration::{age, now_ms, utc};
use crate::render::{cell, clean, fields, labels, Table};

pub fn get(ctx: &Ctx, what: &Get) -> anyhow::Result<()> {
    let mut api = ctx.api()?;
    let v = match what {
        Get::Hosts => api.get("/hosts", &[])?,
        Get::Anomalies(f) => anomalies(&mut api, f)?,
        Get::Actions(f) => actions(&mut api, f)?,
        Get::Policies => api.get("/policies", &[])?,
        Get::Models => api.get("/models", &[])?,
        Get::Preferences(f) => super::preferences::fetch(&mut api, f)?,
    };
    if ctx.json() {
        return emit_json(&v);
    }
    let now = now_ms();
    let table = match what {
        Get::Hosts => hosts_table(&v, now),
        Get::Anomalies(_) => anomalies_table(&v, now),
        Get::Actions(_) => actions_table(&v, now),
        Get::Policies => policies_table(&v, now),
        Get::Models => models_table(&v, now),
        Get::Preferences(_) => super::preferences::table(&v),
    };
    let mut text = if table.is_empty() {
        match what {
            Get::Preferences(f) => super::preferences::nothing_learnt(f),
            _ => "nothing found\n".to_string(),
        }
    } else {
        table.render()
    };
    if matches!(what, Get::Anomalies(_)) && !v["next_offset"].is_null() {
        text.push_str("(more events: raise --limit)\n");
    }
    emit(&text)
}

fn anomalies(api: &mut Api, f: &AnomalyFilter) -> anyhow::Result<Value> {
    let mut query = vec![("limit", f.limit.to_string())];
    if let Some(h) = &f.host {
        query.push(("host", resolve_host(api, h)?));
    }
    if let Some(s) = &f.status {
        query.push(("status", s.clone()));
    }
    if let Some(s) = &f.min_severity {
        query.push(("min_severity", s.clone()));
    }
    api.get("/anomaly", &query)
}

fn actions(api: &mut Api, f: &ActionFilter) -> anyhow::Result<Value> {
    let mut query = vec![("limit", f.limit.to_string())];
    if let Some(h) = &f.host {
        query.push(("host", resolve_host(api, h)?));
    }
    if let Some(s) = &f.state {
        query.push(("state", s.clone()));
    }
    if let Some(r) = &f.rule {
        query.push(("rule", r.clone()));
    }
    api.get("/remediation/actions", &query)
}

fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key].as_array().map_or(&[], Vec::as_slice)
}

fn hosts_table(v: &Value, now: i64) -> Table {
    let mut t = Table::new(&[
        "ID",
        "HOSTNAME",
        "STATUS",
        "TRANSPORT",
        "AGENT",
        "DETECTOR",
        "LAST SEEN",
        "LABELS",
    ]);
    for h in items(v, "hosts") {
        t.row([
            cell(&h["id"]),
            cell(&h["hostname"]),
            host_status(h).into(),
            cell(&h["transport"]),
            cell(&h["agent_version"]),
            cell(&h["detector"]["state"]),
            age(h["last_seen_ms"].as_i64().unwrap_or(0), now),
            labels(&h["labels"]),
        ]);
    }
    t
}

fn host_status(h: &Value) -> &'static str {
    if h["revoked"] == true {
        "revoked"
    } else if h["connected"] == true {
        "connected"
    } else {
        "disconnected"
    }
}

fn anomalies_table(v: &Value, now: i64) -> Table {
    let mut t = Table::new(&[
        "ID",
        "HOST",
        "FAMILY",
        "SEVERITY",
        "STATUS",
        "STARTED",
        "SCORE",
        "TOP METRIC",
    ]);
    for a in items(v, "anomalies") {
        t.row([
            cell(&a["id"]),
            cell(&a["host_id"]),
            cell(&a["family"]),
            cell(&a["severity"]),
            cell(&a["status"]),
            age(a["started_ms"].as_i64().unwrap_or(0), now),
            a["peak_score"]
                .as_f64()
                .map(|s| format!("{s:.2}"))
                .unwrap_or_default(),
            cell(&a["top_metric"]),
        ]);
    }
    t
}

fn actions_table(v: &Value, now: i64) -> Table {
    let mut t = Table::new(&[
        "ID", "HOST", "RULE", "ACTION", "MODE", "APPROVAL", "STATE", "UPDATED", "REASON",
    ]);
    for a in items(v, "actions") {
        t.row([
            cell(&a["id"]),
            cell(&a["host_id"]),
            cell(&a["rule"]),
            cell(&a["action"]["type"]),
            cell(&a["mode"]),
            cell(&a["approval"]),
            cell(&a["state"]),
            age(a["updated_at_ms"].as_i64().unwrap_or(0), now),
            cell(&a["reason"]),
        ]);
    }
    t
}

fn policies_table(v: &Value, now: i64) -> Table {
    let mut t = Table::new(&["NAME", "REVISION", "ROLLOUT", "CREATED BY", "CREATED"]);
    for p in items(v, "policies") {
        t.row([
            cell(&p["name"]),
            cell(&p["latest_revision"]),
            rollout_summary(&p["rollout"]),
            cell(&p["created_by"]),
            age(p["created_at_ms"].as_i64().unwrap_or(0), now),
        ]);
    }
    t
}

fn models_table(v: &Value, now: i64) -> Table {
    let mut t = Table::new(&[
        "NUMBER",
        "VERSION",
        "NAME",
        "SHA256",
        "ROLLOUT",
        "TARGET",
        "CREATED BY",
        "CREATED",
    ]);
    let rollout = &v["rollout"];
    for m in items(v, "models") {
        let sha = m["sha256"].as_str().unwrap_or_default();
        let (rolled, target) = if rollout["revision"] == m["number"] {
            (
                cell(&rollout["state"]),
                super::model::target_text(&rollout["target"]),
            )
        } else {
            ("-".into(), "-".into())
        };
        t.row([
            cell(&m["number"]),
            cell(&m["version"]),
            cell(&m["name"]),
            sha.chars().take(12).collect(),
            rolled,
            target,
            cell(&m["created_by"]),
            age(m["created_at_ms"].as_i64().unwrap_or(0), now),
        ]);
    }
    t
}

/// `revision 2 complete`, `-` without a rollout.
pub fn rollout_summary(r: &Value) -> String {
    if r.is_null() {
        return "-".into();
    }
    format!("revision {} {}", cell(&r["revision"]), cell(&r["state"]))
}

pub fn describe(ctx: &Ctx, what: &Describe) -> anyhow::Result<()> {
    let Describe::Host { host } = what;
    let mut api = ctx.api()?;
    let id = resolve_host(&mut api, host)?;
    let v = api.get(&format!("/hosts/{}", segment(&id)), &[])?;
    if ctx.json() {
        return emit_json(&v);
    }
    emit(&describe_host(&v, now_ms()))
}

fn describe_host(v: &Value, now: i64) -> String {
    let h = &v["host"];
    let ms = |k: &str| h[k].as_i64().unwrap_or(0);
    let d = &h["detector"];
    let detector = match d["state"].as_str() {
        Some("warming_up") => format!(
            "warming up until {}",
            utc(d["warm_until_ms"].as_i64().unwrap_or(0))
        ),
        Some("calibrated") => format!(
            "calibrated at {}{}",
            utc(d["calibrated_at_ms"].as_i64().unwrap_or(0)),
            if d["restored"] == true {
                " (restored at start)"
            } else {
                ""
            }
        ),
        _ => "unknown".into(),
    };
    let mut out = fields(&[
        ("id", cell(&h["id"])),
        ("hostname", cell(&h["hostname"])),
        ("status", host_status(h).into()),
        ("os", cell(&h["os"])),
        ("kernel", cell(&h["kernel"])),
        ("agent", cell(&h["agent_version"])),
        ("labels", labels(&h["labels"])),
        ("first seen", utc(ms("first_seen_ms"))),
        (
            "last seen",
            match ms("last_seen_ms") {
                0 => "-".to_string(),
                at => format!("{} ({})", utc(at), age(at, now)),
            },
        ),
        ("certificate expires", utc(ms("cert_not_after_ms"))),
        ("detector", detector),
        ("outbox dropped", cell(&h["outbox_dropped_total"])),
    ]);
    let mut latest = Table::new(&["METRIC", "DEVICE", "VALUE", "AT"]);
    for m in items(v, "latest") {
        let metric = cell(&m["metric"]);
        let value = match m["value"].as_f64() {
            Some(v) if metric.ends_with("_bytes") && v >= 0.0 => bytes(v as u64),
            Some(v) if metric.ends_with("_bytes_per_s") && v >= 0.0 => {
                format!("{}/s", bytes(v as u64))
            }
            _ => number(&m["value"]),
        };
        latest.row([
            metric,
            cell(&m["device"]),
            value,
            age(m["ts_ms"].as_i64().unwrap_or(0), now),
        ]);
    }
    out.push_str("\nLatest values:\n");
    out.push_str(&if latest.is_empty() {
        "  none yet\n".to_string()
    } else {
        latest.render()
    });
    let top = &v["top_processes"];
    let mut procs = Table::new(&["PID", "NAME", "CPU %", "RSS", "UNIT", "COMMAND"]);
    for p in items(top, "processes") {
        procs.row([
            cell(&p["pid"]),
            cell(&p["name"]),
            number(&p["cpu_pct"]),
            p["rss_bytes"].as_u64().map(bytes).unwrap_or_default(),
            cell(&p["unit"]),
            clean(&cell(&p["cmdline"])).chars().take(80).collect(),
        ]);
    }
    out.push_str(&format!(
        "\nTop processes ({}):\n",
        age(top["ts_ms"].as_i64().unwrap_or(0), now)
    ));
    out.push_str(&if procs.is_empty() {
        "  none yet\n".to_string()
    } else {
        procs.render()
    });
    out
}

/// A number with at most two decimals, trailing zeros dropped.
fn number(v: &Value) -> String {
    match v.as_f64() {
        Some(f) => {
            let s = format!("{f:.2}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
        None => cell(v),
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A host's id from its id or its hostname (which must name exactly one host).
pub fn resolve_host(api: &mut Api, name: &str) -> anyhow::Result<String> {
    let v = api.get("/hosts", &[])?;
    pick_host(items(&v, "hosts"), name)
}

fn pick_host(hosts: &[Value], name: &str) -> anyhow::Result<String> {
    if hosts.iter().any(|h| h["id"] == name) {
        return Ok(name.to_string());
    }
    let ids: Vec<String> = hosts
        .iter()
        .filter(|h| h["hostname"] == name)
        .map(|h| cell(&h["id"]))
        .collect();
    match ids.as_slice() {
        [id] => Ok(id.clone()),
        [] => bail!(
            "no host {:?}: neither a host id nor a hostname (see `scoctl get hosts`)",
            clean(name)
        ),
        many => bail!(
            "hostname {:?} names {} hosts ({}): give an id",
            clean(name),
            many.len(),
            many.join(", ")
        ),
    }
}

/// What an operator decides on a proposed action.
pub enum Verdict<'a> {
    Approve,
    Reject { reason: Option<&'a str> },
}

pub fn decide(ctx: &Ctx, id: &str, verdict: &Verdict) -> anyhow::Result<()> {
    let mut api = ctx.api()?;
    let (verb, done, body) = match verdict {
        Verdict::Approve => ("approve", "approved", Body::None),
        // Without a reason no body, exactly as before reasons existed.
        Verdict::Reject { reason: None } => ("reject", "rejected", Body::None),
        Verdict::Reject {
            reason: Some(reason),
        } => (
            "reject",
            "rejected",
            Body::Json(json!({ "reason": reason })),
        ),
    };
    let v = api.post(
        &format!("/remediation/actions/{}/{verb}", segment(id)),
        &body,
    )?;
    if ctx.json() {
        return emit_json(&v);
    }
    let a = &v["action"];
    // The answer carries the state the action is in now: an approved one may already be
    // running (a fleet lease was free).
    let mut line = format!(
        "action {} ({} on {}) {done} by {}; state now {}",
        cell(&a["id"]),
        cell(&a["rule"]),
        cell(&a["host_id"]),
        cell(&a["decided_by"]),
        cell(&a["state"]),
    );
    let reason = clean(&cell(&a["reason"]));
    if matches!(verdict, Verdict::Reject { .. }) && !reason.is_empty() {
        line.push_str(&format!("; reason: {reason}"));
    }
    line.push('\n');
    emit(&line)
}

pub fn token_create(ctx: &Ctx, args: &TokenCreateArgs) -> anyhow::Result<()> {
    let mut api = ctx.api()?;
    let token_labels: serde_json::Map<String, Value> = args
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let body = json!({
        "ttl_secs": i64::try_from(args.ttl).unwrap_or(i64::MAX),
        "max_uses": args.max_uses,
        "labels": token_labels,
    });
    let v = api.post("/enrollment-tokens", &Body::Json(body))?;
    if ctx.json() {
        return emit_json(&v);
    }
    let t = &v["enrollment_token"];
    let mut out = fields(&[
        ("token", cell(&v["token"])),
        ("id", cell(&t["id"])),
        ("max uses", cell(&t["max_uses"])),
        ("expires", utc(t["expires_at_ms"].as_i64().unwrap_or(0))),
        ("labels", labels(&t["labels"])),
        ("ca sha256", cell(&v["ca_sha256"])),
    ]);
    out.push_str(&format!(
        "\nThe token is shown only now. On each new host:\n  sco-agent enroll --server CONTROL_PLANE:7443 --token {} --ca-sha256 {} --out /etc/sco-agent\n",
        clean(&cell(&v["token"])),
        clean(&cell(&v["ca_sha256"]))
    ));
    emit(&out)
}

pub fn revoke(ctx: &Ctx, host: &str) -> anyhow::Result<()> {
    let mut api = ctx.api()?;
    let id = resolve_host(&mut api, host)?;
    let v = api.post(&format!("/hosts/{}/revoke", segment(&id)), &Body::None)?;
    if ctx.json() {
        return emit_json(&v);
    }
    emit(&format!(
        "host {} revoked: its agent is refused from now on (enroll it again to readmit it)\n",
        cell(&v["host"])
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_found_by_id_or_unique_hostname() {
        let hosts = vec![
            json!({"id": "web-1-aaaa0000", "hostname": "web-1"}),
            json!({"id": "db-aaaa0000", "hostname": "db"}),
            json!({"id": "db-bbbb0000", "hostname": "db"}),
        ];
        assert_eq!(
            pick_host(&hosts, "web-1-aaaa0000").expect("id"),
            "web-1-aaaa0000"
        );
        assert_eq!(pick_host(&hosts, "web-1").expect("name"), "web-1-aaaa0000");
        let e = pick_host(&hosts, "db").expect_err("ambiguous").to_string();
        assert!(e.contains("db-aaaa0000, db-bbbb0000"), "{e}");
        let e = pick_host(&hosts, "nope").expect_err("unknown").to_string();
        assert!(e.contains("no host \"nope\""), "{e}");
    }

    #[test]
    fn action_rows_show_rule_type_and_state() {
        let v = json!({"count": 1, "actions": [{
            "id": "act-1", "host_id": "h-1", "rule": "clean/old", "action": {"type": "clean_paths"},
            "mode": "execute", "approval": "approve", "state": "proposed", "updated_at_ms": 1000,
            "reason": "waiting for an approval"
        }]});
        let text = actions_table(&v, 61_000).render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("ID     HOST  RULE       ACTION"),
            "{text}"
        );
        assert!(
            lines[1].contains(
                "clean_paths  execute  approve   proposed  1m ago   waiting for an approval"
            ),
            "{text}"
        );
    }

    #[test]
    fn numbers_and_bytes_are_short() {
        assert_eq!(number(&json!(12.5)), "12.5");
        assert_eq!(number(&json!(3.0)), "3");
        assert_eq!(number(&json!(0.123)), "0.12");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn a_host_description_shows_sizes_and_rates_in_bytes() {
        let v = json!({
            "host": {"id": "h-1", "hostname": "h", "connected": true, "detector": {"state": "calibrated", "calibrated_at_ms": 1000, "restored": true}},
            "latest": [
                {"metric": "mem.used_bytes", "device": "", "ts_ms": 1000, "value": 2147483648.0},
                {"metric": "disk.read_bytes_per_s", "device": "vda", "ts_ms": 1000, "value": 1536.0},
                {"metric": "cpu.total_pct", "device": "", "ts_ms": 1000, "value": 12.345},
            ],
            "top_processes": {"ts_ms": 1000, "processes": [
                {"pid": 42, "name": "dd", "cpu_pct": 50.0, "rss_bytes": 1048576, "unit": "x.service", "cmdline": "dd if=/dev/zero"}
            ]},
        });
        let text = describe_host(&v, 3000);
        assert!(
            text.contains(
                "detector:            calibrated at 1970-01-01 00:00:01 UTC (restored at start)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("mem.used_bytes                 2.0 GiB    2s ago\n"),
            "{text}"
        );
        assert!(
            text.contains("disk.read_bytes_per_s  vda     1.5 KiB/s  2s ago\n"),
            "{text}"
        );
        assert!(
            text.contains("cpu.total_pct                  12.35      2s ago\n"),
            "{text}"
        );
        assert!(
            text.contains("42   dd    50     1.0 MiB  x.service  dd if=/dev/zero\n"),
            "{text}"
        );
    }

    #[test]
    fn a_host_description_survives_missing_fields() {
        let text = describe_host(&json!({}), 0);
        assert!(
            text.contains("detector:") && text.contains("none yet"),
            "{text}"
        );
    }
}
