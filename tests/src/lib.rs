//! End-to-end test sandbox: a fleet PKI, a database (a SQLite file, or a
//! fresh PostgreSQL database when `SCO_TEST_POSTGRES_URL` is set), and the
//! real `sco-control-plane` and `sco-agent` binaries as child processes on
//! ephemeral 127.0.0.1 ports.
//!
//! The binaries must be built first (`cargo build --workspace --bins`), which
//! the README's test command does.
//!
//! Long (about 770 lines) because it is the one sandbox every end-to-end test uses: certificates,
//! databases, configs and the processes, in one place.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sco_control_plane::pki::{self, Ca};
use serde_json::Value;
use sqlx::Row;
use time::OffsetDateTime;

pub const POSTGRES_ENV: &str = "SCO_TEST_POSTGRES_URL";

/// `quic` runs every agent the sandbox configures over QUIC (`quic://` endpoints); anything
/// else, or unset, over gRPC on TCP. Sandbox control planes always listen on both.
pub const TRANSPORT_ENV: &str = "SCO_TEST_TRANSPORT";

/// Whether the sandbox's agents use QUIC ([`TRANSPORT_ENV`]).
pub fn agents_use_quic() -> bool {
    std::env::var(TRANSPORT_ENV).is_ok_and(|t| t.eq_ignore_ascii_case("quic"))
}

/// How an agent of this run reaches the control plane whose agent port is `grpc_addr`: that
/// address (gRPC over TCP), or `quic://` and the same port number over UDP, where sandbox
/// control planes listen for QUIC ([`Sandbox::replica_config`]).
pub fn agent_endpoint(grpc_addr: SocketAddr) -> String {
    if agents_use_quic() {
        quic_endpoint(grpc_addr)
    } else {
        grpc_addr.to_string()
    }
}

/// The transport the control plane logs for the streams of this run's agents
/// (`agent stream opened ... transport="quic"`).
pub fn agent_transport() -> &'static str {
    if agents_use_quic() {
        "quic"
    } else {
        "grpc"
    }
}

/// The QUIC endpoint of a sandbox control plane whose agent port is `grpc_addr`.
pub fn quic_endpoint(grpc_addr: SocketAddr) -> String {
    format!("quic://{grpc_addr}")
}

/// Password of the `admin` user every sandbox control plane bootstraps.
pub const ADMIN_PASSWORD: &str = "admin-password-1";

/// How long `wait_for` waits; raise it on slow machines.
pub fn patience() -> Duration {
    let secs = std::env::var("SCO_TEST_PATIENCE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(45);
    Duration::from_secs(secs)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// The PostgreSQL admin URL, or `None` to skip PostgreSQL variants. In CI
/// (`CI=true`) a missing URL is an error, so those tests cannot be skipped
/// silently.
pub fn postgres_url() -> Option<String> {
    match std::env::var(POSTGRES_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{POSTGRES_ENV} must point at a PostgreSQL server in CI")
        }
        _ => {
            eprintln!("skipping PostgreSQL variant: {POSTGRES_ENV} is not set");
            None
        }
    }
}

/// Creates a fresh PostgreSQL database for one test and returns its URL.
pub async fn fresh_postgres_database(admin_url: &str) -> String {
    sqlx::any::install_default_drivers();
    let name = format!("sco_test_{}", uuid_like());
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(admin_url)
        .await
        .expect("connect to PostgreSQL admin URL");
    // `name` is generated here from hex digits: nothing to inject.
    let create = sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"));
    sqlx::Executor::execute(&mut conn, create)
        .await
        .expect("create test database");
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("admin url has a database path");
    format!("{base}/{name}")
}

fn uuid_like() -> String {
    let n: u128 = rand_u128();
    format!("{n:032x}")
}

fn rand_u128() -> u128 {
    // Enough uniqueness for test database names without another dependency.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    t ^ (u128::from(std::process::id()) << 64)
}

/// A free 127.0.0.1 port, over TCP and UDP alike (a sandbox control plane listens for QUIC on
/// the UDP port of its gRPC port's number).
///
/// A port is handed out at most once per test process: the kernel may give a port it just
/// released to the next `bind(0)`, and two sandboxes of one test binary would then share it.
pub fn free_addr() -> SocketAddr {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..256 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind ephemeral port");
        let addr = l.local_addr().expect("local addr");
        if !given.contains(&addr.port()) && std::net::UdpSocket::bind(addr).is_ok() {
            given.push(addr.port());
            return addr;
        }
    }
    panic!("no port free over both TCP and UDP")
}

