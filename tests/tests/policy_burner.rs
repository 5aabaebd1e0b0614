//! A fleet policy rule against a real CPU-burning process: in `dry_run` the
//! agent records the plan and the burner keeps running; in `auto` the
//! agent takes a fleet lease, stops the burner, verifies that CPU came
//! back down, and the anomaly closes.

use sco_tests::{
    try_wait_for, wait_calibrated, wait_for, wait_until, Burners, Db, Sandbox, BURNER_DETECT,
};
use serde_json::Value;

fn policy(marker: &str, mode: &str) -> String {
    format!(
        r#"
name: cpu-guard
rules:
  - name: stop-burner
    when:
      anomaly: {{ metrics: ["cpu.*", "psi.cpu.*"] }}
      for_secs: 1
    action: {{ type: kill_process, pattern: "*{marker}*", grace_secs: 2 }}
    mode: {mode}
    cooldown_secs: 0
    verify: {{ metric: cpu.total_pct, below: 60, within_secs: 30 }}
"#
    )
}

async fn finished(sb: &Sandbox, token: &str, state: &str) -> Value {
    wait_for(&format!("a cpu-guard action in state {state}"), || async {
        sb.actions(token, "agent-1").await.into_iter().find(|a| {
            a["rule"] == "cpu-guard/stop-burner"
                && [state, "failed", "refused"].contains(&a["state"].as_str().unwrap_or_default())
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_rule_stops_a_cpu_burner_only_in_auto_mode() {
    let Some(mut sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    sb.control_plane_extra = "[remediation]\ntick_ms = 200\n".into();
    let _cp = sb.start_control_plane();
    // Everything CPU-heavy on the test's side (password hashing, signing)
    // happens before the agent starts, so its short warm-up sees a quiet
    // host: with 20 warm-up ticks the calibrated thresholds are close to the
    // warm-up maximum.
    let token = sb.admin_token().await;
    let marker = format!("sco-burn-{}", std::process::id());
    let revision = sb.publish_policy(&token, &policy(&marker, "dry_run")).await;
    let agent = sb.start_agent_with("agent-1", BURNER_DETECT);
    sb.wait_policy_applied(&token, "cpu-guard", "agent-1", revision)
        .await;
    wait_calibrated(&agent);

    // dry_run: the plan names the burners; nothing is signalled.
    let mut burners = Burners::start(&marker);
    let planned = finished(&sb, &token, "dry_run").await;
    assert_eq!(planned["state"], "dry_run", "{planned}");
    let pids: Vec<u64> = planned["report"]["pids"]
        .as_array()
        .map(|p| p.iter().filter_map(|p| p["pid"].as_u64()).collect())
        .unwrap_or_default();
    for pid in burners.pids() {
        assert!(
            pids.contains(&u64::from(pid)),
            "{pid} not in the plan: {planned}"
        );
    }
    assert!(
        planned["evidence"]["anomaly"]["metrics"].is_array(),
        "{planned}"
    );
    assert_eq!(
        burners.running(),
        burners.pids().len(),
        "dry run left the burners running"
    );

    // auto: the new revision fires again on the same open anomaly.
    let revision = sb.publish_policy(&token, &policy(&marker, "auto")).await;
    sb.wait_policy_applied(&token, "cpu-guard", "agent-1", revision)
        .await;
    let done = finished(&sb, &token, "succeeded").await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["approval"], "auto");
    assert_eq!(
        done["report"]["verification"]["state"]["state"], "passed",
        "{done}"
    );
    assert!(
        done["report"]["lease"].is_string(),
        "ran under a lease: {done}"
    );
    wait_until("the burners to be stopped", || burners.running() == 0);

    let closed = try_wait_for(|| async {
        let (_, body) = sb.get(&token, "/anomaly?host=agent-1&status=closed").await;
        body["anomalies"].as_array()?.first().cloned()
    })
    .await;
    let Some(closed) = closed else {
        let (_, open) = sb.get(&token, "/anomaly?host=agent-1&status=open").await;
        panic!("timed out waiting for the CPU anomaly to close; open: {open}");
    };
    // the close says why and how long it lasted
    assert!(
        closed["close_reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("recovered: cpu") && r.contains("lasted")),
        "{closed}"
    );

    let (_, body) = sb.get(&token, "/audit?host=agent-1").await;
    let entries = body["entries"].as_array().cloned().unwrap_or_default();
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "remediation.lease" && e["result"] == "granted"),
        "{body}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "remediation.report" && e["result"] == "succeeded"),
        "{body}"
    );
}
