//! The SmartCloudOps control plane.
//!
//! - [`config`]: TOML configuration, environment overrides and checks.
//! - [`fleet`]: the domain: hosts, streams, ingest rules. No gRPC, HTTP or
//!   SQL types in it.
//! - [`grpc`]: the agent-facing edge: mTLS, identity from the client
//!   certificate, the `Connect` stream; protobuf conversion in `grpc::pb`.
//! - [`http`]: the REST API (axum) with JWT auth and roles.
//! - [`chatops`]: questions in plain words (`/query`), answered and acted on through the
//!   fleet's services under the caller's role.
//! - [`notify`]: alerts to people (Slack, webhooks, PagerDuty, e-mail), silences, acks.
//! - [`auth`]: users, roles, argon2 hashes, JWTs.
//! - [`store`]: sqlx persistence on SQLite or PostgreSQL.
//! - [`pki`]: the fleet CA and certificate issuing.
//! - [`telemetry`]: the control plane's own Prometheus metrics.
//! - [`limits`] and [`load`]: how many agent streams this process takes (the open-file limit)
//!   and whether it takes new ones now (the runtime's scheduling lag).
//!
//! [`run`] serves both listeners until the shutdown future completes.

pub mod accounts;
pub mod auth;
pub mod chatops;
pub mod config;
pub mod domain;
pub mod error;
pub mod fleet;
pub mod grpc;
pub mod http;
pub mod limits;
pub mod load;
pub mod notify;
pub mod pki;
pub mod runbooks;
pub mod store;
pub mod telemetry;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