/// Whether something listens on `addr`. A connect alone is not proof: polling a port nobody
/// listens on, from the ephemeral range, can connect the socket to itself (TCP simultaneous
/// open), so a connection whose two ends are one address does not count.
pub fn listens(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .is_ok_and(|s| s.local_addr().ok() != s.peer_addr().ok())
}

/// Path of a workspace binary next to the running test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(|d| {
            if d.ends_with("deps") {
                d.parent()
            } else {
                Some(d)
            }
        })
        .expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    pub db_url: String,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub jwt_secret: String,
    /// TOML appended to every control-plane config this sandbox writes.
    pub control_plane_extra: String,
    /// Environment variables of every control plane this sandbox starts (`SCO_CP__...`
    /// overrides of keys its config already sets).
    pub control_plane_env: Vec<(String, String)>,
}

impl Sandbox {
    /// `None` when the PostgreSQL variant is skipped.
    pub async fn new(db: Db) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki_dir = dir.path().join("pki");
        let ca = pki::ensure_dev_pki(&pki_dir).expect("dev pki");
        let db_url = match db {
            Db::Sqlite => sco_control_plane::store::sqlite_url(dir.path()),
            Db::Postgres => fresh_postgres_database(&postgres_url()?).await,
        };
        Some(Self {
            dir,
            ca,
            db_url,
            grpc_addr: free_addr(),
            http_addr: free_addr(),
            jwt_secret: "test-secret-test-secret-test-secret-0123".into(),
            control_plane_extra: String::new(),
            control_plane_env: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    pub fn control_plane_config(&self) -> PathBuf {
        self.replica_config("control-plane", self.grpc_addr, self.http_addr)
    }

    /// Config of a control-plane replica sharing this sandbox's database and PKI.
    pub fn replica_config(
        &self,
        name: &str,
        grpc_addr: SocketAddr,
        http_addr: SocketAddr,
    ) -> PathBuf {
        let path = self.path().join(format!("{name}.toml"));
        let text = format!(
            "grpc_listen = \"{}\"\nquic_listen = \"{}\"\nhttp_listen = \"{}\"\ndata_dir = \"{}\"\n\
             database_url = \"{}\"\n\
             [auth]\njwt_secret = \"{}\"\n[agents]\nheartbeat_secs = 1\ndead_after_secs = 4\n{}\n",
            grpc_addr,
            // the same port number over UDP: TCP and UDP ports are apart
            grpc_addr,
            http_addr,
            self.path().display(),
            self.db_url,
            self.jwt_secret,
            self.control_plane_extra
        );
        std::fs::write(&path, text).expect("write control plane config");
        path
    }

    /// A file holding [`ADMIN_PASSWORD`], for `SCO_BOOTSTRAP_ADMIN_PASSWORD_FILE`.
    pub fn admin_password_file(&self) -> PathBuf {
        let path = self.path().join("admin.password");
        std::fs::write(&path, format!("{ADMIN_PASSWORD}\n")).expect("write admin password file");
        path
    }

    /// `sco-control-plane serve --config CONFIG` with the first admin (`admin`,
    /// [`ADMIN_PASSWORD`]) bootstrapped from a password file, as an operator would.
    pub fn serve_command(&self, binary: &Path, config: &Path) -> Command {
        self.serve_with(Command::new(binary), config)
    }

    /// [`Sandbox::serve_command`] after what `cmd` already holds: the binary run under a
    /// wrapper, e.g. `prlimit --nofile=N -- BINARY` or `taskset -c 0 BINARY`.
    pub fn serve_with(&self, mut cmd: Command, config: &Path) -> Command {
        cmd.args(["serve", "--config"])
            .arg(config)
            .env(
                sco_control_plane::config::env::BOOTSTRAP_ADMIN_PASSWORD_FILE,
                self.admin_password_file(),
            )
            .envs(self.control_plane_env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    pub fn start_control_plane(&self) -> Proc {
        self.start_replica("control-plane", self.grpc_addr, self.http_addr)
    }

    /// Starts a control-plane process; replicas share database and PKI.
    pub fn start_replica(&self, name: &str, grpc_addr: SocketAddr, http_addr: SocketAddr) -> Proc {
        self.start_replica_with(name, grpc_addr, http_addr, "")
    }

    /// [`Sandbox::start_replica`] with `extra` TOML appended to this replica's config only
    /// (after [`Sandbox::control_plane_extra`], so it must not repeat one of its sections).
    pub fn start_replica_with(
        &self,
        name: &str,
        grpc_addr: SocketAddr,
        http_addr: SocketAddr,
        extra: &str,
    ) -> Proc {
        let config = self.replica_config(name, grpc_addr, http_addr);
        if !extra.is_empty() {
            let mut text = std::fs::read_to_string(&config).expect("read replica config");
            text.push_str(extra);
            std::fs::write(&config, text).expect("write replica config");
        }
        let proc = Proc::spawn(
            name,
            &mut self.serve_command(&bin("sco-control-plane"), &config),
            &self.path().join(format!("{name}.log")),
        );
        wait_until("control plane answers /health", || listens(http_addr));
        proc
    }

    /// Writes certificate files for an agent and returns their directory.
    pub fn agent_files(&self, id: &str) -> PathBuf {
        let dir = self.path().join(format!("agent-{id}"));
        std::fs::create_dir_all(&dir).expect("agent dir");
        let now = OffsetDateTime::now_utc();
        let (cert, key) = self
            .ca
            .issue_agent(
                id,
                now - time::Duration::minutes(5),
                now + time::Duration::days(1),
            )
            .expect("issue agent cert");
        std::fs::write(dir.join("agent.pem"), cert).expect("write cert");
        std::fs::write(dir.join("agent.key"), key).expect("write key");
        std::fs::write(dir.join("ca.pem"), &self.ca.cert_pem).expect("write ca");
        // The fleet's policy verifying key travels with the PKI.
        let key = self.path().join("pki").join("policy.pub");
        if key.exists() {
            std::fs::copy(&key, dir.join("policy.pub")).expect("copy policy key");
        }
        dir
    }

    pub fn agent_config(&self, id: &str) -> PathBuf {
        let dir = self.agent_files(id);
        let path = dir.join("agent.toml");
        let text = format!(
            "[agent]\ndata_dir = \"{d}/data\"\ninterval_ms = 200\nrollup_secs = 1\nprocess_interval_secs = 2\n\
             [agent.labels]\nenv = \"test\"\n\
             [server]\nendpoints = [\"{addr}\"]\nserver_name = \"localhost\"\nca = \"{d}/ca.pem\"\n\
             cert = \"{d}/agent.pem\"\nkey = \"{d}/agent.key\"\nheartbeat_secs = 1\ndead_after_secs = 4\n\
             backoff_initial_ms = 100\nbackoff_max_ms = 1000\n",
            d = dir.display(),
            addr = agent_endpoint(self.grpc_addr)
        );
        std::fs::write(&path, text).expect("write agent config");
        path
    }

    pub fn start_agent(&self, id: &str) -> Proc {
        self.start_agent_with(id, "")
    }

    /// Starts an agent whose config gets `extra` TOML appended (e.g. a
    /// `[detect]` section) when it is first written.
    pub fn start_agent_with(&self, id: &str, extra: &str) -> Proc {
        let config = self.path().join(format!("agent-{id}/agent.toml"));
        let config = if config.exists() {
            config
        } else {
            let path = self.agent_config(id);
            let mut text = std::fs::read_to_string(&path).expect("read agent config");
            text.push_str(extra);
            std::fs::write(&path, text).expect("write agent config");
            path
        };
        Proc::spawn(
            &format!("agent {id}"),
            Command::new(bin("sco-agent"))
                .args(["run", "--config"])
                .arg(&config),
            &self.path().join(format!("agent-{id}.log")),
        )
    }

    /// A gRPC channel to the control plane with a fresh certificate for agent `id` (valid an
    /// hour either side of now), for tests that speak the agent protocol by hand.
    pub async fn agent_channel(&self, id: &str) -> tonic::transport::Channel {
        use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
        let now = OffsetDateTime::now_utc();
        let (cert, key) = self
            .ca
            .issue_agent(
                id,
                now - time::Duration::hours(1),
                now + time::Duration::hours(1),
            )
            .expect("issue");
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca.cert_pem))
            .identity(Identity::from_pem(cert, key))
            .domain_name("localhost");
        Endpoint::from_shared(format!("https://{}", self.grpc_addr))
            .expect("uri")
            .tls_config(tls)
            .expect("tls")
            .connect()
            .await
            .expect("connect")
    }

    pub async fn db(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::AnyPool::connect(&self.db_url)
            .await
            .expect("connect to test database")
    }

    /// Logs in as the first admin, which every control plane of the sandbox bootstraps at
    /// start ([`Sandbox::serve_command`]).
    pub async fn admin_token(&self) -> String {
        self.login("admin", ADMIN_PASSWORD).await
    }

    pub async fn login(&self, username: &str, password: &str) -> String {
        login_at(&self.base_url(), username, password).await
    }

    pub async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .get(format!("{}{}", self.base_url(), path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

impl Sandbox {
    /// POSTs JSON; returns status and JSON body.
    pub async fn post(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}{}", self.base_url(), path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Registers a user with `role` (as the admin holding `admin_token`) and logs them in;
    /// returns their access token.
    pub async fn add_user(&self, admin_token: &str, name: &str, role: &str) -> String {
        let password = "a-long-password-1";
        let (status, body) = self
            .post(
                admin_token,
                "/auth/register",
                &serde_json::json!({"username": name, "password": password, "role": role}),
            )
            .await;
        assert_eq!(status, 201, "register {name}: {body}");
        self.login(name, password).await
    }

    /// Any method with an optional JSON body; returns status and JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}{}", self.base_url(), path))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POSTs a text body (a YAML policy); returns status and JSON body.
    pub async fn post_text(&self, token: &str, path: &str, text: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}{}", self.base_url(), path))
            .bearer_auth(token)
            .header("content-type", "application/yaml")
            .body(text.to_string())
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Posts a policy and rolls it out to every targeted host at once;
    /// returns the revision.
    pub async fn publish_policy(&self, token: &str, yaml: &str) -> i64 {
        let (status, body) = self.post_text(token, "/policies", yaml).await;
        assert!(status == 201 || status == 200, "{status} {body}");
        let name = body["policy"]["name"].as_str().expect("name").to_string();
        let revision = body["policy"]["revision"].as_i64().expect("revision");
        let (status, body) = self
            .post(
                token,
                &format!("/policies/{name}/rollout"),
                &serde_json::json!({"revision": revision, "canary_percent": 0}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        revision
    }

    /// Waits until `host` reports `revision` of policy `name` in force.
    pub async fn wait_policy_applied(&self, token: &str, name: &str, host: &str, revision: i64) {
        wait_for(
            &format!("{host} to apply {name} revision {revision}"),
            || async {
                let (_, body) = self.get(token, &format!("/policies/{name}/status")).await;
                body["hosts"].as_array()?.iter().find(|h| {
                    h["host_id"] == host && h["applied_revision"] == revision && h["error"] == ""
                })?;
                Some(())
            },
        )
        .await
    }

    /// Actions of a host, newest first.
    pub async fn actions(&self, token: &str, host: &str) -> Vec<Value> {
        let (_, body) = self
            .get(token, &format!("/remediation/actions?host={host}"))
            .await;
        body["actions"].as_array().cloned().unwrap_or_default()
    }
}

/// Stored rollup messages of one host: (seq, window start, window end),
/// ordered by seq. None yet while the control plane
/// that was just started has not created its tables (its migrations run at
/// start, and a test may poll before they did).
pub async fn stored_windows(pool: &sqlx::AnyPool, host: &str) -> Vec<(i64, i64, i64)> {
    let rows = match sqlx::query(
        "SELECT seq, window_start_ms AS s, window_end_ms AS e FROM rollup_windows
         WHERE host_id = $1 ORDER BY seq",
    )
    .bind(host)
    .fetch_all(pool)
    .await
    {
        Ok(rows) => rows,
        Err(sqlx::Error::Database(e))
            if e.code().as_deref() == Some("42P01") || e.message().contains("no such table") =>
        {
            Vec::new()
        }
        Err(e) => panic!("query rollups: {e:?}"),
    };
    rows.iter()
        .map(|r| {
            (
                r.get::<i64, _>("seq"),
                r.get::<i64, _>("s"),
                r.get::<i64, _>("e"),
            )
        })
        .collect()
}

/// Windows that were stored more than once (must be none).
pub async fn duplicated_windows(pool: &sqlx::AnyPool, host: &str) -> Vec<i64> {
    let rows = sqlx::query(
        "SELECT window_start_ms, COUNT(*) AS n FROM rollup_windows
         WHERE host_id = $1 GROUP BY window_start_ms HAVING COUNT(*) > 1",
    )
    .bind(host)
    .fetch_all(pool)
    .await
    .expect("query duplicates");
    rows.iter()
        .map(|r| r.get::<i64, _>("window_start_ms"))
        .collect()
}

/// Logs in at the REST API under `base` (`http://host:port`); the access token.
pub async fn login_at(base: &str, username: &str, password: &str) -> String {
    let response: Value = reqwest::Client::new()
        .post(format!("{base}/auth/login"))
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login json");
    response["token"]
        .as_str()
        .expect("token in login response")
        .to_string()
}

/// Polls `check` until it returns true or patience runs out.
pub fn wait_until(what: &str, check: impl FnMut() -> bool) {
    wait_until_longer(what, Duration::ZERO, check);
}

/// [`wait_until`] with `extra` on top of the patience, for waits whose length
/// the test itself sets (a detector warm-up).
pub fn wait_until_longer(what: &str, extra: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + patience() + extra;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting until {what}");
}

/// Async version of [`wait_until`], returning the first `Some`.
pub async fn wait_for<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match try_wait_for(check).await {
        Some(v) => v,
        None => panic!("timed out waiting for {what}"),
    }
}

/// [`wait_for`] that returns None when patience runs out, so the caller can
/// say what it saw instead.
pub async fn try_wait_for<T, F, Fut>(check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    try_wait_for_longer(Duration::ZERO, check).await
}

/// [`wait_for`] with `extra` on top of the patience, for waits whose length the test itself
/// sets (a verification window, a process that takes its time to reach its size).
pub async fn wait_for_longer<T, F, Fut>(what: &str, extra: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match try_wait_for_longer(extra, check).await {
        Some(v) => v,
        None => panic!("timed out waiting for {what}"),
    }
}

/// [`try_wait_for`] with `extra` on top of the patience.
pub async fn try_wait_for_longer<T, F, Fut>(extra: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + patience() + extra;
    while Instant::now() < deadline {
        if let Some(v) = check().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// A child process that is killed when dropped; its output goes to a log
/// file that is printed if the test fails.
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Self {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let err = out.try_clone().expect("log file clone");
        let child = cmd
            .env("SCO_LOG", "info,sco_agent=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Self {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {} failed", self.name);
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait()
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + patience();
        let child = self.child.as_mut().expect("process still owned");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit:\n{}",
                self.name,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        std::fs::read_to_string(&self.log).is_ok_and(|t| t.contains(needle))
    }

    /// The last 60 lines of the log that are not DEBUG or TRACE (per-tick
    /// chatter would push out what explains a failure).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains(" DEBUG ") && !l.contains(" TRACE "))
            .collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.name, self.log_tail());
        }
        self.kill();
    }
}

/// Agent detection settings for the end-to-end tests that start CPU burners:
/// a 45 s warm-up (long enough for the host's ordinary background, the test
/// harness's own requests included, to be part of the baseline), one tick to
/// open, three quiet ticks to close and no hold after that (`merge_secs = 0`: the tests
/// run several incidents a few seconds apart, each its own event; `anomaly.rs` tests the hold).
pub const BURNER_DETECT: &str = "[detect]\nwarmup_secs = 45\nmin_duration_secs = 1\nclear_secs = 3\nmerge_secs = 0\nupdate_every_secs = 2\ncontext_secs = 10\n";

/// Waits until an agent started with [`BURNER_DETECT`] has calibrated.
pub fn wait_calibrated(agent: &Proc) {
    wait_until_longer(
        "the detector has calibrated",
        Duration::from_secs(45),
        || agent.log_contains("detector calibrated"),
    );
}

static BURNER_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Tests of one binary that start CPU burners take turns, from before their agents
/// calibrate until they end: one test's quiet window must not be another's burst
/// (the libtest harness runs a binary's tests in parallel).
pub async fn burner_turn() -> tokio::sync::MutexGuard<'static, ()> {
    BURNER_TURN.lock().await
}

/// Busy-looping `sh` processes, killed when dropped.
pub struct Burners(Vec<Child>);

impl Burners {
    /// Twice as many busy loops as the machine has CPUs, so CPU time, CPU
    /// pressure and the run queue all move, however busy the host already
    /// is. Each command line carries `marker`.
    pub fn start(marker: &str) -> Self {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get() * 2);
        Self(
            (0..n)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done", marker])
                        .stdin(Stdio::null())
                        .spawn()
                        .expect("start a CPU burner")
                })
                .collect(),
        )
    }

