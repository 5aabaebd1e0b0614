#[cfg(feature = "quickstart")]
mod quickstart;

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use sco_control_plane::config::env;
use sco_control_plane::store::Store;
use sco_control_plane::{accounts, pki, Config};
use sco_proto::process::{init_tracing, shutdown_signal};
use sco_proto::systemd;
use time::{Duration, OffsetDateTime};
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(
    name = "sco-control-plane",
    version,
    about = "SmartCloudOps control plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Quickstart on one machine: control plane on SQLite, a development PKI,
    /// one local agent over mTLS, and an admin login printed once.
    #[cfg(feature = "quickstart")]
    Up {
        /// Directory for the PKI, the SQLite database, the JWT secret and the local
        /// agent's identity; reused on the next run.
        #[arg(long, default_value = "./sco-data", env = sco_control_plane::config::env::DATA_DIR)]
        data_dir: PathBuf,
    },
    /// Run the control plane alone (agents connect from other machines).
    ///
    /// Registration over REST needs an admin. The first admin comes from
    /// `user add`, or from SCO_BOOTSTRAP_ADMIN_PASSWORD_FILE (a file holding its
    /// password) and SCO_BOOTSTRAP_ADMIN_USERNAME (default admin), used at start
    /// only while no admin exists.
    Serve {
        /// Configuration file (TOML); without it, the defaults and the SCO_*
        /// environment overrides apply.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a configuration file (and environment overrides) and exit.
    Validate {
        /// Configuration file (TOML); without it, the defaults and the SCO_*
        /// environment overrides are checked.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Manage the development PKI.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Manage users in the configured database directly, on the control-plane
    /// host (no token needed: whoever can write the database may).
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Subcommand)]
enum PkiCommand {
    /// Create the CA and the server certificate in DIR unless they exist.
    Init {
        /// PKI directory: ca.pem, ca.key, server.pem, server.key (naming
        /// localhost and 127.0.0.1), policy.key and policy.pub.
        #[arg(long, default_value = "./sco-data/pki")]
        dir: PathBuf,
    },
    /// Issue a client certificate for an agent into OUT (agent.pem, agent.key, ca.pem).
    IssueAgent {
        /// PKI directory holding the CA (ca.pem, ca.key), made by `pki init`.
        #[arg(long, default_value = "./sco-data/pki")]
        dir: PathBuf,
        /// Agent id: the certificate's common name, which is the agent's identity.
        #[arg(long)]
        id: String,
        /// Directory to write agent.pem, agent.key (mode 0600) and ca.pem into.
        #[arg(long)]
        out: PathBuf,
        /// How long the certificate is valid, in days.
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user (the first one must be an admin). Run it as the user the
    /// service runs as, so that SQLite files it creates stay writable by the
    /// service (e.g. `runuser -u sco -- sco-control-plane user add ...`).
    Add {
        /// Configuration file naming the database, as for `serve`; without it,
        /// the defaults and the SCO_* environment overrides apply.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Login name: 3 to 64 letters, digits, and - _ . @
        #[arg(long)]
        username: String,
        /// The user's role.
        #[arg(long, value_parser = ["admin", "operator", "viewer"])]
        role: String,
        /// File holding the password (at least 10 characters; a final newline
        /// is not part of it), or - to read it from standard input. Never a
        /// command-line argument: other users can read those.
        #[arg(long)]
        password_file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Validate { config } = &cli.command {
        return match Config::load(config.as_deref()) {
            Ok(_) => {
                println!("config ok");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { config } => {
            let config = Config::load(config.as_deref())?;
            first_admin(&config).await?;
            let (grpc, http) = bind(&config).await?;
            // The database answered and both listeners are bound: connections made from now
            // on wait in the listen backlog until the servers accept them.
            systemd::ready(&format!(
                "agents (gRPC, mTLS) on {}, REST on {}",
                grpc.local_addr()?,
                http.local_addr()?
            ));
            let watchdog = tokio::spawn(systemd::watchdog(tokio::time::sleep));
            let shutdown = async {
                shutdown_signal().await;
                systemd::stopping();
            };
            let result = sco_control_plane::run(config, grpc, http, shutdown).await;
            watchdog.abort();
            result?;
        }
        Command::User(UserCommand::Add {
            config,
            username,
            role,
            password_file,
        }) => {
            let config = Config::load(config.as_deref())?;
            check_runs_as_data_dir_owner(&config)?;
            let password = read_password_file(&password_file)?;
            let store = Store::connect(&config.database_url())
                .await
                .context("opening the database")?;
            let added = accounts::add_user(&store, &username, &password, &role).await;
            store.close().await;
            let user = added?;
            println!(
                "user {} added with role {}",
                user.username,
                user.role.as_str()
            );
        }
        #[cfg(feature = "quickstart")]
        Command::Up { data_dir } => quickstart::up(data_dir).await?,
        Command::Pki(PkiCommand::Init { dir }) => {
            pki::ensure_dev_pki(&dir)?;
            println!("PKI ready in {}", dir.display());
        }
        Command::Pki(PkiCommand::IssueAgent { dir, id, out, days }) => {
            let ca = pki::Ca::load(&pki::PkiPaths::new(&dir))
                .context("loading the CA (run `pki init` first)")?;
            issue_agent_files(&ca, &id, &out, days)?;
            println!("agent certificate for {id} written to {}", out.display());
        }
        Command::Validate { .. } => unreachable!("handled before the runtime starts"),
    }
    Ok(())
}

/// Creates the first admin from the bootstrap variables when they are set and no admin exists
/// yet; without them, warns (once, at start) while no admin exists, since nobody can register
/// users until one does.
async fn first_admin(config: &Config) -> anyhow::Result<()> {
    let store = Store::connect(&config.database_url())
        .await
        .context("opening the database")?;
    let result = async {
        let admin_exists = store.admin_exists().await?;
        match std::env::var_os(env::BOOTSTRAP_ADMIN_PASSWORD_FILE) {
            Some(_) if admin_exists => {
                tracing::info!(
                    "an admin exists; {} is not needed any more",
                    env::BOOTSTRAP_ADMIN_PASSWORD_FILE
                );
            }
            Some(path) if !path.is_empty() => {
                let username = std::env::var(env::BOOTSTRAP_ADMIN_USERNAME)
                    .unwrap_or_else(|_| "admin".to_string());
                let password = read_password_file(Path::new(&path))
                    .with_context(|| format!("reading {}", env::BOOTSTRAP_ADMIN_PASSWORD_FILE))?;
                accounts::bootstrap_admin(&store, &username, &password)
                    .await
                    .with_context(|| {
                        format!(
                            "creating the first admin from {} and {}",
                            env::BOOTSTRAP_ADMIN_USERNAME,
                            env::BOOTSTRAP_ADMIN_PASSWORD_FILE
                        )
                    })?;
            }
            _ if !admin_exists => tracing::warn!("{}", accounts::NO_ADMIN_YET),
            _ => {}
        }
        anyhow::Ok(())
    }
    .await;
    store.close().await;
    result
}

/// A password from a file, or from standard input for `-`, without its final newline.
fn read_password_file(path: &Path) -> anyhow::Result<String> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the password from standard input")?;
        text
    } else {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read the password file {}", path.display()))?;
        if !meta.is_file() {
            bail!("password file {} is not a regular file", path.display());
        }
        if meta.mode() & 0o004 != 0 {
            tracing::warn!(path = %path.display(), "the password file is readable by every user; chmod o-r it");
        }
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the password file {}", path.display()))?
    };
    let password = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if password.is_empty() {
        bail!("password file {} is empty", path.display());
    }
    Ok(password.to_string())
}

/// SQLite creates its `-wal` and `-shm` files owned by whoever opens the database first: run
/// as another user (root, typically), `user add` would leave files the service cannot write.
fn check_runs_as_data_dir_owner(config: &Config) -> anyhow::Result<()> {
    if !config.database_url.is_empty() {
        return Ok(());
    }
    let Ok(dir) = std::fs::metadata(&config.data_dir) else {
        return Ok(());
    };
    // The owner of /proc/self is this process's effective user.
    let me = std::fs::metadata("/proc/self").map_or(dir.uid(), |m| m.uid());
    if me != dir.uid() {
        bail!(
            "{} belongs to uid {}, but this runs as uid {me}: the SQLite files it would create \
             could not be written by the service; run it as the owner of the data directory, \
             e.g. `runuser -u sco -- sco-control-plane user add ...`",
            config.data_dir.display(),
            dir.uid()
        );
    }
    Ok(())
}

pub(crate) async fn bind(config: &Config) -> anyhow::Result<(TcpListener, TcpListener)> {
    let grpc = TcpListener::bind(config.grpc_listen)
        .await
        .with_context(|| format!("cannot listen on {} (grpc_listen)", config.grpc_listen))?;
    let http = TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen on {} (http_listen)", config.http_listen))?;
    Ok((grpc, http))
}

fn issue_agent_files(ca: &pki::Ca, id: &str, out: &Path, days: i64) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let now = OffsetDateTime::now_utc();
    let (cert, key) = ca.issue_agent(id, now - Duration::minutes(5), now + Duration::days(days))?;
    std::fs::write(out.join("agent.pem"), cert)?;
    pki::write_private(&out.join("agent.key"), &key)?;
    std::fs::write(out.join("ca.pem"), &ca.cert_pem)?;
    Ok(())
}
