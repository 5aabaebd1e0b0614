//! The SmartCloudOps host agent.
//!
//! - [`config`]: the TOML configuration, environment overrides and checks.
//! - [`collect`]: reads the host's procfs, sysfs and mount table (`agent.proc_root`,
//!   `sys_root`, `root_fs`) once per tick on a dedicated thread; turns counters into
//!   rates; the process table.
//! - [`detect`]: live anomaly detection with the shared detector of
//!   `sco-models`, event context at onset, model hot-swap.
//! - [`fleet_model`]: models the fleet offers: resumable downloads, checked against the
//!   fleet key's signature and the signed manifest's sha256 before the detector loads them.
//! - [`host`]: host name, kernel and distribution for the hello and enrollment.
//! - [`identity`]: enrollment with a one-time token and certificate renewal.
//! - [`rollup`]: per-window min/mean/max/last summaries of the samples.
//! - [`outbox`]: the durable, bounded sled queue every durable message passes
//!   through before it is sent.
//! - [`uplink`]: the mTLS gRPC stream to the control plane.
//! - [`quic`]: the same stream over QUIC, for endpoints written `quic://host:port`.
//! - [`remediate`]: typed allowlisted actions (restart a unit, stop a
//!   process, clean files, ...) under local safety rules, durable budgets,
//!   circuit breakers, verification and a report for every decision.
//! - [`policy`]: signed fleet policies, kept in sled, and the rules that
//!   fire on anomalies and metric conditions.
//! - [`executor`]: applies policies, proposes fired rules, runs requests
//!   through the remediator and verifies them against live metrics.
//! - [`pipeline`]: what happens to each sample (detection, rules, rollups).
//! - [`pb`]: every protobuf conversion, out and in.
//! - [`requests`]: what the remediation task receives and sends, as the
//!   agent's own types.
//! - [`clock`]: the one wall clock.
//! - [`status`]: `status.json`, the detector state and liveness `sco-agent status`
//!   prints, and the counters the agent keeps about itself.
//! - [`exporter`]: the local `GET /health` and `GET /metrics` (Prometheus text, host
//!   metrics under node_exporter's names), off unless `[exporter] enabled`.
//!
//! [`run`] wires them together and feeds the collector's samples to the
//! pipeline; the binary only parses the command line.

pub mod clock;
pub mod collect;
pub mod config;
pub mod detect;
pub mod executor;
pub mod exporter;
pub mod fleet_model;
pub mod flight;
pub mod host;
pub mod identity;
pub mod outbox;
pub mod pb;
pub mod pipeline;
pub mod policy;
pub mod quic;
pub mod remediate;
pub mod requests;
pub mod rollup;
pub mod status;
pub mod uplink;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Mutex, Notify};

