//! Local remediation: the typed allowlist of actions, the safety rules that
//! are checked right before each one runs, durable limits (cooldown, hourly
//! counts, host budget, circuit breaker), verification and a report for
//! every decision.
//!
//! - the allowlist ([`Action`]) and static checks of its fields are `sco-policy`'s, shared
//!   with the control plane.
//! - [`safety`]: host checks: protected processes, allowlisted roots and
//!   scripts, webhook prefixes.
//! - [`exec`]: argv-only command runner (scrubbed environment, timeout,
//!   capped output) and the TERM-then-KILL sequence.
//! - [`state`]: the sled database of limits, breakers and history.
//! - [`verify`]: the verification state machine.
//! - [`report`]: [`ActionReport`] and its reason codes.
//!
//! This file is long (about 1,000 lines, its tests are in `agent/tests/`) on
//! purpose: the checks below are one ordered sequence, and keeping them in one
//! place is what lets a reader confirm the order.
//!
//! Whoever asks (a policy rule, an approval, a manual trigger), the request
//! goes through [`Remediator::request`], which applies every rule in the same
//! order: static checks, lease (execute only), circuit breaker, cooldown,
//! per-rule hourly limit, host budget, host safety checks; then it records
//! the attempt durably and only then acts. The control plane can ask; the
//! agent decides.

pub mod exec;
pub mod report;
pub mod safety;
pub mod state;
pub mod verify;
pub mod webhook;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use report::{ActionReport, ConsumerEntry, Decision, FileEntry, Mode, ProcessEntry, Reason};
pub use sco_policy::action::{Action, Consumer};
pub use state::RuleState;
pub use verify::{Verification, VerifySpec, VerifyState};

use crate::clock::now_ms;
use crate::collect::processes::{self, Resource};
use crate::config::RemediateSection;
use safety::{ProcInfo, ProcessGuard};

type Refusal = (Reason, String);

/// A process using less CPU than this (percent of one core) over the window
/// is not a CPU consumer worth stopping.
const MIN_CONSUMER_CPU_PCT: f64 = 5.0;
/// How long a `top_consumer` kill measures CPU and I/O before choosing:
/// long enough for a busy process to stand out at 100 ticks a second,
/// short enough not to delay the action noticeably.
const CONSUMER_WINDOW: Duration = Duration::from_millis(500);

/// Heavier processes named in a report when the safety rules skipped them.
const MAX_SKIPPED_NOTED: usize = 5;

impl From<Consumer> for Resource {
    fn from(c: Consumer) -> Self {
        match c {
            Consumer::Cpu => Resource::Cpu,
            Consumer::Memory => Resource::Memory,
            Consumer::Io => Resource::Io,
        }
    }
}

/// Permission from the fleet to act now, handed out by the control plane so
/// that not every host remediates at once. Needed for every non-dry-run
/// action.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    pub token: String,
    /// Unix milliseconds after which the lease is void.
    pub expires_ms: i64,
}

/// One request, whatever its origin.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRequest {
    /// Rule (or `manual:<user>`, `approval:<id>`) the request comes from;
    /// cooldown, hourly limit and breaker are kept per rule.
    pub rule: String,
    pub action: Action,
    pub mode: Mode,
    pub lease: Option<Lease>,
    /// Minimum time between two executed actions of this rule.
    pub cooldown_secs: u64,
    /// Executed actions of this rule per rolling hour; 0 means no per-rule
    /// limit (the host budget still applies).
    pub max_per_hour: u32,
}

/// The outcome of [`Remediator::verify`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VerifyOutcome {
    pub rule: String,
    pub report_id: u64,
    pub state: VerifyState,
    /// The rule's breaker after this verification.
    pub breaker_open: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RemediateError {
    #[error("cannot open remediation state in {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error("remediation state: {0}")]
    Storage(#[from] sled::Error),
}

/// The plan of an action, resolved against the host.
enum Plan {
    Command(Vec<String>),
    Kill(Vec<ProcInfo>, Duration),
    Clean(Vec<FileEntry>),
    Notify(String, serde_json::Value),
}

pub struct Remediator {
    config: RemediateSection,
    state: state::State,
    guard: ProcessGuard,
    /// The procfs processes are looked up in (`agent.proc_root`).
    proc_root: PathBuf,
    http: Option<webhook::Webhook>,
    /// Standing refusals of [`Remediator::precheck`] already reported, by
    /// its key: repeating one while nothing changed would only add rows.
    refusals_reported: HashMap<String, Standing>,
}

/// A refusal that stays true until something changes: the cooldown that
/// started with the executed action at `last_ms` ends at `until_ms`; the
/// breaker open since `since_ms` stays open until a human resets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Cooldown { last_ms: i64, until_ms: i64 },
    Breaker { since_ms: i64 },
}

