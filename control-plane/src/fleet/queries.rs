//! What the REST API reads: hosts with their latest values and processes, rollups, anomaly
//! events, policies with their rollouts, remediation requests, enrollment tokens and the
//! audit log. Reads only, each through the store; the edges never hold the store itself.

use super::Fleet;
use crate::domain::policy::{PolicyRevision, Rollout};
use crate::domain::remediation::{ActionQuery, ActionRecord, AuditEntry, AuditQuery};
use crate::domain::{
    now_ms, Anomaly, AnomalyQuery, EnrollmentToken, Host, HostLatestValue, LatestValue,
    OpenAnomalies, ProcessRow, RollupPoint, RollupQuery,
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

/// The whole fleet at one moment, for one Prometheus scrape (`GET /metrics/fleet`).
#[derive(Debug, Clone)]
pub struct FleetSnapshot {
    /// Every known host, ordered by id.
    pub hosts: Vec<Host>,
    /// The values of each connected host's newest rollup, ordered by host, metric and
    /// device. A disconnected host has none: its last values would look current.
    pub latest: Vec<HostLatestValue>,
    /// Open anomaly events per host, family and severity.
    pub open_anomalies: Vec<OpenAnomalies>,
}

impl Fleet {
    /// Whether the database answers, and which backend it is (`sqlite`, `postgres`).
    /// A rollup stored in the last few seconds answers without asking the database: under a
    /// burst of ingest, a ping would wait for a pool connection behind the writes.
    pub async fn database(&self) -> (bool, String) {
        let recent = now_ms()
            - self
                .last_stored_ms
                .load(std::sync::atomic::Ordering::Relaxed);
        let reachable = recent < 5_000
            || tokio::time::timeout(std::time::Duration::from_secs(5), self.store.ping())
                .await
                .unwrap_or(false);
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

    /// Hosts, their newest values and their open anomalies: three queries whatever the size
    /// of the fleet.
    pub async fn fleet_snapshot(&self, stale_after_ms: i64) -> Result<FleetSnapshot, StoreError> {
        let hosts = self.store.hosts(stale_after_ms, now_ms()).await?;
        let mut latest = self.store.newest_rollup_values().await?;
        let connected: std::collections::HashSet<&str> = hosts
            .iter()
            .filter(|h| h.connected)
            .map(|h| h.id.as_str())
            .collect();
        latest.retain(|v| connected.contains(v.host_id.as_str()));
        let open_anomalies = self.store.open_anomaly_counts().await?;
        Ok(FleetSnapshot {
            hosts,
            latest,
            open_anomalies,
        })
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::{AnomalyChange, ChangeKind, HostInfo, MetricRow, RollupBatch, Severity};
    use crate::store::{sqlite_url, Store};
    use crate::telemetry::Telemetry;

    fn metric(name: &str, device: &str, last: f64) -> MetricRow {
        MetricRow {
            metric: name.into(),
            device: device.into(),
            min: last,
            mean: last,
            max: last,
            last,
            count: 1,
        }
    }

    fn rollup(seq: i64, end_ms: i64, metrics: Vec<MetricRow>) -> RollupBatch {
        RollupBatch {
            seq,
            produced_at_ms: end_ms,
            window_start_ms: end_ms - 1000,
            window_end_ms: end_ms,
            metrics,
            top_processes: Vec::new(),
            outbox_dropped_total: 0,
        }
    }

    fn opened(seq: i64, family: &str, severity: Severity, score: f64) -> AnomalyChange {
        AnomalyChange {
            seq,
            produced_at_ms: 1,
            kind: ChangeKind::Opened,
            open_seq: seq,
            run_started_ms: 1,
            started_ms: 1,
            updated_ms: 1,
            ended_ms: None,
            score,
            peak_score: score,
            severity,
            contributors: Vec::new(),
            context: Vec::new(),
            context_processes: Vec::new(),
            model: "test".into(),
            family: family.into(),
            close_reason: String::new(),
            culprits: Vec::new(),
        }
    }

    #[tokio::test]
    async fn the_snapshot_has_each_connected_hosts_newest_rollup_and_open_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(&sqlite_url(dir.path()))
            .await
            .expect("sqlite store");
        let now = now_ms();
        for id in ["a", "b"] {
            store
                .upsert_host(id, &HostInfo::default(), now)
                .await
                .expect("host");
        }
        // Host a: the newest window lacks the disk an older one had.
        let older = vec![
            metric("cpu.total_pct", "", 10.0),
            metric("disk.used_pct", "/mnt", 50.0),
        ];
        let newer = vec![
            metric("cpu.total_pct", "", 20.0),
            metric("mem.used_pct", "", 30.0),
        ];
        store
            .ingest_rollup("a", &rollup(1, 1000, older), now)
            .await
            .expect("rollup");
        store
            .ingest_rollup("a", &rollup(2, 2000, newer), now)
            .await
            .expect("rollup");
        // Host b went away: it stays known, without values.
        store
            .ingest_rollup(
                "b",
                &rollup(1, 1000, vec![metric("cpu.total_pct", "", 99.0)]),
                now,
            )
            .await
            .expect("rollup");
        store.set_disconnected("b", now).await.expect("disconnect");
        for (seq, family, severity, score) in [
            (3, "cpu", Severity::High, 0.5),
            (4, "cpu", Severity::High, 0.75),
            (5, "memory", Severity::Low, 0.25),
        ] {
            store
                .ingest_anomaly("a", &opened(seq, family, severity, score), now)
                .await
                .expect("anomaly");
        }
        let mut closed = opened(6, "disk_space", Severity::Low, 0.1);
        store
            .ingest_anomaly("a", &closed, now)
            .await
            .expect("anomaly");
        closed.seq = 7;
        closed.kind = ChangeKind::Closed;
        closed.ended_ms = Some(2);
        store
            .ingest_anomaly("a", &closed, now)
            .await
            .expect("close");

        let fleet = Fleet::new(store, Arc::new(Telemetry::default()));
        let s = fleet.fleet_snapshot(60_000).await.expect("snapshot");
        let hosts: Vec<(&str, bool)> = s
            .hosts
            .iter()
            .map(|h| (h.id.as_str(), h.connected))
            .collect();
        assert_eq!(hosts, [("a", true), ("b", false)]);
        let latest: Vec<(&str, &str, &str, i64, f64)> = s
            .latest
            .iter()
            .map(|v| {
                (
                    v.host_id.as_str(),
                    v.metric.as_str(),
                    v.device.as_str(),
                    v.ts_ms,
                    v.value,
                )
            })
            .collect();
        assert_eq!(
            latest,
            [
                ("a", "cpu.total_pct", "", 2000, 20.0),
                ("a", "mem.used_pct", "", 2000, 30.0)
            ]
        );
        let open: Vec<(&str, &str, Severity, i64, f64)> = s
            .open_anomalies
            .iter()
            .map(|o| {
                (
                    o.host_id.as_str(),
                    o.family.as_str(),
                    o.severity,
                    o.count,
                    o.max_score,
                )
            })
            .collect();
        assert_eq!(
            open,
            [
                ("a", "cpu", Severity::High, 2, 0.75),
                ("a", "memory", Severity::Low, 1, 0.25)
            ]
        );
    }
}
