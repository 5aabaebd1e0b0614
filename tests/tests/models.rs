//! The model registry end to end: uploads checked like an agent checks a model (a bad one
//! refused with the reason), immutable signed versions, a canaried rollout that reaches two
//! real agents over their streams and survives a restart, a canary that cannot take a model
//! (it cannot store it, or cannot verify its signature) stopping the rollout with every host
//! kept on what it ran, a canary whose alarms jump during the canary window (real CPU
//! burners, after its warm-up on the new model file) stopping it by itself, and a rollout
//! back to the agents' own model.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;

use sco_tests::{
    wait_calibrated, wait_for, wait_until_longer, Burners, Db, Proc, Sandbox, BURNER_DETECT,
};
use serde_json::{json, Value};
use sha2::Digest;

fn shipped(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models/shipped")
        .join(file)
}

/// The shipped model as an upload under `version` (the file is the same; the manifest's
/// version is the registry's key).
fn upload_body(version: &str) -> Value {
    let onnx = std::fs::read(shipped("sco-window-pca.onnx")).expect("onnx");
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(shipped("manifest.json")).expect("m"))
            .expect("manifest");
    manifest["version"] = json!(version);
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(shipped("golden.json")).expect("g"))
            .expect("golden");
    json!({
        "manifest": manifest,
        "onnx_base64": base64::engine::general_purpose::STANDARD.encode(onnx),
        "golden": golden,
        "card": "# test card\n",
        "evaluation": {"nab": 0.0},
    })
}

async fn connected(sb: &Sandbox, token: &str, host: &str) {
    wait_for(&format!("{host} to connect"), || async {
        let (_, body) = sb.get(token, &format!("/hosts/{host}")).await;
        (body["host"]["connected"] == true).then_some(())
    })
    .await;
}

async fn host_status(sb: &Sandbox, token: &str, version: &str, host: &str) -> Option<Value> {
    let (_, body) = sb.get(token, &format!("/models/{version}/status")).await;
    body["hosts"]
        .as_array()?
        .iter()
        .find(|h| h["host_id"] == host)
        .cloned()
}

/// Waits until `host` reports running fleet model `number`.
async fn runs(sb: &Sandbox, token: &str, version: &str, host: &str, number: i64) -> Value {
    wait_for(&format!("{host} to run model {number}"), || async {
        host_status(sb, token, version, host)
            .await
            .filter(|s| s["applied_number"] == number && s["in_sync"] == true)
    })
    .await
}

async fn newest_rollout_state(sb: &Sandbox, token: &str, state: &str) -> Value {
    wait_for(&format!("the model rollout to be {state}"), || async {
        let (_, body) = sb.get(token, "/models").await;
        (body["rollout"]["state"] == state).then(|| body["rollout"].clone())
    })
    .await
}