impl Standing {
    /// What the rule is in now, if anything (an open breaker first, as the
    /// checks refuse it first).
    fn of(rule: &RuleState, cooldown_secs: u64, now: i64) -> Option<Self> {
        if let Some(since_ms) = rule.breaker_open_since_ms {
            return Some(Self::Breaker { since_ms });
        }
        let until_ms = cooldown_until(rule, cooldown_secs)?;
        (now < until_ms).then_some(Self::Cooldown {
            last_ms: rule.last_ms?,
            until_ms,
        })
    }

    /// The reason the checks give for it.
    fn reason(self) -> Reason {
        match self {
            Self::Cooldown { .. } => Reason::CooldownActive,
            Self::Breaker { .. } => Reason::CircuitOpen,
        }
    }

    fn still_holds(self, now: i64) -> bool {
        match self {
            Self::Cooldown { until_ms, .. } => until_ms > now,
            Self::Breaker { .. } => true,
        }
    }
}

/// End of the cooldown that started with the last executed action, if any.
fn cooldown_until(rule: &RuleState, cooldown_secs: u64) -> Option<i64> {
    let last = rule.last_ms?;
    Some(last.saturating_add(i64::try_from(cooldown_secs.saturating_mul(1000)).unwrap_or(i64::MAX)))
}

/// One line for the report saying which checks ran, in the order they ran
/// (the last one refused if the report is a refusal), and what that means
/// for the mode used.
fn checks_note(mode: Mode, checked: &[&str], counted: bool) -> String {
    let list = if checked.is_empty() {
        "nothing".to_string()
    } else {
        checked.join(", ")
    };
    match mode {
        Mode::Execute if counted => {
            format!("execute: checked {list}; counted against the rule's and the host's limits")
        }
        Mode::Execute => format!("execute: checked {list}; nothing counted"),
        Mode::DryRun => {
            format!("dry run: checked {list}; no lease needed, nothing run or counted")
        }
        Mode::Precheck => format!(
            "pre-check of a rule that executes: checked {list}; nothing run or counted; \
             the fleet lease and every check again when the request runs"
        ),
    }
}

/// Refuses an action whose command (`key`: `remediate.systemctl` or
/// `remediate.journalctl`) is not an executable file here, before anything is
/// counted or run: e.g. an agent in a container without the host's systemd.
/// Trying would only fail, count against the limits and feed the breaker.
async fn check_command(key: &str, program: &Path, action: &Action) -> Result<(), Refusal> {
    use std::os::unix::fs::PermissionsExt;
    let why = match tokio::fs::metadata(program).await {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => return Ok(()),
        Ok(m) if m.is_file() => "is not executable".to_string(),
        Ok(_) => "is not a file".to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".to_string(),
        Err(e) => format!("cannot be read: {e}"),
    };
    Err((
        Reason::CommandMissing,
        format!(
            "{} cannot run here: {key} {} {why} (an agent in a container needs the host's \
             service manager and a {key} that reaches it)",
            action.kind(),
            program.display()
        ),
    ))
}

/// Rule names: what units allow plus `/`.
fn check_rule(rule: &str) -> Result<(), Refusal> {
    if (1..=128).contains(&rule.len())
        && rule
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@._:/-".contains(&b))
    {
        Ok(())
    } else {
        Err((
            Reason::InvalidAction,
            format!("rule {rule:?} does not match ^[A-Za-z0-9@._:/-]{{1,128}}$"),
        ))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Refusal> + Send + 'static,
) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err((Reason::Io, format!("check task failed: {e}"))))
}

