//! A manual remediation request travels down the stream; the agent's local
//! safety rules decide; its report comes back through the outbox; all of it
//! is audited.

use std::process::{Command, Stdio};

use sco_tests::{wait_for, Db, Sandbox};
use serde_json::{json, Value};

async fn trigger(sb: &Sandbox, token: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/remediation/trigger", sb.base_url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("trigger");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn wait_for_state(sb: &Sandbox, token: &str, id: &str, states: &[&str]) -> Value {
    wait_for(&format!("request {id} to reach {states:?}"), || async {
        let (_, body) = sb.get(token, "/remediation/actions?host=agent-1").await;
        body["actions"]
            .as_array()?
            .iter()
            .find(|a| a["id"] == id && states.contains(&a["state"].as_str().unwrap_or_default()))
            .cloned()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn triggered_actions_obey_the_agent_and_are_audited() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let _agent = sb.start_agent("agent-1");
    let admin = sb.admin_token().await;
    wait_for("the agent to connect", || async {
        let (_, body) = sb.get(&admin, "/hosts/agent-1").await;
        (body["host"]["connected"] == true).then_some(())
    })
    .await;

    let mut burner = Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .stdin(Stdio::null())
        .spawn()
        .expect("start a CPU burner");
    let pid = burner.id();

    // Dry run: the plan names the process, which keeps running.
    let (status, body) = trigger(
        &sb,
        &admin,
        json!({"host": "agent-1", "action": {"type": "kill_process", "pid": pid}}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let id = body["action"]["id"].as_str().expect("id").to_string();
    let done = wait_for_state(&sb, &admin, &id, &["dry_run", "refused", "failed"]).await;
    assert_eq!(done["state"], "dry_run", "{done}");
    assert!(
        done["report"].to_string().contains(&pid.to_string()),
        "{done}"
    );
    assert!(
        burner.try_wait().expect("wait").is_none(),
        "a dry run changes nothing"
    );

    // Executed: the process is gone.
    let (status, body) = trigger(
        &sb,
        &admin,
        json!({"host": "agent-1", "action": {"type": "kill_process", "pid": pid, "grace_secs": 2}, "mode": "execute"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let id = body["action"]["id"].as_str().expect("id").to_string();
    let done = wait_for_state(&sb, &admin, &id, &["succeeded", "refused", "failed"]).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let exit = burner.wait().expect("burner reaped");
    assert!(!exit.success(), "the burner was killed");

    // The agent refuses what its local rules forbid, whoever asks.
    let (_, body) = trigger(
        &sb,
        &admin,
        json!({"host": "agent-1", "action": {"type": "kill_process", "pid": 1}, "mode": "execute"}),
    )
    .await;
    let id = body["action"]["id"].as_str().expect("id").to_string();
    let done = wait_for_state(&sb, &admin, &id, &["succeeded", "refused", "failed"]).await;
    assert_eq!(done["state"], "refused", "{done}");
    assert!(!done["reason"].as_str().unwrap_or_default().is_empty());

    // Bad requests never reach an agent.
    let (status, body) = trigger(
        &sb,
        &admin,
        json!({"host": "agent-1", "action": {"type": "rm_rf", "path": "/"}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("action"));
    let (status, _) = trigger(
        &sb,
        &admin,
        json!({"host": "nobody", "action": {"type": "journal_vacuum", "max_size_mb": 100}}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = trigger(
        &sb,
        &admin,
        json!({"host": "agent-1", "action": {"type": "journal_vacuum", "max_size_mb": 100}, "mode": "now"}),
    )
    .await;
    assert_eq!(status, 400);

    // Everything is in the audit log.
    let (status, body) = sb.get(&admin, "/audit?host=agent-1").await;
    assert_eq!(status, 200);
    let actions: Vec<&str> = body["entries"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["action"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "remediation.trigger")
            .count(),
        3,
        "{body}"
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "remediation.report")
            .count(),
        3,
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_action_opens_the_breaker_until_a_human_resets_it() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    // journal_vacuum always fails here, restart_service always works; one
    // failure opens a rule's breaker.
    let _agent = sb.start_agent_with(
        "agent-1",
        "[remediate]\njournalctl = \"/bin/false\"\nsystemctl = \"/bin/true\"\nbreaker_failures = 1\n",
    );
    let admin = sb.admin_token().await;
    wait_for("the agent to connect", || async {
        let (_, body) = sb.get(&admin, "/hosts/agent-1").await;
        (body["host"]["connected"] == true).then_some(())
    })
    .await;
    let run = |action: Value| {
        let (sb, admin) = (&sb, &admin);
        async move {
            let (status, body) = trigger(
                sb,
                admin,
                json!({"host": "agent-1", "action": action, "mode": "execute"}),
            )
            .await;
            assert_eq!(status, 202, "{body}");
            let id = body["action"]["id"].as_str().expect("id").to_string();
            wait_for_state(sb, admin, &id, &["succeeded", "refused", "failed"]).await
        }
    };
    let vacuum = json!({"type": "journal_vacuum", "max_size_mb": 100});
    let restart = json!({"type": "restart_service", "unit": "nginx.service"});

    let failed = run(vacuum).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let refused = run(restart.clone()).await;
    assert_eq!(refused["state"], "refused", "{refused}");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("circuit_open"),
        "{refused}"
    );

    let (status, body) = sb
        .post(
            &admin,
            "/remediation/breakers/reset",
            &json!({"host": "agent-1", "rule": "manual"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["action"]["id"].as_str().expect("id").to_string();
    let reset = wait_for_state(&sb, &admin, &id, &["succeeded", "failed"]).await;
    assert_eq!(reset["state"], "succeeded", "{reset}");
    assert_eq!(
        reset["report"]["state"]["consecutive_failures"], 0,
        "{reset}"
    );

    let ok = run(restart).await;
    assert_eq!(ok["state"], "succeeded", "{ok}");
    let (status, _) = sb
        .post(
            &admin,
            "/remediation/breakers/reset",
            &json!({"host": "agent-1", "rule": "rm -rf"}),
        )
        .await;
    assert_eq!(status, 400);
    let (_, body) = sb
        .get(&admin, "/audit?action=remediation.breaker_reset")
        .await;
    assert_eq!(body["count"], 1, "{body}");
}
