//! The ranking score: how anomalous a tick is, apart from whether it alarms.
//!
//! The alarm decision may smooth (the replay profile alarms on an hourly mean), and a smoothed
//! score ranks badly: a strong one-tick spike and the tail of an incident that ended an hour
//! ago look alike. This score looks at the host's combined ratio `c` (max over components of
//! score / threshold, before smoothing) at several time scales at once: for each scale `(k, q)`
//! the trailing mean of `c` over `k` ticks divided by the `q` quantile of the same mean over the
//! warm-up (floor `min_score_threshold`), and the score is the geometric mean of those ratios,
//! so evidence that is unusual now *and* over the last hours ranks above evidence unusual at
//! one scale only. It is mapped to `g / (1 + g)` (0.5 = the typical upper-normal level at every
//! scale). Chosen on development data (`models/eval/scales.py`; figures in `models/README.md`).
//!
//! The same scales serve the multi-scale alarm (`DetectorConfig::alarm_quantile_scales`), which
//! takes the largest of the ratios instead of their geometric mean: a short incident strong at
//! one tick and a long one weak at each tick both cross.

use super::baseline::quantile;
use super::baseline::Ring;
use super::calibrate::smoothed_scored;

/// How the scales' ratios make one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Combine {
    /// Their geometric mean (the ranking score: unusual at every scale ranks first).
    Geometric,
    /// The largest (an alarm: unusual at any one scale is enough).
    Max,
}

#[derive(Debug, Clone)]
pub(crate) struct RankScore {
    /// `(ticks, threshold)` per scale; empty = no ranking score (the alarm score stands in).
    scales: Vec<(usize, f64)>,
    /// The last combined ratios (as many as the longest scale), oldest first when read back.
    recent: Ring,
    combine: Combine,
}

impl RankScore {
    pub(crate) fn empty() -> Self {
        RankScore {
            scales: Vec::new(),
            recent: Ring::new(1),
            combine: Combine::Geometric,
        }
    }

    /// The multi-scale alarm: as [`RankScore::calibrate`], the ratios combined by their maximum.
    pub(crate) fn calibrate_max(warm: &[f64], scales: &[(usize, f64)], floor: f64) -> Self {
        let mut out = Self::calibrate(warm, scales, floor);
        out.combine = Combine::Max;
        out
    }

    /// Thresholds from the warm-up's combined ratios (NaN = nothing scored), and the recent
    /// ratios seeded with the last warm-up ones so the longest mean is full from the first tick.
    pub(crate) fn calibrate(warm: &[f64], scales: &[(usize, f64)], floor: f64) -> Self {
        let mut out = Vec::with_capacity(scales.len());
        for &(k, q) in scales {
            let k = k.max(1);
            let mut means = smoothed_scored(warm, k);
            let thr = quantile(&mut means, q).unwrap_or(0.0).max(floor).max(1e-9);
            out.push((k, thr));
        }
        let mut rank = Self::restored(out, Combine::Geometric);
        for &c in &warm[warm.len().saturating_sub(rank.recent.cap)..] {
            rank.recent.push(if c.is_nan() { 0.0 } else { c });
        }
        rank
    }

    /// From saved `(ticks, threshold)` pairs; the recent ratios start empty.
    pub(crate) fn restored(scales: Vec<(usize, f64)>, combine: Combine) -> Self {
        let longest = scales.iter().map(|s| s.0).max().unwrap_or(1);
        RankScore {
            scales,
            recent: Ring::new(longest),
            combine,
        }
    }

    pub(crate) fn scales(&self) -> &[(usize, f64)] {
        &self.scales
    }

    /// Records this tick's combined ratio and returns the score in [0, 1), or None without scales.
    pub(crate) fn push(&mut self, combined: f64) -> Option<f64> {
        let g = self.push_ratio(combined)?;
        Some(if g.is_finite() { g / (1.0 + g) } else { 0.0 })
    }

    /// Records this tick's combined ratio and returns the scales' ratios combined (1 = at the
    /// calibrated level), or None without scales.
    pub(crate) fn push_ratio(&mut self, combined: f64) -> Option<f64> {
        if self.scales.is_empty() {
            return None;
        }
        self.recent
            .push(if combined.is_finite() { combined } else { 0.0 });
        let recent: Vec<f64> = self.recent.chronological().collect();
        let ratios = self.scales.iter().map(|&(k, thr)| {
            let tail = &recent[recent.len().saturating_sub(k)..];
            tail.iter().sum::<f64>() / tail.len().max(1) as f64 / thr
        });
        Some(match self.combine {
            Combine::Geometric => {
                let log_sum: f64 = ratios.map(|r| r.max(1e-6).ln()).sum();
                (log_sum / self.scales.len() as f64).exp()
            }
            Combine::Max => ratios.fold(0.0, f64::max),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometric_mean_of_calibrated_scales() {
        // warm-up: constant 1.0, so every scale's threshold is 1.0 (above the 0.2 floor)
        let warm = vec![1.0; 100];
        let mut r = RankScore::calibrate(&warm, &[(1, 0.9), (4, 0.9)], 0.2);
        // at the warm-up's level: g = 1, score 0.5
        assert!((r.push(1.0).expect("scales") - 0.5).abs() < 1e-12);
        // a spike of 5: 1-tick ratio 5, 4-tick mean (1+1+1+5)/4 = 2: g = sqrt(10)
        let s = r.push(5.0).expect("scales");
        let g = 10f64.sqrt();
        assert!((s - g / (1.0 + g)).abs() < 1e-12, "{s}");
    }

    #[test]
    fn a_lasting_deviation_outranks_a_lone_spike_of_the_same_height() {
        let warm: Vec<f64> = (0..200).map(|i| 0.5 + 0.1 * ((i % 7) as f64)).collect();
        let scales = [(1, 0.9), (12, 0.9), (48, 0.9)];
        let mut spike = RankScore::calibrate(&warm, &scales, 0.2);
        let mut lasting = RankScore::calibrate(&warm, &scales, 0.2);
        for _ in 0..20 {
            spike.push(0.6);
            lasting.push(3.0);
        }
        assert!(lasting.push(3.0).expect("scales") > spike.push(3.0).expect("scales"));
    }

    #[test]
    fn missing_ticks_count_as_zero_and_nothing_is_nan() {
        let warm = vec![f64::NAN, 1.0, f64::NAN, 2.0];
        let mut r = RankScore::calibrate(&warm, &[(1, 0.5), (3, 0.5)], 0.2);
        for c in [f64::NAN, f64::INFINITY, 0.0, 4.0] {
            let s = r.push(c).expect("scales");
            assert!((0.0..1.0).contains(&s), "{s}");
        }
        assert_eq!(RankScore::empty().push(1.0), None);
    }

    #[test]
    fn the_alarm_takes_the_largest_scale() {
        // every threshold 1.0 (constant warm-up above the floor)
        let warm = vec![1.0; 100];
        let mut a = RankScore::calibrate_max(&warm, &[(1, 0.9), (4, 0.9)], 0.2);
        assert!((a.push_ratio(1.0).expect("scales") - 1.0).abs() < 1e-12);
        // one tick of 5: the 1-tick ratio 5 wins over the 4-tick mean of 2
        assert!((a.push_ratio(5.0).expect("scales") - 5.0).abs() < 1e-12);
        // back to 0: the 4-tick mean (1 + 1 + 5 + 0) / 4 = 1.75 is now the largest
        assert!((a.push_ratio(0.0).expect("scales") - 1.75).abs() < 1e-12);
    }
}
