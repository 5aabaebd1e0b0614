//! Stand-alone twin of `sco-agent replay` (same flags, same library call,
//! [`sco_models::replay::run`]), for evaluating the detector without building the agent:
//!
//! `cargo build --release -p sco-models --example replay`
//! then `target/release/examples/replay replay --input X.csv --output OUT.csv ...`
//! (the leading `replay` word is optional).
//!
//! Development only (not in `sco-agent replay`): `--set KEY=VALUE` changes one field of the
//! replay's `DetectorConfig` after the other flags, for exploring on development data; keys:
//! `profile=live` (first: the live agent's detector with its default settings at one row a
//! second, in place of the five-minute profile; later keys change it),
//! `pca_std_scale` (bool), `pca_quantile`, `pca_variance`, `current_gate_z`, `baseline_window`,
//! `pca_rolling_fit` (bool), `smooth_ticks`, `merge_ticks`, `relearn_after_ticks`, `relearn_on_evidence` (bool),
//! the live profile's edge-loop settings `freeze_baselines` (bool), `per_family` (bool), `sustain_ticks`,
//! `saturation_ratio`,
//! `score_quantile` (`none` = no recalibration), `single_series` (`none`), `single_mean_ticks`,
//! `single_tail_z`, `single_refractory_ticks`, `single_level_weight`, `single_seasonal_weight`
//! (0 = none), `single_seasonal_periods`, `single_seasonal_min_acf`, `single_weekly_weight` (0 = none), `single_moments_half_life` (0 = the baseline window),
//! `single_extreme_opens` (bool), `single_neighbour_ticks` (0 = none), `single_neighbour_history`,
//! `single_bar_quantile` (0 = none), `single_bar_history`, `rank_scales` (`TICKS@QUANTILE,...`, or `none`: the output score is the alarm score),
//! `alarm_scales` (`TICKS@RISK,...`, or `none`: adaptive alarm thresholds, `detect/tail.rs`),
//! `alarm_quantile_scales` (`TICKS@QUANTILE,...`, or `none`: the multi-scale alarm with fixed
//! thresholds, `detect/rank.rs`), `spike_alarm` (`none`), `spike_variance`, `spike_quantile`,
//! `spike_floor` (the spike alarm on a host PCA fitted on the whole warm-up; each sets one field,
//! turning it on with the shipped values for the others if it was off).

use std::path::PathBuf;
use std::process::ExitCode;

use sco_models::replay::{run_with, ReplayOptions};
use sco_models::{DetectorConfig, SpikeAlarm};

/// `TICKS@X,...` (or `none`: no scales) of `--set KEY=...`.
fn scales(k: &str, v: &str) -> Result<Vec<(usize, f64)>, String> {
    if v == "none" {
        return Ok(Vec::new());
    }
    let bad = |e: &dyn std::fmt::Display| format!("--set {k}={v}: {e}");
    v.split(',')
        .map(|s| {
            let (ticks, x) = s.split_once('@').ok_or_else(|| bad(&"TICKS@VALUE,..."))?;
            Ok((
                ticks.parse::<usize>().map_err(|e| bad(&e))?,
                x.parse::<f64>().map_err(|e| bad(&e))?,
            ))
        })
        .collect()
}

/// The live agent's detector with its default `[detect]` settings, one row a second
/// (`agent/src/detect.rs::detector_config`: min_duration 2 s, clear 15 s, merge 120 s, updates
/// every 30 s, sustained ratio over 3 s, load averages and the page cache not scored); the
/// replay's warm-up is kept.
fn live_profile(warmup_ticks: usize) -> DetectorConfig {
    DetectorConfig {
        warmup_ticks,
        min_duration_ticks: 2,
        clear_ticks: 15,
        merge_ticks: 120,
        update_every_ticks: 30,
        sustain_ticks: 3,
        // what the agent does not hand to the detector (`sco_policy::is_scored`)
        ignore: sco_policy::NOT_SCORED
            .iter()
            .map(|(prefix, _, _)| format!("{prefix}*"))
            .collect(),
        ..DetectorConfig::default()
    }
}

