//! What the REST API reads: hosts with their latest values and processes, rollups, anomaly
//! events, policies with their rollouts, remediation requests, enrollment tokens and the
//! audit log. Reads only, each through the store; the edges never hold the store itself.

use super::Fleet;
use crate::domain::policy::{PolicyRevision, Rollout};
use crate::domain::remediation::{ActionQuery, ActionRecord, AuditEntry, AuditQuery};
use crate::domain::{
    now_ms, Anomaly, AnomalyQuery, EnrollmentToken, Host, LatestValue, ProcessRow, RollupPoint,
    RollupQuery,
};
use crate::store::StoreError;

/// One host as `GET /hosts/{id}` shows it.
#[derive(Debug, Clone)]
pub struct HostDetail {
    pub host: Host,
    pub latest: Vec<LatestValue>,
    /// When the top processes were sampled (Unix ms) and the processes.
    pub processes_at_ms: i64,
    pub processes: Vec<ProcessRow>,
}

impl Fleet {
    /// Whether the database answers, and which backend it is (`sqlite`, `postgres`).
    pub async fn database(&self) -> (bool, String) {
        let reachable = self.store.ping().await;
        let backend = format!("{:?}", self.store.backend()).to_lowercase();
        (reachable, backend)
    }

    /// Every host; one whose last message is older than `stale_after_ms` shows disconnected.
    pub async fn hosts(&self, stale_after_ms: i64) -> Result<Vec<Host>, StoreError> {
        self.store.hosts(stale_after_ms, now_ms()).await
    }

    pub async fn host_detail(
        &self,
        id: &str,
        stale_after_ms: i64,
    ) -> Result<Option<HostDetail>, StoreError> {
        let Some(host) = self.store.host(id, stale_after_ms, now_ms()).await? else {
            return Ok(None);
        };
        let latest = self.store.latest_values(id).await?;
        let (processes_at_ms, processes) = self.store.top_processes(id).await?;
        Ok(Some(HostDetail {
            host,
            latest,
            processes_at_ms,
            processes,
        }))
    }

    pub async fn rollups(&self, q: &RollupQuery) -> Result<Vec<RollupPoint>, StoreError> {
        self.store.rollups(q).await
    }

    pub async fn anomalies(&self, q: &AnomalyQuery) -> Result<Vec<Anomaly>, StoreError> {
        self.store.anomalies(q).await
    }

    pub async fn anomaly(&self, id: &str) -> Result<Option<Anomaly>, StoreError> {
        self.store.anomaly(id).await
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

    pub async fn actions(&self, q: &ActionQuery) -> Result<Vec<ActionRecord>, StoreError> {
        self.store.actions(q).await
    }

    pub async fn audit_log(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.store.audit_log(q).await
    }

    pub async fn enrollment_tokens(&self) -> Result<Vec<EnrollmentToken>, StoreError> {
        self.store.enrollment_tokens().await
    }

    /// Revokes an enrollment token (audited); false when there is no such token.
    pub async fn revoke_enrollment_token(&self, actor: &str, id: &str) -> Result<bool, StoreError> {
        if !self.store.revoke_enrollment_token(id).await? {
            return Ok(false);
        }
        self.audit(
            actor,
            "enrollment_token.revoke",
            "",
            "revoked",
            serde_json::json!({ "token": id }),
        )
        .await;
        tracing::info!(token = %id, by = %actor, "enrollment token revoked");
        Ok(true)
    }
}
