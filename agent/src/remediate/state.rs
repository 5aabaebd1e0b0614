//! Durable remediation state in its own sled database: per-rule cooldown,
//! hourly counts and circuit breaker, the host's hourly budget, and the
//! history of reports. Written and flushed before an action runs, so limits
//! hold across restarts and crashes.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::report::ActionReport;

const HOUR_MS: i64 = 3_600_000;
const HOST_RECENT: &[u8] = b"host_recent";

/// What is kept per rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleState {
    /// Start of the last executed action.
    pub last_ms: Option<i64>,
    /// Starts of the executed actions of the last hour.
    pub recent_ms: Vec<i64>,
    /// Failed verifications (and failed actions) since the last success.
    pub consecutive_failures: u32,
    /// Set when the breaker opened; cleared only by a reset.
    pub breaker_open_since_ms: Option<i64>,
}

impl RuleState {
    pub fn in_last_hour(&self, now_ms: i64) -> usize {
        self.recent_ms
            .iter()
            .filter(|t| **t > now_ms - HOUR_MS)
            .count()
    }
}

pub struct State {
    db: sled::Db,
    rules: sled::Tree,
    meta: sled::Tree,
    history: sled::Tree,
    history_max: usize,
}

fn decode<T: for<'de> Deserialize<'de> + Default>(v: Option<sled::IVec>) -> T {
    // A record this version cannot read counts as empty rather than
    // blocking every action; limits restart from zero for it.
    v.and_then(|v| serde_json::from_slice(&v).ok())
        .unwrap_or_default()
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

impl State {
    pub fn open(dir: &Path, cache_bytes: u64, history_max: usize) -> Result<Self, sled::Error> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            // Every change is flushed explicitly before it matters.
            .flush_every_ms(None)
            .open()?;
        Self::with_db(db, history_max)
    }

    /// Keeps the state in trees of an existing database (the agent shares
    /// the outbox's: one sled instance per process costs far less memory).
    pub fn with_db(db: sled::Db, history_max: usize) -> Result<Self, sled::Error> {
        Ok(Self {
            rules: db.open_tree("remediate.rules")?,
            meta: db.open_tree("remediate.meta")?,
            history: db.open_tree("remediate.history")?,
            db,
            history_max,
        })
    }

    pub fn rule(&self, rule: &str) -> Result<RuleState, sled::Error> {
        Ok(decode(self.rules.get(rule)?))
    }

    fn put_rule(&self, rule: &str, s: &RuleState) -> Result<(), sled::Error> {
        self.rules.insert(rule, encode(s))?;
        Ok(())
    }

    /// Executed actions of the host in the last hour.
    pub fn host_in_last_hour(&self, now_ms: i64) -> Result<usize, sled::Error> {
        let recent: Vec<i64> = decode(self.meta.get(HOST_RECENT)?);
        Ok(recent.iter().filter(|t| **t > now_ms - HOUR_MS).count())
    }

    /// Counts an action against its rule and the host, durably, before it
    /// runs.
    pub async fn record_attempt(&self, rule: &str, now_ms: i64) -> Result<(), sled::Error> {
        let mut r = self.rule(rule)?;
        r.last_ms = Some(now_ms);
        r.recent_ms.retain(|t| *t > now_ms - HOUR_MS);
        r.recent_ms.push(now_ms);
        self.put_rule(rule, &r)?;
        let mut host: Vec<i64> = decode(self.meta.get(HOST_RECENT)?);
        host.retain(|t| *t > now_ms - HOUR_MS);
        host.push(now_ms);
        self.meta.insert(HOST_RECENT, encode(&host))?;
        self.db.flush_async().await?;
        Ok(())
    }

    /// Feeds the breaker: a success closes the failure streak, a failure
    /// extends it and opens the breaker at `threshold`. Returns the new state.
    pub async fn record_result(
        &self,
        rule: &str,
        ok: bool,
        threshold: u32,
        now_ms: i64,
    ) -> Result<RuleState, sled::Error> {
        let mut r = self.rule(rule)?;
        if ok {
            r.consecutive_failures = 0;
        } else {
            r.consecutive_failures = r.consecutive_failures.saturating_add(1);
            if r.consecutive_failures >= threshold && r.breaker_open_since_ms.is_none() {
                r.breaker_open_since_ms = Some(now_ms);
            }
        }
        self.put_rule(rule, &r)?;
        self.db.flush_async().await?;
        Ok(r)
    }

    /// Closes the breaker of `rule` (a human decision).
    pub async fn reset_breaker(&self, rule: &str) -> Result<RuleState, sled::Error> {
        let mut r = self.rule(rule)?;
        r.breaker_open_since_ms = None;
        r.consecutive_failures = 0;
        self.put_rule(rule, &r)?;
        self.db.flush_async().await?;
        Ok(r)
    }

    /// Next report id: sled's generator never repeats, also after a restart.
    pub fn next_id(&self) -> Result<u64, sled::Error> {
        self.db.generate_id()
    }

    /// Keeps `report` in the history, dropping the oldest beyond the bound.
    pub async fn push_history(&self, report: &ActionReport) -> Result<(), sled::Error> {
        self.history
            .insert(report.id.to_be_bytes(), encode(report))?;
        while self.history.len() > self.history_max {
            if self.history.pop_min()?.is_none() {
                break;
            }
        }
        self.db.flush_async().await?;
        Ok(())
    }

    /// The newest `limit` reports, newest first.
    pub fn history(&self, limit: usize) -> Result<Vec<ActionReport>, sled::Error> {
        let mut out = Vec::new();
        for entry in self.history.iter().rev().take(limit) {
            let (_, v) = entry?;
            if let Ok(r) = serde_json::from_slice(&v) {
                out.push(r);
            }
        }
        Ok(out)
    }
}
