//! A real CPU burner makes the agent raise an anomaly naming CPU, visible
//! through the REST API, and the event closes once the burner stops; a burner
//! that comes back while the event is held after recovering is the same event.

use std::time::{Duration, Instant};

use sco_tests::{
    burner_turn, patience, try_wait_for, try_wait_for_longer, wait_calibrated, wait_for, Burners,
    Db, Sandbox, BURNER_DETECT,
};
use serde_json::Value;

/// CPU saturation shows in CPU time or CPU pressure (PSI); on an already
/// busy machine only the latter can move. Load averages are not scored.
fn names_cpu(event: &Value) -> bool {
    let is_cpu = |m: &str| m.starts_with("cpu.") || m.starts_with("psi.cpu.");
    let top = event["top_metric"].as_str().unwrap_or_default();
    let contributors = event["contributors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    is_cpu(top)
        || contributors
            .iter()
            .any(|c| c["metric"].as_str().is_some_and(is_cpu))
}

#[tokio::test(flavor = "multi_thread")]
async fn cpu_burner_raises_and_closes_an_anomaly() {
    let _turn = burner_turn().await;
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    // Password hashing before the agent starts, so its short warm-up sees a
    // quiet host.
    let token = sb.admin_token().await;
    let agent = sb.start_agent_with("agent-1", BURNER_DETECT);
    wait_calibrated(&agent);
    // Calibration on a quiet host raises nothing.
    let (_, body) = sb.get(&token, "/anomaly?host=agent-1&status=open").await;
    let quiet_open = body["anomalies"].as_array().map_or(0, Vec::len);

    let burners = Burners::start("sco-anomaly-test");
    let started = Instant::now();
    let event = wait_for("an open anomaly naming CPU", || async {
        let (status, body) = sb.get(&token, "/anomaly?host=agent-1&status=open").await;
        assert_eq!(status, 200, "{body}");
        body["anomalies"]
            .as_array()?
            .iter()
            .find(|e| names_cpu(e))
            .cloned()
    })
    .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "detected after {took:?}, more than 15 s"
    );
    assert_eq!(quiet_open, 0, "no anomaly before the burner started");
    let id = event["id"].as_str().expect("event id").to_string();

    let (status, body) = sb.get(&token, &format!("/anomaly/{id}")).await;
    assert_eq!(status, 200);
    let e = &body["anomaly"];
    let contributor = &e["contributors"][0];
    assert!(contributor["value"].as_f64().is_some());
    assert!(contributor["expected_high"].as_f64() >= contributor["expected_low"].as_f64());
    assert!(e["score"]
        .as_f64()
        .is_some_and(|s| (0.0..=1.0).contains(&s)));
    assert!(
        e["context"]["series"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["metric"] == "cpu.total_pct")),
        "the raw window at onset is kept: {e}"
    );

    drop(burners);
    let closed = try_wait_for(|| async {
        let (_, body) = sb.get(&token, &format!("/anomaly/{id}")).await;
        (body["anomaly"]["status"] == "closed").then(|| body["anomaly"].clone())
    })
    .await;
    let Some(closed) = closed else {
        let (_, open) = sb.get(&token, &format!("/anomaly/{id}")).await;
        panic!("timed out waiting for the CPU anomaly to close: {open}");
    };
    // the close says why and how long it lasted
    let why = closed["close_reason"].as_str().unwrap_or_default();
    assert!(why.starts_with("recovered: cpu"), "{why}");
    assert!(why.contains("lasted"), "{why}");
    assert!(closed["ended_ms"].as_i64() >= closed["started_ms"].as_i64());

    // Filters and pagination.
    let (status, body) = sb
        .get(&token, "/anomaly?host=agent-1&status=closed&limit=1")
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["count"], 1);
    let (status, body) = sb.get(&token, "/anomaly?min_severity=urgent").await;
    assert_eq!(status, 400);
    assert!(body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("min_severity"));
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The CPU events of agent-1, open and closed.
async fn cpu_events(sb: &Sandbox, token: &str) -> Vec<Value> {
    let (status, body) = sb.get(token, "/anomaly?host=agent-1&limit=100").await;
    assert_eq!(status, 200, "{body}");
    body["anomalies"]
        .as_array()
        .map(|a| a.iter().filter(|e| names_cpu(e)).cloned().collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burner_back_within_the_hold_is_the_same_event_which_ends_where_it_recovered() {
    let _turn = burner_turn().await;
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let token = sb.admin_token().await;
    // three quiet seconds to recover, then held 30 s in case it comes back
    let agent = sb.start_agent_with(
        "agent-1",
        &BURNER_DETECT.replace("merge_secs = 0", "merge_secs = 30"),
    );
    wait_calibrated(&agent);

    let burners = Burners::start("sco-anomaly-hold-test");
    let first = wait_for("an open anomaly naming CPU", || async {
        cpu_events(&sb, &token).await.into_iter().next()
    })
    .await;
    let id = first["id"].as_str().expect("event id").to_string();
    tokio::time::sleep(Duration::from_secs(4)).await;
    drop(burners);
    // quiet for longer than clear_secs, inside the hold: the event is shown open, held since it
    // recovered. How soon the host is back to its normal depends on what else it runs: CI runs
    // saw the CPU event fire on for 8 s and for more than 15 s after the burners stopped (a host
    // kept busy by other work returns to its normal when that work lets it), so this waits as
    // long as any other wait here; the hold (30 s) counts from the recovery, not from the stop.
    let quiet = Instant::now();
    let mut held = None;
    while held.is_none() && quiet.elapsed() < patience() {
        let (_, body) = sb.get(&token, &format!("/anomaly/{id}")).await;
        if body["anomaly"]["status"] == "open" {
            held = body["anomaly"]["recovered_ms"].as_i64();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let held = held.expect("the open event says when it recovered, while held");
    let seen_held = now_ms();
    let stopped_first = seen_held - quiet.elapsed().as_millis() as i64;
    assert!(
        (stopped_first - 2_000..=seen_held).contains(&held),
        "recovered at {held}, the burner stopped at {stopped_first}, seen held at {seen_held}"
    );
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(quiet.elapsed())).await;
    let burners = Burners::start("sco-anomaly-hold-test");
    tokio::time::sleep(Duration::from_secs(6)).await;
    // firing again: no longer held
    let (_, body) = sb.get(&token, &format!("/anomaly/{id}")).await;
    assert_eq!(body["anomaly"]["status"], "open", "{body}");
    assert!(body["anomaly"]["recovered_ms"].is_null(), "{body}");
    drop(burners);
    let stopped_ms = now_ms();

    // back to normal (as long as the first time, at most) and then quiet for the whole hold
    let closed = try_wait_for_longer(Duration::from_secs(35), || async {
        let (_, body) = sb.get(&token, &format!("/anomaly/{id}")).await;
        (body["anomaly"]["status"] == "closed").then(|| (body["anomaly"].clone(), now_ms()))
    })
    .await;
    let Some((closed, seen_closed_ms)) = closed else {
        let (_, open) = sb.get(&token, &format!("/anomaly/{id}")).await;
        panic!("timed out waiting for the CPU anomaly to close: {open}");
    };
    // one event for both bursts
    let events = cpu_events(&sb, &token).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["id"], id.as_str());
    // it closed a hold after the second burst recovered, and ends where it recovered, not there
    let ended = closed["ended_ms"].as_i64().expect("ended_ms");
    assert!(
        ended > stopped_ms - 2_000 && ended < seen_closed_ms,
        "ended {} ms after the burner stopped, seen closed {} ms after",
        ended - stopped_ms,
        seen_closed_ms - stopped_ms
    );
    assert!(
        seen_closed_ms - ended >= 25_000,
        "closed {} ms after it recovered, before the hold was over",
        seen_closed_ms - ended
    );
    let why = closed["close_reason"].as_str().unwrap_or_default();
    assert!(why.starts_with("recovered: cpu"), "{why}");
}
