//! Learning which of a rule's candidate actions works: the choice made when a proposal
//! arrives, the outcome learnt from the report, and the reads and reset of what was
//! learnt. The rule itself ([`crate::domain::choice`]) needs no database.
//!
//! The choice is the control plane's because the verified outcomes of every host arrive
//! here (a fleet learns faster than one host), next to the request they belong to, and the
//! tallies live in the database every replica shares. The agent still decides: it runs a
//! command only if the action is one of the candidates of the signed rule in force, under
//! the same lease, cooldown, budgets and breaker as any other.

use serde_json::json;

use super::Remediation;
use crate::domain::choice::{check_key, context_of, outcome, preferences, Choice, Preference};
use crate::domain::now_ms;
use crate::domain::remediation::{ActionRecord, ActionState, ProposalIn};
use crate::error::ServiceError;
use crate::store::StoreError;

/// The key of a candidate in the tallies: its canonical JSON as the typed allowlist writes
/// it, whoever spelt it.
fn action_key(action: &serde_json::Value) -> Option<String> {
    let typed = serde_json::from_value::<sco_policy::Action>(action.clone()).ok()?;
    serde_json::to_string(&typed).ok()
}

/// What the host's own check of each candidate said when it proposed (`evidence.candidates`,
/// in the rule's order): allowed or not, and the check's report. A position the evidence
/// does not name, or names badly, counts as allowed with no report: the evidence comes from
/// the agent, and only narrows a choice the agent checks again anyway.
fn host_checks(
    evidence: Option<&serde_json::Value>,
    of: usize,
) -> Vec<(bool, Option<serde_json::Value>)> {
    let mut checks = vec![(true, None); of];
    let listed = evidence
        .and_then(|e| e.get("candidates"))
        .and_then(serde_json::Value::as_array);
    for c in listed.into_iter().flatten() {
        let position = c.get("position").and_then(serde_json::Value::as_u64);
        let allowed = c.get("allowed").and_then(serde_json::Value::as_bool);
        if let (Some(p), Some(a)) = (position, allowed) {
            if let Some(slot) = usize::try_from(p).ok().and_then(|p| checks.get_mut(p)) {
                *slot = (a, c.get("report").filter(|r| r.is_object()).cloned());
            }
        }
    }
    checks
}

impl Remediation {
    /// For a proposal of a rule with candidates (waiting to run, or a dry run): chooses the
    /// candidate from the tallies of the incident's context and puts it in the request, with
    /// the choice in its evidence. A dry run records what it would have chosen and learns
    /// nothing. Anything else is left as the agent proposed it.
    pub(super) async fn choose_candidate(
        &self,
        p: &ProposalIn,
        record: &mut ActionRecord,
    ) -> Result<(), StoreError> {
        // A choice is only ever the control plane's: one in the agent's evidence is dropped,
        // so no message can make the report teach a tally of its own making.
        if let Some(e) = record.evidence.as_mut().and_then(|e| e.as_object_mut()) {
            e.remove("choice");
        }
        if !matches!(record.state, ActionState::Proposed | ActionState::DryRun) {
            return Ok(());
        }
        let Some(name) = p.rule.strip_prefix(&format!("{}/", p.policy)) else {
            return Ok(());
        };
        let Some(revision) = self.store.policy_revision(&p.policy, p.revision).await? else {
            return Ok(());
        };
        let Some(policy) = revision.parsed() else {
            return Ok(());
        };
        let Some(rule) = policy.rule(name) else {
            return Ok(());
        };
        if rule.candidates.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = rule
            .candidates
            .iter()
            .filter_map(|a| serde_json::to_string(a).ok())
            .collect();
        if keys.len() != rule.candidates.len() {
            return Ok(());
        }
        let context = context_of(record.evidence.as_ref());
        let tallies = self
            .store
            .candidate_tallies(&record.rule, &context, &keys, now_ms())
            .await?;
        let learns = record.mode == "execute";
        let checks = host_checks(record.evidence.as_ref(), rule.candidates.len());
        let allowed: Vec<bool> = checks.iter().map(|c| c.0).collect();
        let Some(choice) = Choice::make(context, &tallies, &allowed, learns) else {
            return Ok(());
        };
        let Ok(action) = serde_json::to_value(&rule.candidates[choice.candidate]) else {
            return Ok(());
        };
        // a dry run shows what the chosen candidate would have done, from the host's own
        // dry run of it, when the proposal carried one
        if record.state == ActionState::DryRun {
            if let Some(report) = checks.get(choice.candidate).and_then(|c| c.1.clone()) {
                record.report = Some(report);
            }
        }
        record.action = action;
        let evidence = record.evidence.get_or_insert_with(|| json!({}));
        if !evidence.is_object() {
            *evidence = json!({ "agent": evidence.clone() });
        }
        evidence["choice"] = serde_json::to_value(&choice).unwrap_or_default();
        Ok(())
    }

