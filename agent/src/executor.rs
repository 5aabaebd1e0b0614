//! The remediation task: applies signed policies, turns fired rules into
//! proposals, and runs the control plane's requests through the local
//! safety rules, verifying each executed action against live metrics.
//! Every outcome leaves as a durable message through the outbox.
//!
//! One request runs at a time. Verification (waiting for the metric to
//! recover) runs beside the loop, so other requests need not wait for it;
//! the rule's cooldown (counted from the attempt) and the fleet lease (held
//! until the report) keep the same rule from acting again meanwhile.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch, Mutex, Notify};

use crate::clock::now_ms;
use crate::outbox::Outbox;
use crate::policy::engine::Trigger;
use crate::policy::store::{Applied, PolicyStore};
use crate::policy::{DetectionSettings, RuleMode, SignedPolicy};
use crate::remediate::{self, ActionReport, Decision, Mode, Verification, VerifySpec, VerifyState};
use crate::requests::{Command, Inbound, PolicyStatus, Proposal, Report};

/// Latest value of every metric, keyed as the detector names them.
pub type Latest = Arc<HashMap<String, f64>>;

/// A verification that reached its final state.
struct Verified {
    command: Command,
    report: ActionReport,
    spec: VerifySpec,
    state: VerifyState,
}

/// What [`Executor::execute`] leaves for the report.
enum Outcome {
    Done(String, String, String),
    /// Executed; the report follows when verification ends.
    Verifying,
}

pub struct Executor {
    pub remediator: remediate::Remediator,
    pub policies: Arc<std::sync::Mutex<PolicyStore>>,
    pub outbox: Arc<Mutex<Outbox>>,
    pub new_data: Arc<Notify>,
    pub latest: watch::Receiver<Latest>,
    /// Detection settings of the policies in force, for the detector.
    pub tuning: watch::Sender<Option<DetectionSettings>>,
    /// Decisions are counted here, for the health endpoint.
    pub activity: Arc<crate::status::Activity>,
}

/// Waits until `spec` holds on live metrics or its time is up.
async fn verify(spec: VerifySpec, started_ms: i64, latest: watch::Receiver<Latest>) -> VerifyState {
    let mut v = Verification::start(spec.clone(), started_ms);
    let poll = std::time::Duration::from_millis(spec.poll_ms.max(10));
    loop {
        let value = latest.borrow().get(&spec.metric).copied();
        if v.observe(now_ms(), value).is_final() {
            return v.state().clone();
        }
        tokio::time::sleep(poll).await;
    }
}

fn lock(p: &std::sync::Mutex<PolicyStore>) -> std::sync::MutexGuard<'_, PolicyStore> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// `reason_code: reason`, or empty.
fn reason_text(r: &ActionReport) -> String {
    let code = r
        .reason_code
        .and_then(|c| serde_json::to_value(c).ok())
        .and_then(|v| v.as_str().map(String::from));
    match (code, &r.reason) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (None, Some(m)) => m.clone(),
        _ => String::new(),
    }
}

/// Whether a check refused the action (or it failed): the host would not run it.
fn refused(r: &ActionReport) -> bool {
    matches!(r.decision, Decision::Refused | Decision::Failed)
}

/// One candidate's local check, as the proposal's evidence carries it: its position in the
/// rule, whether this host would run it, why not, and the check's report (for a dry run,
/// what it would have done).
fn candidate_check(position: usize, r: &ActionReport) -> serde_json::Value {
    serde_json::json!({
        "position": position,
        "allowed": !refused(r),
        "reason": reason_text(r),
        "report": r,
    })
}

fn decision_text(d: Decision) -> &'static str {
    match d {
        Decision::Executed => "executed",
        Decision::DryRun => "dry_run",
        Decision::Refused => "refused",
        Decision::Failed => "failed",
    }
}

/// Detection settings of all policies in force: for each setting the
/// first policy (by name) that sets it wins; ignored metrics, floors and
/// quiet windows add up.
pub fn merged_detection(store: &PolicyStore) -> Option<DetectionSettings> {
    let mut out = DetectionSettings::default();
    let mut any = false;
    for (_, _, p) in store.iter() {
        let d = &p.detection;
        if out.sensitivity.is_none() && d.sensitivity.is_some() {
            out.sensitivity = d.sensitivity;
            any = true;
        }
        if out.min_duration_secs.is_none() && d.min_duration_secs.is_some() {
            out.min_duration_secs = d.min_duration_secs;
            any = true;
        }
        if !d.ignore_metrics.is_empty() {
            out.ignore_metrics.extend(d.ignore_metrics.iter().cloned());
            any = true;
        }
        if !d.floors.is_empty() || !d.quiet_windows.is_empty() {
            out.floors.extend(d.floors.iter().cloned());
            out.quiet_windows.extend(d.quiet_windows.iter().cloned());
            any = true;
        }
    }
    any.then_some(out)
}

