//! The command line. Every value is checked here and a bad one is named
//! with the flag it came from.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::Config;

/// Many simulated agents against one control plane, each with its own client
/// certificate and mTLS stream, speaking the agent protocol; reports ack
/// latency, throughput, errors and reconnects, and checks the database.
#[derive(Debug, Parser)]
#[command(name = "sco-loadgen", version)]
pub struct Cli {
    /// The control plane's agent (gRPC) address, host:port; several, comma-separated, are the
    /// agents' endpoint list (tried in turn, as the agent's `server.endpoints`).
    #[arg(long, env = "SCO_LOADGEN_TARGET")]
    pub target: String,
    /// Name every server certificate must carry, the replicas a refusal names included
    /// (default: the host of each endpoint).
    #[arg(long)]
    pub server_name: Option<String>,
    /// The control plane's PKI directory: its ca.pem and ca.key sign the
    /// simulated agents' certificates (instead of --ca-cert/--ca-key).
    #[arg(long)]
    pub pki_dir: Option<PathBuf>,
    /// The fleet CA certificate (PEM).
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// The fleet CA private key (PEM).
    #[arg(long)]
    pub ca_key: Option<PathBuf>,
    /// Number of simulated agents (the last step of a ramp).
    #[arg(long, default_value_t = 100)]
    pub agents: usize,
    /// Ramp: start with this many agents and grow by --ramp-factor each
    /// --step-secs until --agents.
    #[arg(long)]
    pub ramp_start: Option<usize>,
    #[arg(long, default_value_t = 2.0)]
    pub ramp_factor: f64,
    /// Time budget of each ramp step (starting its new agents included).
    #[arg(long, default_value_t = 60)]
    pub step_secs: u64,
    /// Length of a run without a ramp.
    #[arg(long, default_value_t = 60)]
    pub duration_secs: u64,
    /// New agents started per second.
    #[arg(long, default_value_t = 200.0)]
    pub connect_rate: f64,
    /// Anomaly events opened per agent and hour (each is opened, updated and
    /// closed: three durable messages).
    #[arg(long, default_value_t = 6.0)]
    pub events_per_hour: f64,
    /// An alarm storm: this many seconds after the run started, every agent without an
    /// open event opens one (at a random moment within --event-storm-secs), as a fleet does
    /// when something they all depend on fails.
    #[arg(long)]
    pub event_storm_at: Option<u64>,
    /// The span over which the storm's events are opened.
    #[arg(long, default_value_t = 2)]
    pub event_storm_secs: u64,
    /// Rollup window, as the agent's `rollup_secs`.
    #[arg(long, default_value_t = 10)]
    pub rollup_secs: u64,
    /// Span over which agents spread the sending of a finished rollup, as the agent's
    /// `server.spread_secs` (each at its own offset, at most one window; 0: all at once).
    #[arg(long, default_value_t = 10)]
    pub spread_secs: u64,
    /// Collection interval the agent reports (and the sample count per window).
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u32,
    /// Connect over QUIC to --target (the control plane's `quic_listen`; its UDP port),
    /// as agents whose endpoint is `quic://host:port`; several hundred agents share a socket.
    #[arg(long)]
    pub quic: bool,
    /// Metrics per rollup (up to 85).
    #[arg(long, default_value_t = 60)]
    pub metrics: usize,
    #[arg(long, default_value_t = 5)]
    pub heartbeat_secs: u64,
    /// A stream that hears nothing for this long is declared dead.
    #[arg(long, default_value_t = 20)]
    pub dead_after_secs: u64,
    #[arg(long, default_value_t = 500)]
    pub backoff_initial_ms: u64,
    #[arg(long, default_value_t = 30_000)]
    pub backoff_max_ms: u64,
    /// How long to wait at the end for every outbox to be acknowledged.
    #[arg(long, default_value_t = 120)]
    pub drain_secs: u64,
    /// The control plane's database (sqlite://PATH or postgres://...), for
    /// the final check: stored == acked, no duplicates, no gaps.
    #[arg(long, env = "SCO_LOADGEN_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The control plane's process id: its CPU and RSS go in the report.
    #[arg(long)]
    pub control_plane_pid: Option<u32>,
    #[arg(long, default_value_t = 5)]
    pub progress_secs: u64,
    /// Agent ids are PREFIX-RUN-NNNNNN (RUN: random per run, so runs never
    /// share ids and the check sees only this run's rows).
    #[arg(long, default_value = "lg")]
    pub id_prefix: String,
    /// Label of every simulated agent (repeatable), KEY=VALUE.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Stop the ramp after a step whose ack p99 exceeds this.
    #[arg(long)]
    pub stop_p99_ms: Option<f64>,
    /// Print the report as JSON on standard output.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("--{flag}: {message}")]
pub struct CliError {
    pub flag: &'static str,
    pub message: String,
}

fn bad(flag: &'static str, message: impl Into<String>) -> CliError {
    CliError {
        flag,
        message: message.into(),
    }
}

fn valid_id_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
}

