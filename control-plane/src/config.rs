//! Control-plane configuration: TOML file, environment overrides, checks.
//!
//! Every key can come from the environment as `SCO_CP__<SECTION>__<KEY>` (a top-level key as
//! `SCO_CP__<KEY>`; see [`sco_proto::config_env`]); the older specific variables of [`env`]
//! still work, and the generic form wins when both set the same key.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod notify;
pub use notify::{
    ChannelConfig, ChannelKind, NotifySection, SmtpTls, Subject, PAGERDUTY_EVENTS_URL,
};

pub mod env {
    /// Any key: `SCO_CP__AUTH__TOKEN_TTL_SECS=600`, `SCO_CP__REST__CORS_ALLOWED_ORIGINS='["https://ops.example.com"]'`.
    pub const PREFIX: &str = "SCO_CP__";
    pub const DATABASE_URL: &str = "SCO_DATABASE_URL";
    pub const JWT_SECRET: &str = "SCO_JWT_SECRET";
    pub const GRPC_LISTEN: &str = "SCO_GRPC_LISTEN";
    pub const HTTP_LISTEN: &str = "SCO_HTTP_LISTEN";
    pub const DATA_DIR: &str = "SCO_DATA_DIR";
    pub const ADMIN_PASSWORD: &str = "SCO_ADMIN_PASSWORD";
    /// `serve`: a file holding the password of the first admin, created at start when no
    /// admin exists yet (ignored once one does, so the file can be deleted afterwards).
    pub const BOOTSTRAP_ADMIN_PASSWORD_FILE: &str = "SCO_BOOTSTRAP_ADMIN_PASSWORD_FILE";
    /// `serve`: the name of that first admin (default `admin`).
    pub const BOOTSTRAP_ADMIN_USERNAME: &str = "SCO_BOOTSTRAP_ADMIN_USERNAME";
    /// The key each specific variable sets: it is ignored when a `SCO_CP__...` variable sets
    /// that key (or its section) too.
    pub const KEYS: [(&str, &str); 5] = [
        (DATABASE_URL, "database_url"),
        (JWT_SECRET, "auth.jwt_secret"),
        (GRPC_LISTEN, "grpc_listen"),
        (HTTP_LISTEN, "http_listen"),
        (DATA_DIR, "data_dir"),
    ];
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub grpc_listen: SocketAddr,
    /// The agent port over QUIC (UDP), beside `grpc_listen`; off when unset. Same service,
    /// certificates and checks; agents without a certificate enroll on `grpc_listen`.
    pub quic_listen: Option<SocketAddr>,
    pub http_listen: SocketAddr,
    /// Holds the SQLite database, the JWT secret and the development PKI.
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://...`; empty means SQLite in `data_dir`.
    pub database_url: String,
    pub tls: TlsSection,
    pub auth: AuthSection,
    pub agents: AgentsSection,
    pub rest: RestSection,
    pub enrollment: EnrollmentSection,
    pub remediation: RemediationSection,
    pub replicas: ReplicasSection,
    pub slack: SlackSection,
    pub llm: LlmSection,
    pub notify: NotifySection,
    pub retention: RetentionSection,
}

/// An OpenAI-compatible chat-completions provider for ChatOps. Without `url` the deterministic
/// parser alone understands questions; with it, the model chooses among the same intents
/// (tool calling) and phrases read answers from their data, and the parser answers whenever
/// the provider fails or times out.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LlmSection {
    /// The chat-completions URL, e.g. `https://api.openai.com/v1/chat/completions`.
    pub url: Option<String>,
    /// The model name the provider knows.
    pub model: String,
    /// The API key (sent as a bearer token); also `SCO_CP__LLM__API_KEY`.
    pub api_key: Option<String>,
    /// A file holding the API key instead (one line).
    pub api_key_file: Option<PathBuf>,
    /// Per request; the parser answers after it.
    pub timeout_ms: u64,
    /// The certificates an https provider is verified against.
    pub ca_file: PathBuf,
}

impl Default for LlmSection {
    fn default() -> Self {
        Self {
            url: None,
            model: String::new(),
            api_key: None,
            api_key_file: None,
            timeout_ms: 8000,
            ca_file: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
        }
    }
}

impl LlmSection {
    /// The API key, from the config or its file.
    pub fn key(&self) -> Result<Option<String>, ConfigError> {
        if let Some(k) = &self.api_key {
            return Ok(Some(k.trim().to_string()));
        }
        let Some(path) = &self.api_key_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Ok(Some(text.trim().to_string()).filter(|k| !k.is_empty()))
    }
}

/// The Slack app: its signing secret and which of our users each Slack user is. Without a
/// secret the Slack endpoints refuse every request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SlackSection {
    /// The app's signing secret (Slack: Basic Information → App Credentials); also
    /// `SCO_CP__SLACK__SIGNING_SECRET`.
    pub signing_secret: Option<String>,
    /// A file holding the signing secret instead (one line).
    pub signing_secret_file: Option<PathBuf>,
    /// Slack user id (`U024BE7LH`) → our user name; the role is that user's. Slack users
    /// not listed get a polite refusal.
    pub users: std::collections::BTreeMap<String, String>,
}

