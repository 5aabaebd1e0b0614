//! Stand-alone twin of `sco-agent replay` (same flags, same library call,
//! [`sco_models::replay::run`]), for evaluating the detector without building the agent:
//!
//! `CARGO_TARGET_DIR=/work/target-models cargo build --release -p sco-models --example replay`
//! then `/work/target-models/release/examples/replay replay --input X.csv --output OUT.csv ...`
//! (the leading `replay` word is optional).

use std::path::PathBuf;
use std::process::ExitCode;

use sco_models::replay::{run, ReplayOptions};

fn parse(args: &[String]) -> Result<ReplayOptions, String> {
    let mut o = ReplayOptions {
        progress: true,
        ..ReplayOptions::default()
    };
    let (mut input, mut output) = (None, None);
    let mut it = args.iter().skip_while(|a| a.as_str() == "replay");
    while let Some(flag) = it.next() {
        if flag == "--no-host-pca" {
            o.no_host_pca = true;
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .clone();
        let num = |v: &str| v.parse::<f64>().map_err(|e| format!("{flag} {v}: {e}"));
        let int = |v: &str| v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--input" => input = Some(PathBuf::from(value)),
            "--output" => output = Some(PathBuf::from(value)),
            "--warmup" => o.warmup = Some(PathBuf::from(value)),
            "--model" => o.model = Some(PathBuf::from(value)),
            "--warmup-ticks" => o.warmup_ticks = Some(int(&value)?),
            "--min-duration" => o.min_duration = Some(int(&value)?),
            "--quantile" => o.quantile = Some(num(&value)?),
            "--sensitivity" => o.sensitivity = Some(num(&value)?),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    o.input = input.ok_or("--input is required")?;
    o.output = output.ok_or("--output is required")?;
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(s) => {
            eprintln!(
                "replayed {} rows ({} warm-up rows, {} metrics): {} alarm rows, {} events, thresholds {:?}",
                s.input_rows, s.warmup_rows, s.metrics, s.alarm_rows, s.events, s.thresholds
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