/// The processes a `top_consumer` kill could choose from now: those whose command
/// line matches `pattern` (if given) and that the safety rules let it signal. Refused
/// as [`top_consumer_of`] would be when there is none; unprotected processes only, so
/// a pre-check does not refuse a rule because a protected process also matches.
fn consumer_candidates(
    proc_root: &Path,
    guard: &ProcessGuard,
    pattern: Option<&str>,
) -> Result<Vec<ProcInfo>, Refusal> {
    let found: Vec<ProcInfo> = safety::list_processes(proc_root)
        .into_iter()
        .filter(|p| !matches!(p.state, 'Z' | 'X'))
        .filter(|p| match pattern {
            Some(pat) => sco_policy::glob_match(pat, &p.cmdline),
            None => true,
        })
        .filter(|p| guard.check(p).is_ok())
        .collect();
    if found.is_empty() {
        return Err((
            Reason::NoMatchingProcess,
            match pattern {
                Some(pat) => format!("no unprotected process matches {pat:?}"),
                None => "no unprotected process to choose from".into(),
            },
        ));
    }
    Ok(found)
}

/// What [`top_consumer_of`] found: the process to signal (or why not), and
/// what the report keeps either way.
struct Chosen {
    procs: Result<Vec<ProcInfo>, Refusal>,
    entry: Option<ConsumerEntry>,
    notes: Vec<String>,
}

/// Chooses the heaviest process by `resource`, measured now over
/// [`CONSUMER_WINDOW`], among those whose command line matches `pattern` (if
/// given) and that use some of it: processes the safety rules protect are
/// passed over (pid 1, the agent, its parent, kernel threads, protected
/// names), and the chosen one passes exactly the checks of a kill by pid.
/// Never trusts a pid from whoever asked. On a busy host the heaviest
/// process overall may be other, legitimate work: the pattern says which
/// processes the rule may ever act on, the measurement which one of them.
async fn top_consumer_of(
    proc_root: PathBuf,
    guard: ProcessGuard,
    resource: Consumer,
    pattern: Option<String>,
    max: usize,
) -> Chosen {
    let refused = |r: Refusal| Chosen {
        procs: Err(r),
        entry: None,
        notes: Vec::new(),
    };
    let root = proc_root.clone();
    let first = match blocking(move || Ok(processes::snapshot(&root))).await {
        Ok(s) => s,
        Err(r) => return refused(r),
    };
    tokio::time::sleep(CONSUMER_WINDOW).await;
    let done = tokio::task::spawn_blocking(move || {
        let proc_root = proc_root.as_path();
        let second = processes::snapshot(proc_root);
        let window_ms = u64::try_from(second.at.saturating_duration_since(first.at).as_millis())
            .unwrap_or(u64::MAX);
        let usages = processes::usage(&first, &second);
        let ranked = processes::top_by(&usages, resource.into(), usages.len());
        let mut skipped = Vec::new();
        let uses = |u: &crate::collect::ProcessInfo| match resource {
            Consumer::Cpu => u.cpu_pct >= MIN_CONSUMER_CPU_PCT,
            Consumer::Memory => u.rss_bytes > 0,
            Consumer::Io => u.read_bytes_per_s + u.write_bytes_per_s > 0.0,
        };
        let chosen = ranked.into_iter().filter(uses).find_map(|u| {
            let p = safety::read_proc(proc_root, u.pid)?;
            if pattern
                .as_deref()
                .is_some_and(|pat| !sco_policy::glob_match(pat, &p.cmdline))
            {
                return None;
            }
            // The pid must still name the process that was measured.
            let measured = second.procs.get(&u.pid).map(|s| s.starttime);
            if measured != Some(p.start_time) || matches!(p.state, 'Z' | 'X') {
                return None;
            }
            if let Err((_, why)) = guard.check(&p) {
                skipped.push(why);
                return None;
            }
            Some((u, p))
        });
        let mut notes = Vec::new();
        if !skipped.is_empty() {
            let shown: Vec<&str> = skipped
                .iter()
                .take(MAX_SKIPPED_NOTED)
                .map(String::as_str)
                .collect();
            notes.push(format!(
                "passed over {} heavier protected processes: {}",
                skipped.len(),
                shown.join("; ")
            ));
        }
        let Some((u, p)) = chosen else {
            return Chosen {
                procs: Err((
                    Reason::NoMatchingProcess,
                    match &pattern {
                        Some(pat) => format!(
                            "no unprotected process matching {pat:?} uses {} now",
                            resource.as_str()
                        ),
                        None => format!(
                            "no unprotected process to choose as the top {} consumer",
                            resource.as_str()
                        ),
                    },
                )),
                entry: None,
                notes,
            };
        };
        let entry = ConsumerEntry {
            resource,
            pid: p.pid,
            name: u.name.clone(),
            cmdline: p.cmdline.clone(),
            cpu_pct: u.cpu_pct,
            rss_bytes: u.rss_bytes,
            read_bytes_per_s: u.read_bytes_per_s,
            write_bytes_per_s: u.write_bytes_per_s,
            window_ms,
        };
        let usage = match resource {
            Consumer::Cpu => format!("{:.1} % cpu", u.cpu_pct),
            Consumer::Memory => format!("{} bytes resident", u.rss_bytes),
            Consumer::Io => format!(
                "{:.0} bytes/s read, {:.0} bytes/s written",
                u.read_bytes_per_s, u.write_bytes_per_s
            ),
        };
        notes.push(format!(
            "top {} consumer over {window_ms} ms: pid {} ({}), {usage}",
            resource.as_str(),
            p.pid,
            u.name
        ));
        // From here on it is a kill by pid, with exactly its checks.
        let procs = safety::resolve_processes(proc_root, &guard, None, None, Some(p.pid), max)
            .and_then(|found| {
                if found.iter().all(|f| f.start_time == p.start_time) {
                    Ok(found)
                } else {
                    Err((
                        Reason::NoMatchingProcess,
                        format!(
                            "pid {} was replaced by another process while it was chosen",
                            p.pid
                        ),
                    ))
                }
            });
        Chosen {
            procs,
            entry: Some(entry),
            notes,
        }
    })
    .await;
    done.unwrap_or_else(|e| refused((Reason::Io, format!("top consumer task failed: {e}"))))
}

