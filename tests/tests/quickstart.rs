//! The README's one command, `sco-control-plane up`, as a real process: a
//! development PKI, SQLite, one local agent enrolled with a one-time token
//! and a locally generated key, its metrics reachable through REST; stopped
//! by a signal and started again on the same data without a new enrollment.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use sco_tests::{bin, free_addr, login_at, wait_for, wait_until, Proc};
use serde_json::Value;

const PASSWORD: &str = "quickstart-password-1";

fn up(data: &Path, grpc: std::net::SocketAddr, http: std::net::SocketAddr, log: &str) -> Proc {
    Proc::spawn(
        "sco-control-plane up",
        Command::new(bin("sco-control-plane"))
            .args(["up", "--data-dir"])
            .arg(data)
            .env("SCO_GRPC_LISTEN", grpc.to_string())
            .env("SCO_HTTP_LISTEN", http.to_string())
            .env("SCO_ADMIN_PASSWORD", PASSWORD),
        &data.with_file_name(log),
    )
}

/// The agent id `up` printed.
fn printed_agent(p: &Proc) -> Option<String> {
    p.log_text()
        .lines()
        .find_map(|l| l.strip_prefix("  local agent "))
        .map(|s| s.split_whitespace().next().unwrap_or_default().to_string())
}

async fn get(http: &reqwest::Client, base: &str, token: &str, path: &str) -> Value {
    http.get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

#[tokio::test(flavor = "multi_thread")]
async fn up_enrolls_a_local_agent_and_serves_its_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("sco-data");
    let (grpc, http_addr) = (free_addr(), free_addr());
    let base = format!("http://{http_addr}");
    let http = reqwest::Client::new();

    let mut first = up(&data, grpc, http_addr, "up-1.log");
    wait_until("up to say it is up", || {
        first.log_contains("SmartCloudOps is up")
    });
    let agent_id = printed_agent(&first).expect("agent id printed");
    assert!(
        first.log_contains(&format!("local agent enrolled as {agent_id}")),
        "{}",
        first.log_text()
    );
    for file in ["pki/ca.key", "agent/agent.key", "jwt.secret"] {
        let mode = std::fs::metadata(data.join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{file} is private: {mode:o}");
    }

    let token = login_at(&base, "admin", PASSWORD).await;
    let host = wait_for("the local agent to be connected", || async {
        let body = get(&http, &base, &token, &format!("/hosts/{agent_id}")).await;
        (body["host"]["connected"] == true).then(|| body["host"].clone())
    })
    .await;
    assert_eq!(host["labels"]["role"], "quickstart", "{host}");
    let tokens = get(&http, &base, &token, "/enrollment-tokens").await;
    let used: Vec<&Value> = tokens["enrollment_tokens"]
        .as_array()
        .map(|t| t.iter().filter(|t| t["uses"] == 1).collect())
        .unwrap_or_default();
    assert_eq!(used.len(), 1, "the one-time token was used once: {tokens}");

    let points = wait_for("CPU rollups of the local agent", || async {
        let body = get(
            &http,
            &base,
            &token,
            &format!("/monitoring/metrics?host={agent_id}&metric=cpu.total_pct"),
        )
        .await;
        let n = body["points"].as_array().map_or(0, Vec::len);
        (n > 0).then_some(body)
    })
    .await;
    assert!(points["points"][0]["mean"].is_number(), "{points}");

    // Stopped by a signal, started again: same data, same agent, no new
    // enrollment.
    assert!(first.terminate().success(), "{}", first.log_text());
    let mut second = up(&data, grpc, http_addr, "up-2.log");
    wait_until("up to come back", || {
        second.log_contains("SmartCloudOps is up")
    });
    assert_eq!(printed_agent(&second).as_deref(), Some(agent_id.as_str()));
    assert!(!second.log_contains("local agent enrolled"));
    let token = login_at(&base, "admin", PASSWORD).await;
    wait_for("the local agent to reconnect", || async {
        let body = get(&http, &base, &token, &format!("/hosts/{agent_id}")).await;
        (body["host"]["connected"] == true).then_some(())
    })
    .await;
    assert!(second.terminate().success(), "{}", second.log_text());
}
