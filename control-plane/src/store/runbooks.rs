//! Runbooks: the current revision in `runbooks`, every revision in `runbook_revisions`, and
//! the full-text index: an FTS5 table kept in the same transaction on SQLite, an expression
//! GIN index on PostgreSQL. Both are made by [`Store::prepare_runbook_search`] after the
//! portable migrations, because neither statement exists in the other database.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{Backend, Store, StoreError};
use crate::runbooks::{Citation, Conditions, Runbook};

const COLUMNS: &str = "id, revision, title, tags, conditions, body, updated_ms, updated_by";

/// The document PostgreSQL indexes and searches (the same expression in both places, so the
/// index is used).
const PG_DOCUMENT: &str = "to_tsvector('english', title || ' ' || tags || ' ' || body)";

fn runbook_from_row(r: &AnyRow) -> Result<Runbook, StoreError> {
    let tags: String = r.try_get("tags")?;
    let conditions: String = r.try_get("conditions")?;
    Ok(Runbook {
        id: r.try_get("id")?,
        revision: r.try_get("revision")?,
        title: r.try_get("title")?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        conditions: serde_json::from_str::<Conditions>(&conditions).unwrap_or_default(),
        body: r.try_get("body")?,
        updated_ms: r.try_get("updated_ms")?,
        updated_by: r.try_get("updated_by")?,
    })
}

