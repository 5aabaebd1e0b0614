//! Local remediation: the typed allowlist of actions, the safety rules that
//! are checked right before each one runs, durable limits (cooldown, hourly
//! counts, host budget, circuit breaker), verification and a report for
//! every decision.
//!
//! - [`actions`]: the allowlist ([`Action`]) and static checks of its fields.
//! - [`safety`]: host checks: protected processes, allowlisted roots and
//!   scripts, webhook prefixes.
//! - [`exec`]: argv-only command runner (scrubbed environment, timeout,
//!   capped output) and the TERM-then-KILL sequence.
//! - [`state`]: the sled database of limits, breakers and history.
//! - [`verify`]: the verification state machine.
//! - [`report`]: [`ActionReport`] and its reason codes.
//!
//! Whoever asks (a policy rule, an approval, a manual trigger), the request
//! goes through [`Remediator::request`], which applies every rule in the same
//! order: static checks, lease (execute only), circuit breaker, cooldown,
//! per-rule hourly limit, host budget, host safety checks; then it records
//! the attempt durably and only then acts. The control plane can ask; the
//! agent decides.

pub mod actions;
pub mod exec;
pub mod report;
pub mod safety;
pub mod state;
pub mod verify;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use actions::Action;
pub use report::{ActionReport, Decision, FileEntry, Mode, ProcessEntry, Reason};
pub use state::RuleState;
pub use verify::{Verification, VerifySpec, VerifyState};

use crate::config::RemediateSection;
use safety::{ProcInfo, ProcessGuard};

type Refusal = (Reason, String);

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
    #[error("http client: {0}")]
    Http(String),
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
    http: Option<reqwest::Client>,
}

fn webhook_client(config: &RemediateSection) -> Result<reqwest::Client, RemediateError> {
    let mut http = reqwest::Client::builder()
        .timeout(Duration::from_secs(config.command_timeout_secs))
        .tls_built_in_root_certs(false);
    // https webhooks are verified against this bundle only; without it they
    // fail (and say why) while http ones keep working.
    match std::fs::read(&config.notify_ca_file) {
        Ok(pem) => match reqwest::Certificate::from_pem_bundle(&pem) {
            Ok(certs) => {
                for c in certs {
                    http = http.add_root_certificate(c);
                }
            }
            Err(e) => tracing::warn!(file = %config.notify_ca_file.display(), error = %e,
                "notify CA bundle unreadable: https webhooks will fail"),
        },
        Err(e) => tracing::warn!(file = %config.notify_ca_file.display(), error = %e,
            "notify CA bundle missing: https webhooks will fail"),
    }
    http
        // A redirect could leave the allowlisted prefix; proxies from the
        // environment would send the body elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| RemediateError::Http(e.to_string()))
}

pub fn now_ms() -> i64 {
    crate::uplink::now_ms()
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
            config,
            state,
            http: None,
        })
    }

    /// The webhook client, built on first use: the CA bundle (a few hundred
    /// certificates) is not held in memory by agents that never notify.
    fn http(&mut self) -> Result<&reqwest::Client, RemediateError> {
        if self.http.is_none() {
            self.http = Some(webhook_client(&self.config)?);
        }
        self.http
            .as_ref()
            .ok_or_else(|| RemediateError::Http("no client".into()))
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
        if let Err(r) = self.decide(&req, &mut report, started).await {
            report.refuse(r);
        }
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

    async fn decide(
        &mut self,
        req: &ActionRequest,
        report: &mut ActionReport,
        now: i64,
    ) -> Result<(), Refusal> {
        check_rule(&req.rule)?;
        req.action.check()?;
        let execute = req.mode == Mode::Execute;
        if execute {
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
        } else {
            report
                .notes
                .push("dry run: lease not checked, limits checked but not consumed".into());
        }
        let storage = |e: sled::Error| (Reason::Storage, e.to_string());
        let rule = self.state.rule(&req.rule).map_err(storage)?;
        if let Some(since) = rule.breaker_open_since_ms {
            return Err((
                Reason::CircuitOpen,
                format!(
                    "circuit breaker of rule {} open since {since} after {} failures; a human must reset it",
                    req.rule, rule.consecutive_failures
                ),
            ));
        }
        if let Some(last) = rule.last_ms {
            let until = last.saturating_add(
                i64::try_from(req.cooldown_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            );
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

        let plan = self.plan(&req.action, report).await?;
        if !execute {
            report.decision = Decision::DryRun;
            return Ok(());
        }
        self.state
            .record_attempt(&req.rule, now)
            .await
            .map_err(storage)?;
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
            Action::RestartService { unit } => Plan::Command(vec![
                c.systemctl.display().to_string(),
                "restart".into(),
                unit.clone(),
            ]),
            Action::JournalVacuum { max_size_mb } => Plan::Command(vec![
                c.journalctl.display().to_string(),
                format!("--vacuum-size={max_size_mb}M"),
            ]),
            Action::KillProcess {
                name,
                pattern,
                pid,
                grace_secs,
            } => {
                let guard = self.guard.clone();
                let (name, pattern, pid, max) =
                    (name.clone(), pattern.clone(), *pid, c.max_processes);
                let procs = blocking(move || {
                    safety::resolve_processes(&guard, name.as_deref(), pattern.as_deref(), pid, max)
                })
                .await?;
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
                let (entries, errors) = exec::terminate(&procs, grace).await;
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
                match self.http() {
                    Err(e) => report.fail(Reason::Http, e.to_string()),
                    Ok(http) => match http.post(&url).json(&body).send().await {
                        Ok(resp) => {
                            let status = resp.status();
                            report.exit_code = Some(i32::from(status.as_u16()));
                            let text = resp.text().await.unwrap_or_default();
                            report.stdout = text.chars().take(cap).collect();
                            if !status.is_success() {
                                report.fail(Reason::Http, format!("webhook answered {status}"));
                            }
                        }
                        Err(e) => report.fail(Reason::Http, format!("webhook {url}: {e}")),
                    },
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
