//! Hosts and what they send: the hello that opens a stream and the goodbye that ends it,
//! heartbeats, rollups and anomaly events stored exactly once, and the reads of hosts,
//! rollups, events and the fleet snapshot.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::ingest::{AnomalyWriter, Heartbeats, RollupWriter};
use super::streams::{StreamHandle, Streams};
use crate::domain::{
    now_ms, Anomaly, AnomalyChange, AnomalyQuery, ChangeKind, DetectorStatus, Host, HostBeat,
    HostInfo, HostLatestValue, Ingested, LatestValue, OpenAnomalies, ProcessRow, RollupBatch,
    RollupPoint, RollupQuery,
};
use crate::store::{Store, StoreError};
use crate::telemetry::Telemetry;

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

pub struct Hosts {
    store: Store,
    telemetry: Arc<Telemetry>,
    streams: Arc<Streams>,
    /// Heartbeats heard and not yet written.
    heartbeats: Heartbeats,
    /// The group commit of rollups; without it each rollup is its own transaction.
    rollup_writer: Option<RollupWriter>,
    /// The group commit of anomaly changes; without it each is its own transaction.
    anomaly_writer: Option<AnomalyWriter>,
    /// When a rollup was last stored (Unix ms), which says the database works without asking it.
    last_stored_ms: AtomicI64,
}

impl Hosts {
    /// With `group_commit`, rollups of all streams are stored together, a group per
    /// transaction, and so are anomaly changes, by writer tasks started here (so it needs a
    /// Tokio runtime).
    pub fn new(
        store: Store,
        telemetry: Arc<Telemetry>,
        streams: Arc<Streams>,
        group_commit: bool,
    ) -> Self {
        let rollup_writer = group_commit
            .then(|| RollupWriter::start(store.clone(), Some(telemetry.ingest_groups.clone())));
        let anomaly_writer = group_commit.then(|| AnomalyWriter::start(store.clone(), None));
        Self {
            store,
            telemetry,
            streams,
            heartbeats: Heartbeats::default(),
            rollup_writer,
            anomaly_writer,
            last_stored_ms: AtomicI64::new(0),
        }
    }

    /// Records the host of a new stream and the stream. A second stream of the same agent
    /// replaces the first, which is closed.
    pub async fn connected(
        &self,
        agent_id: &str,
        info: &HostInfo,
    ) -> Result<StreamHandle, StoreError> {
        self.store.upsert_host(agent_id, info, now_ms()).await?;
        // Events left open by an earlier run of this agent can never be
        // closed by the new run.
        let closed = self
            .store
            .close_orphaned_anomalies(agent_id, info.run_started_ms, now_ms())
            .await?;
        if closed > 0 {
            tracing::info!(
                agent_id,
                closed,
                "closed anomalies left open by an earlier agent run"
            );
        }
        let handle = self.streams.connected(agent_id);
        tracing::info!(agent_id, hostname = %info.hostname, "agent connected");
        Ok(handle)
    }

    /// The end of a stream; recorded when it was the agent's current one.
    pub async fn disconnected(&self, agent_id: &str, generation: u64) {
        if self.streams.disconnected(agent_id, generation) {
            if let Err(e) = self.store.set_disconnected(agent_id, now_ms()).await {
                tracing::warn!(agent_id, error = %e, "cannot record disconnect");
            }
            tracing::info!(agent_id, "agent disconnected");
        }
    }

    /// Agents with a live stream on this replica.
    pub fn connected_agents(&self) -> usize {
        self.streams.connected_agents()
    }

    /// Stores one anomaly change exactly once per (agent id, sequence number).
    pub async fn ingest_anomaly(
        &self,
        agent_id: &str,
        change: &AnomalyChange,
    ) -> Result<Ingested, StoreError> {
        let result = match &self.anomaly_writer {
            Some(w) => w.write(agent_id, change.clone()).await?,
            None => {
                self.store
                    .ingest_anomaly(agent_id, change, now_ms())
                    .await?
            }
        };
        match result {
            Ingested::Stored => {
                self.telemetry.ingest_messages.inc();
                if change.kind == ChangeKind::Opened {
                    self.telemetry.anomalies_opened.inc();
                    tracing::info!(agent_id, event = %change.event_id(agent_id), severity = change.severity.as_str(),
                        top = change.contributors.first().map_or("", |c| c.metric.as_str()), "anomaly opened");
                }
            }
            Ingested::Duplicate => {
                self.telemetry.ingest_duplicates.inc();
            }
        }
        Ok(result)
    }

