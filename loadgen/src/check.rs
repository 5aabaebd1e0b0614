//! The end-of-run check against the control plane's database (read with
//! sqlx, the tables of `control-plane/migrations`), once the control plane has
//! finished storing what it had read, in one snapshot:
//! - every acknowledged message is stored (`agent_messages`, keyed by agent
//!   and sequence number) with the kind that was sent: nothing lost;
//! - no sequence number is stored that was never sent, none is missing below
//!   the highest stored one: no gaps;
//! - each stored rollup has exactly one row per metric sent, no window of a
//!   metric is stored twice, and each opened anomaly event is one row: no
//!   duplicates (a replay stored again would show here);
//! - no message was rejected as invalid (the load generator must speak the
//!   protocol correctly for its figures to mean anything).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;

/// What one simulated agent knows about what it sent.
pub struct Sent {
    pub id: String,
    pub last_seq: u64,
    pub max_acked: u64,
    /// Stored kind name of each sequence number, index = seq - 1.
    pub kinds: Vec<&'static str>,
    /// Sequence numbers of the anomaly events opened.
    pub opened: Vec<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DbCheck {
    pub passed: bool,
    /// Seconds waited for the control plane to store what it was storing at the end.
    #[serde(default)]
    pub settled_secs: f64,
    pub agents_checked: u64,
    pub messages_acked: u64,
    pub messages_stored: u64,
    /// Acknowledged but not stored.
    pub lost: u64,
    /// Stored twice (rollup rows beyond one per metric, windows stored twice, events twice).
    pub duplicated: u64,
    /// Missing sequence numbers below the highest stored one.
    pub gaps: u64,
    /// Stored but never acknowledged (in flight when the run ended; not an error).
    pub stored_unacked: u64,
    /// Stored with another kind than sent, or as rejected.
    pub wrong_kind: u64,
    pub rejected: u64,
    /// Agents whose stored messages equal their acknowledged ones exactly.
    pub agents_exact: u64,
    /// The first problems found, to say what went wrong.
    pub problems: Vec<String>,
}

const MAX_PROBLEMS: usize = 20;

impl DbCheck {
    fn problem(&mut self, p: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(p);
        }
    }
}

/// How long to wait for the control plane to finish what it was storing when the streams
/// closed, at most.
const SETTLE_MAX: std::time::Duration = std::time::Duration::from_secs(120);

/// Waits until the control plane has stored what it was storing when the streams closed (a
/// message read before the end is stored whether or not its stream is still there): until
/// the number of stored messages of this run stays the same for two seconds. The seconds
/// waited.
async fn settle(pool: &sqlx::AnyPool, like: &str) -> Result<f64, sqlx::Error> {
    let start = std::time::Instant::now();
    let count = || async {
        sqlx::query("SELECT COUNT(*) AS n FROM agent_messages WHERE host_id LIKE $1")
            .bind(like)
            .fetch_one(pool)
            .await?
            .try_get::<i64, _>("n")
    };
    let mut last = count().await?;
    while start.elapsed() < SETTLE_MAX {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let now = count().await?;
        if now == last {
            break;
        }
        last = now;
    }
    Ok((start.elapsed().as_secs_f64() * 10.0).round() / 10.0)
}