impl Executor {
    /// Runs until both the uplink and the main loop are gone.
    pub async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut triggers: mpsc::Receiver<Trigger>,
    ) {
        let _ = self.tuning.send(merged_detection(&lock(&self.policies)));
        let (verified_tx, mut verified) = mpsc::channel::<Verified>(16);
        let mut open = true;
        let mut verifying = 0usize;
        while open || verifying > 0 {
            tokio::select! {
                i = inbound.recv(), if open => match i {
                    Some(Inbound::Command(c)) => {
                        if let Some((c, report, spec)) = self.command(c).await {
                            verifying += 1;
                            let (tx, latest) = (verified_tx.clone(), self.latest.clone());
                            tokio::spawn(async move {
                                let state = verify(spec.clone(), report.ended_ms, latest).await;
                                let _ = tx.send(Verified { command: c, report, spec, state }).await;
                            });
                        }
                    }
                    Some(Inbound::Policy(p)) => self.policy(p).await,
                    None => open = false,
                },
                Some(t) = triggers.recv(), if open => self.trigger(t).await,
                Some(v) = verified.recv() => {
                    verifying -= 1;
                    self.verified(v).await;
                }
            }
        }
    }

    async fn send(&self, message: sco_proto::v1::AgentMessage, what: &str) {
        match self.outbox.lock().await.push(message).await {
            Ok(_) => self.new_data.notify_one(),
            Err(e) => tracing::error!(error = %e, what, "cannot queue a message"),
        }
    }

    async fn policy(&mut self, p: SignedPolicy) {
        let signed = p.clone();
        let (outcome, active, tuning) = {
            let mut store = lock(&self.policies);
            let outcome = store.apply(signed);
            (
                outcome,
                store.revision(&p.name).unwrap_or(0),
                merged_detection(&store),
            )
        };
        let (applied, error) = match outcome {
            Ok(Applied::Unchanged) => return,
            Ok(Applied::New) => {
                tracing::info!(policy = %p.name, revision = p.revision, "policy applied");
                let _ = self.tuning.send(tuning);
                (true, String::new())
            }
            Ok(Applied::Refused(why)) => {
                tracing::warn!(policy = %p.name, revision = p.revision, reason = %why, "policy refused; the revision in force stays");
                (false, why)
            }
            Err(e) => {
                tracing::error!(policy = %p.name, error = %e, "cannot store policy");
                (false, format!("storage: {e}"))
            }
        };
        let status = PolicyStatus {
            name: p.name,
            revision: p.revision,
            applied,
            error,
            active_revision: active,
        };
        self.send(
            crate::pb::policy_status_message(status, now_ms()),
            "policy status",
        )
        .await;
    }

    /// A rule fired: check it against the local limits now (without acting
    /// or consuming anything), then propose it, or record the dry run. A
    /// standing refusal (the same cooldown, the same open breaker) already
    /// reported for this rule revision is not reported again (see
    /// [`remediate::Remediator::precheck`]).
    async fn trigger(&mut self, t: Trigger) {
        let rule = t.qualified();
        // A dry_run rule's check is its dry run; an auto or approve rule's
        // is a pre-check: the lease comes later, with the approval.
        let mode = match t.rule.mode {
            RuleMode::DryRun => Mode::DryRun,
            RuleMode::Auto | RuleMode::Approve => Mode::Precheck,
        };
        let actions = t.rule.actions();
        let Some(first) = actions.first().cloned() else {
            tracing::error!(%rule, "rule without an action in force; not proposed");
            return;
        };
        let request_for = |action: remediate::Action| remediate::ActionRequest {
            rule: rule.clone(),
            action,
            mode,
            lease: None,
            cooldown_secs: t.rule.cooldown_secs,
            max_per_hour: t.rule.max_per_hour,
        };
        let key = format!("{rule}@{}", t.revision);
        let Some(report) = self
            .remediator
            .precheck(request_for(first.clone()), &key)
            .await
        else {
            // Cooling down or breaker open, and already reported (logged there).
            return;
        };
        // A rule with candidates: every candidate is checked here (or dry-run), so the
        // control plane chooses among those this host would run and a dry run shows what
        // each would have done. The proposal carries the first that passed; the control
        // plane's choice replaces it, and the command is checked again against the rule in
        // force before anything runs.
        let mut evidence = t.evidence.clone();
        let (action, report) = if actions.len() > 1 {
            let mut checks = vec![candidate_check(0, &report)];
            let mut chosen = (!refused(&report)).then(|| (first.clone(), report.clone()));
            for (i, a) in actions.iter().enumerate().skip(1) {
                let r = self.remediator.request(request_for(a.clone())).await;
                checks.push(candidate_check(i, &r));
                if chosen.is_none() && !refused(&r) {
                    chosen = Some((a.clone(), r));
                }
            }
            if let Some(e) = evidence.as_object_mut() {
                e.insert("candidates".into(), serde_json::Value::Array(checks));
            } else {
                evidence = serde_json::json!({ "agent": evidence, "candidates": checks });
            }
            chosen.unwrap_or((first, report))
        } else {
            (first, report)
        };
        let decision = match (refused(&report), t.rule.mode) {
            (true, _) => "refused",
            (_, RuleMode::DryRun) => "dry_run",
            _ => "proposed",
        };
        tracing::info!(%rule, decision, mode = t.rule.mode.as_str(), "policy rule fired");
        self.activity.rule_fired(decision);
        let proposal = Proposal {
            id: format!("{:032x}", rand::random::<u128>()),
            policy: t.policy.clone(),
            revision: t.revision,
            rule,
            action_json: serde_json::to_string(&action).unwrap_or_default(),
            mode: t.rule.mode.as_str().into(),
            decision: decision.into(),
            reason: reason_text(&report),
            report_json: serde_json::to_string(&report).unwrap_or_default(),
            evidence_json: evidence.to_string(),
            max_concurrent: t.rule.max_concurrent,
        };
        self.send(crate::pb::proposal_message(proposal, now_ms()), "proposal")
            .await;
    }

    /// A request from the control plane: a manual trigger or a proposal
    /// that got its approval and lease. The rule in force decides the
    /// limits; the remediator decides whether anything runs.
    /// Handles a command; returns what to verify when the action ran and
    /// its rule has a verification.
    async fn command(&mut self, c: Command) -> Option<(Command, ActionReport, VerifySpec)> {
        match self.execute(&c).await {
            (Outcome::Verifying, Some((report, spec))) => Some((c, report, spec)),
            (Outcome::Done(decision, reason, report_json), _) => {
                self.report(c, decision, reason, report_json).await;
                None
            }
            (Outcome::Verifying, None) => None,
        }
    }

    async fn report(&self, c: Command, decision: String, reason: String, report_json: String) {
        tracing::info!(request = %c.id, %decision, %reason, "remediation request handled");
        self.activity.action(&decision);
        let report = Report {
            command_id: c.id,
            rule: c.rule,
            decision,
            reason,
            report_json,
        };
        self.send(crate::pb::report_message(report, now_ms()), "action report")
            .await;
    }

    /// A verification ended: feed the rule's breaker, then report.
    async fn verified(&mut self, v: Verified) {
        let ok = matches!(v.state, VerifyState::Passed { .. });
        let mut json = serde_json::to_value(&v.report).unwrap_or_default();
        let (mut decision, mut reason) = ("executed".to_string(), String::new());
        match self
            .remediator
            .record_verification(&v.report.rule, ok)
            .await
        {
            Ok(rule) => {
                let breaker_open = rule.breaker_open_since_ms.is_some();
                if let VerifyState::Failed { last_value } = &v.state {
                    decision = "failed".into();
                    reason = format!(
                        "verification_failed: {} not below {} within {} s (last value {:?}){}",
                        v.spec.metric,
                        v.spec.below,
                        v.spec.within_secs,
                        last_value,
                        if breaker_open {
                            "; circuit breaker now open"
                        } else {
                            ""
                        }
                    );
                }
                json["verification"] = serde_json::json!({
                    "rule": v.report.rule,
                    "report_id": v.report.id,
                    "state": v.state,
                    "breaker_open": breaker_open,
                });
            }
            Err(e) => {
                decision = "failed".into();
                reason = format!("storage: verification not recorded: {e}");
            }
        }
        self.report(v.command, decision, reason, json.to_string())
            .await;
    }

    async fn execute(&mut self, c: &Command) -> (Outcome, Option<(ActionReport, VerifySpec)>) {
        let done = |d: String, r: String, j: String| (Outcome::Done(d, r, j), None);
        let refused = |why: String| done("refused".to_string(), why, String::new());
        if c.mode == "reset_breaker" {
            return match self.remediator.reset_breaker(&c.rule).await {
                Ok(state) => {
                    tracing::warn!(rule = %c.rule, by = %c.requested_by, "circuit breaker reset");
                    done(
                        "executed".into(),
                        String::new(),
                        serde_json::json!({ "rule": c.rule, "state": state }).to_string(),
                    )
                }
                Err(e) => done("failed".into(), format!("storage: {e}"), String::new()),
            };
        }
        let action = match serde_json::from_str::<remediate::Action>(&c.action_json) {
            Ok(a) => a,
            Err(e) => return refused(format!("invalid_action: unknown or invalid action: {e}")),
        };
        let rule = if c.rule.is_empty() {
            "manual".to_string()
        } else {
            c.rule.clone()
        };
        let (cooldown_secs, max_per_hour, verify) = if rule.contains('/') {
            let in_force = lock(&self.policies).rule(&rule).map(|(_, r)| r.clone());
            match in_force {
                None => {
                    return refused(format!(
                        "no_rule: rule {rule} is not in the policies in force here"
                    ))
                }
                Some(r) if !r.allows(&action) => {
                    return refused(format!(
                        "not_allowed: the requested action is not one of rule {rule} in force"
                    ))
                }
                Some(r) if r.mode == RuleMode::DryRun && c.mode == "execute" => {
                    return refused(format!("not_allowed: rule {rule} is dry_run here"))
                }
                Some(r) => (r.cooldown_secs, r.max_per_hour, r.verify.clone()),
            }
        } else {
            (0, 0, None)
        };
        let mode = if c.mode == "execute" {
            Mode::Execute
        } else {
            Mode::DryRun
        };
        let lease = (!c.lease_token.is_empty()).then(|| remediate::Lease {
            token: c.lease_token.clone(),
            expires_ms: c.lease_expires_ms,
        });
        let report = self
            .remediator
            .request(remediate::ActionRequest {
                rule,
                action,
                mode,
                lease,
                cooldown_secs,
                max_per_hour,
            })
            .await;
        match (verify, report.decision) {
            (Some(spec), Decision::Executed) => (Outcome::Verifying, Some((report, spec))),
            _ => done(
                decision_text(report.decision).to_string(),
                reason_text(&report),
                serde_json::to_string(&report).unwrap_or_default(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse;
    use crate::policy::test_keys::{keypair, public, sign};

    /// An executor on these parts, with no detector or collector behind it.
    fn test_executor(
        remediator: remediate::Remediator,
        policies: PolicyStore,
        outbox: Outbox,
    ) -> Executor {
        Executor {
            remediator,
            policies: Arc::new(std::sync::Mutex::new(policies)),
            outbox: Arc::new(Mutex::new(outbox)),
            new_data: Arc::new(Notify::new()),
            latest: watch::channel(Latest::default()).1,
            tuning: watch::channel(None).0,
            activity: Arc::new(crate::status::Activity::default()),
        }
    }

    /// The proposals the executor put in its outbox, oldest first.
    async fn sent_proposals(executor: &Executor) -> Vec<sco_proto::v1::ActionProposal> {
        let sent = executor.outbox.lock().await.after(0, 100).expect("outbox");
        sent.into_iter()
            .filter_map(|m| match m.body {
                Some(sco_proto::v1::agent_message::Body::Proposal(p)) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// A rule that keeps firing while it cools down reports its refusal
    /// once per rule revision and cooldown, as a pre-check, not a dry run.
    #[tokio::test]
    async fn a_cooldown_refusal_is_reported_once_not_per_fire() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(&dir.path().join("outbox"), 1 << 20, 1 << 20).expect("outbox");
        let db = outbox.db();
        let config = crate::config::RemediateSection {
            systemctl: "/bin/true".into(),
            ..Default::default()
        };
        let mut remediator = remediate::Remediator::with_db(config, db.clone()).expect("open");
        let policy = parse(
            "name: p\nrules:\n  - name: r\n    when: { state: ['cpu.total_pct > 80'] }\n    \
             action: { type: restart_service, unit: a.service }\n    mode: auto\n    cooldown_secs: 3600\n",
        )
        .expect("valid");
        let rule = policy.rules[0].clone();
        // The rule acted a moment ago: it cools down for an hour.
        let done = remediator
            .request(remediate::ActionRequest {
                rule: "p/r".into(),
                action: rule.first_action().expect("validated rule").clone(),
                mode: Mode::Execute,
                lease: Some(remediate::Lease {
                    token: "t".into(),
                    expires_ms: now_ms() + 60_000,
                }),
                cooldown_secs: rule.cooldown_secs,
                max_per_hour: rule.max_per_hour,
            })
            .await;
        assert_eq!(done.decision, Decision::Executed, "{done:?}");
        let store = PolicyStore::open(&db, None).expect("policies");
        let mut executor = test_executor(remediator, store, outbox);
        let fired = |revision| Trigger {
            policy: "p".into(),
            revision,
            rule: rule.clone(),
            evidence: serde_json::json!({}),
        };
        for _ in 0..3 {
            executor.trigger(fired(1)).await;
        }
        // A new revision is a new rule as far as reporting goes.
        executor.trigger(fired(2)).await;
        executor.trigger(fired(2)).await;

        let proposals = sent_proposals(&executor).await;
        assert_eq!(
            proposals.iter().map(|p| p.revision).collect::<Vec<_>>(),
            [1, 2],
            "{proposals:?}"
        );
        for p in &proposals {
            assert_eq!(p.decision, "refused");
            assert!(p.reason.starts_with("cooldown_active"), "{p:?}");
            let report: ActionReport = serde_json::from_str(&p.report_json).expect("report");
            assert_eq!(report.mode, Mode::Precheck);
            assert!(
                report.notes[0].starts_with("pre-check of a rule that executes: checked ")
                    && report.notes[0].ends_with("when the request runs")
                    && report.notes[0].contains("cooldown")
                    && !report.notes[0].contains("host budget"),
                "{:?}",
                report.notes
            );
            assert!(
                !report.notes.iter().any(|n| n.contains("dry run")),
                "{:?}",
                report.notes
            );
        }
        // Nor does the local history fill with repeats: the execution and
        // the two reported refusals.
        assert_eq!(executor.remediator.history(100).expect("history").len(), 3);
        // and the health endpoint counts what was reported, once each
        assert_eq!(executor.activity.snapshot().rules_fired, [0, 0, 2]);
    }

    /// A rule with candidates is checked here candidate by candidate: the proposal says which
    /// this host would run and carries the first of them, so a refusal of the first (a
    /// program missing here) does not refuse the incident.
    #[tokio::test]
    async fn a_rule_with_candidates_is_checked_candidate_by_candidate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(&dir.path().join("outbox"), 1 << 20, 1 << 20).expect("outbox");
        let db = outbox.db();
        let config = crate::config::RemediateSection {
            systemctl: "/bin/true".into(),
            journalctl: dir.path().join("no-journalctl"),
            ..Default::default()
        };
        let remediator = remediate::Remediator::with_db(config, db.clone()).expect("open");
        let store = PolicyStore::open(&db, None).expect("policies");
        let mut executor = test_executor(remediator, store, outbox);
        for mode in ["dry_run", "auto"] {
            let policy = parse(&format!(
                "name: p\nrules:\n  - name: r\n    when: {{ state: ['cpu.total_pct > 80'] }}\n    \
                 candidates:\n      - {{ type: journal_vacuum, max_size_mb: 100 }}\n      \
                 - {{ type: restart_service, unit: a.service }}\n    mode: {mode}\n    \
                 cooldown_secs: 0\n    verify: {{ metric: cpu.total_pct, below: 50, within_secs: 5 }}\n"
            ))
            .expect("valid");
            executor
                .trigger(Trigger {
                    policy: "p".into(),
                    revision: 1,
                    rule: policy.rules[0].clone(),
                    evidence: serde_json::json!({"state": []}),
                })
                .await;
        }
        let proposals = sent_proposals(&executor).await;
        assert_eq!(proposals.len(), 2, "{proposals:?}");
        for (p, want) in proposals.iter().zip(["dry_run", "proposed"]) {
            assert_eq!(p.decision, want, "{p:?}");
            let action: serde_json::Value = serde_json::from_str(&p.action_json).expect("action");
            assert_eq!(action["type"], "restart_service", "{p:?}");
            let report: ActionReport = serde_json::from_str(&p.report_json).expect("report");
            assert_eq!(report.action.kind(), "restart_service", "{report:?}");
            let evidence: serde_json::Value =
                serde_json::from_str(&p.evidence_json).expect("evidence");
            let checks = evidence["candidates"].as_array().expect("checks");
            assert_eq!(checks.len(), 2, "{evidence}");
            assert_eq!(checks[0]["position"], 0);
            assert_eq!(checks[0]["allowed"], false);
            assert!(
                checks[0]["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("command_missing")),
                "{evidence}"
            );
            assert_eq!(checks[1]["allowed"], true, "{evidence}");
            assert_eq!(checks[1]["report"]["action"]["type"], "restart_service");
            // the trigger's own evidence stays beside the checks
            assert!(evidence["state"].is_array(), "{evidence}");
        }
    }

    /// A command for a rule with candidates may run any of them, and nothing else.
    #[tokio::test]
    async fn a_rule_with_candidates_runs_any_of_them_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(&dir.path().join("outbox"), 1 << 20, 1 << 20).expect("outbox");
        let db = outbox.db();
        let config = crate::config::RemediateSection {
            systemctl: "/bin/true".into(),
            ..Default::default()
        };
        let remediator = remediate::Remediator::with_db(config, db.clone()).expect("open");
        let k = keypair();
        let mut store = PolicyStore::open(&db, Some(public(&k))).expect("policies");
        let policy = parse(
            "name: p\nrules:\n  - name: r\n    when: { state: ['cpu.total_pct > 80'] }\n    \
             candidates:\n      - { type: restart_service, unit: a.service }\n      \
             - { type: restart_service, unit: b.service }\n    mode: auto\n    cooldown_secs: 0\n    \
             verify: { metric: cpu.total_pct, below: 50, within_secs: 5 }\n",
        )
        .expect("valid");
        store.apply(sign(&k, &policy, 1)).expect("apply");
        let mut executor = test_executor(remediator, store, outbox);
        let command = |unit: &str| Command {
            id: format!("act-{unit}"),
            action_json: serde_json::json!({"type": "restart_service", "unit": unit}).to_string(),
            mode: "execute".into(),
            lease_token: "t".into(),
            lease_expires_ms: now_ms() + 60_000,
            requested_by: "agent:a".into(),
            rule: "p/r".into(),
        };
        // the second candidate runs and is verified like the rule's only action would be
        let (outcome, verify) = executor.execute(&command("b.service")).await;
        assert!(matches!(outcome, Outcome::Verifying), "not executed");
        let (report, spec) = verify.expect("verification");
        assert_eq!(report.decision, Decision::Executed, "{report:?}");
        assert_eq!(spec.within_secs, 5);
        // an action the rule does not list is refused before anything runs
        match executor.execute(&command("c.service")).await {
            (Outcome::Done(decision, reason, _), None) => {
                assert_eq!(decision, "refused");
                assert!(
                    reason.starts_with("not_allowed: the requested action is not one of rule p/r"),
                    "{reason}"
                );
            }
            _ => panic!("an action outside the candidates ran"),
        }
    }

    #[test]
    fn detection_settings_merge_first_wins_ignores_add_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let k = keypair();
        let db = sled::open(dir.path()).expect("db");
        let mut store = PolicyStore::open(&db, Some(public(&k))).expect("open");
        assert_eq!(merged_detection(&store), None);
        for yaml in [
            "name: a\ndetection: { sensitivity: 2.0, ignore_metrics: ['net.*'] }\n",
            "name: b\ndetection: { sensitivity: 0.5, min_duration_secs: 9, ignore_metrics: ['disk.*'] }\n",
            "name: c\ndetection: { floors: [{ metrics: ['cpu.user_pct'], max: 70 }], quiet_windows: [{ start: '02:00', end: '03:00' }] }\n",
            "name: d\ndetection: { floors: [{ metrics: ['mem.used_pct'], max: 90 }] }\n",
        ] {
            store
                .apply(sign(&k, &parse(yaml).expect("valid"), 1))
                .expect("apply");
        }
        let d = merged_detection(&store).expect("settings");
        assert_eq!(d.sensitivity, Some(2.0));
        assert_eq!(d.min_duration_secs, Some(9));
        assert_eq!(
            d.ignore_metrics,
            vec!["net.*".to_string(), "disk.*".to_string()]
        );
        let floors: Vec<&str> = d.floors.iter().map(|f| f.metrics[0].as_str()).collect();
        assert_eq!(floors, ["cpu.user_pct", "mem.used_pct"]);
        assert_eq!(d.quiet_windows.len(), 1);
    }
}
