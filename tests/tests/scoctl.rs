//! The operator CLI end to end: the README's remediation walk-through driven through the
//! real `scoctl` binary against a real control plane and an agent that joined with a
//! token `scoctl` created. Login (and a refused one), the 0600 credentials file, a token
//! refresh, `apply` with its diff, `rollout status --watch`, a model directory uploaded
//! with `model upload` and rolled out to the agent's label with `model rollout` and
//! `model status --watch`, a proposal approved and carried out, a rule's learnt
//! preferences shown and reset (and a viewer refused the reset), `-o json`, errors and
//! logout.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sco_tests::{bin, free_addr, wait_for, Db, Proc, Sandbox};
use serde_json::{json, Value};

/// Runs `scoctl` against one server with its own credentials file.
struct Scoctl {
    server: String,
    credentials: PathBuf,
}

impl Scoctl {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("scoctl"));
        cmd.args(args)
            .env("SCO_SERVER", &self.server)
            .env("SCO_CREDENTIALS", &self.credentials)
            .env_remove("SCO_CA_FILE")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run scoctl")
    }

    /// Runs it, expecting success; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "scoctl {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs it with `-o json`, expecting success and one JSON document.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        let text = self.ok(&all);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("scoctl {args:?} -o json is not JSON ({e}):\n{text}"))
    }

    /// Runs it, expecting failure (exit status 1); its standard error.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "scoctl {args:?} should fail:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn stored(&self) -> Value {
        let text = std::fs::read_to_string(&self.credentials).expect("credentials file");
        serde_json::from_str(&text).expect("credentials JSON")
    }
}

fn old_files(dir: &Path, names: &[&str]) {
    std::fs::create_dir_all(dir).expect("mkdir");
    for n in names {
        let p = dir.join(n);
        std::fs::write(&p, vec![b'x'; 4096]).expect("write");
        let status = Command::new("touch")
            .args(["-d", "10 days ago"])
            .arg(&p)
            .status()
            .expect("touch");
        assert!(status.success());
    }
}

/// `sco-agent enroll` with a token and fingerprint `scoctl token create` printed, then
/// the agent started with what it wrote.
fn enroll_and_start(sb: &Sandbox, token: &str, fingerprint: &str, extra: &str) -> Proc {
    let dir = sb.path().join("enrolled");
    let out = Command::new(bin("sco-agent"))
        .args(["enroll", "--server", &sb.grpc_addr.to_string()])
        .args(["--token", token, "--ca-sha256", fingerprint])
        .args(["--server-name", "localhost", "--out"])
        .arg(&dir)
        .output()
        .expect("run sco-agent enroll");
    assert!(
        out.status.success(),
        "enroll: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let config = dir.join("agent.toml");
    let text = format!(
        "[agent]\ndata_dir = \"{d}/data\"\ninterval_ms = 200\nrollup_secs = 1\nprocess_interval_secs = 2\n\
         [server]\nendpoints = [\"{addr}\"]\nserver_name = \"localhost\"\nca = \"{d}/ca.pem\"\n\
         cert = \"{d}/agent.pem\"\nkey = \"{d}/agent.key\"\nheartbeat_secs = 1\ndead_after_secs = 4\n\
         backoff_initial_ms = 100\nbackoff_max_ms = 1000\n{extra}",
        d = dir.display(),
        addr = sb.grpc_addr
    );
    std::fs::write(&config, text).expect("write agent config");
    Proc::spawn(
        "enrolled agent",
        Command::new(bin("sco-agent"))
            .args(["run", "--config"])
            .arg(&config),
        &sb.path().join("enrolled-agent.log"),
    )
}

/// A copy of `models/shipped` in `dir` whose manifest names `version`.
fn model_copy(dir: &Path, version: &str) -> PathBuf {
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/shipped");
    std::fs::create_dir_all(dir).expect("mkdir");
    for entry in std::fs::read_dir(&shipped).expect("models/shipped") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy");
    }
    let path = dir.join("manifest.json");
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("manifest")).expect("JSON");
    manifest["version"] = json!(version);
    std::fs::write(&path, manifest.to_string()).expect("write manifest");
    dir.to_path_buf()
}

