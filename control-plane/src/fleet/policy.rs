//! Fleet policies: signed immutable revisions, rollouts with a canary that
//! stops by itself, and delivery of the revision meant for each host down
//! its stream.
//!
//! Which revision a host should run follows from the policy's newest
//! rollout: during the canary phase canary hosts get the new revision and
//! the others keep the previous one; a complete rollout gives everyone the
//! new one; a stopped rollout puts everyone back on the previous one. Every
//! replica pushes that revision to the agents connected to it, and again to
//! an agent that reconnects.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::error::ServiceError;

use super::audit::Audit;
use super::ingest::{GroupWriter, Grouped};
use super::streams::Streams;
use crate::domain::policy::{
    check_rollout_request, choose_canaries, decide, initial_state, Candidate, HostPolicyState,
    PolicyHostStatus, PolicyRevision, PolicyRolloutStatus, PolicyStatusIn, Rollout, RolloutRequest,
    RolloutState,
};
use crate::domain::remediation::AuditEntry;
use crate::domain::{new_id, now_ms, Ingested};
use crate::pki::PolicySigner;
use crate::store::{Store, StoreError, Wake};
use crate::telemetry::Telemetry;

/// The policies service: revisions, rollouts and the delivery of the revision meant for each
/// host to the streams held here.
pub struct Policies {
    store: Store,
    telemetry: Arc<Telemetry>,
    streams: Arc<Streams>,
    audit: Arc<Audit>,
    /// Signs revisions; without it no revision can be created.
    signer: Option<PolicySigner>,
    /// The group commit of policy statuses (a rollout makes every agent report at once);
    /// without it each status is its own transaction.
    status_writer: Option<GroupWriter<PolicyStatusIn>>,
}

/// A policy status is stored with its audit entry, in the same transaction.
impl Grouped for PolicyStatusIn {
    const KIND: &'static str = "policy status";
    async fn store_group<'a>(
        store: &'a Store,
        items: &'a [(&'a str, &'a Self)],
        now_ms: i64,
    ) -> Result<Vec<Ingested>, StoreError> {
        let audits: Vec<AuditEntry> = items
            .iter()
            .map(|&(agent_id, s)| status_audit(agent_id, s, now_ms))
            .collect();
        store.record_policy_statuses(items, &audits, now_ms).await
    }
}

/// The audit entry of an agent's policy status: applied or refused.
fn status_audit(agent_id: &str, s: &PolicyStatusIn, now_ms: i64) -> AuditEntry {
    let (action, result) = if s.applied {
        ("policy.applied", "applied")
    } else {
        ("policy.refused", "refused")
    };
    AuditEntry {
        id: new_id("audit"),
        at_ms: now_ms,
        actor: format!("agent:{agent_id}"),
        action: action.into(),
        host_id: agent_id.into(),
        result: result.into(),
        detail: serde_json::json!({
            "policy": s.name, "revision": s.revision,
            "active_revision": s.active_revision, "error": s.error,
        }),
    }
}

impl Policies {
    pub fn new(
        store: Store,
        telemetry: Arc<Telemetry>,
        streams: Arc<Streams>,
        audit: Arc<Audit>,
        signer: Option<PolicySigner>,
        group_commit: bool,
    ) -> Self {
        Self {
            status_writer: group_commit.then(|| GroupWriter::start(store.clone(), None)),
            store,
            telemetry,
            streams,
            audit,
            signer,
        }
    }

    /// Validates, signs and stores a new revision. Posting the document of
    /// the newest revision again returns that revision (`false`).
    pub async fn create_policy(
        &self,
        actor: &str,
        source: &str,
    ) -> Result<(PolicyRevision, bool), ServiceError> {
        let policy = sco_policy::parse(source).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let document = policy.canonical_json();
        self.next_revision(
            actor,
            &policy.name,
            &document,
            source,
            "policy.create",
            |prev| Ok(prev.filter(|p| p.document == document).cloned()),
        )
        .await
    }