    /// A durable message that cannot be stored: recorded, counted, logged
    /// and acknowledged, so one bad message never blocks an agent's stream.
    pub async fn reject(
        &self,
        agent_id: &str,
        seq: u64,
        produced_at_ms: i64,
        reason: &str,
    ) -> Result<(), StoreError> {
        let Ok(seq) = i64::try_from(seq) else {
            tracing::warn!(
                agent_id,
                seq,
                reason,
                "rejected agent message with an out-of-range sequence number"
            );
            return Ok(());
        };
        if seq > 0
            && self
                .store
                .reject_message(agent_id, seq, produced_at_ms, now_ms())
                .await?
        {
            self.telemetry.ingest_rejected.inc();
        }
        tracing::warn!(agent_id, seq, reason, "rejected invalid agent message");
        Ok(())
    }

    /// Stores a rollup exactly once per (agent id, sequence number); with the group commit,
    /// together with other streams' rollups. Returns once it is committed.
    pub async fn ingest_rollup(
        &self,
        agent_id: &str,
        batch: RollupBatch,
    ) -> Result<Ingested, StoreError> {
        let rows = batch.metrics.len() as u64;
        let result = match &self.rollup_writer {
            Some(w) => w.write(agent_id, batch).await?,
            None => self.store.ingest_rollup(agent_id, &batch, now_ms()).await?,
        };
        self.last_stored_ms.store(now_ms(), Ordering::Relaxed);
        match result {
            Ingested::Stored => {
                self.telemetry.ingest_messages.inc();
                self.telemetry.ingest_rows.inc_by(rows);
            }
            Ingested::Duplicate => {
                self.telemetry.ingest_duplicates.inc();
            }
        }
        Ok(result)
    }

    /// Notes an agent's heartbeat; [`Hosts::flush_heartbeats`] writes it.
    pub fn heartbeat(
        &self,
        agent_id: &str,
        outbox_dropped_total: i64,
        cert_not_after_ms: i64,
        detector: Option<DetectorStatus>,
    ) {
        self.heartbeats.record(HostBeat {
            host_id: agent_id.to_string(),
            seen_ms: now_ms(),
            outbox_dropped_total,
            cert_not_after_ms,
            detector,
        });
    }

    /// Writes every heartbeat noted since the last flush, in one transaction; on a failure
    /// they are kept for the next one. Returns how many hosts were written.
    pub async fn flush_heartbeats(&self) -> Result<usize, StoreError> {
        let beats = self.heartbeats.take();
        if beats.is_empty() {
            return Ok(0);
        }
        match self.store.touch_hosts(&beats).await {
            Ok(()) => Ok(beats.len()),
            Err(e) => {
                self.heartbeats.restore(beats);
                Err(e)
            }
        }
    }

    /// Flushes heartbeats every `every` until `stop`, then once more.
    pub async fn run_heartbeat_flush(
        &self,
        every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            let stopping = tokio::select! {
                () = tokio::time::sleep(every) => false,
                _ = stop.changed() => true,
            };
            if let Err(e) = self.flush_heartbeats().await {
                tracing::warn!(error = %e, "cannot record heartbeats; kept for the next try");
            }
            if stopping {
                return;
            }
        }
    }

    /// Whether the database answers, and which backend it is (`sqlite`, `postgres`).
    /// A rollup stored in the last few seconds answers without asking the database: under a
    /// burst of ingest, a ping would wait for a pool connection behind the writes.
    pub async fn database(&self) -> (bool, String) {
        let recent = now_ms() - self.last_stored_ms.load(Ordering::Relaxed);
        let reachable = recent < 5_000
            || tokio::time::timeout(Duration::from_secs(5), self.store.ping())
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
            recovered_ms: None,
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

        let telemetry = Arc::new(Telemetry::default());
        let streams = Arc::new(Streams::new(telemetry.clone()));
        let hosts = Hosts::new(store, telemetry, streams, false);
        let s = hosts.fleet_snapshot(60_000).await.expect("snapshot");
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
