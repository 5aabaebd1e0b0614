//! The load generator at a small size against a real control plane: 50
//! simulated agents, each with its own certificate and mTLS stream, for 30 s,
//! with a policy rolled out to them (so they answer with policy statuses) and
//! anomaly events; its JSON report must show every agent connected, acks,
//! nothing lost or duplicated and the database check passed.

use std::process::Command;

use sco_tests::{bin, Db, Sandbox};
use serde_json::Value;

const POLICY: &str = r#"
name: loadgen-guard
target: { labels: { env: loadgen } }
rules:
  - name: vacuum
    when: { state: ["mem.used_pct > 101"] }
    action: { type: journal_vacuum, max_size_mb: 500 }
"#;

async fn small_run(db: Db) {
    let Some(sb) = Sandbox::new(db).await else {
        return;
    };
    let cp = sb.start_control_plane();
    let admin = sb.admin_token().await;
    sb.publish_policy(&admin, POLICY).await;

    let out = Command::new(bin("sco-loadgen"))
        .args([
            "--target",
            &sb.grpc_addr.to_string(),
            "--server-name",
            "localhost",
        ])
        .arg("--pki-dir")
        .arg(sb.path().join("pki"))
        .args([
            "--agents",
            "50",
            "--duration-secs",
            "30",
            "--connect-rate",
            "50",
        ])
        .args([
            "--events-per-hour",
            "360",
            "--progress-secs",
            "5",
            "--drain-secs",
            "60",
        ])
        .args(["--database-url", &sb.db_url, "--json"])
        .args(["--control-plane-pid", &cp.pid().to_string()])
        .output()
        .expect("run sco-loadgen");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("JSON report ({e}):\n{stderr}"));
    assert!(
        out.status.success(),
        "exit {:?}\n{stderr}\n{report:#}",
        out.status
    );

    let totals = &report["totals"];
    assert_eq!(totals["agents"], 50, "{report:#}");
    assert_eq!(totals["agents_ever_connected"], 50, "{report:#}");
    assert_eq!(totals["all_connected"], true);
    assert!(totals["acked"].as_u64().unwrap_or(0) > 0, "{report:#}");
    assert!(
        totals["acked_by_kind"]["rollup"].as_u64().unwrap_or(0) >= 50,
        "{report:#}"
    );
    // Every agent got the policy on connecting and answered with its status.
    assert!(
        totals["acked_by_kind"]["policy_status"]
            .as_u64()
            .unwrap_or(0)
            >= 50,
        "{report:#}"
    );
    assert_eq!(totals["drained"], true, "{report:#}");

    let db = &report["database"];
    assert_eq!(db["passed"], true, "{report:#}");
    assert_eq!(db["agents_checked"], 50);
    assert_eq!(db["lost"], 0);
    assert_eq!(db["duplicated"], 0);
    assert_eq!(db["gaps"], 0);
    assert_eq!(db["rejected"], 0);
    assert_eq!(db["messages_stored"], db["messages_acked"], "{report:#}");
    assert_eq!(db["agents_exact"], 50, "{report:#}");
    assert!(
        report["steps"][0]["control_plane"]["rss_mib_max"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0
    );
    assert_eq!(report["passed"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_small_run_sqlite() {
    small_run(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_small_run_postgres() {
    small_run(Db::Postgres).await;
}