    /// Signs `document` as the next revision of `name` and stores it,
    /// unless `existing` (given the newest revision) answers with one.
    async fn next_revision(
        &self,
        actor: &str,
        name: &str,
        document: &str,
        source: &str,
        audit_action: &str,
        existing: impl Fn(Option<&PolicyRevision>) -> Result<Option<PolicyRevision>, ServiceError>,
    ) -> Result<(PolicyRevision, bool), ServiceError> {
        let signer = self.signer.as_ref().ok_or_else(|| {
            ServiceError::Invalid("this control plane has no policy signing key".into())
        })?;
        for _ in 0..5 {
            let latest = self.store.latest_policy_revision(name).await?;
            let prev = if latest > 0 {
                self.store.policy_revision(name, latest).await?
            } else {
                None
            };
            if let Some(rev) = existing(prev.as_ref())? {
                return Ok((rev, false));
            }
            let revision = latest + 1;
            let rev = PolicyRevision {
                name: name.to_string(),
                revision,
                signature: signer.sign(name, revision as u64, document),
                document: document.to_string(),
                source: source.to_string(),
                created_by: actor.to_string(),
                created_at_ms: now_ms(),
            };
            match self.store.insert_policy_revision(&rev).await {
                Ok(()) => {
                    self.audit
                        .record(
                            actor,
                            audit_action,
                            "",
                            "stored",
                            serde_json::json!({ "policy": rev.name, "revision": rev.revision }),
                        )
                        .await;
                    return Ok((rev, true));
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Conflict(format!(
            "policy {name}: concurrent revisions, retry"
        )))
    }

    /// Withdraws a policy: a signed revision with an empty document, rolled
    /// out to every host at once; agents remove the policy.
    pub async fn withdraw_policy(
        &self,
        actor: &str,
        name: &str,
    ) -> Result<(PolicyRevision, Rollout), ServiceError> {
        if let Some(c) = self.store.rollouts(name).await?.first() {
            if c.state == RolloutState::Canary {
                return Err(ServiceError::Conflict(format!(
                    "rollout {} of revision {} is still in its canary phase",
                    c.id, c.revision
                )));
            }
        }
        let (rev, _) = self
            .next_revision(actor, name, "", "", "policy.withdraw", |prev| match prev {
                None => Err(ServiceError::NotFound(format!("no policy {name:?}"))),
                Some(p) if p.is_withdrawal() => Err(ServiceError::Conflict(format!(
                    "policy {name:?} is already withdrawn (revision {})",
                    p.revision
                ))),
                Some(_) => Ok(None),
            })
            .await?;
        let rollout = self
            .start_rollout(
                actor,
                name,
                RolloutRequest {
                    revision: Some(rev.revision),
                    canary_percent: 0,
                    canary_secs: 0,
                    max_new_anomalies: 0,
                },
            )
            .await?;
        Ok((rev, rollout))
    }

    /// Starts a rollout of a revision.
    pub async fn start_rollout(
        &self,
        actor: &str,
        name: &str,
        req: RolloutRequest,
    ) -> Result<Rollout, ServiceError> {
        check_rollout_request(&req).map_err(ServiceError::Invalid)?;
        let began = std::time::Instant::now();
        let latest = self.store.latest_policy_revision(name).await?;
        if latest == 0 {
            return Err(ServiceError::NotFound(format!("no policy {name:?}")));
        }
        let revision = req.revision.unwrap_or(latest);
        let rev = self
            .store
            .policy_revision(name, revision)
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(format!("policy {name:?} has no revision {revision}"))
            })?;
        let current = self.store.rollouts(name).await?.into_iter().next();
        if let Some(c) = current.as_ref().filter(|c| c.state == RolloutState::Canary) {
            return Err(ServiceError::Conflict(format!(
                "rollout {} of revision {} is still in its canary phase",
                c.id, c.revision
            )));
        }
        let previous_revision = current.as_ref().map_or(0, Rollout::settled_revision);
        // A withdrawal has no target: it goes to every host.
        let now = now_ms();
        let targeted: Vec<Candidate> = self
            .store
            .hosts(i64::MAX, now)
            .await?
            .into_iter()
            .filter(|h| !h.revoked && rev.targets(&h.id, &h.labels))
            .map(|h| Candidate {
                id: h.id,
                connected: h.connected,
            })
            .collect();
        let hosts = choose_canaries(name, &targeted, req.canary_percent);
        let canary_ms = req.canary_secs * 1000;
        let baseline = self
            .store
            .count_anomalies_opened(&hosts, now - canary_ms, now)
            .await?;
        let (state, reason) = initial_state(req.canary_percent, &hosts);
        let rollout = Rollout {
            id: new_id("rollout"),
            name: name.to_string(),
            revision,
            previous_revision,
            canary_percent: req.canary_percent,
            canary_hosts: hosts,
            canary_secs: req.canary_secs,
            max_new_anomalies: req.max_new_anomalies,
            baseline_anomalies: baseline,
            // the document's target selects the hosts of a policy
            target: sco_policy::Target::default(),
            state,
            reason,
            started_by: actor.to_string(),
            started_at_ms: now,
            updated_at_ms: now,
        };
        self.store.insert_rollout(&rollout).await?;
        let stored = began.elapsed();
        // The streams held here are sent the revision before the answer, not at the next tick
        // (which first renews leases and judges rollouts on a database that may be busy with
        // ingest), from the hosts just read: no second read of 10,000 hosts and what they run
        // on a database busy with ingest. The tick's full sync follows (withdrawals from
        // hosts that no longer match); the other replicas are told to do the same.
        self.store.announce(Wake::Ticks).await;
        let sent = targeted
            .iter()
            .filter(|c| rollout.revision_for(&c.id) == revision)
            .filter(|c| self.streams.send_policy(&c.id, rev.clone()))
            .count();
        let pushed = began.elapsed();
        tracing::info!(
            policy = name,
            revision,
            targeted = targeted.len(),
            sent,
            stored_ms = stored.as_millis() as u64,
            pushed_ms = pushed.as_millis() as u64,
            "rollout stored and pushed to the streams held here"
        );
        self.audit
            .record(
                actor,
                "policy.rollout",
                "",
                rollout.state.as_str(),
                serde_json::json!({
                    "policy": name, "revision": revision, "rollout": rollout.id,
                    "canary_hosts": rollout.canary_hosts, "previous_revision": previous_revision,
                }),
            )
            .await;
        Ok(rollout)
    }