async fn uploads_are_checked_signed_and_immutable(db: Db) {
    let Some(sb) = Sandbox::new(db).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let admin = sb.admin_token().await;

    // A file that is not the one its manifest names.
    let mut body = upload_body("1.1.0-test");
    body["manifest"]["sha256"] = json!("0".repeat(64));
    let (status, reply) = sb.post(&admin, "/models", &body).await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .contains("sha256 mismatch"),
        "{reply}"
    );

    // A graph with an operator the agents do not run (its manifest's hash made to match).
    let mut onnx = std::fs::read(shipped("sco-window-pca.onnx")).expect("onnx");
    let at = onnx
        .windows(3)
        .position(|w| w == b"Add")
        .expect("an Add node");
    onnx[at..at + 3].copy_from_slice(b"Div");
    let mut body = upload_body("1.1.0-test");
    body["onnx_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(&onnx));
    body["manifest"]["sha256"] = json!(hex::encode(sha2::Sha256::digest(&onnx)));
    let (status, reply) = sb.post(&admin, "/models", &body).await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error"].as_str().unwrap_or_default().contains("Div"),
        "{reply}"
    );

    // Golden outputs the model does not reproduce.
    let mut body = upload_body("1.1.0-test");
    let s = body["golden"]["score"][2].as_f64().expect("a score");
    body["golden"]["score"][2] = json!(s * 2.0 + 1.0);
    let (status, reply) = sb.post(&admin, "/models", &body).await;
    assert_eq!(status, 400, "{reply}");
    let error = reply["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("golden") && error.contains("row 2"),
        "{reply}"
    );

    // Not base64; a reserved version; a viewer may not upload.
    let mut body = upload_body("1.1.0-test");
    body["onnx_base64"] = json!("***");
    let (status, reply) = sb.post(&admin, "/models", &body).await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply["error"]
        .as_str()
        .unwrap_or_default()
        .starts_with("onnx_base64"));
    let (status, _) = sb.post(&admin, "/models", &upload_body("builtin")).await;
    assert_eq!(status, 400);
    let viewer = sb.add_user(&admin, "vera", "viewer").await;
    let (status, _) = sb
        .post(&viewer, "/models", &upload_body("1.1.0-test"))
        .await;
    assert_eq!(status, 403);
    let (_, reply) = sb.get(&admin, "/models").await;
    assert_eq!(reply["count"], 0, "nothing refused was stored: {reply}");

    // A good one: stored, numbered, signed with the key the agents trust.
    let (status, reply) = sb.post(&admin, "/models", &upload_body("1.1.0-test")).await;
    assert_eq!(status, 201, "{reply}");
    let model = &reply["model"];
    assert_eq!(model["number"], 1);
    assert_eq!(model["version"], "1.1.0-test");
    let key = sco_agent::policy::read_key(&sb.path().join("pki/policy.pub")).expect("key");
    let manifest = model["signed_manifest"].as_str().expect("signed manifest");
    let signature = model["signature"].as_str().expect("signature");
    sco_policy::verify_model_signature(Some(&key), 1, manifest, signature).expect("verifies");
    assert!(sco_policy::verify_model_signature(Some(&key), 2, manifest, signature).is_err());
    // Versions are immutable.
    let (status, reply) = sb.post(&admin, "/models", &upload_body("1.1.0-test")).await;
    assert_eq!(status, 409, "{reply}");
    let (status, reply) = sb.get(&viewer, "/models/1.1.0-test").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["model"]["card"], "# test card\n");
    assert_eq!(reply["model"]["evaluation"]["nab"], 0.0);
    assert!(reply["golden"]["rows"]
        .as_array()
        .is_some_and(|r| !r.is_empty()));
    let (status, _) = sb.get(&viewer, "/models/9.9.9").await;
    assert_eq!(status, 404);
    let (_, reply) = sb.get(&admin, "/audit?action=model.upload").await;
    assert_eq!(
        reply["entries"][0]["detail"]["version"], "1.1.0-test",
        "{reply}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_are_checked_signed_and_immutable_sqlite() {
    uploads_are_checked_signed_and_immutable(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_are_checked_signed_and_immutable_postgres() {
    uploads_are_checked_signed_and_immutable(Db::Postgres).await;
}

async fn a_model_goes_canary_first_then_to_everyone(db: Db) {
    let Some(sb) = Sandbox::new(db).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let admin = sb.admin_token().await;
    let mut agents: Vec<Proc> = ["m1", "m2"].iter().map(|id| sb.start_agent(id)).collect();
    connected(&sb, &admin, "m1").await;
    connected(&sb, &admin, "m2").await;
    let (status, reply) = sb.post(&admin, "/models", &upload_body("1.1.0-test")).await;
    assert_eq!(status, 201, "{reply}");

    let (status, reply) = sb
        .post(
            &admin,
            "/models/1.1.0-test/rollout",
            &json!({"canary_percent": 50, "canary_secs": 3}),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    let canaries = reply["rollout"]["canary_hosts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(canaries.len(), 1, "{reply}");
    assert_eq!(reply["rollout"]["state"], "canary");
    let canary = canaries[0].as_str().expect("id").to_string();
    let other = if canary == "m1" { "m2" } else { "m1" };
    // The canary gets it first; the other host is not offered it during the canary.
    let s = runs(&sb, &admin, "1.1.0-test", &canary, 1).await;
    assert_eq!(s["applied_model"], "sco-window-pca@1.1.0-test", "{s}");
    assert_eq!(s["canary"], true);
    let rollout = newest_rollout_state(&sb, &admin, "complete").await;
    assert!(rollout["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("canary healthy"));
    let s = runs(&sb, &admin, "1.1.0-test", other, 1).await;
    assert_eq!(s["applied_model"], "sco-window-pca@1.1.0-test", "{s}");
    // What the other host ran before the rollout completed: its own model.
    let (_, audit) = sb.get(&admin, "/audit?action=model.applied").await;
    let applied: Vec<&Value> = audit["entries"]
        .as_array()
        .map(|e| e.iter().collect())
        .unwrap_or_default();
    let at = |h: &str| {
        applied
            .iter()
            .find(|e| e["host_id"] == h)
            .and_then(|e| e["at_ms"].as_i64())
            .expect("applied entry")
    };
    assert!(at(&canary) < at(other), "the canary ran it first: {audit}");

    // The verified files are on the host, and a restart runs the fleet model again.
    let data = sb.path().join(format!("agent-{other}/data/models"));
    assert_eq!(
        std::fs::read_to_string(data.join("current"))
            .expect("current")
            .trim(),
        "1"
    );
    assert!(data.join("1/manifest.json").exists() && data.join("1/sco-window-pca.onnx").exists());
    let i = if other == "m1" { 0 } else { 1 };
    agents[i].terminate();
    agents[i] = sb.start_agent(other);
    wait_for("the restarted agent to run the fleet model", || async {
        let text =
            std::fs::read_to_string(sb.path().join(format!("agent-{other}/data/status.json")))
                .unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        (v["model"] == "sco-window-pca@1.1.0-test").then_some(())
    })
    .await;
    assert!(
        agents[i].log_contains("fleet_model=1"),
        "{}",
        agents[i].log_tail()
    );

    // Back to the agents' own model, everywhere at once.
    let (status, reply) = sb
        .post(
            &admin,
            "/models/builtin/rollout",
            &json!({"canary_percent": 0}),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["rollout"]["state"], "complete");
    for h in ["m1", "m2"] {
        let s = runs(&sb, &admin, "builtin", h, 0).await;
        assert_eq!(s["applied_model"], "sco-window-pca@1.0.0", "{s}");
    }
    assert_eq!(
        std::fs::read_to_string(data.join("current"))
            .expect("current")
            .trim(),
        "0"
    );
    assert!(
        !data.join("1").exists(),
        "the files of a model no longer in force are removed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_goes_canary_first_then_to_everyone_sqlite() {
    a_model_goes_canary_first_then_to_everyone(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_goes_canary_first_then_to_everyone_postgres() {
    a_model_goes_canary_first_then_to_everyone(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_that_cannot_take_a_model_stops_the_rollout_and_keeps_what_ran() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let admin = sb.admin_token().await;
    let _a = sb.start_agent("keep-a");
    let _b = sb.start_agent("keep-b");
    // keep-c trusts another key: to it, every fleet model is forged.
    let other = sb.path().join("other-policy.pub");
    std::fs::write(&other, format!("{}\n", "ab".repeat(32))).expect("write key");
    let _c = sb.start_agent_with("keep-c", &format!("policy_key = \"{}\"\n", other.display()));
    for h in ["keep-a", "keep-b", "keep-c"] {
        connected(&sb, &admin, h).await;
    }
    let (status, _) = sb.post(&admin, "/models", &upload_body("1.1.0-test")).await;
    assert_eq!(status, 201);
    let (status, reply) = sb
        .post(
            &admin,
            "/models/1.1.0-test/rollout",
            &json!({"canary_hosts": ["keep-a", "keep-b"], "canary_secs": 2}),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    runs(&sb, &admin, "1.1.0-test", "keep-a", 1).await;
    runs(&sb, &admin, "1.1.0-test", "keep-b", 1).await;
    newest_rollout_state(&sb, &admin, "complete").await;
    // keep-c, offered model 1 when the rollout completed, refuses it: the signature.
    let s = wait_for("keep-c to refuse model 1", || async {
        host_status(&sb, &admin, "1.1.0-test", "keep-c")
            .await
            .filter(|s| s["reported_number"] == 1 && s["error"] != "")
    })
    .await;
    assert!(
        s["error"]
            .as_str()
            .unwrap_or_default()
            .contains("signature"),
        "{s}"
    );
    assert_eq!(s["applied_number"], 0, "{s}");
    assert_eq!(s["in_sync"], false);

    // keep-b's disk cannot take another model: its download directory is not a directory.
    let incoming = sb.path().join("agent-keep-b/data/models/incoming");
    let _ = std::fs::remove_dir_all(&incoming);
    std::fs::write(&incoming, "not a directory").expect("block the download directory");

    let (status, _) = sb.post(&admin, "/models", &upload_body("2.0.0-test")).await;
    assert_eq!(status, 201);
    let (status, reply) = sb
        .post(
            &admin,
            "/models/2.0.0-test/rollout",
            &json!({"canary_hosts": ["keep-b"], "canary_secs": 600}),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["rollout"]["previous_revision"], 1);
    // A second rollout may not start while this one is in its canary phase.
    let (status, _) = sb
        .post(
            &admin,
            "/models/1.1.0-test/rollout",
            &json!({"canary_percent": 0}),
        )
        .await;
    assert_eq!(status, 409);

    let rollout = newest_rollout_state(&sb, &admin, "stopped").await;
    let reason = rollout["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("keep-b") && reason.contains("cannot store it"),
        "{rollout}"
    );
    // keep-b reported model 2 refused and kept running model 1; once the rollout stopped
    // it is offered model 1 again and reports on it (so it may already have left model 2's
    // status when this reads it).
    let s = runs(&sb, &admin, "1.1.0-test", "keep-b", 1).await;
    assert_eq!(s["applied_model"], "sco-window-pca@1.1.0-test", "{s}");
    assert_eq!(s["desired_number"], 1, "{s}");
    let (_, audit) = sb
        .get(&admin, "/audit?action=model.refused&host=keep-b")
        .await;
    assert!(
        audit["entries"].as_array().is_some_and(|e| e
            .iter()
            .any(|e| e["detail"]["number"] == 2 && e["detail"]["active_number"] == 1)),
        "keep-b refused model 2 while running model 1: {audit}"
    );
    // keep-a was never offered model 2 and still runs model 1.
    let s = host_status(&sb, &admin, "1.1.0-test", "keep-a")
        .await
        .expect("keep-a");
    assert_eq!(s["applied_number"], 1, "{s}");
    assert_eq!(s["reported_number"], 1, "{s}");
    assert!(!sb.path().join("agent-keep-a/data/models/2").exists());
    let (_, audit) = sb.get(&admin, "/audit?action=model.refused").await;
    let refused: Vec<String> = audit["entries"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| e["host_id"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        refused.contains(&"keep-b".to_string()) && refused.contains(&"keep-c".to_string()),
        "{audit}"
    );
}

/// The shipped model as another file: its description names another version, so its
/// sha256 differs (the graph and the golden outputs are the same). An agent that gets it
/// warms up again, as for any new model file.
fn another_file_body(version: &str) -> Value {
    let mut onnx = std::fs::read(shipped("sco-window-pca.onnx")).expect("onnx");
    let from = b"sco-window-pca 1.0.0";
    let at = onnx
        .windows(from.len())
        .position(|w| w == from)
        .expect("the model's description");
    onnx[at..at + from.len()].copy_from_slice(b"sco-window-pca 9.9.9");
    let sha256 = hex::encode(sha2::Sha256::digest(&onnx));
    let mut body = upload_body(version);
    body["onnx_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(&onnx));
    body["manifest"]["sha256"] = json!(sha256);
    // the same graph: the golden outputs hold for this file too (the upload runs them)
    body["golden"]["sha256"] = json!(sha256);
    body
}

/// The agent's own view of its detector (`status.json` in its data directory).
fn detector_status(sb: &Sandbox, host: &str) -> Value {
    let text = std::fs::read_to_string(sb.path().join(format!("agent-{host}/data/status.json")))
        .unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// A canary whose alarms jump during the canary window stops a model rollout by itself:
/// the canary runs the new model, warms up on it (a short warm-up, as in the other
/// detection tests), then real CPU burners make it open an anomaly event; with
/// `max_new_anomalies: 0` that is an alarm jump. The canary goes back to its own model and
/// the other host is never offered the new one.
#[tokio::test(flavor = "multi_thread")]
async fn a_canary_whose_alarms_jump_stops_the_model_rollout() {
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    // The CPU-heavy work of the test (password hashing, the upload's checks and signature)
    // happens before the canary starts, so its warm-ups see a quiet host.
    let admin = sb.admin_token().await;
    let (status, reply) = sb
        .post(&admin, "/models", &another_file_body("1.2.0-alarm"))
        .await;
    assert_eq!(status, 201, "{reply}");
    let canary = sb.start_agent_with("alarm-canary", BURNER_DETECT);
    let _other = sb.start_agent("alarm-other");
    connected(&sb, &admin, "alarm-canary").await;
    connected(&sb, &admin, "alarm-other").await;
    wait_calibrated(&canary);

    let (status, reply) = sb
        .post(
            &admin,
            "/models/1.2.0-alarm/rollout",
            &json!({"canary_hosts": ["alarm-canary"], "canary_secs": 600, "max_new_anomalies": 0}),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["rollout"]["state"], "canary", "{reply}");
    assert_eq!(
        reply["rollout"]["baseline_anomalies"], 0,
        "a quiet canary before the rollout: {reply}"
    );
    let started = reply["rollout"]["started_at_ms"].as_i64().expect("start");
    let s = runs(&sb, &admin, "1.2.0-alarm", "alarm-canary", 1).await;
    assert_eq!(s["applied_model"], "sco-window-pca@1.2.0-alarm", "{s}");
    // Another file: the canary warms up again before it can raise anything.
    wait_until_longer(
        "the canary to calibrate on the new model",
        Duration::from_secs(45),
        || {
            let d = detector_status(&sb, "alarm-canary");
            d["model"] == "sco-window-pca@1.2.0-alarm"
                && d["detector"] == "calibrated"
                && d["calibrated_at_ms"].as_i64().is_some_and(|t| t > started)
        },
    );
    let (_, body) = sb.get(&admin, "/models").await;
    assert_eq!(
        body["rollout"]["state"], "canary",
        "still in its canary phase after the warm-up: {body}"
    );

    let _burners = Burners::start("sco-model-alarm-test");
    let rollout = newest_rollout_state(&sb, &admin, "stopped").await;
    let reason = rollout["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("alarm jump: canary hosts opened"),
        "{rollout}"
    );
    assert!(
        rollout["updated_at_ms"].as_i64().expect("updated") - started < 600_000,
        "stopped within the canary window: {rollout}"
    );
    // The canary's alarm, opened after the rollout started (a warming detector raises none,
    // so it is the burners'). Open or closed: going back to its own model closes it, and that
    // may already have happened.
    let (_, body) = sb.get(&admin, "/anomaly?host=alarm-canary").await;
    assert!(
        body["anomalies"].as_array().is_some_and(|a| a
            .iter()
            .any(|e| e["started_ms"].as_i64().is_some_and(|t| t >= started))),
        "the canary's alarm: {body}"
    );
    // The canary goes back to what it ran before: its own model.
    let s = runs(&sb, &admin, "builtin", "alarm-canary", 0).await;
    assert_eq!(s["applied_model"], "sco-window-pca@1.0.0", "{s}");
    let data = sb.path().join("agent-alarm-canary/data/models");
    assert_eq!(
        std::fs::read_to_string(data.join("current"))
            .expect("current")
            .trim(),
        "0"
    );
    // The other host was never offered the model: no status, no files, no audit entry.
    assert!(
        host_status(&sb, &admin, "1.2.0-alarm", "alarm-other")
            .await
            .is_none_or(|s| s["reported_number"] == 0 && s["applied_number"] == 0),
        "alarm-other never saw model 1"
    );
    assert!(!sb.path().join("agent-alarm-other/data/models/1").exists());
    let (_, audit) = sb.get(&admin, "/audit?host=alarm-other").await;
    assert!(
        audit["entries"]
            .as_array()
            .is_some_and(|e| e.iter().all(|e| !e["action"]
                .as_str()
                .unwrap_or_default()
                .starts_with("model."))),
        "{audit}"
    );
    let (_, audit) = sb.get(&admin, "/audit?action=model.rollout").await;
    assert!(
        audit["entries"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["result"] == "stopped"
                && e["actor"] == "control-plane"
                && e["detail"]["reason"] == reason)),
        "{audit}"
    );
}

/// Starts an agent whose labels are `env = "test"` and `role = <role>`.
fn start_with_role(sb: &Sandbox, id: &str, role: &str) -> Proc {
    let config = sb.agent_config(id);
    let text = std::fs::read_to_string(&config).expect("agent config");
    let text = text.replacen(
        "env = \"test\"\n",
        &format!("env = \"test\"\nrole = \"{role}\"\n"),
        1,
    );
    std::fs::write(&config, text).expect("write agent config");
    sb.start_agent(id)
}

/// A rollout with a host label selector (`target`, as a policy's): only the hosts it
/// selects are canaries and get the model; the others keep the model they run. Bad
/// targets are refused with the field that is wrong.
async fn a_model_rollout_goes_only_to_the_hosts_its_target_selects(db: Db) {
    let Some(sb) = Sandbox::new(db).await else {
        return;
    };
    let _cp = sb.start_control_plane();
    let admin = sb.admin_token().await;
    let _agents: Vec<Proc> = [("web-1", "web"), ("web-2", "web"), ("db-1", "db")]
        .iter()
        .map(|(id, role)| start_with_role(&sb, id, role))
        .collect();
    for h in ["web-1", "web-2", "db-1"] {
        connected(&sb, &admin, h).await;
    }
    for v in ["1.1.0-test", "2.0.0-test"] {
        let (status, reply) = sb.post(&admin, "/models", &upload_body(v)).await;
        assert_eq!(status, 201, "{reply}");
    }

    // Targets are checked before anything starts.
    let refused = [
        (json!({"target": {"labels": {"": "web"}}}), "target.labels."),
        (json!({"target": {"hosts": ["a b"]}}), "target.hosts[0]"),
        (json!({"target": {"lables": {"role": "web"}}}), "lables"),
        (
            json!({"target": {"labels": {"role": "cache"}}}),
            "target: selects no",
        ),
        (
            json!({"target": {"labels": {"role": "web"}}, "canary_hosts": ["db-1"]}),
            "canary_hosts: \"db-1\"",
        ),
    ];
    for (body, says) in refused {
        let (status, reply) = sb.post(&admin, "/models/1.1.0-test/rollout", &body).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert!(
            reply["error"].as_str().unwrap_or_default().contains(says),
            "{body}: {reply}"
        );
    }
    let (_, reply) = sb.get(&admin, "/models").await;
    assert!(reply["rollout"].is_null(), "nothing started: {reply}");

    // The web hosts: half of them (one) is the canary, then both; db-1 is neither.
    let (status, reply) = sb
        .post(
            &admin,
            "/models/1.1.0-test/rollout",
            &json!({"target": {"labels": {"role": "web"}}, "canary_percent": 50, "canary_secs": 3}),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(
        reply["rollout"]["target"]["labels"]["role"], "web",
        "{reply}"
    );
    let canaries = reply["rollout"]["canary_hosts"]
        .as_array()
        .expect("canaries");
    assert_eq!(canaries.len(), 1, "{reply}");
    assert!(
        canaries[0].as_str().is_some_and(|c| c.starts_with("web-")),
        "{reply}"
    );
    newest_rollout_state(&sb, &admin, "complete").await;
    for h in ["web-1", "web-2"] {
        runs(&sb, &admin, "1.1.0-test", h, 1).await;
    }
    let (_, status) = sb.get(&admin, "/models/1.1.0-test/status").await;
    let listed: Vec<&str> = status["hosts"]
        .as_array()
        .map(|h| h.iter().filter_map(|h| h["host_id"].as_str()).collect())
        .unwrap_or_default();
    assert!(!listed.contains(&"db-1"), "db-1 is not concerned: {status}");
    assert!(!sb.path().join("agent-db-1/data/models/1").exists());

    // Then the db host alone, at once: the web hosts keep model 1.
    let (status, reply) = sb
        .post(
            &admin,
            "/models/2.0.0-test/rollout",
            &json!({"target": {"hosts": ["db-1"]}, "canary_percent": 0}),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["rollout"]["state"], "complete", "{reply}");
    let s = runs(&sb, &admin, "2.0.0-test", "db-1", 2).await;
    assert_eq!(s["applied_model"], "sco-window-pca@2.0.0-test", "{s}");
    for h in ["web-1", "web-2"] {
        let s = host_status(&sb, &admin, "1.1.0-test", h)
            .await
            .expect("a web host");
        assert_eq!(s["desired_number"], 1, "{s}");
        assert_eq!(s["applied_number"], 1, "{s}");
        assert_eq!(s["in_sync"], true, "{s}");
        assert!(!sb.path().join(format!("agent-{h}/data/models/2")).exists());
    }
    let (_, audit) = sb.get(&admin, "/audit?action=model.rollout").await;
    assert!(
        audit["entries"].as_array().is_some_and(|e| e
            .iter()
            .any(|e| e["detail"]["target"]["hosts"][0] == "db-1")),
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_rollout_goes_only_to_the_hosts_its_target_selects_sqlite() {
    a_model_rollout_goes_only_to_the_hosts_its_target_selects(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_rollout_goes_only_to_the_hosts_its_target_selects_postgres() {
    a_model_rollout_goes_only_to_the_hosts_its_target_selects(Db::Postgres).await;
}
