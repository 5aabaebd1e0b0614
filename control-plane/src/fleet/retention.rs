//! Rollup retention: the stored windows of every host older than the configured age are
//! deleted, once an hour, by one replica of the fleet (the holder of the `rollup-retention`
//! lease). Each host is swept in transactions of at most [`BATCH`] windows, so ingest never
//! waits long behind a sweep, even the first one after retention was turned on.

use std::sync::Arc;
use std::time::Duration;

use super::replicas::Replicas;
use crate::domain::now_ms;
use crate::store::{PurgedRollups, Store, StoreError};
use crate::telemetry::Telemetry;

/// The lease whose holder sweeps.
const RETENTION_LEASE: &str = "rollup-retention";
/// Windows deleted per transaction.
pub const BATCH: i64 = 2_000;

pub struct Retention {
    store: Store,
    telemetry: Arc<Telemetry>,
    replicas: Arc<Replicas>,
    /// How long a window is kept after it began; `None` keeps everything.
    keep: Option<Duration>,
}

impl Retention {
    pub fn new(
        store: Store,
        telemetry: Arc<Telemetry>,
        replicas: Arc<Replicas>,
        keep: Option<Duration>,
    ) -> Self {
        Self {
            store,
            telemetry,
            replicas,
            keep,
        }
    }

    /// Deletes, for every host, the windows that began before `before_ms` (each host's newest
    /// window excepted). A host whose sweep fails is logged and skipped; the next sweep
    /// retries it.
    pub async fn sweep(&self, before_ms: i64) -> Result<PurgedRollups, StoreError> {
        let mut total = PurgedRollups::default();
        for host in self.store.rollup_host_ids().await? {
            match self.store.purge_host_rollups(&host, before_ms, BATCH).await {
                Ok(p) => {
                    total.windows += p.windows;
                    total.claims += p.claims;
                    total.legacy_rows += p.legacy_rows;
                }
                Err(e) => tracing::warn!(%host, error = %e, "cannot purge old rollups"),
            }
        }
        self.telemetry.rollups_purged.inc_by(total.windows);
        Ok(total)
    }

    /// Sweeps every `every` while this replica holds the retention lease (taken when its last
    /// holder has not renewed it for two periods), until `stop` changes. Without a retention
    /// age it does nothing.
    pub async fn run(&self, every: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        let Some(keep) = self.keep else { return };
        let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        let ttl_ms = i64::try_from(every.as_millis().saturating_mul(2)).unwrap_or(i64::MAX);
        loop {
            let now = now_ms();
            match self
                .store
                .try_lease(RETENTION_LEASE, self.replicas.id(), now, ttl_ms)
                .await
            {
                Ok(true) => match self.sweep(now.saturating_sub(keep_ms)).await {
                    Ok(p) if p.windows + p.legacy_rows > 0 => tracing::info!(
                        windows = p.windows,
                        claims = p.claims,
                        legacy_rows = p.legacy_rows,
                        "rollups older than the retention age deleted"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot list hosts to purge rollups"),
                },
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot take the retention lease"),
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
        }
    }
}
