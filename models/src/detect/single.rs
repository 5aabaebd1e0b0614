//! Evidence for a host with a single series (NAB-style files): the multivariate evidence
//! (window model, host PCA, the hourly mean against its warm-up quantile) does not rank the
//! anomalies of one series (`models/README.md`, "A score that ranks"). With one metric, the
//! alarm ratio is instead a tail test of the series' own recent surprise:
//!
//! - surprise `s = min(max(level_weight * |v - median| / scale, |v - previous| / scale), 10)`
//!   with the metric's rolling baseline (the distance from its normal level, and the jump since
//!   the last value, in the same scale);
//! - evidence = `(mean of the last mean_ticks surprises - mu) / max(sd, 0.1)`, with `mu` and
//!   `sd` exponentially weighted moments of the surprise (half-life: the baseline window), taken
//!   from the warm-up on;
//! - the ratio is `evidence / tail_z` (1.0 = at the alarm level), and an event is held at least
//!   `refractory_ticks` after it opened (one alarm per episode, as NAB counts them).
//!
//! Its state is not in a [`DetectorSnapshot`]: a restored one-metric detector scores with the
//! multivariate evidence (the live profile has no single-series evidence anyway).

use super::*;

/// Tuning of the single-series evidence (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SingleSeries {
    /// Surprises averaged into the evidence.
    pub mean_ticks: usize,
    /// Evidence (in standard deviations of the surprise) at which the ratio is 1.
    pub tail_z: f64,
    /// An event opened stays open (held once quiet) at least this many ticks.
    pub refractory_ticks: usize,
    /// Weight of the distance from the normal level against the jump.
    pub level_weight: f64,
}

/// Surprise cap, in scales.
const SURPRISE_CAP: f64 = 10.0;
/// Floor of the surprise's standard deviation.
const SD_FLOOR: f64 = 0.1;
/// Surprises seen before the evidence counts.
const MIN_SEEN: u64 = 24;

/// The running state of the single-series evidence.
#[derive(Debug, Clone)]
pub(super) struct SingleState {
    recent: Ring,
    mu: f64,
    var: f64,
    seen: u64,
    previous: Option<f64>,
    /// Weight floor of the moments' update (`1 - 0.5^(1 / half_life)`).
    alpha_floor: f64,
}

impl SingleState {
    fn new(mean_ticks: usize, half_life: usize) -> Self {
        SingleState {
            recent: Ring::new(mean_ticks.max(1)),
            mu: 0.0,
            var: 0.0,
            seen: 0,
            previous: None,
            alpha_floor: 1.0 - 0.5f64.powf(1.0 / half_life.max(1) as f64),
        }
    }

    /// Takes value `v` scored against `baseline` (None: the value only becomes the previous
    /// one); returns the evidence before the moments learn this surprise.
    fn push(&mut self, v: f64, baseline: Option<Baseline>, level_weight: f64) -> f64 {
        let previous = self.previous.replace(v);
        let Some(b) = baseline else {
            return 0.0;
        };
        let level = (v - b.median).abs() / b.scale;
        let jump = previous.map_or(0.0, |p| (v - p).abs() / b.scale);
        let s = (level_weight * level).max(jump).min(SURPRISE_CAP);
        let s = if s.is_finite() { s } else { 0.0 };
        self.recent.push(s);
        let w = self.recent.values();
        let mean = w.iter().sum::<f64>() / w.len().max(1) as f64;
        let evidence = if self.seen >= MIN_SEEN {
            (mean - self.mu) / self.var.sqrt().max(SD_FLOOR)
        } else {
            0.0
        };
        self.seen += 1;
        let a = (1.0 / self.seen as f64).max(self.alpha_floor);
        let d = s - self.mu;
        self.mu += a * d;
        self.var = (1.0 - a) * (self.var + a * d * d);
        evidence
    }
}

impl Detector {
    /// At the end of warm-up: the single-series state of a host with exactly one metric,
    /// warmed on its warm-up values (`values`, in order; NaN = missing) with the rolling
    /// baseline it would have had at each of them (from the values before it, recomputed every
    /// `rebaseline_every_ticks`).
    pub(super) fn calibrate_single(&mut self, values: &[f64]) {
        self.single = None;
        let Some(cfg) = self.config.single_series else {
            return;
        };
        if self.metrics.len() != 1 {
            return;
        }
        let (rel, abs) = (self.metrics[0].rel_floor, self.metrics[0].abs_floor);
        let window = self.config.baseline_window.max(1);
        let every = self.config.rebaseline_every_ticks.max(1);
        let mut state = SingleState::new(cfg.mean_ticks, window);
        let seen: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let mut baseline = None;
        for (i, &v) in seen.iter().enumerate() {
            if i > 0 && i % every == 0 {
                baseline = robust_baseline(
                    &seen[i.saturating_sub(window)..i],
                    &mut self.scratch,
                    rel,
                    abs,
                );
            }
            state.push(v, baseline, cfg.level_weight);
        }
        self.single = Some(state);
    }

    /// The single-series ratio of this tick, when the host has one metric and the evidence
    /// is on; None otherwise (the multivariate ratio stands).
    pub(super) fn single_ratio(&mut self) -> Option<f64> {
        let cfg = self.config.single_series?;
        if self.metrics.len() != 1 {
            self.single = None;
            return None;
        }
        let m = &self.metrics[0];
        if m.seen_tick != self.ticks || m.ignored {
            return Some(0.0);
        }
        let (v, b) = (m.last_value, m.baseline);
        let evidence = self.single.as_mut()?.push(v, b, cfg.level_weight);
        let r = evidence / cfg.tail_z.max(1e-9);
        Some(if r.is_finite() { r.max(0.0) } else { 0.0 })
    }

    /// Ticks an event must have lasted before it may close (the single-series refractory
    /// period; 0 for a host with several metrics).
    pub(super) fn min_event_ticks(&self) -> usize {
        match (self.config.single_series, &self.single) {
            (Some(cfg), Some(_)) => cfg.refractory_ticks,
            _ => 0,
        }
    }
}
