//! The agent reports on itself: its local `GET /health` and `GET /metrics` (`[exporter]`),
//! whose host families are checked against a real node_exporter on the same host (Debian's
//! `prometheus-node-exporter`, started here on an ephemeral port, never as a service), no
//! endpoint when it is off, and `sco-agent status` saying when the agent is not running.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use sco_tests::{bin, free_addr, listens, wait_for, wait_until, Db, Proc, Sandbox};
use serde_json::Value;

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

/// One metric family of a text exposition: its TYPE and the label names of its samples.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
    samples: Vec<(BTreeMap<String, String>, String)>,
    help: bool,
}

/// Parses the Prometheus text format (0.0.4) strictly enough to compare two exporters:
/// HELP and TYPE lines, sample names, label names and (escaped) values.
fn parse(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            let f = families.entry(name.to_string()).or_default();
            assert!(f.kind.is_empty(), "second TYPE line for {name}");
            f.kind = kind.to_string();
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            families.entry(name.to_string()).or_default().help = true;
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).expect("sample has a value");
        let name = &line[..name_end];
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices();
            let mut end = None;
            loop {
                // label name up to '=', or the closing brace
                let mut key = String::new();
                for (i, c) in chars.by_ref() {
                    match c {
                        '=' => break,
                        '}' => {
                            end = Some(i);
                            break;
                        }
                        ',' if key.is_empty() => {}
                        c => key.push(c),
                    }
                }
                if end.is_some() {
                    break;
                }
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                let mut value = String::new();
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => match chars.next().map(|(_, c)| c) {
                            Some('n') => value.push('\n'),
                            Some(c) => value.push(c),
                            None => panic!("dangling escape in {line}"),
                        },
                        '"' => break,
                        c => value.push(c),
                    }
                }
                assert!(
                    labels.insert(key.clone(), value).is_none(),
                    "label {key} twice in {line}"
                );
            }
            let end = end.expect("closing brace");
            rest = &inner[end + 1..];
        }
        let value = rest
            .trim()
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_string();
        // histogram and summary samples carry suffixes; counters and gauges do not
        let family = if families.contains_key(name) {
            name
        } else {
            ["_sum", "_count", "_bucket"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| families.contains_key(*f)))
                .unwrap_or(name)
        };
        let f = families.entry(family.to_string()).or_default();
        f.labels.extend(labels.keys().cloned());
        f.samples.push((labels, value));
    }
    families
}

