//! The detector after a restart: its learnt state is restored (no new warm-up), it says so
//! over REST and in `sco-agent status`, and the event it raises names the culprit processes.
//! Its own test binary, so its CPU burners never overlap another test's (test binaries run one
//! after the other; tests of one binary run in parallel).

use std::time::{Duration, Instant};

use sco_tests::{bin, wait_calibrated, wait_for, Burners, Db, Sandbox, BURNER_DETECT};

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
    wait_for(
        "the restarted agent reports a restored calibration",
        || async {
            let (_, body) = sb.get(&token, "/hosts/agent-1").await;
            let d = &body["host"]["detector"];
            (d["state"] == "calibrated" && d["restored"] == true).then_some(())
        },
    )
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
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    for c in event["contributors"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let m = c["metric"].as_str().unwrap_or_default();
        assert!(
            m.starts_with("cpu.") || m.starts_with("psi.cpu."),
            "{event}"
        );
    }
    drop(burners);
}
