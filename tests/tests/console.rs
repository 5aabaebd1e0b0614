//! The web console in a real browser: a control plane and an agent (the real binaries), and
//! `console/tests/e2e.mjs` driving Debian's Chromium through playwright-core against them.
//! The script logs in, finds the host connected and its CPU chart with data, its time axis
//! labelled as the console writes times (time of day on the browser's clock over 15
//! minutes, date and time over 7 days, not the browser's locale format), starts a rollout
//! from a policy's page, starts CPU burners and finds the anomaly on the fleet page, the
//! host chart (its start written as the axis writes times) and the event page, checks that
//! a viewer is offered no approval and that a viewer's forged approval is refused, approves
//! the proposal of an `approve` rule as admin, sees the burners stopped and the approval
//! audited, and logs out. On the way it finds, on a second host whose events a hand-written
//! agent sends over a real mTLS stream, an open event that recovered and is held listed and
//! shown as held, and a firing one not.
//! A second run (`console/tests/registry.mjs`) shows a rolled-out model on the Models page
//! and a rule's learnt preferences on the Remediation page, reset there by an operator, and
//! an admin uploading a model through the form with real files and rolling it out.
//!
//! Needs `node`, `console/node_modules` (`npm ci` in `console/`) and `/usr/bin/chromium`
//! (`apt-get install chromium`); without them the test fails saying so. Screenshots go to
//! `SCO_CONSOLE_SCREENSHOTS`, by default `console-screenshots/` in the cargo target dir.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sco_proto::v1::agent_service_client::AgentServiceClient;
use sco_proto::v1::{agent_message, anomaly_event, AgentMessage, AnomalyEvent, Contributor, Hello};
use sco_tests::{patience, wait_calibrated, wait_for, Db, Sandbox, ADMIN_PASSWORD, BURNER_DETECT};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const VIEWER: &str = "vera";
const VIEWER_PASSWORD: &str = "viewer-password-1";
const OPERATOR_PASSWORD: &str = "operator-password-1";
const CHROMIUM_ENV: &str = "SCO_CONSOLE_CHROMIUM";
const SCREENSHOTS_ENV: &str = "SCO_CONSOLE_SCREENSHOTS";

/// One browser at a time: a second Chromium busy beside the burner test would be part of
/// what its detector learns and scores.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn console_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../console")
        .canonicalize()
        .expect("console/ next to tests/")
}

/// Node, playwright-core and Chromium, or a panic that says how to get them: a browser
/// test that cannot run must not pass.
fn browser_tools(console: &Path) -> (PathBuf, PathBuf) {
    let node = PathBuf::from(std::env::var_os("SCO_CONSOLE_NODE").unwrap_or_else(|| "node".into()));
    match Command::new(&node).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => panic!(
            "the console's browser test needs Node.js ({} not runnable): apt-get install -y nodejs npm",
            node.display()
        ),
    }
    assert!(
        console
            .join("node_modules/playwright-core/package.json")
            .exists(),
        "the console's browser test needs playwright-core: run `npm ci` in {}",
        console.display()
    );
    let chromium =
        PathBuf::from(std::env::var_os(CHROMIUM_ENV).unwrap_or_else(|| "/usr/bin/chromium".into()));
    assert!(
        chromium.exists(),
        "the console's browser test needs Chromium at {} (apt-get install -y chromium, or set {CHROMIUM_ENV})",
        chromium.display()
    );
    (node, chromium)
}

/// `target/console-screenshots` beside the test binary's `target/debug/deps`, unless
/// [`SCREENSHOTS_ENV`] names a directory.
fn screenshots_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(SCREENSHOTS_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors().nth(3).map_or_else(
        || PathBuf::from("console-screenshots"),
        |t| t.join("console-screenshots"),
    )
}

