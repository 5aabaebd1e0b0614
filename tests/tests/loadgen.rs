//! The load generator at a small size against a real control plane: 50
//! simulated agents, each with its own certificate and mTLS stream, for 30 s,
//! with a policy rolled out to them (so they answer with policy statuses), a
//! second revision rolled out while they are connected, and
//! anomaly events; its JSON report must show every agent connected, acks,
//! nothing lost or duplicated and the database check passed; the same over QUIC
//! (`--quic`, the control plane's `quic_listen`). Then streams
//! that must stay up while the database is locked for longer than the
//! agents' dead-after time.

use std::process::{Command, Stdio};
use std::time::Duration;

use sco_tests::{bin, wait_for, Db, Sandbox};
use serde_json::Value;
use sqlx::{Connection, Executor};

const POLICY: &str = r#"
name: loadgen-guard
target: { labels: { env: loadgen } }
rules:
  - name: vacuum
    when: { state: ["mem.used_pct > 101"] }
    action: { type: journal_vacuum, max_size_mb: 500 }
"#;

/// `sco-loadgen` aimed at the sandbox's control plane, with the sandbox's CA.
fn loadgen(sb: &Sandbox) -> Command {
    let mut cmd = Command::new(bin("sco-loadgen"));
    cmd.args([
        "--target",
        &sb.grpc_addr.to_string(),
        "--server-name",
        "localhost",
    ])
    .arg("--pki-dir")
    .arg(sb.path().join("pki"));
    cmd
}