impl SlackSection {
    /// The signing secret, from the config or its file; `None` when Slack is not set up.
    pub fn secret(&self) -> Result<Option<String>, ConfigError> {
        if let Some(s) = &self.signing_secret {
            return Ok(Some(s.trim().to_string()));
        }
        let Some(path) = &self.signing_secret_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let secret = text.trim().to_string();
        if secret.len() < 16 {
            return Err(ConfigError::Invalid {
                key: "slack.signing_secret_file",
                reason: format!("{} holds fewer than 16 characters", path.display()),
            });
        }
        Ok(Some(secret))
    }
}

/// Proposals from policy rules, approvals and fleet leases.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RemediationSection {
    /// A proposal expires when nobody approved it (mode `approve`), or no
    /// fleet lease freed up for it, within this time.
    pub proposal_ttl_secs: u64,
    /// How often this replica expires proposals, hands out leases, advances
    /// rollouts and pushes policies to the agents connected to it.
    pub tick_ms: u64,
}

impl Default for RemediationSection {
    fn default() -> Self {
        Self {
            proposal_ttl_secs: 900,
            tick_ms: 1000,
        }
    }
}

/// How long stored rollups are kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSection {
    /// Rollup windows are deleted this many days after they began (each host's newest window
    /// is kept whatever its age). 0: kept forever. Anomalies, actions and the audit log are
    /// not affected.
    pub rollup_days: u64,
    /// How often the replica holding the retention lease sweeps.
    pub sweep_secs: u64,
}

impl Default for RetentionSection {
    fn default() -> Self {
        Self {
            rollup_days: 15,
            sweep_secs: 3600,
        }
    }
}

impl RetentionSection {
    /// The retention age; `None` when rollups are kept forever.
    pub fn rollup_age(&self) -> Option<std::time::Duration> {
        (self.rollup_days > 0)
            .then(|| std::time::Duration::from_secs(self.rollup_days.saturating_mul(86_400)))
    }
}

/// This control plane among the replicas sharing one PostgreSQL database: where agents reach
/// it, how many streams it takes, and how long its leases on fleet-wide work last.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicasSection {
    /// `host:port` agents reach this replica's gRPC port at, told to agents another replica
    /// turns away (an IPv6 address in brackets); default `advertise_host` with the port of
    /// `grpc_listen`, else `grpc_listen` unless that is a wildcard address (then this replica
    /// is never named to agents).
    pub advertise: Option<String>,
    /// `host:port` agents reach this replica's QUIC port at, told to agents that came over
    /// QUIC when another replica turns them away; default `advertise_host` with the port of
    /// `quic_listen`, else `quic_listen` unless that is unset or a wildcard address (then they
    /// are sent to `advertise` over TCP).
    pub advertise_quic: Option<String>,
    /// The host alone (a name, an IPv4 or an IPv6 address, bare or in brackets) where agents
    /// reach this replica on the ports it listens on, for `advertise` and `advertise_quic`
    /// when they are unset. Made for a host known only at start, such as a pod IP from the
    /// environment: the address is composed here, with brackets around an IPv6 one.
    pub advertise_host: Option<String>,
    /// Agent streams this replica holds at most; one more is refused with the addresses of
    /// live replicas that have room. 0 (the default): what the open-file limit allows (raised
    /// to the hard limit at start), less a reserve of a tenth, at least 256 (see `limits.rs`).
    pub max_streams: u64,
    /// Admission by load: while the runtime runs tasks later than this (the largest lateness
    /// of a 100 ms timer over about the last 2 s, `load.rs`), new agent streams are refused
    /// as at `max_streams` (with the replicas that have room) and the streams held go on; they
    /// are admitted again once it is under half of this. 0: off (the lag is still shown in
    /// `/status`). Default 250, in 10..=60000.
    pub max_lag_ms: u64,
    /// How long a lease on fleet-wide work (the `ticks` lease) outlives its last renewal,
    /// i.e. how soon another replica takes over from one that died. 0: three ticks, at least
    /// 5 s.
    pub lease_ttl_ms: u64,
}

/// `replicas.max_lag_ms` unless set: a runtime a quarter of a second late answers every stream
/// that late, far from the agents' dead-connection timeout, and well above what a runtime that
/// keeps up shows (a few milliseconds).
pub const DEFAULT_MAX_LAG_MS: u64 = 250;

impl Default for ReplicasSection {
    fn default() -> Self {
        Self {
            advertise: None,
            advertise_quic: None,
            advertise_host: None,
            max_streams: 0,
            max_lag_ms: DEFAULT_MAX_LAG_MS,
            lease_ttl_ms: 0,
        }
    }
}

