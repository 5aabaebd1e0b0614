//! The QUIC uplink itself: agents over QUIC and over TCP side by side on one control plane,
//! each seen on the transport it was configured with; a list that mixes them falls back; and
//! QUIC refuses a certificate the fleet CA did not sign. (The end-to-end tests run with every
//! agent over QUIC when `SCO_TEST_TRANSPORT=quic`.)

use std::time::Duration;

use sco_tests::{quic_endpoint, stored_windows, wait_for, wait_until, Db, Proc, Sandbox};
use serde_json::Value;

/// Writes agent `id`'s files and config with `endpoints` (TOML array items) instead of the
/// sandbox's; returns the agent's directory.
fn configure(sb: &Sandbox, id: &str, endpoints: &str) -> std::path::PathBuf {
    let path = sb.agent_config(id);
    let text = std::fs::read_to_string(&path).expect("read agent config");
    let (before, after) = text.split_once("endpoints = [").expect("endpoints line");
    let (_, after) = after.split_once(']').expect("end of endpoints");
    std::fs::write(&path, format!("{before}endpoints = [{endpoints}]{after}"))
        .expect("write agent config");
    path.parent().expect("agent dir").to_path_buf()
}

/// Starts agent `id` with `endpoints` (TOML array items) instead of the sandbox's.
fn start_agent_on(sb: &Sandbox, id: &str, endpoints: &str) -> Proc {
    configure(sb, id, endpoints);
    sb.start_agent(id)
}

/// The control plane's log line of the stream `id` opened, with its transport.
fn opened(cp: &Proc, id: &str) -> Option<String> {
    cp.log_text()
        .lines()
        .find(|l| l.contains("agent stream opened") && l.contains(&format!("agent_id={id} ")))
        .map(str::to_string)
}

async fn connected_agents(sb: &Sandbox) -> i64 {
    let v: Value = reqwest::get(format!("{}/status", sb.base_url()))
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    v["agents_connected"].as_i64().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_stream_over_quic_and_tcp_side_by_side() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let cp = sb.start_control_plane();
    let quic = start_agent_on(
        &sb,
        "over-quic",
        &format!("\"{}\"", quic_endpoint(sb.grpc_addr)),
    );
    let tcp = start_agent_on(&sb, "over-tcp", &format!("\"{}\"", sb.grpc_addr));
    let pool = sb.db().await;
    for id in ["over-quic", "over-tcp"] {
        wait_for(&format!("rollups of {id}"), || async {
            (stored_windows(&pool, id).await.len() >= 3).then_some(())
        })
        .await;
    }
    let line = opened(&cp, "over-quic").expect("the QUIC agent's stream is logged");
    assert!(line.contains("transport=\"quic\""), "{line}");
    let line = opened(&cp, "over-tcp").expect("the TCP agent's stream is logged");
    assert!(line.contains("transport=\"grpc\""), "{line}");
    assert!(
        quic.log_contains("transport=\"quic\""),
        "{}",
        quic.log_text()
    );
    assert!(tcp.log_contains("transport=\"grpc\""), "{}", tcp.log_text());
    assert_eq!(connected_agents(&sb).await, 2);
    // REST says which transport each host streams over.
    let token = sb.admin_token().await;
    for (id, transport) in [("over-quic", "quic"), ("over-tcp", "grpc")] {
        let (status, body) = sb.get(&token, &format!("/hosts/{id}")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["host"]["transport"], transport, "{body}");
    }
    // The windows of the QUIC agent arrive in order, once each, like over TCP.
    let windows = stored_windows(&pool, "over-quic").await;
    for (i, (seq, _, _)) in windows.iter().enumerate() {
        assert_eq!(*seq, i as i64 + 1, "{windows:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mixed_list_falls_back_from_quic_to_tcp() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let cp = sb.start_control_plane();
    // Nothing listens for QUIC on the HTTP port's number: the handshake times out and the
    // agent goes on to the next endpoint of its list.
    let agent = start_agent_on(
        &sb,
        "mixed",
        &format!("\"{}\", \"{}\"", quic_endpoint(sb.http_addr), sb.grpc_addr),
    );
    let pool = sb.db().await;
    wait_for("rollups over the TCP fallback", || async {
        (!stored_windows(&pool, "mixed").await.is_empty()).then_some(())
    })
    .await;
    let line = opened(&cp, "mixed").expect("the stream is logged");
    assert!(line.contains("transport=\"grpc\""), "{line}");
    assert!(
        agent.log_contains("cannot connect to control plane")
            || agent.log_contains("connection to control plane lost"),
        "the QUIC endpoint was tried first: {}",
        agent.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn quic_refuses_a_certificate_of_another_ca() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let cp = sb.start_control_plane();
    let dir = configure(
        &sb,
        "stranger",
        &format!("\"{}\"", quic_endpoint(sb.grpc_addr)),
    );
    // A certificate and key from a CA the fleet does not know, for the same agent id.
    let other = sco_control_plane::pki::ensure_dev_pki(&sb.path().join("other-pki")).expect("pki");
    let now = time::OffsetDateTime::now_utc();
    let (cert, key) = other
        .issue_agent(
            "stranger",
            now - time::Duration::minutes(5),
            now + time::Duration::days(1),
        )
        .expect("issue");
    std::fs::write(dir.join("agent.pem"), cert).expect("cert");
    std::fs::write(dir.join("agent.key"), key).expect("key");
    let _agent = sb.start_agent("stranger");
    wait_until("the control plane to refuse the QUIC handshake", || {
        cp.log_contains("QUIC handshake failed")
    });
    // Given time to retry, it never gets a stream.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(opened(&cp, "stranger").is_none(), "{}", cp.log_text());
    assert_eq!(connected_agents(&sb).await, 0);
    assert!(stored_windows(&sb.db().await, "stranger").await.is_empty());
}
