//! Hosts and what their agents send: the host rows, heartbeats, rollups (one at a time and the
//! group commit), rejected messages, and the reads of hosts, processes and rollups.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::packed;
use super::rows::Val;
use super::{audited, claim_message, push_placeholders, Store, StoreError};
use crate::domain::{
    DetectorStatus, Host, HostBeat, HostInfo, HostLatestValue, Ingested, LatestValue, MetricRow,
    ProcessRow, RollupBatch, RollupPoint, RollupQuery,
};

impl Store {
    pub async fn upsert_host(
        &self,
        id: &str,
        info: &HostInfo,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let labels = serde_json::to_string(&info.labels).unwrap_or_else(|_| "{}".into());
        sqlx::query(
            "INSERT INTO hosts (id, hostname, os, kernel, agent_version, labels, interval_ms,
                                first_seen_ms, last_seen_ms, connected, run_started_ms, model, cert_not_after_ms,
                                transport)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, 1, $9, $10, $11, $12)
             ON CONFLICT (id) DO UPDATE SET
                hostname = excluded.hostname, os = excluded.os, kernel = excluded.kernel,
                agent_version = excluded.agent_version, labels = excluded.labels,
                interval_ms = excluded.interval_ms, last_seen_ms = excluded.last_seen_ms,
                connected = 1, run_started_ms = excluded.run_started_ms, model = excluded.model,
                transport = excluded.transport,
                cert_not_after_ms = CASE WHEN excluded.cert_not_after_ms > 0
                                         THEN excluded.cert_not_after_ms ELSE hosts.cert_not_after_ms END",
        )
        .bind(id)
        .bind(&info.hostname)
        .bind(&info.os)
        .bind(&info.kernel)
        .bind(&info.agent_version)
        .bind(labels)
        .bind(info.interval_ms)
        .bind(now_ms)
        .bind(info.run_started_ms)
        .bind(&info.model)
        .bind(info.cert_not_after_ms)
        .bind(&info.transport)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_disconnected(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE hosts SET connected = 0, last_seen_ms = $2 WHERE id = $1")
            .bind(id)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Writes the heartbeat state of many hosts in one transaction (see
    /// `fleet::Heartbeats`): one commit for the whole fleet's heartbeats of a
    /// few seconds instead of one per heartbeat. `last_seen_ms` only moves
    /// forward, so a flush that races a rollup or a disconnect never makes a
    /// host look older than it is.
    pub async fn touch_hosts(&self, beats: &[HostBeat]) -> Result<(), StoreError> {
        if beats.is_empty() {
            return Ok(());
        }
        // a heartbeat without a detector state (detection off) leaves the last one
        let detectors: Vec<_> = beats
            .iter()
            .map(|b| b.detector.clone().unwrap_or_default())
            .collect();
        let rows: Vec<Vec<Val>> = beats
            .iter()
            .zip(&detectors)
            .map(|(b, d)| {
                vec![
                    Val::Text(&b.host_id),
                    Val::Int(b.seen_ms),
                    Val::Int(b.outbox_dropped_total),
                    Val::Int(b.cert_not_after_ms),
                    Val::Text(&d.state),
                    Val::Int(d.warm_until_ms),
                    Val::Int(d.calibrated_at_ms),
                    Val::Int(i64::from(d.restored)),
                ]
            })
            .collect();
        let mut tx = self.begin_write().await?;
        let ids: Vec<&str> = beats.iter().map(|b| b.host_id.as_str()).collect();
        self.lock_hosts_in_order(&mut tx, &ids).await?;
        // one row per host (the flush keeps each host's newest beat): an `UPDATE … FROM` uses
        // one matching row of `v` per host, so a host twice in `beats` would keep either
        self.rows_statement(
            &mut tx,
            "WITH v (id, seen, dropped, cert, dstate, warm, cal, restored) AS (",
            8,
            &rows,
            ") UPDATE hosts SET
                 last_seen_ms = CASE WHEN hosts.last_seen_ms > v.seen THEN hosts.last_seen_ms ELSE v.seen END,
                 outbox_dropped_total = CASE WHEN hosts.outbox_dropped_total > v.dropped
                                             THEN hosts.outbox_dropped_total ELSE v.dropped END,
                 cert_not_after_ms = CASE WHEN v.cert > 0 THEN v.cert ELSE hosts.cert_not_after_ms END,
                 detector_state = CASE WHEN v.dstate = '' THEN hosts.detector_state ELSE v.dstate END,
                 detector_warm_until_ms = CASE WHEN v.dstate = '' THEN hosts.detector_warm_until_ms ELSE v.warm END,
                 detector_calibrated_at_ms = CASE WHEN v.dstate = '' THEN hosts.detector_calibrated_at_ms ELSE v.cal END,
                 detector_restored = CASE WHEN v.dstate = '' THEN hosts.detector_restored ELSE v.restored END
             FROM v WHERE hosts.id = v.id",
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores one rollup in one transaction, keyed by (host, seq): a replay
    /// of an already stored message changes nothing.
    pub async fn ingest_rollup(
        &self,
        host: &str,
        b: &RollupBatch,
        now_ms: i64,
    ) -> Result<Ingested, StoreError> {
        let mut results = self.ingest_rollups(&[(host, b)], now_ms).await?;
        results
            .pop()
            .ok_or_else(|| StoreError::Db("no result for the one rollup written".into()))
    }

    /// Stores many rollups (of any hosts) in one transaction: the group commit
    /// of the ingest path. Each is keyed by (host, seq) as in [`Self::ingest_rollup`]:
    /// one already stored, or twice in `items`, is reported `Duplicate` and
    /// written nowhere. The results are in the order of `items`; on an error
    /// nothing is stored.
    pub async fn ingest_rollups(
        &self,
        items: &[(&str, &RollupBatch)],
        now_ms: i64,
    ) -> Result<Vec<Ingested>, StoreError> {
        let mut tx = self.begin_write().await?;
        // A (host, seq) twice in one group is stored once: the first is claimed, the others
        // are duplicates of it.
        let fresh = self.claim_group(&mut tx, items, "rollup", now_ms).await?;
        let results: Vec<Ingested> = fresh.iter().copied().map(Ingested::from).collect();
        let claimed: Vec<(&str, &RollupBatch)> = items
            .iter()
            .zip(&fresh)
            .filter_map(|(&item, &fresh)| fresh.then_some(item))
            .collect();
        if claimed.is_empty() {
            tx.rollback().await?;
            return Ok(results);
        }
        // One row per claimed rollup, its metric rows packed into one value.
        let packed: Vec<Vec<u8>> = claimed
            .iter()
            .map(|(_, b)| packed::pack(&b.metrics))
            .collect();
        let values: Vec<Vec<Val>> = claimed
            .iter()
            .zip(&packed)
            .map(|(&(host, b), bytes)| {
                vec![
                    Val::Text(host),
                    Val::Int(b.seq),
                    Val::Int(b.window_start_ms),
                    Val::Int(b.window_end_ms),
                    Val::Int(b.metrics.len() as i64),
                    Val::Bytes(bytes),
                ]
            })
            .collect();
        self.rows_statement(
            &mut tx,
            "INSERT INTO rollup_windows (host_id, seq, window_start_ms, window_end_ms, metric_count, metrics)",
            6,
            &values,
            "ON CONFLICT (host_id, seq) DO NOTHING",
        )
        .await?;
        // Each host's newest window of the group (PostgreSQL refuses an upsert that touches the
        // same row twice in one statement, and two rollups of one host can meet in a group),
        // kept unless a newer window is stored already.
        let mut newest: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
        for (i, &(host, b)) in claimed.iter().enumerate() {
            match newest.get(host) {
                Some(&j) if claimed[j].1.window_end_ms > b.window_end_ms => {}
                _ => {
                    newest.insert(host, i);
                }
            }
        }
        let latest: Vec<Vec<Val>> = newest
            .into_values()
            .map(|i| {
                let (host, b) = claimed[i];
                vec![Val::Text(host), Val::Int(b.seq), Val::Int(b.window_end_ms)]
            })
            .collect();
        self.rows_statement(
            &mut tx,
            "INSERT INTO host_latest (host_id, seq, window_end_ms)",
            3,
            &latest,
            "ON CONFLICT (host_id) DO UPDATE SET seq = excluded.seq,
               window_end_ms = excluded.window_end_ms
               WHERE excluded.window_end_ms >= host_latest.window_end_ms",
        )
        .await?;
        // One row per host (its newest sequence number, largest drop count and last processes
        // sent, as one update per rollup in order would leave it), in a few statements.
        let mut per_host: std::collections::BTreeMap<&str, (i64, i64, String, i64)> =
            std::collections::BTreeMap::new();
        for &(host, b) in &claimed {
            let processes = if b.top_processes.is_empty() {
                None
            } else {
                serde_json::to_string(&b.top_processes).ok()
            };
            let e =
                per_host
                    .entry(host)
                    .or_insert((b.seq, b.outbox_dropped_total, String::new(), 0));
            e.0 = e.0.max(b.seq);
            e.1 = e.1.max(b.outbox_dropped_total);
            if let Some(p) = processes {
                e.2 = p;
                e.3 = b.window_end_ms;
            }
        }
        let ids: Vec<&str> = per_host.keys().copied().collect();
        let per_host: Vec<Vec<Val>> = per_host
            .iter()
            .map(|(host, (seq, dropped, processes, processes_ms))| {
                vec![
                    Val::Text(host),
                    Val::Int(*seq),
                    Val::Int(*dropped),
                    Val::Int(now_ms),
                    Val::Text(processes),
                    Val::Int(*processes_ms),
                ]
            })
            .collect();
        self.lock_hosts_in_order(&mut tx, &ids).await?;
        self.rows_statement(
            &mut tx,
            "WITH v (id, seq, dropped, seen, procs, procs_ms) AS (",
            6,
            &per_host,
            ") UPDATE hosts SET
                last_seq = CASE WHEN hosts.last_seq > v.seq THEN hosts.last_seq ELSE v.seq END,
                outbox_dropped_total = CASE WHEN hosts.outbox_dropped_total > v.dropped
                                            THEN hosts.outbox_dropped_total ELSE v.dropped END,
                last_seen_ms = CASE WHEN hosts.last_seen_ms > v.seen THEN hosts.last_seen_ms ELSE v.seen END,
                top_processes = CASE WHEN v.procs = '' THEN hosts.top_processes ELSE v.procs END,
                top_processes_ms = CASE WHEN v.procs = '' THEN hosts.top_processes_ms ELSE v.procs_ms END
             FROM v WHERE hosts.id = v.id",
        )
        .await?;
        tx.commit().await?;
        Ok(results)
    }

    /// Records a durable message that failed validation, so it is
    /// acknowledged (a poison message must not block the stream forever) and
    /// its replays stay idempotent. Returns false when already recorded.
    pub async fn reject_message(
        &self,
        host: &str,
        seq: i64,
        produced_at_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let claimed = claim_message(&mut tx, host, seq, "rejected", produced_at_ms, now_ms).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    pub async fn hosts(&self, stale_after_ms: i64, now_ms: i64) -> Result<Vec<Host>, StoreError> {
        let rows = sqlx::query(audited(format!("{HOST_SELECT} ORDER BY id")))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| host_from_row(r, stale_after_ms, now_ms))
            .collect()
    }

    /// The hosts among `ids` that exist, in a query per 500 ids.
    pub async fn hosts_by_id(
        &self,
        ids: &[String],
        stale_after_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<Host>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let mut sql = format!("{HOST_SELECT} WHERE id IN ");
            push_placeholders(&mut sql, 1, chunk.len());
            let mut q = sqlx::query(audited(sql));
            for id in chunk {
                q = q.bind(id);
            }
            for r in q.fetch_all(&self.pool).await? {
                out.push(host_from_row(&r, stale_after_ms, now_ms)?);
            }
        }
        Ok(out)
    }

    pub async fn host(
        &self,
        id: &str,
        stale_after_ms: i64,
        now_ms: i64,
    ) -> Result<Option<Host>, StoreError> {
        let row = sqlx::query(audited(format!("{HOST_SELECT} WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| host_from_row(&r, stale_after_ms, now_ms))
            .transpose()
    }

    pub async fn top_processes(&self, id: &str) -> Result<(i64, Vec<ProcessRow>), StoreError> {
        let row = sqlx::query("SELECT top_processes, top_processes_ms FROM hosts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => {
                let json: String = r.try_get("top_processes")?;
                (r.try_get("top_processes_ms")?, parse_processes(&json))
            }
            None => (0, Vec::new()),
        })
    }

    /// The values of the host's newest stored rollup, ordered by metric and device. A host
    /// whose rollups were all stored before `host_latest` existed shows the newest value of each
    /// metric it had then (`latest_values`).
    pub async fn latest_values(&self, id: &str) -> Result<Vec<LatestValue>, StoreError> {
        let row = sqlx::query(
            "SELECT w.window_end_ms, w.metrics FROM host_latest l
             JOIN rollup_windows w ON w.host_id = l.host_id AND w.seq = l.seq
             WHERE l.host_id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(r) = row {
            let ts_ms: i64 = r.try_get("window_end_ms")?;
            let bytes: Vec<u8> = r.try_get("metrics")?;
            let mut values: Vec<LatestValue> = packed::unpack(&bytes)?
                .into_iter()
                .map(|m| LatestValue {
                    metric: m.metric,
                    device: m.device,
                    ts_ms,
                    value: m.last,
                })
                .collect();
            values.sort_by(|a, b| (&a.metric, &a.device).cmp(&(&b.metric, &b.device)));
            return Ok(values);
        }
        let rows = sqlx::query(
            "SELECT metric, device, ts_ms, value FROM latest_values WHERE host_id = $1 ORDER BY metric, device",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LatestValue {
                    metric: r.try_get("metric")?,
                    device: r.try_get("device")?,
                    ts_ms: r.try_get("ts_ms")?,
                    value: r.try_get("value")?,
                })
            })
            .collect()
    }

    /// Every host's values of its newest stored rollup, in two queries for the whole fleet,
    /// ordered by host, metric and device. A metric missing from the host's newest window (an
    /// unmounted disk, a removed interface) is left out rather than shown with an old value.
    /// Hosts with no rollup stored since `host_latest` existed are read from `latest_values`.
    pub async fn newest_rollup_values(&self) -> Result<Vec<HostLatestValue>, StoreError> {
        let mut out = Vec::new();
        for r in sqlx::query(
            "SELECT w.host_id, w.window_end_ms, w.metrics FROM host_latest l
             JOIN rollup_windows w ON w.host_id = l.host_id AND w.seq = l.seq",
        )
        .fetch_all(&self.pool)
        .await?
        {
            let host_id: String = r.try_get("host_id")?;
            let ts_ms: i64 = r.try_get("window_end_ms")?;
            let bytes: Vec<u8> = r.try_get("metrics")?;
            out.extend(
                packed::unpack(&bytes)?
                    .into_iter()
                    .map(|m| HostLatestValue {
                        host_id: host_id.clone(),
                        metric: m.metric,
                        device: m.device,
                        ts_ms,
                        value: m.last,
                    }),
            );
        }
        let legacy = sqlx::query(
            "SELECT l.host_id, l.metric, l.device, l.ts_ms, l.value FROM latest_values l
             JOIN (SELECT host_id, MAX(ts_ms) AS newest FROM latest_values GROUP BY host_id) n
               ON n.host_id = l.host_id AND l.ts_ms = n.newest
             WHERE l.host_id NOT IN (SELECT host_id FROM host_latest)",
        )
        .fetch_all(&self.pool)
        .await?;
        for r in &legacy {
            out.push(HostLatestValue {
                host_id: r.try_get("host_id")?,
                metric: r.try_get("metric")?,
                device: r.try_get("device")?,
                ts_ms: r.try_get("ts_ms")?,
                value: r.try_get("value")?,
            });
        }
        out.sort_by(|a, b| {
            (&a.host_id, &a.metric, &a.device).cmp(&(&b.host_id, &b.metric, &b.device))
        });
        Ok(out)
    }

    /// The points of a host's rollups with a window start in `from_ms..to_ms` (optionally one
    /// metric, one device), ordered by window start, metric and device, at most `limit`.
    pub async fn rollups(&self, q: &RollupQuery) -> Result<Vec<RollupPoint>, StoreError> {
        /// Windows read per query.
        const PAGE: i64 = 256;
        let limit = usize::try_from(q.limit).unwrap_or(0);
        let wanted = |m: &MetricRow| {
            q.metric.as_deref().is_none_or(|x| x == m.metric)
                && q.device.as_deref().is_none_or(|x| x == m.device)
        };
        let mut points = Vec::new();
        // windows in pages, (window start, seq) as the cursor, until `limit` points
        let mut after: Option<(i64, i64)> = None;
        'pages: while points.len() < limit {
            let rows = match after {
                None => sqlx::query(
                    "SELECT seq, window_start_ms, window_end_ms, metrics FROM rollup_windows
                     WHERE host_id = $1 AND window_start_ms >= $2 AND window_start_ms < $3
                     ORDER BY window_start_ms, seq LIMIT $4",
                )
                .bind(&q.host)
                .bind(q.from_ms)
                .bind(q.to_ms)
                .bind(PAGE),
                Some((start, seq)) => sqlx::query(
                    "SELECT seq, window_start_ms, window_end_ms, metrics FROM rollup_windows
                     WHERE host_id = $1 AND window_start_ms < $3
                       AND (window_start_ms > $2 OR (window_start_ms = $2 AND seq > $4))
                     ORDER BY window_start_ms, seq LIMIT $5",
                )
                .bind(&q.host)
                .bind(start)
                .bind(q.to_ms)
                .bind(seq)
                .bind(PAGE),
            }
            .fetch_all(&self.pool)
            .await?;
            let full = rows.len() as i64 == PAGE;
            for r in &rows {
                let seq: i64 = r.try_get("seq")?;
                let start: i64 = r.try_get("window_start_ms")?;
                let end: i64 = r.try_get("window_end_ms")?;
                let bytes: Vec<u8> = r.try_get("metrics")?;
                after = Some((start, seq));
                let mut window: Vec<MetricRow> = packed::unpack(&bytes)?
                    .into_iter()
                    .filter(|m| wanted(m))
                    .collect();
                window.sort_by(|a, b| (&a.metric, &a.device).cmp(&(&b.metric, &b.device)));
                for m in window {
                    if points.len() == limit {
                        break 'pages;
                    }
                    points.push(RollupPoint {
                        metric: m.metric,
                        device: m.device,
                        window_start_ms: start,
                        window_end_ms: end,
                        min: m.min,
                        mean: m.mean,
                        max: m.max,
                        last: m.last,
                        count: m.count,
                    });
                }
            }
            if !full {
                break;
            }
        }
        let legacy = self.legacy_rollups(q).await?;
        if !legacy.is_empty() {
            points.extend(legacy);
            // stable: where the keys tie, the order within each source is kept
            points.sort_by(|a, b| {
                (a.window_start_ms, &a.metric, &a.device).cmp(&(
                    b.window_start_ms,
                    &b.metric,
                    &b.device,
                ))
            });
            points.truncate(limit);
        }
        Ok(points)
    }

    /// Points stored one row per metric in `rollups`, before `rollup_windows` existed.
    async fn legacy_rollups(&self, q: &RollupQuery) -> Result<Vec<RollupPoint>, StoreError> {
        let mut sql = String::from(
            "SELECT metric, device, window_start_ms, window_end_ms, v_min, v_mean, v_max, v_last, sample_count
             FROM rollups WHERE host_id = $1 AND window_start_ms >= $2 AND window_start_ms < $3",
        );
        let mut n = 3;
        if q.metric.is_some() {
            n += 1;
            sql.push_str(&format!(" AND metric = ${n}"));
        }
        if q.device.is_some() {
            n += 1;
            sql.push_str(&format!(" AND device = ${n}"));
        }
        sql.push_str(&format!(
            " ORDER BY window_start_ms, metric, device LIMIT ${}",
            n + 1
        ));
        let mut query = sqlx::query(audited(sql))
            .bind(&q.host)
            .bind(q.from_ms)
            .bind(q.to_ms);
        if let Some(m) = &q.metric {
            query = query.bind(m);
        }
        if let Some(d) = &q.device {
            query = query.bind(d);
        }
        let rows = query.bind(q.limit).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(RollupPoint {
                    metric: r.try_get("metric")?,
                    device: r.try_get("device")?,
                    window_start_ms: r.try_get("window_start_ms")?,
                    window_end_ms: r.try_get("window_end_ms")?,
                    min: r.try_get("v_min")?,
                    mean: r.try_get("v_mean")?,
                    max: r.try_get("v_max")?,
                    last: r.try_get("v_last")?,
                    count: r.try_get("sample_count")?,
                })
            })
            .collect()
    }

    /// Forgets the stored rollups of `host` whose window began before `before_ms`: their
    /// packed windows, their claims in `agent_messages` (so a resend of one that old is stored
    /// again, and purged again, rather than remembered forever) and rows of the per-metric table
    /// that predates the packed one. The host's newest window is kept whatever its age (its
    /// page shows it as the latest values). At most `batch` windows go per transaction, so a
    /// large first purge never holds SQLite's write lock for long.
    pub async fn purge_host_rollups(
        &self,
        host: &str,
        before_ms: i64,
        batch: i64,
    ) -> Result<PurgedRollups, StoreError> {
        let mut purged = PurgedRollups::default();
        loop {
            let mut tx = self.begin_write().await?;
            let seqs: Vec<i64> = sqlx::query_scalar(
                "DELETE FROM rollup_windows WHERE host_id = $1 AND seq IN (
                   SELECT w.seq FROM rollup_windows w
                   WHERE w.host_id = $1 AND w.window_start_ms < $2
                     AND w.seq <> COALESCE((SELECT l.seq FROM host_latest l WHERE l.host_id = $1), -1)
                   ORDER BY w.window_start_ms LIMIT $3)
                 RETURNING seq",
            )
            .bind(host)
            .bind(before_ms)
            .bind(batch)
            .fetch_all(&mut *tx)
            .await?;
            let Some(&newest) = seqs.iter().max() else {
                tx.rollback().await?;
                break;
            };
            let latest: Option<i64> =
                sqlx::query_scalar("SELECT seq FROM host_latest WHERE host_id = $1")
                    .bind(host)
                    .fetch_optional(&mut *tx)
                    .await?;
            // messages are numbered in the order the agent produced them, so the claims of the
            // windows just deleted are the rollup claims up to the newest of them (never the
            // claim of the window kept as the latest)
            let claims = sqlx::query(
                "DELETE FROM agent_messages
                 WHERE host_id = $1 AND kind = 'rollup' AND seq <= $2 AND seq <> $3",
            )
            .bind(host)
            .bind(newest)
            .bind(latest.unwrap_or(-1))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            purged.windows += seqs.len() as u64;
            purged.claims += claims.rows_affected();
            if (seqs.len() as i64) < batch {
                break;
            }
        }
        // rows stored one per metric before the packed table (never written any more)
        let legacy = sqlx::query("DELETE FROM rollups WHERE host_id = $1 AND window_start_ms < $2")
            .bind(host)
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        purged.legacy_rows = legacy.rows_affected();
        Ok(purged)
    }

    /// Every host that has stored rollups or a host row, for the retention sweep.
    pub async fn rollup_host_ids(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT host_id FROM host_latest UNION SELECT id FROM hosts ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Sequence numbers stored for a host, ascending (for audits and tests).
    pub async fn stored_seqs(&self, host: &str) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query("SELECT seq FROM agent_messages WHERE host_id = $1 ORDER BY seq")
            .bind(host)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("seq")?)).collect()
    }
}