impl ReplicasSection {
    /// `max_lag_ms` as a duration; zero: admission by load is off.
    pub fn max_lag(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.max_lag_ms)
    }

    /// The lease lifetime for ticks every `tick_ms`.
    pub fn lease_ttl(&self, tick_ms: u64) -> std::time::Duration {
        let ms = if self.lease_ttl_ms == 0 {
            tick_ms.saturating_mul(3).max(5_000)
        } else {
            self.lease_ttl_ms
        };
        std::time::Duration::from_millis(ms)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EnrollmentSection {
    /// Lifetime of agent certificates; agents renew at two thirds of it.
    pub cert_ttl_secs: u64,
    /// How often this replica checks the database for agents revoked on
    /// another replica.
    pub revocation_check_secs: u64,
}

impl Default for EnrollmentSection {
    fn default() -> Self {
        Self {
            cert_ttl_secs: 86_400,
            revocation_check_secs: 2,
        }
    }
}

/// The REST listener: optional TLS and the CORS allowlist.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RestSection {
    /// Serve REST over TLS (rustls, ring). Also turns on
    /// `Strict-Transport-Security`.
    pub tls: bool,
    /// Certificate chain (PEM) for REST; defaults to `tls.server_cert`.
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) for REST; defaults to `tls.server_key`.
    pub tls_key: Option<PathBuf>,
    /// Origins (`https://ops.example.com`) allowed to call the API from a
    /// browser. Empty: no CORS headers at all.
    pub cors_allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// Fleet CA that signs agent certificates; defaults to `data_dir/pki/ca.pem`.
    pub ca_cert: Option<PathBuf>,
    pub server_cert: Option<PathBuf>,
    pub server_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// HS256 secret; generated and stored in `data_dir/jwt.secret` when
    /// neither this nor `SCO_JWT_SECRET` is set.
    pub jwt_secret: Option<String>,
    /// Lifetime of access tokens (JWTs).
    pub token_ttl_secs: i64,
    /// Lifetime of refresh tokens (each use rotates the token).
    pub refresh_ttl_secs: i64,
    /// Consecutive failed logins of one account before it is locked.
    pub login_max_failures: u32,
    /// Failed logins from one client address before it is locked.
    pub login_max_failures_per_addr: u32,
    /// First lockout; doubles with each further failure.
    pub login_lockout_secs: i64,
    /// Longest lockout; counters are forgotten this long after the last
    /// failure.
    pub login_lockout_max_secs: i64,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            token_ttl_secs: 900,
            refresh_ttl_secs: 7 * 86_400,
            login_max_failures: 5,
            login_max_failures_per_addr: 20,
            login_lockout_secs: 30,
            login_lockout_max_secs: 900,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsSection {
    pub heartbeat_secs: u64,
    /// A stream with no message for this long is closed.
    pub dead_after_secs: u64,
}

impl Default for AgentsSection {
    fn default() -> Self {
        Self {
            heartbeat_secs: 5,
            dead_after_secs: 20,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc_listen: ([127, 0, 0, 1], 7443).into(),
            quic_listen: None,
            http_listen: ([127, 0, 0, 1], 8080).into(),
            data_dir: PathBuf::from("./sco-data"),
            database_url: String::new(),
            tls: TlsSection::default(),
            auth: AuthSection::default(),
            agents: AgentsSection::default(),
            enrollment: EnrollmentSection::default(),
            remediation: RemediationSection::default(),
            replicas: ReplicasSection::default(),
            rest: RestSection::default(),
            slack: SlackSection::default(),
            llm: LlmSection::default(),
            notify: NotifySection::default(),
            retention: RetentionSection::default(),
        }
    }
}

pub use sco_proto::config_env::ConfigError;

/// The host part of an address agents are sent to: it travels to them in a gRPC header, so
/// nothing but a name or an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AdvertisedHost {
    Ip(IpAddr),
    Name(String),
}

impl AdvertisedHost {
    /// A host alone: a name, an IPv4 address, or an IPv6 one bare or in brackets; never a
    /// wildcard address, which no agent can be sent to.
    fn parse(host: &str) -> Result<Self, String> {
        let parsed = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(inner) => inner
                .parse::<Ipv6Addr>()
                .map(|ip| Self::Ip(ip.into()))
                .map_err(|_| format!("{inner:?} in brackets is not an IPv6 address"))?,
            None => match host.parse::<IpAddr>() {
                Ok(ip) => Self::Ip(ip),
                Err(_) if host.contains(':') => {
                    return Err(format!(
                        "{host:?} is neither a host name nor an IP address (no port here)"
                    ))
                }
                Err(_) => {
                    let name_ok = !host.is_empty()
                        && host.len() <= 253
                        && host
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b));
                    if !name_ok {
                        return Err(format!("{host:?} is not a valid host name"));
                    }
                    Self::Name(host.to_string())
                }
            },
        };
        match parsed {
            Self::Ip(ip) if ip.is_unspecified() => Err(format!(
                "{host:?} is a wildcard address, which no agent can reach"
            )),
            host => Ok(host),
        }
    }

    /// `host:port`, an IPv6 address in brackets (as `SocketAddr` writes it).
    fn with_port(&self, port: u16) -> String {
        match self {
            Self::Ip(ip) => SocketAddr::new(*ip, port).to_string(),
            Self::Name(name) => format!("{name}:{port}"),
        }
    }
}

/// An address agents can be sent to: `host:port`, the host a name or an IP (IPv6 in brackets:
/// `fd00::1:7443` could be an address without a port), nothing else.
fn check_advertise(a: &str) -> Result<(), String> {
    let (host, port) = a
        .rsplit_once(':')
        .ok_or_else(|| format!("{a:?} is not host:port"))?;
    if host.contains(':') && !host.starts_with('[') {
        return Err(format!(
            "{a:?} has an IPv6 address without brackets ([address]:port), or no port"
        ));
    }
    AdvertisedHost::parse(host).map_err(|reason| format!("{a:?} has an invalid host: {reason}"))?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{a:?} has an invalid port {port:?}")),
    }
}

/// What is advertised for one listener: the address set for it, else the advertised host with
/// the port it listens on, else the address it listens on unless that is a wildcard.
fn advertised(set: Option<&str>, host: Option<&str>, listen: Option<SocketAddr>) -> Option<String> {
    if let Some(a) = set {
        return Some(a.to_string());
    }
    let listen = listen?;
    // validated before: a host that does not parse was refused with its key
    match host.and_then(|h| AdvertisedHost::parse(h).ok()) {
        Some(host) => Some(host.with_port(listen.port())),
        None if listen.ip().is_unspecified() => None,
        None => Some(listen.to_string()),
    }
}

