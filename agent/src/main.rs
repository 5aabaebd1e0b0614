use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sco_agent::Config;
use sco_proto::process::{init_tracing, shutdown_signal};

#[derive(Parser)]
#[command(name = "sco-agent", version, about = "SmartCloudOps host agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Collect metrics and stream them to the control plane.
    Run {
        /// Agent configuration file (TOML); environment variables override it.
        #[arg(long, short, default_value = "/etc/sco-agent/agent.toml")]
        config: PathBuf,
    },
    /// Print what the running agent's anomaly detector is doing (warming up until when,
    /// calibrated since when, restored or not, model). Exits 3 when the agent is not
    /// running (the last status it left is printed with its time), 4 when its process
    /// exists but has stopped updating its status.
    Status {
        /// Configuration of the agent to ask about (its data directory holds status.json).
        #[arg(long, short, default_value = "/etc/sco-agent/agent.toml")]
        config: PathBuf,
    },
    /// Check a configuration file (and environment overrides) and exit.
    Validate {
        /// Configuration file to check; exits non-zero naming the bad key.
        #[arg(long, short, default_value = "/etc/sco-agent/agent.toml")]
        config: PathBuf,
    },
    /// Join the fleet with a one-time token: pins the control plane's CA by
    /// its fingerprint, generates a private key here, and writes ca.pem,
    /// agent.pem and agent.key (0600) into --out. Nothing is written on failure.
    Enroll {
        /// Control plane gRPC endpoint, HOST:PORT.
        #[arg(long)]
        server: String,
        /// Enrollment token from `POST /enrollment-tokens`.
        #[arg(long, env = "SCO_ENROLL_TOKEN")]
        token: String,
        /// SHA-256 of the fleet CA certificate (hex).
        #[arg(long)]
        ca_sha256: String,
        /// Name the server certificate carries, when it is not the host in --server.
        #[arg(long)]
        server_name: Option<String>,
        /// Directory ca.pem, agent.pem, agent.key and policy.pub are written to.
        #[arg(long, default_value = "/etc/sco-agent")]
        out: PathBuf,
    },
    /// Run the live anomaly detector offline over a CSV file, one row per tick.
    Replay {
        /// NAB-style `timestamp,value` CSV or headerless multivariate CSV.
        #[arg(long)]
        input: PathBuf,
        /// Rows fed first to calibrate the detector (same columns), not written.
        #[arg(long)]
        warmup: Option<PathBuf>,
        /// CSV written: the anomaly score and alarm (0/1) of every input row.
        #[arg(long)]
        output: PathBuf,
        /// Model manifest (default: the shipped model built into the binary).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Default: all rows of --warmup, else 15% of the input.
        #[arg(long)]
        warmup_ticks: Option<usize>,
        /// Consecutive ticks over the threshold before an event opens (default 1).
        #[arg(long)]
        min_duration: Option<usize>,
        /// Quantile of the warm-up scores the component thresholds sit at, in [0, 1]
        /// (default 0.995).
        #[arg(long)]
        quantile: Option<f64>,
        /// Threshold divisor: above 1 alarms more, below 1 less (default 1).
        #[arg(long)]
        sensitivity: Option<f64>,
        /// Ticks the host score is averaged over (default 12, one hour of 5-minute rows; 1 = off).
        #[arg(long)]
        smooth_ticks: Option<usize>,
        /// Quantile of the host's smoothed warm-up scores the alarm threshold sits at (default
        /// 0.98), or `none` for the component thresholds alone.
        #[arg(long, value_parser = parse_score_quantile)]
        score_quantile: Option<ScoreQuantile>,
        /// Window model only (no host PCA component).
        #[arg(long)]
        no_host_pca: bool,
    },
}

/// `--score-quantile`: a number, or `none`.
#[derive(Debug, Clone, Copy)]
struct ScoreQuantile(Option<f64>);

