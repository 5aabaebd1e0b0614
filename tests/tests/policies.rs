//! Fleet policies end to end: validation naming the field, immutable signed
//! revisions, rollouts with a canary that stops by itself, delivery to
//! agents (also after they reconnect), refusal of policies that do not
//! verify, and the approval flow of proposed actions.
//!
//! Long (about 900 lines) because each test is one whole scenario (sign, roll out, deliver, refuse,
//! approve) against real processes; they share the helpers at the top.

use std::time::Duration;

use sco_agent::policy::SignedPolicy;
use sco_tests::{wait_for, Db, Sandbox};
use serde_json::{json, Value};

const GUARD: &str = r#"
name: disk-guard
target: { labels: { env: test } }
rules:
  - name: vacuum
    when: { state: ["mem.used_pct > 101"] }
    action: { type: journal_vacuum, max_size_mb: 500 }
"#;

async fn connected(sb: &Sandbox, token: &str, host: &str) {
    wait_for(&format!("{host} to connect"), || async {
        let (_, body) = sb.get(token, &format!("/hosts/{host}")).await;
        (body["host"]["connected"] == true).then_some(())
    })
    .await;
}

/// Stores GUARD and starts a rollout of it with `rollout` (canary settings).
async fn roll_out_guard(sb: &Sandbox, admin: &str, rollout: Value) -> Value {
    let (status, _) = sb.post_text(admin, "/policies", GUARD).await;
    assert_eq!(status, 201);
    let (status, body) = sb
        .post(admin, "/policies/disk-guard/rollout", &rollout)
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

/// Waits until the newest rollout of disk-guard has stopped; returns it.
async fn stopped_rollout(sb: &Sandbox, admin: &str, what: &str) -> Value {
    wait_for(what, || async {
        let (_, body) = sb.get(admin, "/policies/disk-guard").await;
        (body["rollouts"][0]["state"] == "stopped").then(|| body["rollouts"][0].clone())
    })
    .await
}

async fn policies_are_validated_signed_and_immutable(db: Db) {
    let Some(sb) = Sandbox::new(db).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let admin = sb.admin_token().await;

    // A bad document is refused with the field and the reason.
    let (status, body) = sb
        .post_text(
            &admin,
            "/policies",
            &GUARD.replace("journal_vacuum", "reboot"),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("rules[0].action"), "{error}");
    let (status, body) = sb
        .post_text(&admin, "/policies", "{\"name\": \"x\", \"rules\": [{\"name\": \"r\", \"when\": {\"state\": [\"cpu.total_pct >> 3\"]}, \"action\": {\"type\": \"journal_vacuum\", \"max_size_mb\": 1}}]}")
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("rules[0].when.state[0]"),
        "{body}"
    );
    let (status, _) = sb.post_text(&admin, "/policies", "").await;
    assert_eq!(status, 400);

    // Revisions: new documents make new revisions; the same one does not.
    let (status, body) = sb.post_text(&admin, "/policies", GUARD).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["policy"]["revision"], 1);
    let (status, body) = sb.post_text(&admin, "/policies", GUARD).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["created"], false);
    let v2 = GUARD.replace("500", "400");
    let (status, body) = sb.post_text(&admin, "/policies", &v2).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["policy"]["revision"], 2);

    let (status, body) = sb.get(&admin, "/policies/disk-guard").await;
    assert_eq!(status, 200, "{body}");
    let revisions = body["revisions"].as_array().cloned().unwrap_or_default();
    assert_eq!(revisions.len(), 2, "{body}");
    // Every revision verifies with the fleet key the agents get, and a
    // changed document does not.
    let key = sco_agent::policy::read_key(&sb.path().join("pki/policy.pub")).expect("policy key");
    for r in &revisions {
        let signed = SignedPolicy {
            name: r["name"].as_str().unwrap_or_default().into(),
            revision: r["revision"].as_u64().unwrap_or_default(),
            document: r["signed_document"].as_str().unwrap_or_default().into(),
            signature: r["signature"].as_str().unwrap_or_default().into(),
        };
        let policy = signed.verify(Some(&key)).expect("signature verifies");
        assert_eq!(policy.name, "disk-guard");
        let mut tampered = signed.clone();
        tampered.document = tampered.document.replace("vacuum", "vacuum2");
        assert!(tampered.verify(Some(&key)).is_err());
    }
    assert_eq!(
        revisions[0]["document"]["rules"][0]["action"]["max_size_mb"],
        500
    );
    assert_eq!(
        revisions[1]["document"]["rules"][0]["action"]["max_size_mb"],
        400
    );
    assert_eq!(revisions[0]["document"]["rules"][0]["mode"], "dry_run");

    let (status, body) = sb.get(&admin, "/policies").await;
    assert_eq!(status, 200);
    assert_eq!(body["policies"][0]["latest_revision"], 2, "{body}");
    let (status, _) = sb.get(&admin, "/policies/nope").await;
    assert_eq!(status, 404);
    let (status, _) = sb.post(&admin, "/policies/nope/rollout", &json!({})).await;
    assert_eq!(status, 404);
    let (status, body) = sb
        .post(
            &admin,
            "/policies/disk-guard/rollout",
            &json!({"canary_percent": 150}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("canary_percent"));

    let (_, body) = sb.get(&admin, "/audit?action=policy.create").await;
    assert_eq!(body["count"], 2, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn policies_are_validated_signed_and_immutable_sqlite() {
    policies_are_validated_signed_and_immutable(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn policies_are_validated_signed_and_immutable_postgres() {
    policies_are_validated_signed_and_immutable(Db::Postgres).await;
}

async fn status_of(sb: &Sandbox, token: &str, host: &str) -> Option<Value> {
    let (_, body) = sb.get(token, "/policies/disk-guard/status").await;
    body["hosts"]
        .as_array()?
        .iter()
        .find(|h| h["host_id"] == host)
        .cloned()
}

#[tokio::test(flavor = "multi_thread")]
async fn rollout_goes_canary_first_then_everyone_and_reaches_late_agents() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let admin = sb.admin_token().await;
    let _a = sb.start_agent("agent-a");
    let _b = sb.start_agent("agent-b");
    connected(&sb, &admin, "agent-a").await;
    connected(&sb, &admin, "agent-b").await;
    // A third host is known but offline during the rollout.
    let mut c = sb.start_agent("agent-c");
    connected(&sb, &admin, "agent-c").await;
    c.terminate();

    let (status, _) = sb.post_text(&admin, "/policies", GUARD).await;
    assert_eq!(status, 201);
    let (status, body) = sb
        .post(
            &admin,
            "/policies/disk-guard/rollout",
            &json!({"canary_percent": 34, "canary_secs": 4}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let canary: Vec<String> = body["rollout"]["canary_hosts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| h.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(canary.len(), 2, "34 % of 3 hosts rounds up to 2: {body}");
    assert_eq!(body["rollout"]["state"], "canary");
    // A second rollout during the canary is refused.
    let (status, _) = sb
        .post(&admin, "/policies/disk-guard/rollout", &json!({}))
        .await;
    assert_eq!(status, 409);

    // Canary hosts that are online apply revision 1; the others do not.
    let online_canary: Vec<&String> = canary.iter().filter(|h| *h != "agent-c").collect();
    for h in &online_canary {
        sb.wait_policy_applied(&admin, "disk-guard", h, 1).await;
    }
    for h in ["agent-a", "agent-b"] {
        if !canary.iter().any(|c| c == h) {
            let s = status_of(&sb, &admin, h).await;
            assert!(
                s.as_ref().is_none_or(|s| s["applied_revision"] == 0),
                "{h} is not a canary: {s:?}"
            );
        }
    }

    // After the canary time, everyone gets it.
    wait_for("the rollout to complete", || async {
        let (_, body) = sb.get(&admin, "/policies/disk-guard").await;
        (body["rollouts"][0]["state"] == "complete").then_some(())
    })
    .await;
    for h in ["agent-a", "agent-b"] {
        sb.wait_policy_applied(&admin, "disk-guard", h, 1).await;
    }

    // The agent that was offline gets the revision meant for it when it
    // comes back; agents keep policies across restarts.
    let _c = sb.start_agent("agent-c");
    sb.wait_policy_applied(&admin, "disk-guard", "agent-c", 1)
        .await;
    let (_, body) = sb.get(&admin, "/policies/disk-guard/status").await;
    let hosts = body["hosts"].as_array().cloned().unwrap_or_default();
    assert_eq!(hosts.len(), 3, "{body}");
    assert!(hosts.iter().all(|h| h["in_sync"] == true), "{body}");
    let (_, body) = sb.get(&admin, "/audit?action=policy.rollout").await;
    let results: Vec<&str> = body["entries"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["result"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        results.contains(&"canary") && results.contains(&"complete"),
        "{body}"
    );

    // Withdrawal: a signed empty revision reaches every host, which drops
    // the policy; withdrawing twice is a conflict.
    let delete = || {
        reqwest::Client::new()
            .delete(format!("{}/policies/disk-guard", sb.base_url()))
            .bearer_auth(&admin)
            .send()
    };
    let r = delete().await.expect("delete");
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["policy"]["revision"], 2, "{body}");
    assert_eq!(body["policy"]["withdrawn"], true, "{body}");
    for h in ["agent-a", "agent-b", "agent-c"] {
        sb.wait_policy_applied(&admin, "disk-guard", h, 2).await;
    }
    assert_eq!(delete().await.expect("delete").status().as_u16(), 409);
    let (_, body) = sb.get(&admin, "/policies").await;
    assert_eq!(body["policies"][0]["latest_revision"], 2, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_refusing_the_signature_stops_the_rollout_and_is_audited() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let admin = sb.admin_token().await;
    // agent-bad trusts another key: to it, every fleet policy is forged.
    let other = sb.path().join("other-policy.pub");
    std::fs::write(&other, format!("{}\n", "ab".repeat(32))).expect("write key");
    // Appended to the agent's [server] section.
    let _bad = sb.start_agent_with(
        "agent-bad",
        &format!("policy_key = \"{}\"\n", other.display()),
    );
    connected(&sb, &admin, "agent-bad").await;

    roll_out_guard(
        &sb,
        &admin,
        json!({"canary_percent": 100, "canary_secs": 600}),
    )
    .await;

    let rollout = stopped_rollout(&sb, &admin, "the rollout to stop by itself").await;
    let reason = rollout["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("agent-bad") && reason.contains("bad_signature"),
        "{rollout}"
    );
    let status = status_of(&sb, &admin, "agent-bad")
        .await
        .expect("status row");
    assert_eq!(status["applied_revision"], 0, "{status}");
    assert!(status["error"]
        .as_str()
        .unwrap_or_default()
        .starts_with("bad_signature"));
    let (_, body) = sb.get(&admin, "/audit?action=policy.refused").await;
    assert_eq!(body["entries"][0]["host_id"], "agent-bad", "{body}");
    let (_, body) = sb.get(&admin, "/audit?action=policy.rollout").await;
    assert!(
        body["entries"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["result"] == "stopped")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jump_in_canary_alarms_stops_the_rollout() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let admin = sb.admin_token().await;
    let _a = sb.start_agent("agent-a");
    connected(&sb, &admin, "agent-a").await;
    let body = roll_out_guard(
        &sb,
        &admin,
        json!({"canary_percent": 100, "canary_secs": 600, "max_new_anomalies": 1}),
    )
    .await;
    assert_eq!(body["rollout"]["baseline_anomalies"], 0, "{body}");
    sb.wait_policy_applied(&admin, "disk-guard", "agent-a", 1)
        .await;

    // The canary host opens two anomaly events after the rollout started
    // (written as the ingest path stores them); one more than allowed.
    let now = sco_control_plane::fleet::now_ms();
    let db = sb.db().await;
    for (i, at) in [now + 1, now + 2].into_iter().enumerate() {
        sqlx::query(
            "INSERT INTO anomalies (id, host_id, run_started_ms, status, started_ms, updated_ms, ended_ms,
                score, peak_score, severity, severity_rank, top_metric, contributors, context, model, close_reason)
             VALUES ($1, 'agent-a', 1, 'open', $2, $2, NULL, 0.9, 0.9, 'high', 3, 'cpu.total_pct',
                '[]', '{}', 'test@1', '')",
        )
        .bind(format!("agent-a:{}", 1_000_000 + i))
        .bind(at)
        .execute(&db)
        .await
        .expect("insert anomaly");
    }
    db.close().await;

    let rollout = stopped_rollout(&sb, &admin, "the rollout to stop on the alarm jump").await;
    assert!(
        rollout["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("alarm jump: canary hosts opened 2"),
        "{rollout}"
    );
    // With no earlier revision to return to, the canary host drops the policy.
    sb.wait_policy_applied(&admin, "disk-guard", "agent-a", 0)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn policies_apply_offline_and_what_they_did_arrives_later() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let mut cp = sb.start_control_plane();
    let admin = sb.admin_token().await;
    let mut agent = sb.start_agent("agent-1");
    connected(&sb, &admin, "agent-1").await;
    // A dry-run rule whose condition always holds: it fires once per
    // episode, and a restarted agent starts a new episode.
    let policy = r#"
name: always
rules:
  - name: plan
    when: { state: ["mem.used_pct >= 0"] }
    action: { type: journal_vacuum, max_size_mb: 300 }
"#;
    let revision = sb.publish_policy(&admin, policy).await;
    sb.wait_policy_applied(&admin, "always", "agent-1", revision)
        .await;
    let plans = |n: usize| {
        let (sb, admin) = (&sb, &admin);
        async move {
            wait_for(&format!("{n} dry-run plans"), || async {
                let a: Vec<Value> = sb
                    .actions(admin, "agent-1")
                    .await
                    .into_iter()
                    .filter(|a| a["rule"] == "always/plan" && a["state"] == "dry_run")
                    .collect();
                (a.len() >= n).then_some(a)
            })
            .await
        }
    };
    let first = plans(1).await;
    assert_eq!(
        first[0]["report"]["argv"][1], "--vacuum-size=300M",
        "{}",
        first[0]
    );

    // The control plane goes away; the agent restarts without it, loads the
    // policy from its own store and acts on it (a dry run here).
    cp.terminate();
    agent.terminate();
    let agent = sb.start_agent("agent-1");
    sco_tests::wait_until("the agent restarted with the policy in force", || {
        agent.log_contains("policy in force")
    });
    sco_tests::wait_until("the rule fired offline", || {
        agent.log_contains("policy rule fired")
    });
    // Back online: what it did offline arrives through the outbox.
    let _cp = sb.start_control_plane();
    let all = plans(2).await;
    assert_eq!(all.len(), 2, "{all:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_nobody_applied_does_not_go_to_everyone() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let admin = sb.admin_token().await;
    // The only host is known but offline: no canary can report.
    let mut a = sb.start_agent("agent-a");
    connected(&sb, &admin, "agent-a").await;
    a.terminate();
    roll_out_guard(
        &sb,
        &admin,
        json!({"canary_percent": 100, "canary_secs": 2}),
    )
    .await;
    let rollout = stopped_rollout(&sb, &admin, "the rollout to stop").await;
    assert!(
        rollout["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("no canary host applied revision 1"),
        "{rollout}"
    );
    let (status, body) = sb
        .post(
            &admin,
            "/policies/disk-guard/rollout",
            &json!({"canary_percent": 50, "canary_secs": 0}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
}

/// Old files in a directory the agent may clean.
fn old_files(dir: &std::path::Path, names: &[&str]) {
    std::fs::create_dir_all(dir).expect("mkdir");
    for n in names {
        let p = dir.join(n);
        std::fs::write(&p, vec![b'x'; 4096]).expect("write");
        let status = std::process::Command::new("touch")
            .args(["-d", "10 days ago"])
            .arg(&p)
            .status()
            .expect("touch");
        assert!(status.success());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn approval_flow_approves_runs_verifies_rejects_and_expires() {
    let Some(mut sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    sb.control_plane_extra = "[remediation]\nproposal_ttl_secs = 6\ntick_ms = 200\n".into();
    let _cp = sb.start_control_plane();
    let admin = sb.admin_token().await;
    let root = sb.path().join("cleanable");
    old_files(&root.join("a"), &["1.log", "2.log"]);
    old_files(&root.join("b"), &["1.log"]);
    old_files(&root.join("c"), &["1.log"]);
    let extra = format!("[remediate]\nclean_roots = [\"{}\"]\n", root.display());
    let _agent = sb.start_agent_with("agent-1", &extra);
    connected(&sb, &admin, "agent-1").await;

    // Three approve rules whose condition always holds; one will be
    // approved, one rejected and one left to expire.
    let rule = |name: &str, dir: &str| {
        format!(
            "  - name: {name}\n    when: {{ state: [\"mem.used_pct >= 0\"] }}\n    \
             action: {{ type: clean_paths, root: \"{}\", patterns: [\"*.log\"], older_than_days: 1, max_bytes: 1000000 }}\n    \
             mode: approve\n    verify: {{ metric: mem.used_pct, below: 101, within_secs: 10 }}\n",
            root.join(dir).display()
        )
    };
    let policy = format!(
        "name: cleanup\nrules:\n{}{}{}",
        rule("clean-a", "a"),
        rule("clean-b", "b"),
        rule("clean-c", "c")
    );
    let revision = sb.publish_policy(&admin, &policy).await;
    sb.wait_policy_applied(&admin, "cleanup", "agent-1", revision)
        .await;

    let proposals = wait_for("three proposals", || async {
        let a = sb.actions(&admin, "agent-1").await;
        let p: Vec<Value> = a.into_iter().filter(|a| a["state"] == "proposed").collect();
        (p.len() == 3).then_some(p)
    })
    .await;
    let id_of = |rule: &str| {
        proposals
            .iter()
            .find(|p| p["rule"] == format!("cleanup/{rule}"))
            .and_then(|p| p["id"].as_str())
            .map(String::from)
            .expect("proposal of rule")
    };
    let (a, b, c) = (id_of("clean-a"), id_of("clean-b"), id_of("clean-c"));
    // Nothing ran yet.
    assert!(root.join("a/1.log").exists());
    let p = proposals.iter().find(|p| p["id"] == a.as_str()).expect("a");
    assert_eq!(p["approval"], "approve");
    assert!(p["evidence"]["state"][0]["condition"]
        .as_str()
        .is_some_and(|c| c.contains("mem.used_pct")));

    // A viewer cannot approve.
    let (status, _) = sb
        .post(
            &admin,
            "/auth/register",
            &json!({"username": "vera", "password": "viewer-password-1", "role": "viewer"}),
        )
        .await;
    assert_eq!(status, 201);
    let viewer = sb.login("vera", "viewer-password-1").await;
    let (status, _) = sb
        .post(
            &viewer,
            &format!("/remediation/actions/{a}/approve"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 403);

    let (status, body) = sb
        .post(
            &admin,
            &format!("/remediation/actions/{a}/approve"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = sb
        .post(
            &admin,
            &format!("/remediation/actions/{b}/reject"),
            &json!({"reason": "b is cleaned by hand"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["action"]["state"], "rejected");
    assert_eq!(body["action"]["reason"], "b is cleaned by hand", "{body}");
    // Deciding twice is a conflict.
    let (status, _) = sb
        .post(
            &admin,
            &format!("/remediation/actions/{b}/approve"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 409);

    // The approved one runs, deletes the old files in its root, verifies.
    let done = wait_for("the approved action to finish", || async {
        sb.actions(&admin, "agent-1").await.into_iter().find(|x| {
            x["id"] == a.as_str()
                && ["succeeded", "failed", "refused"]
                    .contains(&x["state"].as_str().unwrap_or_default())
        })
    })
    .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["decided_by"], "admin");
    assert_eq!(
        done["report"]["verification"]["state"]["state"], "passed",
        "{done}"
    );
    assert!(!root.join("a/1.log").exists() && !root.join("a/2.log").exists());
    assert!(
        root.join("b/1.log").exists(),
        "the rejected one did not run"
    );

    // Nobody approves c: it expires, and can no longer be approved.
    let expired = wait_for("the last proposal to expire", || async {
        sb.actions(&admin, "agent-1")
            .await
            .into_iter()
            .find(|x| x["id"] == c.as_str() && x["state"] == "expired")
    })
    .await;
    assert!(expired["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("approved"));
    let (status, _) = sb
        .post(
            &admin,
            &format!("/remediation/actions/{c}/approve"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 409);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(root.join("c/1.log").exists(), "the expired one did not run");

    let (_, body) = sb.get(&admin, "/audit?host=agent-1").await;
    let actions: Vec<&str> = body["entries"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["action"].as_str()).collect())
        .unwrap_or_default();
    for expected in [
        "remediation.proposal",
        "remediation.approve",
        "remediation.reject",
        "remediation.lease",
        "remediation.report",
        "remediation.expired",
        "policy.applied",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing: {actions:?}"
        );
    }
    let rejection = body["entries"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["action"] == "remediation.reject"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        rejection["detail"]["reason"], "b is cleaned by hand",
        "{rejection}"
    );
}

/// The audit entry `action` (e.g. `remediation.report`) on request `id`.
async fn audited(sb: &Sandbox, token: &str, action: &str, id: &str) -> Value {
    wait_for(&format!("the audited {action} on {id}"), || async {
        let (_, body) = sb
            .get(token, &format!("/audit?action={action}&limit=200"))
            .await;
        body["entries"]
            .as_array()?
            .iter()
            .find(|e| e["detail"]["request"] == id)
            .cloned()
    })
    .await
}

async fn decide(sb: &Sandbox, token: &str, id: &str) {
    let (status, body) = sb
        .post(
            token,
            &format!("/remediation/actions/{id}/approve"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Fleet-wide concurrency, cooldown and host budget, end to end: with
/// `max_concurrent: 1` two approved hosts never act at once (the second
/// waits for the lease and runs once the first has reported); a second
/// approval of the rule within its cooldown, and a manual request beyond
/// the host's hourly budget, are refused by the agent with their reasons,
/// and every refusal is audited.
#[tokio::test(flavor = "multi_thread")]
async fn fleet_lease_cooldown_and_budget_hold_end_to_end() {
    let Some(mut sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    sb.control_plane_extra = "[remediation]\ntick_ms = 200\n".into();
    let _cp = sb.start_control_plane();
    let admin = sb.admin_token().await;
    let root = sb.path().join("shared");
    old_files(&root, &["1.log", "2.log"]);
    let extra = format!(
        "[remediate]\nclean_roots = [\"{}\"]\nhost_max_per_hour = 2\n",
        root.display()
    );
    let _a1 = sb.start_agent_with("agent-1", &extra);
    let _a2 = sb.start_agent_with("agent-2", &extra);
    connected(&sb, &admin, "agent-1").await;
    connected(&sb, &admin, "agent-2").await;

    // Verification that cannot pass: each run holds its lease for 4 s.
    let policy = |verify_below: u32| {
        format!(
            "name: guard\nrules:\n  - name: tidy\n    when: {{ state: [\"mem.used_pct >= 0\"] }}\n    \
             action: {{ type: clean_paths, root: \"{}\", patterns: [\"*.log\"], older_than_days: 1, max_bytes: 1000000 }}\n    \
             mode: approve\n    cooldown_secs: 3600\n    max_concurrent: 1\n    \
             verify: {{ metric: mem.used_pct, below: {verify_below}, within_secs: 4 }}\n",
            root.display()
        )
    };
    sb.publish_policy(&admin, &policy(0)).await;
    let proposed = |host: &'static str| {
        let sb = &sb;
        let admin = &admin;
        async move {
            wait_for(&format!("a proposal from {host}"), || async {
                sb.actions(admin, host)
                    .await
                    .into_iter()
                    .find(|a| a["state"] == "proposed")
                    .and_then(|a| a["id"].as_str().map(String::from))
            })
            .await
        }
    };
    let (p1, p2) = (proposed("agent-1").await, proposed("agent-2").await);
    decide(&sb, &admin, &p1).await;
    decide(&sb, &admin, &p2).await;

    // Until both are done, at most one runs, and the other says why it waits.
    let saw_waiting = std::cell::Cell::new(false);
    let finished = wait_for("both approved actions to finish", || async {
        let mut states = Vec::new();
        for (host, id) in [("agent-1", &p1), ("agent-2", &p2)] {
            let a = sb.actions(&admin, host).await;
            let a = a.into_iter().find(|a| a["id"] == id.as_str())?;
            if a["state"] == "approved"
                && a["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("waiting for a fleet lease"))
            {
                saw_waiting.set(true);
            }
            states.push(a);
        }
        let running = states.iter().filter(|a| a["state"] == "running").count();
        assert!(running <= 1, "two hosts act at once: {states:?}");
        states
            .iter()
            .all(|a| {
                ["succeeded", "failed", "refused"].contains(&a["state"].as_str().unwrap_or(""))
            })
            .then_some(states)
    })
    .await;
    assert!(saw_waiting.get(), "the second host waited for the lease");
    for a in &finished {
        assert_eq!(a["state"], "failed", "{a}");
        assert!(
            a["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("verification_failed")),
            "{a}"
        );
        assert!(a["report"]["lease"].is_string(), "ran under a lease: {a}");
    }
    let (_, body) = sb
        .get(&admin, "/audit?action=remediation.lease&limit=50")
        .await;
    let granted = body["entries"]
        .as_array()
        .map_or(0, |e| e.iter().filter(|e| e["result"] == "granted").count());
    assert_eq!(granted, 2, "{body}");

    // A new revision fires the rule again within its cooldown: agent-1
    // refuses it before proposing anything.
    sb.publish_policy(&admin, &policy(101)).await;
    let again = wait_for("agent-1 to refuse the rule again", || async {
        sb.actions(&admin, "agent-1")
            .await
            .into_iter()
            .find(|a| a["state"] == "refused" && a["id"] != p1.as_str())
    })
    .await;
    assert!(
        again["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("cooldown_active")),
        "{again}"
    );
    let entry = audited(
        &sb,
        &admin,
        "remediation.proposal",
        again["id"].as_str().unwrap_or_default(),
    )
    .await;
    assert_eq!(entry["result"], "refused", "{entry}");

    // Host budget 2: agent-1 acted once; one more manual action runs, the
    // next is refused.
    let mut results = Vec::new();
    for _ in 0..2 {
        let (status, body) = sb
            .post(
                &admin,
                "/remediation/trigger",
                &json!({"host": "agent-1", "mode": "execute", "action": {"type": "clean_paths", "root": root, "patterns": ["*.tmp"], "older_than_days": 1, "max_bytes": 1000}}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        let id = body["action"]["id"].as_str().expect("id").to_string();
        results.push(audited(&sb, &admin, "remediation.report", &id).await);
    }
    assert_eq!(results[0]["result"], "succeeded", "{}", results[0]);
    assert_eq!(results[1]["result"], "refused", "{}", results[1]);
    assert!(
        results[1]["detail"]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("budget_exhausted")),
        "{}",
        results[1]
    );
}

/// A host whose labels stop matching a policy's target loses the policy
/// (withdrawn on that host only) and the status says it is in sync; the
/// other host keeps it.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_whose_labels_stop_matching_loses_the_policy() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let admin = sb.admin_token().await;
    let mut moved = sb.start_agent("agent-m");
    let _stays = sb.start_agent("agent-s");
    connected(&sb, &admin, "agent-m").await;
    connected(&sb, &admin, "agent-s").await;
    let revision = sb.publish_policy(&admin, GUARD).await;
    for host in ["agent-m", "agent-s"] {
        sb.wait_policy_applied(&admin, "disk-guard", host, revision)
            .await;
    }

    // agent-m is relabelled env=prod and comes back.
    moved.terminate();
    let config = sb.path().join("agent-agent-m/agent.toml");
    let text = std::fs::read_to_string(&config).expect("agent config");
    assert!(text.contains("env = \"test\""), "{text}");
    std::fs::write(&config, text.replace("env = \"test\"", "env = \"prod\"")).expect("relabel");
    let moved = sb.start_agent("agent-m");
    let status = wait_for("agent-m to drop disk-guard", || async {
        let (_, body) = sb.get(&admin, "/policies/disk-guard/status").await;
        let hosts = body["hosts"].as_array()?.clone();
        let m = hosts.iter().find(|h| h["host_id"] == "agent-m")?;
        (m["applied_revision"] == 0 && m["reported_revision"] == 0).then_some(hosts)
    })
    .await;
    let m = status
        .iter()
        .find(|h| h["host_id"] == "agent-m")
        .expect("m");
    assert_eq!(m["desired_revision"], 0, "{m}");
    assert_eq!(m["in_sync"], true, "{m}");
    let s = status
        .iter()
        .find(|h| h["host_id"] == "agent-s")
        .expect("s");
    assert_eq!(s["applied_revision"], revision, "{s}");
    assert!(moved.log_contains("policy applied policy=disk-guard revision=0"));
    let (_, body) = sb
        .get(&admin, "/audit?action=policy.unassign&host=agent-m")
        .await;
    let entry = &body["entries"][0];
    assert_eq!(entry["detail"]["policy"], "disk-guard", "{body}");
    assert_eq!(entry["detail"]["running_revision"], revision, "{body}");
    let (_, body) = sb
        .get(&admin, "/audit?action=policy.unassign&host=agent-s")
        .await;
    assert_eq!(body["entries"].as_array().map(Vec::len), Some(0), "{body}");
}
