//! Evidence for a host with a single series (NAB-style files): the multivariate evidence
//! (window model, host PCA, the hourly mean against its warm-up quantile) does not rank the
//! anomalies of one series (`models/README.md`, "A score that ranks"). With one metric, the
//! alarm ratio is instead a tail test of the series' own recent surprise:
//!
//! - surprise `s = min(max(min(max(level_weight * |v - median| / scale, |v - previous| /
//!   scale), recalled), seasonal_weight * seasonal), 10)` with the metric's rolling baseline
//!   (the distance from its normal level, and the jump since the last value, in the same
//!   scale); `recalled` is how far the last `neighbour_ticks` values are from the nearest
//!   stretch of as many values the series had in its last `neighbour_history` ticks while no
//!   event was open (the largest difference at the same place, in the same scale): a burst
//!   shaped like the bursts the series has in normal times is only as surprising as it is
//!   unlike the nearest of them, and an incident never becomes a shape the series is known
//!   for; where the warm-up has
//!   a period `P` (the lag of its largest autocorrelation peak, at least `seasonal_min_acf`),
//!   `seasonal` is the value's distance from the median of the same phase in the last
//!   `seasonal_periods` periods, against the rolling median and scale of those residuals (a
//!   daily pattern that fails to come, or comes at the wrong level, is a surprise even where
//!   the value is within its usual range); where that period is a day (within 5 %, by the
//!   ticks' timestamps), `weekly_weight` times the same distance from the same phase of the
//!   last `seasonal_periods` weeks (exactly 7 days) also counts (a holiday on a weekday looks
//!   like a Sunday: like some day, unlike that weekday);
//! - evidence = `(mean of the last mean_ticks surprises - mu) / max(sd, 0.1)`, with `mu` and
//!   `sd` exponentially weighted moments of the surprise (half-life `moments_half_life`, 0 =
//!   the baseline window), taken from the warm-up on;
//! - the ratio is `evidence / max(tail_z, bar)` (1.0 = at the alarm level), where `bar` is the
//!   `bar_quantile` of the evidence of the last `bar_history` live ticks without an event open
//!   (0 until that memory covers a quarter of its length; the tick that opens an event is
//!   learnt, the ticks of an open event are not): a series whose normal evidence often
//!   crosses the tail z raises its own bar, and an incident never raises it; an event is held at least
//!   `refractory_ticks` after it opened (one alarm per episode, as NAB counts them); the ratio
//!   is also the host's ranking score, at most this tick's own surprise as a ratio (a burst
//!   that has passed stops ranking though the mean still holds it), as `r / (1 + r)`
//!   (`Tick::rank`);
//! - with `extreme_opens`, a value past the surprise's cap (more than 10 scales from the normal
//!   level) and at least one scale beyond every value the series has had is an alarm at once
//!   (ratio `level / 10`), and a new event if the open one opened `EXTREME_GAP` ticks or more
//!   before: the capped, averaged evidence cannot tell a record far beyond anything seen from
//!   one more burst, and the refractory period would hide it.
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
    /// Weight of the distance from the same phase of the last periods (0 = no seasonal term).
    pub seasonal_weight: f64,
    /// Periods whose same phase is the seasonal reference (their median).
    pub seasonal_periods: usize,
    /// The warm-up's autocorrelation at a lag must reach this for the lag to be a period.
    pub seasonal_min_acf: f64,
    /// Weight of the distance from the same phase of the last weeks, when the period is a day
    /// (0 = no weekly term): a holiday on a weekday looks like a Sunday, within the day's usual
    /// range and the previous days' shape at the hour, but unlike the same weekday before.
    pub weekly_weight: f64,
    /// Half-life, in ticks, of the surprise's moments (0 = the baseline window).
    pub moments_half_life: usize,
    /// A value past the surprise's cap and beyond every earlier value opens an event at once,
    /// even inside the refractory period of the one before.
    pub extreme_opens: bool,
    /// Values in a stretch compared with the series' past stretches (0 = no nearest-neighbour
    /// term: the distance from the normal level and the jump stand alone).
    pub neighbour_ticks: usize,
    /// Ticks back the nearest stretch is looked for in.
    pub neighbour_history: usize,
    /// Quantile of the evidence of the last `bar_history` ticks without an event that the
    /// evidence must also reach to alarm (0 = `tail_z` alone).
    pub bar_quantile: f64,
    /// Ticks of evidence the bar's quantile is taken over.
    pub bar_history: usize,
}