/// Runs the check for agents whose ids start with `prefix`.
pub async fn check(
    database_url: &str,
    prefix: &str,
    sent: &[Sent],
    metrics_per_rollup: usize,
) -> Result<DbCheck, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await?;
    let like = format!("{prefix}%");
    let settled_secs = settle(&pool, &like).await?;

    // One snapshot for every table read below: a message committing between two reads would
    // otherwise show as an event without its opening, or a gap.
    let mut tx = pool.begin().await?;
    if database_url.starts_with("postgres") {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *tx)
            .await?;
    }
    let mut stored: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    for r in sqlx::query("SELECT host_id, seq, kind FROM agent_messages WHERE host_id LIKE $1")
        .bind(&like)
        .fetch_all(&mut *tx)
        .await?
    {
        stored
            .entry(r.try_get("host_id")?)
            .or_default()
            .push((r.try_get("seq")?, r.try_get("kind")?));
    }
    let mut rollup_rows: HashMap<(String, i64), i64> = HashMap::new();
    for r in sqlx::query(
        "SELECT host_id, seq, metric_count AS n FROM rollup_windows WHERE host_id LIKE $1",
    )
    .bind(&like)
    .fetch_all(&mut *tx)
    .await?
    {
        rollup_rows.insert((r.try_get("host_id")?, r.try_get("seq")?), r.try_get("n")?);
    }
    let twice: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM (SELECT host_id FROM rollup_windows WHERE host_id LIKE $1
         GROUP BY host_id, window_start_ms HAVING COUNT(*) > 1) AS d",
    )
    .bind(&like)
    .fetch_one(&mut *tx)
    .await?
    .try_get("n")?;
    let mut events: HashMap<String, Vec<String>> = HashMap::new();
    for r in sqlx::query("SELECT id, host_id FROM anomalies WHERE host_id LIKE $1")
        .bind(&like)
        .fetch_all(&mut *tx)
        .await?
    {
        events
            .entry(r.try_get("host_id")?)
            .or_default()
            .push(r.try_get("id")?);
    }
    tx.rollback().await?;
    pool.close().await;

    let mut c = DbCheck {
        settled_secs,
        duplicated: u64::try_from(twice).unwrap_or(0),
        ..DbCheck::default()
    };
    if twice > 0 {
        c.problem(format!("{twice} rollup windows are stored more than once"));
    }
    for a in sent {
        c.agents_checked += 1;
        c.messages_acked += a.max_acked;
        let mut rows = stored.remove(&a.id).unwrap_or_default();
        rows.sort_unstable();
        c.messages_stored += rows.len() as u64;
        let mut exact = rows.len() as u64 == a.max_acked;
        let mut present = vec![false; usize::try_from(a.last_seq).unwrap_or(0)];
        let mut max_stored = 0;
        for (seq, kind) in &rows {
            let Some(i) = usize::try_from(*seq)
                .ok()
                .and_then(|s| s.checked_sub(1))
                .filter(|i| *i < present.len())
            else {
                c.wrong_kind += 1;
                exact = false;
                c.problem(format!("{}: seq {seq} is stored but was never sent", a.id));
                continue;
            };
            present[i] = true;
            max_stored = max_stored.max(*seq as u64);
            if kind == "rejected" {
                c.rejected += 1;
                c.problem(format!("{}: seq {seq} was rejected as invalid", a.id));
            } else if a.kinds.get(i) != Some(&kind.as_str()) {
                c.wrong_kind += 1;
                c.problem(format!(
                    "{}: seq {seq} stored as {kind}, sent as {}",
                    a.id,
                    a.kinds.get(i).unwrap_or(&"?")
                ));
            }
            if kind == "rollup" {
                let n = rollup_rows.get(&(a.id.clone(), *seq)).copied().unwrap_or(0);
                if n != metrics_per_rollup as i64 {
                    if n > metrics_per_rollup as i64 {
                        c.duplicated += 1;
                    }
                    exact = false;
                    c.problem(format!(
                        "{}: rollup seq {seq} has {n} metric rows, {metrics_per_rollup} were sent",
                        a.id
                    ));
                }
            }
            if *seq as u64 > a.max_acked {
                c.stored_unacked += 1;
            }
        }
        for (i, p) in present.iter().enumerate() {
            let seq = i as u64 + 1;
            if *p {
                continue;
            }
            exact = false;
            if seq <= a.max_acked {
                c.lost += 1;
                c.problem(format!(
                    "{}: seq {seq} was acknowledged but is not stored",
                    a.id
                ));
            } else if seq < max_stored {
                c.gaps += 1;
                c.problem(format!(
                    "{}: seq {seq} is missing below stored {max_stored}",
                    a.id
                ));
            }
        }
        let opened_stored = a
            .opened
            .iter()
            .filter(|s| {
                usize::try_from(**s)
                    .ok()
                    .and_then(|s| s.checked_sub(1))
                    .and_then(|i| present.get(i))
                    == Some(&true)
            })
            .count();
        let rows = events.remove(&a.id).map_or(0, |e| e.len());
        if rows != opened_stored {
            exact = false;
            if rows > opened_stored {
                c.duplicated += (rows - opened_stored) as u64;
            }
            c.problem(format!(
                "{}: {rows} anomaly rows for {opened_stored} stored openings",
                a.id
            ));
        }
        if exact {
            c.agents_exact += 1;
        }
    }
    for (host, rows) in stored {
        c.problem(format!(
            "{host}: {} stored messages of an agent this run does not know",
            rows.len()
        ));
    }
    c.passed = c.lost == 0
        && c.duplicated == 0
        && c.gaps == 0
        && c.wrong_kind == 0
        && c.rejected == 0
        && c.problems.is_empty();
    Ok(c)
}