pub use config::Config;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Outbox(#[from] outbox::OutboxError),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Detect(#[from] detect::DetectError),
    #[error("remediation state: {0}")]
    Remediate(String),
    #[error("tls: {0}")]
    Tls(String),
    #[error("stream: {0}")]
    Stream(String),
    #[error("exporter: cannot listen on {addr} (exporter.listen): {source}")]
    Exporter {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// What a running agent exposes to its caller.
pub struct Handle {
    /// True while the stream to the control plane is up.
    pub connected: watch::Receiver<bool>,
}

/// Runs the agent until `shutdown` completes, then closes the stream and
/// flushes the outbox.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()>,
    on_start: impl FnOnce(Handle),
) -> Result<(), AgentError> {
    let data_dir = &config.agent.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|source| AgentError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    // Bound first: a taken port fails the start, before anything else is opened.
    let exporter_listener = if config.exporter.enabled {
        let addr = config.exporter.addr()?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| AgentError::Exporter { addr, source })?;
        tracing::info!(%addr, "health and metrics endpoint listening (GET /health, GET /metrics)");
        Some(listener)
    } else {
        None
    };
    let outbox = outbox::Outbox::open(
        &data_dir.join("outbox"),
        config.outbox.max_bytes,
        config.outbox.cache_bytes,
    )?;
    tracing::info!(
        pending = outbox.pending(),
        last_seq = outbox.last_seq(),
        dropped_total = outbox.dropped_total(),
        "outbox opened"
    );
    let run_started_ms = clock::now_ms();
    let db = outbox.db();
    let live = if config.detect.enabled {
        // the learnt state lives in the agent's one sled database, beside the outbox
        let tree = db
            .open_tree("detector")
            .map_err(|e| tracing::warn!(error = %e, "no detector state tree; it will not persist"))
            .ok();
        Some(detect::LiveDetector::new(&config, run_started_ms, tree)?)
    } else {
        None
    };
    let model = live.as_ref().map_or("", |d| d.model_name()).to_string();
    let (detector_tx, detector_rx) = watch::channel(
        live.as_ref()
            .map(|d| d.state(run_started_ms))
            .unwrap_or_default(),
    );
    // Written with detection off too: `sco-agent status` reads the pid from it.
    status::write(data_dir, &detector_tx.borrow(), None);
    let detector_seen = detector_tx.subscribe();
    let activity = Arc::new(status::Activity::new(run_started_ms));
    let outbox = Arc::new(Mutex::new(outbox));
    let new_data = Arc::new(Notify::new());
    let (connected_tx, connected_rx) = watch::channel(false);
    let link_connected = connected_rx.clone();
    let (commands_tx, commands_rx) = mpsc::channel(64);
    let remediator = remediate::Remediator::with_db(config.remediate.clone(), db.clone())
        .map_err(|e| AgentError::Remediate(e.to_string()))?
        .with_proc_root(config.agent.proc_root.clone());
    let key_path = config.server.policy_key_path();
    let key = match policy::read_key(&key_path) {
        Ok(k) => Some(k),
        Err(e) => {
            tracing::warn!(error = %e, "no policy verifying key: every policy will be refused");
            None
        }
    };
    let downloads = fleet_model::Downloads::new(data_dir.join("models"), key.clone());
    let (fleet_model_tx, mut fleet_model_rx) = watch::channel(downloads.restore());
    // a fleet model in force before a restart is loaded with the first sample
    fleet_model_rx.mark_changed();
    let policies = policy::store::PolicyStore::open(&db, key)
        .map_err(|e| AgentError::Remediate(format!("policies: {e}")))?;
    for (name, revision, _) in policies.iter() {
        tracing::info!(policy = name, revision, "policy in force");
    }
    let policies = Arc::new(std::sync::Mutex::new(policies));
    let (latest_tx, latest_rx) = watch::channel(executor::Latest::default());
    let (tuning_tx, tuning_rx) = watch::channel(None);
    let (triggers_tx, triggers_rx) = mpsc::channel(64);
    let remediation = tokio::spawn(
        executor::Executor {
            remediator,
            policies: policies.clone(),
            outbox: outbox.clone(),
            new_data: new_data.clone(),
            latest: latest_rx,
            tuning: tuning_tx,
            activity: activity.clone(),
        }
        .run(commands_rx, triggers_rx),
    );
    let (stop_tx, stop_rx) = watch::channel(false);

    let hello = pb::hello(&config, run_started_ms, &model);
    let spread_offset_ms = sco_proto::spread::offset_ms(&hello.hostname, config.spread_span_ms());
    let uplink = uplink::Uplink {
        server: config.server.clone(),
        spread_offset_ms: i64::try_from(spread_offset_ms).unwrap_or(0),
        hello,
        outbox: outbox.clone(),
        new_data: new_data.clone(),
        connected: connected_tx,
        commands: commands_tx,
        detector: detector_rx,
        activity: activity.clone(),
        downloads: std::sync::Mutex::new(downloads),
        fleet_model: fleet_model_tx,
        quic: quic::Sockets::default(),
    };
    let renewal = tokio::spawn(identity::renewal_loop(
        config.server.clone(),
        stop_rx.clone(),
    ));
    if let Some(listener) = exporter_listener {
        let sources = exporter::Sources {
            connected: connected_rx.clone(),
            detector: detector_seen.clone(),
            outbox: outbox.clone(),
            activity: activity.clone(),
            host: config.agent.host_paths(),
        };
        tokio::spawn(exporter::serve(listener, sources, stop_rx.clone()));
    }
    let uplink = tokio::spawn(uplink.run(stop_rx));
    on_start(Handle {
        connected: connected_rx,
    });

    let (sample_tx, mut samples) = mpsc::channel(16);
    let collector = spawn_collector(&config, sample_tx);

    let mut pipeline = pipeline::Pipeline {
        detect: config.detect.clone(),
        data_dir: data_dir.clone(),
        live,
        detector: detector_tx,
        tuning: tuning_rx,
        engine: policy::engine::Engine::default(),
        policies,
        latest: latest_tx,
        triggers: triggers_tx,
        roller: rollup::Roller::new(config.agent.rollup_secs as i64 * 1000),
        outbox: outbox.clone(),
        new_data,
        fleet_model: fleet_model_rx,
        model_reported: None,
    };
    // status.json is rewritten now and then even when nothing changed, so its age tells
    // `sco-agent status` whether this agent still makes progress.
    let mut refresh = tokio::time::interval(status::REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            sample = samples.recv() => {
                let Some(sample) = sample else { break };
                activity.sampled(sample.ts_ms);
                pipeline.on_sample(sample).await?;
            }
            _ = refresh.tick() => {
                let state = detector_seen.borrow().clone();
                let link = link_now(&link_connected, &outbox, &activity).await;
                status::write(data_dir, &state, Some(link));
            }
        }
    }
    tracing::info!("shutting down");
    pipeline.finish();
    drop(samples);
    drop(pipeline);
    let link = link_now(&link_connected, &outbox, &activity).await;
    let state = detector_seen.borrow().clone();
    status::write_stopped(data_dir, &state, Some(link));
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), uplink).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), renewal).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), remediation).await;
    outbox.lock().await.flush().await?;
    // The collector notices the closed channel at its next tick.
    drop(collector);
    Ok(())
}