    /// After a report: a request whose choice learns adds its verified outcome to the
    /// tally of the candidate it ran.
    pub(super) async fn learn(&self, request: &str) -> Result<(), StoreError> {
        let Some(a) = self.store.action(request).await? else {
            return Ok(());
        };
        let Some(verified) = outcome(a.state) else {
            return Ok(());
        };
        let choice = a
            .evidence
            .as_ref()
            .and_then(|e| e.get("choice"))
            .and_then(|c| serde_json::from_value::<Choice>(c.clone()).ok());
        let (Some(choice), Some(key)) = (choice, action_key(&a.action)) else {
            return Ok(());
        };
        if !choice.learns || a.mode != "execute" {
            return Ok(());
        }
        let (position, of) = (
            i64::try_from(choice.candidate).unwrap_or(i64::MAX),
            i64::try_from(choice.of).unwrap_or(i64::MAX),
        );
        self.store
            .learn_outcome(
                &a.rule,
                &choice.context,
                &key,
                position,
                of,
                verified,
                now_ms(),
            )
            .await?;
        tracing::info!(request, rule = %a.rule, context = %choice.context, candidate = choice.candidate, verified, "candidate outcome learnt");
        Ok(())
    }

    /// What was learnt, per rule and context, optionally of one rule and/or one context.
    pub async fn preferences(
        &self,
        rule: Option<&str>,
        context: Option<&str>,
    ) -> Result<Vec<Preference>, ServiceError> {
        check_filters(rule, context)?;
        Ok(preferences(
            self.store.preference_rows(rule, context).await?,
        ))
    }

    /// Forgets what was learnt (all of it, or of one rule and/or context): the next
    /// incidents start from the written order again. Audited; returns how many candidates'
    /// tallies were removed.
    pub async fn reset_preferences(
        &self,
        actor: &str,
        rule: Option<&str>,
        context: Option<&str>,
    ) -> Result<u64, ServiceError> {
        check_filters(rule, context)?;
        let deleted = self.store.delete_preferences(rule, context).await?;
        self.audit
            .record(
                actor,
                "remediation.preferences_reset",
                "",
                "deleted",
                json!({ "rule": rule, "context": context, "deleted": deleted }),
            )
            .await;
        Ok(deleted)
    }
}

