//! The periodic work of a replica and how replicas wake each other. Every replica pushes
//! policies and sends requests to the streams it holds; the holder of the `ticks` lease (a row
//! in `leases`, `store/fanout.rs`) alone judges rollouts and expires requests. A replica that
//! records work for a stream held elsewhere announces it (`pg_notify('sco_fleet', ...)`);
//! [`Ticks::run_wake_listener`] (PostgreSQL `LISTEN`) wakes the ticks or the revocation
//! watcher at once, and the polls remain the safety net.

use std::sync::Arc;

use tokio::sync::Notify;

use super::policy::Policies;
use super::remediation::Remediation;
use crate::domain::{new_id, now_ms};
use crate::store::{Store, Wake};

pub struct Ticks {
    store: Store,
    policies: Arc<Policies>,
    remediation: Arc<Remediation>,
    /// This process among the replicas (the holder name of leases).
    replica_id: String,
    /// Another replica asked for the ticks (a request, a decision, a rollout) now.
    wake_ticks: Notify,
    /// Another replica revoked a host: wakes the enrollment service's revocation watcher.
    wake_revocations: Arc<Notify>,
}

impl Ticks {
    pub fn new(
        store: Store,
        policies: Arc<Policies>,
        remediation: Arc<Remediation>,
        wake_revocations: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            policies,
            remediation,
            replica_id: new_id("replica"),
            wake_ticks: Notify::new(),
            wake_revocations,
        }
    }

    /// The periodic work of a replica: rollouts, policy delivery, expiry and
    /// leases of remediation requests. Errors are logged and retried at the
    /// next tick.
    pub async fn run_ticks(
        &self,
        every: std::time::Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = self.wake_ticks.notified() => {}
                _ = stop.changed() => return,
            }
            // judging rollouts and expiring requests is fleet-wide work: one replica does it,
            // the holder of the lease (taken over when a holder stops renewing it)
            let ttl = (every.as_millis() as i64).saturating_mul(3).max(5_000);
            let leader = match self
                .store
                .try_lease("ticks", &self.replica_id, now_ms(), ttl)
                .await
            {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take the ticks lease");
                    false
                }
            };
            if leader {
                if let Err(e) = self.policies.advance_rollouts().await {
                    tracing::warn!(error = %e, "cannot advance rollouts");
                }
                if let Err(e) = self.remediation.expire_remediation().await {
                    tracing::warn!(error = %e, "cannot expire remediation requests");
                }
            }
            if let Err(e) = self.policies.sync_policies().await {
                tracing::warn!(error = %e, "cannot push policies");
            }
            if let Err(e) = self.remediation.tick_remediation().await {
                tracing::warn!(error = %e, "cannot dispatch remediation requests");
            }
        }
    }

    /// Gives up this replica's leases on fleet-wide work (at shutdown).
    pub async fn release_leases(&self) {
        if let Err(e) = self.store.release_leases(&self.replica_id).await {
            tracing::warn!(error = %e, "cannot give up the leases; they expire by themselves");
        }
    }

    /// Listens for the other replicas' wake-ups (PostgreSQL `LISTEN`) until `stop`; on SQLite
    /// there are none. A lost connection is listened on again after a second; the periodic
    /// polls cover the gap.
    pub async fn run_wake_listener(
        &self,
        url: String,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            let mut listener = match self.store.listen(&url).await {
                Ok(Some(l)) => l,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for other replicas; polling only");
                    tokio::select! {
                        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                        _ = stop.changed() => return,
                    }
                }
            };
            loop {
                let next = tokio::select! {
                    n = listener.recv() => n,
                    _ = stop.changed() => return,
                };
                match next {
                    Ok(Some(Wake::Ticks)) => self.wake_ticks.notify_one(),
                    Ok(Some(Wake::Revocations)) => self.wake_revocations.notify_one(),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the listening connection; listening again");
                        break;
                    }
                }
            }
        }
    }
}
