//! A threshold that keeps adapting after warm-up without learning the incidents it alarms on:
//! peaks over threshold, in the manner of SPOT/DSPOT (Siffer et al., KDD 2017).
//!
//! The values above a high initial level `t` (a quantile of the warm-up) are the
//! peaks; their excesses `y = x - t` are taken to follow a generalized Pareto distribution,
//! fitted by the method of moments over the last `MAX_PEAKS` of them
//! (`xi = (1 - m^2 / s^2) / 2`, `sigma = m (1 + m^2 / s^2) / 2`). The alarm threshold is the
//! value exceeded with probability `risk`:
//! `z = t + sigma / xi * ((risk / rate)^(-xi) - 1)` (`t - sigma ln(risk / rate)` as `xi -> 0`),
//! where `rate` is the share of values over `t`.
//!
//! After warm-up each value judged normal (under the current threshold) is learnt: a peak
//! joins the fit, every value counts towards the rate (exponentially weighted, so the
//! threshold follows a host whose tail grows or shrinks). A value over the threshold is an
//! alarm and is not learnt: an ongoing incident does not raise the bar it is measured
//! against. O(`MAX_PEAKS`) memory, O(1) per value.
//!
//! Used by [`DetectorConfig::alarm_scales`]: the replay profile's hourly alarm scale (the live
//! profile has none). Alone it found fewer incidents than the warm-up quantile it replaced; with
//! the short fixed scales beside it and relearning on the evidence it is better on every
//! development set (`models/README.md`, "Thresholds that keep adapting" and "Short incidents:
//! a multi-scale alarm"). Its state (the recent values, the peaks and the weighted counts) is in
//! a `DetectorSnapshot`, so a restored detector's thresholds go on adapting where they were; a
//! snapshot without it (older) leaves the hourly mean against its fixed warm-up threshold until
//! the next warm-up.
use super::*;

/// The warm-up quantile of an alarm scale's mean above which its values are peaks.
const ALARM_PEAK_QUANTILE: f64 = 0.9;
/// Peaks kept for the fit.
const MAX_PEAKS: usize = 512;
/// Peaks needed before the fit is trusted (the fallback threshold stands until then).
const MIN_PEAKS: usize = 8;
/// The shape is kept within these bounds (the moments exist for `xi < 0.5`).
const XI_RANGE: (f64, f64) = (-0.5, 0.45);

/// Peaks-over-threshold state of one statistic (see the module documentation).
#[derive(Debug, Clone)]
pub(super) struct Pot {
    /// The peak level `t`.
    level: f64,
    /// Excesses over `level` of the last peaks, with their running sums.
    peaks: Ring,
    sum: f64,
    sum_sq: f64,
    /// Weighted counts of the values learnt and of the peaks among them.
    seen: f64,
    over: f64,
    /// Weight of the newest value in the counts (`1 - 0.5^(1 / half_life)`).
    alpha: f64,
    risk: f64,
    /// The threshold until there are `MIN_PEAKS` peaks.
    fallback: f64,
    /// The lowest threshold the fit may give.
    floor: f64,
    threshold: f64,
}

impl Pot {
    /// From the warm-up values of the statistic (non-finite ones skipped); `half_life` in
    /// values for the rate's weighting; `fallback` is the threshold while the fit has too few
    /// peaks, `floor` the lowest threshold the fit may give.
    pub(super) fn calibrate(
        warm: &[f64],
        peak_quantile: f64,
        risk: f64,
        half_life: usize,
        fallback: f64,
        floor: f64,
    ) -> Self {
        let xs: Vec<f64> = warm.iter().copied().filter(|x| x.is_finite()).collect();
        // in their order: the rate is weighted towards the newest values
        let level = quantile(&mut xs.clone(), peak_quantile).unwrap_or(fallback);
        let mut pot = Pot {
            level,
            peaks: Ring::new(MAX_PEAKS),
            sum: 0.0,
            sum_sq: 0.0,
            seen: 0.0,
            over: 0.0,
            alpha: 1.0 - 0.5f64.powf(1.0 / half_life.max(1) as f64),
            risk: risk.clamp(1e-9, 0.5),
            fallback,
            floor,
            threshold: fallback,
        };
        for &x in &xs {
            pot.count(x);
        }
        pot.refit();
        pot
    }

    /// The current alarm threshold.
    pub(super) fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Learns `x` unless it is over the current threshold (an alarm is not normal).
    pub(super) fn learn(&mut self, x: f64) {
        if !x.is_finite() || x > self.threshold {
            return;
        }
        if self.count(x) {
            self.refit();
        }
    }