    pub fn pids(&self) -> Vec<u32> {
        self.0.iter().map(Child::id).collect()
    }

    /// How many are still running.
    pub fn running(&mut self) -> usize {
        self.0
            .iter_mut()
            .map(|c| c.try_wait())
            .filter(|w| matches!(w, Ok(None)))
            .count()
    }
}

impl Drop for Burners {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Names the directory [`bin_from_env`] takes the binaries from (an absolute
/// path such as `/work/target/release`), so a debug test build can drive
/// release binaries.
pub const BIN_DIR_ENV: &str = "SCO_TEST_BIN_DIR";

/// [`bin`], unless [`BIN_DIR_ENV`] is set: then the binary in that directory.
pub fn bin_from_env(name: &str) -> PathBuf {
    match std::env::var_os(BIN_DIR_ENV) {
        Some(dir) if !dir.is_empty() => {
            let path = PathBuf::from(dir).join(name);
            assert!(
                path.exists(),
                "{} not found (from {BIN_DIR_ENV})",
                path.display()
            );
            path
        }
        _ => bin(name),
    }
}

impl Sandbox {
    /// [`Sandbox::start_control_plane`] with the binary [`bin_from_env`] finds.
    pub fn start_control_plane_from_env(&self) -> Proc {
        let config = self.control_plane_config();
        let proc = Proc::spawn(
            "control-plane",
            &mut self.serve_command(&bin_from_env("sco-control-plane"), &config),
            &self.path().join("control-plane.log"),
        );
        let addr = self.http_addr;
        wait_until("control plane answers /health", || listens(addr));
        proc
    }

    /// [`Sandbox::start_agent_with`] for a new agent, with the binary
    /// [`bin_from_env`] finds.
    pub fn start_agent_from_env(&self, id: &str, extra: &str) -> Proc {
        let config = self.agent_config(id);
        let mut text = std::fs::read_to_string(&config).expect("read agent config");
        text.push_str(extra);
        std::fs::write(&config, text).expect("write agent config");
        Proc::spawn(
            &format!("agent {id}"),
            Command::new(bin_from_env("sco-agent"))
                .args(["run", "--config"])
                .arg(&config),
            &self.path().join(format!("agent-{id}.log")),
        )
    }
}