impl Remediator {
    /// Opens (or creates) the state database in `data_dir/remediate`.
    pub fn open(config: RemediateSection, data_dir: &Path) -> Result<Self, RemediateError> {
        let path = data_dir.join("remediate");
        let state = state::State::open(&path, config.cache_bytes, config.history_max)
            .map_err(|source| RemediateError::Open { path, source })?;
        Self::with_state(config, state)
    }

    /// Keeps limits and history in trees of an existing sled database.
    pub fn with_db(config: RemediateSection, db: sled::Db) -> Result<Self, RemediateError> {
        let state = state::State::with_db(db, config.history_max).map_err(|source| {
            RemediateError::Open {
                path: std::path::PathBuf::from("(shared database)"),
                source,
            }
        })?;
        Self::with_state(config, state)
    }

    fn with_state(config: RemediateSection, state: state::State) -> Result<Self, RemediateError> {
        Ok(Self {
            guard: ProcessGuard::new(&config),
            proc_root: PathBuf::from("/proc"),
            config,
            state,
            http: None,
            refusals_reported: HashMap::new(),
        })
    }

    /// Looks processes up in the procfs at `proc_root` (`agent.proc_root`;
    /// `/proc` by default). Signals still go to pids, so `kill_process` is
    /// refused unless that procfs numbers processes as the agent's own pid
    /// namespace does (`hostPID` in a pod): see [`safety::check_pid_namespace`].
    pub fn with_proc_root(mut self, proc_root: PathBuf) -> Self {
        self.proc_root = proc_root;
        self
    }

    /// The webhook client, built on first use: the CA bundle (a few hundred
    /// certificates) is not held in memory by agents that never notify.
    fn http(&mut self) -> &webhook::Webhook {
        self.http.get_or_insert_with(|| {
            webhook::Webhook::new(
                &self.config.notify_ca_file,
                Duration::from_secs(self.config.command_timeout_secs),
            )
        })
    }

