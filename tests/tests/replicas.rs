//! Three control-plane replicas on one PostgreSQL, sharing the work. Their periodic polls are
//! slowed to 15 s, so anything quicker than that is the wake-up one replica sends the others
//! through LISTEN/NOTIFY:
//! - a request posted to one replica reaches the agent held by another within a second;
//! - a host revoked on one replica has its stream closed by the one holding it at once;
//! - fleet-wide periodic work has exactly one holder (a lease), taken over when it dies;
//! - a replica killed with SIGKILL mid-ingest: its agent reconnects to another replica from
//!   its endpoint list, and nothing acknowledged is lost or duplicated.
//!
//! Two more scenarios, each with replicas of its own:
//! - the holder of the `ticks` lease (shown in each replica's `/status`) killed with SIGKILL:
//!   another replica takes the lease within its TTL and judges the canary rollout the dead
//!   one would have;
//! - a replica at its stream limit sends a new agent to a replica with room at once, and
//!   nothing acknowledged is lost.
//!
//! And three on SQLite: without `replicas.max_streams`, the limit comes from the open-file limit;
//! a pod IP from the environment (`replicas.advertise_host`, as the Helm chart sets it) is
//! advertised with the listen ports, an IPv6 one in brackets; a control plane made late by a
//! busy loop on its core refuses new agents (`replicas.max_lag_ms`) and keeps the one it holds.

use std::process::Command;
use std::time::{Duration, Instant};

use sco_tests::{
    bin, duplicated_windows, free_addr, login_at, stored_windows, try_wait_for, wait_for, Db, Proc,
    Sandbox,
};
use serde_json::{json, Value};

/// An agent whose endpoint list is `endpoints`, in order.
fn start_agent(sb: &Sandbox, id: &str, endpoints: &[std::net::SocketAddr]) -> Proc {
    start_agent_backing_off(sb, id, endpoints, 100)
}

/// [`start_agent`] whose reconnect backoff starts (and stays) at `backoff_ms`, unless
/// `backoff_ms` is 100 (the sandbox's own, doubling to 1 s).
fn start_agent_backing_off(
    sb: &Sandbox,
    id: &str,
    endpoints: &[std::net::SocketAddr],
    backoff_ms: u64,
) -> Proc {
    let config = sb.agent_config(id);
    let text = std::fs::read_to_string(&config).expect("read agent config");
    // over the run's transport (SCO_TEST_TRANSPORT)
    let list: Vec<String> = endpoints
        .iter()
        .map(|e| format!("\"{}\"", sco_tests::agent_endpoint(*e)))
        .collect();
    let mut text = text.replace(
        &format!(
            "endpoints = [\"{}\"]",
            sco_tests::agent_endpoint(sb.grpc_addr)
        ),
        &format!("endpoints = [{}]", list.join(", ")),
    );
    assert!(text.contains(&list.join(", ")), "{text}");
    if backoff_ms != 100 {
        text = text.replace(
            "backoff_initial_ms = 100\nbackoff_max_ms = 1000",
            &format!("backoff_initial_ms = {backoff_ms}\nbackoff_max_ms = {backoff_ms}"),
        );
        assert!(text.contains(&format!("backoff_max_ms = {backoff_ms}")));
    }
    std::fs::write(&config, text).expect("write agent config");
    Proc::spawn(
        &format!("agent {id}"),
        Command::new(bin("sco-agent"))
            .args(["run", "--config"])
            .arg(&config),
        &sb.path().join(format!("agent-{id}.log")),
    )
}

async fn get(base: &str, token: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .unwrap_or(Value::Null)
}