/// An extreme value opens a new event only if the open one opened at least this many ticks
/// before (an extreme in the first ticks of an episode is that episode).
pub(super) const EXTREME_GAP: usize = 5;

/// A day, in milliseconds: a period within 5 % of it is a day, and its weeks are compared.
const DAY_MS: i64 = 86_400_000;

/// Shortest period looked for, in ticks.
const MIN_PERIOD: usize = 12;
/// Warm-up values the period is looked for in (the newest ones).
const PERIOD_WINDOW: usize = 4032;

/// The period of `values` (in order): the lag from `MIN_PERIOD` to half their number whose
/// autocorrelation is a local peak and the largest such, if it is at least `min_acf`.
pub(super) fn period_of(values: &[f64], min_acf: f64) -> Option<usize> {
    let w = &values[values.len().saturating_sub(PERIOD_WINDOW)..];
    let n = w.len();
    if n < 4 * MIN_PERIOD {
        return None;
    }
    let mean = w.iter().sum::<f64>() / n as f64;
    let c: Vec<f64> = w.iter().map(|v| v - mean).collect();
    let den: f64 = c.iter().map(|x| x * x).sum();
    if den <= 0.0 || !den.is_finite() {
        return None;
    }
    let acf = |lag: usize| {
        c[..n - lag]
            .iter()
            .zip(&c[lag..])
            .map(|(a, b)| a * b)
            .sum::<f64>()
            / den
    };
    let (mut best, mut best_acf) = (None, min_acf);
    let (mut before, mut here) = (acf(MIN_PERIOD - 1), acf(MIN_PERIOD));
    for lag in MIN_PERIOD..n / 2 - 1 {
        let after = acf(lag + 1);
        if here >= best_acf && here >= before && here >= after {
            best = Some(lag);
            best_acf = here;
        }
        (before, here) = (here, after);
    }
    best
}

/// The seasonal part of the single-series state: the last `periods` periods of values and the
/// residuals against their same phase.
#[derive(Debug, Clone)]
struct Seasonal {
    period: usize,
    periods: usize,
    /// The last `period * periods` values, oldest first.
    history: std::collections::VecDeque<f64>,
    residuals: Ring,
    baseline: Option<Baseline>,
    since_rebaseline: usize,
    every: usize,
    rel: f64,
    abs: f64,
}

impl Seasonal {
    /// This value's seasonal surprise (0 until a period has been seen, and until the residuals
    /// have a baseline), then learns it.
    fn push(&mut self, v: f64, scratch: &mut Vec<f64>) -> f64 {
        let len = self.history.len();
        let mut same_phase: Vec<f64> = (1..=self.periods)
            .filter_map(|j| len.checked_sub(j * self.period).map(|i| self.history[i]))
            .collect();
        let surprise = if same_phase.is_empty() {
            0.0
        } else {
            let r = v - median_in_place(&mut same_phase);
            let s = self
                .baseline
                .map_or(0.0, |b| (r - b.median).abs() / b.scale);
            self.residuals.push(r);
            self.since_rebaseline += 1;
            if self.since_rebaseline >= self.every {
                self.since_rebaseline = 0;
                self.baseline =
                    robust_baseline(self.residuals.values(), scratch, self.rel, self.abs);
            }
            s
        };
        if self.history.len() == self.period * self.periods {
            self.history.pop_front();
        }
        self.history.push_back(v);
        if surprise.is_finite() {
            surprise
        } else {
            0.0
        }
    }
}

/// The series' recent values for the nearest-neighbour term, each with whether it came while
/// the host had no event open (only those are recalled).
#[derive(Debug, Clone)]
struct Recall {
    ticks: usize,
    history: usize,
    values: std::collections::VecDeque<(f64, bool)>,
}

impl Recall {
    fn new(ticks: usize, history: usize) -> Self {
        Recall {
            ticks,
            history,
            values: std::collections::VecDeque::with_capacity(history + ticks),
        }
    }

    fn push(&mut self, v: f64, normal: bool) {
        if self.values.len() == self.history + self.ticks {
            self.values.pop_front();
        }
        self.values.push_back((v, normal && v.is_finite()));
    }

