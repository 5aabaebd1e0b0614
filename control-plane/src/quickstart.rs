//! `sco-control-plane up`: the control plane and one local agent in one process, for a first
//! look on one machine. Part of the binary, not of the library: this is the only code of the
//! package that names the agent crate (feature `quickstart`, on by default; a server built
//! with `--no-default-features` contains no agent code).

use std::path::PathBuf;

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sco_control_plane::config::env;
use sco_control_plane::{pki, store::Store, Config};

use crate::{bind, shutdown_signal};

/// Runs until ctrl-c or TERM.
pub async fn up(data_dir: PathBuf) -> anyhow::Result<()> {
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
            .enrollment
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
        .and_then(|pem| CertificateDer::pem_slice_iter(&pem).next()?.ok())
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
    println!("  console     http://{http_addr}/console/");
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