/// An `approve` rule against the burners: the agent proposes stopping them, and acts only
/// once someone approves.
fn guard_policy(marker: &str) -> String {
    format!(
        r#"
name: cpu-guard
rules:
  - name: stop-burner
    when:
      anomaly: {{ metrics: ["cpu.*", "psi.cpu.*"] }}
      for_secs: 1
    action: {{ type: kill_process, pattern: "*{marker}*", grace_secs: 2 }}
    mode: approve
    cooldown_secs: 0
"#
    )
}

/// A harmless policy with two revisions, rolled out from the console.
fn demo_policy(grace_secs: u32) -> String {
    format!(
        r#"
name: console-demo
rules:
  - name: never
    when: {{ state: ["proc.count < 0"] }}
    action: {{ type: kill_process, pattern: "*sco-console-never-matches*", grace_secs: {grace_secs} }}
    mode: dry_run
"#
    )
}

/// The host whose events [`held_and_firing_events`] sends.
const SECOND_HOST: &str = "agent-2";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// A hand-written agent for [`SECOND_HOST`] (a real mTLS stream, as the agent speaks it) that
/// opens a memory event and reports it recovered and held open in case it comes back
/// (`recovered_ms` on an UPDATED), and opens a disk_io event that keeps firing. Returns the
/// held event's id, the firing one's, and the stream's sender: the stream stays up (with
/// heartbeats) while it lives.
async fn held_and_firing_events(
    sb: &Sandbox,
    admin: &str,
) -> (String, String, mpsc::Sender<AgentMessage>) {
    let channel = sb.agent_channel(SECOND_HOST).await;
    let (tx, rx) = mpsc::channel(16);
    let message = |seq: u64, body| AgentMessage {
        seq,
        produced_at_ms: now_ms(),
        body: Some(body),
    };
    tx.send(message(
        0,
        agent_message::Body::Hello(Hello {
            hostname: format!("{SECOND_HOST}.test"),
            run_started_ms: 1,
            ..Default::default()
        }),
    ))
    .await
    .expect("hello");
    let mut inbound = AgentServiceClient::new(channel)
        .connect(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    // Acks and policies come down; read them so the stream never backs up.
    tokio::spawn(async move { while let Ok(Some(_)) = inbound.message().await {} });
    let beats = tx.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let beat = message(0, agent_message::Body::Heartbeat(Default::default()));
            if beats.send(beat).await.is_err() {
                return;
            }
        }
    });
    let started = now_ms() - 120_000;
    let event =
        |kind: anomaly_event::Kind, open_seq: u64, family: &str, metric: &str| AnomalyEvent {
            kind: kind as i32,
            open_seq,
            run_started_ms: 1,
            started_ms: started,
            updated_ms: now_ms(),
            score: 0.8,
            peak_score: 0.9,
            severity: "medium".into(),
            family: family.into(),
            model: "test".into(),
            contributors: vec![Contributor {
                metric: metric.into(),
                value: 97.0,
                expected_low: 20.0,
                expected_high: 60.0,
                contribution: 0.8,
            }],
            ..Default::default()
        };
    let held = event(anomaly_event::Kind::Opened, 1, "memory", "mem.used_pct");
    let recovered = AnomalyEvent {
        score: 0.2,
        recovered_ms: now_ms() - 30_000,
        ..event(anomaly_event::Kind::Updated, 1, "memory", "mem.used_pct")
    };
    let firing = event(
        anomaly_event::Kind::Opened,
        3,
        "disk_io",
        "disk.io_util_pct",
    );
    for (seq, e) in [(1, held), (2, recovered), (3, firing)] {
        tx.send(message(seq, agent_message::Body::Anomaly(e)))
            .await
            .expect("send an event");
    }
    let (held, firing) = (format!("{SECOND_HOST}:1"), format!("{SECOND_HOST}:3"));
    wait_for("the held and the firing event stored", || async {
        let (_, h) = sb.get(admin, &format!("/anomaly/{held}")).await;
        let (_, f) = sb.get(admin, &format!("/anomaly/{firing}")).await;
        (h["anomaly"]["status"] == "open"
            && h["anomaly"]["recovered_ms"].is_i64()
            && f["anomaly"]["status"] == "open"
            && f["anomaly"]["recovered_ms"].is_null())
        .then_some(())
    })
    .await;
    (held, firing, tx)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_in_a_real_browser() {
    let console = console_dir();
    let (node, chromium) = browser_tools(&console);
    let _one_browser = BROWSER.lock().await;
    let Some(mut sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    sb.control_plane_extra = "[remediation]\ntick_ms = 200\n".into();
    let _cp = sb.start_control_plane();

    // Everything CPU-heavy on the test's side (password hashing, signing) happens before
    // the agent starts, so its warm-up sees a quiet host.
    let admin = sb.admin_token().await;
    let (status, body) = sb
        .post(
            &admin,
            "/auth/register",
            &json!({"username": VIEWER, "password": VIEWER_PASSWORD, "role": "viewer"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    for grace in [1, 2] {
        let (status, body) = sb.post_text(&admin, "/policies", &demo_policy(grace)).await;
        assert_eq!(status, 201, "{body}");
    }
    let marker = format!("sco-console-burn-{}", std::process::id());
    let revision = sb.publish_policy(&admin, &guard_policy(&marker)).await;
    // A second host with a held event and a firing one, before the agent's warm-up.
    let (held, firing, _second_host) = held_and_firing_events(&sb, &admin).await;
    let agent = sb.start_agent_with("agent-1", BURNER_DETECT);
    sb.wait_policy_applied(&admin, "cpu-guard", "agent-1", revision)
        .await;
    wait_calibrated(&agent);

    let shots = screenshots_dir();
    let browser_patience = (patience() * 2).max(Duration::from_secs(90));
    let started = Instant::now();
    let script = console.join("tests/e2e.mjs");
    let mut cmd = Command::new(&node);
    cmd.arg(&script)
        .current_dir(&console)
        .env("SCO_CONSOLE_URL", sb.base_url())
        .env("SCO_CONSOLE_ADMIN_USER", "admin")
        .env("SCO_CONSOLE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("SCO_CONSOLE_VIEWER_USER", VIEWER)
        .env("SCO_CONSOLE_VIEWER_PASSWORD", VIEWER_PASSWORD)
        .env("SCO_CONSOLE_HOST", "agent-1")
        .env("SCO_CONSOLE_BURN_MARKER", &marker)
        .env("SCO_CONSOLE_ROLLOUT_POLICY", "console-demo")
        .env("SCO_CONSOLE_APPROVE_RULE", "cpu-guard/stop-burner")
        .env("SCO_CONSOLE_HELD_EVENT", &held)
        .env("SCO_CONSOLE_FIRING_EVENT", &firing)
        .env("SCO_CONSOLE_SCREENSHOTS", &shots)
        .env(
            "SCO_CONSOLE_PATIENCE_MS",
            browser_patience.as_millis().to_string(),
        )
        .env(CHROMIUM_ENV, &chromium);
    let status = tokio::task::spawn_blocking(move || cmd.status())
        .await
        .expect("join the browser run")
        .expect("run node");
    eprintln!(
        "browser run: {status} after {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
    assert!(
        status.success(),
        "the browser run failed ({status}); its steps are above, screenshots in {}",
        shots.display()
    );

    // What the browser did is what the server recorded. The browser logged the admin out,
    // which ended every session of the admin, the test's own included: log in again.
    let admin = sb.admin_token().await;
    let approved = wait_for("the approved action to succeed", || async {
        sb.actions(&admin, "agent-1")
            .await
            .into_iter()
            .find(|a| a["rule"] == "cpu-guard/stop-burner" && a["state"] == "succeeded")
    })
    .await;
    assert_eq!(approved["approval"], "approve", "{approved}");
    assert_eq!(approved["decided_by"], "admin", "{approved}");
    let (_, body) = sb
        .get(&admin, "/audit?action=remediation.approve&limit=200")
        .await;
    let entries: Vec<Value> = body["entries"].as_array().cloned().unwrap_or_default();
    assert!(
        entries.iter().any(|e| e["actor"] == "admin"),
        "the admin's approval is audited: {body}"
    );
    assert!(
        !entries.iter().any(|e| e["actor"] == VIEWER),
        "the viewer approved nothing: {body}"
    );
    let (_, status) = sb.get(&admin, "/policies/console-demo/status").await;
    let host = status["hosts"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["host_id"] == "agent-1"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(host["applied_revision"], 2, "{status}");
    assert_eq!(status["rollout"]["started_by"], "admin", "{status}");
}

/// The shipped model as an upload under `version`.
fn model_upload(version: &str) -> Value {
    use base64::Engine as _;
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/shipped");
    let read = |f: &str| std::fs::read_to_string(shipped.join(f)).expect("a shipped model file");
    let mut manifest: Value = serde_json::from_str(&read("manifest.json")).expect("manifest");
    manifest["version"] = json!(version);
    let onnx = std::fs::read(shipped.join("sco-window-pca.onnx")).expect("onnx");
    json!({
        "manifest": manifest,
        "onnx_base64": base64::engine::general_purpose::STANDARD.encode(onnx),
        "golden": serde_json::from_str::<Value>(&read("golden.json")).expect("golden"),
        "card": "# console test\n",
    })
}

/// A rule with two candidates whose first runs (`journalctl` is `/bin/true` on the agent)
/// and verifies at once: one verified success to show.
const LEARN_POLICY: &str = r#"
name: learnt
rules:
  - name: fix
    when: { state: ["mem.used_pct >= 0"] }
    candidates:
      - { type: journal_vacuum, max_size_mb: 100 }
      - { type: restart_service, unit: app.service }
    mode: auto
    cooldown_secs: 0
    verify: { metric: mem.used_pct, below: 101, within_secs: 10 }
"#;

/// The model registry and the learnt preferences in the browser (`console/tests/registry.mjs`):
/// a model rolled out to the agent, listed with its rollout and the host in sync; a rule's
/// verified outcome shown to a viewer without a reset, and reset by an operator.
#[tokio::test(flavor = "multi_thread")]
async fn the_models_and_the_learnt_preferences_in_a_real_browser() {
    let console = console_dir();
    let (node, chromium) = browser_tools(&console);
    let _one_browser = BROWSER.lock().await;
    let Some(mut sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    sb.control_plane_extra = "[remediation]\ntick_ms = 200\n".into();
    let _cp = sb.start_control_plane();
    let admin = sb.admin_token().await;
    let (status, body) = sb
        .post(
            &admin,
            "/auth/register",
            &json!({"username": VIEWER, "password": VIEWER_PASSWORD, "role": "viewer"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = sb
        .post(
            &admin,
            "/auth/register",
            &json!({"username": "otto", "password": OPERATOR_PASSWORD, "role": "operator"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let _agent = sb.start_agent_with(
        "agent-1",
        "[remediate]\njournalctl = \"/bin/true\"\nsystemctl = \"/bin/true\"\n",
    );
    wait_for("the agent to connect", || async {
        let (_, body) = sb.get(&admin, "/hosts/agent-1").await;
        (body["host"]["connected"] == true).then_some(())
    })
    .await;

    // A model in the registry, rolled out to everyone at once.
    let (status, body) = sb
        .post(&admin, "/models", &model_upload("1.1.0-console"))
        .await;
    assert_eq!(status, 201, "{body}");
    let number = body["model"]["number"].as_i64().expect("number");
    let (status, body) = sb
        .post(
            &admin,
            "/models/1.1.0-console/rollout",
            &json!({"canary_percent": 0}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    wait_for("agent-1 to run the model", || async {
        let (_, body) = sb.get(&admin, "/models/1.1.0-console/status").await;
        body["hosts"]
            .as_array()?
            .iter()
            .find(|h| {
                h["host_id"] == "agent-1" && h["in_sync"] == true && h["applied_number"] == number
            })
            .map(|_| ())
    })
    .await;

    // One verified success of the rule's first candidate.
    sb.publish_policy(&admin, LEARN_POLICY).await;
    let done = wait_for("the rule's action to finish", || async {
        sb.actions(&admin, "agent-1").await.into_iter().find(|a| {
            a["rule"] == "learnt/fix"
                && ["succeeded", "failed", "refused"]
                    .contains(&a["state"].as_str().unwrap_or_default())
        })
    })
    .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let context = done["evidence"]["choice"]["context"]
        .as_str()
        .expect("a choice's context")
        .to_string();
    // A revision that never fires, so no second incident changes the tallies the browser reads.
    let quiet = sb
        .publish_policy(
            &admin,
            &LEARN_POLICY.replace("mem.used_pct >= 0", "proc.count < 0"),
        )
        .await;
    sb.wait_policy_applied(&admin, "learnt", "agent-1", quiet)
        .await;
    let (_, body) = sb.get(&admin, "/remediation/preferences").await;
    assert_eq!(
        body["preferences"][0]["candidates"][0]["successes"], 1,
        "{body}"
    );

    // A model directory for the admin's upload through the form: the shipped files, the
    // manifest naming another version, and a manifest with a wrong sha256 beside it.
    let upload_dir = sb.path().join("upload");
    std::fs::create_dir_all(&upload_dir).expect("mkdir upload");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/shipped");
    for f in ["sco-window-pca.onnx", "golden.json", "MODEL_CARD.md"] {
        std::fs::copy(shipped.join(f), upload_dir.join(f)).expect("copy a shipped file");
    }
    let mut manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(shipped.join("manifest.json")).expect("manifest"),
    )
    .expect("manifest JSON");
    manifest["version"] = json!(UPLOAD_VERSION);
    std::fs::write(upload_dir.join("manifest.json"), manifest.to_string()).expect("write");
    manifest["sha256"] = json!("0".repeat(64));
    std::fs::write(upload_dir.join("manifest-bad.json"), manifest.to_string()).expect("write");

    let shots = screenshots_dir();
    let mut cmd = Command::new(&node);
    cmd.arg(console.join("tests/registry.mjs"))
        .current_dir(&console)
        .env("SCO_CONSOLE_URL", sb.base_url())
        .env("SCO_CONSOLE_VIEWER_USER", VIEWER)
        .env("SCO_CONSOLE_VIEWER_PASSWORD", VIEWER_PASSWORD)
        .env("SCO_CONSOLE_OPERATOR_USER", "otto")
        .env("SCO_CONSOLE_OPERATOR_PASSWORD", OPERATOR_PASSWORD)
        .env("SCO_CONSOLE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("SCO_CONSOLE_UPLOAD_DIR", &upload_dir)
        .env("SCO_CONSOLE_UPLOAD_VERSION", UPLOAD_VERSION)
        .env("SCO_CONSOLE_HOST", "agent-1")
        .env("SCO_CONSOLE_MODEL_VERSION", "1.1.0-console")
        .env("SCO_CONSOLE_MODEL_NUMBER", number.to_string())
        .env("SCO_CONSOLE_LEARNT_RULE", "learnt/fix")
        .env("SCO_CONSOLE_LEARNT_CONTEXT", &context)
        .env("SCO_CONSOLE_SCREENSHOTS", &shots)
        .env(
            "SCO_CONSOLE_PATIENCE_MS",
            (patience() * 2)
                .max(Duration::from_secs(90))
                .as_millis()
                .to_string(),
        )
        .env(CHROMIUM_ENV, &chromium);
    let status = tokio::task::spawn_blocking(move || cmd.status())
        .await
        .expect("join the browser run")
        .expect("run node");
    assert!(
        status.success(),
        "the browser run failed ({status}); its steps are above, screenshots in {}",
        shots.display()
    );

    // The operator's reset is what the server did.
    let (_, body) = sb.get(&admin, "/remediation/preferences").await;
    assert_eq!(body["count"], 0, "{body}");
    let (_, body) = sb
        .get(&admin, "/audit?action=remediation.preferences_reset")
        .await;
    assert_eq!(body["entries"][0]["actor"], "otto", "{body}");
    assert_eq!(body["entries"][0]["detail"]["deleted"], 2, "{body}");

    // The admin's upload and rollout through the forms are what the server did: the
    // refused upload stored nothing, the other is the next number, card included, and
    // its rollout (everyone at once, for agent-1 only) is the admin's and reached the host.
    let (status, body) = sb.get(&admin, &format!("/models/{UPLOAD_VERSION}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"]["number"], number + 1, "{body}");
    assert_eq!(body["model"]["created_by"], "admin", "{body}");
    let card = std::fs::read_to_string(shipped.join("MODEL_CARD.md")).expect("card");
    assert_eq!(
        body["model"]["card"],
        card.as_str(),
        "the card file was sent"
    );
    let rollout = &body["rollouts"][0];
    assert_eq!(rollout["state"], "complete", "{body}");
    assert_eq!(rollout["started_by"], "admin", "{body}");
    assert_eq!(rollout["target"]["hosts"], json!(["agent-1"]), "{body}");
    let (_, body) = sb.get(&admin, "/models").await;
    assert_eq!(
        body["count"], 2,
        "only the accepted upload was stored: {body}"
    );
    let (_, body) = sb
        .get(&admin, &format!("/models/{UPLOAD_VERSION}/status"))
        .await;
    assert!(
        body["hosts"].as_array().is_some_and(|h| h
            .iter()
            .any(|h| h["host_id"] == "agent-1" && h["in_sync"] == true)),
        "{body}"
    );
}

/// The version the admin uploads through the console's form.
const UPLOAD_VERSION: &str = "1.2.0-console";

/// A fleet of 1,000 simulated hosts (rows in the database, as agents would have left them):
/// the console counts them all, draws one page of rows, sorts and filters. The script
/// prints how long each took (the README quotes it); they are reported, not asserted.
#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_of_a_thousand_hosts() {
    let console = console_dir();
    let (node, chromium) = browser_tools(&console);
    let _one_browser = BROWSER.lock().await;
    let Some(sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    // SCO_TEST_BIN_DIR=/path/to/target/release measures a release build.
    let _cp = sb.start_control_plane_from_env();
    let admin = sb.admin_token().await;
    let pool = sb.db().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    for i in 0..1000 {
        sqlx::query(
            "INSERT INTO hosts (id, hostname, os, kernel, agent_version, labels, interval_ms,
                first_seen_ms, last_seen_ms, connected, cert_not_after_ms)
             VALUES ($1, $2, 'Debian GNU/Linux 12', '6.1.0', '0.1.0', $3, 1000, $4, $5, $6, $7)",
        )
        .bind(format!("sim-{i:04}"))
        .bind(format!("sim-host-{i:04}"))
        .bind(json!({"env": if i % 3 == 0 { "prod" } else { "staging" }, "rack": format!("r{:02}", i % 50)}).to_string())
        .bind(now - 86_400_000)
        .bind(now - (i % 120) * 1000)
        .bind(i64::from(i % 10 != 0))
        .bind(now + (i % 90 + 1) * 86_400_000)
        .execute(&pool)
        .await
        .expect("insert a simulated host");
    }
    let (status, body) = sb.get(&admin, "/hosts").await;
    assert_eq!(status, 200);
    assert_eq!(body["hosts"].as_array().map(Vec::len), Some(1000));

    let script = console.join("tests/load.mjs");
    let mut cmd = Command::new(&node);
    cmd.arg(&script)
        .current_dir(&console)
        .env("SCO_CONSOLE_URL", sb.base_url())
        .env("SCO_CONSOLE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("SCO_CONSOLE_HOSTS", "1000")
        .env(CHROMIUM_ENV, &chromium);
    let status = tokio::task::spawn_blocking(move || cmd.status())
        .await
        .expect("join the browser run")
        .expect("run node");
    assert!(
        status.success(),
        "the browser run failed ({status}); see above"
    );
}
