//! ChatOps end to end, over the real control plane and agent: a CPU burner runs; "what's
//! wrong with agent-1?" names the CPU anomaly and its top contributor; "kill the burner on
//! agent-1" answers with a confirmation id and changes nothing; a viewer can neither ask for
//! it nor confirm it; the operator who asked confirms, the agent stops the burner through
//! the usual request path, and the audit log carries the chat text.

use sco_tests::{
    burner_turn, wait_calibrated, wait_for, wait_until, Burners, Db, Sandbox, BURNER_DETECT,
};
use serde_json::{json, Value};

async fn ask(sb: &Sandbox, token: &str, text: &str) -> (u16, Value) {
    sb.post(token, "/query", &json!({ "text": text })).await
}

async fn chat_kills_a_burner_only_when_its_asker_confirms(db: Db) {
    let Some(mut sb) = Sandbox::new(db).await else {
        return;
    };
    let _turn = burner_turn().await;
    sb.control_plane_extra = "[remediation]\ntick_ms = 200\n".into();
    let _cp = sb.start_control_plane();
    // Password hashing before the agent starts: its warm-up sees a quiet host.
    let admin = sb.admin_token().await;
    let operator = sb.add_user(&admin, "otto", "operator").await;
    let viewer = sb.add_user(&admin, "vera", "viewer").await;
    let agent = sb.start_agent_with("agent-1", BURNER_DETECT);
    wait_calibrated(&agent);

    // A marker unique to this test run: the kill must reach these burners only.
    let marker = format!("burner-{}-{db:?}", std::process::id()).to_lowercase();
    let mut burners = Burners::start(&marker);
    let event = wait_for("an open CPU anomaly on agent-1", || async {
        let (_, body) = sb.get(&viewer, "/anomaly?host=agent-1&status=open").await;
        body["anomalies"]
            .as_array()?
            .iter()
            .find(|e| e["family"] == "cpu")
            .cloned()
    })
    .await;
    let id = event["id"].as_str().expect("event id").to_string();

    // What is wrong: the CPU event, its top contributor, with the data behind it.
    let (status, why) = ask(&sb, &viewer, "what's wrong with agent-1?").await;
    assert_eq!(status, 200, "{why}");
    eprintln!("what's wrong with agent-1? -> {}", why["answer"]);
    assert_eq!(why["intent"]["intent"], "explain", "{why}");
    let answer = why["answer"].as_str().unwrap_or_default();
    let top = why["data"]["contributors"][0]["metric"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!top.is_empty(), "{why}");
    assert!(
        top.starts_with("cpu.") || top.starts_with("psi.cpu") || top.starts_with("load."),
        "top contributor {top} is not a CPU metric: {why}"
    );
    assert!(answer.contains("cpu anomaly"), "{answer}");
    assert!(
        answer.contains(&format!("Top contributor: {top} = ")),
        "{answer}"
    );
    assert!(answer.contains("expected"), "{answer}");
    // the CPU runbook of the starter set, cited in the answer and on the event itself
    assert_eq!(why["data"]["runbooks"][0]["id"], "cpu-saturation", "{why}");
    assert!(
        answer.contains("Runbook: \"CPU saturation or a runaway process\""),
        "{answer}"
    );
    let (status, read) = sb.get(&viewer, &format!("/anomaly/{id}")).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["runbooks"][0]["id"], "cpu-saturation", "{read}");
    assert_eq!(why["data"]["link"], format!("/anomaly/{id}"), "{why}");
    let event_id = why["data"]["anomaly"]["id"].as_str().unwrap_or_default();
    let (_, full) = sb.get(&viewer, &format!("/anomaly/{event_id}")).await;
    assert_eq!(full["anomaly"]["family"], "cpu", "{full}");

    // A viewer may not ask for an action at all.
    let kill = format!("kill the {marker} on agent-1");
    let (status, refused) = ask(&sb, &viewer, &kill).await;
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("needs the operator role; you are viewer")),
        "{refused}"
    );

    // The operator's first message: a confirmation id and a dry run, nothing executed.
    let (status, first) = ask(&sb, &operator, &kill).await;
    assert_eq!(status, 200, "{first}");
    eprintln!("{kill} -> {}", first["answer"]);
    assert_eq!(first["intent"]["intent"], "trigger", "{first}");
    assert_eq!(first["intent"]["dry_run"], false, "{first}");
    assert_eq!(
        first["intent"]["action"]["pattern"],
        format!("*{marker}*"),
        "{first}"
    );
    let cf = first["confirmation"]["id"]
        .as_str()
        .expect("a confirmation id")
        .to_string();
    assert!(cf.starts_with("cf-"), "{first}");
    assert!(
        first["answer"]
            .as_str()
            .is_some_and(|a| a.contains(&format!("confirm {cf}"))),
        "{first}"
    );
    assert_eq!(first["data"]["dry_run"]["mode"], "dry_run", "{first}");
    let dry_id = first["data"]["dry_run"]["id"].as_str().unwrap_or_default();
    let dry = wait_for("the dry run's report", || async {
        sb.actions(&viewer, "agent-1")
            .await
            .into_iter()
            .find(|a| a["id"] == dry_id && a["state"] != "running" && a["state"] != "approved")
    })
    .await;
    assert_eq!(dry["state"], "dry_run", "{dry}");
    assert_eq!(
        burners.running(),
        burners.pids().len(),
        "the first message stopped nothing"
    );

    // The viewer cannot use the operator's confirmation; nothing runs and it stays valid.
    let confirm = format!("confirm {cf}");
    let (status, refused) = ask(&sb, &viewer, &confirm).await;
    assert_eq!(status, 403, "{refused}");
    let executed: Vec<Value> = sb
        .actions(&admin, "agent-1")
        .await
        .into_iter()
        .filter(|a| a["mode"] == "execute")
        .collect();
    assert!(executed.is_empty(), "{executed:?}");
    assert_eq!(burners.running(), burners.pids().len());

    // The operator confirms: a manual request through the usual path, stopped by the agent.
    let (status, done) = ask(&sb, &operator, &confirm).await;
    assert_eq!(status, 200, "{done}");
    eprintln!("{confirm} -> {}", done["answer"]);
    assert_eq!(done["intent"]["intent"], "confirm", "{done}");
    let request = done["data"]["action"]["id"]
        .as_str()
        .expect("the request id")
        .to_string();
    assert_eq!(done["data"]["action"]["mode"], "execute", "{done}");
    let finished = wait_for("the chat request's report", || async {
        sb.actions(&viewer, "agent-1").await.into_iter().find(|a| {
            a["id"] == request.as_str()
                && ["succeeded", "failed", "refused"].contains(&a["state"].as_str().unwrap_or(""))
        })
    })
    .await;
    assert_eq!(finished["state"], "succeeded", "{finished}");
    assert_eq!(finished["requested_by"], "otto", "{finished}");
    wait_until("the burners to be stopped", || burners.running() == 0);

    // Once only.
    let (status, again) = ask(&sb, &operator, &confirm).await;
    assert_eq!(status, 404, "{again}");

    // The audit log carries the chat text and the confirmation id.
    let (_, audit) = sb.get(&admin, "/audit?action=chat.trigger").await;
    let entries = audit["entries"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 1, "{audit}");
    let e = &entries[0];
    assert_eq!(e["actor"], "otto", "{e}");
    assert_eq!(e["host_id"], "agent-1", "{e}");
    assert_eq!(e["detail"]["text"], kill.as_str(), "{e}");
    assert_eq!(e["detail"]["confirm_text"], confirm.as_str(), "{e}");
    assert_eq!(e["detail"]["confirmation_id"], cf.as_str(), "{e}");
    assert_eq!(e["detail"]["request"], request.as_str(), "{e}");
    let (_, trig) = sb.get(&admin, "/audit?action=remediation.trigger").await;
    assert!(
        trig["entries"]
            .as_array()
            .is_some_and(|v| v.iter().any(|t| t["detail"]["request"] == request.as_str())),
        "{trig}"
    );

    // History: one's own, newest first, paged; an admin's: anyone's.
    let (status, mine) = sb.get(&operator, "/query?limit=2").await;
    assert_eq!(status, 200, "{mine}");
    let texts: Vec<&str> = mine["exchanges"]
        .as_array()
        .map(|v| v.iter().filter_map(|x| x["text"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(texts, [confirm.as_str(), confirm.as_str()], "{mine}");
    assert_eq!(mine["next_offset"], 2, "{mine}");
    let (_, page) = sb.get(&operator, "/query?limit=2&offset=2").await;
    assert_eq!(page["exchanges"][0]["text"], kill.as_str(), "{page}");
    assert_eq!(
        page["exchanges"][0]["outcome"], "awaiting_confirmation",
        "{page}"
    );
    let (_, vera) = sb.get(&viewer, "/query").await;
    let outcomes: Vec<&str> = vera["exchanges"]
        .as_array()
        .map(|v| v.iter().filter_map(|x| x["outcome"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(outcomes, ["refused", "refused", "answered"], "{vera}");
    let (status, _) = sb.get(&viewer, "/query?user=otto").await;
    assert_eq!(status, 403);
    let (status, otto) = sb.get(&admin, "/query?user=otto&limit=200").await;
    assert_eq!(status, 200, "{otto}");
    assert_eq!(otto["count"], 3, "{otto}");
    let (status, bad) = sb.get(&admin, "/query?limit=0").await;
    assert_eq!(status, 400, "{bad}");
    let (status, bad) = ask(&sb, &viewer, "   ").await;
    assert_eq!(status, 400, "{bad}");
}

#[tokio::test(flavor = "multi_thread")]
async fn chatops_on_sqlite() {
    chat_kills_a_burner_only_when_its_asker_confirms(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chatops_on_postgres() {
    chat_kills_a_burner_only_when_its_asker_confirms(Db::Postgres).await;
}

const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// `application/x-www-form-urlencoded`, as Slack sends it.
fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn command(user_id: &str, text: &str) -> String {
    form(&[
        ("token", "unused"),
        ("team_id", "T0001"),
        ("channel_id", "C2147483705"),
        ("user_id", user_id),
        ("user_name", "someone"),
        ("command", "/sco"),
        ("text", text),
        ("trigger_id", "13345224609.738474920.8088930838d88f008e0"),
    ])
}

/// Posts `body` to a Slack endpoint with the given timestamp and signature headers.
async fn slack(
    sb: &Sandbox,
    path: &str,
    body: &str,
    timestamp: Option<String>,
    signature: Option<String>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", sb.base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string());
    if let Some(ts) = timestamp {
        req = req.header("x-slack-request-timestamp", ts);
    }
    if let Some(sig) = signature {
        req = req.header("x-slack-signature", sig);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Signed as Slack would, `age_secs` ago, with `secret`.
fn signed(secret: &str, body: &str, age_secs: i64) -> (Option<String>, Option<String>) {
    let ts = (now_secs() - age_secs).to_string();
    let sig = sco_chat::slack::sign(secret.as_bytes(), &ts, body.as_bytes());
    (Some(ts), Some(sig))
}

fn message_text(reply: &Value) -> String {
    let mut out = reply["text"].as_str().unwrap_or_default().to_string();
    for b in reply["blocks"].as_array().into_iter().flatten() {
        for e in b["elements"].as_array().into_iter().flatten() {
            out.push('\n');
            out.push_str(e["text"].as_str().unwrap_or_default());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_requests_are_verified_and_mapped_to_our_users() {
    let Some(mut sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    sb.control_plane_extra = format!(
        "[slack]\nsigning_secret = \"{SLACK_SECRET}\"\n[slack.users]\nU0OPERATOR = \"otto\"\nU0VIEWER = \"vera\"\nU0GHOST = \"nobody-here\"\n"
    );
    let _cp = sb.start_control_plane();
    let admin = sb.admin_token().await;
    sb.add_user(&admin, "otto", "operator").await;
    sb.add_user(&admin, "vera", "viewer").await;

    // Signed by Slack: answered as the mapped user, in Block Kit.
    let body = command("U0VIEWER", "fleet status");
    let (ts, sig) = signed(SLACK_SECRET, &body, 0);
    let (status, reply) = slack(&sb, "/slack/commands", &body, ts, sig).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["response_type"], "ephemeral", "{reply}");
    assert!(reply["blocks"].is_array(), "{reply}");
    let text = message_text(&reply);
    assert!(text.starts_with("0 hosts"), "{text}");
    assert!(text.contains("asked as vera (viewer)"), "{text}");

    // Forged: another secret, a body that is not the one signed, a replay, no headers.
    let forged = signed("not-the-real-secret-at-all", &body, 0);
    let (status, err) = slack(&sb, "/slack/commands", &body, forged.0, forged.1).await;
    assert_eq!(status, 401, "{err}");
    assert!(
        err["error"]
            .as_str()
            .is_some_and(|e| e.contains("does not match")),
        "{err}"
    );
    let (ts, sig) = signed(SLACK_SECRET, &body, 0);
    let tampered = command("U0OPERATOR", "fleet status");
    let (status, err) = slack(&sb, "/slack/commands", &tampered, ts, sig).await;
    assert_eq!(status, 401, "{err}");
    let (ts, sig) = signed(SLACK_SECRET, &body, 600);
    let (status, err) = slack(&sb, "/slack/commands", &body, ts, sig).await;
    assert_eq!(status, 401, "{err}");
    assert!(
        err["error"].as_str().is_some_and(|e| e.contains("replay")),
        "{err}"
    );
    let (status, err) = slack(&sb, "/slack/commands", &body, None, None).await;
    assert_eq!(status, 401, "{err}");
    let (status, err) = slack(&sb, "/slack/interactions", &body, None, None).await;
    assert_eq!(status, 401, "{err}");
    // Signed but not a slash command: named.
    let junk = "hello=world";
    let (ts, sig) = signed(SLACK_SECRET, junk, 0);
    let (status, err) = slack(&sb, "/slack/commands", junk, ts, sig).await;
    assert_eq!(status, 400, "{err}");

    // Unmapped, or mapped to nobody: a polite refusal, nothing answered.
    for who in ["U0STRANGER", "U0GHOST"] {
        let body = command(who, "fleet status");
        let (ts, sig) = signed(SLACK_SECRET, &body, 0);
        let (status, reply) = slack(&sb, "/slack/commands", &body, ts, sig).await;
        assert_eq!(status, 200, "{reply}");
        let text = message_text(&reply);
        assert!(
            text.starts_with("Sorry, your Slack user") && text.contains("not linked"),
            "{text}"
        );
    }

    // The viewer's role holds in Slack as in REST.
    let body = command("U0VIEWER", "approve act-0123456789abcdef");
    let (ts, sig) = signed(SLACK_SECRET, &body, 0);
    let (_, reply) = slack(&sb, "/slack/commands", &body, ts, sig).await;
    let text = message_text(&reply);
    assert!(
        text.contains("needs the operator role; you are viewer"),
        "{text}"
    );

    // The operator's approve button: a confirmation to send back, nothing decided.
    let payload = json!({
        "type": "block_actions",
        "user": {"id": "U0OPERATOR", "username": "otto"},
        "actions": [{"action_id": sco_chat::slack::APPROVE_ACTION_ID, "value": "act-0123456789abcdef"}],
    });
    let body = form(&[("payload", &payload.to_string())]);
    let (ts, sig) = signed(SLACK_SECRET, &body, 0);
    let (status, reply) = slack(&sb, "/slack/interactions", &body, ts, sig).await;
    assert_eq!(status, 200, "{reply}");
    let text = message_text(&reply);
    assert!(
        text.contains("/sco confirm cf-"),
        "the button asks for a confirmation: {text}"
    );
    let cf = text
        .split("confirm ")
        .nth(1)
        .and_then(|t| t.split(|c: char| c.is_whitespace() || c == '"').next())
        .expect("a confirmation id")
        .to_string();
    // The viewer cannot confirm it; the operator can, and decide answers (no such action).
    let body = command("U0VIEWER", &format!("confirm {cf}"));
    let (ts, sig) = signed(SLACK_SECRET, &body, 0);
    let (_, reply) = slack(&sb, "/slack/commands", &body, ts, sig).await;
    assert!(
        message_text(&reply).contains("needs the operator role"),
        "{reply}"
    );
    let body = command("U0OPERATOR", &format!("confirm {cf}"));
    let (ts, sig) = signed(SLACK_SECRET, &body, 0);
    let (_, reply) = slack(&sb, "/slack/commands", &body, ts, sig).await;
    assert!(
        message_text(&reply).contains("no remediation action \"act-0123456789abcdef\""),
        "{reply}"
    );

    // Slack exchanges are in the history like any other, marked as such.
    let (_, otto) = sb.get(&admin, "/query?user=otto").await;
    let sources: Vec<&str> = otto["exchanges"]
        .as_array()
        .map(|v| v.iter().filter_map(|x| x["source"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(sources, ["slack", "slack"], "{otto}");
}
