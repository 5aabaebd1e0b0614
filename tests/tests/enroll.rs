//! Joining the fleet with one-time tokens, renewing short-lived
//! certificates, and revocation across control-plane replicas.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use sco_tests::{bin, free_addr, stored_windows, wait_for, wait_until, Db, Proc, Sandbox};
use serde_json::{json, Value};

async fn create_token(sb: &Sandbox, admin: &str, body: Value) -> (String, String) {
    let r = reqwest::Client::new()
        .post(format!("{}/enrollment-tokens", sb.base_url()))
        .bearer_auth(admin)
        .json(&body)
        .send()
        .await
        .expect("create token");
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.expect("json");
    (
        v["token"].as_str().expect("token").to_string(),
        v["ca_sha256"].as_str().expect("fingerprint").to_string(),
    )
}

/// Runs `sco-agent enroll`; returns (success, stdout + stderr).
fn enroll(sb: &Sandbox, token: &str, fingerprint: &str, out: &Path) -> (bool, String) {
    let o = Command::new(bin("sco-agent"))
        .args([
            "enroll",
            "--server",
            &sb.grpc_addr.to_string(),
            "--token",
            token,
        ])
        .args([
            "--ca-sha256",
            fingerprint,
            "--server-name",
            "localhost",
            "--out",
        ])
        .arg(out)
        .output()
        .expect("run sco-agent enroll");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

fn enrolled_agent_config(sb: &Sandbox, dir: &Path) -> PathBuf {
    let path = dir.join("agent.toml");
    let text = format!(
        "[agent]\ndata_dir = \"{d}/data\"\ninterval_ms = 200\nrollup_secs = 1\n\
         [server]\nendpoints = [\"{addr}\"]\nserver_name = \"localhost\"\nca = \"{d}/ca.pem\"\n\
         cert = \"{d}/agent.pem\"\nkey = \"{d}/agent.key\"\nheartbeat_secs = 1\ndead_after_secs = 4\n\
         backoff_initial_ms = 100\nbackoff_max_ms = 1000\n",
        d = dir.display(),
        // enrollment is TCP only; the agent then streams and renews over the run's transport
        addr = sco_tests::agent_endpoint(sb.grpc_addr)
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn start_enrolled_agent(sb: &Sandbox, dir: &Path) -> Proc {
    let config = enrolled_agent_config(sb, dir);
    Proc::spawn(
        "enrolled agent",
        Command::new(bin("sco-agent"))
            .args(["run", "--config"])
            .arg(config),
        &dir.join("agent.log"),
    )
}

fn agent_id_of(dir: &Path) -> String {
    let pem = std::fs::read(dir.join("agent.pem")).expect("cert");
    let der = CertificateDer::pem_slice_iter(&pem)
        .next()
        .expect("a cert")
        .expect("pem");
    sco_control_plane::pki::agent_id_from_der(der.as_ref()).expect("agent id in the certificate")
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

#[tokio::test(flavor = "multi_thread")]
async fn enrollment_with_one_time_tokens() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let admin = sb.admin_token().await;
    let (token, fingerprint) = create_token(
        &sb,
        &admin,
        json!({"max_uses": 1, "labels": {"team": "web"}}),
    )
    .await;

    // A wrong CA fingerprint: refused, nothing written.
    let wrong = sb.path().join("wrong-ca");
    let (ok, text) = enroll(&sb, &token, &"ab".repeat(32), &wrong);
    assert!(!ok && text.contains("fingerprint"), "{text}");
    assert!(is_empty_dir(&wrong), "nothing written");

    // The real enrollment.
    let dir = sb.path().join("enrolled");
    let (ok, text) = enroll(&sb, &token, &fingerprint, &dir);
    assert!(ok, "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("agent.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the private key is readable by its owner only"
        );
    }
    let id = agent_id_of(&dir);
    assert!(text.contains(&id), "{text}");

    // The token is used up.
    let again = sb.path().join("again");
    let (ok, text) = enroll(&sb, &token, &fingerprint, &again);
    assert!(!ok && text.contains("no uses left"), "{text}");
    assert!(is_empty_dir(&again));

    // Expired and revoked tokens.
    let (short, _) = create_token(&sb, &admin, json!({"ttl_secs": 1})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (ok, text) = enroll(&sb, &short, &fingerprint, &again);
    assert!(!ok && text.contains("expired"), "{text}");
    let (revoked, _) = create_token(&sb, &admin, json!({})).await;
    let token_id = revoked.split('.').next().expect("id");
    let r = reqwest::Client::new()
        .delete(format!("{}/enrollment-tokens/{token_id}", sb.base_url()))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    let (ok, text) = enroll(&sb, &revoked, &fingerprint, &again);
    assert!(!ok && text.contains("revoked"), "{text}");
    let (ok, text) = enroll(
        &sb,
        &format!("{token_id}.{}", "0".repeat(64)),
        &fingerprint,
        &again,
    );
    assert!(
        !ok && text.contains("invalid enrollment token"),
        "a wrong secret: {text}"
    );
    assert!(is_empty_dir(&again));

    // Listing never shows secrets.
    let (status, body) = sb.get(&admin, "/enrollment-tokens").await;
    assert_eq!(status, 200);
    assert!(!body
        .to_string()
        .contains(token.split('.').nth(1).expect("secret")));
    assert_eq!(body["enrollment_tokens"].as_array().map(Vec::len), Some(3));

    // The enrolled agent streams under its assigned id with the token's labels.
    let _agent = start_enrolled_agent(&sb, &dir);
    let host = wait_for("the enrolled agent's host record", || async {
        let (_, body) = sb.get(&admin, &format!("/hosts/{id}")).await;
        (body["host"]["connected"] == true).then(|| body["host"].clone())
    })
    .await;
    assert_eq!(host["labels"]["team"], "web");
    assert!(host["cert_not_after_ms"].as_i64().unwrap_or(0) > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_rotate_without_losing_data() {
    let Some(mut sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    sb.control_plane_extra = "[enrollment]\ncert_ttl_secs = 6\n".into();
    let mut cp = sb.start_control_plane();
    let admin = sb.admin_token().await;
    let (token, fingerprint) = create_token(&sb, &admin, json!({})).await;
    let dir = sb.path().join("rotating");
    let (ok, text) = enroll(&sb, &token, &fingerprint, &dir);
    assert!(ok, "{text}");
    let id = agent_id_of(&dir);
    let first_cert = std::fs::read(dir.join("agent.pem")).expect("cert");
    let agent = start_enrolled_agent(&sb, &dir);

    // Renewals at two thirds of 6 s: several within ~15 s.
    wait_until("three certificate renewals", || {
        std::fs::read_to_string(dir.join("agent.log"))
            .is_ok_and(|t| t.matches("agent certificate renewed").count() >= 3)
    });
    assert_ne!(
        std::fs::read(dir.join("agent.pem")).expect("cert"),
        first_cert
    );
    // renewed through the endpoint it streams to, over the run's transport
    let log = std::fs::read_to_string(dir.join("agent.log")).expect("agent log");
    let transport = format!("transport=\"{}\"", sco_tests::agent_transport());
    assert!(log.contains(&transport), "{transport}: {log}");
    // The first certificate has long expired; a restart of the control
    // plane forces a new TLS connection, which must use a renewed one.
    assert!(cp.terminate().success());
    let pool = sb.db().await;
    let before = stored_windows(&pool, &id).await.len();
    let _cp = sb.start_control_plane();
    let windows = wait_for("rollups after the reconnect", || async {
        let w = stored_windows(&pool, &id).await;
        (w.len() >= before + 5).then_some(w)
    })
    .await;
    for (i, (seq, _, _)) in windows.iter().enumerate() {
        assert_eq!(
            *seq,
            i as i64 + 1,
            "no sequence gap across renewals and reconnects"
        );
    }
    for pair in windows.windows(2) {
        assert_eq!(
            pair[0].2, pair[1].1,
            "no time gap between windows: {pair:?}"
        );
    }
    drop(agent);
}

#[tokio::test(flavor = "multi_thread")]
async fn revocation_closes_the_stream_on_every_replica_and_survives_restarts() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    // Replica A serves REST; the agent streams to replica B.
    let _a = sb.start_control_plane();
    let (b_grpc, b_http) = (free_addr(), free_addr());
    let mut b = sb.start_replica("replica-b", b_grpc, b_http);
    let admin = sb.admin_token().await;
    let (token, fingerprint) = create_token(&sb, &admin, json!({})).await;
    let dir = sb.path().join("to-revoke");
    assert!(enroll(&sb, &token, &fingerprint, &dir).0);
    let id = agent_id_of(&dir);
    let config = enrolled_agent_config(&sb, &dir);
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace(&sb.grpc_addr.to_string(), &b_grpc.to_string())
        .replace(
            "backoff_max_ms = 1000\n",
            "backoff_max_ms = 1000\nrefused_retry_secs = 1\n",
        );
    std::fs::write(&config, text).expect("config");
    let agent = Proc::spawn(
        "agent on replica b",
        Command::new(bin("sco-agent"))
            .args(["run", "--config"])
            .arg(&config),
        &dir.join("agent.log"),
    );
    let b_status = || async move {
        let v: Value = reqwest::get(format!("http://{b_http}/status"))
            .await
            .expect("status")
            .json()
            .await
            .expect("json");
        v["agents_connected"].as_i64().unwrap_or(-1)
    };
    wait_for("the agent on replica b", || async {
        (b_status().await == 1).then_some(())
    })
    .await;

    let r = reqwest::Client::new()
        .post(format!("{}/hosts/{id}/revoke", sb.base_url()))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 200);
    wait_for("replica b to close the revoked agent's stream", || async {
        (b_status().await == 0).then_some(())
    })
    .await;
    const REFUSED: &str = "the control plane refuses this agent";
    wait_until("the agent to see its refusal", || {
        agent.log_contains("revoked") && agent.log_contains(REFUSED)
    });

    // Still refused after a restart of the replica (the agent tries again
    // and is refused again), and nothing more is stored.
    assert!(b.terminate().success());
    let pool = sb.db().await;
    let stored = stored_windows(&pool, &id).await.len();
    let refusals = || agent.log_text().matches(REFUSED).count();
    let before = refusals();
    let _b = sb.start_replica("replica-b", b_grpc, b_http);
    wait_until("the agent to be refused by the restarted replica", || {
        refusals() > before
    });
    assert_eq!(b_status().await, 0);
    assert_eq!(stored_windows(&pool, &id).await.len(), stored);
    let (_, body) = sb.get(&admin, &format!("/hosts/{id}")).await;
    assert_eq!(body["host"]["revoked"], true);
}