    /// Finishes or stops canary rollouts. Safe on every replica: state
    /// changes are conditional and audited once.
    pub async fn advance_rollouts(&self) -> Result<(), StoreError> {
        let now = now_ms();
        for r in self.store.current_rollouts().await? {
            if r.state != RolloutState::Canary {
                continue;
            }
            let statuses = self.store.policy_statuses(&r.name).await?;
            let opened = self
                .store
                .count_anomalies_opened(&r.canary_hosts, r.started_at_ms, now)
                .await?;
            let Some((to, reason)) = decide(&r, &statuses, opened, now) else {
                continue;
            };
            if self
                .store
                .transition_rollout(&r.id, RolloutState::Canary, to, &reason, now)
                .await?
            {
                tracing::info!(policy = %r.name, revision = r.revision, state = %to, %reason, "rollout");
                self.audit
                .record(
                    "control-plane",
                    "policy.rollout",
                    "",
                    to.as_str(),
                    serde_json::json!({ "policy": r.name, "revision": r.revision, "rollout": r.id, "reason": reason }),
                )
                .await;
            }
        }
        Ok(())
    }

    /// The revisions `host` should run, by policy name.
    async fn desired_policies(
        &self,
        host: &str,
        labels: &BTreeMap<String, String>,
        rollouts: &[Rollout],
        cache: &mut HashMap<(String, i64), Option<PolicyRevision>>,
    ) -> Result<Vec<PolicyRevision>, StoreError> {
        let mut out = Vec::new();
        for r in rollouts {
            let revision = r.revision_for(host);
            if revision == 0 {
                continue;
            }
            let key = (r.name.clone(), revision);
            if !cache.contains_key(&key) {
                let rev = self.store.policy_revision(&r.name, revision).await?;
                cache.insert(key.clone(), rev);
            }
            if let Some(Some(rev)) = cache.get(&key) {
                if rev.targets(host, labels) {
                    out.push(rev.clone());
                }
            }
        }
        Ok(out)
    }

    /// Sends each agent connected here the revisions meant for it that its
    /// current stream has not been sent yet, and withdraws, on that host
    /// only, a policy it still runs that is no longer meant for it (its
    /// labels stopped matching, or the rollout that brought it there stopped
    /// with no earlier revision to return to).
    pub async fn sync_policies(&self) -> Result<(), StoreError> {
        self.sync_policies_of(&self.streams.connected_ids()).await
    }

    /// [`Policies::sync_policies`] for the given agents only: a connecting agent syncs itself,
    /// not the whole connected fleet (which made a reconnecting fleet quadratic).
    pub async fn sync_policies_of(&self, agents: &[String]) -> Result<(), StoreError> {
        if agents.is_empty() {
            return Ok(());
        }
        let rollouts = self.store.current_rollouts().await?;
        if rollouts.is_empty() {
            return Ok(());
        }
        let mut in_force: HashMap<String, Vec<(String, i64)>> = HashMap::new();
        for (host, name, revision) in self.store.applied_policies(agents).await? {
            in_force.entry(host).or_default().push((name, revision));
        }
        let mut cache = HashMap::new();
        let now = now_ms();
        for host in self.store.hosts_by_id(agents, i64::MAX, now).await? {
            let desired = self
                .desired_policies(&host.id, &host.labels, &rollouts, &mut cache)
                .await?;
            for (name, revision) in in_force.remove(&host.id).unwrap_or_default() {
                if desired.iter().any(|d| d.name == name)
                    || !rollouts.iter().any(|r| r.name == name)
                {
                    continue;
                }
                let key = (name.clone(), revision);
                if !cache.contains_key(&key) {
                    let rev = self.store.policy_revision(&name, revision).await?;
                    cache.insert(key.clone(), rev);
                }
                let runs = matches!(cache.get(&key), Some(Some(r)) if !r.is_withdrawal());
                if let (true, Some(w)) = (runs, self.host_withdrawal(&name)) {
                    if self.streams.send_policy(&host.id, w) {
                        self.audit
                .record(
                            "control-plane",
                            "policy.unassign",
                            &host.id,
                            "sent",
                            serde_json::json!({
                                "policy": name, "running_revision": revision,
                                "reason": "no longer meant for this host (labels or a stopped rollout)",
                            }),
                        )
                        .await;
                    }
                }
            }
            for rev in desired {
                self.streams.send_policy(&host.id, rev);
            }
        }
        Ok(())
    }

