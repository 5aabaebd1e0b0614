//! `sco-loadgen`: many simulated agents in one process, each with its own
//! client certificate and its own mTLS stream, speaking exactly what
//! `sco-agent` speaks, to measure what one control plane holds.
//!
//! - [`cli`]: the command line and its checks, turned into a [`Config`].
//! - [`identity`]: client certificates issued in bulk by the fleet CA.
//! - [`speak`]: the agent's messages (hello, heartbeat, rollup, anomaly event,
//!   policy status, action report), shaped as the agent shapes them.
//! - [`outbox`]: per-agent sequence numbers, kept until acked, resent in order.
//! - [`agent`]: one simulated agent: its producer and its uplink (reconnect
//!   with backoff and jitter, dead-connection detection, refusals followed to
//!   the replica they name).
//! - [`endpoint`]: the endpoints of `--target`, and what a refusal by a full or
//!   overloaded control plane says (why, and the replicas with room).
//! - [`quic`]: the same uplink over QUIC (`--quic`), many agents per UDP socket.
//! - [`stats`]: counters, errors by kind and the ack latency histogram.
//! - [`procstat`]: CPU and RSS of a process from `/proc`.
//! - [`run`]: steps (ramp), progress lines, drain, and the report.
//! - [`check`]: the database check at the end (stored == acked, no
//!   duplicates, no gaps).
//! - [`report`]: the report, as text or JSON.

pub mod agent;
pub mod check;
pub mod cli;
pub mod endpoint;
pub mod identity;
pub mod outbox;
pub mod procstat;
pub mod quic;
pub mod report;
pub mod run;
pub mod speak;
pub mod stats;

use std::path::PathBuf;
use std::time::Duration;

pub use cli::Cli;
pub use report::Report;
pub use run::{run, RunError};

/// A validated run description.
#[derive(Debug, Clone)]
pub struct Config {
    /// gRPC address of the control plane, `host:port`, as given (a comma-separated list:
    /// the agents' endpoint list).
    pub target: String,
    /// The endpoints of `target`, in order, each `host:port`.
    pub targets: Vec<String>,
    /// Agents connect over QUIC to `target` (the control plane's `quic_listen`).
    pub quic: bool,
    /// `--server-name`: the name every server certificate must carry; `None`: the host of
    /// each endpoint.
    pub server_name: Option<String>,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub agents: usize,
    pub ramp_start: Option<usize>,
    pub ramp_factor: f64,
    pub step: Duration,
    pub duration: Duration,
    /// New agents started per second.
    pub connect_rate: f64,
    pub events_per_hour: f64,
    /// An alarm storm: when, after the run started, and over how long every agent opens an
    /// event.
    pub event_storm: Option<(Duration, Duration)>,
    pub window: Duration,
    /// Span of the agents' rollup send offsets (at most `window`).
    pub spread: Duration,
    pub interval_ms: u32,
    pub heartbeat: Duration,
    pub dead_after: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub metrics: usize,
    pub drain: Duration,
    pub database_url: Option<String>,
    pub control_plane_pid: Option<u32>,
    pub progress: Duration,
    pub id_prefix: String,
    pub labels: Vec<(String, String)>,
    pub stop_p99_ms: Option<f64>,
    pub cert_hours: i64,
}
