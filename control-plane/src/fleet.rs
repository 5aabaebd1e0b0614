//! The fleet domain: hosts, their connections and the data they send, enrollment, policies,
//! remediation, feedback, the audit log and the periodic work, each its own service over its
//! own part of the store. [`Fleet`] bundles them, built once; the services that deliver to
//! agents share the one registry of live streams ([`Streams`]).
//!
//! This module knows nothing of gRPC, HTTP or SQL. The gRPC edge converts
//! protobuf into these types; the store persists them.

use std::sync::Arc;
use std::time::Duration;

mod audit;
mod enroll;
mod feedback;
mod hosts;
mod ingest;
mod models;
mod policy;
mod remediation;
mod replicas;
mod retention;
mod streams;
mod ticks;

pub use crate::error::ServiceError;
pub use audit::Audit;
pub use enroll::{EnrollError, Enrollment, Issued};
pub use feedback::{FeedbackRequest, Verdicts, MAX_NOTE_CHARS};
pub use hosts::{FleetSnapshot, HostDetail, Hosts};
pub use ingest::HEARTBEAT_FLUSH_EVERY;
pub use models::{ModelOffer, ModelUpload, Models, BUILT_IN};
pub use policy::Policies;
pub use remediation::{DecideError, Remediation, TriggerError};
pub use replicas::{Crowded, Full, ReplicaOptions, Replicas, StreamSlot};
pub use retention::Retention;
pub use streams::{Downlink, StreamHandle, Streams};
pub use ticks::Ticks;

// The records the services take and give, for the edges (gRPC, HTTP) that name them here.
pub use crate::domain::feedback::{Feedback, FeedbackQuery};
pub use crate::domain::policy::{
    HostPolicyState, PolicyHostStatus, PolicyRevision, PolicyRolloutStatus, PolicyStatusIn,
    Rollout, RolloutRequest, RolloutState,
};
pub use crate::domain::remediation::{
    ActionQuery, ActionRecord, ActionState, Approval, AuditEntry, AuditQuery, Decision,
    PendingCommand, ProposalIn, ReportIn,
};
pub use crate::domain::{
    now_ms, valid_agent_id, Anomaly, AnomalyChange, AnomalyQuery, ChangeKind, Contributor,
    DetectorStatus, EnrollmentToken, Host, HostInfo, HostLatestValue, Ingested, LatestValue,
    MetricRow, OpenAnomalies, ProcessRow, RollupBatch, RollupPoint, RollupQuery, Series, Severity,
    TokenUse,
};

/// Bounds on enrollment tokens.
pub mod enroll_limits {
    pub const MAX_TOKEN_TTL_SECS: i64 = 30 * 86_400;
    pub const MAX_TOKEN_USES: i64 = 10_000;
}

use crate::pki::{Ca, PolicySigner};
use crate::store::Store;
use crate::telemetry::Telemetry;

/// The control plane's services, built together so that those which work together share
/// what they share (the live streams, the audit log, the policies), and nothing else.
pub struct Fleet {
    /// Hosts and their streams: hello and goodbye, heartbeats, ingest, and their reads.
    pub hosts: Arc<Hosts>,
    /// Enrollment tokens, certificates, revocation.
    pub enrollment: Arc<Enrollment>,
    /// Policy revisions, rollouts, delivery and status reports.
    pub policies: Arc<Policies>,
    /// The model registry, model rollouts, delivery and status reports.
    pub models: Arc<Models>,
    /// Remediation requests, decisions, dispatch with fleet leases, reports, expiry.
    pub remediation: Arc<Remediation>,
    /// Verdicts on anomaly events and the policies they generate.
    pub verdicts: Arc<Verdicts>,
    /// The audit log.
    pub audit: Arc<Audit>,
    /// The periodic work, its lease and the wake-ups from other replicas.
    pub ticks: Arc<Ticks>,
    /// This replica among the others: its id, the streams it admits, its registry entry.
    pub replicas: Arc<Replicas>,
    /// The hourly deletion of rollups older than the retention age, once per fleet.
    pub retention: Arc<Retention>,
}

impl Fleet {
    /// The services with no CA, no policy signer, no group commit and the default proposal
    /// lifetime; [`Fleet::builder`] chooses.
    pub fn new(store: Store, telemetry: Arc<Telemetry>) -> Self {
        Self::builder(store, telemetry).build()
    }

