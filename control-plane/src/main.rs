use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use sco_control_plane::config::env;
use sco_control_plane::{pki, store::Store, Config};
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
    Up {
        #[arg(long, default_value = "./sco-data", env = env::DATA_DIR)]
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
        Command::Up { data_dir } => up(data_dir).await?,
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

async fn bind(config: &Config) -> anyhow::Result<(TcpListener, TcpListener)> {
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

async fn up(data_dir: PathBuf) -> anyhow::Result<()> {
    let mut config = Config::load(None)?;
    config.data_dir = data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let ca = pki::ensure_dev_pki(&config.pki_dir())?;

    let agent_dir = data_dir.join("agent");
    let files = sco_agent::identity::IdentityFiles::in_dir(&agent_dir);

    let store = Store::connect(&config.database_url()).await?;
    let password = std::env::var(env::ADMIN_PASSWORD).ok();
    let from_env = password.is_some();
    let generated = sco_control_plane::bootstrap_admin(&store, password).await?;
    // The local agent joins the way every agent does: a one-time token,
    // the CA pinned by fingerprint, a key generated on this host.
    let token = if files.cert.exists() {
        None
    } else {
        let fleet = sco_control_plane::fleet::Fleet::new(store.clone(), Default::default());
        let labels = [("role".to_string(), "quickstart".to_string())].into();
        let (_, token) = fleet
            .create_enrollment_token("quickstart", 600, 1, labels)
            .await?;
        Some(token)
    };
    store.close().await;

    let (grpc, http) = bind(&config).await?;
    let grpc_addr = grpc.local_addr()?;
    let http_addr = http.local_addr()?;
    let fingerprint = ca.fingerprint();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let pki_dir = config.pki_dir();
    let cp = tokio::spawn(sco_control_plane::run(
        config,
        grpc,
        http,
        stopped(stop_rx.clone()),
    ));
    if let Some(token) = token {
        let enrolled = sco_agent::identity::enroll(
            &grpc_addr.to_string(),
            &token,
            &fingerprint,
            Some("localhost"),
            &files,
        )
        .await
        .context("enrolling the local agent")?;
        println!("local agent enrolled as {}", enrolled.agent_id);
    }
    let agent_id = std::fs::read(&files.cert)
        .ok()
        .and_then(|pem| rustls_pemfile::certs(&mut pem.as_slice()).next()?.ok())
        .and_then(|der| pki::agent_id_from_der(der.as_ref()))
        .unwrap_or_else(|| "unknown".into());

    let mut agent_config = sco_agent::Config::from_toml(&format!(
        "[server]\nendpoints = [\"{grpc_addr}\"]\nserver_name = \"localhost\"\nca = \"ca.pem\"\ncert = \"agent.pem\"\nkey = \"agent.key\"\n"
    ))
    .map_err(anyhow::Error::msg)?;
    agent_config.agent.data_dir = agent_dir.clone();
    agent_config.server.ca = agent_dir.join("ca.pem");
    agent_config.server.cert = agent_dir.join("agent.pem");
    agent_config.server.key = agent_dir.join("agent.key");
    agent_config.validate()?;

    println!();
    println!("SmartCloudOps is up");
    println!("  REST API    http://{http_addr}   (try: curl http://{http_addr}/status)");
    println!(
        "  agent gRPC  {grpc_addr} (mTLS, fleet CA in {})",
        pki_dir.display()
    );
    println!("  CA sha256   {fingerprint}   (for sco-agent enroll --ca-sha256)");
    println!("  local agent {agent_id}");
    match (generated, from_env) {
        (Some(pw), _) => println!(
            "  admin login admin / {pw}   (shown once; set {} to choose it)",
            env::ADMIN_PASSWORD
        ),
        (None, true) => println!(
            "  admin login admin / (the password in {})",
            env::ADMIN_PASSWORD
        ),
        (None, false) => println!("  admin login admin / (the password printed on the first run)"),
    }
    println!("  data        {}", data_dir.display());
    println!("Press ctrl-c to stop.");
    println!();

    let agent = tokio::spawn(sco_agent::run(
        agent_config,
        stopped(stop_rx.clone()),
        |_| {},
    ));
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    // Agent first, so its last rollup can still be acknowledged.
    if let Ok(Err(e)) = agent.await {
        eprintln!("agent: {e}");
    }
    match cp.await {
        Ok(Err(e)) => bail!(e),
        Err(e) => bail!("control plane task failed: {e}"),
        Ok(Ok(())) => Ok(()),
    }
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

async fn shutdown_signal() {
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
