//! A fleet policy rule against a real CPU-burning process: in `dry_run` the
//! agent records the plan and the burner keeps running; in `auto` the
//! agent takes a fleet lease, stops the burner, verifies that CPU came
//! back down, and the anomaly closes.

use std::process::{Child, Command, Stdio};

use sco_tests::{wait_for, wait_until, Db, Sandbox};
use serde_json::Value;

struct Burners(Vec<Child>);

impl Burners {
    /// `n` busy loops whose command line carries `marker`.
    fn start(n: usize, marker: &str) -> Self {
        Self(
            (0..n)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done", marker])
                        .stdin(Stdio::null())
                        .spawn()
                        .expect("start a CPU burner")
                })
                .collect(),
        )
    }

    fn pids(&self) -> Vec<u32> {
        self.0.iter().map(Child::id).collect()
    }

    fn running(&mut self) -> usize {
        self.0
            .iter_mut()
            .map(|c| c.try_wait())
            .filter(|w| matches!(w, Ok(None)))
            .count()
    }
}

impl Drop for Burners {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

const DETECT: &str = "[detect]\nwarmup_secs = 20\nmin_duration_secs = 1\nclear_secs = 3\nupdate_every_secs = 2\ncontext_secs = 10\n";

fn policy(marker: &str, mode: &str) -> String {
    format!(
        r#"
name: cpu-guard
rules:
  - name: stop-burner
    when:
      anomaly: {{ metrics: ["cpu.*", "psi.cpu.*", "load.*"] }}
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
    let agent = sb.start_agent_with("agent-1", DETECT);
    let token = sb.admin_token().await;
    let marker = format!("sco-burn-{}", std::process::id());

    let revision = sb.publish_policy(&token, &policy(&marker, "dry_run")).await;
    sb.wait_policy_applied(&token, "cpu-guard", "agent-1", revision)
        .await;
    wait_until("the detector has calibrated", || {
        agent.log_contains("detector calibrated")
    });

    // dry_run: the plan names the burners; nothing is signalled.
    let mut burners = Burners::start(2, &marker);
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
    assert_eq!(burners.running(), 2, "dry run left the burners running");

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

    let closed = wait_for("the CPU anomaly to close", || async {
        let (_, body) = sb.get(&token, "/anomaly?host=agent-1&status=closed").await;
        body["anomalies"].as_array()?.first().cloned()
    })
    .await;
    assert_eq!(closed["close_reason"], "recovered", "{closed}");

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