    /// Counts one value; true when it is a peak.
    fn count(&mut self, x: f64) -> bool {
        let a = (1.0 / (self.seen + 1.0)).max(self.alpha);
        let peak = x > self.level;
        self.seen = (1.0 - a) * self.seen + 1.0;
        self.over = (1.0 - a) * self.over + if peak { 1.0 } else { 0.0 };
        if peak {
            let y = x - self.level;
            if self.peaks.buf.len() == self.peaks.cap {
                let old = self.peaks.buf[self.peaks.head];
                self.sum -= old;
                self.sum_sq -= old * old;
            }
            self.peaks.push(y);
            self.sum += y;
            self.sum_sq += y * y;
        }
        peak
    }

    fn refit(&mut self) {
        let n = self.peaks.buf.len();
        if n < MIN_PEAKS || self.seen <= 0.0 || self.over <= 0.0 {
            self.threshold = self.fallback;
            return;
        }
        let m = self.sum / n as f64;
        let var = (self.sum_sq / n as f64 - m * m).max(0.0);
        if m <= 0.0 {
            self.threshold = self.floor.max(self.level);
            return;
        }
        let r2 = if var > 0.0 { m * m / var } else { 1.0 };
        let xi = (0.5 * (1.0 - r2)).clamp(XI_RANGE.0, XI_RANGE.1);
        let sigma = 0.5 * m * (1.0 + r2);
        let p = (self.risk * self.seen / self.over).min(1.0);
        let z = if xi.abs() < 1e-6 {
            self.level - sigma * p.ln()
        } else {
            self.level + sigma / xi * (p.powf(-xi) - 1.0)
        };
        self.threshold = if z.is_finite() {
            z.max(self.floor)
        } else {
            self.fallback
        };
    }
}

/// The saved state of an [`AlarmScale`] (in a `DetectorSnapshot`), oldest values first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct AlarmScaleState {
    ticks: usize,
    recent: Vec<f64>,
    level: f64,
    peaks: Vec<f64>,
    seen: f64,
    over: f64,
    alpha: f64,
    risk: f64,
    fallback: f64,
    floor: f64,
}

/// One time scale of an adaptive alarm: the trailing mean of the combined ratio over `ticks`
/// ticks against its own peaks-over-threshold threshold.
#[derive(Debug, Clone)]
pub(super) struct AlarmScale {
    recent: Ring,
    pot: Pot,
}

impl AlarmScale {
    /// From the combined ratio of every warm-up tick (NaN = nothing scored).
    pub(super) fn calibrate(
        combined: &[f64],
        ticks: usize,
        risk: f64,
        half_life: usize,
        floor: f64,
    ) -> Self {
        let ticks = ticks.max(1);
        let mut smoothed = crate::detect::calibrate::smoothed_scored(combined, ticks);
        let fallback = quantile(&mut smoothed.clone(), 1.0 - risk)
            .unwrap_or(floor)
            .max(floor);
        let pot = Pot::calibrate(
            &smoothed,
            ALARM_PEAK_QUANTILE,
            risk,
            half_life,
            fallback,
            floor,
        );
        smoothed.clear();
        let mut recent = Ring::new(ticks);
        for &c in &combined[combined.len().saturating_sub(ticks)..] {
            recent.push(if c.is_nan() { 0.0 } else { c });
        }
        AlarmScale { recent, pot }
    }

    /// True when it is the scale `(ticks, risk)` of a configuration.
    pub(super) fn is(&self, ticks: usize, risk: f64) -> bool {
        self.recent.cap == ticks.max(1) && self.pot.risk == risk.clamp(1e-9, 0.5)
    }

    /// Its state, to save.
    pub(super) fn state(&self) -> AlarmScaleState {
        let p = &self.pot;
        AlarmScaleState {
            ticks: self.recent.cap,
            recent: self.recent.chronological().collect(),
            level: p.level,
            peaks: p.peaks.chronological().collect(),
            seen: p.seen,
            over: p.over,
            alpha: p.alpha,
            risk: p.risk,
            fallback: p.fallback,
            floor: p.floor,
        }
    }

