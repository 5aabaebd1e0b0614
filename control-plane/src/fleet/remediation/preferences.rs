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
        let Some(choice) = Choice::make(context, &tallies, learns) else {
            return Ok(());
        };
        let Ok(action) = serde_json::to_value(&rule.candidates[choice.candidate]) else {
            return Ok(());
        };
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
        Ok(preferences(self.store.preference_rows(rule, context).await?))
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