impl Store {
    /// Creates the full-text index of runbooks if it is missing (idempotent).
    pub(super) async fn prepare_runbook_search(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => {
                sqlx::query(
                    "CREATE VIRTUAL TABLE IF NOT EXISTS runbooks_fts
                     USING fts5(id UNINDEXED, title, tags, body)",
                )
                .execute(&self.pool)
                .await?;
            }
            Backend::Postgres => {
                sqlx::query(super::audited(format!(
                    "CREATE INDEX IF NOT EXISTS runbooks_fulltext ON runbooks USING GIN ({PG_DOCUMENT})"
                )))
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }

    async fn index_runbook(
        &self,
        tx: &mut Transaction<'static, Any>,
        rb: Option<&Runbook>,
        id: &str,
    ) -> Result<(), StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        sqlx::query("DELETE FROM runbooks_fts WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut **tx)
            .await?;
        if let Some(rb) = rb {
            sqlx::query("INSERT INTO runbooks_fts (id, title, tags, body) VALUES ($1, $2, $3, $4)")
                .bind(rb.id.clone())
                .bind(rb.title.clone())
                .bind(rb.tags.join(" "))
                .bind(rb.body.clone())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Copies the current revision of `id` into its history.
    async fn keep_revision(tx: &mut Transaction<'static, Any>, id: &str) -> Result<(), StoreError> {
        sqlx::query(super::audited(format!(
            "INSERT INTO runbook_revisions ({COLUMNS}) SELECT {COLUMNS} FROM runbooks WHERE id = $1"
        )))
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Stores a new runbook; its revision follows the last one ever stored under its id (a
    /// runbook made again after a delete continues its history). None when the id exists.
    pub async fn create_runbook(&self, rb: &Runbook) -> Result<Option<Runbook>, StoreError> {
        let mut tx = self.begin_write().await?;
        let last: i64 = sqlx::query(
            "SELECT COALESCE(MAX(revision), 0) AS last FROM runbook_revisions WHERE id = $1",
        )
        .bind(rb.id.clone())
        .fetch_one(&mut *tx)
        .await?
        .try_get("last")?;
        let rb = Runbook {
            revision: last + 1,
            ..rb.clone()
        };
        let inserted = sqlx::query(super::audited(format!(
            "INSERT INTO runbooks ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (id) DO NOTHING"
        )))
        .bind(rb.id.clone())
        .bind(rb.revision)
        .bind(rb.title.clone())
        .bind(serde_json::to_string(&rb.tags).unwrap_or_else(|_| "[]".into()))
        .bind(serde_json::to_string(&rb.conditions).unwrap_or_else(|_| "{}".into()))
        .bind(rb.body.clone())
        .bind(rb.updated_ms)
        .bind(rb.updated_by.clone())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(None);
        }
        Self::keep_revision(&mut tx, &rb.id).await?;
        self.index_runbook(&mut tx, Some(&rb), &rb.id).await?;
        tx.commit().await?;
        Ok(Some(rb))
    }

    /// Replaces the current revision `previous` with `rb` (revision `previous + 1`); false when
    /// the runbook is no longer at `previous` (another edit or a delete came first).
    pub async fn update_runbook(&self, rb: &Runbook, previous: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE runbooks SET revision = $1, title = $2, tags = $3, conditions = $4, body = $5,
                                 updated_ms = $6, updated_by = $7
             WHERE id = $8 AND revision = $9",
        )
        .bind(rb.revision)
        .bind(rb.title.clone())
        .bind(serde_json::to_string(&rb.tags).unwrap_or_else(|_| "[]".into()))
        .bind(serde_json::to_string(&rb.conditions).unwrap_or_else(|_| "{}".into()))
        .bind(rb.body.clone())
        .bind(rb.updated_ms)
        .bind(rb.updated_by.clone())
        .bind(rb.id.clone())
        .bind(previous)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Ok(false);
        }
        Self::keep_revision(&mut tx, &rb.id).await?;
        self.index_runbook(&mut tx, Some(rb), &rb.id).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Removes the current revision (the history stays); the removed runbook, if there was one.
    /// Of deletes of one runbook at the same moment, one has it (the delete returns what it
    /// removed: a read before it would, on PostgreSQL, let each of them see the runbook).
    pub async fn delete_runbook(&self, id: &str) -> Result<Option<Runbook>, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(super::audited(format!(
            "DELETE FROM runbooks WHERE id = $1 RETURNING {COLUMNS}"
        )))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let rb = runbook_from_row(&row)?;
        self.index_runbook(&mut tx, None, id).await?;
        tx.commit().await?;
        Ok(Some(rb))
    }

    pub async fn runbook(&self, id: &str) -> Result<Option<Runbook>, StoreError> {
        let row = sqlx::query(super::audited(format!(
            "SELECT {COLUMNS} FROM runbooks WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(runbook_from_row).transpose()
    }

    /// Every revision of a runbook, newest first (also of a deleted one).
    pub async fn runbook_revisions(&self, id: &str) -> Result<Vec<Runbook>, StoreError> {
        let rows = sqlx::query(super::audited(format!(
            "SELECT {COLUMNS} FROM runbook_revisions WHERE id = $1 ORDER BY revision DESC"
        )))
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(runbook_from_row).collect()
    }

    /// Whether a runbook was ever stored under `id`.
    pub async fn runbook_ever_existed(&self, id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 AS one FROM runbook_revisions WHERE id = $1 LIMIT 1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Every current runbook, by title.
    pub async fn runbooks(&self) -> Result<Vec<Runbook>, StoreError> {
        let rows = sqlx::query(super::audited(format!(
            "SELECT {COLUMNS} FROM runbooks ORDER BY title, id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(runbook_from_row).collect()
    }

    /// Runbooks containing every word (as a word prefix), best first: FTS5's BM25 with the
    /// title weighing 10, tags 5 and the body 1 on SQLite; `ts_rank` with title, tags and body
    /// weighted A, B and D on PostgreSQL. `words` are letters and digits only.
    pub async fn search_runbooks(
        &self,
        words: &[String],
        limit: i64,
    ) -> Result<Vec<Citation>, StoreError> {
        let (sql, query) = match self.backend {
            Backend::Sqlite => (
                "SELECT r.id AS id, r.title AS title, r.revision AS revision,
                        -bm25(runbooks_fts, 0.0, 10.0, 5.0, 1.0) AS rank
                 FROM runbooks_fts JOIN runbooks r ON r.id = runbooks_fts.id
                 WHERE runbooks_fts MATCH $1 ORDER BY rank DESC, r.id LIMIT $2"
                    .to_string(),
                words
                    .iter()
                    .map(|w| format!("\"{w}\"*"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            Backend::Postgres => (
                format!(
                    "SELECT id, title, revision,
                            CAST(ts_rank(setweight(to_tsvector('english', title), 'A')
                                         || setweight(to_tsvector('english', tags), 'B')
                                         || setweight(to_tsvector('english', body), 'D'), q)
                                 AS DOUBLE PRECISION) AS rank
                     FROM runbooks, to_tsquery('english', $1) q
                     WHERE {PG_DOCUMENT} @@ q ORDER BY rank DESC, id LIMIT $2"
                ),
                words
                    .iter()
                    .map(|w| format!("{w}:*"))
                    .collect::<Vec<_>>()
                    .join(" & "),
            ),
        };
        let rows = sqlx::query(super::audited(sql))
            .bind(query)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Citation {
                    id: r.try_get("id")?,
                    title: r.try_get("title")?,
                    revision: r.try_get("revision")?,
                    rank: r.try_get("rank")?,
                    why: "full-text match".into(),
                })
            })
            .collect()
    }
}