    pub fn config(&self) -> &RemediateSection {
        &self.config
    }

    /// Decides on `req`, acts if allowed, and returns the report (also kept
    /// in the history). Never fails: storage problems refuse the action.
    /// Long waits (commands, kill grace) are async; file-system and `/proc`
    /// work runs on the blocking pool.
    pub async fn request(&mut self, req: ActionRequest) -> ActionReport {
        let started = now_ms();
        let mut report = ActionReport::new(&req.rule, &req.action, req.mode, started);
        report.lease = req.lease.as_ref().map(|l| l.token.clone());
        match self.state.next_id() {
            Ok(id) => report.id = id,
            Err(e) => {
                report.refuse((Reason::Storage, format!("cannot allocate a report id: {e}")));
                report.ended_ms = now_ms();
                return report;
            }
        }
        let mut checked = Vec::new();
        let mut counted = false;
        if let Err(r) = self
            .decide(&req, &mut report, started, &mut checked, &mut counted)
            .await
        {
            report.refuse(r);
        }
        report
            .notes
            .insert(0, checks_note(req.mode, &checked, counted));
        report.ended_ms = now_ms();
        if let Err(e) = self.state.push_history(&report).await {
            tracing::warn!(id = report.id, error = %e, "cannot store remediation report");
            report.notes.push(format!("not stored in history: {e}"));
        }
        tracing::info!(
            id = report.id,
            rule = %report.rule,
            action = report.action.kind(),
            mode = ?report.mode,
            decision = ?report.decision,
            reason = report.reason.as_deref().unwrap_or(""),
            "remediation"
        );
        report
    }

    /// Like [`Remediator::request`] for a rule that fired, but a standing
    /// refusal is reported once: while the rule still cools down from the
    /// same executed action, or its breaker stays open since the same
    /// failure, and it was already refused for that under `key` (policy, rule
    /// and revision), this returns `None` and records nothing. A condition
    /// that keeps holding, or flaps, re-fires long before a long cooldown
    /// ends or a human resets the breaker; one row says why it waits.
    pub async fn precheck(&mut self, req: ActionRequest, key: &str) -> Option<ActionReport> {
        let now = now_ms();
        self.refusals_reported.retain(|_, s| s.still_holds(now));
        let standing = self
            .state
            .rule(&req.rule)
            .ok()
            .and_then(|r| Standing::of(&r, req.cooldown_secs, now));
        if standing.is_some() && self.refusals_reported.get(key) == standing.as_ref() {
            tracing::debug!(
                key,
                ?standing,
                "rule still refused for the same reason; its refusal was already reported"
            );
            return None;
        }
        let report = self.request(req).await;
        match standing {
            Some(s) if report.reason_code == Some(s.reason()) => {
                self.refusals_reported.insert(key.to_string(), s);
            }
            _ => {
                self.refusals_reported.remove(key);
            }
        }
        Some(report)
    }

