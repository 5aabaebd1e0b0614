//! Feedback closes the loop, end to end: an operator's verdict on a real CPU event of one host
//! becomes a signed, canaried policy that reaches that host only; from then on the same load
//! opens no CPU event there, while the other host, under the same load, still alarms.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sco_tests::{burner_turn, wait_calibrated, wait_for, Burners, Db, Sandbox, BURNER_DETECT};
use serde_json::{json, Value};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `HH:MM` (UTC) of now plus `minutes`.
fn clock(minutes: i64) -> String {
    let m = (now_ms() / 60_000 + minutes).rem_euclid(1440);
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// The newest CPU event of `host` that started at or after `since_ms`.
async fn cpu_event(sb: &Sandbox, token: &str, host: &str, since_ms: i64) -> Option<Value> {
    let (_, body) = sb
        .get(token, &format!("/anomaly?host={host}&from={since_ms}"))
        .await;
    body["anomalies"]
        .as_array()?
        .iter()
        .find(|e| e["family"] == "cpu")
        .cloned()
}

async fn no_open_cpu_events(sb: &Sandbox, token: &str) -> Option<()> {
    let (_, body) = sb.get(token, "/anomaly?status=open").await;
    let open = body["anomalies"].as_array()?;
    (!open.iter().any(|e| e["family"] == "cpu")).then_some(())
}

async fn verdict_reaches_the_scoped_host_only(db: Db) {
    let _turn = burner_turn().await;
    let Some(sb) = Sandbox::new(db).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let admin = sb.admin_token().await;
    let operator = sb.add_user(&admin, "olga", "operator").await;
    let viewer = sb.add_user(&admin, "vera", "viewer").await;
    let one = sb.start_agent_with("agent-1", BURNER_DETECT);
    let two = sb.start_agent_with("agent-2", BURNER_DETECT);
    wait_calibrated(&one);
    wait_calibrated(&two);
    let marker = format!("sco-feedback-{}", std::process::id());

    // The same load alarms on both hosts.
    let started = now_ms();
    let burners = Burners::start(&marker);
    let event = wait_for("a cpu event on agent-1", || {
        cpu_event(&sb, &viewer, "agent-1", started - 5_000)
    })
    .await;
    wait_for("a cpu event on agent-2", || {
        cpu_event(&sb, &viewer, "agent-2", started - 5_000)
    })
    .await;
    drop(burners);
    wait_for("the cpu events to close", || {
        no_open_cpu_events(&sb, &viewer)
    })
    .await;
    let id = event["id"].as_str().expect("event id").to_string();

    // A viewer may not give a verdict; bad ones are refused naming the field.
    let path = format!("/anomaly/{id}/feedback");
    let (status, _) = sb
        .post(&viewer, &path, &json!({"verdict": "expected"}))
        .await;
    assert_eq!(status, 403);
    let (status, body) = sb
        .post(&operator, &path, &json!({"verdict": "maybe"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("verdict"),
        "{body}"
    );
    let (status, body) = sb
        .post(
            &operator,
            &path,
            &json!({"verdict": "expected", "scope": {"window": {"start": "25:00", "end": "01:00"}}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // Planned work recurring around this time of day, on this host.
    let (status, body) = sb
        .post(
            &operator,
            &path,
            &json!({
                "verdict": "expected",
                "note": "nightly batch job",
                "scope": {"window": {"start": clock(-60), "end": clock(60)}},
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let fb = &body["feedback"];
    let policy = fb["policy"]
        .as_str()
        .expect("a generated policy")
        .to_string();
    let revision = fb["policy_revision"].as_i64().expect("revision");
    assert!(policy.starts_with("feedback-"), "{fb}");
    assert_eq!(fb["target"]["hosts"], json!(["agent-1"]), "{fb}");
    assert_eq!(
        fb["detection"]["quiet_windows"][0]["families"],
        json!(["cpu"]),
        "{fb}"
    );
    // the policy is signed and rolled out like any other, to agent-1 only
    sb.wait_policy_applied(&admin, &policy, "agent-1", revision)
        .await;
    let (_, status_body) = sb.get(&viewer, &format!("/policies/{policy}/status")).await;
    let hosts = status_body["hosts"].as_array().cloned().unwrap_or_default();
    assert!(
        hosts
            .iter()
            .all(|h| h["host_id"] != "agent-2" || h["desired_revision"] == 0),
        "agent-2 is not targeted: {status_body}"
    );
    let (_, revisions) = sb.get(&viewer, &format!("/policies/{policy}")).await;
    assert!(
        revisions["revisions"][0]["signature"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{revisions}"
    );

    // The verdict is shown on the event, in the list and in the export.
    let (_, shown) = sb.get(&viewer, &format!("/anomaly/{id}")).await;
    assert_eq!(
        shown["anomaly"]["feedback"][0]["verdict"], "expected",
        "{shown}"
    );
    let (_, list) = sb.get(&viewer, "/feedback?host=agent-1").await;
    assert_eq!(list["feedback"][0]["policy"], policy.as_str(), "{list}");
    let r = reqwest::Client::new()
        .get(format!("{}/feedback/export", sb.base_url()))
        .bearer_auth(&viewer)
        .send()
        .await
        .expect("export");
    let text = r.text().await.expect("export text");
    let line: Value = serde_json::from_str(text.lines().next().expect("one line")).expect("json");
    assert_eq!(line["anomaly_id"], id.as_str());
    assert_eq!(line["label"], 0);
    assert!(
        line["metrics"].as_array().is_some_and(|m| !m.is_empty()),
        "{line}"
    );
    assert!(
        line["rows"].as_array().is_some_and(|r| !r.is_empty()),
        "{line}"
    );

    // The same load again: agent-2 alarms, agent-1 does not.
    let again = now_ms();
    let burners = Burners::start(&marker);
    let other = wait_for("a new cpu event on agent-2", || {
        cpu_event(&sb, &viewer, "agent-2", again - 1_000)
    })
    .await;
    // as long again as agent-2 took, and at least 10 s, for agent-1 to (wrongly) alarm
    let waited = (now_ms() - again).max(10_000);
    tokio::time::sleep(Duration::from_millis(waited as u64)).await;
    let quiet = cpu_event(&sb, &viewer, "agent-1", again - 1_000).await;
    drop(burners);
    assert!(
        quiet.is_none(),
        "agent-1 alarmed despite the verdict: {quiet:?}"
    );
    assert_eq!(other["host_id"], "agent-2");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verdict_changes_what_the_scoped_host_alarms_on_and_nothing_else_sqlite() {
    verdict_reaches_the_scoped_host_only(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verdict_changes_what_the_scoped_host_alarms_on_and_nothing_else_postgres() {
    verdict_reaches_the_scoped_host_only(Db::Postgres).await;
}
