//! A real CPU burner makes the agent raise an anomaly naming CPU, visible
//! through the REST API, and the event closes once the burner stops.

use std::time::{Duration, Instant};

use sco_tests::{
    bin, try_wait_for, wait_calibrated, wait_for, Burners, Db, Sandbox, BURNER_DETECT,
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

/// The detector's learnt state survives a restart: the restarted agent is calibrated at once
/// (`GET /hosts/{id}` and `sco-agent status` say it was restored), alarms on a CPU runaway
/// without a new warm-up, and names the runaway's processes as the event's culprits.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_agent_alarms_without_a_new_warm_up_and_names_the_culprit() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let token = sb.admin_token().await;
    let mut agent = sb.start_agent_with("agent-1", BURNER_DETECT);
    let (_, host) = sb.get(&token, "/hosts/agent-1").await;
    let warming = wait_for("the host reports its detector warming up", || async {
        let (_, body) = sb.get(&token, "/hosts/agent-1").await;
        let d = body["host"]["detector"].clone();
        (d["state"] == "warming_up" || d["state"] == "calibrated").then_some(d)
    })
    .await;
    if warming["state"] == "warming_up" {
        assert!(
            warming["warm_until_ms"].as_i64() > Some(0),
            "warming up says until when: {warming} {host}"
        );
    }
    wait_calibrated(&agent);
    wait_for("the host reports its detector calibrated", || async {
        let (_, body) = sb.get(&token, "/hosts/agent-1").await;
        (body["host"]["detector"]["state"] == "calibrated").then_some(())
    })
    .await;
    // SIGTERM: the agent saves its learnt state on the way out
    agent.terminate();

    let restarted = Instant::now();
    let agent = sb.start_agent_with("agent-1", BURNER_DETECT);
    wait_for("the restarted agent reports a restored calibration", || async {
        let (_, body) = sb.get(&token, "/hosts/agent-1").await;
        let d = &body["host"]["detector"];
        (d["state"] == "calibrated" && d["restored"] == true).then_some(())
    })
    .await;
    assert!(
        agent.log_contains("detector state restored"),
        "{}",
        agent.log_tail()
    );
    let config = sb.path().join("agent-agent-1/agent.toml");
    let out = std::process::Command::new(bin("sco-agent"))
        .args(["status", "--config"])
        .arg(&config)
        .output()
        .expect("run sco-agent status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("calibrated") && text.contains("restored"),
        "{text}"
    );

    let burners = Burners::start("sco-restart-culprit-test");
    let pids = burners.pids();
    let event = wait_for("an open CPU event after the restart", || async {
        let (_, body) = sb.get(&token, "/anomaly?host=agent-1&status=open").await;
        body["anomalies"]
            .as_array()?
            .iter()
            .find(|e| e["family"] == "cpu")
            .cloned()
    })
    .await;
    // 45 s of warm-up would have been needed without the restored state
    assert!(
        restarted.elapsed() < Duration::from_secs(45),
        "alarmed {:?} after the restart",
        restarted.elapsed()
    );
    // the burners are named among the culprits with their pids and full command lines (on a
    // shared machine another busy process, e.g. a compiler, may rightly rank above one of
    // the 2 x CPUs burners, which share the cores between them)
    let culprits = event["culprits"].as_array().cloned().unwrap_or_default();
    let named = culprits.iter().find(|c| {
        c["pid"]
            .as_u64()
            .is_some_and(|p| pids.iter().any(|&b| u64::from(b) == p))
    });
    let Some(named) = named else {
        panic!("none of the runaway's pids {pids:?} is among the culprits: {event}");
    };
    assert!(
        named["cmdline"]
            .as_str()
            .is_some_and(|c| c.contains("sco-restart-culprit-test")),
        "culprit named with its command line: {event}"
    );
    assert!(named["cpu_pct"].as_f64() > Some(5.0), "{event}");
    // contributors are CPU metrics only
    for c in event["contributors"].as_array().cloned().unwrap_or_default() {
        let m = c["metric"].as_str().unwrap_or_default();
        assert!(m.starts_with("cpu.") || m.starts_with("psi.cpu."), "{event}");
    }
    drop(burners);
}
