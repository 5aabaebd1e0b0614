//! Learning which fix works: a rule lists two candidate actions, the first never verifies
//! and the second does; the control plane's choice moves to the second within a bounded
//! number of incidents and stays there, across a control-plane restart, until an operator
//! resets what was learnt. A dry-run rule with the same candidates records what it would
//! have chosen and learns nothing.

use std::collections::HashSet;

use sco_tests::{wait_for, Db, Sandbox};
use serde_json::Value;

const RULE: &str = "learn/fix";
const WATCH: &str = "learn/watch";

/// The policy: revision `incident` (a new revision starts a new episode, so each one is an
/// incident of its own). `journal_vacuum` fails on this agent (`journalctl` is
/// `/bin/false`), so its verification never holds; `restart_service` works and the
/// verification (memory below 101 %) holds at once.
fn policy(incident: usize) -> String {
    let rule = |name: &str, mode: &str| {
        format!(
            "  - name: {name}\n    when: {{ state: [\"mem.used_pct >= 0\"] }}\n    candidates:\n      \
             - {{ type: journal_vacuum, max_size_mb: 100 }}\n      \
             - {{ type: restart_service, unit: app.service }}\n    mode: {mode}\n    \
             cooldown_secs: 0\n    max_per_hour: 60\n    \
             verify: {{ metric: mem.used_pct, below: 101, within_secs: 5 }}\n"
        )
    };
    format!(
        "name: learn\ndescription: incident {incident}\nrules:\n{}{}",
        rule("fix", "auto"),
        rule("watch", "dry_run")
    )
}

/// Publishes the next revision and waits for the new requests of both rules to finish;
/// returns (the executed one, the dry run).
async fn incident(
    sb: &Sandbox,
    admin: &str,
    n: usize,
    seen: &mut HashSet<String>,
) -> (Value, Value) {
    sb.publish_policy(admin, &policy(n)).await;
    let done = |rule: &'static str, states: &'static [&'static str]| {
        let seen = &*seen;
        async move {
            wait_for(&format!("incident {n} of {rule} to finish"), || async {
                sb.actions(admin, "agent-1").await.into_iter().find(|a| {
                    a["rule"] == rule
                        && !seen.contains(a["id"].as_str().unwrap_or_default())
                        && states.contains(&a["state"].as_str().unwrap_or_default())
                })
            })
            .await
        }
    };
    let fix = done(RULE, &["succeeded", "failed", "refused"]).await;
    let watch = done(WATCH, &["dry_run", "refused"]).await;
    for a in [&fix, &watch] {
        seen.insert(a["id"].as_str().expect("id").to_string());
    }
    (fix, watch)
}

fn kind(a: &Value) -> &str {
    a["action"]["type"].as_str().unwrap_or_default()
}

