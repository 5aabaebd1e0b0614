//! Wire protocol between the SmartCloudOps agent and the control plane.
//!
//! One bidirectional gRPC stream per agent (`AgentService.Connect`). The
//! generated types live in [`v1`]; both sides convert them to their own
//! domain types at the edge and never let them travel further in.
//!
//! [`systemd`] is the notification protocol of `Type=notify` units (readiness, watchdog),
//! here because it is the one crate both binaries depend on.

pub mod systemd;

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("sco.v1");
}
