//! Learning which fix works, with real processes: a memory hog (a `python3` child of the
//! test holding a quarter of the host's memory, at most a third of what is free, and
//! holding all of it before the rule may fire; one hog per incident) is the
//! cause of each incident; a rule lists two candidate actions. The first (`journal_vacuum`,
//! `journalctl` = `/bin/true`) runs and succeeds but does nothing about the hog, so the
//! rule's shared verification (memory back under a threshold set from this host's baseline)
//! never holds; the second (`kill_process` of the top memory consumer matching the hog's
//! marker) ends the hog and the verification holds. The control plane's choice moves to
//! the second within a bounded number of incidents and stays there, across a control-plane
//! restart, until an operator resets what was learnt. A dry-run rule with the same
//! candidates records what it would have chosen and learns nothing.

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use sco_tests::{wait_for, wait_for_longer, Db, Sandbox};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const RULE: &str = "learn/fix";
const WATCH: &str = "learn/watch";
/// How long an executed action's verification may take.
const VERIFY_SECS: u64 = 20;

/// Memory is host-wide: the two variants must not measure each other's hogs.
static HOST_MEMORY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `(MemTotal, MemAvailable)` in bytes, as the agent reads them.
fn meminfo() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/meminfo").expect("read /proc/meminfo");
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("{name} in /proc/meminfo"))
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

/// `mem.used_pct` as the agent computes it: (total - available) / total.
fn used_pct() -> f64 {
    let (total, available) = meminfo();
    total.saturating_sub(available) as f64 * 100.0 / total as f64
}

/// What the incidents are measured against.
struct Plan {
    /// Bytes each hog holds resident.
    hog_bytes: u64,
    /// The same as a share of the host's memory, in %.
    hog_pct: f64,
}

impl Plan {
    fn measure() -> Self {
        let (total, available) = meminfo();
        // a quarter of the host, but never more than a third of what is free
        let hog_bytes = (total / 4).min(available / 3);
        let hog_pct = hog_bytes as f64 * 100.0 / total as f64;
        assert!(
            hog_pct >= 10.0,
            "too little free memory for a clear signal: a hog would be {hog_pct:.1} % of the host"
        );
        Self { hog_bytes, hog_pct }
    }

    /// The threshold of the next incident, measured on the host as it is now, without a
    /// hog: the rule fires at or above it and its verification holds below it. Halfway
    /// between the baseline and the baseline plus a hog, so either side has half a hog
    /// (about an eighth of the host's memory) of margin against other work on the host;
    /// measured again for each incident, so that other work's memory drifting between
    /// incidents does not eat that margin.
    fn threshold(&self) -> f64 {
        let baseline = used_pct();
        let t = baseline + self.hog_pct / 2.0;
        eprintln!("memory: baseline {baseline:.1} %, threshold {t:.1} %");
        t
    }
}

/// A `python3` process that writes `bytes` of memory (so they are resident), says so on its
/// standard output and holds them until it is killed; its command line carries `marker`.
struct Hog {
    child: Child,
    pid: u32,
}

