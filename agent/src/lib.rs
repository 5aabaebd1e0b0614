//! The SmartCloudOps host agent.
//!
//! - [`config`]: the TOML configuration, environment overrides and checks.
//! - [`collect`]: reads `/proc` (and `sysinfo` for mounts and processes) once
//!   per tick on a dedicated thread; turns counters into rates.
//! - [`detect`]: live anomaly detection with the shared detector of
//!   `sco-models`, event context at onset, model hot-swap.
//! - [`identity`]: enrollment with a one-time token and certificate renewal.
//! - [`rollup`]: per-window min/mean/max/last summaries of the samples.
//! - [`outbox`]: the durable, bounded sled queue every durable message passes
//!   through before it is sent.
//! - [`uplink`]: the mTLS gRPC stream to the control plane.
//! - [`remediate`]: typed allowlisted actions (restart a unit, stop a
//!   process, clean files, ...) under local safety rules, durable budgets,
//!   circuit breakers, verification and a report for every decision.
//! - [`pb`]: conversion of domain types to protobuf.
//!
//! [`run`] wires them together; the binary only parses the command line.

pub mod collect;
pub mod config;
pub mod detect;
pub mod identity;
pub mod outbox;
pub mod pb;
pub mod policy;
pub mod remediate;
pub mod rollup;
pub mod uplink;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Mutex, Notify};

pub use config::Config;
use sco_proto::v1::Hello;

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
}

/// What a running agent exposes to its caller.
pub struct Handle {
    /// True while the stream to the control plane is up.
    pub connected: watch::Receiver<bool>,
}

fn hello(config: &Config, run_started_ms: i64, model: &str) -> Hello {
    Hello {
        hostname: sysinfo::System::host_name().unwrap_or_default(),
        os: sysinfo::System::long_os_version().unwrap_or_default(),
        kernel: sysinfo::System::kernel_version().unwrap_or_default(),
        agent_version: VERSION.to_string(),
        labels: config.agent.labels.clone().into_iter().collect(),
        interval_ms: u32::try_from(config.agent.interval_ms).unwrap_or(u32::MAX),
        last_seq: 0,
        run_started_ms,
        model: model.to_string(),
        cert_not_after_ms: identity::cert_validity(&config.server.cert).map_or(0, |(_, na)| na),
    }
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
    let run_started_ms = uplink::now_ms();
    let mut live = if config.detect.enabled {
        Some(detect::LiveDetector::new(&config, run_started_ms)?)
    } else {
        None
    };
    let model = live.as_ref().map_or("", |d| d.model_name()).to_string();
    let outbox = Arc::new(Mutex::new(outbox));
    let new_data = Arc::new(Notify::new());
    let (connected_tx, connected_rx) = watch::channel(false);
    let (commands_tx, commands_rx) = mpsc::channel(64);
    let remediator =
        remediate::Remediator::with_db(config.remediate.clone(), outbox.lock().await.db())
            .map_err(|e| AgentError::Remediate(e.to_string()))?;
    let remediation = tokio::spawn(remediation_loop(
        remediator,
        commands_rx,
        outbox.clone(),
        new_data.clone(),
    ));
    let (stop_tx, stop_rx) = watch::channel(false);

    let uplink = uplink::Uplink {
        server: config.server.clone(),
        hello: hello(&config, run_started_ms, &model),
        outbox: outbox.clone(),
        new_data: new_data.clone(),
        connected: connected_tx,
        commands: commands_tx,
    };
    let renewal = tokio::spawn(identity::renewal_loop(
        config.server.clone(),
        stop_rx.clone(),
    ));
    let uplink = tokio::spawn(uplink.run(stop_rx));
    on_start(Handle {
        connected: connected_rx,
    });

    let (sample_tx, mut samples) = mpsc::channel(16);
    let collector = spawn_collector(&config, sample_tx);
    let mut roller = rollup::Roller::new(config.agent.rollup_secs as i64 * 1000);

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            sample = samples.recv() => {
                let Some(sample) = sample else { break };
                let changes = live.as_mut().map(|d| d.observe(&sample)).unwrap_or_default();
                for change in changes {
                    let Some(d) = live.as_mut() else { break };
                    let seq = outbox
                        .lock()
                        .await
                        .push_with(|seq| d.message(&change, seq, uplink::now_ms()))
                        .await?;
                    tracing::info!(seq, "anomaly event queued");
                    new_data.notify_one();
                }
                if let Some(r) = roller.push(sample) {
                    let mut o = outbox.lock().await;
                    let dropped = o.dropped_total();
                    let seq = o.push(pb::rollup_message(r, uplink::now_ms(), dropped)).await?;
                    drop(o);
                    tracing::debug!(seq, "rollup queued");
                    new_data.notify_one();
                }
            }
        }
    }
    tracing::info!("shutting down");
    drop(samples);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), uplink).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), renewal).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), remediation).await;
    outbox.lock().await.flush().await?;
    // The collector notices the closed channel at its next tick.
    drop(collector);
    Ok(())
}

