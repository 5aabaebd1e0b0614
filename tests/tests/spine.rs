//! Real host metrics travel from a real agent process over mTLS to a real
//! control plane process and come back out of the REST API.

use sco_tests::{wait_for, Db, Sandbox};

async fn metrics_reach_database_and_rest(db: Db) {
    let Some(sb) = Sandbox::new(db).await else {
        return;
    };
    let cp = sb.start_control_plane();
    let _agent = sb.start_agent("agent-1");
    let token = sb.admin_token().await;

    let points = wait_for("cpu rollups in GET /monitoring/metrics", || async {
        let (status, body) = sb
            .get(
                &token,
                "/monitoring/metrics?host=agent-1&metric=cpu.total_pct",
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let points = body["points"].as_array().cloned().unwrap_or_default();
        (points.len() >= 2).then_some(points)
    })
    .await;
    for p in &points {
        let (min, mean, max) = (
            p["min"].as_f64().unwrap_or(-1.0),
            p["mean"].as_f64().unwrap_or(-1.0),
            p["max"].as_f64().unwrap_or(-1.0),
        );
        assert!(
            0.0 <= min && min <= mean && mean <= max && max <= 100.0,
            "{p}"
        );
        assert!(p["count"].as_i64().unwrap_or(0) >= 1);
        assert_eq!(
            p["window_end_ms"].as_i64().unwrap_or(0) - p["window_start_ms"].as_i64().unwrap_or(0),
            1000
        );
    }

    let (status, body) = sb.get(&token, "/hosts").await;
    assert_eq!(status, 200);
    let host = &body["hosts"][0];
    assert_eq!(host["id"], "agent-1", "identity comes from the certificate");
    assert_eq!(host["connected"], true);
    assert_eq!(host["labels"]["env"], "test");
    assert!(!host["kernel"].as_str().unwrap_or("").is_empty());

    let (status, body) = sb.get(&token, "/hosts/agent-1").await;
    assert_eq!(status, 200);
    let latest = body["latest"].as_array().cloned().unwrap_or_default();
    for name in ["cpu.total_pct", "mem.used_bytes", "load.1", "proc.count"] {
        assert!(
            latest.iter().any(|v| v["metric"] == name),
            "{name} missing from {latest:?}"
        );
    }
    let (status, body) = sb.get(&token, "/hosts/nobody").await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().is_some());

    // The per-second samples also arrive in the database itself.
    let pool = sb.db().await;
    let windows = sco_tests::stored_windows(&pool, "agent-1").await;
    assert!(windows.len() >= 2);

    let status: serde_json::Value = reqwest::get(format!("{}/status", sb.base_url()))
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(status["database"]["reachable"], true);
    assert_eq!(status["agents_connected"], 1);
    assert!(status["ingest"]["messages"].as_u64().unwrap_or(0) >= 2);
    let metrics = reqwest::get(format!("{}/metrics", sb.base_url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("sco_agents_connected 1"), "{metrics}");
    // over the transport this run chose (SCO_TEST_TRANSPORT)
    let transport = format!("transport=\"{}\"", sco_tests::agent_transport());
    assert!(
        cp.log_text()
            .lines()
            .any(|l| l.contains("agent stream opened") && l.contains(&transport)),
        "{transport}: {}",
        cp.log_text()
    );
    assert!(
        metrics.contains("sco_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_reach_database_and_rest_sqlite() {
    metrics_reach_database_and_rest(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_reach_database_and_rest_postgres() {
    metrics_reach_database_and_rest(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_on_sigterm() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let mut cp = sb.start_control_plane();
    let mut agent = sb.start_agent("agent-1");
    let pool = sb.db().await;
    wait_for("a stored rollup", || async {
        (!sco_tests::stored_windows(&pool, "agent-1").await.is_empty()).then_some(())
    })
    .await;
    assert!(agent.terminate().success(), "agent exits 0 on SIGTERM");
    assert!(cp.terminate().success(), "control plane exits 0 on SIGTERM");
}