async fn small_run(db: Db, quic: bool) {
    let Some(sb) = Sandbox::new(db).await else {
        return;
    };
    let cp = sb.start_control_plane();
    let admin = sb.admin_token().await;
    sb.publish_policy(&admin, POLICY).await;

    let mut cmd = loadgen(&sb);
    if quic {
        cmd.arg("--quic");
    }
    // the sandbox's control plane calls a stream dead after 4 s of silence: agents heartbeat
    // every second, as it does (at the load generator's default 5 s an agent with nothing else
    // to send in a heartbeat's interval was cut off, and one cut at the end of the run left its
    // last message unsent)
    cmd.args(["--heartbeat-secs", "1", "--dead-after-secs", "4"]);
    let out = cmd
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
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sco-loadgen");
    // Once every agent runs revision 1, a new revision reaches them all over their open streams.
    applied_by_all(&sb, &admin, 1).await;
    let second = sb
        .publish_policy(&admin, &POLICY.replace("> 101", "> 102"))
        .await;
    assert_eq!(second, 2);
    applied_by_all(&sb, &admin, 2).await;
    let out = out.wait_with_output().expect("sco-loadgen ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("JSON report ({e}):\n{stderr}"));
    assert!(
        out.status.success(),
        "exit {:?}\n{stderr}\n{report:#}",
        out.status
    );

    let transport = if quic { "quic" } else { "grpc" };
    assert_eq!(report["settings"]["transport"], transport, "{report:#}");
    // The control plane saw each stream come over that transport.
    let (_, hosts) = sb.get(&admin, "/hosts").await;
    let hosts = hosts["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 50, "{hosts:?}");
    assert!(
        hosts.iter().all(|h| h["transport"] == transport),
        "{hosts:?}"
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
    // The report says who was sent each revision, each agent once.
    let policies = report["policies"].as_array().expect("policies");
    for revision in [1, 2] {
        let sent = policies
            .iter()
            .find(|p| p["name"] == "loadgen-guard" && p["revision"] == revision)
            .unwrap_or_else(|| panic!("revision {revision} in {report:#}"));
        assert_eq!(sent["agents"], 50, "{report:#}");
        assert!(sent["last_ms"].as_i64() >= sent["first_ms"].as_i64());
    }

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

/// Waits until all 50 simulated agents report `revision` of `loadgen-guard` applied.
async fn applied_by_all(sb: &Sandbox, admin: &str, revision: i64) {
    wait_for(
        &format!("50 agents to apply loadgen-guard revision {revision}"),
        || async {
            let (_, body) = sb.get(admin, "/policies/loadgen-guard/status").await;
            let applied = body["hosts"]
                .as_array()?
                .iter()
                .filter(|h| h["applied_revision"] == revision)
                .count();
            (applied == 50).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_small_run_sqlite() {
    small_run(Db::Sqlite, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_small_run_over_quic_sqlite() {
    small_run(Db::Sqlite, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_small_run_postgres() {
    small_run(Db::Postgres, false).await;
}

/// A database that blocks every write for longer than the agents wait before declaring a
/// silent stream dead (the sandbox's control plane: heartbeat 1 s, dead after 4 s) must slow
/// acks down and nothing else: the streams keep hearing the control plane's heartbeats while
/// their rollups wait, no agent reconnects, and everything acked is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_stay_up_while_the_database_is_locked() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let cp = sb.start_control_plane();
    let agents = 20;
    let run = loadgen(&sb)
        .args(["--agents", &agents.to_string(), "--duration-secs", "30"])
        .args(["--connect-rate", "50", "--rollup-secs", "2"])
        .args(["--heartbeat-secs", "1", "--dead-after-secs", "4"])
        .args(["--events-per-hour", "0", "--drain-secs", "60"])
        .args(["--database-url", &sb.db_url, "--json"])
        .args(["--control-plane-pid", &cp.pid().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sco-loadgen");

    // Once rollups are being stored, take SQLite's write lock for 7 s: past the agents'
    // dead-after (4 s), short of the control plane's busy timeout (10 s), after which its
    // writes would fail and the streams end by design.
    let pool = sb.db().await;
    wait_for("rollups stored", || async {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agent_messages")
            .fetch_one(&pool)
            .await
            .ok()?;
        (n >= agents).then_some(())
    })
    .await;
    let mut lock = sqlx::sqlite::SqliteConnection::connect(&sb.db_url)
        .await
        .expect("open the database");
    lock.execute("BEGIN EXCLUSIVE")
        .await
        .expect("take the write lock");
    tokio::time::sleep(Duration::from_secs(7)).await;
    lock.execute("COMMIT")
        .await
        .expect("release the write lock");

    let out = tokio::task::spawn_blocking(move || run.wait_with_output())
        .await
        .expect("join")
        .expect("sco-loadgen output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("JSON report ({e}):\n{stderr}"));
    assert!(
        out.status.success(),
        "exit {:?}\n{stderr}\n{report:#}",
        out.status
    );
    // The lock held rollups back for longer than the dead-after time...
    assert!(
        report["ack"]["max_ms"].as_f64().unwrap_or(0.0) > 4_000.0,
        "the lock did not delay any ack: {report:#}"
    );
    // ...and no stream was declared dead or failed meanwhile.
    let totals = &report["totals"];
    assert_eq!(totals["reconnects"], 0, "{report:#}");
    assert_eq!(totals["errors"], serde_json::json!({}), "{report:#}");
    assert_eq!(totals["connects"], agents, "{report:#}");
    let db = &report["database"];
    assert_eq!(db["passed"], true, "{report:#}");
    assert_eq!(db["lost"], 0);
    assert_eq!(db["duplicated"], 0);
    assert_eq!(db["messages_stored"], db["messages_acked"], "{report:#}");
    assert!(!cp.log_contains("ingest failed"), "{}", cp.log_tail());
}

/// The control plane killed with SIGKILL while 100 agents stream rollups, then started again
/// on the same database: every message it acknowledged before dying is stored, the agents
/// reconnect and resend what was not acknowledged, and at the end every message acked is
/// stored exactly once (the load generator's database check).
async fn killed_mid_ingest(db: Db) {
    let Some(sb) = Sandbox::new(db).await else {
        return;
    };
    let mut cp = sb.start_control_plane();
    let agents = 100;
    let run = loadgen(&sb)
        .args(["--agents", &agents.to_string(), "--duration-secs", "40"])
        .args(["--connect-rate", "100", "--rollup-secs", "2"])
        .args(["--heartbeat-secs", "1", "--dead-after-secs", "4"])
        .args(["--events-per-hour", "360", "--drain-secs", "90"])
        .args(["--database-url", &sb.db_url, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sco-loadgen");

    let pool = sb.db().await;
    let stored = |pool: sqlx::AnyPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM agent_messages")
            .fetch_one(&pool)
            .await
            .ok()
    };
    wait_for("rollups flowing", || async {
        stored(pool.clone()).await.filter(|n| *n >= 3 * agents)
    })
    .await;
    cp.kill();
    let at_kill = stored(pool.clone()).await.unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _cp = sb.start_control_plane();

    let out = tokio::task::spawn_blocking(move || run.wait_with_output())
        .await
        .expect("join")
        .expect("sco-loadgen output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("JSON report ({e}):\n{stderr}"));
    let totals = &report["totals"];
    assert!(
        totals["reconnects"].as_u64().unwrap_or(0) >= agents as u64,
        "every agent reconnected after the kill: {report:#}"
    );
    assert_eq!(totals["drained"], true, "{report:#}");
    let db = &report["database"];
    assert_eq!(db["lost"], 0, "{report:#}");
    assert_eq!(db["duplicated"], 0, "{report:#}");
    assert_eq!(db["gaps"], 0, "{report:#}");
    assert_eq!(db["messages_stored"], db["messages_acked"], "{report:#}");
    assert_eq!(db["passed"], true, "{report:#}");
    eprintln!(
        "killed with {at_kill} messages stored; {} acked in all, {} reconnects, stored == acked",
        db["messages_acked"], totals["reconnects"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_data_survives_a_control_plane_killed_mid_ingest_sqlite() {
    killed_mid_ingest(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_data_survives_a_control_plane_killed_mid_ingest_postgres() {
    killed_mid_ingest(Db::Postgres).await;
}
