//! `GET /metrics/fleet` against a real control plane and real agents: each connected host's
//! newest values with its labels (escaped as the Prometheus text format wants), its
//! connection and last-seen time, the open anomaly events (from a real CPU burner on
//! SQLite; a stored event on PostgreSQL, where the point is the portable SQL), a
//! disconnected host without values, and the viewer role the route needs.

use std::collections::BTreeMap;

use sco_tests::{wait_calibrated, wait_for, Burners, Db, Proc, Sandbox, BURNER_DETECT};
use serde_json::{json, Value};

/// One sample of the text format.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format, label escapes included; panics on anything else.
fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name, rest) = line
            .split_once('{')
            .unwrap_or_else(|| panic!("no labels: {line}"));
        let mut labels = BTreeMap::new();
        let mut chars = rest.chars();
        loop {
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            assert_eq!(chars.next(), Some('"'), "{line}");
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => panic!("bad escape {other:?} in {line}"),
                    },
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => panic!("unterminated value in {line}"),
                }
            }
            labels.insert(key, value);
            match chars.next() {
                Some(',') => {}
                Some('}') => break,
                other => panic!("unexpected {other:?} in {line}"),
            }
        }
        let value: String = chars.collect();
        let value = value.trim();
        let value = match value {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value {v:?} in {line}")),
        };
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    out
}

async fn scrape(sb: &Sandbox, token: Option<&str>) -> (u16, String, String) {
    let mut req = reqwest::Client::new().get(format!("{}/metrics/fleet", sb.base_url()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("scrape");
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, content_type, r.text().await.unwrap_or_default())
}

fn find<'a>(samples: &'a [Sample], name: &str, host: &str) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name && s.labels.get("host").map(String::as_str) == Some(host))
        .collect()
}

async fn connected(sb: &Sandbox, token: &str, host: &str) -> Value {
    wait_for(&format!("{host} to connect"), || async {
        let (_, body) = sb.get(token, &format!("/hosts/{host}")).await;
        (body["host"]["connected"] == true).then(|| body["host"].clone())
    })
    .await
}