    /// Revision 0 of `name` with an empty document, signed: removes the
    /// policy from the one host it is sent to (a fleet-wide withdrawal is a
    /// numbered revision, rolled out).
    fn host_withdrawal(&self, name: &str) -> Option<PolicyRevision> {
        let signer = self.signer.as_ref()?;
        Some(PolicyRevision {
            name: name.to_string(),
            revision: 0,
            document: String::new(),
            signature: signer.sign(name, 0, ""),
            source: String::new(),
            created_by: "control-plane".into(),
            created_at_ms: 0,
        })
    }

    /// Stores an agent's policy status with its audit entry, once per (agent, seq); with the
    /// group commit, together with other streams' statuses. Returns once it is committed.
    pub async fn policy_status_report(
        &self,
        agent_id: &str,
        s: PolicyStatusIn,
    ) -> Result<Ingested, StoreError> {
        let refused = (!s.applied).then(|| (s.name.clone(), s.revision, s.error.clone()));
        let ingested = match &self.status_writer {
            Some(w) => w.write(agent_id, s).await?,
            None => PolicyStatusIn::store_group(&self.store, &[(agent_id, &s)], now_ms())
                .await?
                .pop()
                .ok_or_else(|| StoreError::Db("no result for the one policy status".into()))?,
        };
        if ingested == Ingested::Stored {
            self.telemetry.ingest_messages.inc();
            if let Some((policy, revision, error)) = refused {
                tracing::warn!(agent_id, %policy, revision, %error, "agent refused a policy");
            }
        }
        Ok(ingested)
    }

    /// Per host: the revision meant for it, and what it reported.
    pub async fn policy_status(&self, name: &str) -> Result<PolicyRolloutStatus, ServiceError> {
        if self.store.latest_policy_revision(name).await? == 0 {
            return Err(ServiceError::NotFound(format!("no policy {name:?}")));
        }
        let rollout = self.store.rollouts(name).await?.into_iter().next();
        let statuses: HashMap<String, PolicyHostStatus> = self
            .store
            .policy_statuses(name)
            .await?
            .into_iter()
            .map(|s| (s.host_id.clone(), s))
            .collect();
        let now = now_ms();
        let mut cache = HashMap::new();
        let mut hosts = Vec::new();
        for h in self.store.hosts(i64::MAX, now).await? {
            let desired = match &rollout {
                Some(r) => self
                    .desired_policies(&h.id, &h.labels, std::slice::from_ref(r), &mut cache)
                    .await?
                    .first()
                    .map_or(0, |p| p.revision),
                None => 0,
            };
            let status = statuses.get(&h.id);
            if desired == 0 && status.is_none() {
                continue;
            }
            hosts.push(HostPolicyState {
                canary: rollout
                    .as_ref()
                    .is_some_and(|r| r.canary_hosts.contains(&h.id)),
                host_id: h.id,
                desired_revision: desired,
                reported_revision: status.map_or(0, |s| s.revision),
                applied_revision: status.map_or(0, |s| s.applied_revision),
                applied_at_ms: status.map_or(0, |s| s.applied_at_ms),
                error: status.map_or(String::new(), |s| s.error.clone()),
                in_sync: status
                    .is_some_and(|s| s.applied_revision == desired && s.error.is_empty()),
            });
        }
        Ok(PolicyRolloutStatus {
            name: name.to_string(),
            rollout,
            hosts,
        })
    }

    /// The newest revision of every policy, with the policy's newest rollout.
    pub async fn policies(&self) -> Result<Vec<(PolicyRevision, Option<Rollout>)>, StoreError> {
        let rollouts = self.store.current_rollouts().await?;
        Ok(self
            .store
            .latest_policies()
            .await?
            .into_iter()
            .map(|p| {
                let rollout = rollouts.iter().find(|r| r.name == p.name).cloned();
                (p, rollout)
            })
            .collect())
    }

    /// Every revision of policy `name` and its rollouts, newest first.
    pub async fn policy_history(
        &self,
        name: &str,
    ) -> Result<(Vec<PolicyRevision>, Vec<Rollout>), StoreError> {
        let revisions = self.store.policy_revisions(name).await?;
        let rollouts = self.store.rollouts(name).await?;
        Ok((revisions, rollouts))
    }
}
