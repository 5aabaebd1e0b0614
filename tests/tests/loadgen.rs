//! The load generator at a small size against a real control plane: 50
//! simulated agents, each with its own certificate and mTLS stream, for 30 s,
//! with a policy rolled out to them (so they answer with policy statuses), a
//! second revision rolled out while they are connected, and
//! anomaly events; its JSON report must show every agent connected, acks,
//! nothing lost or duplicated and the database check passed; the same over QUIC
//! (`--quic`, the control plane's `quic_listen`). Then streams
//! that must stay up while the database is locked for longer than the
//! agents' dead-after time, and more agents than a control plane admits: the
//! refusals counted apart from errors and retried, and followed to a second
//! replica with room.

use std::process::{Command, Stdio};
use std::time::Duration;

use sco_tests::{bin, free_addr, wait_for, Db, Sandbox};
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
    // the load generator's own runtime lag was sampled all through the step (every 50 ms)
    let lag = &report["steps"][0]["loadgen_lag"];
    let secs = report["steps"][0]["secs"].as_f64().unwrap_or(0.0);
    let samples = lag["count"].as_f64().unwrap_or(0.0);
    assert!(samples >= secs * 2.0, "{lag} over {secs} s");
    assert!(lag["p50_ms"].as_f64() <= lag["max_ms"].as_f64(), "{lag}");
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

/// Runs `cmd` (a `sco-loadgen` with `--json`) to its end: its exit status, its JSON report and
/// its standard error (the progress lines).
async fn report_of(mut cmd: Command) -> (std::process::ExitStatus, Value, String) {
    let run = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sco-loadgen");
    let out = tokio::task::spawn_blocking(move || run.wait_with_output())
        .await
        .expect("join")
        .expect("sco-loadgen output");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("JSON report ({e}):\n{stderr}"));
    (out.status, report, stderr)
}

/// `sco_streams_refused_total{reason="REASON"}` from a control plane's `/metrics`.
async fn refused_by_control_plane(base: &str, reason: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    let series = format!("sco_streams_refused_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// A refusal's count in a report's `refused` table.
fn refused(totals: &Value, reason: &str) -> u64 {
    totals["refused"][reason]["count"].as_u64().unwrap_or(0)
}

/// A control plane that holds 8 streams and 12 simulated agents: the 4 it turns away
/// (`RESOURCE_EXHAUSTED`, naming no replica: there is none) are counted as refusals, not errors,
/// and try again after their backoff, again and again, as the agent does. They never get a
/// stream, so the run does not pass (exit 2) although nothing acknowledged was lost: a refusal
/// that ends with the agent connected is no failure, an agent never connected still is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_counted_apart_and_retried_sqlite() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let (limit, agents) = (8u64, 12u64);
    let _cp = sb.start_replica_with(
        "control-plane",
        sb.grpc_addr,
        sb.http_addr,
        &format!("[replicas]\nmax_streams = {limit}\n"),
    );
    let mut cmd = loadgen(&sb);
    cmd.args(["--agents", &agents.to_string(), "--duration-secs", "12"])
        .args(["--connect-rate", "50", "--rollup-secs", "2"])
        .args(["--heartbeat-secs", "1", "--dead-after-secs", "4"])
        .args(["--backoff-initial-ms", "200", "--backoff-max-ms", "1000"])
        .args(["--events-per-hour", "0", "--drain-secs", "5"])
        .args(["--progress-secs", "2"])
        .args(["--database-url", &sb.db_url, "--json"]);
    let (status, report, stderr) = report_of(cmd).await;
    assert_eq!(status.code(), Some(2), "{stderr}\n{report:#}");
    assert_eq!(report["passed"], false, "{report:#}");

    let totals = &report["totals"];
    let turned_away = agents - limit;
    assert_eq!(totals["agents_ever_connected"], limit, "{report:#}");
    assert_eq!(totals["all_connected"], false, "{report:#}");
    assert_eq!(
        totals["agents_refused_never_connected"], turned_away,
        "{report:#}"
    );
    assert!(
        totals["agents_refused"].as_u64() >= Some(turned_away),
        "{report:#}"
    );
    // Counted as refusals (the replica is full), each refused agent retrying after its
    // backoff (200 ms doubling to 1 s over the 17 s of the run and the drain)...
    let full = refused(totals, "full");
    assert!(full >= 4 * turned_away, "refused {full} times: {report:#}");
    assert!(
        totals["refused"]["full"]["example"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("holds its limit of {limit} agent streams"))),
        "{report:#}"
    );
    assert_eq!(refused(totals, "overloaded"), 0, "{report:#}");
    assert_eq!(totals["redirects"], 0, "no replica to name: {report:#}");
    // the step's own count: those of the run, the drain's excepted
    let in_step = report["steps"][0]["refused"]["full"]["count"]
        .as_u64()
        .unwrap_or(0);
    assert!(in_step > 0 && in_step <= full, "{report:#}");
    // ...and never as errors.
    assert!(
        totals["errors"]
            .as_object()
            .expect("errors")
            .values()
            .all(|e| !e["example"].to_string().contains("exhausted")),
        "{report:#}"
    );
    // The progress line says it too.
    assert!(stderr.contains(" refused "), "{stderr}");
    assert!(stderr.contains("(full "), "{stderr}");
    // The control plane refused at least as often (a refusal in flight at the end is not seen).
    let by_cp = refused_by_control_plane(&sb.base_url(), "limit").await;
    assert!(
        by_cp >= full,
        "control plane {by_cp}, load generator {full}"
    );
    // The 8 admitted all stream to the one endpoint.
    assert_eq!(
        totals["agents_by_endpoint"][sb.grpc_addr.to_string()],
        limit,
        "{report:#}"
    );

    // Nothing acknowledged lost, nothing twice; the admitted agents' messages all stored.
    assert!(totals["acked"].as_u64().unwrap_or(0) >= limit, "{report:#}");
    let db = &report["database"];
    assert_eq!(db["passed"], true, "{report:#}");
    assert_eq!(db["agents_checked"], agents, "{report:#}");
    assert_eq!(db["lost"], 0, "{report:#}");
    assert_eq!(db["duplicated"], 0, "{report:#}");
    assert_eq!(db["gaps"], 0, "{report:#}");
    assert_eq!(db["messages_stored"], db["messages_acked"], "{report:#}");
    assert_eq!(db["agents_exact"], limit, "{report:#}");
}

