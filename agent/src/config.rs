//! Agent configuration: a TOML file, then environment overrides, then checks.
//!
//! Unknown keys are refused so a typo never silently falls back to a default. Every key can
//! also come from the environment as `SCO_AGENT__<SECTION>__<KEY>` (see
//! [`sco_proto::config_env`]); the older specific variables of [`env`] still work, and the
//! generic form wins when both set the same key.
//!
//! Long (about 750 lines besides tests) because it is the one place every agent key lives:
//! each section's struct with its documented defaults, and the checks that name a bad key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Environment variables that override the file, all in one place.
pub mod env {
    /// Any key: `SCO_AGENT__AGENT__INTERVAL_MS=500`, `SCO_AGENT__REMEDIATE__CLEAN_ROOTS='["/var/log"]'`.
    pub const PREFIX: &str = "SCO_AGENT__";
    pub const DATA_DIR: &str = "SCO_AGENT_DATA_DIR";
    pub const ENDPOINTS: &str = "SCO_AGENT_ENDPOINTS";
    pub const SERVER_NAME: &str = "SCO_AGENT_SERVER_NAME";
    pub const INTERVAL_MS: &str = "SCO_AGENT_INTERVAL_MS";
    pub const ROLLUP_SECS: &str = "SCO_AGENT_ROLLUP_SECS";
    pub const CA: &str = "SCO_AGENT_CA";
    pub const CERT: &str = "SCO_AGENT_CERT";
    pub const KEY: &str = "SCO_AGENT_KEY";
    pub const OUTBOX_MAX_BYTES: &str = "SCO_AGENT_OUTBOX_MAX_BYTES";
    /// The key each specific variable sets: it is ignored when a `SCO_AGENT__...` variable
    /// sets that key (or its section) too.
    pub const KEYS: [(&str, &str); 9] = [
        (DATA_DIR, "agent.data_dir"),
        (ENDPOINTS, "server.endpoints"),
        (SERVER_NAME, "server.server_name"),
        (INTERVAL_MS, "agent.interval_ms"),
        (ROLLUP_SECS, "agent.rollup_secs"),
        (CA, "server.ca"),
        (CERT, "server.cert"),
        (KEY, "server.key"),
        (OUTBOX_MAX_BYTES, "outbox.max_bytes"),
    ];
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub agent: AgentSection,
    pub server: ServerSection,
    #[serde(default)]
    pub outbox: OutboxSection,
    #[serde(default)]
    pub detect: DetectSection,
    #[serde(default)]
    pub remediate: RemediateSection,
    #[serde(default)]
    pub exporter: ExporterSection,
}

/// The local health and Prometheus endpoint (`GET /health`, `GET /metrics`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExporterSection {
    /// Off by default: the agent opens no port unless asked.
    pub enabled: bool,
    /// `IP:PORT` to listen on (an address, not a host name).
    pub listen: String,
    /// The endpoint has no authentication: a non-loopback `listen` is refused unless this
    /// says so.
    pub allow_remote: bool,
}

impl Default for ExporterSection {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "127.0.0.1:9101".into(),
            allow_remote: false,
        }
    }
}