    /// From a saved state; None when it is not one this code could have saved (a corrupt file:
    /// non-finite values, more values than the scale holds, counts out of range).
    pub(super) fn from_state(s: AlarmScaleState, max_ticks: usize) -> Option<Self> {
        let finite = [
            s.level, s.seen, s.over, s.alpha, s.risk, s.fallback, s.floor,
        ]
        .iter()
        .chain(&s.recent)
        .chain(&s.peaks)
        .all(|v| v.is_finite());
        let sane = finite
            && (1..=max_ticks).contains(&s.ticks)
            && s.recent.len() <= s.ticks
            && s.peaks.len() <= MAX_PEAKS
            && s.peaks.iter().all(|&y| y >= 0.0)
            && s.alpha > 0.0
            && s.alpha <= 1.0
            && s.risk > 0.0
            && s.risk <= 0.5
            && s.seen >= 0.0
            && (0.0..=s.seen).contains(&s.over);
        if !sane {
            return None;
        }
        let mut recent = Ring::new(s.ticks);
        for v in s.recent {
            recent.push(v);
        }
        let mut pot = Pot {
            level: s.level,
            peaks: Ring::new(MAX_PEAKS),
            sum: 0.0,
            sum_sq: 0.0,
            seen: s.seen,
            over: s.over,
            alpha: s.alpha,
            risk: s.risk,
            fallback: s.fallback,
            floor: s.floor,
            threshold: s.fallback,
        };
        for y in s.peaks {
            pot.peaks.push(y);
            pot.sum += y;
            pot.sum_sq += y * y;
        }
        pot.refit();
        Some(AlarmScale { recent, pot })
    }

    /// This tick's ratio of the scale (1 = at its threshold); the mean is learnt if normal.
    pub(super) fn push(&mut self, combined: f64) -> f64 {
        self.recent.push(combined);
        let w = self.recent.values();
        let mean = w.iter().sum::<f64>() / w.len().max(1) as f64;
        let r = mean / self.pot.threshold().max(1e-9);
        self.pot.learn(mean);
        if r.is_finite() {
            r
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream of exponential(1) values (a GPD with xi = 0, sigma = 1).
    fn exponential(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                -u.ln()
            })
            .collect()
    }

    #[test]
    fn the_threshold_of_an_exponential_tail_is_near_its_true_quantile() {
        let xs = exponential(20_000, 7);
        let pot = Pot::calibrate(&xs, 0.98, 1e-4, 100_000, 0.0, 0.0);
        // P(X > z) = e^-z = 1e-4 at z = 9.21
        let z = pot.threshold();
        assert!((z - 9.21).abs() < 1.0, "threshold {z}");
    }

    #[test]
    fn a_heavier_tail_after_warm_up_raises_the_threshold_and_alarms_are_not_learnt() {
        let xs = exponential(4_000, 11);
        let mut pot = Pot::calibrate(&xs, 0.98, 1e-3, 2_000, 1.0, 1.0);
        let before = pot.threshold();
        // the same host, twice as noisy
        for x in exponential(8_000, 13) {
            pot.learn(2.0 * x);
        }
        let after = pot.threshold();
        // (less than twice: the values over the threshold are not learnt, which cuts the tail)
        assert!(after > before * 1.3, "before {before}, after {after}");
        // an incident far over the threshold changes nothing
        let mut incident = pot.clone();
        for _ in 0..1_000 {
            incident.learn(after * 5.0);
        }
        assert_eq!(incident.threshold(), after);
    }

    #[test]
    fn an_alarm_scale_alarms_on_an_incident_without_learning_it() {
        let warm = exponential(3_000, 5);
        let mut scale = AlarmScale::calibrate(&warm, 3, 1e-3, 2_000, 0.2);
        let normal: Vec<f64> = exponential(500, 9).iter().map(|r| scale.push(*r)).collect();
        assert!(normal.iter().filter(|&&r| r > 1.0).count() < 10);
        let threshold = scale.pot.threshold();
        let incident: Vec<f64> = (0..200).map(|_| scale.push(50.0)).collect();
        assert!(incident[2..].iter().all(|&r| r > 1.0));
        assert_eq!(scale.pot.threshold(), threshold);
    }

    #[test]
    fn too_few_peaks_keep_the_fallback_and_the_fit_never_goes_under_it() {
        let pot = Pot::calibrate(&[1.0, 2.0, 3.0], 0.98, 1e-3, 100, 4.0, 1.0);
        assert_eq!(pot.threshold(), 4.0);
        let quiet = vec![0.0; 5_000];
        let pot = Pot::calibrate(&quiet, 0.98, 1e-3, 100, 2.5, 2.5);
        assert_eq!(pot.threshold(), 2.5);
        let pot = Pot::calibrate(&exponential(5_000, 3), 0.98, 0.4, 100, 1.0, 3.0);
        assert!(pot.threshold() >= 3.0);
    }
}