    /// The checks, in order; each pushes its name to `checked` before it
    /// runs, and `counted` is set once the attempt was counted.
    async fn decide(
        &mut self,
        req: &ActionRequest,
        report: &mut ActionReport,
        now: i64,
        checked: &mut Vec<&'static str>,
        counted: &mut bool,
    ) -> Result<(), Refusal> {
        checked.push("rule name");
        check_rule(&req.rule)?;
        checked.push("action fields");
        req.action.check()?;
        let execute = req.mode == Mode::Execute;
        if execute {
            checked.push("fleet lease");
            match &req.lease {
                None => return Err((Reason::NoLease, "no fleet lease: nothing runs".into())),
                Some(l) if l.token.is_empty() => {
                    return Err((Reason::NoLease, "empty lease token".into()))
                }
                Some(l) if l.expires_ms <= now => {
                    return Err((
                        Reason::LeaseExpired,
                        format!("lease {} expired at {}", l.token, l.expires_ms),
                    ))
                }
                Some(_) => {}
            }
        }
        let storage = |e: sled::Error| (Reason::Storage, e.to_string());
        let rule = self.state.rule(&req.rule).map_err(storage)?;
        checked.push("circuit breaker");
        if let Some(since) = rule.breaker_open_since_ms {
            return Err((
                Reason::CircuitOpen,
                format!(
                    "circuit breaker of rule {} open since {since} after {} failures; a human must reset it",
                    req.rule, rule.consecutive_failures
                ),
            ));
        }
        checked.push("cooldown");
        if let Some(until) = cooldown_until(&rule, req.cooldown_secs) {
            if now < until {
                return Err((
                    Reason::CooldownActive,
                    format!(
                        "rule {} is cooling down for {} more ms",
                        req.rule,
                        until - now
                    ),
                ));
            }
        }
        checked.push("hourly limit");
        let rule_count = rule.in_last_hour(now);
        if req.max_per_hour > 0 && rule_count >= req.max_per_hour as usize {
            return Err((
                Reason::RuleRateLimited,
                format!(
                    "rule {} ran {rule_count} times in the last hour (max_per_hour {})",
                    req.rule, req.max_per_hour
                ),
            ));
        }
        checked.push("host budget");
        let host_count = self.state.host_in_last_hour(now).map_err(storage)?;
        if host_count >= self.config.host_max_per_hour as usize {
            return Err((
                Reason::BudgetExhausted,
                format!(
                    "host ran {host_count} actions in the last hour (remediate.host_max_per_hour {})",
                    self.config.host_max_per_hour
                ),
            ));
        }

        checked.push("host safety");
        let plan = self.plan(&req.action, report).await?;
        if !execute {
            report.decision = Decision::DryRun;
            return Ok(());
        }
        self.state
            .record_attempt(&req.rule, now)
            .await
            .map_err(storage)?;
        *counted = true;
        self.act(plan, report).await;
        if report.decision == Decision::Failed {
            // A failing action feeds the breaker like a failed verification.
            if let Err(e) = self
                .state
                .record_result(&req.rule, false, self.config.breaker_failures, now_ms())
                .await
            {
                report.notes.push(format!("breaker not updated: {e}"));
            }
        }
        Ok(())
    }