impl ExporterSection {
    /// The address to listen on, checked.
    pub fn addr(&self) -> Result<std::net::SocketAddr, ConfigError> {
        let addr: std::net::SocketAddr =
            self.listen
                .trim()
                .parse()
                .map_err(|e| ConfigError::Invalid {
                    key: "exporter.listen",
                    reason: format!("{:?} is not IP:PORT ({e})", self.listen),
                })?;
        if !addr.ip().is_loopback() && !self.allow_remote {
            return Err(ConfigError::Invalid {
                key: "exporter.listen",
                reason: format!(
                    "{addr} is not a loopback address; the endpoint has no authentication, \
                     so set exporter.allow_remote = true to serve other hosts"
                ),
            });
        }
        Ok(addr)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectSection {
    pub enabled: bool,
    /// Model manifest; empty means the model built into the agent. The file
    /// is watched: a new model is validated before it replaces the current
    /// one, and a bad one is refused while the current one keeps running.
    pub model: Option<PathBuf>,
    /// Seconds of data the host's threshold is calibrated on before any alarm.
    pub warmup_secs: u64,
    /// Quantile of the host's own warm-up scores used as its threshold.
    pub threshold_quantile: f64,
    /// Above 1 alarms more, below 1 less.
    pub sensitivity: f64,
    /// An event opens only after this many seconds over the threshold.
    pub min_duration_secs: u64,
    /// An event closes after this many seconds back under the clear level.
    pub clear_secs: u64,
    /// After that, the event is held open this many seconds more, not alarming: if the same
    /// family is anomalous again meanwhile (for `min_duration_secs`), the same event goes on
    /// instead of a new one opening; if not, it closes, ending where it recovered. 0 closes
    /// at once. A flapping incident is one event, not one per flap.
    pub merge_secs: u64,
    /// An open event is updated at most this often.
    pub update_every_secs: u64,
    /// Metrics never scored, e.g. `["disk.used_bytes:/"]` or `["net.rx_drops_per_s:eth0"]`.
    pub ignore: Vec<String>,
    /// Seconds of raw samples before the onset sent with a new event.
    pub context_secs: u64,
    /// How often the model file is checked for a replacement.
    pub model_check_secs: u64,
}

impl Default for DetectSection {
    fn default() -> Self {
        Self {
            enabled: true,
            model: None,
            warmup_secs: 300,
            threshold_quantile: 0.995,
            sensitivity: 1.0,
            min_duration_secs: 2,
            clear_secs: 15,
            merge_secs: 120,
            update_every_secs: 30,
            ignore: Vec::new(),
            context_secs: 60,
            model_check_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSection {
    /// Where the outbox and local state live.
    pub data_dir: PathBuf,
    /// Collection interval in milliseconds.
    pub interval_ms: u64,
    /// Length of one rollup window in seconds.
    pub rollup_secs: u64,
    /// How often the top processes are sampled, in seconds.
    pub process_interval_secs: u64,
    /// How many processes to report by CPU and by memory.
    pub top_processes: usize,
    /// Labels sent to the control plane (used by policy selectors).
    pub labels: BTreeMap<String, String>,
    /// The host's procfs, like node_exporter's `--path.procfs`: metrics, the process table,
    /// culprits and the processes remediation looks up (`/host/proc` in a pod; tests point
    /// it at a fixture). Signals still go to pids, so remediation needs this procfs to be of
    /// the agent's own pid namespace (`hostPID` in a pod).
    pub proc_root: PathBuf,
    /// The host's sysfs (`--path.sysfs`): `<sys_root>/block` tells whole disks apart.
    pub sys_root: PathBuf,
    /// The host's root file system (`--path.rootfs`). Not `/`: disk space reads the host's
    /// mount table (`<proc_root>/1/mounts`), measures each mount under this directory and
    /// names it as the host does.
    pub root_fs: PathBuf,
}

impl AgentSection {
    /// Where the host's procfs, sysfs and root file system are seen.
    pub fn host_paths(&self) -> crate::collect::HostPaths {
        crate::collect::HostPaths {
            proc: self.proc_root.clone(),
            sys: self.sys_root.clone(),
            root: self.root_fs.clone(),
        }
    }
}

impl Default for AgentSection {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/sco-agent"),
            interval_ms: 1000,
            rollup_secs: 10,
            process_interval_secs: 10,
            top_processes: 5,
            labels: BTreeMap::new(),
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
            root_fs: PathBuf::from("/"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Control-plane gRPC endpoints, `host:port` or `https://host:port` (gRPC over TCP and
    /// TLS), or `quic://host:port` (the same session over QUIC, the control plane's
    /// `quic_listen`), tried in order on failover; a list may mix them.
    pub endpoints: Vec<String>,
    /// Name the server certificate must carry (defaults to the endpoint host).
    #[serde(default)]
    pub server_name: Option<String>,
    /// Fleet CA certificate (PEM).
    pub ca: PathBuf,
    /// This agent's client certificate (PEM).
    pub cert: PathBuf,
    /// This agent's private key (PEM).
    pub key: PathBuf,
    /// The fleet's ed25519 policy verifying key (64 hex characters), written
    /// by `sco-agent enroll`; defaults to `policy.pub` beside `ca`. Without
    /// it every policy is refused.
    #[serde(default)]
    pub policy_key: Option<PathBuf>,
    #[serde(default = "default_heartbeat_secs")]
    pub heartbeat_secs: u64,
    /// The connection is declared dead when nothing arrives for this long.
    #[serde(default = "default_dead_after_secs")]
    pub dead_after_secs: u64,
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Wait before trying again when the control plane refuses this agent
    /// (revoked): data keeps going to the outbox; re-enrolling is the fix.
    #[serde(default = "default_refused_retry_secs")]
    pub refused_retry_secs: u64,
    /// Every host's rollup windows end at the same instant; each host sends a finished one at
    /// its own fixed offset, up to this long after the window's end (and at most one window),
    /// so that a fleet's rollups reach the control plane spread over the span rather than all
    /// in the same second. Anything else (events, statuses) and a backlog go at once. 0: send
    /// each rollup the moment its window closes.
    #[serde(default = "default_spread_secs")]
    pub spread_secs: u64,
}

impl Config {
    /// The span over which the fleet's rollups are spread: `server.spread_secs`, at most one
    /// rollup window (a longer one would only delay each window more).
    pub fn spread_span_ms(&self) -> u64 {
        self.server
            .spread_secs
            .min(self.agent.rollup_secs)
            .saturating_mul(1000)
    }
}

impl ServerSection {
    /// Where the policy verifying key is read from.
    pub fn policy_key_path(&self) -> PathBuf {
        self.policy_key.clone().unwrap_or_else(|| {
            self.ca
                .parent()
                .unwrap_or_else(|| std::path::Path::new("."))
                .join("policy.pub")
        })
    }
}

fn default_heartbeat_secs() -> u64 {
    5
}
fn default_dead_after_secs() -> u64 {
    20
}
fn default_backoff_initial_ms() -> u64 {
    500
}
fn default_backoff_max_ms() -> u64 {
    30_000
}
fn default_refused_retry_secs() -> u64 {
    600
}
fn default_spread_secs() -> u64 {
    10
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxSection {
    /// Upper bound of unacknowledged data; the oldest messages are dropped
    /// (and counted) beyond it.
    pub max_bytes: u64,
    /// sled page cache. sled's own default is 1 GiB, far too much for an agent.
    pub cache_bytes: u64,
}

impl Default for OutboxSection {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            cache_bytes: 1024 * 1024,
        }
    }
}

/// Local remediation: what the agent may touch, whoever asks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RemediateSection {
    /// Service manager run by `restart_service` as `<systemctl> restart <unit>`.
    pub systemctl: PathBuf,
    /// Run by `journal_vacuum` as `<journalctl> --vacuum-size=<N>M`.
    pub journalctl: PathBuf,
    /// Directories `clean_paths` may delete in (symlinks resolved).
    pub clean_roots: Vec<PathBuf>,
    /// Directory `run_script` scripts must live in; it and the scripts must
    /// be owned by root and not writable by group or others.
    pub script_dir: PathBuf,
    /// Process names never signalled (besides pid 1, the agent, its parent
    /// and kernel threads, which are always protected).
    pub protected_processes: Vec<String>,
    /// `http://` or `https://` URL prefixes `notify` may post to; empty
    /// allows none.
    pub notify_urls: Vec<String>,
    /// PEM bundle of the CAs `https://` webhooks are verified against
    /// (Debian's system bundle by default).
    pub notify_ca_file: PathBuf,
    /// Environment added for commands; everything else but a fixed PATH and
    /// LANG is cleared.
    pub env: BTreeMap<String, String>,
    /// Commands (and webhooks) are killed (abandoned) after this long.
    pub command_timeout_secs: u64,
    /// Bytes of stdout and of stderr kept in a report.
    pub output_cap_bytes: usize,
    /// `kill_process` refuses when more processes than this match.
    pub max_processes: usize,
    /// Executed actions per rolling hour for the whole host.
    pub host_max_per_hour: u32,
    /// A rule's circuit breaker opens after this many failures in a row.
    pub breaker_failures: u32,
    /// Reports kept in the local history.
    pub history_max: usize,
    /// sled page cache of the remediation state.
    pub cache_bytes: u64,
}

impl Default for RemediateSection {
    fn default() -> Self {
        Self {
            systemctl: PathBuf::from("/usr/bin/systemctl"),
            journalctl: PathBuf::from("/usr/bin/journalctl"),
            clean_roots: vec![PathBuf::from("/var/log")],
            script_dir: PathBuf::from("/etc/sco-agent/scripts"),
            protected_processes: [
                "init",
                "systemd",
                "systemd-journald",
                "systemd-logind",
                "systemd-udevd",
                "systemd-networkd",
                "systemd-resolved",
                "sshd",
                "dbus-daemon",
                "dbus-broker",
                "sco-agent",
                "containerd",
                "dockerd",
                "kubelet",
                "agetty",
                "login",
            ]
            .map(String::from)
            .to_vec(),
            notify_urls: Vec::new(),
            notify_ca_file: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
            env: BTreeMap::new(),
            command_timeout_secs: 60,
            output_cap_bytes: 16 * 1024,
            max_processes: 16,
            host_max_per_hour: 30,
            breaker_failures: 3,
            history_max: 1000,
            cache_bytes: 512 * 1024,
        }
    }
}

impl RemediateSection {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        for (key, p) in [
            ("remediate.systemctl", &self.systemctl),
            ("remediate.journalctl", &self.journalctl),
            ("remediate.script_dir", &self.script_dir),
        ] {
            if !p.is_absolute() {
                return invalid(key, format!("{} is not an absolute path", p.display()));
            }
        }
        for r in &self.clean_roots {
            if !r.is_absolute() || r.parent().is_none() {
                return invalid(
                    "remediate.clean_roots",
                    format!("{} must be an absolute path other than /", r.display()),
                );
            }
        }
        for n in &self.protected_processes {
            if n.is_empty()
                || n.len() > 128
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"@._:-".contains(&b))
            {
                return invalid(
                    "remediate.protected_processes",
                    format!("{n:?} does not match ^[A-Za-z0-9@._:-]{{1,128}}$"),
                );
            }
        }
        for u in &self.notify_urls {
            // https prefixes are fine: webhooks are verified against
            // `notify_ca_file` (see remediate::webhook_client).
            let rest = u
                .strip_prefix("https://")
                .or_else(|| u.strip_prefix("http://"))
                .unwrap_or("");
            let host = rest.split('/').next().unwrap_or("");
            let bad_char = u.chars().any(|c| c.is_control() || c.is_whitespace());
            if host.is_empty() || host.starts_with(':') || u.contains('@') || bad_char {
                return invalid(
                    "remediate.notify_urls",
                    format!(
                        "{u:?} must be http://host[:port][/path] or https://host[:port][/path], \
                         without credentials or spaces"
                    ),
                );
            }
        }
        for k in self.env.keys() {
            let ok = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                && !k.starts_with("LD_")
                && k != "PATH";
            if !ok {
                return invalid(
                    "remediate.env",
                    format!("{k:?} must be [A-Z0-9_]+, not PATH and not LD_*"),
                );
            }
        }
        if !(1..=3600).contains(&self.command_timeout_secs) {
            return invalid(
                "remediate.command_timeout_secs",
                format!("{} is outside 1..=3600", self.command_timeout_secs),
            );
        }
        if !(1024..=1024 * 1024).contains(&self.output_cap_bytes) {
            return invalid(
                "remediate.output_cap_bytes",
                format!("{} is outside 1024..=1048576", self.output_cap_bytes),
            );
        }
        if !(1..=1000).contains(&self.max_processes) {
            return invalid(
                "remediate.max_processes",
                format!("{} is outside 1..=1000", self.max_processes),
            );
        }
        if self.host_max_per_hour == 0 {
            return invalid("remediate.host_max_per_hour", "must be at least 1".into());
        }
        if self.breaker_failures == 0 {
            return invalid("remediate.breaker_failures", "must be at least 1".into());
        }
        if self.history_max == 0 {
            return invalid("remediate.history_max", "must be at least 1".into());
        }
        Ok(())
    }
}

pub use sco_proto::config_env::ConfigError;

impl Config {
    /// Reads the file, applies environment overrides and validates the result.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config = Self::from_toml_and_env(&text, path, std::env::vars_os())?;
        config.validate()?;
        Ok(config)
    }

    /// The file's text (read from `path`) with the environment `vars` applied: first every
    /// `SCO_AGENT__...` variable (to the TOML document, so it is checked like the file), then
    /// the specific variables of [`env`], each unless a generic one set its key. Not validated.
    pub fn from_toml_and_env<K, V>(
        text: &str,
        path: &Path,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError>
    where
        K: Into<std::ffi::OsString>,
        V: Into<std::ffi::OsString>,
    {
        use sco_proto::config_env::{self, LoadError};
        let vars: Vec<(std::ffi::OsString, std::ffi::OsString)> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let layered = config_env::from_toml::<Self, _, _, _>(text, env::PREFIX, vars.clone())
            .map_err(|e| match e {
                LoadError::File(message) => ConfigError::Parse {
                    path: path.to_path_buf(),
                    message,
                },
                LoadError::Env(e) => ConfigError::EnvKey(e),
            })?;
        let (mut config, overrides) = (layered.value, layered.overrides);
        config.apply_env(|name| config_env::specific_var(&vars, &env::KEYS, &overrides, name))?;
        Ok(config)
    }

    /// The file alone: no environment, no checks (tests, `up`'s built-in agent).
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().replace('\n', " "))
    }

    /// Applies the specific variables of [`env`] (not the generic `SCO_AGENT__...` ones),
    /// reading them with `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn num(var: &'static str, value: String) -> Result<u64, ConfigError> {
            value
                .trim()
                .parse()
                .map_err(|e: std::num::ParseIntError| ConfigError::Env {
                    var,
                    value,
                    reason: e.to_string(),
                })
        }
        if let Some(v) = get(env::DATA_DIR) {
            self.agent.data_dir = v.into();
        }
        if let Some(v) = get(env::ENDPOINTS) {
            self.server.endpoints = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
        }
        if let Some(v) = get(env::SERVER_NAME) {
            self.server.server_name = Some(v);
        }
        if let Some(v) = get(env::INTERVAL_MS) {
            self.agent.interval_ms = num(env::INTERVAL_MS, v)?;
        }
        if let Some(v) = get(env::ROLLUP_SECS) {
            self.agent.rollup_secs = num(env::ROLLUP_SECS, v)?;
        }
        if let Some(v) = get(env::OUTBOX_MAX_BYTES) {
            self.outbox.max_bytes = num(env::OUTBOX_MAX_BYTES, v)?;
        }
        if let Some(v) = get(env::CA) {
            self.server.ca = v.into();
        }
        if let Some(v) = get(env::CERT) {
            self.server.cert = v.into();
        }
        if let Some(v) = get(env::KEY) {
            self.server.key = v.into();
        }
        Ok(())
    }

    /// Checks values a parser cannot: ranges, relations and files.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        let a = &self.agent;
        if !(100..=60_000).contains(&a.interval_ms) {
            return invalid(
                "agent.interval_ms",
                format!("{} is outside 100..=60000", a.interval_ms),
            );
        }
        if a.rollup_secs == 0 || a.rollup_secs * 1000 < a.interval_ms || a.rollup_secs > 3600 {
            return invalid(
                "agent.rollup_secs",
                format!(
                    "{} must be between one interval ({} ms) and 3600",
                    a.rollup_secs, a.interval_ms
                ),
            );
        }
        if a.process_interval_secs == 0 {
            return invalid("agent.process_interval_secs", "must be at least 1".into());
        }
        for (key, p) in [
            ("agent.proc_root", &a.proc_root),
            ("agent.sys_root", &a.sys_root),
            ("agent.root_fs", &a.root_fs),
        ] {
            if !p.is_absolute() {
                return invalid(key, format!("{} is not an absolute path", p.display()));
            }
        }
        if a.top_processes > 100 {
            return invalid(
                "agent.top_processes",
                format!("{} is more than 100", a.top_processes),
            );
        }
        for key in a.labels.keys() {
            if key.is_empty()
                || key.len() > 63
                || !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                return invalid(
                    "agent.labels",
                    format!("label key {key:?} is not [A-Za-z0-9-_./]{{1,63}}"),
                );
            }
        }
        let s = &self.server;
        if s.endpoints.is_empty() {
            return invalid("server.endpoints", "at least one endpoint is needed".into());
        }
        for e in &s.endpoints {
            endpoint_uri(e).map_err(|reason| ConfigError::Invalid {
                key: "server.endpoints",
                reason,
            })?;
        }
        for (key, path) in [
            ("server.ca", &s.ca),
            ("server.cert", &s.cert),
            ("server.key", &s.key),
        ] {
            if !path.is_file() {
                return invalid(key, format!("{} is not a readable file", path.display()));
            }
        }
        if s.heartbeat_secs == 0 || s.dead_after_secs <= s.heartbeat_secs {
            return invalid(
                "server.dead_after_secs",
                format!(
                    "{} must be greater than server.heartbeat_secs ({})",
                    s.dead_after_secs, s.heartbeat_secs
                ),
            );
        }
        if s.backoff_initial_ms == 0 || s.backoff_max_ms < s.backoff_initial_ms {
            return invalid(
                "server.backoff_max_ms",
                "backoff_initial_ms must be > 0 and <= backoff_max_ms".into(),
            );
        }
        if s.refused_retry_secs == 0 {
            return invalid("server.refused_retry_secs", "must be at least 1".into());
        }
        let d = &self.detect;
        if !(0.5..1.0).contains(&d.threshold_quantile) {
            return invalid(
                "detect.threshold_quantile",
                format!("{} is outside [0.5, 1)", d.threshold_quantile),
            );
        }
        if !(d.sensitivity > 0.0 && d.sensitivity <= 100.0) {
            return invalid(
                "detect.sensitivity",
                format!("{} is outside (0, 100]", d.sensitivity),
            );
        }
        if d.warmup_secs * 1000 < 30 * a.interval_ms {
            return invalid(
                "detect.warmup_secs",
                format!("{} is shorter than 30 collection intervals", d.warmup_secs),
            );
        }
        if d.context_secs > 3600 || d.model_check_secs == 0 {
            return invalid(
                "detect.context_secs",
                "context_secs must be at most 3600 and model_check_secs at least 1".into(),
            );
        }
        if let Some(m) = &d.model {
            if !m.is_file() {
                return invalid(
                    "detect.model",
                    format!("{} is not a readable file", m.display()),
                );
            }
        }
        self.remediate.validate()?;
        self.exporter.addr()?;
        if self.outbox.max_bytes < 64 * 1024 {
            return invalid(
                "outbox.max_bytes",
                format!("{} is below the minimum of 65536", self.outbox.max_bytes),
            );
        }
        Ok(())
    }

    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.agent.interval_ms)
    }
}