/// Runs requests from the control plane one at a time through the local
/// safety rules, and queues each report durably. Ends when the uplink (the
/// only sender) is gone.
async fn remediation_loop(
    mut remediator: remediate::Remediator,
    mut commands: mpsc::Receiver<sco_proto::v1::ActionCommand>,
    outbox: Arc<Mutex<outbox::Outbox>>,
    new_data: Arc<Notify>,
) {
    while let Some(c) = commands.recv().await {
        let (decision, reason, report_json) =
            match serde_json::from_str::<remediate::Action>(&c.action_json) {
                Ok(action) => {
                    let mode = if c.mode == "execute" {
                        remediate::Mode::Execute
                    } else {
                        remediate::Mode::DryRun
                    };
                    let lease = (!c.lease_token.is_empty()).then(|| remediate::Lease {
                        token: c.lease_token.clone(),
                        expires_ms: c.lease_expires_ms,
                    });
                    let rule = if c.rule.is_empty() {
                        "manual".to_string()
                    } else {
                        c.rule.clone()
                    };
                    let report = remediator
                        .request(remediate::ActionRequest {
                            rule,
                            action,
                            mode,
                            lease,
                            cooldown_secs: 0,
                            max_per_hour: 0,
                        })
                        .await;
                    let decision = serde_json::to_value(report.decision)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_else(|| "failed".into());
                    (
                        decision,
                        report.reason.clone().unwrap_or_default(),
                        serde_json::to_string(&report).unwrap_or_default(),
                    )
                }
                Err(e) => (
                    "refused".to_string(),
                    format!("unknown or invalid action: {e}"),
                    String::new(),
                ),
            };
        tracing::info!(request = %c.id, %decision, %reason, "remediation request handled");
        let message = sco_proto::v1::AgentMessage {
            seq: 0,
            produced_at_ms: uplink::now_ms(),
            body: Some(sco_proto::v1::agent_message::Body::ActionReport(
                sco_proto::v1::ActionReport {
                    command_id: c.id,
                    rule: c.rule,
                    decision,
                    reason,
                    report_json,
                },
            )),
        };
        match outbox.lock().await.push(message).await {
            Ok(_) => new_data.notify_one(),
            Err(e) => tracing::error!(error = %e, "cannot queue a remediation report"),
        }
    }
}

/// Collection runs on its own thread: `/proc` reads are blocking I/O, and a
/// fixed schedule (not sleep-after-work) keeps ticks from drifting.
fn spawn_collector(
    config: &Config,
    tx: mpsc::Sender<collect::Sample>,
) -> std::thread::JoinHandle<()> {
    let interval = config.interval();
    let proc_root = config.agent.proc_root.clone();
    let top_n = config.agent.top_processes;
    let process_every = Duration::from_secs(config.agent.process_interval_secs);
    std::thread::Builder::new()
        .name("sco-collect".into())
        .spawn(move || {
            let mut collector = collect::Collector::new(&proc_root, top_n, process_every);
            let mut next = Instant::now();
            loop {
                let sample = collector.sample(uplink::now_ms());
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