    /// The distance from the last `ticks` values to the nearest stretch of as many normal
    /// values before them (not overlapping them): the largest difference of the two at the
    /// same place. None until there is such a stretch, or if a last value is not finite.
    fn nearest(&self) -> Option<f64> {
        let (m, n) = (self.ticks, self.values.len());
        if m == 0 || n < 2 * m {
            return None;
        }
        let now = n - m;
        if (now..n).any(|i| !self.values[i].0.is_finite()) {
            return None;
        }
        let mut best = f64::INFINITY;
        for start in 0..=now - m {
            let mut d = 0.0f64;
            for i in 0..m {
                let (x, normal) = self.values[start + i];
                if !normal {
                    d = f64::INFINITY;
                    break;
                }
                d = d.max((x - self.values[now + i].0).abs());
                if d >= best {
                    break;
                }
            }
            best = best.min(d);
        }
        best.is_finite().then_some(best)
    }
}

/// The evidence-quantile bar is recomputed every this many ticks.
const BAR_EVERY: usize = 12;

/// The evidence the series had in its last ticks without an event, and the bar it sets: the
/// `quantile` of that evidence, once it covers a quarter of `history`.
#[derive(Debug, Clone)]
struct EvidenceBar {
    quantile: f64,
    past: Ring,
    bar: f64,
    since: usize,
    scratch: Vec<f64>,
}

impl EvidenceBar {
    fn new(quantile: f64, history: usize) -> Self {
        EvidenceBar {
            quantile: quantile.clamp(0.0, 1.0),
            past: Ring::new(history),
            bar: 0.0,
            since: 0,
            scratch: Vec::new(),
        }
    }

