//! Users, token versions and refresh tokens: the persistence behind
//! [`crate::auth`] and `/auth/*`.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Store, StoreError};
use crate::auth::{RefreshRecord, Role, User, UserAuth};

impl Store {
    pub async fn create_user(&self, user: &User, password_hash: &str) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO users (id, username, password_hash, role, created_at_ms)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (username) DO NOTHING",
        )
        .bind(&user.id)
        .bind(&user.username)
        .bind(password_hash)
        .bind(user.role.as_str())
        .bind(user.created_at_ms)
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("user {:?}", user.username)));
        }
        Ok(())
    }

    /// The user and their password hash.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<(User, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, username, password_hash, role, created_at_ms FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((user_from_row(&r)?, r.try_get("password_hash")?)))
            .transpose()
    }

    /// Username, current role and token version by user id: one
    /// primary-key read, done for every authenticated request.
    pub async fn user_auth(&self, user_id: &str) -> Result<Option<UserAuth>, StoreError> {
        let row = sqlx::query("SELECT id, username, role, token_version FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let role: String = r.try_get("role")?;
            Ok(UserAuth {
                id: r.try_get("id")?,
                username: r.try_get("username")?,
                role: Role::parse(&role).unwrap_or(Role::Viewer),
                token_version: r.try_get("token_version")?,
            })
        })
        .transpose()
    }

    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        let rows =
            sqlx::query("SELECT id, username, role, created_at_ms FROM users ORDER BY username")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn admin_exists(&self) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users WHERE role = 'admin'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// Ends every session of a user: increments the token version (every
    /// access token issued before stops working) and revokes every refresh
    /// token. With `password_hash`, also replaces the password, in the same
    /// transaction. Returns the new token version.
    pub async fn revoke_sessions(
        &self,
        user_id: &str,
        password_hash: Option<&str>,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin_write().await?;
        if let Some(hash) = password_hash {
            sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
                .bind(user_id)
                .bind(hash)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE users SET token_version = token_version + 1 WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at_ms = $2
             WHERE user_id = $1 AND revoked_at_ms IS NULL",
        )
        .bind(user_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT token_version FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row.try_get("token_version")?)
    }

    pub async fn insert_refresh_token(&self, r: &RefreshRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, issued_at_ms, expires_at_ms)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&r.token_hash)
        .bind(&r.family_id)
        .bind(&r.user_id)
        .bind(r.issued_at_ms)
        .bind(r.expires_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn refresh_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<RefreshRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT token_hash, family_id, user_id, issued_at_ms, expires_at_ms, used_at_ms,
                    revoked_at_ms
             FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(RefreshRecord {
                token_hash: r.try_get("token_hash")?,
                family_id: r.try_get("family_id")?,
                user_id: r.try_get("user_id")?,
                issued_at_ms: r.try_get("issued_at_ms")?,
                expires_at_ms: r.try_get("expires_at_ms")?,
                used_at_ms: r.try_get("used_at_ms")?,
                revoked_at_ms: r.try_get("revoked_at_ms")?,
            })
        })
        .transpose()
    }

    /// Marks `old_hash` used and stores its successor, atomically. False
    /// when the old token was already used or revoked (a concurrent reuse):
    /// nothing is stored then.
    pub async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new: &RefreshRecord,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let used = sqlx::query(
            "UPDATE refresh_tokens SET used_at_ms = $2
             WHERE token_hash = $1 AND used_at_ms IS NULL AND revoked_at_ms IS NULL",
        )
        .bind(old_hash)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if used == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, issued_at_ms, expires_at_ms)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&new.token_hash)
        .bind(&new.family_id)
        .bind(&new.user_id)
        .bind(new.issued_at_ms)
        .bind(new.expires_at_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Revokes every token of a refresh family (after reuse was detected).
    pub async fn revoke_refresh_family(
        &self,
        family_id: &str,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at_ms = $2
             WHERE family_id = $1 AND revoked_at_ms IS NULL",
        )
        .bind(family_id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Deletes the refresh tokens expired at `now_ms` (`expires_at_ms <=
    /// now_ms`, the test `/auth/refresh` applies), whether used, revoked or
    /// neither, and returns how many. A deleted spent token no longer
    /// triggers reuse detection when presented again, so a caller wanting a
    /// longer reuse window passes an earlier instant.
    pub async fn purge_refresh_tokens(&self, now_ms: i64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM refresh_tokens WHERE expires_at_ms <= $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    /// Milliseconds until the longest lock among `keys` ends, if any is
    /// locked at `now_ms`.
    pub async fn login_lock_wait(
        &self,
        keys: &[String],
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut wait = None;
        for k in keys {
            let row = sqlx::query("SELECT locked_until_ms FROM login_strikes WHERE key = $1")
                .bind(k)
                .fetch_optional(&self.pool)
                .await?;
            if let Some(r) = row {
                let w = r.try_get::<i64, _>("locked_until_ms")? - now_ms;
                if w > 0 && wait.is_none_or(|x| w > x) {
                    wait = Some(w);
                }
            }
        }
        Ok(wait)
    }

    /// Counts one failed login against `key` (forgetting failures older
    /// than `forget_ms`) and locks it for `lock(failures)` ms.
    pub async fn record_login_failure(
        &self,
        key: &str,
        forget_ms: i64,
        lock: impl Fn(u32) -> i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        // The count is taken by the write itself: a transaction that read first and wrote
        // after would, on SQLite, fail at once with "database is locked" whenever another
        // connection wrote in between (two failed logins at the same moment), instead of
        // waiting its turn.
        let mut tx = self.begin_write().await?;
        let failures: i64 = sqlx::query_scalar(
            "INSERT INTO login_strikes (key, failures, last_failure_ms, locked_until_ms)
             VALUES ($1, 1, $2, 0)
             ON CONFLICT (key) DO UPDATE SET
                failures = CASE WHEN $2 - login_strikes.last_failure_ms < $3
                           THEN login_strikes.failures + 1 ELSE 1 END,
                last_failure_ms = excluded.last_failure_ms
             RETURNING failures",
        )
        .bind(key)
        .bind(now_ms)
        .bind(forget_ms)
        .fetch_one(&mut *tx)
        .await?;
        let lock = lock(u32::try_from(failures).unwrap_or(u32::MAX));
        sqlx::query("UPDATE login_strikes SET locked_until_ms = $2 WHERE key = $1")
            .bind(key)
            .bind(if lock > 0 { now_ms + lock } else { 0 })
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_strikes WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets strikes whose last failure is older than `before_ms`.
    pub async fn purge_login_strikes(&self, before_ms: i64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM login_strikes WHERE last_failure_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }
}

fn user_from_row(r: &AnyRow) -> Result<User, StoreError> {
    let role: String = r.try_get("role")?;
    Ok(User {
        id: r.try_get("id")?,
        username: r.try_get("username")?,
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        created_at_ms: r.try_get("created_at_ms")?,
    })
}
