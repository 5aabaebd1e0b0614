//! ChatOps: the exchanges (question, understood intent, answer) and the action requests
//! waiting for a confirmation. A confirmation is taken with one `DELETE`, so of two
//! replicas (or two clicks) confirming the same id, exactly one carries it out.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{audited, Store, StoreError};
use crate::chatops::{Exchange, ExchangeQuery};

fn exchange_from_row(r: &AnyRow) -> Result<Exchange, StoreError> {
    let intent: String = r.try_get("intent")?;
    Ok(Exchange {
        id: r.try_get("id")?,
        at_ms: r.try_get("at_ms")?,
        user: r.try_get("username")?,
        role: r.try_get("role")?,
        source: r.try_get("source")?,
        text: r.try_get("text")?,
        intent: serde_json::from_str(&intent).unwrap_or(serde_json::Value::Null),
        answer: r.try_get("answer")?,
        outcome: r.try_get("outcome")?,
        confirmation_id: r.try_get("confirmation_id")?,
    })
}

impl Store {
    pub async fn insert_chat_exchange(&self, e: &Exchange) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO chat_exchanges (id, at_ms, username, role, source, text, intent, answer,
                                         outcome, confirmation_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(e.id.clone())
        .bind(e.at_ms)
        .bind(e.user.clone())
        .bind(e.role.clone())
        .bind(e.source.clone())
        .bind(e.text.clone())
        .bind(e.intent.to_string())
        .bind(e.answer.clone())
        .bind(e.outcome.clone())
        .bind(e.confirmation_id.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Exchanges newest first, filtered by user and time, paged.
    pub async fn chat_exchanges(&self, q: &ExchangeQuery) -> Result<Vec<Exchange>, StoreError> {
        let mut sql = String::from(
            "SELECT id, at_ms, username, role, source, text, intent, answer, outcome,
                    confirmation_id FROM chat_exchanges WHERE 1 = 1",
        );
        let mut n = 0;
        if q.user.is_some() {
            n += 1;
            sql.push_str(&format!(" AND username = ${n}"));
        }
        if q.from_ms.is_some() {
            n += 1;
            sql.push_str(&format!(" AND at_ms >= ${n}"));
        }
        if q.to_ms.is_some() {
            n += 1;
            sql.push_str(&format!(" AND at_ms < ${n}"));
        }
        sql.push_str(&format!(
            " ORDER BY at_ms DESC, id DESC LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        ));
        let mut query = sqlx::query(audited(sql));
        if let Some(u) = &q.user {
            query = query.bind(u.clone());
        }
        if let Some(f) = q.from_ms {
            query = query.bind(f);
        }
        if let Some(t) = q.to_ms {
            query = query.bind(t);
        }
        let rows = query
            .bind(q.limit)
            .bind(q.offset)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(exchange_from_row).collect()
    }

    /// Stores an action request waiting for its confirmation (`pending` is its JSON).
    pub async fn insert_chat_pending(
        &self,
        confirmation_id: &str,
        user: &str,
        pending: &serde_json::Value,
        text: &str,
        created_ms: i64,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        // Expired requests are of no use to anyone: dropped as new ones arrive.
        sqlx::query("DELETE FROM chat_pending WHERE expires_ms < $1")
            .bind(created_ms - 3_600_000)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO chat_pending (confirmation_id, username, intent, text, created_ms, expires_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(confirmation_id.to_string())
        .bind(user.to_string())
        .bind(pending.to_string())
        .bind(text.to_string())
        .bind(created_ms)
        .bind(expires_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The pending request of a confirmation id, as stored (JSON), if any.
    pub async fn chat_pending(
        &self,
        confirmation_id: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let row = sqlx::query("SELECT intent FROM chat_pending WHERE confirmation_id = $1")
            .bind(confirmation_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let json: String = row.try_get("intent")?;
        serde_json::from_str(&json).map(Some).map_err(|e| {
            StoreError::Unreadable(format!("chat confirmation {confirmation_id}: {e}"))
        })
    }

    /// Takes a pending request: true for exactly one caller, whoever else tries too.
    pub async fn take_chat_pending(&self, confirmation_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM chat_pending WHERE confirmation_id = $1")
            .bind(confirmation_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