    /// The bar for this tick's `evidence` (0 until the memory covers a quarter of its
    /// ticks), then learns the evidence if `normal` (no event open).
    fn push(&mut self, evidence: f64, normal: bool) -> f64 {
        self.since += 1;
        if self.since >= BAR_EVERY && self.past.values().len() * 4 >= self.past.cap {
            self.since = 0;
            self.scratch.clear();
            self.scratch.extend_from_slice(self.past.values());
            let k =
                ((self.scratch.len() as f64 * self.quantile) as usize).min(self.scratch.len() - 1);
            let (_, q, _) = self.scratch.select_nth_unstable_by(k, f64::total_cmp);
            self.bar = *q;
        }
        let bar = self.bar;
        if normal && evidence.is_finite() {
            self.past.push(evidence);
        }
        bar
    }
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
    seasonal: Option<Seasonal>,
    weekly: Option<Seasonal>,
    scratch: Vec<f64>,
    /// The largest and smallest values seen (warm-up included).
    highest: f64,
    lowest: f64,
    /// This value's distance from the normal level, in scales, when it is extreme: past the
    /// surprise's cap and at least one scale beyond `highest` or `lowest` before it.
    pub(super) extreme: Option<f64>,
    /// This tick's own surprise, in the surprise's standard deviations over its mean (the
    /// evidence of one tick; `push` returns that of the last `mean_ticks`).
    pub(super) now: f64,
    recall: Option<Recall>,
    bar: Option<EvidenceBar>,
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
            seasonal: None,
            weekly: None,
            scratch: Vec::new(),
            highest: f64::NEG_INFINITY,
            lowest: f64::INFINITY,
            extreme: None,
            now: 0.0,
            recall: None,
            bar: None,
        }
    }

    /// Takes value `v` scored against `baseline` (None: the value only becomes the previous
    /// one), `normal` if no event was open when it came; returns the evidence before the
    /// moments learn this surprise.
    fn push(
        &mut self,
        v: f64,
        baseline: Option<Baseline>,
        normal: bool,
        cfg: &SingleSeries,
    ) -> f64 {
        let previous = self.previous.replace(v);
        if let Some(r) = self.recall.as_mut() {
            r.push(v, normal);
        }
        let seasonal = match self.seasonal.as_mut() {
            Some(s) => s.push(v, &mut self.scratch),
            None => 0.0,
        };
        let weekly = match self.weekly.as_mut() {
            Some(s) => s.push(v, &mut self.scratch),
            None => 0.0,
        };
        let (highest, lowest) = (self.highest, self.lowest);
        if v.is_finite() {
            self.highest = self.highest.max(v);
            self.lowest = self.lowest.min(v);
        }
        self.extreme = None;
        self.now = 0.0;
        let Some(b) = baseline else {
            return 0.0;
        };
        let level = (v - b.median).abs() / b.scale;
        if level > SURPRISE_CAP && (v - highest).max(lowest - v) >= b.scale {
            self.extreme = Some(level);
        }
        let jump = previous.map_or(0.0, |p| (v - p).abs() / b.scale);
        let mut departure = (cfg.level_weight * level).max(jump);
        if let Some(d) = self.recall.as_ref().and_then(Recall::nearest) {
            departure = departure.min(d / b.scale);
        }
        let s = departure
            .max(cfg.seasonal_weight * seasonal)
            .max(cfg.weekly_weight * weekly)
            .min(SURPRISE_CAP);
        let s = if s.is_finite() { s } else { 0.0 };
        self.recent.push(s);
        let w = self.recent.values();
        let mean = w.iter().sum::<f64>() / w.len().max(1) as f64;
        let sd = self.var.sqrt().max(SD_FLOOR);
        let evidence;
        (self.now, evidence) = if self.seen >= MIN_SEEN {
            ((s - self.mu) / sd, (mean - self.mu) / sd)
        } else {
            (0.0, 0.0)
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
        let half_life = match cfg.moments_half_life {
            0 => window,
            h => h,
        };
        let mut state = SingleState::new(cfg.mean_ticks, half_life);
        if cfg.neighbour_ticks > 0 {
            state.recall = Some(Recall::new(cfg.neighbour_ticks, cfg.neighbour_history));
        }
        if cfg.bar_quantile > 0.0 {
            state.bar = Some(EvidenceBar::new(cfg.bar_quantile, cfg.bar_history));
        }
        let seen: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let seasonal = |period: usize| Seasonal {
            period,
            periods: cfg.seasonal_periods.max(1),
            history: std::collections::VecDeque::new(),
            residuals: Ring::new(window),
            baseline: None,
            since_rebaseline: 0,
            every,
            rel,
            abs,
        };
        let period = (cfg.seasonal_weight > 0.0 || cfg.weekly_weight > 0.0)
            .then(|| period_of(&seen, cfg.seasonal_min_acf))
            .flatten();
        if cfg.seasonal_weight > 0.0 {
            state.seasonal = period.map(seasonal);
        }
        let tick_ms = self.interval_ms_hint();
        // the autocorrelation's peak may miss a day by a tick or two; a week is 7 days exactly
        let a_day = |p: usize| tick_ms > 0 && (p as i64 * tick_ms - DAY_MS).abs() * 20 <= DAY_MS;
        if cfg.weekly_weight > 0.0 {
            let week = (7 * DAY_MS + tick_ms / 2) / tick_ms.max(1);
            state.weekly = period
                .filter(|&p| a_day(p))
                .map(|_| seasonal(week as usize));
        }
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
            // the bar learns live evidence only: in the warm-up the moments are still forming
            state.push(v, baseline, true, &cfg);
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
        let normal = self.families[Family::Host.index()].event.is_none();
        let state = self.single.as_mut()?;
        let evidence = state.push(v, b, normal, &cfg);
        let bar = state.bar.as_mut().map_or(0.0, |q| q.push(evidence, normal));
        let mut r = evidence / cfg.tail_z.max(bar).max(1e-9);
        if !r.is_finite() {
            r = 0.0;
        }
        if let Some(level) = state.extreme.filter(|_| cfg.extreme_opens) {
            r = r.max(level / SURPRISE_CAP);
        }
        Some(r.max(0.0))
    }

    /// The single-series ranking ratio of this tick (after `single_ratio`): the alarm ratio
    /// `ratio`, at most this tick's own surprise against the same level.
    pub(super) fn single_rank(&self, ratio: f64) -> f64 {
        let (Some(cfg), Some(state)) = (self.config.single_series, self.single.as_ref()) else {
            return ratio;
        };
        let now = state.now / cfg.tail_z.max(1e-9);
        if now.is_finite() {
            ratio.min(now.max(0.0))
        } else {
            0.0
        }
    }

    /// This tick's value is extreme (see the module documentation) and the host's event
    /// opened at least `EXTREME_GAP` ticks ago: closes that event, so the value opens its own.
    pub(super) fn supersede_for_extreme(&mut self, ts_ms: i64) -> Option<EventChange> {
        let cfg = self.config.single_series?;
        let extreme = self.single.as_ref()?.extreme;
        if !cfg.extreme_opens || extreme.is_none() {
            return None;
        }
        let st = &mut self.families[Family::Host.index()];
        if st.event.as_ref()?.age < EXTREME_GAP {
            return None;
        }
        close_superseded(st, ts_ms)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_is_the_quantile_of_the_evidence_without_an_event_once_it_covers_a_quarter() {
        let mut bar = EvidenceBar::new(0.9, 400);
        // nothing until 100 values (a quarter) and the next recomputation
        for i in 0..100 {
            assert_eq!(bar.push(i as f64 / 100.0, true), 0.0);
        }
        // then the 0.9 quantile of 0.00 .. 0.99, until the next recomputation
        let mut b = 0.0;
        for _ in 0..BAR_EVERY {
            b = bar.push(0.0, true);
            assert!((b - 0.90).abs() < 1e-9, "{b}");
        }
        // what comes while an event is open is not learnt: the bar is then the quantile of
        // 0.00 .. 0.99 and twelve more zeros (index 100 of 112 is 0.88)
        for _ in 0..10 * BAR_EVERY {
            b = bar.push(50.0, false);
        }
        assert!((b - 0.88).abs() < 1e-9, "{b}");
        // the memory is the last `history` values: four hundred zeros forget the rest
        for _ in 0..400 + BAR_EVERY {
            b = bar.push(0.0, true);
        }
        assert_eq!(b, 0.0);
        assert_eq!(bar.past.values().len(), 400);
    }

    #[test]
    fn the_period_is_the_lag_of_the_largest_autocorrelation_peak() {
        let wave: Vec<f64> = (0..750)
            .map(|t| {
                (t as f64 / 288.0 * std::f64::consts::TAU).sin()
                    + 0.1 * ((t * 7919) % 13) as f64 / 13.0
            })
            .collect();
        let p = period_of(&wave, 0.5).expect("a daily wave has a period");
        assert!((286..=290).contains(&p), "period {p}");
        // no period: a constant, a ramp, too few values, a wave whose peak is under the bar
        assert_eq!(period_of(&[3.0; 750], 0.5), None);
        let ramp: Vec<f64> = (0..750).map(|t| t as f64).collect();
        assert_eq!(period_of(&ramp, 0.5), None);
        assert_eq!(period_of(&wave[..40], 0.5), None);
        assert_eq!(period_of(&wave, 0.99), None);
    }

    #[test]
    fn the_nearest_stretch_is_a_normal_one_before_the_last_values_and_apart_from_them() {
        let mut r = Recall::new(3, 10);
        for v in [1.0, 2.0, 3.0, 3.0, 1.0, 2.0] {
            r.push(v, true);
        }
        // [3, 1, 2] against [1, 2, 3] (the only stretch apart from it): 2 at most
        assert_eq!(r.nearest(), Some(2.0));
        r.push(3.5, true);
        // [1, 2, 3.5] against [1, 2, 3] (and [2, 3, 3]): 0.5
        assert_eq!(r.nearest(), Some(0.5));
        // a stretch with a value that came during an event is not recalled
        let mut r = Recall::new(2, 10);
        for (v, normal) in [
            (5.0, false),
            (6.0, true),
            (0.0, true),
            (5.0, true),
            (6.0, true),
        ] {
            r.push(v, normal);
        }
        assert_eq!(r.nearest(), Some(6.0));
        // too few values, a missing last value: none
        let mut r = Recall::new(3, 10);
        for v in [1.0, 2.0, 3.0, 4.0, 5.0] {
            r.push(v, true);
        }
        assert_eq!(r.nearest(), None);
        r.push(f64::NAN, true);
        assert_eq!(r.nearest(), None);
        // the history is bounded: the oldest stretches are forgotten
        let mut r = Recall::new(1, 2);
        for v in [7.0, 0.0, 0.0, 7.0] {
            r.push(v, true);
        }
        assert_eq!(r.nearest(), Some(7.0));
    }
}
