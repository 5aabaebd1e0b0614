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
//! [`process`], their logs and their stop signal, and [`quic`] (feature `quic`), the QUIC
//! stream the agent's gRPC session runs over when its endpoint is `quic://host:port`, and
//! [`spread`], when each host sends a finished rollup, so that a fleet's do not all arrive at once,
//! and [`codec`], the gRPC codec with the small buffers thousands of streams can afford.

pub mod codec;
pub mod config_env;
pub mod process;
#[cfg(feature = "quic")]
pub mod quic;
pub mod spread;
pub mod systemd;

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("sco.v1");
}

/// The gRPC metadata key of a `RESOURCE_EXHAUSTED` refusal of `Connect` by a replica at its
/// stream limit: the `host:port` of live replicas with room, comma-separated, the emptiest
/// first. The agent connects to the first it can use at once, with the same mTLS checks as
/// any endpoint of its own list.
pub const REDIRECT_METADATA: &str = "sco-redirect";