impl Cli {
    pub fn config(&self) -> Result<Config, CliError> {
        let mut targets = Vec::new();
        for t in self.target.split(',').map(str::trim) {
            let not = || bad("target", format!("{t:?} is not host:port"));
            let (host, port) = t.rsplit_once(':').ok_or_else(not)?;
            if host.is_empty() || host.contains('/') || port.parse::<u16>().is_err() {
                return Err(not());
            }
            targets.push(t.to_string());
        }
        let (ca_cert, ca_key) = match (&self.pki_dir, &self.ca_cert, &self.ca_key) {
            (Some(dir), None, None) => (dir.join("ca.pem"), dir.join("ca.key")),
            (None, Some(c), Some(k)) => (c.clone(), k.clone()),
            (Some(_), _, _) => {
                return Err(bad("pki-dir", "give either --pki-dir or --ca-cert with --ca-key"))
            }
            _ => {
                return Err(bad(
                    "ca-key",
                    "the simulated agents' certificates need the fleet CA: --pki-dir, or --ca-cert and --ca-key",
                ))
            }
        };
        if !(1..=100_000).contains(&self.agents) {
            return Err(bad(
                "agents",
                format!("{} is outside 1..=100000", self.agents),
            ));
        }
        if let Some(s) = self.ramp_start {
            if s == 0 || s > self.agents {
                return Err(bad("ramp-start", format!("{s} is outside 1..=--agents")));
            }
        }
        if !(self.ramp_factor > 1.0 && self.ramp_factor <= 100.0) {
            return Err(bad(
                "ramp-factor",
                format!("{} is not in (1, 100]", self.ramp_factor),
            ));
        }
        let positive = |flag: &'static str, v: u64| {
            if v == 0 {
                Err(bad(flag, "must be greater than 0"))
            } else {
                Ok(Duration::from_secs(v))
            }
        };
        if !(self.connect_rate > 0.0 && self.connect_rate <= 100_000.0) {
            return Err(bad(
                "connect-rate",
                format!("{} is not in (0, 100000]", self.connect_rate),
            ));
        }
        if !(0.0..=3600.0).contains(&self.events_per_hour) {
            return Err(bad(
                "events-per-hour",
                format!("{} is outside 0..=3600", self.events_per_hour),
            ));
        }
        if self.event_storm_secs == 0 {
            return Err(bad("event-storm-secs", "must be at least 1"));
        }
        if !(1..=1000).contains(&self.metrics) {
            return Err(bad(
                "metrics",
                format!("{} is outside 1..=1000", self.metrics),
            ));
        }
        if self.interval_ms == 0 || u64::from(self.interval_ms) > self.rollup_secs * 1000 {
            return Err(bad("interval-ms", "must be > 0 and at most --rollup-secs"));
        }
        if self.dead_after_secs <= self.heartbeat_secs {
            return Err(bad(
                "dead-after-secs",
                "must be greater than --heartbeat-secs",
            ));
        }
        if self.backoff_initial_ms == 0 || self.backoff_max_ms < self.backoff_initial_ms {
            return Err(bad(
                "backoff-max-ms",
                "needs 0 < --backoff-initial-ms <= --backoff-max-ms",
            ));
        }
        if !valid_id_part(&self.id_prefix) {
            return Err(bad(
                "id-prefix",
                format!("{:?} is not 1 to 32 of [A-Za-z0-9.-]", self.id_prefix),
            ));
        }
        let mut labels = Vec::new();
        for l in &self.labels {
            let (k, v) = l
                .split_once('=')
                .ok_or_else(|| bad("label", format!("{l:?} is not KEY=VALUE")))?;
            if k.is_empty() || k.len() > 63 || v.len() > 256 {
                return Err(bad(
                    "label",
                    format!("{l:?}: key 1 to 63 bytes, value at most 256"),
                ));
            }
            labels.push((k.to_string(), v.to_string()));
        }
        if labels.is_empty() {
            labels.push(("env".into(), "loadgen".into()));
        }
        let run: u32 = rand::random::<u32>() & 0xff_ffff;
        Ok(Config {
            target: self.target.clone(),
            targets,
            quic: self.quic,
            server_name: self.server_name.clone(),
            ca_cert,
            ca_key,
            agents: self.agents,
            ramp_start: self.ramp_start,
            ramp_factor: self.ramp_factor,
            step: positive("step-secs", self.step_secs)?,
            duration: positive("duration-secs", self.duration_secs)?,
            connect_rate: self.connect_rate,
            events_per_hour: self.events_per_hour,
            event_storm: self.event_storm_at.map(|at| {
                (
                    Duration::from_secs(at),
                    Duration::from_secs(self.event_storm_secs),
                )
            }),
            window: positive("rollup-secs", self.rollup_secs)?,
            spread: Duration::from_secs(self.spread_secs.min(self.rollup_secs)),
            interval_ms: self.interval_ms,
            heartbeat: positive("heartbeat-secs", self.heartbeat_secs)?,
            dead_after: positive("dead-after-secs", self.dead_after_secs)?,
            backoff_initial: Duration::from_millis(self.backoff_initial_ms),
            backoff_max: Duration::from_millis(self.backoff_max_ms),
            metrics: self.metrics,
            drain: Duration::from_secs(self.drain_secs),
            database_url: self.database_url.clone(),
            control_plane_pid: self.control_plane_pid,
            progress: positive("progress-secs", self.progress_secs)?,
            id_prefix: format!("{}-{run:06x}-", self.id_prefix),
            labels,
            stop_p99_ms: self.stop_p99_ms,
            cert_hours: 24,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, CliError> {
        let mut all = vec![
            "sco-loadgen",
            "--target",
            "127.0.0.1:7443",
            "--pki-dir",
            "/tmp/pki",
        ];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("parses").config()
    }

    #[test]
    fn bad_values_name_their_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["--agents", "0"], "--agents"),
            (&["--ramp-start", "500", "--agents", "100"], "--ramp-start"),
            (&["--ramp-factor", "1"], "--ramp-factor"),
            (&["--heartbeat-secs", "20"], "--dead-after-secs"),
            (&["--id-prefix", "a b"], "--id-prefix"),
            (&["--label", "novalue"], "--label"),
            (&["--connect-rate", "0"], "--connect-rate"),
            (&["--step-secs", "0"], "--step-secs"),
        ];
        for (args, flag) in cases {
            let e = parse(args).expect_err("refused").to_string();
            assert!(e.starts_with(flag), "{args:?}: {e}");
        }
        let e = Cli::try_parse_from(["sco-loadgen", "--target", "nowhere", "--pki-dir", "x"])
            .expect("parses")
            .config()
            .expect_err("refused");
        assert_eq!(e.flag, "target");
        for target in ["a:1,", "a:1,b", "https://a:1"] {
            let e = Cli::try_parse_from(["sco-loadgen", "--target", target, "--pki-dir", "x"])
                .expect("parses")
                .config()
                .expect_err("refused");
            assert_eq!(e.flag, "target", "{target}");
        }
        let c = Cli::try_parse_from(["sco-loadgen", "--target", "a:1, [::1]:2", "--pki-dir", "x"])
            .expect("parses")
            .config()
            .expect("valid");
        assert_eq!(c.targets, ["a:1", "[::1]:2"]);
    }

    #[test]
    fn defaults_make_a_valid_config() {
        let c = parse(&[]).expect("valid");
        assert_eq!(c.server_name, None);
        assert_eq!(c.targets, ["127.0.0.1:7443"]);
        assert_eq!(c.ca_key, PathBuf::from("/tmp/pki/ca.key"));
        assert!(c.id_prefix.starts_with("lg-") && c.id_prefix.len() == 10);
        assert_eq!(c.labels, [("env".to_string(), "loadgen".to_string())]);
    }
}
