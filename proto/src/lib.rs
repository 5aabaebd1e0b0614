//! Wire protocol between the SmartCloudOps agent and the control plane.
//!
//! One bidirectional gRPC stream per agent (`AgentService.Connect`). The
//! generated types live in [`v1`]; both sides convert them to their own
//! domain types at the edge and never let them travel further in.
//!
//! Helpers live here because this is the one crate both binaries depend on:
//! [`systemd`], the notification protocol of `Type=notify` units (readiness, watchdog), and
//! [`config_env`], every config key settable from the environment
//! (`SCO_AGENT__<SECTION>__<KEY>`, `SCO_CP__<SECTION>__<KEY>`) by one rule for both, and
//! [`process`], their logs and their stop signal.

pub mod config_env;
pub mod process;
pub mod systemd;

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("sco.v1");
}