impl Hog {
    /// Starts a hog and returns once all its memory is resident, so that the rule fires
    /// with the host a whole hog above its baseline, not while it is still growing near
    /// the threshold (where other work's memory could push it back under).
    async fn start(bytes: u64, marker: &str) -> Self {
        let mut child = Command::new("python3")
            .args([
                "-c",
                "import sys, time\nb = b'\\x01' * int(sys.argv[1])\nprint('ready', flush=True)\n\
                 time.sleep(3600)\n",
                &bytes.to_string(),
                marker,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start python3 (the memory hog)");
        let pid = child.id().expect("the hog's pid");
        let stdout = child.stdout.take().expect("the hog's stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .expect("the hog to hold its memory within 120 s")
            .expect("read the hog's stdout");
        assert_eq!(ready.as_deref(), Some("ready"), "the hog's first line");
        Self { child, pid }
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// The policy: revision `incident` (a new revision starts a new episode, so each one is an
/// incident of its own), its rules firing at `t` (% memory used). Both candidates run on
/// this agent; only the second removes the cause, and `verify` (shared by the candidates)
/// holds only once it is gone.
fn policy(incident: usize, t: f64, marker: &str) -> String {
    let rule = |name: &str, mode: &str| {
        format!(
            "  - name: {name}\n    when: {{ state: [\"mem.used_pct >= {t:.2}\"] }}\n    candidates:\n      \
             - {{ type: journal_vacuum, max_size_mb: 100 }}\n      \
             - {{ type: kill_process, top_consumer: memory, pattern: \"*{marker}*\", grace_secs: 2 }}\n    \
             mode: {mode}\n    cooldown_secs: 0\n    max_per_hour: 60\n    \
             verify: {{ metric: mem.used_pct, below: {t:.2}, within_secs: {VERIFY_SECS} }}\n"
        )
    };
    format!(
        "name: learn\ndescription: incident {incident}\nrules:\n{}{}",
        rule("fix", "auto"),
        rule("watch", "dry_run")
    )
}

/// The incidents of one test: the hog that causes them and the requests already seen.
struct Incidents<'a> {
    sb: &'a Sandbox,
    admin: &'a str,
    plan: Plan,
    marker: String,
    hog: Option<Hog>,
    seen: HashSet<String>,
}

impl Incidents<'_> {
    /// Holds the rules back (a revision that cannot fire), ends the last hog if one is left,
    /// measures the threshold, starts a hog and waits until it holds its memory, then
    /// publishes the next revision, which fires at once; waits for the new requests of both
    /// rules to finish and checks what each candidate did to the hog; returns (the executed
    /// one, the dry run).
    async fn run(&mut self, n: usize) -> (Value, Value) {
        let (sb, admin) = (self.sb, self.admin);
        let held = sb
            .publish_policy(admin, &policy(n, 100.0, &self.marker))
            .await;
        sb.wait_policy_applied(admin, "learn", "agent-1", held)
            .await;
        self.end_hog().await;
        let t = self.plan.threshold();
        self.hog = Some(Hog::start(self.plan.hog_bytes, &self.marker).await);
        let revision = sb.publish_policy(admin, &policy(n, t, &self.marker)).await;
        sb.wait_policy_applied(admin, "learn", "agent-1", revision)
            .await;
        let hog_pid = self.hog.as_ref().map(|h| h.pid).expect("a hog");
        let done = |rule: &'static str, states: &'static [&'static str]| {
            let seen = &self.seen;
            async move {
                // the candidates' checks, the action, then the verification window
                let extra = Duration::from_secs(VERIFY_SECS + 60);
                wait_for_longer(
                    &format!("incident {n} of {rule} to finish"),
                    extra,
                    || async {
                        sb.actions(admin, "agent-1").await.into_iter().find(|a| {
                            a["rule"] == rule
                                && !seen.contains(a["id"].as_str().unwrap_or_default())
                                && states.contains(&a["state"].as_str().unwrap_or_default())
                        })
                    },
                )
                .await
            }
        };
        let fix = done(RULE, &["succeeded", "failed", "refused"]).await;
        let watch = done(WATCH, &["dry_run", "refused"]).await;
        for a in [&fix, &watch] {
            self.seen.insert(a["id"].as_str().expect("id").to_string());
        }
        let report = &fix["report"];
        // Both candidates run, under a lease, and succeed as commands.
        assert_eq!(report["decision"], "executed", "incident {n}: {fix}");
        assert!(report["lease"].is_string(), "under a lease: {fix}");
        let verification = &report["verification"]["state"];
        match kind(&fix) {
            "journal_vacuum" => {
                assert_eq!(
                    report["exit_code"], 0,
                    "the vacuum ran and succeeded: {fix}"
                );
                // ... but the hog is untouched, so memory never came back under the threshold
                assert_eq!(verification["state"], "failed", "{fix}");
                assert!(
                    verification["last_value"].as_f64().is_some_and(|v| v >= t),
                    "last value at or above {t:.2}: {fix}"
                );
                assert_eq!(fix["state"], "failed", "{fix}");
                assert!(
                    fix["reason"]
                        .as_str()
                        .unwrap_or_default()
                        .starts_with("verification_failed: mem.used_pct not below"),
                    "{fix}"
                );
                assert!(
                    self.hog.as_mut().is_some_and(Hog::running),
                    "the vacuum left the hog running: {fix}"
                );
            }
            "kill_process" => {
                assert_eq!(report["top_consumer"]["pid"], hog_pid, "{fix}");
                assert_eq!(report["top_consumer"]["resource"], "memory", "{fix}");
                assert_eq!(verification["state"], "passed", "{fix}");
                assert!(
                    verification["value"].as_f64().is_some_and(|v| v < t),
                    "memory under {t:.2} once the hog is gone: {fix}"
                );
                assert_eq!(fix["state"], "succeeded", "{fix}");
                let mut hog = self.hog.take().expect("a hog");
                let status = tokio::time::timeout(Duration::from_secs(10), hog.child.wait())
                    .await
                    .expect("the hog to be gone")
                    .expect("wait for the hog");
                assert!(!status.success(), "the hog was killed: {status}");
            }
            other => panic!("incident {n} ran {other:?}: {fix}"),
        }
        (fix, watch)
    }
}

impl Incidents<'_> {
    /// Kills the hog a vacuum left running and waits until it is gone (its memory with it).
    async fn end_hog(&mut self) {
        if let Some(mut hog) = self.hog.take() {
            hog.child.kill().await.expect("kill the hog");
        }
    }
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
    let _host = HOST_MEMORY.lock().await;
    sb.control_plane_extra = "[remediation]\ntick_ms = 200\n".into();
    let mut cp = sb.start_control_plane();
    // a breaker that stays closed through the first candidate's failed verifications:
    // the choice, not the breaker, is what moves away from it
    let _agent = sb.start_agent_with(
        "agent-1",
        "[remediate]\njournalctl = \"/bin/true\"\nbreaker_failures = 10\n",
    );
    let admin = sb.admin_token().await;
    let viewer = sb.add_user(&admin, "vera", "viewer").await;
    let operator = sb.add_user(&admin, "otto", "operator").await;
    wait_for("the agent to connect", || async {
        let (_, body) = sb.get(&admin, "/hosts/agent-1").await;
        (body["host"]["connected"] == true).then_some(())
    })
    .await;

    let plan = Plan::measure();
    eprintln!(
        "memory: hogs of {} MiB ({:.1} % of the host)",
        plan.hog_bytes >> 20,
        plan.hog_pct
    );
    let mut incidents = Incidents {
        sb: &sb,
        admin: &admin,
        plan,
        marker: format!("sco-learn-hog-{}", std::process::id()),
        hog: None,
        seen: HashSet::new(),
    };
    let mut chosen = Vec::new();
    for n in 1..=6 {
        let (fix, watch) = incidents.run(n).await;
        let choice = &fix["evidence"]["choice"];
        assert_eq!(choice["context"], "memory/state", "{fix}");
        assert_eq!(choice["of"], 2, "{fix}");
        assert_eq!(choice["learns"], true, "{fix}");
        let expected = if kind(&fix) == "journal_vacuum" { 0 } else { 1 };
        assert_eq!(choice["candidate"], expected, "{fix}");
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
        .position(|k| k == "kill_process")
        .expect("the second candidate was chosen");
    assert!(
        switched <= 3,
        "switched at incident {}: {chosen:?}",
        switched + 1
    );
    assert!(
        chosen[switched..].iter().all(|k| k == "kill_process"),
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
        assert_eq!(p["preferred"]["type"], "kill_process", "{p}");
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
    let (fix, _) = incidents.run(7).await;
    assert_eq!(kind(&fix), "kill_process", "{fix}");
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
    let (fix, _) = incidents.run(8).await;
    assert_eq!(kind(&fix), "journal_vacuum", "{fix}");
    // the vacuum left the last hog running: it is gone before the host is handed on
    incidents.end_hog().await;
}