async fn get(url: &str) -> reqwest::Response {
    reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// `sco-agent status --config CONFIG`: exit code and stdout.
fn status(config: &Path) -> (i32, String) {
    let out = Command::new(bin("sco-agent"))
        .args(["status", "--config"])
        .arg(config)
        .output()
        .expect("run sco-agent status");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Whether a node_exporter is here to compare with; in CI it must be.
fn node_exporter_installed() -> bool {
    if Path::new(NODE_EXPORTER).exists() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{NODE_EXPORTER} is missing: CI must install it (apt-get install -y prometheus-node-exporter)"
    );
    eprintln!(
        "skipping the comparison with node_exporter: {NODE_EXPORTER} is not installed \
         (apt-get install -y prometheus-node-exporter)"
    );
    false
}

/// `/health` and `/metrics` of a running agent; its node_* families have node_exporter's
/// names, types and labels; after SIGTERM, `sco-agent status` says it is not running.
#[tokio::test(flavor = "multi_thread")]
async fn the_agent_reports_on_itself_like_node_exporter() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let addr = free_addr();
    let mut agent = sb.start_agent_with(
        "agent-1",
        &format!("[exporter]\nenabled = true\nlisten = \"{addr}\"\n"),
    );
    let base = format!("http://{addr}");

    // /health: connected, and the control plane has acknowledged something
    let health: Value = wait_for("a connected, acknowledged agent in /health", || async {
        let r = reqwest::get(format!("{base}/health")).await.ok()?;
        assert_eq!(r.status(), 200);
        let h: Value = r.json().await.ok()?;
        (h["connected"] == true && h["last_ack_ms"].is_i64()).then_some(h)
    })
    .await;
    assert_eq!(health["version"], sco_agent::VERSION, "{health}");
    assert_eq!(health["pid"], agent.pid(), "{health}");
    assert!(health["uptime_secs"].as_f64() >= Some(0.0), "{health}");
    assert!(
        health["last_ack_age_secs"].as_f64() < Some(30.0),
        "{health}"
    );
    assert!(
        health["last_sample_age_secs"].as_f64() < Some(5.0),
        "{health}"
    );
    let outbox = &health["outbox"];
    assert!(outbox["messages"].is_u64(), "{health}");
    assert_eq!(outbox["dropped_total"], 0, "{health}");
    assert!(outbox["last_seq"].as_u64() >= Some(1), "{health}");
    let detector = &health["detector"];
    // the default warm-up is 300 s
    assert_eq!(detector["state"], "warming_up", "{health}");
    assert!(detector["warm_until_ms"].as_i64() > Some(0), "{health}");
    assert!(
        detector["model"].as_str().is_some_and(|m| !m.is_empty()),
        "{health}"
    );
    assert_eq!(detector["restored"], false, "{health}");
    assert_eq!(
        health["remediation"],
        serde_json::json!({
            "actions": {"executed": 0, "dry_run": 0, "refused": 0, "failed": 0},
            "rules_fired": {"proposed": 0, "dry_run": 0, "refused": 0},
        }),
        "{health}"
    );

    // /metrics: the agent's own families and the host's
    let r = get(&format!("{base}/metrics")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.expect("metrics text");
    let ours = parse(&text);
    for (name, f) in &ours {
        assert!(f.help && !f.kind.is_empty(), "{name} lacks HELP or TYPE");
        assert!(!f.samples.is_empty(), "{name} has no sample");
        let series: BTreeSet<_> = f.samples.iter().map(|(l, _)| l).collect();
        assert_eq!(series.len(), f.samples.len(), "duplicate series in {name}");
    }
    let value = |name: &str| {
        ours.get(name)
            .and_then(|f| f.samples.first())
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
    };
    assert_eq!(value("sco_agent_connected"), "1");
    assert_eq!(value("sco_agent_outbox_dropped_total"), "0");
    assert_eq!(value("sco_agent_detector_calibrated"), "0");
    assert!(value("sco_agent_last_ack_age_seconds")
        .parse::<f64>()
        .is_ok());
    for (name, kind) in [
        ("sco_agent_outbox_messages", "gauge"),
        ("sco_agent_outbox_dropped_total", "counter"),
        ("sco_agent_remediation_actions_total", "counter"),
        ("sco_agent_remediation_rules_fired_total", "counter"),
        ("node_cpu_seconds_total", "counter"),
        ("node_load1", "gauge"),
        ("node_memory_MemTotal_bytes", "gauge"),
        ("node_memory_MemAvailable_bytes", "gauge"),
    ] {
        assert_eq!(
            ours.get(name).map(|f| f.kind.as_str()),
            Some(kind),
            "{name} in\n{text}"
        );
    }
    let decisions: BTreeSet<_> = ours["sco_agent_remediation_actions_total"]
        .samples
        .iter()
        .map(|(l, _)| l["decision"].as_str())
        .collect();
    assert_eq!(
        decisions,
        BTreeSet::from(["dry_run", "executed", "failed", "refused"])
    );
    // bad requests are answered, and the endpoint keeps serving
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/metrics"))
        .body("x")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 405);
    assert_eq!(get(&format!("{base}/nothing")).await.status(), 404);

    if node_exporter_installed() {
        compare_with_node_exporter(&sb, &ours, &text).await;
    }

    // a clean stop: `sco-agent status` says so and exits 3, as `systemctl status` does
    let config = sb.path().join("agent-agent-1/agent.toml");
    let (code, out) = status(&config);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("detector: warming up"), "{out}");
    assert!(agent.terminate().success());
    let (code, out) = status(&config);
    assert_eq!(code, 3, "{out}");
    let mut lines = out.lines();
    assert!(
        lines.next().is_some_and(
            |l| l.starts_with("not running (last status from 20") && l.ends_with(" UTC)")
        ),
        "{out}"
    );
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with("detector: warming up")),
        "{out}"
    );
    // the same figures as /health, as at the shutdown
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with("control plane: ") && l.contains("acknowledge")),
        "{out}"
    );
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with("outbox: ") && l.ends_with(" dropped")),
        "{out}"
    );
    assert!(
        lines.next().is_some_and(|l| l.starts_with(
            "remediation since start: requests executed 0, dry_run 0, refused 0, failed 0; rules fired proposed 0"
        )),
        "{out}"
    );
    assert!(reqwest::get(format!("{base}/health")).await.is_err());
}