/// Collection runs on its own thread: `/proc` reads are blocking I/O, and a
/// fixed schedule (not sleep-after-work) keeps ticks from drifting.
fn spawn_collector(
    config: &Config,
    tx: mpsc::Sender<collect::Sample>,
) -> std::thread::JoinHandle<()> {
    let interval = config.interval();
    let host = config.agent.host_paths();
    let top_n = config.agent.top_processes;
    let process_every = Duration::from_secs(config.agent.process_interval_secs);
    std::thread::Builder::new()
        .name("sco-collect".into())
        .spawn(move || {
            let mut collector = collect::Collector::new(&host, top_n, process_every);
            let mut next = Instant::now();
            loop {
                let sample = collector.sample(clock::now_ms());
                if tx.blocking_send(sample).is_err() {
                    return;
                }
                next += interval;
                let now = Instant::now();
                if next < now {
                    // We fell behind (suspend, overload): skip missed ticks.
                    next = now + interval;
                }
                std::thread::sleep(next - now);
            }
        })
        .expect("spawning a thread only fails when the OS is out of resources")
}

/// The link's figures for `status.json`, as `/health` reports them.
async fn link_now(
    connected: &watch::Receiver<bool>,
    outbox: &Mutex<outbox::Outbox>,
    activity: &status::Activity,
) -> status::Link {
    let (messages, dropped) = {
        let o = outbox.lock().await;
        (o.pending(), o.dropped_total())
    };
    status::Link::new(*connected.borrow(), messages, dropped, &activity.snapshot())
}
