use std::process::ExitCode;

use cli::{Command, Parsed, Replay, Usage};
use sco_agent::Config;
use sco_proto::process::{init_tracing, shutdown_signal};

mod cli;

fn main() -> ExitCode {
    let args: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect();
    let args = match args {
        Ok(a) => a,
        Err(bad) => {
            eprintln!("error: argument {bad:?} is not valid UTF-8");
            return ExitCode::from(2);
        }
    };
    let command = match cli::parse(args, std::env::var("SCO_ENROLL_TOKEN").ok()) {
        Ok(Parsed::Command(c)) => c,
        Ok(Parsed::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(Usage(message)) => {
            eprintln!("error: {message}\n\nUsage: sco-agent <COMMAND>\nFor more information, try '--help'.");
            return ExitCode::from(2);
        }
    };
    match command {
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
        Command::Replay(replay) => {
            let Replay {
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
            } = *replay;
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
                score_quantile,
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
