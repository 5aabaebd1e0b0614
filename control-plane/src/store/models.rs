//! The model registry's versions and what each host reports about them. Model rollouts live in
//! `model_rollouts`, read and written by the rollout functions of `store/policy.rs`.

use base64::Engine as _;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{claim_message, Store, StoreError};
use crate::domain::models::{ModelHostStatus, ModelStatusIn, ModelVersion};
use crate::domain::Ingested;

const MODEL_COLUMNS: &str = "number, name, version, manifest, sha256, size_bytes, signature,
    golden, card, evaluation, created_by, created_at_ms";

fn model_from_row(r: &AnyRow) -> Result<ModelVersion, StoreError> {
    Ok(ModelVersion {
        number: r.try_get("number")?,
        name: r.try_get("name")?,
        version: r.try_get("version")?,
        manifest: r.try_get("manifest")?,
        sha256: r.try_get("sha256")?,
        size_bytes: r.try_get("size_bytes")?,
        signature: r.try_get("signature")?,
        golden: r.try_get("golden")?,
        card: r.try_get("card")?,
        evaluation: r.try_get("evaluation")?,
        created_by: r.try_get("created_by")?,
        created_at_ms: r.try_get("created_at_ms")?,
    })
}

impl Store {
    /// The number the next stored model gets.
    pub async fn next_model_number(&self) -> Result<i64, StoreError> {
        let n: Option<i64> = sqlx::query_scalar("SELECT MAX(number) FROM models")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.unwrap_or(0) + 1)
    }

    /// Stores a version and its file; [`StoreError::Conflict`] when its number or version is
    /// taken.
    pub async fn insert_model(&self, m: &ModelVersion, onnx: &[u8]) -> Result<(), StoreError> {
        if self.model_by_version(&m.version).await?.is_some() {
            return Err(StoreError::Conflict(format!(
                "model version {:?}",
                m.version
            )));
        }
        let encoded = base64::engine::general_purpose::STANDARD.encode(onnx);
        let result = sqlx::query(
            "INSERT INTO models (number, name, version, manifest, onnx_base64, sha256, size_bytes,
                signature, golden, card, evaluation, created_by, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(m.number)
        .bind(&m.name)
        .bind(&m.version)
        .bind(&m.manifest)
        .bind(&encoded)
        .bind(&m.sha256)
        .bind(m.size_bytes)
        .bind(&m.signature)
        .bind(&m.golden)
        .bind(&m.card)
        .bind(&m.evaluation)
        .bind(&m.created_by)
        .bind(m.created_at_ms)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict(
                format!("model number {} or version {:?}", m.number, m.version),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Every version, newest first.
    pub async fn models(&self) -> Result<Vec<ModelVersion>, StoreError> {
        let rows = sqlx::query(super::audited(format!(
            "SELECT {MODEL_COLUMNS} FROM models ORDER BY number DESC"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(model_from_row).collect()
    }

    pub async fn model_by_version(
        &self,
        version: &str,
    ) -> Result<Option<ModelVersion>, StoreError> {
        let row = sqlx::query(super::audited(format!(
            "SELECT {MODEL_COLUMNS} FROM models WHERE version = $1"
        )))
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(model_from_row).transpose()
    }

    pub async fn model(&self, number: i64) -> Result<Option<ModelVersion>, StoreError> {
        let row = sqlx::query(super::audited(format!(
            "SELECT {MODEL_COLUMNS} FROM models WHERE number = $1"
        )))
        .bind(number)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(model_from_row).transpose()
    }

    /// The ONNX file of model `number`.
    pub async fn model_file(&self, number: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let encoded: Option<String> =
            sqlx::query_scalar("SELECT onnx_base64 FROM models WHERE number = $1")
                .bind(number)
                .fetch_optional(&self.pool)
                .await?;
        encoded
            .map(|e| {
                base64::engine::general_purpose::STANDARD
                    .decode(e)
                    .map_err(|_| StoreError::Unreadable(format!("model {number}'s file")))
            })
            .transpose()
    }

    /// Stores an agent's model status once per (host, seq).
    pub async fn record_model_status(
        &self,
        host: &str,
        s: &ModelStatusIn,
        now_ms: i64,
    ) -> Result<Ingested, StoreError> {
        let mut tx = self.begin_write().await?;
        if !claim_message(
            &mut tx,
            host,
            s.seq,
            "model_status",
            s.produced_at_ms,
            now_ms,
        )
        .await?
        {
            tx.rollback().await?;
            return Ok(Ingested::Duplicate);
        }
        let applied_at = if s.applied { s.produced_at_ms } else { 0 };
        sqlx::query(
            "INSERT INTO model_status (host_id, number, applied_number, applied_model,
                applied_at_ms, error, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (host_id) DO UPDATE SET number = excluded.number,
                applied_number = excluded.applied_number,
                applied_model = excluded.applied_model,
                applied_at_ms = CASE WHEN excluded.applied_at_ms > 0 THEN excluded.applied_at_ms
                                     ELSE model_status.applied_at_ms END,
                error = excluded.error, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(host)
        .bind(s.number)
        .bind(s.active_number)
        .bind(&s.active_model)
        .bind(applied_at)
        .bind(&s.error)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ingested::Stored)
    }

    /// What every host last reported, by host id.
    pub async fn model_statuses(&self) -> Result<Vec<ModelHostStatus>, StoreError> {
        let rows = sqlx::query(
            "SELECT host_id, number, applied_number, applied_model, applied_at_ms, error,
                updated_at_ms FROM model_status ORDER BY host_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ModelHostStatus {
                    host_id: r.try_get("host_id")?,
                    number: r.try_get("number")?,
                    applied_number: r.try_get("applied_number")?,
                    applied_model: r.try_get("applied_model")?,
                    applied_at_ms: r.try_get("applied_at_ms")?,
                    error: r.try_get("error")?,
                    updated_at_ms: r.try_get("updated_at_ms")?,
                })
            })
            .collect()
    }
}
