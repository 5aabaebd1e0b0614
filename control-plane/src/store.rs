//! Persistence through sqlx: SQLite (default, WAL) or PostgreSQL, chosen by
//! the database URL. One set of embedded, portable migrations serves both;
//! queries are built at run time with `$n` placeholders, which both accept.
//!
//! The rest of the control plane sees only domain types from [`crate::fleet`]
//! and [`crate::auth`]; sqlx stays in here. This file holds the connection, the error and
//! the helpers every table's module shares; each area's SQL is its own module (`store/*.rs`).

use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Connection, Executor, Row};

use rows::Val;

mod anomalies;
mod chat;
mod enroll;
mod fanout;
mod feedback;
mod hosts;
mod models;
mod notifications;
mod packed;
mod policy;
mod preferences;
mod remediation;
mod rows;
mod runbooks;

mod users;

pub use fanout::{ReplicaEntry, Wake, WakeListener};
pub use hosts::PurgedRollups;
pub(crate) use policy::RolloutTable;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// SQL assembled at run time from this module's constant fragments (column lists, `WHERE`
/// clauses chosen by which filters are present) and `$n` placeholders. No value from a request
/// is ever spliced into the text: every value is bound.
fn audited(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or refused a statement (the driver's message; sqlx's error type stays
    /// in this module, so the services' errors carry no sqlx type).
    #[error("database: {0}")]
    Db(String),
    #[error("migrations: {0}")]
    Migrate(String),
    #[error("invalid database url {0:?}: expected sqlite://PATH or postgres://...")]
    Url(String),
    #[error("{0} already exists")]
    Conflict(String),
    /// A stored value this version does not know (written by a newer one, or edited by hand).
    #[error("stored {0}")]
    Unreadable(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(e.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// The default SQLite URL for a data directory.
pub fn sqlite_url(data_dir: &Path) -> String {
    let abs =
        std::path::absolute(data_dir.join("sco.db")).unwrap_or_else(|_| data_dir.join("sco.db"));
    format!("sqlite://{}?mode=rwc", abs.display())
}

impl Store {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Url(redact(url)));
        };
        let options: AnyConnectOptions = url.parse().map_err(|_| StoreError::Url(redact(url)))?;
        let pool = AnyPoolOptions::new()
            // SQLite has one writer at a time; a few connections are enough
            // and keep lock waits short.
            .max_connections(if backend == Backend::Sqlite { 4 } else { 16 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        let store = Self { pool, backend };
        store.prepare_runbook_search().await?;
        store.prepare_compression().await;
        Ok(store)
    }

    /// On PostgreSQL, the large values of the ingest path (an event's context, a rollup's
    /// packed metrics) are compressed with lz4 instead of pglz, which took a third of the
    /// database's CPU in an alarm storm (docs/LOADGEN.md). Set once per database; a server
    /// without lz4 keeps pglz (logged).
    async fn prepare_compression(&self) {
        if self.backend != Backend::Postgres {
            return;
        }
        for (table, column) in [("anomalies", "context"), ("rollup_windows", "metrics")] {
            let current = sqlx::query_scalar::<_, String>(
                "SELECT attcompression::text FROM pg_attribute
                 WHERE attrelid = $1::regclass AND attname = $2",
            )
            .bind(table)
            .bind(column)
            .fetch_optional(&self.pool)
            .await;
            if matches!(current.as_ref().map(|c| c.as_deref()), Ok(Some("l"))) {
                continue;
            }
            let set = format!("ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4");
            if let Err(e) = sqlx::query(audited(set)).execute(&self.pool).await {
                tracing::warn!(table, column, error = %e, "cannot compress with lz4; PostgreSQL keeps pglz");
            }
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Begins a transaction that writes; every transaction of the store begins here. On SQLite
    /// it is `BEGIN IMMEDIATE`, which takes the write lock at once and waits for it on the busy
    /// timeout. A deferred `BEGIN` takes it at the first write, and a transaction that read
    /// before then cannot wait: SQLite answers "database is locked" at once (code 5 while
    /// another connection holds the lock, 517 once another committed after this one's read),
    /// which the API turned into 503s. PostgreSQL's `BEGIN` needs nothing more: its writes
    /// wait for the row locks they meet.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            #[allow(clippy::disallowed_methods)] // the one place a transaction begins
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn ping(&self) -> bool {
        match self.pool.acquire().await {
            Ok(mut c) => c.ping().await.is_ok(),
            Err(_) => false,
        }
    }
}

/// Records a durable agent message; false when it was already stored.
pub(crate) async fn claim_message(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    host: &str,
    seq: i64,
    kind: &str,
    produced_at_ms: i64,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO agent_messages (host_id, seq, kind, produced_at_ms, received_at_ms)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (host_id, seq) DO NOTHING",
    )
    .bind(host)
    .bind(seq)
    .bind(kind)
    .bind(produced_at_ms)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted > 0)
}

/// A durable message an agent numbered, stored once per (agent, sequence number).
pub(crate) trait Durable {
    fn seq(&self) -> i64;
    fn produced_at_ms(&self) -> i64;
}

macro_rules! durable {
    ($($t:ty),*) => {$(
        impl Durable for $t {
            fn seq(&self) -> i64 {
                self.seq
            }
            fn produced_at_ms(&self) -> i64 {
                self.produced_at_ms
            }
        }
    )*};
}
durable!(
    crate::domain::RollupBatch,
    crate::domain::AnomalyChange,
    crate::domain::policy::PolicyStatusIn
);

impl Store {
    /// Records the durable messages of a group (of `kind`, each with its agent) in a few
    /// statements; true for each one that was new. A (host, seq) already stored, or met
    /// earlier in `items`, is false, so no later statement of the group meets the same key
    /// twice.
    pub(crate) async fn claim_group<T: Durable>(
        &self,
        conn: &mut sqlx::AnyConnection,
        items: &[(&str, &T)],
        kind: &str,
        now_ms: i64,
    ) -> Result<Vec<bool>, StoreError> {
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<usize> = (0..items.len())
            .filter(|&i| seen.insert((items[i].0, items[i].1.seq())))
            .collect();
        let rows: Vec<Vec<Val>> = unique
            .iter()
            .map(|&i| {
                let (host, m) = items[i];
                vec![
                    Val::Text(host),
                    Val::Int(m.seq()),
                    Val::Text(kind),
                    Val::Int(m.produced_at_ms()),
                    Val::Int(now_ms),
                ]
            })
            .collect();
        let mut new_claims = std::collections::HashSet::new();
        let returned = self
            .rows_statement(
                conn,
                "INSERT INTO agent_messages (host_id, seq, kind, produced_at_ms, received_at_ms)",
                5,
                &rows,
                "ON CONFLICT (host_id, seq) DO NOTHING RETURNING host_id, seq",
            )
            .await?;
        for row in returned {
            let host: String = row.try_get("host_id")?;
            let seq: i64 = row.try_get("seq")?;
            new_claims.insert((host, seq));
        }
        let mut fresh = vec![false; items.len()];
        for i in unique {
            fresh[i] = new_claims.contains(&(items[i].0.to_string(), items[i].1.seq()));
        }
        Ok(fresh)
    }
}

fn push_placeholders(sql: &mut String, rows: usize, cols: usize) {
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("${}", r * cols + c + 1));
        }
        sql.push(')');
    }
}