/// Two replicas on one PostgreSQL: A holds 6 streams, B has room. 15 simulated agents all aim
/// at A with a 30 s backoff, longer than the run: A turns 9 away naming B (`sco-redirect`),
/// and only going there at once brings them a stream in time. Every agent ends connected,
/// across both replicas, so the refusals are no failure: the run passes, nothing acknowledged
/// lost or stored twice. Over QUIC, A names B's QUIC address (`quic://host:port`).
async fn redirect_followed(quic: bool) {
    let Some(sb) = Sandbox::new(Db::Postgres).await else {
        return;
    };
    let (limit, agents) = (6u64, 15u64);
    let _a = sb.start_replica_with(
        "control-plane",
        sb.grpc_addr,
        sb.http_addr,
        &format!("[replicas]\nmax_streams = {limit}\n"),
    );
    let (b_grpc, b_http) = (free_addr(), free_addr());
    let _b = sb.start_replica("replica-b", b_grpc, b_http);
    // A names B only once B is in the registry of live replicas (renewed each tick).
    let pool = sb.db().await;
    wait_for("replica B in the registry", || async {
        let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        let live: Vec<String> =
            sqlx::query_scalar("SELECT grpc_addr FROM replicas WHERE expires_ms > $1")
                .bind(now)
                .fetch_all(&pool)
                .await
                .ok()?;
        live.contains(&b_grpc.to_string()).then_some(())
    })
    .await;

    let mut cmd = loadgen(&sb);
    if quic {
        cmd.arg("--quic");
    }
    cmd.args(["--agents", &agents.to_string(), "--duration-secs", "12"])
        .args(["--connect-rate", "50", "--rollup-secs", "2"])
        .args(["--heartbeat-secs", "1", "--dead-after-secs", "4"])
        .args(["--backoff-initial-ms", "30000", "--backoff-max-ms", "30000"])
        .args(["--events-per-hour", "360", "--drain-secs", "30"])
        .args(["--database-url", &sb.db_url, "--json"]);
    let (status, report, stderr) = report_of(cmd).await;
    assert!(status.success(), "exit {status:?}\n{stderr}\n{report:#}");
    assert_eq!(report["passed"], true, "{report:#}");

    let totals = &report["totals"];
    let turned_away = agents - limit;
    // as the agent lists the endpoints: host:port over TCP, quic://host:port over QUIC
    let (a, b) = if quic {
        (
            format!("quic://{}", sb.grpc_addr),
            format!("quic://{b_grpc}"),
        )
    } else {
        (sb.grpc_addr.to_string(), b_grpc.to_string())
    };
    assert_eq!(totals["agents_ever_connected"], agents, "{report:#}");
    assert_eq!(totals["agents_refused_never_connected"], 0, "{report:#}");
    assert!(
        totals["agents_refused"].as_u64() >= Some(turned_away),
        "{report:#}"
    );
    assert!(refused(totals, "full") >= turned_away, "{report:#}");
    assert!(
        totals["redirects"].as_u64() >= Some(turned_away),
        "{report:#}"
    );
    assert!(
        totals["refused"]["full"]["example"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("connect to {b}"))),
        "{report:#}"
    );
    // Connected across both: A up to its limit, the others on B.
    let by_endpoint = &totals["agents_by_endpoint"];
    let (on_a, on_b) = (
        by_endpoint[&a].as_u64().unwrap_or(0),
        by_endpoint[&b].as_u64().unwrap_or(0),
    );
    assert!(on_a <= limit && on_b >= turned_away, "{report:#}");
    assert_eq!(on_a + on_b, agents, "{report:#}");
    assert_eq!(totals["drained"], true, "{report:#}");

    let db = &report["database"];
    assert_eq!(db["passed"], true, "{report:#}");
    assert_eq!(db["lost"], 0, "{report:#}");
    assert_eq!(db["duplicated"], 0, "{report:#}");
    assert_eq!(db["gaps"], 0, "{report:#}");
    assert_eq!(db["messages_stored"], db["messages_acked"], "{report:#}");
    assert_eq!(db["agents_exact"], agents, "{report:#}");
    // the control plane saw each host over that transport
    let transports: Vec<String> = sqlx::query_scalar("SELECT transport FROM hosts")
        .fetch_all(&pool)
        .await
        .expect("hosts");
    let transport = if quic { "quic" } else { "grpc" };
    assert_eq!(transports.len() as u64, agents, "{transports:?}");
    assert!(transports.iter().all(|t| t == transport), "{transports:?}");
    eprintln!(
        "{transport}: {} refusals, {} followed to B; {on_a} agents on A, {on_b} on B; {} acked, stored once",
        refused(totals, "full"),
        totals["redirects"],
        db["messages_acked"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_agents_follow_the_redirect_to_a_replica_with_room_postgres() {
    redirect_followed(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_agents_follow_the_redirect_over_quic_postgres() {
    redirect_followed(true).await;
}