async fn fleet_metrics(db: Db) {
    let Some(sb) = Sandbox::new(db).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let admin = sb.admin_token().await;
    // The burner's host runs a short-warm-up detector; the other a default one.
    let real_anomaly = db == Db::Sqlite;
    let agent_1: Proc =
        sb.start_agent_with("agent-1", if real_anomaly { BURNER_DETECT } else { "" });
    let mut agent_2 = sb.start_agent("agent-2");
    let host_1 = connected(&sb, &admin, "agent-1").await;
    connected(&sb, &admin, "agent-2").await;
    let hostname = host_1["hostname"].as_str().expect("hostname").to_string();

    // Labels given at enrollment, with characters the text format must escape and a key
    // that is not a Prometheus label name.
    let pool = sb.db().await;
    sqlx::query("UPDATE hosts SET enrolled_labels = $1 WHERE id = 'agent-1'")
        .bind(json!({"team.name": "say \"hi\" \\ to\nops"}).to_string())
        .execute(&pool)
        .await
        .expect("set enrolled labels");

    // Role: the same as every read route (viewer), by bearer token.
    let (status, _, body) = scrape(&sb, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        serde_json::from_str::<Value>(&body).is_ok_and(|v| v["error"].is_string()),
        "{body}"
    );
    let (status, _, _) = scrape(&sb, Some("not-a-token")).await;
    assert_eq!(status, 401);
    let (status, body) = sb
        .post(
            &admin,
            "/auth/register",
            &json!({"username": "vera", "password": "viewer-password-1", "role": "viewer"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let viewer = sb.login("vera", "viewer-password-1").await;

    // Both hosts' series, with their labels.
    let samples = wait_for("both hosts' values in /metrics/fleet", || async {
        let (status, content_type, text) = scrape(&sb, Some(&viewer)).await;
        assert_eq!(status, 200, "{text}");
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        let samples = parse(&text);
        let has_cpu = |host: &str| {
            find(&samples, "sco_host_metric", host)
                .iter()
                .any(|s| s.labels["metric"] == "cpu.total_pct")
        };
        let labelled = find(&samples, "sco_host_connected", "agent-1")
            .first()
            .is_some_and(|s| s.labels.contains_key("label_team_name"));
        (has_cpu("agent-1") && has_cpu("agent-2") && labelled).then_some(samples)
    })
    .await;
    let connected_1 = find(&samples, "sco_host_connected", "agent-1");
    assert_eq!(connected_1.len(), 1, "{connected_1:?}");
    let s = connected_1[0];
    assert_eq!(s.value, 1.0);
    let mut want = BTreeMap::new();
    want.insert("host".to_string(), "agent-1".to_string());
    want.insert("hostname".to_string(), hostname.clone());
    want.insert("label_env".to_string(), "test".to_string());
    want.insert(
        "label_team_name".to_string(),
        "say \"hi\" \\ to\nops".to_string(),
    );
    assert_eq!(s.labels, want);
    let cpu = find(&samples, "sco_host_metric", "agent-1")
        .into_iter()
        .find(|s| s.labels["metric"] == "cpu.total_pct" && s.labels["device"].is_empty())
        .expect("cpu.total_pct of agent-1");
    assert!((0.0..=100.0).contains(&cpu.value), "{cpu:?}");
    assert_eq!(cpu.labels["label_team_name"], want["label_team_name"]);
    assert_eq!(cpu.labels["hostname"], hostname);
    for metric in ["mem.used_pct", "load.1", "proc.count"] {
        assert!(
            find(&samples, "sco_host_metric", "agent-1")
                .iter()
                .any(|s| s.labels["metric"] == metric),
            "{metric} missing"
        );
    }
    let now_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    for name in [
        "sco_host_last_seen_timestamp_seconds",
        "sco_host_rollup_timestamp_seconds",
    ] {
        let seen = find(&samples, name, "agent-1");
        assert_eq!(seen.len(), 1, "{name}: {seen:?}");
        assert!((now_secs - seen[0].value).abs() < 60.0, "{name}: {seen:?}");
    }
    // The values match what the REST API says about the same host.
    let (_, detail) = sb.get(&admin, "/hosts/agent-1").await;
    let rest_metrics: Vec<&str> = detail["latest"]
        .as_array()
        .map(|l| l.iter().filter_map(|v| v["metric"].as_str()).collect())
        .unwrap_or_default();
    for s in find(&samples, "sco_host_metric", "agent-1") {
        assert!(rest_metrics.contains(&s.labels["metric"].as_str()), "{s:?}");
    }

    // Open anomalies: per host, family and severity, as GET /anomaly lists them.
    let _burners = if real_anomaly {
        wait_calibrated(&agent_1);
        Some(Burners::start("sco-fleet-metrics-test"))
    } else {
        sqlx::query(
            "INSERT INTO anomalies (id, host_id, run_started_ms, status, started_ms, updated_ms, ended_ms,
                score, peak_score, severity, severity_rank, top_metric, contributors, context, model,
                close_reason, family, culprits)
             VALUES ('agent-1:999999', 'agent-1', 0, 'open', 1, 1, NULL, 0.875, 0.9, 'high', 2,
                'cpu.total_pct', '[]', '{}', 'test@1', '', 'cpu', '[]')",
        )
        .execute(&pool)
        .await
        .expect("insert an open anomaly");
        None
    };
    let (open, samples) = wait_for("the open anomaly in /metrics/fleet", || async {
        let (_, body) = sb.get(&admin, "/anomaly?host=agent-1&status=open").await;
        let events = body["anomalies"].as_array().cloned().unwrap_or_default();
        if events.is_empty() {
            return None;
        }
        let (_, _, text) = scrape(&sb, Some(&viewer)).await;
        let samples = parse(&text);
        // (family, severity) -> (count, highest score), from the REST API.
        let mut want: BTreeMap<(String, String), (f64, f64)> = BTreeMap::new();
        for e in &events {
            let key = (
                e["family"].as_str().unwrap_or_default().to_string(),
                e["severity"].as_str().unwrap_or_default().to_string(),
            );
            let entry = want.entry(key).or_insert((0.0, f64::MIN));
            entry.0 += 1.0;
            entry.1 = entry.1.max(e["score"].as_f64().unwrap_or_default());
        }
        let got = |name: &str| -> BTreeMap<(String, String), f64> {
            find(&samples, name, "agent-1")
                .iter()
                .map(|s| {
                    (
                        (s.labels["family"].clone(), s.labels["severity"].clone()),
                        s.value,
                    )
                })
                .collect()
        };
        let counts = got("sco_anomaly_open");
        let scores = got("sco_anomaly_open_score");
        let agree = want.len() == counts.len()
            && want.iter().all(|(k, (n, score))| {
                counts.get(k) == Some(n) && scores.get(k).is_some_and(|s| (s - score).abs() < 1e-9)
            });
        agree.then_some((events, samples))
    })
    .await;
    let open_samples = find(&samples, "sco_anomaly_open", "agent-1");
    assert!(!open_samples.is_empty(), "{open:?}");
    for s in &open_samples {
        assert!(s.value >= 1.0, "{s:?}");
        let keys: Vec<&str> = s.labels.keys().map(String::as_str).collect();
        assert_eq!(keys, ["family", "host", "severity"], "{s:?}");
    }
    if !real_anomaly {
        let s = open_samples[0];
        assert_eq!(
            (s.labels["family"].as_str(), s.labels["severity"].as_str()),
            ("cpu", "high")
        );
        let score = find(&samples, "sco_anomaly_open_score", "agent-1");
        assert_eq!(score[0].value, 0.875);
    }

    // A host that goes away stays known, disconnected, without values that would look
    // current.
    agent_2.terminate();
    let samples = wait_for("agent-2 disconnected in /metrics/fleet", || async {
        let (_, _, text) = scrape(&sb, Some(&viewer)).await;
        let samples = parse(&text);
        find(&samples, "sco_host_connected", "agent-2")
            .first()
            .is_some_and(|s| s.value == 0.0)
            .then_some(samples)
    })
    .await;
    assert!(find(&samples, "sco_host_metric", "agent-2").is_empty());
    assert!(find(&samples, "sco_host_rollup_timestamp_seconds", "agent-2").is_empty());
    assert_eq!(
        find(&samples, "sco_host_last_seen_timestamp_seconds", "agent-2").len(),
        1
    );
    assert!(!find(&samples, "sco_host_metric", "agent-1").is_empty());
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fleet_for_prometheus_sqlite() {
    fleet_metrics(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fleet_for_prometheus_postgres() {
    fleet_metrics(Db::Postgres).await;
}