async fn post(base: &str, token: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("post");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn lease_holders(pool: &sqlx::AnyPool) -> Vec<String> {
    sqlx::query_scalar::<_, String>(
        "SELECT holder FROM leases WHERE name = 'ticks' AND expires_ms > $1",
    )
    .bind((time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64)
    .fetch_all(pool)
    .await
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_share_the_work() {
    let Some(mut sb) = Sandbox::new(Db::Postgres).await else {
        return;
    };
    sb.control_plane_extra =
        "[remediation]\ntick_ms = 15000\n[enrollment]\nrevocation_check_secs = 15\n".into();
    let _a = sb.start_control_plane();
    let (b_grpc, b_http) = (free_addr(), free_addr());
    let (c_grpc, c_http) = (free_addr(), free_addr());
    let b = sb.start_replica("replica-b", b_grpc, b_http);
    let mut c = sb.start_replica("replica-c", c_grpc, c_http);
    let a_base = sb.base_url();
    let b_base = format!("http://{b_http}");
    let admin = sb.admin_token().await;
    let admin_b = login_at(&b_base, "admin", sco_tests::ADMIN_PASSWORD).await;

    // agents spread over the replicas by their endpoint lists
    let _agent_b = start_agent(&sb, "agent-b", &[b_grpc, c_grpc]);
    let _agent_c = start_agent(&sb, "agent-c", &[c_grpc, sb.grpc_addr]);
    let pool = sb.db().await;
    for id in ["agent-b", "agent-c"] {
        wait_for("both agents streaming", || async {
            (stored_windows(&pool, id).await.len() >= 3).then_some(())
        })
        .await;
    }
    assert!(b.log_contains("agent connected agent_id=\"agent-b\""));
    assert!(c.log_contains("agent connected agent_id=\"agent-c\""));

    // one holder of the fleet-wide work
    let holders = wait_for("a holder of the ticks lease", || async {
        let h = lease_holders(&pool).await;
        (h.len() == 1).then_some(h)
    })
    .await;
    eprintln!("ticks lease held by {holders:?}");

    // A request posted to replica A for the agent held by B: B sends it at once.
    let posted = Instant::now();
    let (status, body) = post(
        &a_base,
        &admin,
        "/remediation/trigger",
        &json!({"host": "agent-b", "action": {"type": "kill_process", "name": "no-such-process-xyz"},
            "mode": "dry_run"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let id = body["action"]["id"].as_str().expect("id").to_string();
    let sent_after = wait_for("the request sent by replica B", || async {
        let actions = get(&a_base, &admin, "/remediation/actions?host=agent-b").await;
        let state = actions["actions"]
            .as_array()?
            .iter()
            .find(|a| a["id"] == id.as_str())?["state"]
            .as_str()?
            .to_string();
        (state != "approved").then(|| posted.elapsed())
    })
    .await;
    eprintln!(
        "trigger on replica A reached agent-b on replica B in {:.0} ms (B polls every 15 s)",
        sent_after.as_secs_f64() * 1000.0
    );
    assert!(
        sent_after < Duration::from_secs(2),
        "took {sent_after:?}: the wake-up did not reach replica B"
    );

    // Replica C killed with SIGKILL mid-ingest: agent-c moves to A, the next on its list.
    c.kill();
    let killed = Instant::now();
    let killed_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let moved_after = wait_for("agent-c streaming to another replica", || async {
        let w = stored_windows(&pool, "agent-c").await;
        (w.last().map_or(0, |x| x.1) > killed_ms + 1000).then(|| killed.elapsed())
    })
    .await;
    // Rollups commit in up to four group-commit writers, so a newer window can be stored a
    // moment before the replayed older ones (acks still go in order: nothing is acknowledged
    // before everything under it is stored). Every sequence number must be there once the
    // replay has landed; a lost one keeps the gap until the wait runs out.
    let contiguous = |w: &[(i64, i64, i64)]| {
        w.iter()
            .enumerate()
            .all(|(i, (seq, _, _))| *seq == i as i64 + 1)
    };
    let windows = match try_wait_for(|| async {
        let w = stored_windows(&pool, "agent-c").await;
        contiguous(&w).then_some(w)
    })
    .await
    {
        Some(w) => w,
        None => {
            let w = stored_windows(&pool, "agent-c").await;
            let seqs: Vec<i64> = w.iter().map(|x| x.0).collect();
            panic!("gap in agent-c's sequence numbers: {seqs:?}");
        }
    };
    assert!(duplicated_windows(&pool, "agent-c").await.is_empty());
    eprintln!(
        "replica C killed: agent-c streaming to another replica after {:.1} s, {} rollups contiguous, none duplicated",
        moved_after.as_secs_f64(),
        windows.len()
    );
    let holders = wait_for("one live holder of the ticks lease", || async {
        let h = lease_holders(&pool).await;
        (h.len() == 1).then_some(h)
    })
    .await;
    eprintln!("ticks lease held by {holders:?} after the kill");

    // A host revoked on replica B: replica A, which holds agent-c now, closes it at once.
    let revoked = Instant::now();
    let (status, body) = post(&b_base, &admin_b, "/hosts/agent-c/revoke", &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let a_log = sb.path().join("control-plane.log");
    let closed_after = wait_for("replica A closing agent-c's stream", || async {
        let text = std::fs::read_to_string(&a_log).unwrap_or_default();
        text.contains("closed the stream of a revoked agent agent_id=agent-c")
            .then(|| revoked.elapsed())
    })
    .await;
    eprintln!(
        "revoked on replica B, closed by replica A after {:.0} ms (A polls every 15 s)",
        closed_after.as_secs_f64() * 1000.0
    );
    assert!(
        closed_after < Duration::from_secs(2),
        "took {closed_after:?}"
    );
}

/// `GET /status` of the replica whose REST API is at `base` (no token needed); Null when it
/// does not answer.
async fn replica_status(base: &str) -> Value {
    let sent = reqwest::Client::new()
        .get(format!("{base}/status"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    match sent {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// What each replica at `bases` says of the `ticks` lease in its `/status`: whether it holds
/// it, or None when it did not answer.
async fn ticks_view(bases: &[String]) -> Vec<Option<bool>> {
    let mut view = Vec::new();
    for base in bases {
        let status = replica_status(base).await;
        view.push(
            status["replica"]["leases"]
                .as_array()
                .map(|l| l.iter().any(|n| n == "ticks")),
        );
    }
    view
}

/// The replicas at `bases` that show the `ticks` lease in their `/status`, by index.
async fn ticks_holders(bases: &[String]) -> Vec<usize> {
    let view = ticks_view(bases).await;
    (0..view.len()).filter(|&i| view[i] == Some(true)).collect()
}

/// The holder the `ticks` lease row names, expired or not.
async fn ticks_row_holder(pool: &sqlx::AnyPool) -> Option<String> {
    sqlx::query_scalar::<_, String>("SELECT holder FROM leases WHERE name = 'ticks'")
        .fetch_optional(pool)
        .await
        .expect("read the ticks lease")
}

async fn post_yaml(base: &str, token: &str, path: &str, text: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .header("content-type", "application/yaml")
        .body(text.to_string())
        .send()
        .await
        .expect("post");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A policy whose rule never fires; only its rollout matters here.
const TAKEOVER_POLICY: &str = r#"
name: takeover-guard
target: { labels: { env: test } }
rules:
  - name: vacuum
    when: { state: ["mem.used_pct > 101"] }
    action: { type: journal_vacuum, max_size_mb: 500 }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_ticks_lease_moves_when_its_holder_dies() {
    const TICK_MS: u64 = 500;
    const TTL_MS: u64 = 2000;
    let Some(mut sb) = Sandbox::new(Db::Postgres).await else {
        return;
    };
    sb.control_plane_extra =
        format!("[remediation]\ntick_ms = {TICK_MS}\n[replicas]\nlease_ttl_ms = {TTL_MS}\n");
    let (b_grpc, b_http) = (free_addr(), free_addr());
    let (c_grpc, c_http) = (free_addr(), free_addr());
    let mut replicas = [
        sb.start_control_plane(),
        sb.start_replica("replica-b", b_grpc, b_http),
        sb.start_replica("replica-c", c_grpc, c_http),
    ];
    let grpc = [sb.grpc_addr, b_grpc, c_grpc];
    let bases = [
        sb.base_url(),
        format!("http://{b_http}"),
        format!("http://{c_http}"),
    ];
    let pool = sb.db().await;

    // All alive: one of them holds the lease, and keeps it over three TTLs (the row never
    // names another; no sample shows two, or another, or none while the holder answers).
    let holder = wait_for("one replica showing the ticks lease", || async {
        let h = ticks_holders(&bases).await;
        (h.len() == 1).then(|| h[0])
    })
    .await;
    let holder_id = replica_status(&bases[holder]).await["replica"]["id"]
        .as_str()
        .expect("replica id in /status")
        .to_string();
    for _ in 0..(3 * TTL_MS / TICK_MS) {
        tokio::time::sleep(Duration::from_millis(TICK_MS)).await;
        let view = ticks_view(&bases).await;
        let shown: Vec<usize> = (0..3).filter(|&i| view[i] == Some(true)).collect();
        assert!(
            shown == [holder] || (shown.is_empty() && view[holder].is_none()),
            "replica {holder} held the ticks lease, now /status says {view:?}"
        );
        assert_eq!(
            ticks_row_holder(&pool).await.as_deref(),
            Some(holder_id.as_str()),
            "the ticks lease changed hands while every replica lived"
        );
    }
    assert_eq!(lease_holders(&pool).await, std::slice::from_ref(&holder_id));

    // An agent on the replicas that live on, and a canary rollout whose time is up only
    // after the holder is gone: judging it is the holder's work alone.
    let survivors: Vec<usize> = (0..3).filter(|&i| i != holder).collect();
    let _agent = start_agent(&sb, "agent-t", &[grpc[survivors[0]], grpc[survivors[1]]]);
    let base = &bases[survivors[0]];
    let admin = login_at(base, "admin", sco_tests::ADMIN_PASSWORD).await;
    wait_for("agent-t streaming", || async {
        (stored_windows(&pool, "agent-t").await.len() >= 2).then_some(())
    })
    .await;
    let (status, body) = post_yaml(base, &admin, "/policies", TAKEOVER_POLICY).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post(
        base,
        &admin,
        "/policies/takeover-guard/rollout",
        &json!({"canary_percent": 100, "canary_secs": 3}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["rollout"]["state"], "canary", "{body}");

    replicas[holder].kill();
    let killed = Instant::now();
    let rollout = get(base, &admin, "/policies/takeover-guard").await;
    assert_eq!(
        rollout["rollouts"][0]["state"], "canary",
        "judged before the kill: {rollout}"
    );

    // Another replica takes the lease within its TTL, plus a tick to try and a margin for
    // a loaded machine (a tick's own work delays the next).
    let (new_holder, took) = wait_for("another replica taking the ticks lease", || async {
        let h = ticks_holders(&bases).await;
        (h.len() == 1 && h[0] != holder).then(|| (h[0], killed.elapsed()))
    })
    .await;
    eprintln!(
        "ticks lease taken over by replica {new_holder} {:.0} ms after its holder was killed \
         (TTL {TTL_MS} ms, tick {TICK_MS} ms)",
        took.as_secs_f64() * 1000.0
    );
    let bound = Duration::from_millis(TTL_MS + TICK_MS + 1500);
    assert!(took <= bound, "took {took:?}, more than {bound:?}");

    // ... and does the fleet-wide work: the rollout is judged, by it.
    let judged = wait_for("the rollout judged after the kill", || async {
        let body = get(base, &admin, "/policies/takeover-guard").await;
        let r = body["rollouts"][0].clone();
        (r["state"] != "canary" && !r["state"].is_null()).then_some(r)
    })
    .await;
    assert_eq!(judged["state"], "complete", "{judged}");
    let judged_here = replicas[new_holder]
        .log_text()
        .lines()
        .any(|l| l.contains("rollout policy=takeover-guard") && l.contains("state=complete"));
    assert!(
        judged_here,
        "the new holder's log does not show the rollout judged:\n{}",
        replicas[new_holder].log_tail()
    );
    let other = survivors
        .iter()
        .find(|&&i| i != new_holder)
        .expect("two survivors");
    assert!(!replicas[*other]
        .log_text()
        .contains("rollout policy=takeover-guard"));
    eprintln!(
        "rollout judged by the new holder {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );

    // Still one holder among the live replicas, the one the database names.
    assert_eq!(ticks_holders(&bases).await, [new_holder]);
    let new_id = replica_status(&bases[new_holder]).await["replica"]["id"]
        .as_str()
        .expect("replica id")
        .to_string();
    assert_ne!(new_id, holder_id);
    assert_eq!(lease_holders(&pool).await, [new_id]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_replica_sends_new_agents_to_one_with_room() {
    let Some(sb) = Sandbox::new(Db::Postgres).await else {
        return;
    };
    let a = sb.start_replica_with(
        "control-plane",
        sb.grpc_addr,
        sb.http_addr,
        "[replicas]\nmax_streams = 1\n",
    );
    let (b_grpc, b_http) = (free_addr(), free_addr());
    let b = sb.start_replica("replica-b", b_grpc, b_http);
    let (a_base, b_base) = (sb.base_url(), format!("http://{b_http}"));
    let pool = sb.db().await;
    let status_a = replica_status(&a_base).await;
    assert_eq!(status_a["replica"]["max_streams"], 1, "{status_a}");
    assert_eq!(
        status_a["replica"]["advertise"],
        sb.grpc_addr.to_string(),
        "{status_a}"
    );
    // B must be in the registry of live replicas (renewed each tick) before A can name it.
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

    let mut first = start_agent(&sb, "agent-1", &[sb.grpc_addr, b_grpc]);
    wait_for("agent-1 streaming to replica A", || async {
        (stored_windows(&pool, "agent-1").await.len() >= 2).then_some(())
    })
    .await;
    assert_eq!(replica_status(&a_base).await["replica"]["streams"], 1);

    // agent-2 knows only A and would wait 30 s before trying again: only the redirect at once
    // to the replica A names brings it to B soon.
    let started = Instant::now();
    let mut second = start_agent_backing_off(&sb, "agent-2", &[sb.grpc_addr], 30_000);
    let reached = wait_for("agent-2 streaming to replica B", || async {
        (stored_windows(&pool, "agent-2").await.len() >= 2).then(|| started.elapsed())
    })
    .await;
    eprintln!(
        "agent-2 turned away by the full replica A, streaming to B {:.1} s after it started",
        reached.as_secs_f64()
    );
    assert!(
        reached < Duration::from_secs(12),
        "took {reached:?}: agent-2 backed off instead of following the redirect"
    );
    assert!(a.log_contains("stream limit reached; agent sent elsewhere"));
    assert!(second.log_contains("control plane full; redirected to another endpoint"));
    assert!(b.log_contains("agent connected agent_id=\"agent-2\""));
    assert!(!b.log_contains("agent connected agent_id=\"agent-1\""));
    // sent away over the transport it came by: a QUIC agent is named B's QUIC address
    let transport: String = sqlx::query_scalar("SELECT transport FROM hosts WHERE id = $1")
        .bind("agent-2")
        .fetch_one(&pool)
        .await
        .expect("agent-2's host");
    assert_eq!(transport, sco_tests::agent_transport());
    let (status_a, status_b) = (replica_status(&a_base).await, replica_status(&b_base).await);
    assert_eq!(status_a["replica"]["streams"], 1, "{status_a}");
    assert_eq!(status_b["replica"]["streams"], 1, "{status_b}");
    assert_eq!(status_b["agents_connected"], 1, "{status_b}");

    // Both keep streaming; after a clean stop every rollup each produced is stored once,
    // in sequence order, without a gap.
    for id in ["agent-1", "agent-2"] {
        let before = stored_windows(&pool, id).await.len();
        wait_for(&format!("{id} still streaming"), || async {
            (stored_windows(&pool, id).await.len() >= before + 2).then_some(())
        })
        .await;
    }
    assert!(first.terminate().success());
    assert!(second.terminate().success());
    for id in ["agent-1", "agent-2"] {
        let windows = stored_windows(&pool, id).await;
        for (i, (seq, _, _)) in windows.iter().enumerate() {
            assert_eq!(*seq, i as i64 + 1, "gap in {id}'s sequence numbers");
        }
        assert!(duplicated_windows(&pool, id).await.is_empty());
        eprintln!(
            "{id}: {} rollups stored, contiguous, none duplicated",
            windows.len()
        );
    }
}

/// Without `replicas.max_streams`, a control plane holds as many streams as its open-file limit
/// allows less a reserve (a tenth, at least 256): started with 300 descriptors it takes 44;
/// started with a soft limit of 300 under a hard one of 4,096 it raises the soft limit, as a
/// server should, and takes 3,687.
#[tokio::test(flavor = "multi_thread")]
async fn without_max_streams_the_open_file_limit_sets_it() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    for (nofile, expected) in [("300:300", 44), ("300:4096", 3687)] {
        let config = sb.replica_config("control-plane", sb.grpc_addr, sb.http_addr);
        let mut prlimit = Command::new("prlimit");
        prlimit
            .arg(format!("--nofile={nofile}"))
            .arg("--")
            .arg(bin("sco-control-plane"));
        let mut cmd = sb.serve_with(prlimit, &config);
        let cp = Proc::spawn(
            "control-plane",
            &mut cmd,
            &sb.path().join(format!("control-plane-{nofile}.log")),
        );
        let status = wait_for("the control plane answers /status", || async {
            let s = replica_status(&sb.base_url()).await;
            (!s.is_null()).then_some(s)
        })
        .await;
        assert_eq!(
            status["replica"]["max_streams"], expected,
            "open files {nofile}: {status}"
        );
        drop(cp);
        wait_for("the control plane is gone", || async {
            (!sco_tests::listens(sb.http_addr)).then_some(())
        })
        .await;
    }
}

/// The Helm chart gives each replica its pod IP alone (`SCO_CP__REPLICAS__ADVERTISE_HOST`):
/// the control plane puts it with the ports it listens on, an IPv6 address in brackets
/// (`$(POD_IP):7443` in the chart made `fd00::1:7443`), and `/status` shows what agents are
/// sent to.
#[tokio::test(flavor = "multi_thread")]
async fn an_advertised_host_takes_the_listen_ports() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let config = sb.control_plane_config();
    let mut cmd = sb.serve_command(&bin("sco-control-plane"), &config);
    cmd.env("SCO_CP__REPLICAS__ADVERTISE_HOST", "fd00::1");
    let _cp = Proc::spawn(
        "control-plane",
        &mut cmd,
        &sb.path().join("control-plane.log"),
    );
    let status = wait_for("the control plane answers /status", || async {
        let s = replica_status(&sb.base_url()).await;
        (!s.is_null()).then_some(s)
    })
    .await;
    // the sandbox listens for QUIC on the gRPC port's number
    let port = sb.grpc_addr.port();
    assert_eq!(
        status["replica"]["advertise"],
        format!("[fd00::1]:{port}"),
        "{status}"
    );
    assert_eq!(
        status["replica"]["advertise_quic"],
        format!("[fd00::1]:{port}"),
        "{status}"
    );
}

/// An agent of the sandbox's control plane that calls a stream dead after 15 s of silence (not
/// 4) and tries again every second.
fn start_patient_agent(sb: &Sandbox, id: &str) -> Proc {
    let config = sb.agent_config(id);
    let text = std::fs::read_to_string(&config)
        .expect("read agent config")
        .replace("dead_after_secs = 4", "dead_after_secs = 15")
        .replace(
            "backoff_initial_ms = 100\nbackoff_max_ms = 1000",
            "backoff_initial_ms = 1000\nbackoff_max_ms = 1000",
        );
    assert!(text.contains("dead_after_secs = 15") && text.contains("backoff_initial_ms = 1000"));
    std::fs::write(&config, text).expect("write agent config");
    Proc::spawn(
        &format!("agent {id}"),
        Command::new(bin("sco-agent"))
            .args(["run", "--config"])
            .arg(&config),
        &sb.path().join(format!("agent-{id}.log")),
    )
}

/// Admission by load (`replicas.max_lag_ms`): a control plane whose runtime is made late for
/// real, pinned to one core where busy loops run at a higher priority, refuses a new agent's
/// stream with `RESOURCE_EXHAUSTED` while the agent it holds keeps streaming, shows it in
/// `/status`, and admits the new agent once the busy loops stop. No timing is asserted beyond
/// the patience of the waits: how late the runtime gets is the machine's business, as long as
/// it is over the limit under the busy loops and under half of it without them.
#[tokio::test(flavor = "multi_thread")]
async fn an_overloaded_replica_refuses_new_agents_and_keeps_the_ones_it_holds() {
    let _turn = sco_tests::burner_turn().await;
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    // max_lag_ms = 50: a runtime that has its core is a few ms late at most; one that gets
    // about 1 % of it (a busy loop at nice -20 against its nice 0) was 0.09–3.2 s late here
    // (nice -10 never made it 50 ms late: a task that mostly sleeps is favoured on waking).
    // Since it is then seconds late, both sides wait 15 s (not the sandbox's 4) before they
    // call a silent stream dead: what is tested is that the control plane keeps the stream,
    // not how late it answers.
    let config = sb.control_plane_config();
    let text = std::fs::read_to_string(&config).expect("read config");
    let mut text = text.replace("dead_after_secs = 4", "dead_after_secs = 15");
    assert!(text.contains("dead_after_secs = 15"), "{text}");
    text.push_str("[replicas]\nmax_lag_ms = 50\n");
    std::fs::write(&config, text).expect("write config");
    let core = "0";
    let mut taskset = Command::new("taskset");
    taskset.args(["-c", core]).arg(bin("sco-control-plane"));
    let mut cmd = sb.serve_with(taskset, &config);
    let cp = Proc::spawn(
        "control-plane",
        &mut cmd,
        &sb.path().join("control-plane.log"),
    );
    let base = sb.base_url();
    let status = wait_for("the control plane admits agents", || async {
        let s = replica_status(&base).await;
        (s["replica"]["shedding"] == false).then_some(s)
    })
    .await;
    assert_eq!(status["replica"]["max_lag_ms"], 50, "{status}");
    let pool = sb.db().await;
    let mut first = start_patient_agent(&sb, "agent-1");
    wait_for("agent-1 streaming", || async {
        (stored_windows(&pool, "agent-1").await.len() >= 2).then_some(())
    })
    .await;

    // the load: a busy loop on the control plane's core, at a higher priority than it
    let burner = Proc::spawn(
        "burner",
        Command::new("nice").args([
            "-n",
            "-20",
            "taskset",
            "-c",
            core,
            "sh",
            "-c",
            "while :; do :; done",
            "sco-test-overloaded-replica",
        ]),
        &sb.path().join("burner.log"),
    );
    let status = wait_for("the control plane shedding new streams", || async {
        let s = replica_status(&base).await;
        (s["replica"]["shedding"] == true).then_some(s)
    })
    .await;
    eprintln!("under load: {}", status["replica"]);
    assert!(cp.log_contains("runtime late; refusing new agent streams"));

    let mut second = start_patient_agent(&sb, "agent-2");
    wait_for("agent-2 refused as overloaded", || async {
        (second.log_contains("control plane full")
            && second.log_contains("this replica is overloaded"))
        .then_some(())
    })
    .await;
    assert!(cp.log_contains("overloaded; agent sent elsewhere"));
    // the stream held goes on under the same load
    let before = stored_windows(&pool, "agent-1").await.len();
    wait_for("agent-1 still streaming under load", || async {
        (stored_windows(&pool, "agent-1").await.len() >= before + 3).then_some(())
    })
    .await;
    let status = replica_status(&base).await;
    eprintln!("still under load: {}", status["replica"]);
    eprintln!(
        "agent-2 stored while refused: {}",
        stored_windows(&pool, "agent-2").await.len()
    );

    // the load lifted: admission resumes and agent-2, backing off, gets in
    drop(burner);
    let status = wait_for("the control plane admitting again", || async {
        let s = replica_status(&base).await;
        (s["replica"]["shedding"] == false).then_some(s)
    })
    .await;
    eprintln!("load lifted: {}", status["replica"]);
    assert!(cp.log_contains("runtime caught up; admitting new agent streams again"));
    wait_for("agent-2 streaming", || async {
        (stored_windows(&pool, "agent-2").await.len() >= 2).then_some(())
    })
    .await;
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains("sco_streams_refused_total{reason=\"lag\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("sco_admission_shedding 0"), "{metrics}");
    assert!(first.terminate().success());
    assert!(second.terminate().success());
    let opened = std::fs::read_to_string(sb.path().join("control-plane.log"))
        .expect("control-plane log")
        .lines()
        .filter(|l| l.contains("agent stream opened") && l.contains("agent-1"))
        .count();
    assert_eq!(
        opened, 1,
        "agent-1's stream was opened again: it was dropped"
    );
}