/// Keeps passwords out of error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{HostInfo, Ingested, ProcessRow, RollupBatch, RollupQuery};

    #[test]
    fn placeholders_are_numbered_across_rows() {
        let mut s = String::new();
        push_placeholders(&mut s, 2, 3);
        assert_eq!(s, "($1,$2,$3),($4,$5,$6)");
    }

    fn rollup(seq: i64, end_ms: i64, processes: &[&str]) -> RollupBatch {
        RollupBatch {
            seq,
            produced_at_ms: end_ms,
            window_start_ms: end_ms - 10_000,
            window_end_ms: end_ms,
            metrics: (0..30)
                .map(|m| crate::domain::MetricRow {
                    metric: format!("m{m}"),
                    device: String::new(),
                    min: seq as f64,
                    mean: seq as f64,
                    max: seq as f64,
                    last: seq as f64,
                    count: 10,
                })
                .collect(),
            top_processes: processes
                .iter()
                .map(|name| ProcessRow {
                    pid: 1,
                    name: (*name).into(),
                    cpu_pct: 1.0,
                    rss_bytes: 1,
                    cmdline: String::new(),
                    unit: String::new(),
                    read_bytes_per_s: 0.0,
                    write_bytes_per_s: 0.0,
                })
                .collect(),
            outbox_dropped_total: seq,
        }
    }

    #[tokio::test]
    async fn a_heartbeat_flush_moves_each_host_forward_and_keeps_what_a_beat_did_not_say() {
        use crate::domain::{DetectorStatus, HostBeat};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(&sqlite_url(dir.path()))
            .await
            .expect("sqlite store");
        // more hosts than one statement carries (1,024 rows of 8 values on SQLite)
        let ids: Vec<String> = (0..1_500).map(|i| format!("h{i}")).collect();
        for id in &ids {
            store
                .upsert_host(id, &HostInfo::default(), 1)
                .await
                .expect("host");
        }
        let calibrated = DetectorStatus {
            state: "calibrated".into(),
            warm_until_ms: 0,
            calibrated_at_ms: 7_000,
            restored: true,
        };
        let first: Vec<HostBeat> = ids
            .iter()
            .map(|id| HostBeat {
                host_id: id.clone(),
                seen_ms: 10_000,
                outbox_dropped_total: 5,
                cert_not_after_ms: 99_000,
                detector: Some(calibrated.clone()),
            })
            .collect();
        store.touch_hosts(&first).await.expect("first flush");
        // an older time and drop count, no certificate expiry, no detector state: h0 keeps
        // what it had; h1 moves forward
        let second = vec![
            HostBeat {
                host_id: "h0".into(),
                seen_ms: 9_000,
                outbox_dropped_total: 2,
                cert_not_after_ms: 0,
                detector: None,
            },
            HostBeat {
                host_id: "h1".into(),
                seen_ms: 12_000,
                outbox_dropped_total: 8,
                cert_not_after_ms: 123_000,
                detector: Some(DetectorStatus {
                    state: "warming_up".into(),
                    warm_until_ms: 20_000,
                    ..DetectorStatus::default()
                }),
            },
        ];
        store.touch_hosts(&second).await.expect("second flush");
        let host = |id: &'static str| {
            let store = store.clone();
            async move {
                store
                    .host(id, 60_000, 12_000)
                    .await
                    .expect("read host")
                    .expect("host exists")
            }
        };
        let h0 = host("h0").await;
        assert_eq!(
            (
                h0.last_seen_ms,
                h0.outbox_dropped_total,
                h0.cert_not_after_ms
            ),
            (10_000, 5, 99_000)
        );
        assert_eq!(h0.detector, calibrated);
        let h1 = host("h1").await;
        assert_eq!(
            (
                h1.last_seen_ms,
                h1.outbox_dropped_total,
                h1.cert_not_after_ms
            ),
            (12_000, 8, 123_000)
        );
        assert_eq!(h1.detector.state, "warming_up");
        assert_eq!(h1.detector.warm_until_ms, 20_000);
        assert!(!h1.detector.restored);
        // the last host of the first flush, in its second statement
        let last = store
            .host("h1499", 60_000, 12_000)
            .await
            .expect("read host")
            .expect("host exists");
        assert_eq!((last.last_seen_ms, last.outbox_dropped_total), (10_000, 5));
        assert_eq!(last.detector, calibrated);
    }

    #[tokio::test]
    async fn a_group_stores_each_host_and_seq_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(&sqlite_url(dir.path()))
            .await
            .expect("sqlite store");
        for id in ["a", "b"] {
            store
                .upsert_host(id, &HostInfo::default(), 1)
                .await
                .expect("host");
        }
        let (a1, a2, b1) = (
            rollup(1, 10_000, &["x"]),
            rollup(2, 20_000, &[]),
            rollup(1, 10_000, &["y"]),
        );
        let first = store
            .ingest_rollups(&[("a", &a1), ("b", &b1), ("a", &a1)], 5)
            .await
            .expect("first group");
        assert_eq!(
            first,
            [Ingested::Stored, Ingested::Stored, Ingested::Duplicate]
        );
        let second = store
            .ingest_rollups(&[("a", &a2), ("b", &b1)], 6)
            .await
            .expect("second group");
        assert_eq!(second, [Ingested::Stored, Ingested::Duplicate]);
        assert_eq!(store.stored_seqs("a").await.expect("seqs"), [1, 2]);
        assert_eq!(store.stored_seqs("b").await.expect("seqs"), [1]);
        let (rows, packed): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), SUM(metric_count) FROM rollup_windows")
                .fetch_one(&store.pool)
                .await
                .expect("count");
        assert_eq!(
            (rows, packed),
            (3, 90),
            "one row of 30 metrics for each of the three rollups stored"
        );
        let hosts = store.hosts(i64::MAX, 7).await.expect("hosts");
        let a = hosts.iter().find(|h| h.id == "a").expect("host a");
        assert_eq!(
            (a.last_seq, a.outbox_dropped_total, a.last_seen_ms),
            (2, 2, 6)
        );
        // a rollup without processes leaves the last ones sent
        let (at, processes) = store.top_processes("a").await.expect("processes");
        assert_eq!((at, processes.len()), (10_000, 1));
        let latest = store.latest_values("a").await.expect("latest");
        assert_eq!(latest.len(), 30);
        assert!(latest.iter().all(|v| v.ts_ms == 20_000 && v.value == 2.0));
    }

    #[tokio::test]
    async fn packed_windows_read_in_pages_in_order_beside_rows_stored_before_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(&sqlite_url(dir.path()))
            .await
            .expect("sqlite store");
        store
            .upsert_host("a", &HostInfo::default(), 1)
            .await
            .expect("host");
        // 600 windows of 30 metrics, stored in groups out of order (newest group first)
        let batches: Vec<RollupBatch> = (1..=600)
            .map(|seq| rollup(seq, 10_000 * seq + 10_000, &[]))
            .collect();
        for group in batches.chunks(100).rev() {
            let items: Vec<(&str, &RollupBatch)> = group.iter().map(|b| ("a", b)).collect();
            store.ingest_rollups(&items, 5).await.expect("group");
        }
        // an older window stored last does not replace the newest as the latest values
        let latest = store.latest_values("a").await.expect("latest");
        assert!(latest
            .iter()
            .all(|v| v.ts_ms == 6_010_000 && v.value == 600.0));
        // a point written one row per metric before the packed table existed
        sqlx::query(
            "INSERT INTO rollups (host_id, seq, metric, device, window_start_ms, window_end_ms,
               v_min, v_mean, v_max, v_last, sample_count)
             VALUES ('a', 0, 'm7', '', 5, 10, 0.5, 0.5, 0.5, 0.5, 10)",
        )
        .execute(&store.pool)
        .await
        .expect("legacy row");
        let q = RollupQuery {
            host: "a".into(),
            metric: Some("m7".into()),
            device: None,
            from_ms: 0,
            to_ms: i64::MAX,
            limit: 10_000,
        };
        let points = store.rollups(&q).await.expect("one metric");
        assert_eq!(
            points.len(),
            601,
            "600 packed windows over three pages and the legacy row"
        );
        assert_eq!((points[0].window_start_ms, points[0].mean), (5, 0.5));
        for (i, p) in points[1..].iter().enumerate() {
            let seq = i as i64 + 1;
            assert_eq!(p.metric, "m7");
            assert_eq!(
                (p.window_start_ms, p.window_end_ms, p.last, p.count),
                (10_000 * seq, 10_000 * seq + 10_000, seq as f64, 10)
            );
        }
        // every metric: ordered by window, then metric name; the limit counts points
        let all = store
            .rollups(&RollupQuery {
                metric: None,
                from_ms: 20_000,
                to_ms: 40_000,
                limit: 45,
                ..q.clone()
            })
            .await
            .expect("all metrics");
        assert_eq!(all.len(), 45);
        assert!(all[..30].iter().all(|p| p.window_start_ms == 20_000));
        assert!(all[30..].iter().all(|p| p.window_start_ms == 30_000));
        let names: Vec<&str> = all[..30].iter().map(|p| p.metric.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        // a device that no row has: nothing, after reading every page
        let none = store
            .rollups(&RollupQuery {
                device: Some("sda".into()),
                ..q.clone()
            })
            .await
            .expect("no device");
        assert!(none.is_empty());
        // the fleet view: the newest window of each host, a legacy-only host from latest_values
        sqlx::query(
            "INSERT INTO latest_values (host_id, metric, device, ts_ms, value)
             VALUES ('old', 'cpu', '', 7, 1.5), ('a', 'gone', '', 3, 9.0)",
        )
        .execute(&store.pool)
        .await
        .expect("legacy latest");
        let fleet = store.newest_rollup_values().await.expect("fleet");
        assert_eq!(fleet.len(), 31);
        assert_eq!(
            (
                fleet[0].host_id.as_str(),
                fleet[0].metric.as_str(),
                fleet[0].ts_ms
            ),
            ("a", "m0", 6_010_000)
        );
        assert!(fleet.iter().all(|v| v.metric != "gone"));
        let old = fleet.last().expect("old host");
        assert_eq!((old.host_id.as_str(), old.value), ("old", 1.5));
        // a damaged packed value is an error naming it, not a panic
        sqlx::query(
            "UPDATE rollup_windows SET metrics = $1
             WHERE host_id = 'a' AND seq = (SELECT seq FROM host_latest WHERE host_id = 'a')",
        )
        .bind(vec![1u8, 200, 0, 0, 0])
        .execute(&store.pool)
        .await
        .expect("damage");
        let e = store.latest_values("a").await.expect_err("damaged");
        assert!(e.to_string().contains("rollup is damaged"), "{e}");
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://***@h/db");
        assert_eq!(redact("sqlite:///x"), "sqlite:///x");
    }
}