/// Normalises `host:port` to `https://host:port` and checks it.
pub fn endpoint_uri(endpoint: &str) -> Result<String, String> {
    let uri = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("https://{endpoint}")
    };
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix(sco_proto::quic::SCHEME))
        .ok_or_else(|| {
            format!("endpoint {endpoint:?} must use https or quic (mTLS is mandatory)")
        })?;
    let (host, port) = rest
        .trim_end_matches('/')
        .rsplit_once(':')
        .ok_or_else(|| format!("endpoint {endpoint:?} has no port"))?;
    if host.is_empty() {
        return Err(format!("endpoint {endpoint:?} has no host"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("endpoint {endpoint:?} has an invalid port {port:?}"))?;
    Ok(uri)
}

/// Whether an endpoint is reached over QUIC (`quic://host:port`).
pub fn is_quic(endpoint: &str) -> bool {
    endpoint.starts_with(sco_proto::quic::SCHEME)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../packaging/agent.example.toml");

    #[test]
    fn example_config_parses() {
        let config = Config::from_toml(EXAMPLE).expect("example config parses");
        assert_eq!(config.agent.interval_ms, 1000);
        assert_eq!(config.agent.rollup_secs, 10);
        assert_eq!(
            config.remediate,
            RemediateSection::default(),
            "example shows defaults"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let text = EXAMPLE.replace("[outbox]", "[outbox]\nmax_bites = 3");
        let err = Config::from_toml(&text).expect_err("unknown key refused");
        assert!(err.contains("max_bites"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut base = Config::from_toml(EXAMPLE).expect("example parses");
        let existing = std::path::PathBuf::from(file!())
            .canonicalize()
            .unwrap_or_else(|_| {
                std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")
            });
        base.server.ca = existing.clone();
        base.server.cert = existing.clone();
        base.server.key = existing;
        base.validate().expect("base is valid");
        type Mutate = fn(&mut Config);
        let cases: [(&str, Mutate); 17] = [
            ("exporter.listen", |c| {
                c.exporter.listen = "localhost:9101".into()
            }),
            ("exporter.listen", |c| {
                c.exporter.listen = "0.0.0.0:9101".into()
            }),
            ("exporter.listen", |c| {
                c.exporter.listen = "[::]:9101".into()
            }),
            ("remediate.notify_urls", |c| {
                c.remediate.notify_urls = vec!["https://".into()]
            }),
            ("remediate.notify_urls", |c| {
                c.remediate.notify_urls = vec!["ftp://hooks.local/sco".into()]
            }),
            ("remediate.notify_urls", |c| {
                c.remediate.notify_urls = vec!["https://user:pw@hooks.local/sco".into()]
            }),
            ("remediate.notify_urls", |c| {
                c.remediate.notify_urls = vec!["http:///sco".into()]
            }),
            ("remediate.clean_roots", |c| {
                c.remediate.clean_roots = vec!["/".into()]
            }),
            ("remediate.protected_processes", |c| {
                c.remediate.protected_processes = vec!["sshd; x".into()]
            }),
            ("remediate.breaker_failures", |c| {
                c.remediate.breaker_failures = 0
            }),
            ("agent.interval_ms", |c| c.agent.interval_ms = 5),
            ("agent.rollup_secs", |c| c.agent.rollup_secs = 0),
            ("server.endpoints", |c| c.server.endpoints.clear()),
            ("server.endpoints", |c| {
                c.server.endpoints = vec!["http://x:1".into()]
            }),
            ("outbox.max_bytes", |c| c.outbox.max_bytes = 10),
            ("server.ca", |c| c.server.ca = "/nonexistent/ca.pem".into()),
            ("server.refused_retry_secs", |c| {
                c.server.refused_retry_secs = 0
            }),
        ];
        for (key, mutate) in cases {
            let mut c = base.clone();
            mutate(&mut c);
            let err = c.validate().expect_err(key).to_string();
            assert!(err.contains(key), "expected {key} in {err}");
        }
    }

    #[test]
    fn exporter_is_off_and_loopback_unless_asked() {
        let c = Config::from_toml(EXAMPLE).expect("example parses");
        assert_eq!(
            c.exporter,
            ExporterSection::default(),
            "example shows defaults"
        );
        assert!(!c.exporter.enabled);
        let mut e = ExporterSection::default();
        assert_eq!(e.addr().expect("default").to_string(), "127.0.0.1:9101");
        e.listen = "[::1]:9101".into();
        assert!(e.addr().is_ok());
        e.listen = "10.0.0.5:9101".into();
        let err = e.addr().expect_err("remote refused").to_string();
        assert!(
            err.contains("exporter.listen") && err.contains("exporter.allow_remote"),
            "{err}"
        );
        e.allow_remote = true;
        assert!(e.addr().is_ok());
    }

    #[test]
    fn notify_urls_accept_http_and_https() {
        let mut c = Config::from_toml(EXAMPLE).expect("example parses");
        c.remediate.notify_urls = vec![
            "http://hooks.local:8080/sco".into(),
            "https://chat.example.com/hooks/".into(),
            "https://[::1]:8443".into(),
        ];
        c.remediate
            .validate()
            .expect("http and https prefixes are valid");
        c.remediate.notify_urls = vec!["hooks.local/sco".into()];
        let err = c.remediate.validate().expect_err("no scheme").to_string();
        assert!(
            err.contains("remediate.notify_urls")
                && err.contains("hooks.local/sco")
                && err.contains("https://host"),
            "{err}"
        );
        assert!(!err.contains("not supported"), "{err}");
    }

    #[test]
    fn env_overrides_and_bad_env_is_named() {
        let mut c = Config::from_toml(EXAMPLE).expect("example parses");
        c.apply_env(|k| (k == env::INTERVAL_MS).then(|| "250".to_string()))
            .expect("valid override");
        assert_eq!(c.agent.interval_ms, 250);
        let err = c
            .apply_env(|k| (k == env::ROLLUP_SECS).then(|| "ten".to_string()))
            .expect_err("bad number");
        assert!(err.to_string().contains(env::ROLLUP_SECS));
    }

    fn from_env(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_toml_and_env(EXAMPLE, Path::new("agent.toml"), pairs.iter().copied())
    }

    #[test]
    fn every_key_from_the_environment() {
        let c = from_env(&[
            ("SCO_AGENT__AGENT__PROC_ROOT", "/host/proc"),
            ("SCO_AGENT__AGENT__SYS_ROOT", "/host/sys"),
            ("SCO_AGENT__AGENT__ROOT_FS", "/host/root"),
            (
                "SCO_AGENT__AGENT__LABELS",
                r#"{ role = "web", zone = "eu-1" }"#,
            ),
            ("SCO_AGENT__AGENT__LABELS__tier", "db"),
            ("SCO_AGENT__DETECT__IGNORE", r#"["disk.used_bytes:/boot"]"#),
            ("SCO_AGENT__DETECT__SENSITIVITY", "1.5"),
            ("SCO_AGENT__DETECT__ENABLED", "false"),
            (
                "SCO_AGENT__DETECT__MODEL",
                "/etc/sco-agent/models/manifest.json",
            ),
            ("SCO_AGENT__REMEDIATE__ENV__HTTP_PROXY", "http://proxy:3128"),
            (
                "SCO_AGENT__REMEDIATE__CLEAN_ROOTS",
                r#"["/var/log", "/srv/tmp"]"#,
            ),
            ("SCO_AGENT__SERVER__HEARTBEAT_SECS", "7"),
            ("SCO_AGENT__OUTBOX__CACHE_BYTES", "2097152"),
        ])
        .expect("loads");
        let a = &c.agent;
        assert_eq!(
            (
                a.proc_root.as_path(),
                a.sys_root.as_path(),
                a.root_fs.as_path()
            ),
            (
                Path::new("/host/proc"),
                Path::new("/host/sys"),
                Path::new("/host/root")
            )
        );
        let labels: Vec<(&str, &str)> = a
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(labels, [("role", "web"), ("tier", "db"), ("zone", "eu-1")]);
        assert_eq!(c.detect.ignore, ["disk.used_bytes:/boot"]);
        assert_eq!(c.detect.sensitivity, 1.5);
        assert!(!c.detect.enabled);
        assert_eq!(
            c.detect.model.as_deref(),
            Some(Path::new("/etc/sco-agent/models/manifest.json"))
        );
        assert_eq!(c.remediate.env["HTTP_PROXY"], "http://proxy:3128");
        assert_eq!(
            c.remediate.clean_roots,
            [PathBuf::from("/var/log"), PathBuf::from("/srv/tmp")]
        );
        assert_eq!(c.server.heartbeat_secs, 7);
        assert_eq!(c.outbox.cache_bytes, 2 * 1024 * 1024);
        // Untouched keys keep the file's values.
        assert_eq!(c.agent.interval_ms, 1000);
    }

    #[test]
    fn every_key_of_the_example_has_a_variable() {
        let schema = sco_proto::config_env::Schema::of::<Config>();
        let keys: std::collections::BTreeSet<&str> = schema.keys().collect();
        let example: toml::Table = toml::from_str(EXAMPLE).expect("example parses");
        for (section, table) in &example {
            let toml::Value::Table(table) = table else {
                panic!("{section} is not a section");
            };
            for key in table.keys() {
                let key = format!("{section}.{key}");
                assert!(keys.contains(key.as_str()), "{key} missing from {keys:?}");
            }
        }
        for key in [
            "agent.sys_root",
            "agent.root_fs",
            "server.policy_key",
            "detect.model",
        ] {
            assert!(keys.contains(key), "{key}");
        }
    }

    #[test]
    fn generic_variables_win_over_specific_ones() {
        // The specific variables alone work as before.
        let c = from_env(&[(env::INTERVAL_MS, "250"), (env::ENDPOINTS, "a:1, b:2")]).expect("ok");
        assert_eq!(c.agent.interval_ms, 250);
        assert_eq!(c.server.endpoints, ["a:1", "b:2"]);
        // Both for one key: the generic one wins, and the specific one is not even parsed;
        // specific ones for other keys still apply.
        let c = from_env(&[
            (env::INTERVAL_MS, "ten"),
            ("SCO_AGENT__AGENT__INTERVAL_MS", "500"),
            (env::ENDPOINTS, "a:1"),
            ("SCO_AGENT__SERVER__ENDPOINTS", r#"["g:1"]"#),
            (env::ROLLUP_SECS, "20"),
        ])
        .expect("ok");
        assert_eq!(c.agent.interval_ms, 500);
        assert_eq!(c.server.endpoints, ["g:1"]);
        assert_eq!(c.agent.rollup_secs, 20);
        // A whole section set generically covers its keys' specific variables too.
        let c = from_env(&[
            (env::SERVER_NAME, "specific"),
            (
                "SCO_AGENT__SERVER",
                r#"{ endpoints = ["x:1"], ca = "/c", cert = "/c", key = "/k", server_name = "generic" }"#,
            ),
        ])
        .expect("ok");
        assert_eq!(c.server.server_name.as_deref(), Some("generic"));
        // A bad specific value is still refused by its name when no generic one covers it.
        let err = from_env(&[(env::ROLLUP_SECS, "ten")])
            .expect_err("bad")
            .to_string();
        assert!(err.contains(env::ROLLUP_SECS), "{err}");
    }

    #[test]
    fn bad_generic_variables_are_named() {
        let err = from_env(&[("SCO_AGENT__AGENT__PROCROOT", "/host/proc")])
            .expect_err("unknown")
            .to_string();
        assert!(
            err.contains("SCO_AGENT__AGENT__PROCROOT")
                && err.contains("agent.proc_root")
                && err.contains("SCO_AGENT__AGENT__PROC_ROOT"),
            "{err}"
        );
        let err = from_env(&[("SCO_AGENT__REMEDIATE__MAX_PROCESSES", "many")])
            .expect_err("type")
            .to_string();
        assert!(
            err.contains("SCO_AGENT__REMEDIATE__MAX_PROCESSES")
                && err.contains("remediate.max_processes"),
            "{err}"
        );
        // In range is the validation's job, which names the key as for the file.
        let c = from_env(&[("SCO_AGENT__AGENT__INTERVAL_MS", "5")]).expect("parses");
        assert_eq!(c.agent.interval_ms, 5);
        let mut bad = c.clone();
        bad.agent.interval_ms = 1000;
        bad.agent.proc_root = "host/proc".into();
        for (key, c) in [("agent.interval_ms", c), ("agent.proc_root", bad)] {
            let err = c.validate().expect_err(key).to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn host_paths_default_to_the_agents_own() {
        let c = Config::from_toml(EXAMPLE).expect("example parses");
        assert_eq!(c.agent.host_paths(), crate::collect::HostPaths::default());
        let h = crate::collect::HostPaths::default();
        assert_eq!(
            (h.proc.as_path(), h.sys.as_path(), h.root.as_path()),
            (Path::new("/proc"), Path::new("/sys"), Path::new("/"))
        );
    }

    #[test]
    fn endpoints_normalise() {
        assert_eq!(endpoint_uri("cp:7443").as_deref(), Ok("https://cp:7443"));
        assert!(endpoint_uri("cp").is_err());
        assert_eq!(
            endpoint_uri("quic://cp:7443").as_deref(),
            Ok("quic://cp:7443")
        );
        assert!(is_quic("quic://cp:7443") && !is_quic("cp:7443") && !is_quic("https://cp:1"));
        assert!(endpoint_uri("quic://cp").is_err());
        assert!(endpoint_uri("quic://:7443").is_err());
        assert!(endpoint_uri("udp://cp:7443").is_err());
        assert!(endpoint_uri("cp:99999").is_err());
    }
}