fn check_filters(rule: Option<&str>, context: Option<&str>) -> Result<(), ServiceError> {
    for (field, v) in [("rule", rule), ("context", context)] {
        if let Some(v) = v {
            check_key(field, v).map_err(ServiceError::Invalid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{json, Value};

    use super::*;
    use crate::domain::policy::PolicyRevision;
    use crate::domain::remediation::{AuditQuery, ReportIn};
    use crate::fleet::audit::Audit;
    use crate::fleet::streams::Streams;
    use crate::store::{sqlite_url, Store};
    use crate::telemetry::Telemetry;

    const POLICY: &str =
        "name: p\nrules:\n  - name: fix\n    when: { state: ['mem.used_pct >= 0'] }\n    \
        candidates:\n      - { type: journal_vacuum, max_size_mb: 100 }\n      \
        - { type: restart_service, unit: app.service }\n    mode: auto\n    \
        verify: { metric: mem.used_pct, below: 101, within_secs: 5 }\n";

    struct Fixture {
        _dir: tempfile::TempDir,
        remediation: Remediation,
        audit: Arc<Audit>,
        seq: i64,
    }

    impl Fixture {
        async fn new() -> Fixture {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::connect(&sqlite_url(dir.path()))
                .await
                .expect("sqlite store");
            let policy = sco_policy::parse(POLICY).expect("valid policy");
            store
                .insert_policy_revision(&PolicyRevision {
                    name: "p".into(),
                    revision: 1,
                    document: policy.canonical_json(),
                    signature: String::new(),
                    source: POLICY.into(),
                    created_by: "admin".into(),
                    created_at_ms: now_ms(),
                })
                .await
                .expect("revision");
            let telemetry = Arc::new(Telemetry::default());
            let streams = Arc::new(Streams::new(telemetry.clone()));
            let audit = Arc::new(Audit::new(store.clone()));
            let remediation = Remediation::new(
                store,
                telemetry,
                streams,
                audit.clone(),
                std::time::Duration::from_secs(900),
            );
            Fixture {
                _dir: dir,
                remediation,
                audit,
                seq: 0,
            }
        }

        /// An agent's proposal of rule `p/fix` (as the agent sends it: its first candidate);
        /// returns the request as recorded.
        async fn propose(&mut self, mode: &str, evidence: Value) -> ActionRecord {
            self.seq += 1;
            let id = format!("prop-{}", self.seq);
            let p = ProposalIn {
                seq: self.seq,
                produced_at_ms: now_ms(),
                id: id.clone(),
                policy: "p".into(),
                revision: 1,
                rule: "p/fix".into(),
                action_json: json!({"type": "journal_vacuum", "max_size_mb": 100}).to_string(),
                mode: mode.into(),
                decision: if mode == "dry_run" {
                    "dry_run"
                } else {
                    "proposed"
                }
                .into(),
                reason: String::new(),
                report_json: String::new(),
                evidence_json: evidence.to_string(),
                max_concurrent: 1,
            };
            self.remediation
                .proposal("agent-1", p)
                .await
                .expect("proposal");
            let q = crate::domain::remediation::ActionQuery {
                limit: 100,
                ..Default::default()
            };
            let all = self.remediation.actions(&q).await.expect("actions");
            all.into_iter().find(|a| a.id == id).expect("recorded")
        }

        async fn report(&mut self, id: &str, decision: &str) {
            self.seq += 1;
            let r = ReportIn {
                seq: self.seq,
                produced_at_ms: now_ms(),
                command_id: id.into(),
                decision: decision.into(),
                reason: String::new(),
                report_json: "{}".into(),
            };
            self.remediation
                .action_report("agent-1", r)
                .await
                .expect("report");
        }

        async fn tallies(&self, context: &str) -> Vec<(i64, i64)> {
            let p = self
                .remediation
                .preferences(Some("p/fix"), Some(context))
                .await
                .expect("preferences");
            p.first().map_or_else(Vec::new, |p| {
                p.candidates
                    .iter()
                    .map(|c| (c.successes, c.failures))
                    .collect()
            })
        }
    }

    fn memory() -> Value {
        json!({"state": [{"condition": "mem.used_pct >= 0", "value": 40.0}]})
    }

    #[tokio::test]
    async fn proposals_run_the_chosen_candidate_and_only_executed_outcomes_teach() {
        let mut f = Fixture::new().await;
        let mut ran = Vec::new();
        for _ in 0..4 {
            let a = f.propose("auto", memory()).await;
            let kind = a.action["type"].as_str().unwrap_or_default().to_string();
            let choice = &a.evidence.as_ref().expect("evidence")["choice"];
            assert_eq!(choice["context"], "memory/state", "{a:?}");
            assert_eq!(choice["learns"], true, "{a:?}");
            // the agent's own evidence is kept beside the choice
            assert_eq!(
                a.evidence.as_ref().expect("evidence")["state"][0]["value"],
                40.0
            );
            let works = kind == "restart_service";
            f.report(&a.id, if works { "executed" } else { "failed" })
                .await;
            ran.push(kind);
        }
        assert_eq!(
            ran,
            [
                "journal_vacuum",
                "journal_vacuum",
                "restart_service",
                "restart_service"
            ]
        );
        assert_eq!(f.tallies("memory/state").await, [(0, 2), (2, 0)]);

        // A refusal by the agent's safety rules teaches nothing; nor does a dry run, which
        // records what it would have chosen.
        let a = f.propose("auto", memory()).await;
        f.report(&a.id, "refused").await;
        let dry = f.propose("dry_run", memory()).await;
        assert_eq!(dry.state, ActionState::DryRun);
        assert_eq!(dry.action["type"], "restart_service", "{dry:?}");
        assert_eq!(
            dry.evidence.as_ref().expect("evidence")["choice"]["learns"],
            false
        );
        f.report(&dry.id, "executed").await;
        assert_eq!(f.tallies("memory/state").await, [(0, 2), (2, 0)]);

        // Another context starts from the written order.
        let cpu = json!({"anomaly": {"family": "cpu", "severity": "high"}});
        let a = f.propose("approve", cpu).await;
        assert_eq!(a.action["type"], "journal_vacuum", "{a:?}");
        assert_eq!(f.tallies("cpu/high").await, [(0, 0), (0, 0)]);

        // A report for a request that is not the host's teaches nothing either.
        let a = f.propose("auto", memory()).await;
        f.seq += 1;
        let stranger = ReportIn {
            seq: f.seq,
            produced_at_ms: now_ms(),
            command_id: a.id.clone(),
            decision: "executed".into(),
            reason: String::new(),
            report_json: "{}".into(),
        };
        f.remediation
            .action_report("agent-2", stranger)
            .await
            .expect("report");
        assert_eq!(f.tallies("memory/state").await, [(0, 2), (2, 0)]);

        let e = f
            .remediation
            .reset_preferences("otto", Some("p/f ix"), None)
            .await
            .expect_err("bad rule");
        assert!(
            matches!(e, ServiceError::Invalid(ref m) if m.starts_with("rule: ")),
            "{e:?}"
        );
        let deleted = f
            .remediation
            .reset_preferences("otto", Some("p/fix"), Some("memory/state"))
            .await
            .expect("reset");
        assert_eq!(deleted, 2);
        assert!(f.tallies("memory/state").await.is_empty());
        assert_eq!(f.tallies("cpu/high").await.len(), 2, "other contexts stay");
        let a = f.propose("auto", memory()).await;
        assert_eq!(
            a.action["type"], "journal_vacuum",
            "the written order again"
        );
        let audit = f
            .audit
            .entries(&AuditQuery {
                action: Some("remediation.preferences_reset".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("audit");
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0].actor, "otto");
        assert_eq!(audit[0].detail["deleted"], 2);
    }

    #[tokio::test]
    async fn a_candidate_the_host_refused_is_passed_over_and_a_dry_run_shows_the_chosen_one() {
        let mut f = Fixture::new().await;
        // The agent checked both candidates: the first (preferred by the written order) is
        // refused on this host, the second allowed.
        let checked = |mode: &str| {
            let mut e = memory();
            e["candidates"] = json!([
                {"position": 0, "allowed": false, "reason": "command_missing: no journalctl",
                 "report": {"decision": "refused", "action": {"type": "journal_vacuum"}}},
                {"position": 1, "allowed": true, "reason": "",
                 "report": {"decision": mode, "argv": ["systemctl", "restart", "a.service"]}},
            ]);
            e
        };
        let a = f.propose("auto", checked("dry_run")).await;
        assert_eq!(a.action["type"], "restart_service", "{a:?}");
        let choice = &a.evidence.as_ref().expect("evidence")["choice"];
        assert_eq!(choice["candidate"], 1, "{a:?}");
        assert_eq!(choice["refused_here"], json!([0]), "{a:?}");
        // the host's checks stay in the evidence for whoever reads the request
        assert_eq!(
            a.evidence.as_ref().expect("evidence")["candidates"][0]["allowed"],
            false
        );

        // A dry run records the chosen candidate's own dry run, not the first's.
        let dry = f.propose("dry_run", checked("dry_run")).await;
        assert_eq!(dry.state, ActionState::DryRun);
        assert_eq!(dry.action["type"], "restart_service", "{dry:?}");
        assert_eq!(
            dry.report.as_ref().expect("report")["argv"][1],
            "restart",
            "{dry:?}"
        );

        // Evidence that names positions badly narrows nothing.
        let mut odd = memory();
        odd["candidates"] = json!([
            {"position": 7, "allowed": false},
            {"position": "0", "allowed": false},
            {"position": 0},
        ]);
        let a = f.propose("auto", odd).await;
        assert_eq!(a.action["type"], "journal_vacuum", "{a:?}");
    }

    #[tokio::test]
    async fn a_proposal_without_known_candidates_is_left_as_proposed() {
        let mut f = Fixture::new().await;
        f.seq += 1;
        let p = ProposalIn {
            seq: f.seq,
            produced_at_ms: now_ms(),
            id: "unknown-policy".into(),
            policy: "q".into(),
            revision: 1,
            rule: "q/fix".into(),
            action_json: json!({"type": "restart_service", "unit": "b.service"}).to_string(),
            mode: "auto".into(),
            decision: "proposed".into(),
            reason: String::new(),
            report_json: String::new(),
            // a choice the agent claims is not the control plane's, and teaches nothing
            evidence_json: json!({
                "state": [{"condition": "mem.used_pct >= 0", "value": 40.0}],
                "choice": {"context": "memory/state", "candidate": 0, "of": 1, "scores": [1.0], "learns": true},
            })
            .to_string(),
            max_concurrent: 1,
        };
        f.remediation
            .proposal("agent-1", p)
            .await
            .expect("proposal");
        let q = crate::domain::remediation::ActionQuery {
            limit: 10,
            ..Default::default()
        };
        let a = f.remediation.actions(&q).await.expect("actions");
        assert_eq!(a[0].action["unit"], "b.service");
        assert!(a[0]
            .evidence
            .as_ref()
            .expect("evidence")
            .get("choice")
            .is_none());
        f.report("unknown-policy", "executed").await;
        let p = f.remediation.preferences(None, None).await.expect("read");
        assert!(p.is_empty(), "{p:?}");
    }
}
