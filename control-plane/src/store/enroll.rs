//! Enrollment tokens, certificate bookkeeping and revocation.

use sqlx::Row;

use super::{Store, StoreError};
use crate::domain::{EnrollmentToken, TokenUse};

impl Store {
    pub async fn create_enrollment_token(
        &self,
        t: &EnrollmentToken,
        secret_sha256: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO enrollment_tokens (id, secret_sha256, labels, max_uses, uses, expires_at_ms,
                                            created_by, created_at_ms, revoked)
             VALUES ($1, $2, $3, $4, 0, $5, $6, $7, 0)",
        )
        .bind(&t.id)
        .bind(secret_sha256)
        .bind(serde_json::to_string(&t.labels).unwrap_or_else(|_| "{}".into()))
        .bind(t.max_uses)
        .bind(t.expires_at_ms)
        .bind(&t.created_by)
        .bind(t.created_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn enrollment_tokens(&self) -> Result<Vec<EnrollmentToken>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, labels, max_uses, uses, expires_at_ms, created_by, created_at_ms, revoked
             FROM enrollment_tokens ORDER BY created_at_ms DESC, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let labels: String = r.try_get("labels")?;
                Ok(EnrollmentToken {
                    id: r.try_get("id")?,
                    labels: serde_json::from_str(&labels).unwrap_or_default(),
                    max_uses: r.try_get("max_uses")?,
                    uses: r.try_get("uses")?,
                    expires_at_ms: r.try_get("expires_at_ms")?,
                    created_by: r.try_get("created_by")?,
                    created_at_ms: r.try_get("created_at_ms")?,
                    revoked: r.try_get::<i64, _>("revoked")? != 0,
                })
            })
            .collect()
    }

    /// Returns false when no such token exists.
    pub async fn revoke_enrollment_token(&self, id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE enrollment_tokens SET revoked = 1 WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Spends one use of a token, atomically: two agents racing for the last
    /// use cannot both win. `check` sees the stored secret hash and decides.
    pub async fn use_enrollment_token(
        &self,
        id: &str,
        now_ms: i64,
        check: impl FnOnce(&str) -> bool,
    ) -> Result<TokenUse, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT secret_sha256, labels, max_uses, uses, expires_at_ms, revoked FROM enrollment_tokens WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(TokenUse::Unknown);
        };
        let hash: String = row.try_get("secret_sha256")?;
        if !check(&hash) {
            return Ok(TokenUse::Unknown);
        }
        if row.try_get::<i64, _>("revoked")? != 0 {
            return Ok(TokenUse::Revoked);
        }
        if row.try_get::<i64, _>("expires_at_ms")? <= now_ms {
            return Ok(TokenUse::Expired);
        }
        let spent = sqlx::query(
            "UPDATE enrollment_tokens SET uses = uses + 1
             WHERE id = $1 AND uses < max_uses AND revoked = 0 AND expires_at_ms > $2",
        )
        .bind(id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if spent == 0 {
            return Ok(TokenUse::UsedUp);
        }
        let labels: String = row.try_get("labels")?;
        Ok(TokenUse::Ok {
            labels: serde_json::from_str(&labels).unwrap_or_default(),
        })
    }

    /// Creates the host record of a newly enrolled agent.
    pub async fn enroll_host(
        &self,
        id: &str,
        hostname: &str,
        token_id: &str,
        labels: &std::collections::BTreeMap<String, String>,
        cert_not_after_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let labels = serde_json::to_string(labels).unwrap_or_else(|_| "{}".into());
        let r = sqlx::query(
            "INSERT INTO hosts (id, hostname, labels, enrolled_labels, first_seen_ms, last_seen_ms, connected,
                                cert_not_after_ms, enrolled_with)
             VALUES ($1, $2, $3, $3, $4, $4, 0, $5, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(hostname)
        .bind(labels)
        .bind(now_ms)
        .bind(cert_not_after_ms)
        .bind(token_id)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("host {id:?}")));
        }
        Ok(())
    }

    pub async fn set_cert_expiry(&self, id: &str, not_after_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE hosts SET cert_not_after_ms = $2 WHERE id = $1")
            .bind(id)
            .bind(not_after_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks a host revoked; false when no such host exists.
    pub async fn revoke_host(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE hosts SET revoked_at_ms = CASE WHEN revoked_at_ms > 0 THEN revoked_at_ms ELSE $2 END
             WHERE id = $1",
        )
        .bind(id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn is_revoked(&self, id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT revoked_at_ms FROM hosts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<i64, _>("revoked_at_ms")? > 0,
            None => false,
        })
    }

    /// Hosts revoked at or after `since_ms`, for replicas to close streams.
    pub async fn revoked_since(&self, since_ms: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, revoked_at_ms FROM hosts WHERE revoked_at_ms >= $1 AND revoked_at_ms > 0",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("revoked_at_ms")?)))
            .collect()
    }
}