    /// Resolves the action against the host and fills what would happen
    /// into the report.
    async fn plan(&self, action: &Action, report: &mut ActionReport) -> Result<Plan, Refusal> {
        let c = &self.config;
        let plan = match action {
            Action::RestartService { unit } => {
                check_command("remediate.systemctl", &c.systemctl, action).await?;
                Plan::Command(vec![
                    c.systemctl.display().to_string(),
                    "restart".into(),
                    unit.clone(),
                ])
            }
            Action::JournalVacuum { max_size_mb } => {
                check_command("remediate.journalctl", &c.journalctl, action).await?;
                Plan::Command(vec![
                    c.journalctl.display().to_string(),
                    format!("--vacuum-size={max_size_mb}M"),
                ])
            }
            Action::KillProcess {
                name,
                pattern,
                pid,
                top_consumer,
                grace_secs,
            } => {
                safety::check_pid_namespace(&self.proc_root)?;
                let guard = self.guard.clone();
                let proc_root = self.proc_root.clone();
                let (name, pattern, pid, max) =
                    (name.clone(), pattern.clone(), *pid, c.max_processes);
                let procs = match top_consumer {
                    // A pre-check only asks whether the rule could act now: measuring
                    // usage there would delay an `auto` rule's proposal by the
                    // measurement window, and the request measures again when it runs.
                    Some(resource) if report.mode == Mode::Precheck => {
                        let pattern = pattern.clone();
                        let candidates = blocking(move || {
                            consumer_candidates(&proc_root, &guard, pattern.as_deref())
                        })
                        .await?;
                        report.notes.push(format!(
                            "{} processes could be chosen; the heaviest {} consumer among them \
                             is measured over {} ms and chosen when the request runs",
                            candidates.len(),
                            resource.as_str(),
                            CONSUMER_WINDOW.as_millis()
                        ));
                        // a rule without a pattern may choose among every process: named
                        // only when they are few
                        report.pids = candidates
                            .iter()
                            .take_while(|_| candidates.len() <= max)
                            .map(|p| ProcessEntry {
                                pid: p.pid,
                                name: p.name().to_string(),
                                cmdline: p.cmdline.clone(),
                                outcome: "candidate".into(),
                            })
                            .collect();
                        return Ok(Plan::Kill(candidates, Duration::from_secs(*grace_secs)));
                    }
                    Some(resource) => {
                        let chosen =
                            top_consumer_of(proc_root, guard, *resource, pattern, max).await;
                        report.top_consumer = chosen.entry;
                        report.notes.extend(chosen.notes);
                        chosen.procs?
                    }
                    None => {
                        blocking(move || {
                            safety::resolve_processes(
                                &proc_root,
                                &guard,
                                name.as_deref(),
                                pattern.as_deref(),
                                pid,
                                max,
                            )
                        })
                        .await?
                    }
                };
                report.pids = procs
                    .iter()
                    .map(|p| ProcessEntry {
                        pid: p.pid,
                        name: p.name().to_string(),
                        cmdline: p.cmdline.clone(),
                        outcome: "would_signal".into(),
                    })
                    .collect();
                report
                    .notes
                    .push(format!("TERM, then KILL after {grace_secs} s"));
                Plan::Kill(procs, Duration::from_secs(*grace_secs))
            }
            Action::CleanPaths {
                root,
                patterns,
                older_than_days,
                max_bytes,
            } => {
                let cutoff = now_ms() - i64::from(*older_than_days) * 86_400_000;
                let (root, roots, patterns, max) = (
                    root.clone(),
                    c.clean_roots.clone(),
                    patterns.clone(),
                    *max_bytes,
                );
                let (files, notes) =
                    blocking(move || safety::plan_clean(&root, &roots, &patterns, cutoff, max))
                        .await?;
                report.bytes = files.iter().map(|f| f.bytes).sum();
                report.files = files.clone();
                report.notes.extend(notes);
                Plan::Clean(files)
            }
            Action::RunScript { path, sha256, args } => {
                let (path, dir, sha) = (path.clone(), c.script_dir.clone(), sha256.clone());
                let real = blocking(move || safety::check_script(&path, &dir, &sha)).await?;
                let mut argv = vec![real.display().to_string()];
                argv.extend(args.iter().cloned());
                Plan::Command(argv)
            }
            Action::Notify { url, body } => {
                safety::check_webhook(url, &c.notify_urls)?;
                report.argv = vec!["POST".into(), url.clone()];
                Plan::Notify(url.clone(), body.clone())
            }
        };
        if let Plan::Command(argv) = &plan {
            report.argv = argv.clone();
        }
        Ok(plan)
    }

    async fn act(&mut self, plan: Plan, report: &mut ActionReport) {
        let c = &self.config;
        report.decision = Decision::Executed;
        match plan {
            Plan::Command(argv) => {
                let timeout = Duration::from_secs(c.command_timeout_secs);
                match exec::run(&argv, &c.env, timeout, c.output_cap_bytes).await {
                    Ok(out) => {
                        report.exit_code = out.exit_code;
                        if out.truncated {
                            report.notes.push(format!(
                                "output cut at {} bytes per stream",
                                c.output_cap_bytes
                            ));
                        }
                        if out.timed_out {
                            report.fail(
                                Reason::Timeout,
                                format!("killed after {} s", c.command_timeout_secs),
                            );
                        } else if !out.success() {
                            report.fail(
                                Reason::CommandFailed,
                                format!("{} exited with {:?}", argv[0], out.exit_code),
                            );
                        }
                        report.stdout = out.stdout;
                        report.stderr = out.stderr;
                    }
                    Err(e) => report.fail(
                        Reason::CommandFailed,
                        format!("cannot run {}: {e}", argv[0]),
                    ),
                }
            }
            Plan::Kill(procs, grace) => {
                let (entries, errors) = exec::terminate(&self.proc_root, &procs, grace).await;
                let survived = entries.iter().filter(|e| e.outcome == "survived").count();
                report.pids = entries;
                if !errors.is_empty() {
                    report.fail(Reason::SignalFailed, errors.join("; "));
                } else if survived > 0 {
                    report.fail(
                        Reason::ProcessSurvived,
                        format!("{survived} processes survived KILL"),
                    );
                }
            }
            Plan::Clean(files) => {
                let roots = c.clean_roots.clone();
                let done = tokio::task::spawn_blocking(move || {
                    files
                        .into_iter()
                        .map(|mut f| {
                            f.outcome = match safety::delete_planned(&f, &roots) {
                                Ok(()) => "deleted".into(),
                                Err(e) => format!("skipped: {e}"),
                            };
                            f
                        })
                        .collect::<Vec<_>>()
                })
                .await;
                match done {
                    Ok(files) => {
                        report.bytes = files
                            .iter()
                            .filter(|f| f.outcome == "deleted")
                            .map(|f| f.bytes)
                            .sum();
                        report.files = files;
                    }
                    Err(e) => report.fail(Reason::Io, format!("delete task failed: {e}")),
                }
            }
            Plan::Notify(url, body) => {
                let cap = c.output_cap_bytes;
                match self.http().post_json(&url, &body, cap).await {
                    Ok(answer) => {
                        report.exit_code = Some(i32::from(answer.status));
                        report.stdout = answer.body;
                        if !(200..300).contains(&answer.status) {
                            report
                                .fail(Reason::Http, format!("webhook answered {}", answer.status));
                        }
                    }
                    Err(e) => report.fail(Reason::Http, format!("webhook {url}: {e}")),
                }
            }
        }
    }

