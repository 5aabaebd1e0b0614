#[cfg(feature = "quickstart")]
mod quickstart;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sco_control_plane::{pki, Config};
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
        #[arg(long, default_value = "./sco-data", env = sco_control_plane::config::env::DATA_DIR)]
        data_dir: PathBuf,
    },
    /// Run the control plane alone (agents connect from other machines).
    Serve {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a configuration file (and environment overrides) and exit.
    Validate {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Manage the development PKI.
    #[command(subcommand)]
    Pki(PkiCommand),
}

#[derive(Subcommand)]
enum PkiCommand {
    /// Create the CA and the server certificate in DIR unless they exist.
    Init {
        #[arg(long, default_value = "./sco-data/pki")]
        dir: PathBuf,
    },
    /// Issue a client certificate for an agent into OUT (agent.pem, agent.key, ca.pem).
    IssueAgent {
        #[arg(long, default_value = "./sco-data/pki")]
        dir: PathBuf,
        #[arg(long)]
        id: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 365)]
        days: i64,
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
            let (grpc, http) = bind(&config).await?;
            sco_control_plane::run(config, grpc, http, shutdown_signal()).await?;
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

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SCO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("SCO_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
