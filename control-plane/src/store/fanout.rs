//! Work shared by replicas: leases on fleet-wide periodic work, the registry of live replicas
//! (where agents reach each, how many streams it holds), and wake-ups between replicas through
//! PostgreSQL's LISTEN/NOTIFY (on SQLite there is one control plane, and nothing to tell).

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

/// A replica's entry in the registry of live replicas.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplicaEntry<'a> {
    /// Where agents reach it over TCP (`host:port`); empty: not named to agents that way.
    pub grpc_addr: &'a str,
    /// Where agents reach it over QUIC; empty: not named to agents that way.
    pub quic_addr: &'a str,
    /// Agent streams it holds.
    pub streams: i64,
    /// Agent streams it holds at most; 0: no limit.
    pub max_streams: i64,
    /// Refusing new streams because it is overloaded (`replicas.max_lag_ms`): named to no agent.
    pub shedding: bool,
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

    /// The leases `holder` holds at `now_ms`, by name.
    pub async fn leases_of(&self, holder: &str, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let names = sqlx::query_scalar::<_, String>(
            "SELECT name FROM leases WHERE holder = $1 AND expires_ms >= $2 ORDER BY name",
        )
        .bind(holder)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(names)
    }

    /// Records replica `id` as live until `expires_ms`, as `entry` says.
    pub async fn register_replica(
        &self,
        id: &str,
        entry: &ReplicaEntry<'_>,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO replicas (id, grpc_addr, quic_addr, streams, max_streams, shedding, expires_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET grpc_addr = excluded.grpc_addr,
               quic_addr = excluded.quic_addr, streams = excluded.streams,
               max_streams = excluded.max_streams, shedding = excluded.shedding,
               expires_ms = excluded.expires_ms",
        )
        .bind(id)
        .bind(entry.grpc_addr)
        .bind(entry.quic_addr)
        .bind(entry.streams)
        .bind(entry.max_streams)
        .bind(i64::from(entry.shedding))
        .bind(expires_ms)
        .execute(&self.pool)
        .await?;
        // the entries of replicas that died long ago
        sqlx::query("DELETE FROM replicas WHERE expires_ms < $1")
            .bind(expires_ms - 86_400_000)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes replica `id` from the registry (at shutdown).
    pub async fn unregister_replica(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM replicas WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Where agents reach the live replicas other than `except` that have room for another
    /// stream and are not overloaded, the emptiest first: over TCP (`host:port`), or for an agent that came over
    /// QUIC (`over_quic`) over QUIC where a replica listens on it (`quic://host:port`) and
    /// over TCP where it does not.
    pub async fn replicas_with_room(
        &self,
        except: &str,
        now_ms: i64,
        over_quic: bool,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query_as::<_, (String, String)>(
            "SELECT grpc_addr, quic_addr FROM replicas
             WHERE id <> $1 AND expires_ms >= $2 AND (grpc_addr <> '' OR quic_addr <> '')
               AND (max_streams = 0 OR streams < max_streams) AND shedding = 0
             ORDER BY streams, id",
        )
        .bind(except)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(grpc, quic)| match (over_quic, quic.is_empty()) {
                (true, false) => Some(format!("quic://{quic}")),
                _ => (!grpc.is_empty()).then_some(grpc),
            })
            .collect())
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
