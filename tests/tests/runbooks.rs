//! The knowledge base over the real control plane, on SQLite and PostgreSQL: the starter
//! runbooks are there on first start; operators write (with revisions and a guard against
//! overwriting an edit made meanwhile), viewers read and cannot write; full-text search finds a
//! runbook by a word of its body and ranks title matches first; a deleted runbook keeps its
//! history; every write is audited; bad input is refused naming the field.

use reqwest::Method;
use sco_tests::{Db, Sandbox};
use serde_json::{json, Value};

fn ids(body: &Value) -> Vec<String> {
    body["runbooks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn knowledge_base(db: Db) {
    let Some(sb) = Sandbox::new(db).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let admin = sb.admin_token().await;
    let operator = sb.add_user(&admin, "otto", "operator").await;
    let viewer = sb.add_user(&admin, "vera", "viewer").await;

    // the starter set
    let (status, all) = sb.get(&viewer, "/runbooks").await;
    assert_eq!(status, 200, "{all}");
    for id in [
        "cpu-saturation",
        "memory-pressure",
        "disk-filling",
        "io-saturation",
        "network-errors",
    ] {
        assert!(ids(&all).iter().any(|i| i == id), "{id} missing: {all}");
    }

    // an operator writes; a viewer cannot
    let nginx = json!({
        "title": "Nginx workers spinning",
        "tags": ["nginx", "cpu"],
        "match": { "families": ["cpu"], "labels": { "role": "web" } },
        "body": "# Nginx workers spinning\n\nRestart the unit with `restart_service` on nginx.service.\n",
    });
    let (status, body) = sb.post(&viewer, "/runbooks", &nginx).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = sb.post(&operator, "/runbooks", &nginx).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["runbook"]["id"], "nginx-workers-spinning", "{body}");
    assert_eq!(body["runbook"]["revision"], 1);
    assert_eq!(body["runbook"]["updated_by"], "otto");
    let (status, body) = sb.post(&operator, "/runbooks", &nginx).await;
    assert_eq!(status, 409, "{body}");

    // refused input names the field, and stores nothing
    for (bad, field) in [
        (json!({"title": "", "body": "x"}), "title"),
        (json!({"title": "t", "body": ""}), "body"),
        (
            json!({"title": "t", "body": "x", "match": {"families": ["gpu"]}}),
            "match.families",
        ),
        (
            json!({"title": "t", "body": "x", "match": {"metrics": ["cpu.totl_pct"]}}),
            "match.metrics",
        ),
        (
            json!({"title": "t", "body": "x", "tags": ["Not A Tag"]}),
            "tags",
        ),
        (json!({"id": "../etc", "title": "t", "body": "x"}), "id"),
    ] {
        let (status, body) = sb.post(&operator, "/runbooks", &bad).await;
        assert_eq!(status, 400, "{bad} -> {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .starts_with(field),
            "{bad} -> {body}"
        );
    }
    let (status, body) = sb
        .post(
            &operator,
            "/runbooks",
            &json!({"title": "t", "body": "x", "colour": 1}),
        )
        .await;
    assert!(status == 400 || status == 422, "{status} {body}");

    // a new revision; a stale edit is refused
    let mut edit = nginx.clone();
    edit["body"] = json!("# Nginx workers spinning\n\nCheck the upstream first, then restart.\n");
    edit["base_revision"] = json!(1);
    let path = "/runbooks/nginx-workers-spinning";
    let (status, body) = sb.send(Method::PUT, &operator, path, Some(&edit)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["runbook"]["revision"], 2, "{body}");
    let (status, body) = sb.send(Method::PUT, &operator, path, Some(&edit)).await;
    assert_eq!(status, 409, "stale base_revision: {body}");
    let (status, body) = sb.send(Method::PUT, &viewer, path, Some(&edit)).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = sb
        .send(Method::PUT, &operator, "/runbooks/no-such", Some(&edit))
        .await;
    assert_eq!(status, 404, "{body}");

    // full-text search: a word of the new body finds it, the old body's word no longer does
    let (status, found) = sb.get(&viewer, "/runbooks?q=upstream").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(ids(&found), ["nginx-workers-spinning"], "{found}");
    let (_, found) = sb.get(&viewer, "/runbooks?q=unit%20nginx.service").await;
    assert!(
        ids(&found).is_empty(),
        "old revision still indexed: {found}"
    );
    // prefix words; a title match ranks before a body-only match
    let (_, found) = sb.get(&viewer, "/runbooks?q=filling").await;
    assert_eq!(
        ids(&found).first().map(String::as_str),
        Some("disk-filling"),
        "{found}"
    );
    let (_, found) = sb.get(&viewer, "/runbooks?q=journal").await;
    assert!(ids(&found).iter().any(|i| i == "disk-filling"), "{found}");
    // search syntax in the text is only words
    let (status, found) = sb
        .get(&viewer, "/runbooks?q=%22disk%22%20OR%20NEAR(*)%20%3A%3A")
        .await;
    assert_eq!(status, 200, "{found}");
    let (status, found) = sb.get(&viewer, "/runbooks?q=cpu&tag=nginx").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(ids(&found), ["nginx-workers-spinning"], "{found}");

    // delete keeps the history; the same id made again continues it
    let (status, body) = sb.send(Method::DELETE, &viewer, path, None).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = sb.send(Method::DELETE, &operator, path, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = sb.get(&viewer, path).await;
    assert_eq!(status, 404);
    let (_, found) = sb.get(&viewer, "/runbooks?q=upstream").await;
    assert!(
        ids(&found).is_empty(),
        "deleted runbook still found: {found}"
    );
    let (status, revs) = sb.get(&viewer, &format!("{path}/revisions")).await;
    assert_eq!(status, 200, "{revs}");
    let revisions: Vec<i64> = revs["revisions"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["revision"].as_i64()).collect())
        .unwrap_or_default();
    assert_eq!(revisions, [2, 1], "{revs}");
    let (status, body) = sb.post(&operator, "/runbooks", &nginx).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["runbook"]["revision"], 3, "{body}");

    // every write audited
    let (status, audit) = sb.get(&admin, "/audit?action=runbook.update").await;
    assert_eq!(status, 200, "{audit}");
    assert_eq!(audit["entries"][0]["actor"], "otto", "{audit}");
    let (_, audit) = sb.get(&admin, "/audit?action=runbook.delete").await;
    assert_eq!(audit["count"], 1, "{audit}");
}

#[tokio::test(flavor = "multi_thread")]
async fn knowledge_base_on_sqlite() {
    knowledge_base(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn knowledge_base_on_postgres() {
    knowledge_base(Db::Postgres).await;
}