const HOST_SELECT: &str =
    "SELECT id, hostname, os, kernel, agent_version, labels, interval_ms, first_seen_ms,
    last_seen_ms, connected, last_seq, outbox_dropped_total, cert_not_after_ms, revoked_at_ms, enrolled_labels,
    transport, detector_state, detector_warm_until_ms, detector_calibrated_at_ms, detector_restored
    FROM hosts";

fn host_from_row(r: &AnyRow, stale_after_ms: i64, now_ms: i64) -> Result<Host, StoreError> {
    let labels: String = r.try_get("labels")?;
    let enrolled: String = r.try_get("enrolled_labels")?;
    let mut labels: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&labels).unwrap_or_default();
    // Labels assigned at enrollment are the control plane's and win over
    // what the agent says about itself.
    labels.extend(
        serde_json::from_str::<std::collections::BTreeMap<String, String>>(&enrolled)
            .unwrap_or_default(),
    );
    let revoked_at_ms: i64 = r.try_get("revoked_at_ms")?;
    let last_seen_ms: i64 = r.try_get("last_seen_ms")?;
    let connected: i64 = r.try_get("connected")?;
    let restored: i64 = r.try_get("detector_restored")?;
    let detector = DetectorStatus {
        state: r.try_get("detector_state")?,
        warm_until_ms: r.try_get("detector_warm_until_ms")?,
        calibrated_at_ms: r.try_get("detector_calibrated_at_ms")?,
        restored: restored != 0,
    };
    Ok(Host {
        detector,
        id: r.try_get("id")?,
        hostname: r.try_get("hostname")?,
        os: r.try_get("os")?,
        kernel: r.try_get("kernel")?,
        agent_version: r.try_get("agent_version")?,
        labels,
        interval_ms: r.try_get("interval_ms")?,
        first_seen_ms: r.try_get("first_seen_ms")?,
        last_seen_ms,
        // A stream that died with its control plane leaves connected = 1
        // behind; heartbeats keep last_seen fresh, so staleness tells.
        connected: connected != 0 && now_ms - last_seen_ms <= stale_after_ms,
        last_seq: r.try_get("last_seq")?,
        outbox_dropped_total: r.try_get("outbox_dropped_total")?,
        cert_not_after_ms: r.try_get("cert_not_after_ms")?,
        transport: r.try_get("transport")?,
        revoked: revoked_at_ms > 0,
        revoked_at_ms,
    })
}

pub(super) fn parse_processes(json: &str) -> Vec<ProcessRow> {
    serde_json::from_str::<Vec<ProcessRow>>(json).unwrap_or_default()
}

/// What one retention sweep of a host deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PurgedRollups {
    /// Packed windows (one per rollup).
    pub windows: u64,
    /// Their claims in `agent_messages`.
    pub claims: u64,
    /// Rows of the per-metric table written before the packed one.
    pub legacy_rows: u64,
}