fn apply(c: &mut DetectorConfig, set: &[(String, String)]) -> Result<(), String> {
    for (k, v) in set {
        let num = || v.parse::<f64>().map_err(|e| format!("--set {k}={v}: {e}"));
        match k.as_str() {
            "profile" if v == "live" => *c = live_profile(c.warmup_ticks),
            "pca_std_scale" => c.pca_std_scale = v == "true" || v == "1",
            "pca_quantile" => c.pca_quantile = Some(num()?),
            "pca_variance" => c.pca_variance = num()?,
            "current_gate_z" => c.current_gate_z = num()?,
            "baseline_window" => c.baseline_window = num()? as usize,
            "pca_rolling_fit" => c.pca_rolling_fit = v == "true" || v == "1",
            "smooth_ticks" => c.smooth_ticks = num()? as usize,
            "merge_ticks" => c.merge_ticks = num()? as usize,
            "relearn_after_ticks" => c.relearn_after_ticks = num()? as usize,
            "relearn_on_evidence" => c.relearn_on_evidence = v == "true" || v == "1",
            "freeze_baselines" => c.freeze_baselines = v == "true" || v == "1",
            "per_family" => c.per_family = v == "true" || v == "1",
            "sustain_ticks" => c.sustain_ticks = num()? as usize,
            "saturation_ratio" => c.saturation_ratio = num()?,
            "single_series" if v == "none" => c.single_series = None,
            "single_extreme_opens" => {
                let s = c.single_series.as_mut().ok_or(format!(
                    "--set {k}: the profile has no single-series evidence"
                ))?;
                s.extreme_opens = v == "true" || v == "1";
            }
            "single_mean_ticks"
            | "single_tail_z"
            | "single_refractory_ticks"
            | "single_level_weight"
            | "single_seasonal_weight"
            | "single_seasonal_periods"
            | "single_seasonal_min_acf"
            | "single_weekly_weight"
            | "single_moments_half_life"
            | "single_neighbour_ticks"
            | "single_neighbour_history"
            | "single_bar_quantile"
            | "single_bar_history" => {
                let s = c.single_series.as_mut().ok_or(format!(
                    "--set {k}: the profile has no single-series evidence"
                ))?;
                match k.as_str() {
                    "single_mean_ticks" => s.mean_ticks = num()? as usize,
                    "single_tail_z" => s.tail_z = num()?,
                    "single_refractory_ticks" => s.refractory_ticks = num()? as usize,
                    "single_seasonal_weight" => s.seasonal_weight = num()?,
                    "single_seasonal_periods" => s.seasonal_periods = num()? as usize,
                    "single_seasonal_min_acf" => s.seasonal_min_acf = num()?,
                    "single_weekly_weight" => s.weekly_weight = num()?,
                    "single_moments_half_life" => s.moments_half_life = num()? as usize,
                    "single_neighbour_ticks" => s.neighbour_ticks = num()? as usize,
                    "single_neighbour_history" => s.neighbour_history = num()? as usize,
                    "single_bar_quantile" => s.bar_quantile = num()?,
                    "single_bar_history" => s.bar_history = num()? as usize,
                    _ => s.level_weight = num()?,
                }
            }
            "alarm_scales" => c.alarm_scales = scales(k, v)?,
            "alarm_quantile_scales" => c.alarm_quantile_scales = scales(k, v)?,
            "spike_alarm" if v == "none" => c.spike_alarm = None,
            "spike_variance" | "spike_quantile" | "spike_floor" => {
                let s = c.spike_alarm.get_or_insert(SpikeAlarm {
                    variance: 0.99,
                    quantile: 0.999,
                    floor: 5.0,
                });
                match k.as_str() {
                    "spike_variance" => s.variance = num()?,
                    "spike_quantile" => s.quantile = num()?,
                    _ => s.floor = num()?,
                }
            }
            "score_quantile" => c.score_quantile = if v == "none" { None } else { Some(num()?) },
            "rank_scales" => c.rank_scales = scales(k, v)?,
            _ => return Err(format!("--set: unknown key {k}")),
        }
    }
    Ok(())
}

fn parse(args: &[String]) -> Result<(ReplayOptions, Vec<(String, String)>), String> {
    let mut set = Vec::new();
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
            "--ratios-out" => o.ratios_out = Some(PathBuf::from(value)),
            "--warmup-ticks" => o.warmup_ticks = Some(int(&value)?),
            "--min-duration" => o.min_duration = Some(int(&value)?),
            "--quantile" => o.quantile = Some(num(&value)?),
            "--sensitivity" => o.sensitivity = Some(num(&value)?),
            "--smooth-ticks" => o.smooth_ticks = Some(int(&value)?),
            "--score-quantile" => {
                o.score_quantile = Some(if value == "none" {
                    None
                } else {
                    Some(num(&value)?)
                })
            }
            "--set" => {
                let (k, v) = value
                    .split_once('=')
                    .ok_or_else(|| format!("--set {value}: expected KEY=VALUE"))?;
                set.push((k.to_string(), v.to_string()));
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    o.input = input.ok_or("--input is required")?;
    o.output = output.ok_or("--output is required")?;
    Ok((o, set))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (opts, set) = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut bad = None;
    let result = run_with(&opts, |c| bad = apply(c, &set).err());
    if let Some(e) = bad {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    match result {
        Ok(s) => {
            eprintln!(
                "replayed {} rows ({} warm-up rows, {} metrics): {} alarm rows, {} events, thresholds {:?}, score threshold {:?}",
                s.input_rows, s.warmup_rows, s.metrics, s.alarm_rows, s.events, s.thresholds, s.score_threshold
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