impl Config {
    /// Where agents reach this replica: `replicas.advertise`, else `replicas.advertise_host`
    /// with the port of `grpc_listen`, else `grpc_listen` unless that is a wildcard address
    /// (which no agent can be sent to).
    pub fn advertised_grpc(&self) -> Option<String> {
        advertised(
            self.replicas.advertise.as_deref(),
            self.replicas.advertise_host.as_deref(),
            Some(self.grpc_listen),
        )
    }

    /// Where agents reach this replica over QUIC: `replicas.advertise_quic`, else
    /// `replicas.advertise_host` with the port of `quic_listen`, else `quic_listen` unless
    /// that is unset or a wildcard address.
    pub fn advertised_quic(&self) -> Option<String> {
        advertised(
            self.replicas.advertise_quic.as_deref(),
            self.replicas.advertise_host.as_deref(),
            self.quic_listen,
        )
    }
}

impl Config {
    /// Reads the file (none: every default), applies environment overrides and validates.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?,
            None => String::new(),
        };
        let config = Self::from_toml_and_env(&text, path, std::env::vars_os())?;
        config.validate()?;
        Ok(config)
    }

    /// The file's text (from `path`; empty for none) with the environment `vars` applied:
    /// first every `SCO_CP__...` variable (to the TOML document, so it is checked like the
    /// file), then the specific variables of [`env`], each unless a generic one set its key.
    /// Not validated.
    pub fn from_toml_and_env<K, V>(
        text: &str,
        path: Option<&Path>,
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
                    path: path.map(Path::to_path_buf).unwrap_or_default(),
                    message,
                },
                LoadError::Env(e) => ConfigError::EnvKey(e),
            })?;
        let (mut config, overrides) = (layered.value, layered.overrides);
        config.apply_env(|name| config_env::specific_var(&vars, &env::KEYS, &overrides, name))?;
        Ok(config)
    }

    /// Applies the specific variables of [`env`] (not the generic `SCO_CP__...` ones), reading
    /// them with `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let addr = |var: &'static str, v: String| {
            v.parse::<SocketAddr>().map_err(|e| ConfigError::Env {
                var,
                value: v.clone(),
                reason: e.to_string(),
            })
        };
        if let Some(v) = get(env::DATABASE_URL) {
            self.database_url = v;
        }
        if let Some(v) = get(env::JWT_SECRET) {
            self.auth.jwt_secret = Some(v);
        }
        if let Some(v) = get(env::GRPC_LISTEN) {
            self.grpc_listen = addr(env::GRPC_LISTEN, v)?;
        }
        if let Some(v) = get(env::HTTP_LISTEN) {
            self.http_listen = addr(env::HTTP_LISTEN, v)?;
        }
        if let Some(v) = get(env::DATA_DIR) {
            self.data_dir = v.into();
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        if let Some(s) = &self.auth.jwt_secret {
            if s.len() < 32 {
                return invalid("auth.jwt_secret", "must be at least 32 bytes".into());
            }
        }
        if !(60..=86_400).contains(&self.auth.token_ttl_secs) {
            return invalid(
                "auth.token_ttl_secs",
                format!("{} is outside 60..=86400", self.auth.token_ttl_secs),
            );
        }
        if !(300..=90 * 86_400).contains(&self.auth.refresh_ttl_secs) {
            return invalid(
                "auth.refresh_ttl_secs",
                format!("{} is outside 300..=7776000", self.auth.refresh_ttl_secs),
            );
        }
        if self.auth.login_max_failures == 0 {
            return invalid("auth.login_max_failures", "must be at least 1".into());
        }
        if self.auth.login_max_failures_per_addr == 0 {
            return invalid(
                "auth.login_max_failures_per_addr",
                "must be at least 1".into(),
            );
        }
        if self.auth.login_lockout_secs < 1
            || self.auth.login_lockout_max_secs < self.auth.login_lockout_secs
        {
            return invalid(
                "auth.login_lockout_max_secs",
                "login_lockout_secs must be >= 1 and login_lockout_max_secs >= it".into(),
            );
        }
        for origin in &self.rest.cors_allowed_origins {
            let ok = (origin.starts_with("https://") || origin.starts_with("http://"))
                && !origin.ends_with('/')
                && origin.bytes().all(|b| b.is_ascii_graphic())
                && !origin.contains('*');
            if !ok {
                return invalid(
                    "rest.cors_allowed_origins",
                    format!("{origin:?} is not an origin like https://ops.example.com (no wildcard, no path)"),
                );
            }
        }
        if self.agents.heartbeat_secs == 0
            || self.agents.dead_after_secs <= self.agents.heartbeat_secs
        {
            return invalid(
                "agents.dead_after_secs",
                "must be greater than agents.heartbeat_secs, which must be > 0".into(),
            );
        }
        if !(5..=365 * 86_400).contains(&self.enrollment.cert_ttl_secs) {
            return invalid(
                "enrollment.cert_ttl_secs",
                format!("{} is outside 5..=31536000", self.enrollment.cert_ttl_secs),
            );
        }
        if !(1..=7 * 86_400).contains(&self.remediation.proposal_ttl_secs) {
            return invalid(
                "remediation.proposal_ttl_secs",
                format!(
                    "{} is outside 1..=604800",
                    self.remediation.proposal_ttl_secs
                ),
            );
        }
        if !(100..=60_000).contains(&self.remediation.tick_ms) {
            return invalid(
                "remediation.tick_ms",
                format!("{} is outside 100..=60000", self.remediation.tick_ms),
            );
        }
        // renewed every tick: a lease that lapses between two renewals would change hands
        // while its holder lives
        let ttl = self.replicas.lease_ttl_ms;
        if ttl != 0 && (ttl < 2 * self.remediation.tick_ms || ttl > 600_000) {
            return invalid(
                "replicas.lease_ttl_ms",
                format!(
                    "{ttl} is outside {}..=600000 (at least two ticks of remediation.tick_ms)",
                    2 * self.remediation.tick_ms
                ),
            );
        }
        let lag = self.replicas.max_lag_ms;
        if lag != 0 && !(10..=60_000).contains(&lag) {
            // under 10 ms, a runtime that keeps up would refuse agents on its timer's jitter
            return invalid(
                "replicas.max_lag_ms",
                format!("{lag} is outside 10..=60000 (0 turns admission by load off)"),
            );
        }
        if let Some(a) = &self.replicas.advertise {
            if let Err(reason) = check_advertise(a) {
                return invalid("replicas.advertise", reason);
            }
        }
        if let Some(a) = &self.replicas.advertise_quic {
            if let Err(reason) = check_advertise(a) {
                return invalid("replicas.advertise_quic", reason);
            }
        }
        if let Some(h) = &self.replicas.advertise_host {
            if let Err(reason) = AdvertisedHost::parse(h) {
                return invalid("replicas.advertise_host", reason);
            }
        }
        if self.enrollment.revocation_check_secs == 0 {
            return invalid(
                "enrollment.revocation_check_secs",
                "must be at least 1".into(),
            );
        }
        if self.retention.sweep_secs == 0 {
            return invalid("retention.sweep_secs", "must be at least 1".into());
        }
        if self.retention.rollup_days > 100 * 365 {
            return invalid(
                "retention.rollup_days",
                "must be at most 36500 (0 keeps rollups forever)".into(),
            );
        }
        if self.slack.signing_secret.is_some() && self.slack.signing_secret_file.is_some() {
            return invalid(
                "slack.signing_secret",
                "set signing_secret or signing_secret_file, not both".into(),
            );
        }
        if let Some(s) = &self.slack.signing_secret {
            if s.trim().len() < 16 {
                return invalid(
                    "slack.signing_secret",
                    "must be at least 16 characters (Slack's are 32 hex digits)".into(),
                );
            }
        }
        if let Some(url) = &self.llm.url {
            let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
            if !scheme_ok || url.len() > 2048 || url.chars().any(char::is_whitespace) {
                return invalid("llm.url", format!("{url:?} is not an http(s) URL"));
            }
            if self.llm.model.trim().is_empty() {
                return invalid("llm.model", "must be set with llm.url".into());
            }
        }
        if self.llm.api_key.is_some() && self.llm.api_key_file.is_some() {
            return invalid(
                "llm.api_key",
                "set api_key or api_key_file, not both".into(),
            );
        }
        if !(100..=120_000).contains(&self.llm.timeout_ms) {
            return invalid(
                "llm.timeout_ms",
                format!("{} is outside 100..=120000", self.llm.timeout_ms),
            );
        }
        self.notify.validate()?;
        for (slack_user, user) in &self.slack.users {
            let id_ok = (2..=32).contains(&slack_user.len())
                && slack_user
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
            if !id_ok {
                return invalid(
                    "slack.users",
                    format!("{slack_user:?} is not a Slack user id like U024BE7LH"),
                );
            }
            if user.is_empty() || user.len() > 64 || user.chars().any(char::is_control) {
                return invalid(
                    "slack.users",
                    format!("{slack_user}: {user:?} is not a user name"),
                );
            }
        }
        if !self.database_url.is_empty()
            && !["sqlite:", "postgres://", "postgresql://"]
                .iter()
                .any(|p| self.database_url.starts_with(p))
        {
            return invalid(
                "database_url",
                "must start with sqlite: or postgres://".into(),
            );
        }
        Ok(())
    }

    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            crate::store::sqlite_url(&self.data_dir)
        } else {
            self.database_url.clone()
        }
    }

    pub fn pki_dir(&self) -> PathBuf {
        self.data_dir.join("pki")
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.tls
            .ca_cert
            .clone()
            .unwrap_or_else(|| self.pki_dir().join("ca.pem"))
    }
    pub fn server_cert(&self) -> PathBuf {
        self.tls
            .server_cert
            .clone()
            .unwrap_or_else(|| self.pki_dir().join("server.pem"))
    }
    pub fn server_key(&self) -> PathBuf {
        self.tls
            .server_key
            .clone()
            .unwrap_or_else(|| self.pki_dir().join("server.key"))
    }
    pub fn rest_tls_cert(&self) -> PathBuf {
        self.rest
            .tls_cert
            .clone()
            .unwrap_or_else(|| self.server_cert())
    }
    pub fn rest_tls_key(&self) -> PathBuf {
        self.rest
            .tls_key
            .clone()
            .unwrap_or_else(|| self.server_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_keys_are_checked() {
        let ok: Config = toml::from_str(
            "[replicas]\nadvertise = \"cp-1.example.com:7443\"\nmax_streams = 5000\nlease_ttl_ms = 3000\n",
        )
        .expect("parses");
        ok.validate().expect("valid");
        assert_eq!(
            ok.advertised_grpc().as_deref(),
            Some("cp-1.example.com:7443")
        );
        assert_eq!(ok.replicas.lease_ttl(1000).as_millis(), 3000);
        let d = Config::default();
        assert_eq!(d.advertised_grpc().as_deref(), Some("127.0.0.1:7443"));
        assert_eq!(d.replicas.lease_ttl(1000).as_millis(), 5000);
        assert_eq!(d.replicas.lease_ttl(4000).as_millis(), 12_000);
        let wildcard: Config = toml::from_str("grpc_listen = \"0.0.0.0:7443\"\n").expect("parses");
        assert_eq!(wildcard.advertised_grpc(), None);
        // over QUIC: only where it listens on QUIC, and not on a wildcard address
        assert_eq!(d.advertised_quic(), None);
        let quic: Config = toml::from_str("quic_listen = \"127.0.0.1:7444\"\n").expect("parses");
        assert_eq!(quic.advertised_quic().as_deref(), Some("127.0.0.1:7444"));
        let quic: Config = toml::from_str("quic_listen = \"[::]:7444\"\n").expect("parses");
        assert_eq!(quic.advertised_quic(), None);
        let quic: Config = toml::from_str(
            "quic_listen = \"[::]:7444\"\n[replicas]\nadvertise_quic = \"cp-1.example.com:7444\"\n",
        )
        .expect("parses");
        quic.validate().expect("valid");
        assert_eq!(
            quic.advertised_quic().as_deref(),
            Some("cp-1.example.com:7444")
        );
        assert_eq!(d.replicas.max_lag_ms, DEFAULT_MAX_LAG_MS);
        for (text, ms) in [
            ("[replicas]\nmax_lag_ms = 0\n", 0),
            ("[replicas]\nmax_lag_ms = 10\n", 10),
            ("[replicas]\nmax_lag_ms = 60000\n", 60_000),
        ] {
            let c: Config = toml::from_str(text).expect("parses");
            c.validate().expect(text);
            assert_eq!(c.replicas.max_lag().as_millis(), ms);
        }
        for text in [
            "[replicas]\nmax_lag_ms = 9\n",
            "[replicas]\nmax_lag_ms = 60001\n",
        ] {
            let c: Config = toml::from_str(text).expect("parses");
            match c.validate() {
                Err(e @ ConfigError::Invalid { .. }) => {
                    assert!(e.to_string().contains("replicas.max_lag_ms"), "{e}");
                    assert!(e.to_string().contains("outside 10..=60000"), "{e}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        for text in [
            "[replicas]\nlease_ttl_ms = 1500\n",
            "[replicas]\nlease_ttl_ms = 700000\n",
            "[remediation]\ntick_ms = 2000\n[replicas]\nlease_ttl_ms = 3000\n",
        ] {
            let c: Config = toml::from_str(text).expect("parses");
            match c.validate() {
                Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "replicas.lease_ttl_ms"),
                other => panic!("{text}: {other:?}"),
            }
        }
        for bad in [
            "cp-1",
            "cp 1:7443",
            ":7443",
            "cp:0",
            "cp:70000",
            "cp:x",
            "cp,evil:1",
            "fd00::1:7443",
            "[fd00::1:7443",
            "[cp-1]:7443",
            "0.0.0.0:7443",
            "[::]:7443",
        ] {
            let c = Config {
                replicas: ReplicasSection {
                    advertise: Some(bad.into()),
                    ..ReplicasSection::default()
                },
                ..Config::default()
            };
            match c.validate() {
                Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "replicas.advertise"),
                other => panic!("{bad}: {other:?}"),
            }
            let c = Config {
                replicas: ReplicasSection {
                    advertise_quic: Some(bad.into()),
                    ..ReplicasSection::default()
                },
                ..Config::default()
            };
            match c.validate() {
                Err(ConfigError::Invalid { key, .. }) => {
                    assert_eq!(key, "replicas.advertise_quic")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn advertise_host_takes_the_listen_ports() {
        let with = |text: &str| -> Config {
            let c: Config = toml::from_str(text).expect("parses");
            c.validate().expect("valid");
            c
        };
        let listen = "grpc_listen = \"0.0.0.0:7443\"\nquic_listen = \"0.0.0.0:7444\"\n";
        for (host, grpc, quic) in [
            ("10.1.2.3", "10.1.2.3:7443", "10.1.2.3:7444"),
            ("fd00::1", "[fd00::1]:7443", "[fd00::1]:7444"),
            ("[fd00::1]", "[fd00::1]:7443", "[fd00::1]:7444"),
            (
                "::ffff:10.1.2.3",
                "[::ffff:10.1.2.3]:7443",
                "[::ffff:10.1.2.3]:7444",
            ),
            (
                "cp-1.example.com",
                "cp-1.example.com:7443",
                "cp-1.example.com:7444",
            ),
        ] {
            let c = with(&format!(
                "{listen}[replicas]\nadvertise_host = \"{host}\"\n"
            ));
            assert_eq!(c.advertised_grpc().as_deref(), Some(grpc), "{host}");
            assert_eq!(c.advertised_quic().as_deref(), Some(quic), "{host}");
            // what is composed passes the check of a value set by hand
            check_advertise(grpc).expect(grpc);
        }
        // an address set for a listener wins; no QUIC listener, no QUIC address
        let c = with(
            "[replicas]\nadvertise_host = \"fd00::1\"\nadvertise = \"cp-1.example.com:443\"\n",
        );
        assert_eq!(c.advertised_grpc().as_deref(), Some("cp-1.example.com:443"));
        assert_eq!(c.advertised_quic(), None);
        let c = with(&format!(
            "{listen}[replicas]\nadvertise_host = \"fd00::1\"\nadvertise_quic = \"[fd00::2]:443\"\n"
        ));
        assert_eq!(c.advertised_grpc().as_deref(), Some("[fd00::1]:7443"));
        assert_eq!(c.advertised_quic().as_deref(), Some("[fd00::2]:443"));
        for bad in [
            "",
            "fd00::1:7443:x",
            "[fd00::1]:7443",
            "cp-1:7443",
            "10.1.2.3:7443",
            "[10.1.2.3]",
            "fe80::1%eth0",
            "cp 1",
            "cp,evil",
            "0.0.0.0",
            "::",
        ] {
            let c = Config {
                replicas: ReplicasSection {
                    advertise_host: Some(bad.into()),
                    ..ReplicasSection::default()
                },
                ..Config::default()
            };
            match c.validate() {
                Err(ConfigError::Invalid { key, .. }) => {
                    assert_eq!(key, "replicas.advertise_host", "{bad}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        // as the Helm chart sets it, from a pod IP in the environment
        let c = from_env(&[
            ("SCO_CP__GRPC_LISTEN", "0.0.0.0:7443"),
            ("SCO_CP__REPLICAS__ADVERTISE_HOST", "fd00::1"),
        ])
        .expect("loads");
        assert_eq!(c.advertised_grpc().as_deref(), Some("[fd00::1]:7443"));
        let e = from_env(&[("SCO_CP__REPLICAS__ADVERTISE_HOST", "fd00::1 ")])
            .expect("loads")
            .validate()
            .expect_err("space");
        assert!(e.to_string().contains("replicas.advertise_host"), "{e}");
        // the message says what to write
        let c = Config {
            replicas: ReplicasSection {
                advertise: Some("fd00::1:7443".into()),
                ..ReplicasSection::default()
            },
            ..Config::default()
        };
        let e = c.validate().expect_err("no brackets").to_string();
        assert!(e.contains("without brackets ([address]:port)"), "{e}");
    }

    #[test]
    fn slack_keys_are_checked() {
        let ok: Config = toml::from_str(
            "[slack]\nsigning_secret = \"0123456789abcdef0123\"\n[slack.users]\nU024BE7LH = \"vera\"\n",
        )
        .expect("parses");
        ok.validate().expect("valid");
        assert_eq!(
            ok.slack.secret().expect("secret").as_deref(),
            Some("0123456789abcdef0123")
        );
        assert_eq!(Config::default().slack.secret().expect("none"), None);
        for (text, key) in [
            ("[slack]\nsigning_secret = \"short\"\n", "slack.signing_secret"),
            (
                "[slack]\nsigning_secret = \"0123456789abcdef0123\"\nsigning_secret_file = \"/x\"\n",
                "slack.signing_secret",
            ),
            ("[slack.users]\nu024be7lh = \"vera\"\n", "slack.users"),
            ("[slack.users]\nU024BE7LH = \"\"\n", "slack.users"),
        ] {
            let c: Config = toml::from_str(text).expect("parses");
            match c.validate() {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(toml::from_str::<Config>("[slack]\nsecret = \"x\"\n").is_err());
    }

    #[test]
    fn example_config_parses_and_unknown_keys_fail() {
        let text = include_str!("../../packaging/control-plane.example.toml");
        let c: Config = toml::from_str(text).expect("example parses");
        c.validate().expect("example is valid");
        assert_eq!(c.grpc_listen.port(), 7443);
        let bad = format!("{text}\ngrpc_lissen = \"x\"\n");
        let err = toml::from_str::<Config>(&bad)
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("grpc_lissen"), "{err}");
    }

    /// The Debian package's config (`packaging/test-install.sh` also runs `validate` on the
    /// installed file): production paths, never `./sco-data`.
    #[test]
    fn debian_package_config_is_valid_with_production_paths() {
        let text = include_str!("../../packaging/deb/control-plane.toml");
        let c: Config = toml::from_str(text).expect("package config parses");
        c.validate().expect("package config is valid");
        assert_eq!(c.data_dir, Path::new("/var/lib/sco-control-plane"));
        assert!(
            c.http_listen.ip().is_loopback(),
            "plain-HTTP REST stays on loopback"
        );
        assert_eq!(c.grpc_listen.port(), 7443);
    }

    fn from_env(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let text = include_str!("../../packaging/control-plane.example.toml");
        Config::from_toml_and_env(text, None, pairs.iter().copied())
    }

    #[test]
    fn quic_is_off_unless_quic_listen_is_set() {
        assert_eq!(Config::default().quic_listen, None);
        let c: Config = toml::from_str("quic_listen = \"0.0.0.0:7443\"\n").expect("parses");
        assert_eq!(c.quic_listen, Some("0.0.0.0:7443".parse().expect("addr")));
        let c = from_env(&[("SCO_CP__QUIC_LISTEN", "127.0.0.1:7444")]).expect("loads");
        assert_eq!(c.quic_listen, Some("127.0.0.1:7444".parse().expect("addr")));
        let e = from_env(&[("SCO_CP__QUIC_LISTEN", "nowhere")]).expect_err("not an address");
        assert!(e.to_string().contains("quic_listen"), "{e}");
    }

    #[test]
    fn every_key_from_the_environment() {
        let c = from_env(&[
            ("SCO_CP__HTTP_LISTEN", "0.0.0.0:9090"),
            ("SCO_CP__DATA_DIR", "/var/lib/sco"),
            ("SCO_CP__TLS__SERVER_CERT", "/etc/sco/server.pem"),
            ("SCO_CP__AUTH__TOKEN_TTL_SECS", "600"),
            (
                "SCO_CP__REST__CORS_ALLOWED_ORIGINS",
                r#"["https://ops.example.com", "https://b.example.com"]"#,
            ),
            ("SCO_CP__REST__TLS", "true"),
            ("SCO_CP__ENROLLMENT__CERT_TTL_SECS", "3600"),
            (
                "SCO_CP__REMEDIATION",
                "{ proposal_ttl_secs = 60, tick_ms = 500 }",
            ),
            // All digits, yet a string key keeps it as written.
            (
                "SCO_CP__AUTH__JWT_SECRET",
                "12345678901234567890123456789012",
            ),
        ])
        .expect("loads");
        c.validate().expect("valid");
        assert_eq!(c.http_listen, "0.0.0.0:9090".parse().expect("addr"));
        assert_eq!(c.data_dir, Path::new("/var/lib/sco"));
        assert_eq!(
            c.tls.server_cert.as_deref(),
            Some(Path::new("/etc/sco/server.pem"))
        );
        assert_eq!(c.auth.token_ttl_secs, 600);
        assert_eq!(
            c.rest.cors_allowed_origins,
            ["https://ops.example.com", "https://b.example.com"]
        );
        assert!(c.rest.tls);
        assert_eq!(c.enrollment.cert_ttl_secs, 3600);
        assert_eq!(
            (c.remediation.proposal_ttl_secs, c.remediation.tick_ms),
            (60, 500)
        );
        assert_eq!(
            c.auth.jwt_secret.as_deref(),
            Some("12345678901234567890123456789012")
        );
        // No file at all: the defaults, then the variables.
        let c = Config::from_toml_and_env("", None, [("SCO_CP__AGENTS__HEARTBEAT_SECS", "3")])
            .expect("loads");
        assert_eq!(
            c,
            Config {
                agents: AgentsSection {
                    heartbeat_secs: 3,
                    ..Default::default()
                },
                ..Default::default()
            }
        );
    }

    #[test]
    fn generic_variables_win_over_specific_ones() {
        let c = from_env(&[(env::HTTP_LISTEN, "0.0.0.0:1"), (env::DATA_DIR, "/d")]).expect("ok");
        assert_eq!(
            (c.http_listen.port(), c.data_dir.as_path()),
            (1, Path::new("/d"))
        );
        let c = from_env(&[
            (env::HTTP_LISTEN, "nope"),
            ("SCO_CP__HTTP_LISTEN", "0.0.0.0:2"),
            (env::DATA_DIR, "/specific"),
            (env::JWT_SECRET, "specific-secret-specific-secret-x"),
            (
                "SCO_CP__AUTH",
                "{ jwt_secret = \"generic-secret-generic-secret-xx\" }",
            ),
        ])
        .expect("ok");
        assert_eq!(c.http_listen.port(), 2);
        assert_eq!(c.data_dir, Path::new("/specific"));
        assert_eq!(
            c.auth.jwt_secret.as_deref(),
            Some("generic-secret-generic-secret-xx")
        );
        let err = from_env(&[("SCO_CP__AUTH__TOKEN_TTL", "600")])
            .expect_err("unknown")
            .to_string();
        assert!(
            err.contains("SCO_CP__AUTH__TOKEN_TTL") && err.contains("auth.token_ttl_secs"),
            "{err}"
        );
        let err = from_env(&[("SCO_CP__ENROLLMENT__CERT_TTL_SECS", "1d")])
            .expect_err("type")
            .to_string();
        assert!(
            err.contains("SCO_CP__ENROLLMENT__CERT_TTL_SECS")
                && err.contains("enrollment.cert_ttl_secs"),
            "{err}"
        );
    }

    #[test]
    fn invalid_values_name_their_key() {
        let mut c = Config::default();
        c.auth.jwt_secret = Some("short".into());
        assert!(c
            .validate()
            .expect_err("short")
            .to_string()
            .contains("auth.jwt_secret"));
        let c = Config {
            database_url: "mysql://x".into(),
            ..Default::default()
        };
        assert!(c
            .validate()
            .expect_err("mysql")
            .to_string()
            .contains("database_url"));
        let mut c = Config::default();
        c.rest.cors_allowed_origins = vec!["https://ops.example.com/".into()];
        assert!(c
            .validate()
            .expect_err("path")
            .to_string()
            .contains("rest.cors_allowed_origins"));
        let mut c = Config::default();
        c.auth.login_max_failures = 0;
        assert!(c
            .validate()
            .expect_err("zero")
            .to_string()
            .contains("auth.login_max_failures"));
        let err = Config::default()
            .apply_env(|k| (k == env::HTTP_LISTEN).then(|| "nope".into()))
            .expect_err("bad addr");
        assert!(err.to_string().contains(env::HTTP_LISTEN));
    }
}