fn parse_score_quantile(s: &str) -> Result<ScoreQuantile, String> {
    if s == "none" {
        return Ok(ScoreQuantile(None));
    }
    s.parse::<f64>()
        .map(|q| ScoreQuantile(Some(q)))
        .map_err(|e| format!("{s:?}: {e} (a number in (0, 1), or none)"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Status { config } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            match sco_agent::status::read(&config.agent.data_dir) {
                Ok(r) => status_report(&r),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Validate { config } => match Config::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Replay {
            input,
            warmup,
            output,
            model,
            warmup_ticks,
            min_duration,
            quantile,
            sensitivity,
            smooth_ticks,
            score_quantile,
            no_host_pca,
        } => {
            let opts = sco_models::replay::ReplayOptions {
                input,
                warmup,
                output,
                model,
                warmup_ticks,
                min_duration,
                quantile,
                sensitivity,
                smooth_ticks,
                score_quantile: score_quantile.map(|q| q.0),
                no_host_pca,
                progress: true,
                ratios_out: None,
            };
            match sco_models::replay::run(&opts) {
                Ok(s) => {
                    eprintln!(
                        "replayed {} rows ({} warm-up rows, {} metrics): {} alarm rows, {} events",
                        s.input_rows, s.warmup_rows, s.metrics, s.alarm_rows, s.events
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Enroll {
            server,
            token,
            ca_sha256,
            server_name,
            out,
        } => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let files = sco_agent::identity::IdentityFiles::in_dir(&out);
            match runtime.block_on(sco_agent::identity::enroll(
                &server,
                &token,
                &ca_sha256,
                server_name.as_deref(),
                &files,
            )) {
                Ok(enrolled) => {
                    println!(
                        "enrolled as {}; certificate valid until {} (Unix ms), files in {}",
                        enrolled.agent_id,
                        enrolled.not_after_ms,
                        out.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: enrollment failed: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run { config } => {
            init_tracing();
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            // One thread is plenty: collection has its own thread and the
            // rest is a single stream.
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let shutdown = async {
                shutdown_signal().await;
                sco_proto::systemd::stopping();
            };
            match runtime.block_on(sco_agent::run(config, shutdown, notify_systemd)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "agent failed");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `sco-agent status`: the detector's state, preceded by why it may be stale. Exit codes as
/// `systemctl status` (LSB): 0 running, 3 not running, 4 unknown (a process that stopped
/// updating its status).
fn status_report(r: &sco_agent::status::Recorded) -> ExitCode {
    use sco_agent::status::{describe, liveness, utc, Liveness};
    let now_ms = sco_agent::clock::now_ms();
    let code = match liveness(r, now_ms, std::path::Path::new("/proc")) {
        Liveness::Running => ExitCode::SUCCESS,
        Liveness::NotRunning => {
            println!("not running (last status from {})", utc(r.written_ms));
            ExitCode::from(3)
        }
        Liveness::NotUpdating => {
            println!(
                "not updating: pid {} exists but its last status is from {}",
                r.pid,
                utc(r.written_ms)
            );
            ExitCode::from(4)
        }
    };
    println!("{}", describe(&r.status, now_ms));
    if let Some(link) = &r.link {
        for line in link.describe(now_ms) {
            println!("{line}");
        }
    }
    code
}

/// Under systemd (`Type=notify`): ready once the outbox is open and collection runs. Readiness
/// does not wait for the stream: an agent whose control plane is unreachable keeps collecting
/// into its outbox, and the status line says whether it is connected. The watchdog is pinged
/// from the runtime the pipeline runs on, so a stuck pipeline stops the pings.
fn notify_systemd(handle: sco_agent::Handle) {
    use sco_proto::systemd;
    systemd::ready("collecting; connecting to the control plane");
    tokio::spawn(systemd::watchdog(tokio::time::sleep));
    let mut connected = handle.connected;
    tokio::spawn(async move {
        while connected.changed().await.is_ok() {
            systemd::status(if *connected.borrow_and_update() {
                "collecting; connected to the control plane"
            } else {
                "collecting into the outbox; not connected to the control plane"
            });
        }
    });
}
