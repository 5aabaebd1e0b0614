//! Three control-plane replicas on one PostgreSQL, sharing the work. Their periodic polls are
//! slowed to 15 s, so anything quicker than that is the wake-up one replica sends the others
//! through LISTEN/NOTIFY:
//! - a request posted to one replica reaches the agent held by another within a second;
//! - a host revoked on one replica has its stream closed by the one holding it at once;
//! - fleet-wide periodic work has exactly one holder (a lease), taken over when it dies;
//! - a replica killed with SIGKILL mid-ingest: its agent reconnects to another replica from
//!   its endpoint list, and nothing acknowledged is lost or duplicated.

use std::process::Command;
use std::time::{Duration, Instant};

use sco_tests::{
    bin, duplicated_windows, free_addr, login_at, stored_windows, wait_for, Db, Proc, Sandbox,
};
use serde_json::{json, Value};

/// An agent whose endpoint list is `endpoints`, in order.
fn start_agent(sb: &Sandbox, id: &str, endpoints: &[std::net::SocketAddr]) -> Proc {
    let config = sb.agent_config(id);
    let text = std::fs::read_to_string(&config).expect("read agent config");
    let list: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    let text = text.replace(
        &format!("endpoints = [\"{}\"]", sb.grpc_addr),
        &format!("endpoints = [{}]", list.join(", ")),
    );
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
    let windows = stored_windows(&pool, "agent-c").await;
    for (i, (seq, _, _)) in windows.iter().enumerate() {
        assert_eq!(*seq, i as i64 + 1, "gap in agent-c's sequence numbers");
    }
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