/// A rule with two candidates whose first runs (`journalctl` is `/bin/true` on the agent)
/// and verifies at once; the cooldown keeps it to one incident during the test.
const LEARN_POLICY: &str = r#"
name: learnt
rules:
  - name: fix
    when: { state: ["mem.used_pct >= 0"] }
    candidates:
      - { type: journal_vacuum, max_size_mb: 100 }
      - { type: restart_service, unit: app.service }
    mode: auto
    cooldown_secs: 600
    verify: { metric: mem.used_pct, below: 101, within_secs: 10 }
"#;

fn policy(root: &Path, cooldown: u32) -> String {
    format!(
        "name: cleanup\n\
         target: {{ labels: {{ role: web }} }}\n\
         rules:\n  \
           - name: clean-old\n    \
             when: {{ state: [\"mem.used_pct >= 0\"] }}\n    \
             action: {{ type: clean_paths, root: \"{}\", patterns: [\"*.log\"], older_than_days: 1, max_bytes: 1000000 }}\n    \
             mode: approve\n    \
             cooldown_secs: {cooldown}\n    \
             verify: {{ metric: mem.used_pct, below: 101, within_secs: 10 }}\n",
        root.display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_remediation_walk_through_with_scoctl() {
    let Some(mut sb) = Sandbox::new(Db::Sqlite).await else {
        return;
    };
    sb.control_plane_extra = "[remediation]\ntick_ms = 200\n".into();
    let _cp = sb.start_control_plane();
    // The harness makes the first admin; scoctl's operator is an admin it registers,
    // so this test knows the password whatever way the first admin came to be.
    let admin = sb.admin_token().await;
    let (status, body) = sb
        .post(
            &admin,
            "/auth/register",
            &json!({"username": "ops", "password": "ops-password-1", "role": "admin"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let home = sb.path().join("home");
    let ctl = Scoctl {
        server: sb.base_url(),
        credentials: home.join("scoctl/credentials.json"),
    };

    // Nothing works before a login, and the message says what to do.
    let err = ctl.fails(&["get", "hosts"]);
    assert!(
        err.contains("not logged in to") && err.contains("scoctl login"),
        "{err}"
    );

    // A wrong password: exit status 1, the server's status and message, nothing stored.
    let wrong = sb.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-password\n").expect("write");
    let err = ctl.fails(&[
        "login",
        "--username",
        "ops",
        "--password-file",
        wrong.to_str().expect("utf-8 path"),
    ]);
    assert!(
        err.contains("HTTP 401") && err.contains("invalid username or password"),
        "{err}"
    );
    assert!(!ctl.credentials.exists(), "a failed login stored nothing");

    // A server that is not there is named.
    let nowhere = format!("http://{}", free_addr());
    let err = ctl.fails(&[
        "--server",
        &nowhere,
        "login",
        "--username",
        "ops",
        "--password-file",
        wrong.to_str().expect("utf-8 path"),
    ]);
    assert!(
        err.contains(&format!("cannot reach the control plane at {nowhere}")),
        "{err}"
    );

    // The real login, the password on standard input (not a TTY here).
    let mut child = ctl
        .command(&["login", "--username", "ops"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn scoctl login");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"ops-password-1\n")
            .expect("write password");
    }
    let out = child.wait_with_output().expect("scoctl login");
    assert!(
        out.status.success(),
        "login: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("logged in to {} as ops (admin)", sb.base_url())),
        "{text}"
    );
    let mode = std::fs::metadata(&ctl.credentials)
        .expect("credentials file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "credentials file mode {mode:o}");
    let session = &ctl.stored()["servers"][sb.base_url()];
    assert_eq!(session["username"], "ops");
    assert!(session["refresh_token"]
        .as_str()
        .is_some_and(|t| t.starts_with("rt_")));

    // An expired access token is refreshed with the refresh token, which rotates.
    let mut stored = ctl.stored();
    let old_refresh = stored["servers"][sb.base_url()]["refresh_token"].clone();
    stored["servers"][sb.base_url()]["expires_at"] = json!(0);
    std::fs::write(&ctl.credentials, stored.to_string()).expect("rewrite credentials");
    let hosts = ctl.json(&["get", "hosts"]);
    assert_eq!(hosts["hosts"], json!([]), "{hosts}");
    let after = ctl.stored();
    let fresh = &after["servers"][sb.base_url()];
    assert_ne!(
        fresh["refresh_token"], old_refresh,
        "the refresh token rotated"
    );
    assert!(fresh["expires_at"].as_i64().unwrap_or(0) > 0);
    let mode = std::fs::metadata(&ctl.credentials)
        .expect("credentials file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "still 0600 after the refresh");

    // An enrollment token, and an agent that joins with it.
    let token = ctl.json(&["token", "create", "--ttl", "10m", "--label", "role=web"]);
    assert_eq!(
        token["enrollment_token"]["labels"]["role"], "web",
        "{token}"
    );
    let secret = token["token"].as_str().expect("token").to_string();
    let fingerprint = token["ca_sha256"].as_str().expect("ca_sha256").to_string();
    let clean_root = sb.path().join("cleanable");
    let root = clean_root.join("web");
    old_files(&root, &["1.log", "2.log"]);
    let _agent = enroll_and_start(
        &sb,
        &secret,
        &fingerprint,
        &format!(
            "[remediate]\nclean_roots = [\"{}\"]\njournalctl = \"/bin/true\"\nsystemctl = \"/bin/true\"\n",
            clean_root.display()
        ),
    );
    let host = wait_for("the enrolled agent to connect", || async {
        let v = ctl.json(&["get", "hosts"]);
        v["hosts"]
            .as_array()?
            .iter()
            .find(|h| h["connected"] == true)
            .cloned()
    })
    .await;
    let host_id = host["id"].as_str().expect("host id").to_string();
    let hostname = host["hostname"].as_str().expect("hostname").to_string();
    assert_eq!(host["labels"]["role"], "web", "{host}");
    let table = ctl.ok(&["get", "hosts"]);
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("ID") && header.contains("HOSTNAME"),
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with(&host_id))
        .unwrap_or_else(|| panic!("{host_id} in:\n{table}"));
    assert!(
        row.contains("connected") && row.contains("role=web"),
        "{table}"
    );
    let transport_col = header.find("TRANSPORT").expect("TRANSPORT column");
    assert_eq!(
        row.get(transport_col..transport_col + 4),
        Some("grpc"),
        "{table}"
    );
    // Columns are aligned: every header after the first starts where its cells do.
    let status_col = header.find("STATUS").expect("STATUS column");
    assert_eq!(
        row.get(status_col..status_col + 9),
        Some("connected"),
        "{table}"
    );

    let described = ctl.ok(&["describe", "host", &hostname]);
    assert!(
        described.contains("id:") && described.contains(&host_id),
        "{described}"
    );
    assert!(described.contains("status:") && described.contains("connected"));

    // apply --dry-run shows the new document and stores nothing.
    let file = sb.path().join("cleanup.yaml");
    std::fs::write(&file, policy(&root, 300)).expect("write policy");
    let file = file.to_str().expect("utf-8 path").to_string();
    let dry = ctl.ok(&["apply", "-f", &file, "--dry-run"]);
    assert!(dry.starts_with("policy cleanup: new\n"), "{dry}");
    assert!(dry.contains("+       \"mode\": \"approve\","), "{dry}");
    assert!(dry.contains("(dry run: nothing stored)"), "{dry}");
    assert_eq!(ctl.json(&["get", "policies"])["count"], 0);

    // The model registry: empty, then the shipped model directory uploaded with
    // `scoctl model upload` under another version (a copy whose manifest says so).
    assert_eq!(ctl.ok(&["get", "models"]), "nothing found\n");
    let model_dir = model_copy(&sb.path().join("model"), "2.0.0-cli");
    let model_arg = model_dir.to_str().expect("utf-8 path");
    let uploaded = ctl.ok(&["model", "upload", model_arg]);
    assert!(
        uploaded.contains("model sco-window-pca 2.0.0-cli stored as number 1")
            && uploaded.contains("scoctl model rollout 2.0.0-cli"),
        "{uploaded}"
    );
    let models = ctl.ok(&["get", "models"]);
    let row = models.lines().nth(1).unwrap_or_default();
    assert!(
        models.starts_with("NUMBER") && row.contains("2.0.0-cli"),
        "{models}"
    );
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(model_dir.join("manifest.json")).expect("manifest"),
    )
    .expect("manifest JSON");
    let sha = manifest["sha256"].as_str().unwrap_or_default();
    assert!(
        row.contains("sco-window-pca") && row.contains(&sha[..12]),
        "{models}"
    );
    let listed = ctl.json(&["get", "models"]);
    assert_eq!(listed["models"][0]["number"], 1);
    // Every file of the directory was sent, the card and evaluation included.
    let (_, stored) = sb.get(&admin, "/models/2.0.0-cli").await;
    let card = std::fs::read_to_string(model_dir.join("MODEL_CARD.md")).expect("card");
    assert_eq!(stored["model"]["card"], card.as_str(), "{stored}");
    let evaluation: Value = serde_json::from_str(
        &std::fs::read_to_string(model_dir.join("evaluation.json")).expect("evaluation"),
    )
    .expect("evaluation JSON");
    assert_eq!(stored["model"]["evaluation"], evaluation);
    // The same version again, a directory without a manifest, a manifest that is not
    // JSON, a model the server refuses: each said plainly.
    let err = ctl.fails(&["model", "upload", model_arg]);
    assert!(err.contains("HTTP 409"), "{err}");
    let empty = sb.path().join("empty-model");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let err = ctl.fails(&["model", "upload", empty.to_str().expect("utf-8 path")]);
    assert!(err.contains("empty-model/manifest.json"), "{err}");
    std::fs::write(empty.join("manifest.json"), "{\"file\": ").expect("write");
    let err = ctl.fails(&["model", "upload", empty.to_str().expect("utf-8 path")]);
    assert!(err.contains("manifest.json is not JSON"), "{err}");
    let tampered = model_copy(&sb.path().join("tampered"), "2.0.1-cli");
    let mut bad_manifest = manifest.clone();
    bad_manifest["version"] = json!("2.0.1-cli");
    bad_manifest["sha256"] = json!("0".repeat(64));
    std::fs::write(tampered.join("manifest.json"), bad_manifest.to_string()).expect("write");
    let err = ctl.fails(&["model", "upload", tampered.to_str().expect("utf-8 path")]);
    assert!(
        err.contains("HTTP 400") && err.contains("sha256 mismatch"),
        "{err}"
    );

    // A bad document is refused before anything is sent, naming the field.
    let bad = sb.path().join("bad.yaml");
    std::fs::write(
        &bad,
        policy(&root, 300).replace("mode: approve", "mode: sometimes"),
    )
    .expect("write");
    let err = ctl.fails(&["apply", "-f", bad.to_str().expect("utf-8 path")]);
    assert!(err.contains("rules[0].mode"), "{err}");

    // apply: revision 1, rolled out to every host at once.
    let applied = ctl.ok(&["apply", "-f", &file, "--canary-percent", "0"]);
    assert!(applied.contains("revision 1 stored"), "{applied}");
    assert!(applied.contains("complete"), "{applied}");

    // A changed document: the diff against revision 1, in the canonical form.
    let changed = sb.path().join("cleanup-2.yaml");
    std::fs::write(&changed, policy(&root, 600)).expect("write");
    let diff = ctl.json(&[
        "apply",
        "-f",
        changed.to_str().expect("utf-8 path"),
        "--dry-run",
    ]);
    assert_eq!(diff["current_revision"], 1, "{diff}");
    assert_eq!(diff["changed"], true);
    let diff = diff["diff"].as_str().unwrap_or_default();
    assert!(
        diff.contains("-       \"cooldown_secs\": 300,")
            && diff.contains("+       \"cooldown_secs\": 600,"),
        "{diff}"
    );
    assert_eq!(
        diff.lines().filter(|l| l.starts_with(['-', '+'])).count(),
        2,
        "only the cooldown changed:\n{diff}"
    );

    // rollout status --watch returns once the host runs revision 1.
    let watched = ctl.ok(&["rollout", "status", "--watch", "--timeout", "60"]);
    assert!(
        watched.contains("rollout of cleanup complete: every connected host runs it"),
        "{watched}"
    );
    let line = watched
        .lines()
        .rev()
        .find(|l| l.starts_with(&host_id))
        .unwrap_or_else(|| panic!("{host_id} in:\n{watched}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    // HOST CONNECTED CANARY DESIRED APPLIED IN SYNC
    assert_eq!(
        cells.get(1..6),
        Some(&["yes", "no", "1", "1", "yes"][..]),
        "{watched}"
    );
    let policies = ctl.ok(&["get", "policies"]);
    assert!(policies.contains("revision 1 complete"), "{policies}");

    // The model to the web hosts, everyone at once; a bad target is refused naming the field.
    let err = ctl.fails(&["model", "rollout", "2.0.0-cli", "--label", "role=cache"]);
    assert!(
        err.contains("HTTP 400") && err.contains("target: selects no"),
        "{err}"
    );
    let started = ctl.ok(&[
        "model",
        "rollout",
        "2.0.0-cli",
        "--canary-percent",
        "0",
        "--label",
        "role=web",
        "--max-new-anomalies",
        "5",
    ]);
    assert!(
        started.contains("model 2.0.0-cli: rollout")
            && started.contains("complete for role=web (canary none)")
            && started.contains("scoctl model status 2.0.0-cli --watch"),
        "{started}"
    );
    let watched = ctl.ok(&[
        "model",
        "status",
        "2.0.0-cli",
        "--watch",
        "--interval",
        "1s",
        "--timeout",
        "60",
    ]);
    assert!(
        watched.contains("rollout of model 2.0.0-cli complete: every connected host runs it"),
        "{watched}"
    );
    assert!(
        watched.contains("model 2.0.0-cli (number 1): rollout")
            && watched.contains("complete for role=web (previous model own)"),
        "{watched}"
    );
    let line = watched
        .lines()
        .rev()
        .find(|l| l.starts_with(&host_id))
        .unwrap_or_else(|| panic!("{host_id} in:\n{watched}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    // HOST CONNECTED CANARY MEANT REPORTED RUNNING (model) IN SYNC
    assert_eq!(
        cells.get(1..8),
        Some(
            &[
                "yes",
                "no",
                "1",
                "1",
                "1",
                "(sco-window-pca@2.0.0-cli)",
                "yes"
            ][..]
        ),
        "{watched}"
    );
    // Watching a version the newest rollout is not of ends at once, saying so; an unknown
    // version is the server's 404.
    let err = ctl.fails(&["model", "status", "builtin", "--watch", "--timeout", "30"]);
    assert!(
        err.contains("the newest model rollout is of number 1, not of builtin"),
        "{err}"
    );
    let err = ctl.fails(&["model", "rollout", "9.9.9-none"]);
    assert!(err.contains("HTTP 404"), "{err}");
    let status = ctl.json(&["model", "status", "2.0.0-cli"]);
    assert_eq!(status["hosts"][0]["in_sync"], true, "{status}");
    assert_eq!(status["rollout"]["target"]["labels"]["role"], "web");
    let models = ctl.ok(&["get", "models"]);
    let header = models.lines().next().unwrap_or_default();
    let row = models.lines().nth(1).unwrap_or_default();
    let target_col = header.find("TARGET").expect("TARGET column");
    assert!(
        row.contains("complete") && row.get(target_col..target_col + 8) == Some("role=web"),
        "{models}"
    );

    // The approve rule proposes; get actions shows the proposal.
    let proposal = wait_for("a proposal of cleanup/clean-old", || async {
        let v = ctl.json(&["get", "actions", "--host", &hostname, "--state", "proposed"]);
        v["actions"].as_array()?.first().cloned()
    })
    .await;
    assert_eq!(proposal["rule"], "cleanup/clean-old", "{proposal}");
    assert_eq!(proposal["approval"], "approve", "{proposal}");
    assert_eq!(proposal["host_id"], host_id.as_str());
    let id = proposal["id"].as_str().expect("action id").to_string();
    let table = ctl.ok(&["get", "actions", "--rule", "cleanup/clean-old"]);
    let row = table
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} in:\n{table}"));
    assert!(
        row.contains("clean_paths") && row.contains("proposed"),
        "{table}"
    );
    assert!(
        root.join("1.log").exists(),
        "nothing ran before the approval"
    );

    // Approve it; it runs, verifies and deletes the old files.
    let approved = ctl.ok(&["approve", &id]);
    assert!(approved.contains("approved by ops"), "{approved}");
    let done = wait_for("the approved action to finish", || async {
        let v = ctl.json(&["get", "actions", "--rule", "cleanup/clean-old"]);
        v["actions"]
            .as_array()?
            .iter()
            .find(|a| {
                a["id"] == id.as_str()
                    && ["succeeded", "failed", "refused"]
                        .contains(&a["state"].as_str().unwrap_or(""))
            })
            .cloned()
    })
    .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["decided_by"], "ops");
    assert!(!root.join("1.log").exists() && !root.join("2.log").exists());
    let table = ctl.ok(&["get", "actions", "--state", "succeeded"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("succeeded")),
        "{table}"
    );

    // Deciding again is refused with the server's status and message.
    let err = ctl.fails(&["reject", &id]);
    assert!(err.contains("HTTP 409"), "{err}");

    // A rejection says why; the reason is kept with the decision, shown with the action
    // and audited. (The rule's cooldown keeps the agent from proposing again for minutes,
    // so this proposal is written the way the control plane stores one.)
    let waiting = "act-reject-reason";
    let db = sb.db().await;
    sqlx::query(
        "INSERT INTO remediation_actions (id, host_id, rule, policy, action, mode, approval, state,
            requested_by, created_at_ms, updated_at_ms)
         VALUES ($1, $2, 'cleanup/clean-old', 'cleanup', '{\"type\": \"clean_paths\"}', 'execute',
            'approve', 'proposed', $3, 1, 1)",
    )
    .bind(waiting)
    .bind(&host_id)
    .bind(format!("agent:{host_id}"))
    .execute(&db)
    .await
    .expect("insert a proposal");
    db.close().await;
    let err = ctl.fails(&["reject", waiting, "--reason", "two\nlines"]);
    assert!(err.contains("HTTP 400") && err.contains("reason"), "{err}");
    let rejected = ctl.ok(&["reject", waiting, "--reason", "change freeze until Monday"]);
    assert!(
        rejected.contains("rejected by ops")
            && rejected.contains("reason: change freeze until Monday"),
        "{rejected}"
    );
    let v = ctl.json(&["get", "actions", "--state", "rejected"]);
    let stored = v["actions"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["id"] == waiting))
        .unwrap_or_else(|| panic!("{waiting} in {v}"));
    assert_eq!(stored["reason"], "change freeze until Monday", "{stored}");
    assert_eq!(stored["decided_by"], "ops", "{stored}");
    let table = ctl.ok(&["get", "actions", "--state", "rejected"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(waiting) && l.ends_with("change freeze until Monday")),
        "{table}"
    );
    let (_, audit) = sb.get(&admin, "/audit?action=remediation.reject").await;
    assert_eq!(
        audit["entries"][0]["detail"]["reason"], "change freeze until Monday",
        "{audit}"
    );
    let err = ctl.fails(&["get", "actions", "--host", "no-such-host"]);
    assert!(err.contains("no host \"no-such-host\""), "{err}");

    // Learnt preferences: nothing yet, then a rule with candidates whose first runs and
    // verifies once, shown per candidate; a reset needs --yes without a terminal, a
    // viewer may look but not reset, and an operator's reset empties it.
    let nothing = ctl.ok(&["get", "preferences"]);
    assert_eq!(
        nothing,
        "nothing learnt yet for every rule and context: rules with `candidates` learn from their verified outcomes\n"
    );
    let learn = sb.path().join("learnt.yaml");
    std::fs::write(&learn, LEARN_POLICY).expect("write");
    let applied = ctl.ok(&[
        "apply",
        "-f",
        learn.to_str().expect("utf-8 path"),
        "--canary-percent",
        "0",
    ]);
    assert!(applied.contains("revision 1 stored"), "{applied}");
    let learnt = wait_for("a verified outcome of learnt/fix", || async {
        let v = ctl.json(&["get", "preferences", "--rule", "learnt/fix"]);
        let p = v["preferences"].as_array()?.first()?.clone();
        (p["candidates"][0]["successes"] == 1).then_some(p)
    })
    .await;
    let context = learnt["context"].as_str().expect("context").to_string();
    let table = ctl.ok(&["get", "preferences", "--context", &context]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("RULE") && lines[0].ends_with("SUCCESSES  FAILURES  SCORE  NEXT"),
        "{table}"
    );
    let first: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        (first[0], first[1], first[2]),
        ("learnt/fix", context.as_str(), "journal_vacuum"),
        "{table}"
    );
    assert_eq!(
        first[first.len() - 4..],
        ["1", "0", "0.75", "yes"],
        "{table}"
    );
    let second: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(second[2], "restart_service", "{table}");
    assert_eq!(second[second.len() - 3..], ["0", "0", "0.50"], "{table}");
    let err = ctl.fails(&["reset", "preferences", "--rule", "learnt/fix"]);
    assert!(err.contains("pass --yes"), "{err}");
    let (status, body) = sb
        .post(
            &admin,
            "/auth/register",
            &json!({"username": "vic", "password": "viewer-password-1", "role": "viewer"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let viewer = Scoctl {
        server: sb.base_url(),
        credentials: home.join("viewer/credentials.json"),
    };
    let vic = sb.path().join("vic-password");
    std::fs::write(&vic, "viewer-password-1\n").expect("write");
    viewer.ok(&[
        "login",
        "--username",
        "vic",
        "--password-file",
        vic.to_str().expect("utf-8 path"),
    ]);
    assert!(viewer
        .ok(&["get", "preferences"])
        .contains("journal_vacuum"));
    let err = viewer.fails(&["reset", "preferences", "--yes"]);
    assert!(err.contains("HTTP 403"), "{err}");
    let err = viewer.fails(&["model", "upload", model_arg]);
    assert!(err.contains("HTTP 403"), "{err}");
    let reset = ctl.ok(&["reset", "preferences", "--rule", "learnt/fix", "--yes"]);
    assert_eq!(
        reset,
        "forgot 2 candidate tallies of rule learnt/fix: the next incidents run the candidates in their written order\n"
    );
    assert_eq!(ctl.json(&["get", "preferences"])["count"], 0);
    let (_, audit) = sb
        .get(&admin, "/audit?action=remediation.preferences_reset")
        .await;
    assert_eq!(audit["entries"][0]["actor"], "ops", "{audit}");

    // Completions and the man page come from the same definition.
    let bash = ctl.ok(&["completions", "bash"]);
    assert!(
        bash.contains("scoctl") && bash.contains("rollout"),
        "{bash}"
    );
    let man = ctl.ok(&["man"]);
    assert!(man.contains(".TH scoctl"), "{}", &man[..man.len().min(400)]);

    // Logout ends the session on the server and forgets it here.
    let access = ctl.stored()["servers"][sb.base_url()]["token"]
        .as_str()
        .expect("access token")
        .to_string();
    let out = ctl.ok(&["logout"]);
    assert!(out.contains("logged out"), "{out}");
    assert!(ctl.stored()["servers"].get(sb.base_url()).is_none());
    let (status, _) = sb.get(&access, "/hosts").await;
    assert_eq!(status, 401, "the old access token no longer works");
    let err = ctl.fails(&["get", "hosts"]);
    assert!(err.contains("not logged in"), "{err}");
}