/// Every node_* family the agent offers exists in node_exporter's output with the same
/// TYPE and the same label names; where both read the same thing the values agree.
async fn compare_with_node_exporter(sb: &Sandbox, ours: &BTreeMap<String, Family>, text: &str) {
    let addr: SocketAddr = free_addr();
    let _node_exporter = Proc::spawn(
        "node_exporter",
        Command::new(NODE_EXPORTER).arg(format!("--web.listen-address={addr}")),
        &sb.path().join("node_exporter.log"),
    );
    wait_until("node_exporter listens", || listens(addr));
    let theirs_text = get(&format!("http://{addr}/metrics"))
        .await
        .text()
        .await
        .expect("node_exporter text");
    let theirs = parse(&theirs_text);

    let mut problems = Vec::new();
    let mut compared = Vec::new();
    for (name, f) in ours.iter().filter(|(n, _)| n.starts_with("node_")) {
        match theirs.get(name) {
            None => problems.push(format!("{name}: node_exporter has no such family")),
            Some(t) if t.kind != f.kind => problems.push(format!(
                "{name}: TYPE {} here, {} in node_exporter",
                f.kind, t.kind
            )),
            Some(t) if t.labels != f.labels => problems.push(format!(
                "{name}: labels {:?} here, {:?} in node_exporter",
                f.labels, t.labels
            )),
            Some(_) => compared.push(name.as_str()),
        }
    }
    eprintln!(
        "{} node_* families compared with node_exporter: {compared:?}",
        compared.len()
    );
    assert!(
        problems.is_empty(),
        "{}\n--- ours ---\n{text}",
        problems.join("\n")
    );
    assert!(compared.len() >= 8, "{compared:?}");

    // the same CPUs and modes; the same total memory (both read /proc/meminfo)
    let cpu_series = |f: &Family| -> BTreeSet<(String, String)> {
        f.samples
            .iter()
            .map(|(l, _)| (l["cpu"].clone(), l["mode"].clone()))
            .collect()
    };
    assert_eq!(
        cpu_series(&ours["node_cpu_seconds_total"]),
        cpu_series(&theirs["node_cpu_seconds_total"])
    );
    let mem = |fs: &BTreeMap<String, Family>| {
        fs["node_memory_MemTotal_bytes"].samples[0]
            .1
            .parse::<f64>()
            .expect("a number")
    };
    assert_eq!(mem(ours), mem(&theirs));
}

/// Off by default: no port is open, and `sco-agent status` tells a killed agent from a
/// running one.
#[tokio::test(flavor = "multi_thread")]
async fn no_endpoint_when_disabled_and_status_after_a_kill() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let addr = free_addr();
    // the section is there, with a port, but not enabled
    let mut agent = sb.start_agent_with("agent-2", &format!("[exporter]\nlisten = \"{addr}\"\n"));
    wait_until("the agent connects", || {
        agent.log_contains("connected to control plane")
    });
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "nothing listens on {addr}"
    );
    assert!(
        !agent.log_contains("health and metrics endpoint listening"),
        "{}",
        agent.log_tail()
    );
    let config = sb.path().join("agent-agent-2/agent.toml");
    let (code, out) = status(&config);
    assert_eq!(code, 0, "{out}");

    agent.kill();
    let (code, out) = status(&config);
    assert_eq!(code, 3, "{out}");
    assert!(out.starts_with("not running (last status from "), "{out}");
}