    pub fn builder(store: Store, telemetry: Arc<Telemetry>) -> FleetBuilder {
        FleetBuilder {
            store,
            telemetry,
            ca: None,
            policy_signer: None,
            proposal_ttl: Duration::from_secs(15 * 60),
            group_commit: false,
            replica: ReplicaOptions {
                lease_ttl: Duration::from_secs(5),
                ..ReplicaOptions::default()
            },
            rollup_retention: None,
        }
    }
}

/// The options of a [`Fleet`], before its services are built.
pub struct FleetBuilder {
    store: Store,
    telemetry: Arc<Telemetry>,
    ca: Option<(Ca, Duration)>,
    policy_signer: Option<PolicySigner>,
    proposal_ttl: Duration,
    group_commit: bool,
    replica: ReplicaOptions,
    rollup_retention: Option<Duration>,
}

impl FleetBuilder {
    /// Stores rollups of all streams together, a group per transaction, by writer tasks
    /// started by [`FleetBuilder::build`] (so it needs a Tokio runtime).
    pub fn with_group_commit(mut self) -> Self {
        self.group_commit = true;
        self
    }

    /// Lets this fleet sign policy revisions.
    pub fn with_policy_signer(mut self, signer: PolicySigner) -> Self {
        self.policy_signer = Some(signer);
        self
    }

    /// How long proposals wait for an approval or a lease before expiring.
    pub fn with_proposal_ttl(mut self, ttl: Duration) -> Self {
        self.proposal_ttl = ttl;
        self
    }

    /// Where agents reach this replica, its stream limit and its lease lifetime.
    pub fn with_replica(mut self, options: ReplicaOptions) -> Self {
        self.replica = options;
        self
    }

    /// Deletes stored rollups this long after their window began (none: keeps them all).
    pub fn with_rollup_retention(mut self, keep: Option<Duration>) -> Self {
        self.rollup_retention = keep;
        self
    }

    /// Lets this fleet issue certificates (enrollment, renewal).
    pub fn with_ca(mut self, ca: Ca, cert_ttl: Duration) -> Self {
        self.ca = Some((ca, cert_ttl));
        self
    }

    pub fn build(self) -> Fleet {
        let Self {
            store,
            telemetry,
            ca,
            policy_signer,
            proposal_ttl,
            group_commit,
            replica,
            rollup_retention,
        } = self;
        let replicas = Arc::new(Replicas::new(store.clone(), telemetry.clone(), replica));
        let streams = Arc::new(Streams::new(telemetry.clone()));
        let audit = Arc::new(Audit::new(store.clone()));
        let wake_revocations = Arc::new(tokio::sync::Notify::new());
        let policy_key = policy_signer
            .as_ref()
            .map_or(String::new(), |s| s.public_hex.clone());
        let hosts = Arc::new(Hosts::new(
            store.clone(),
            telemetry.clone(),
            streams.clone(),
            group_commit,
        ));
        let enrollment = Arc::new(Enrollment::new(
            store.clone(),
            streams.clone(),
            audit.clone(),
            ca,
            policy_key,
            wake_revocations.clone(),
        ));
        let models = Arc::new(Models::new(
            store.clone(),
            telemetry.clone(),
            streams.clone(),
            audit.clone(),
            policy_signer.clone(),
        ));
        let policies = Arc::new(Policies::new(
            store.clone(),
            telemetry.clone(),
            streams.clone(),
            audit.clone(),
            policy_signer,
            group_commit,
        ));
        let retention = Arc::new(Retention::new(
            store.clone(),
            telemetry.clone(),
            replicas.clone(),
            rollup_retention,
        ));
        let remediation = Arc::new(Remediation::new(
            store.clone(),
            telemetry,
            streams,
            audit.clone(),
            proposal_ttl,
        ));
        let verdicts = Arc::new(Verdicts::new(
            store.clone(),
            audit.clone(),
            policies.clone(),
        ));
        let ticks = Arc::new(Ticks::new(
            store,
            replicas.clone(),
            policies.clone(),
            models.clone(),
            remediation.clone(),
            wake_revocations,
        ));
        Fleet {
            hosts,
            enrollment,
            policies,
            models,
            remediation,
            verdicts,
            audit,
            ticks,
            replicas,
            retention,
        }
    }
}