    /// Waits until `spec` holds (or its time is up), reading the metric
    /// with `metric` every `poll_ms`, then feeds the result to the rule's
    /// breaker. Reports that did not execute are skipped and change nothing.
    pub async fn verify(
        &mut self,
        report: &ActionReport,
        spec: &VerifySpec,
        mut metric: impl FnMut(&str) -> Option<f64>,
    ) -> Result<VerifyOutcome, RemediateError> {
        if report.decision != Decision::Executed {
            let r = self.state.rule(&report.rule)?;
            return Ok(VerifyOutcome {
                rule: report.rule.clone(),
                report_id: report.id,
                state: VerifyState::Skipped,
                breaker_open: r.breaker_open_since_ms.is_some(),
            });
        }
        let mut v = Verification::start(spec.clone(), report.ended_ms.max(now_ms()));
        let poll = Duration::from_millis(spec.poll_ms.max(10));
        while !v.observe(now_ms(), metric(&spec.metric)).is_final() {
            tokio::time::sleep(poll).await;
        }
        let ok = matches!(v.state(), VerifyState::Passed { .. });
        let r = self.record_verification(&report.rule, ok).await?;
        Ok(VerifyOutcome {
            rule: report.rule.clone(),
            report_id: report.id,
            state: v.state().clone(),
            breaker_open: r.breaker_open_since_ms.is_some(),
        })
    }

    /// Feeds one verification result to the breaker of `rule`: it opens
    /// after `remediate.breaker_failures` failures in a row and stays open
    /// until [`Remediator::reset_breaker`].
    pub async fn record_verification(
        &mut self,
        rule: &str,
        ok: bool,
    ) -> Result<RuleState, RemediateError> {
        let r = self
            .state
            .record_result(rule, ok, self.config.breaker_failures, now_ms())
            .await?;
        if r.breaker_open_since_ms.is_some() && !ok {
            tracing::warn!(
                rule,
                failures = r.consecutive_failures,
                "circuit breaker open"
            );
        }
        Ok(r)
    }

    /// Closes the breaker of `rule`; only a human should call this.
    pub async fn reset_breaker(&mut self, rule: &str) -> Result<RuleState, RemediateError> {
        Ok(self.state.reset_breaker(rule).await?)
    }

    pub fn rule_state(&self, rule: &str) -> Result<RuleState, RemediateError> {
        Ok(self.state.rule(rule)?)
    }

    /// Executed actions of the host in the last hour.
    pub fn host_actions_last_hour(&self) -> Result<usize, RemediateError> {
        Ok(self.state.host_in_last_hour(now_ms())?)
    }

    /// The newest `limit` reports, newest first.
    pub fn history(&self, limit: usize) -> Result<Vec<ActionReport>, RemediateError> {
        Ok(self.state.history(limit)?)
    }
}