pub use config::Config;
use store::Store;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How often notifications are routed and due ones sent.
const NOTIFY_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("grpc server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("http server: {0}")]
    Http(std::io::Error),
    #[error("{0}")]
    Auth(#[from] auth::AuthError),
    #[error("anomaly model: {0}")]
    Model(#[from] sco_models::ModelError),
    #[error(transparent)]
    RestTls(#[from] http::tls::TlsError),
    #[error(transparent)]
    Quic(#[from] grpc::quic::QuicError),
}

fn read(path: &Path) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|source| ServeError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The JWT secret from config or environment, else the one persisted in the
/// data directory, else a new random one persisted there.
pub fn jwt_secret(config: &Config) -> Result<Vec<u8>, ServeError> {
    if let Some(s) = &config.auth.jwt_secret {
        return Ok(s.as_bytes().to_vec());
    }
    let path = config.data_dir.join("jwt.secret");
    if path.exists() {
        let text = String::from_utf8(read(&path)?).unwrap_or_default();
        if let Ok(secret) = hex::decode(text.trim()) {
            if secret.len() >= 32 {
                return Ok(secret);
            }
        }
        tracing::warn!(path = %path.display(), "jwt secret file is invalid; generating a new one");
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServeError::Io {
        path: config.data_dir.clone(),
        source,
    })?;
    let secret: [u8; 32] = rand::random();
    pki::write_private(&path, &hex::encode(secret)).map_err(|e| ServeError::Io {
        path: path.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(secret.to_vec())
}

/// Creates the `admin` user when no admin exists. Returns the password when
/// it was generated here (it is shown once and never stored in clear).
pub async fn bootstrap_admin(
    store: &Store,
    password: Option<String>,
) -> Result<Option<String>, ServeError> {
    if store.admin_exists().await? {
        return Ok(None);
    }
    let generated = password.is_none();
    let password = password.unwrap_or_else(|| {
        use rand::distr::{Alphanumeric, SampleString};
        Alphanumeric.sample_string(&mut rand::rng(), 20)
    });
    let hash = auth::hash_password(&password)?;
    let user = auth::User {
        id: uuid::Uuid::new_v4().to_string(),
        username: "admin".into(),
        role: auth::Role::Admin,
        created_at_ms: fleet::now_ms(),
    };
    store.create_user(&user, &hash).await?;
    Ok(generated.then_some(password))
}

/// Serves gRPC (agents, mTLS; over QUIC too when `quic_listen` is set) and REST until `shutdown` completes, then
/// stops accepting, closes agent streams, finishes in-flight requests and
/// closes the database.
pub async fn run(
    config: Config,
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let store = Store::connect(&config.database_url()).await?;
    let telemetry = Arc::new(telemetry::Telemetry::default());
    let mut fleet = fleet::Fleet::builder(store.clone(), telemetry.clone());
    // Only a control plane holding the CA key can enroll and renew agents;
    // one using an external CA still serves agents with certificates it issued.
    if pki::PkiPaths::new(&config.pki_dir()).ca_key.exists() && config.tls.ca_cert.is_none() {
        let ca =
            pki::Ca::load(&pki::PkiPaths::new(&config.pki_dir())).map_err(|e| ServeError::Io {
                path: config.pki_dir(),
                source: std::io::Error::other(e.to_string()),
            })?;
        fleet = fleet.with_ca(ca, Duration::from_secs(config.enrollment.cert_ttl_secs));
    }
    let signer = pki::PolicySigner::ensure(&config.pki_dir()).map_err(|e| ServeError::Io {
        path: config.pki_dir(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let max_streams = limits::max_streams(config.replicas.max_streams);
    if config.replicas.max_streams == 0 {
        tracing::info!(
            max_streams,
            "agent streams held at most, from the open-file limit (replicas.max_streams = 0)"
        );
    }
    let fleet = Arc::new(
        fleet
            .with_policy_signer(signer)
            .with_proposal_ttl(Duration::from_secs(config.remediation.proposal_ttl_secs))
            .with_group_commit()
            .with_rollup_retention(config.retention.rollup_age())
            .with_replica(fleet::ReplicaOptions {
                advertise: config.advertised_grpc(),
                advertise_quic: config.advertised_quic(),
                max_streams: usize::try_from(max_streams).unwrap_or(usize::MAX),
                max_lag: config.replicas.max_lag(),
                lease_ttl: config.replicas.lease_ttl(config.remediation.tick_ms),
            })
            .build(),
    );
    let tokens = Arc::new(auth::Tokens::new(
        &jwt_secret(&config)?,
        config.auth.token_ttl_secs,
    ));
    let tls = grpc::tls_config(
        &read(&config.ca_cert())?,
        &read(&config.server_cert())?,
        &read(&config.server_key())?,
    );
    let heartbeat = Duration::from_secs(config.agents.heartbeat_secs);
    let dead_after = Duration::from_secs(config.agents.dead_after_secs);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let svc = grpc::AgentSvc::new(fleet.clone(), heartbeat, dead_after, stop_rx.clone());
    // The same agent service over QUIC, when `quic_listen` is set: a second tonic server whose
    // connections are QUIC streams (QUIC did the TLS, so it has no TLS of its own).
    let quic = match config.quic_listen {
        Some(addr) => {
            let endpoint = grpc::quic::bind(
                addr,
                grpc::quic::server_config(
                    &read(&config.ca_cert())?,
                    &read(&config.server_cert())?,
                    &read(&config.server_key())?,
                    heartbeat,
                    dead_after,
                )?,
            )?;
            tracing::info!(addr = %endpoint.local_addr().unwrap_or(addr), "agents over QUIC on quic_listen");
            let server = tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(heartbeat))
                .http2_keepalive_timeout(Some(dead_after))
                .add_service(
                    grpc::AgentSvc::new(fleet.clone(), heartbeat, dead_after, stop_rx.clone())
                        .into_server(),
                )
                .serve_with_incoming_shutdown(
                    grpc::quic::incoming(endpoint.clone()),
                    stopped(stop_rx.clone()),
                );
            Some((endpoint, tokio::spawn(server)))
        }
        None => None,
    };
    let grpc_server = tonic::transport::Server::builder()
        .tls_config(tls)?
        .http2_keepalive_interval(Some(heartbeat))
        .http2_keepalive_timeout(Some(dead_after))
        .add_service(svc.into_server())
        .add_service(grpc::EnrollSvc::new(fleet.clone()).into_server())
        .serve_with_incoming_shutdown(
            TcpListenerStream::new(grpc_listener),
            stopped(stop_rx.clone()),
        );
    let accounts = Arc::new(accounts::Accounts::new(store.clone(), tokens, &config));
    let stale_after_ms = (dead_after.as_millis() as i64) * 2;
    let runbooks = Arc::new(runbooks::Runbooks::new(store.clone()));
    match runbooks.seed(domain::now_ms()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(added = n, "starter runbooks added to the knowledge base"),
        Err(e) => tracing::warn!(error = %e, "cannot add the starter runbooks"),
    }
    let notifier = Arc::new(
        notify::Notifier::new(store.clone(), &config.notify)
            .map_err(|e| ServeError::Io {
                path: config.notify.ca_file.clone(),
                source: std::io::Error::other(e),
            })?
            // one holder name for all of this replica's leases, so its status can list them
            .with_holder(fleet.replicas.id()),
    );
    if !config.notify.channels.is_empty() {
        tracing::info!(channels = ?notifier.channel_names(), "notification channels set up");
    }
    let state = http::AppState {
        runbooks,
        notifier: notifier.clone(),
        chat: Arc::new(
            chatops::ChatOps::new(fleet.clone(), store.clone(), stale_after_ms)
                .with_slack(
                    config.slack.secret().map_err(|e| ServeError::Io {
                        path: config.slack.signing_secret_file.clone().unwrap_or_default(),
                        source: std::io::Error::other(e.to_string()),
                    })?,
                    config.slack.users.clone(),
                )
                .with_llm(llm_client(&config.llm)?),
        ),
        fleet: fleet.clone(),
        accounts: accounts.clone(),
        telemetry,
        model: Arc::new(sco_models::Model::shipped()?),
        started: Instant::now(),
        stale_after_ms,
        security: Arc::new(http::auth::Security::from_config(&config)),
    };
    let app = http::app(state);
    let http_task = if config.rest.tls {
        let rest_tls = http::tls::server_config(
            &read(&config.rest_tls_cert())?,
            &read(&config.rest_tls_key())?,
        )?;
        let server = http::tls::serve(http_listener, rest_tls, app, stopped(stop_rx.clone()));
        tokio::spawn(async move { server.await.map_err(ServeError::Http) })
    } else {
        // The peer address feeds the per-address login limit.
        let server = axum::serve(
            http_listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(stopped(stop_rx.clone()));
        tokio::spawn(async move { server.await.map_err(ServeError::Http) })
    };
    let grpc_task = tokio::spawn(grpc_server);
    let watcher = {
        let enrollment = fleet.enrollment.clone();
        let every = Duration::from_secs(config.enrollment.revocation_check_secs);
        let stop = stop_rx.clone();
        tokio::spawn(async move { enrollment.watch_revocations(every, stop).await })
    };

    let purges = {
        let stop = stop_rx.clone();
        tokio::spawn(async move { accounts.run_purges(stop).await })
    };
    let retention = {
        let retention = fleet.retention.clone();
        let every = Duration::from_secs(config.retention.sweep_secs);
        let stop = stop_rx.clone();
        tokio::spawn(async move { retention.run(every, stop).await })
    };
    let ticker = {
        let ticks = fleet.ticks.clone();
        let every = Duration::from_millis(config.remediation.tick_ms);
        let stop = stop_rx.clone();
        tokio::spawn(async move { ticks.run_ticks(every, stop).await })
    };

    let wake_listener = {
        let ticks = fleet.ticks.clone();
        let url = config.database_url();
        let stop = stop_rx.clone();
        tokio::spawn(async move { ticks.run_wake_listener(url, stop).await })
    };

    // the runtime's lag, measured from the start: new streams wait for it once it is late
    let load = {
        let replicas = fleet.replicas.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move { replicas.watch_load(stop).await })
    };

    let notifications = {
        let stop = stop_rx.clone();
        tokio::spawn(async move { notifier.run(NOTIFY_EVERY, stop).await })
    };

    let heartbeats = {
        let hosts = fleet.hosts.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            hosts
                .run_heartbeat_flush(fleet::HEARTBEAT_FLUSH_EVERY, stop)
                .await
        })
    };

    shutdown.await;
    tracing::info!("shutting down: closing agent streams and finishing requests");
    let _ = stop_tx.send(true);
    let drain = async {
        if let Ok(Err(e)) = grpc_task.await {
            tracing::warn!(error = %e, "grpc server ended with an error");
        }
        if let Ok(Err(e)) = http_task.await {
            tracing::warn!(error = %e, "http server ended with an error");
        }
        if let Some((endpoint, task)) = quic {
            if let Ok(Err(e)) = task.await {
                tracing::warn!(error = %e, "QUIC agent server ended with an error");
            }
            endpoint.close(0u32.into(), b"shutting down");
            endpoint.wait_idle().await;
        }
    };
    let _ = watcher.await;
    let _ = ticker.await;
    let _ = purges.await;
    let _ = retention.await;
    let _ = notifications.await;
    let _ = wake_listener.await;
    let _ = load.await;
    if tokio::time::timeout(Duration::from_secs(15), drain)
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing anyway");
    }
    let _ = heartbeats.await;
    fleet.ticks.release_leases().await;
    // The heartbeats heard while the streams closed.
    if let Err(e) = fleet.hosts.flush_heartbeats().await {
        tracing::warn!(error = %e, "cannot record the last heartbeats");
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The ChatOps LLM provider of `[llm]`, when it has a URL.
fn llm_client(c: &config::LlmSection) -> Result<Option<chatops::llm::LlmClient>, ServeError> {
    let Some(url) = &c.url else { return Ok(None) };
    let key = c.key().map_err(|e| ServeError::Io {
        path: c.api_key_file.clone().unwrap_or_default(),
        source: std::io::Error::other(e.to_string()),
    })?;
    // without the bundle an https provider fails each time and the parser answers: said once
    let ca = match std::fs::read(&c.ca_file) {
        Ok(pem) => Some(pem),
        Err(e) => {
            tracing::warn!(file = %c.ca_file.display(), error = %e,
                "llm.ca_file unreadable: an https provider will fail and the parser will answer");
            None
        }
    };
    let client = chatops::llm::LlmClient::new(
        url.clone(),
        c.model.clone(),
        key,
        std::time::Duration::from_millis(c.timeout_ms),
        ca.as_deref(),
    )
    .map_err(|e| ServeError::Io {
        path: c.ca_file.clone(),
        source: std::io::Error::other(e),
    })?;
    tracing::info!(url = %url, model = %c.model, "ChatOps LLM provider set up");
    Ok(Some(client))
}
