//! The periodic work of a replica and how replicas wake each other. Every replica pushes
//! policies and sends requests to the streams it holds; the holder of the `ticks` lease (a row
//! in `leases`, `store/fanout.rs`) alone judges rollouts and expires requests. A replica that
//! records work for a stream held elsewhere announces it (`pg_notify('sco_fleet', ...)`);
//! [`Ticks::run_wake_listener`] (PostgreSQL `LISTEN`) wakes the ticks or the revocation
//! watcher at once, and the polls remain the safety net. Each tick also renews this
//! replica's entry in the registry of live replicas ([`Replicas`]).

use std::sync::Arc;

use tokio::sync::Notify;

use super::models::Models;
use super::policy::Policies;
use super::remediation::Remediation;
use super::replicas::Replicas;
use crate::domain::now_ms;
use crate::store::{Store, Wake};

/// The lease whose holder judges rollouts and expires requests.
const TICKS_LEASE: &str = "ticks";

pub struct Ticks {
    store: Store,
    /// This process among the replicas (its id is the holder name of leases).
    replicas: Arc<Replicas>,
    policies: Arc<Policies>,
    models: Arc<Models>,
    remediation: Arc<Remediation>,
    /// Another replica asked for the ticks (a request, a decision, a rollout) now.
    wake_ticks: Notify,
    /// Another replica revoked a host: wakes the enrollment service's revocation watcher.
    wake_revocations: Arc<Notify>,
    /// Whether this replica held the ticks lease at its last tick (a change is logged).
    leading: std::sync::atomic::AtomicBool,
}

impl Ticks {
    pub fn new(
        store: Store,
        replicas: Arc<Replicas>,
        policies: Arc<Policies>,
        models: Arc<Models>,
        remediation: Arc<Remediation>,
        wake_revocations: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            replicas,
            policies,
            models,
            remediation,
            wake_ticks: Notify::new(),
            wake_revocations,
            leading: std::sync::atomic::AtomicBool::new(false),
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
            if let Err(e) = self.replicas.renew().await {
                tracing::warn!(error = %e, "cannot renew this replica's registry entry");
            }
            // judging rollouts and expiring requests is fleet-wide work: one replica does it,
            // the holder of the lease (taken over when a holder stops renewing it)
            let ttl = self.replicas.lease_ttl().as_millis().min(i64::MAX as u128) as i64;
            let leader = match self
                .store
                .try_lease(TICKS_LEASE, self.replicas.id(), now_ms(), ttl)
                .await
            {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take the ticks lease");
                    false
                }
            };
            let was = self
                .leading
                .swap(leader, std::sync::atomic::Ordering::AcqRel);
            if leader != was {
                let replica = self.replicas.id();
                if leader {
                    tracing::info!(%replica, "this replica holds the ticks lease");
                } else {
                    tracing::info!(%replica, "this replica no longer holds the ticks lease");
                }
            }
            if leader {
                if let Err(e) = self.policies.advance_rollouts().await {
                    tracing::warn!(error = %e, "cannot advance rollouts");
                }
                if let Err(e) = self.models.advance_rollouts().await {
                    tracing::warn!(error = %e, "cannot advance model rollouts");
                }
                if let Err(e) = self.remediation.expire_remediation().await {
                    tracing::warn!(error = %e, "cannot expire remediation requests");
                }
            }
            if let Err(e) = self.policies.sync_policies().await {
                tracing::warn!(error = %e, "cannot push policies");
            }
            if let Err(e) = self.models.sync_models().await {
                tracing::warn!(error = %e, "cannot offer models");
            }
            if let Err(e) = self.remediation.tick_remediation().await {
                tracing::warn!(error = %e, "cannot dispatch remediation requests");
            }
        }
    }

    /// Gives up this replica's leases on fleet-wide work and leaves the registry of replicas
    /// (at shutdown).
    pub async fn release_leases(&self) {
        self.replicas.leave().await;
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