async fn preferences(sb: &Sandbox, token: &str, query: &str) -> Value {
    let (status, body) = sb
        .get(token, &format!("/remediation/preferences{query}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn the_choice_moves_to_the_candidate_that_verifies_and_stays_sqlite() {
    the_choice_moves_to_the_candidate_that_verifies_and_stays(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_choice_moves_to_the_candidate_that_verifies_and_stays_postgres() {
    the_choice_moves_to_the_candidate_that_verifies_and_stays(Db::Postgres).await;
}

async fn the_choice_moves_to_the_candidate_that_verifies_and_stays(db: Db) {
    let Some(mut sb) = Sandbox::new(db).await else {
        return;
    };
    sb.control_plane_extra = "[remediation]\ntick_ms = 200\n".into();
    let mut cp = sb.start_control_plane();
    // a breaker that stays closed through the first candidate's failures: the choice, not
    // the breaker, is what moves away from it
    let _agent = sb.start_agent_with(
        "agent-1",
        "[remediate]\njournalctl = \"/bin/false\"\nsystemctl = \"/bin/true\"\nbreaker_failures = 10\n",
    );
    let admin = sb.admin_token().await;
    let viewer = sb.add_user(&admin, "vera", "viewer").await;
    let operator = sb.add_user(&admin, "otto", "operator").await;
    wait_for("the agent to connect", || async {
        let (_, body) = sb.get(&admin, "/hosts/agent-1").await;
        (body["host"]["connected"] == true).then_some(())
    })
    .await;

    let mut seen = HashSet::new();
    let mut chosen = Vec::new();
    for n in 1..=6 {
        let (fix, watch) = incident(&sb, &admin, n, &mut seen).await;
        let choice = &fix["evidence"]["choice"];
        assert_eq!(choice["context"], "memory/state", "{fix}");
        assert_eq!(choice["of"], 2, "{fix}");
        assert_eq!(choice["learns"], true, "{fix}");
        match kind(&fix) {
            "journal_vacuum" => {
                assert_eq!(choice["candidate"], 0, "{fix}");
                assert_eq!(fix["state"], "failed", "{fix}");
            }
            "restart_service" => {
                assert_eq!(choice["candidate"], 1, "{fix}");
                assert_eq!(fix["state"], "succeeded", "{fix}");
                assert!(fix["report"]["lease"].is_string(), "under a lease: {fix}");
            }
            other => panic!("incident {n} ran {other:?}: {fix}"),
        }
        // the dry run records what it would choose, from nothing learnt: the first
        assert_eq!(watch["state"], "dry_run", "{watch}");
        assert_eq!(watch["evidence"]["choice"]["learns"], false, "{watch}");
        assert_eq!(kind(&watch), "journal_vacuum", "{watch}");
        chosen.push(kind(&fix).to_string());
    }
    // The written order first; the second candidate by the 4th incident at the latest
    // (exactly: the first twice, its second failure brings it below the second's prior),
    // and from then on always.
    assert_eq!(chosen[0], "journal_vacuum", "{chosen:?}");
    let switched = chosen
        .iter()
        .position(|k| k == "restart_service")
        .expect("the second candidate was chosen");
    assert!(
        switched <= 3,
        "switched at incident {}: {chosen:?}",
        switched + 1
    );
    assert!(
        chosen[switched..].iter().all(|k| k == "restart_service"),
        "{chosen:?}"
    );
    let failures = switched as i64;
    let successes = (chosen.len() - switched) as i64;

    // What was learnt, over REST (a viewer may read it).
    let check = |body: &Value, successes: i64| {
        let all = body["preferences"].as_array().expect("preferences");
        let p = all
            .iter()
            .find(|p| p["rule"] == RULE)
            .unwrap_or_else(|| panic!("{RULE} in {body}"));
        assert_eq!(p["context"], "memory/state", "{p}");
        assert_eq!(p["preferred"]["type"], "restart_service", "{p}");
        let c = p["candidates"].as_array().expect("candidates");
        assert_eq!(c.len(), 2, "{p}");
        assert_eq!(c[0]["action"]["type"], "journal_vacuum", "{p}");
        assert_eq!(
            (&c[0]["successes"], &c[0]["failures"]),
            (&0.into(), &failures.into()),
            "{p}"
        );
        assert_eq!(
            (&c[1]["successes"], &c[1]["failures"]),
            (&successes.into(), &0.into()),
            "{p}"
        );
        assert!(c[1]["score"].as_f64() > c[0]["score"].as_f64(), "{p}");
    };
    let body = preferences(&sb, &viewer, &format!("?rule={RULE}")).await;
    assert_eq!(body["count"], 1, "{body}");
    check(&body, successes);
    // the dry run learnt nothing: its candidates are there, untried, in written order
    let body = preferences(&sb, &viewer, &format!("?rule={WATCH}")).await;
    let watch = &body["preferences"][0];
    assert_eq!(watch["preferred"]["type"], "journal_vacuum", "{body}");
    for c in watch["candidates"].as_array().expect("candidates") {
        assert_eq!(
            (&c["successes"], &c["failures"]),
            (&0.into(), &0.into()),
            "{body}"
        );
    }
    let (status, body) = sb.get(&viewer, "/remediation/preferences?rule=a%20b").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("rule: "),
        "{body}"
    );

    // A restart of the control plane forgets nothing: the next incident runs the second.
    assert!(cp.terminate().success());
    let _cp = sb.start_control_plane();
    check(
        &preferences(&sb, &viewer, &format!("?rule={RULE}")).await,
        successes,
    );
    wait_for("the agent to reconnect", || async {
        let (_, body) = sb.get(&admin, "/hosts/agent-1").await;
        (body["host"]["connected"] == true).then_some(())
    })
    .await;
    let (fix, _) = incident(&sb, &admin, 7, &mut seen).await;
    assert_eq!(kind(&fix), "restart_service", "{fix}");
    check(
        &preferences(&sb, &viewer, &format!("?rule={RULE}")).await,
        successes + 1,
    );

    // A reset is an operator's (a viewer is refused), audited; the written order is back.
    let path = format!("/remediation/preferences?rule={RULE}");
    let (status, _) = sb.send(reqwest::Method::DELETE, &viewer, &path, None).await;
    assert_eq!(status, 403);
    let (status, body) = sb
        .send(reqwest::Method::DELETE, &operator, &path, None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"], 2, "{body}");
    let body = preferences(&sb, &viewer, &format!("?rule={RULE}")).await;
    assert_eq!(body["count"], 0, "{body}");
    // the dry-run rule's preferences were not part of that reset
    assert_eq!(
        preferences(&sb, &viewer, &format!("?rule={WATCH}")).await["count"],
        1
    );
    let (_, body) = sb
        .get(&admin, "/audit?action=remediation.preferences_reset")
        .await;
    assert_eq!(body["count"], 1, "{body}");
    assert_eq!(body["entries"][0]["actor"], "otto", "{body}");
    assert_eq!(body["entries"][0]["detail"]["deleted"], 2, "{body}");
    let (fix, _) = incident(&sb, &admin, 8, &mut seen).await;
    assert_eq!(kind(&fix), "journal_vacuum", "{fix}");
}
