//! Work shared by replicas: leases on fleet-wide periodic work, and wake-ups between replicas
//! through PostgreSQL's LISTEN/NOTIFY (on SQLite there is one control plane, and nothing to
//! tell).

use sqlx::postgres::PgListener;

use super::{Backend, Store, StoreError};

/// The LISTEN/NOTIFY channel replicas wake each other on.
const CHANNEL: &str = "sco_fleet";

/// What another replica may have to act on now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A remediation request or decision, a rollout, a breaker reset: run the ticks now.
    Ticks,
    /// A host was revoked: close its stream now.
    Revocations,
}

impl Wake {
    fn as_str(self) -> &'static str {
        match self {
            Wake::Ticks => "ticks",
            Wake::Revocations => "revocations",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "ticks" => Some(Wake::Ticks),
            "revocations" => Some(Wake::Revocations),
            _ => None,
        }
    }
}

/// Wake-ups from other replicas (and this one), as they arrive.
pub struct WakeListener {
    listener: PgListener,
}

impl WakeListener {
    /// The next wake-up; an error when the connection is lost (the caller listens again).
    pub async fn recv(&mut self) -> Result<Option<Wake>, StoreError> {
        let n = self.listener.recv().await?;
        Ok(Wake::parse(n.payload()))
    }
}

impl Store {
    /// Takes or renews the lease `name` for `holder` until `now_ms + ttl_ms`; true when this
    /// holder has it (it held it, or the last holder's lease expired).
    pub async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "INSERT INTO leases (name, holder, expires_ms) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms
             WHERE leases.holder = excluded.holder OR leases.expires_ms < $4",
        )
        .bind(name)
        .bind(holder)
        .bind(now_ms + ttl_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Gives up every lease of `holder` (at shutdown, so another replica takes over at once).
    pub async fn release_leases(&self, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM leases WHERE holder = $1")
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Tells every replica (this one too) to act on `what` now. Best effort: the periodic
    /// polls are the safety net, so a lost wake-up only delays.
    pub async fn announce(&self, what: Wake) {
        if self.backend != Backend::Postgres {
            return;
        }
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(what.as_str())
            .execute(&self.pool)
            .await;
        if let Err(e) = sent {
            tracing::debug!(error = %e, "cannot announce to the other replicas");
        }
    }

    /// Listens for wake-ups (PostgreSQL only; None on SQLite).
    pub async fn listen(&self, url: &str) -> Result<Option<WakeListener>, StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let mut listener = PgListener::connect(url).await?;
        listener.listen(CHANNEL).await?;
        Ok(Some(WakeListener { listener }))
    }
}
