//! The learnt preferences among a rule's candidate actions: one row per rule, context and
//! candidate, counts updated in place so replicas add up rather than overwrite.

use std::collections::BTreeMap;

use sqlx::Row;

use super::{audited, Store, StoreError};
use crate::domain::choice::{PreferenceRow, Tally};

const PREFERENCE_SELECT: &str =
    "SELECT rule, context, action, position, of_count, successes, failures, updated_at_ms
     FROM remediation_preferences";

impl Store {
    /// The tallies of `candidates` (canonical action JSON, in written order) of `rule` in
    /// `context`, recording their written positions; rows of candidates the rule no longer
    /// lists in this context are dropped.
    ///
    /// Every row is deleted or written in one order, that of its action's bytes, whatever
    /// the order of `candidates`: two calls for the same rule and context with other lists
    /// (a revision rolling out, its candidates reordered) locked the rows in the order of
    /// their own lists, the dropped ones first, and deadlocked on PostgreSQL; in one order
    /// the second waits for the first. SQLite has one writer at a time.
    pub async fn candidate_tallies(
        &self,
        rule: &str,
        context: &str,
        candidates: &[String],
        now_ms: i64,
    ) -> Result<Vec<Tally>, StoreError> {
        let of = i64::try_from(candidates.len()).unwrap_or(i64::MAX);
        // each action once, at its last written position (an upsert per position did that)
        let mut steps: BTreeMap<&str, Option<usize>> = candidates
            .iter()
            .enumerate()
            .map(|(position, action)| (action.as_str(), Some(position)))
            .collect();
        let mut tx = self.begin_write().await?;
        let stored: Vec<String> = sqlx::query(
            "SELECT action FROM remediation_preferences WHERE rule = $1 AND context = $2",
        )
        .bind(rule)
        .bind(context)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| row.try_get("action"))
        .collect::<Result<_, _>>()?;
        for action in &stored {
            steps.entry(action.as_str()).or_insert(None);
        }
        let mut learnt: BTreeMap<&str, Tally> = BTreeMap::new();
        for (action, position) in steps {
            let Some(position) = position else {
                delete_row(&mut tx, rule, context, action).await?;
                continue;
            };
            let row = sqlx::query(
                "INSERT INTO remediation_preferences
                   (rule, context, action, position, of_count, successes, failures, updated_at_ms)
                 VALUES ($1, $2, $3, $4, $5, 0, 0, $6)
                 ON CONFLICT (rule, context, action)
                 DO UPDATE SET position = excluded.position, of_count = excluded.of_count
                 RETURNING successes, failures",
            )
            .bind(rule)
            .bind(context)
            .bind(action)
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .bind(of)
            .bind(now_ms)
            .fetch_one(&mut *tx)
            .await?;
            learnt.insert(
                action,
                Tally {
                    successes: row.try_get("successes")?,
                    failures: row.try_get("failures")?,
                },
            );
        }
        tx.commit().await?;
        Ok(candidates
            .iter()
            .map(|a| learnt.get(a.as_str()).copied().unwrap_or_default())
            .collect())
    }

    /// Adds one verified outcome of a candidate (the row comes back if a reset removed it
    /// while the action ran).
    #[allow(clippy::too_many_arguments)]
    pub async fn learn_outcome(
        &self,
        rule: &str,
        context: &str,
        action: &str,
        position: i64,
        of: i64,
        verified: bool,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (s, f) = if verified { (1i64, 0i64) } else { (0, 1) };
        sqlx::query(
            "INSERT INTO remediation_preferences
               (rule, context, action, position, of_count, successes, failures, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (rule, context, action) DO UPDATE SET
               successes = remediation_preferences.successes + excluded.successes,
               failures = remediation_preferences.failures + excluded.failures,
               updated_at_ms = excluded.updated_at_ms",
        )
        .bind(rule)
        .bind(context)
        .bind(action)
        .bind(position)
        .bind(of)
        .bind(s)
        .bind(f)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stored tallies, optionally of one rule and/or one context.
    pub async fn preference_rows(
        &self,
        rule: Option<&str>,
        context: Option<&str>,
    ) -> Result<Vec<PreferenceRow>, StoreError> {
        let (sql, binds) = filtered(PREFERENCE_SELECT, rule, context);
        let mut query = sqlx::query(audited(format!("{sql} ORDER BY rule, context, position")));
        for b in binds {
            query = query.bind(b);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let action: String = r.try_get("action")?;
                Ok(PreferenceRow {
                    rule: r.try_get("rule")?,
                    context: r.try_get("context")?,
                    action: serde_json::from_str(&action).unwrap_or(serde_json::Value::Null),
                    position: r.try_get("position")?,
                    of: r.try_get("of_count")?,
                    tally: Tally {
                        successes: r.try_get("successes")?,
                        failures: r.try_get("failures")?,
                    },
                    updated_at_ms: r.try_get("updated_at_ms")?,
                })
            })
            .collect()
    }

    /// Forgets what was learnt, optionally of one rule and/or one context; returns how many
    /// candidates' tallies were removed.
    ///
    /// The rows are deleted one by one in the order of their keys' bytes, the order in which
    /// `candidate_tallies` writes a rule's rows: one `DELETE` locked them in the order it met
    /// them on disk and deadlocked on PostgreSQL with remediations learning at that moment
    /// (one side failed).
    pub async fn delete_preferences(
        &self,
        rule: Option<&str>,
        context: Option<&str>,
    ) -> Result<u64, StoreError> {
        let (sql, binds) = filtered(
            "SELECT rule, context, action FROM remediation_preferences",
            rule,
            context,
        );
        let mut tx = self.begin_write().await?;
        let mut query = sqlx::query(audited(sql));
        for b in binds {
            query = query.bind(b);
        }
        let mut keys: Vec<(String, String, String)> = query
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("rule")?,
                    r.try_get("context")?,
                    r.try_get("action")?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()?;
        keys.sort_unstable();
        let mut deleted = 0;
        for (rule, context, action) in &keys {
            deleted += delete_row(&mut tx, rule, context, action).await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }
}

/// Deletes one candidate's row; how many were deleted (0 or 1).
async fn delete_row(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    rule: &str,
    context: &str,
    action: &str,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM remediation_preferences WHERE rule = $1 AND context = $2 AND action = $3",
    )
    .bind(rule)
    .bind(context)
    .bind(action)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

/// `base` with a `WHERE` on the filters given, and the values to bind in order.
fn filtered<'a>(
    base: &str,
    rule: Option<&'a str>,
    context: Option<&'a str>,
) -> (String, Vec<&'a str>) {
    let mut sql = format!("{base} WHERE 1 = 1");
    let mut binds = Vec::new();
    for (col, v) in [("rule", rule), ("context", context)] {
        if let Some(v) = v {
            binds.push(v);
            sql.push_str(&format!(" AND {col} = ${}", binds.len()));
        }
    }
    (sql, binds)
}
