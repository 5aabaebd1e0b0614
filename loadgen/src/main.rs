//! `sco-loadgen`: parse the command line, run, print the report; exit 1 on an
//! error, 2 when the run did not pass (an agent never connected, nothing was
//! acknowledged, or the database check failed).

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = sco_loadgen::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SCO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match cli.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sco-loadgen: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sco-loadgen: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match runtime.block_on(sco_loadgen::run(config)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sco-loadgen: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = match serde_json::to_string_pretty(&report) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("sco-loadgen: error: cannot encode the report: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &cli.report {
        if let Err(e) = std::fs::write(path, &json) {
            eprintln!("sco-loadgen: error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if cli.json {
        println!("{json}");
    } else {
        print!("{}", report.text());
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}
