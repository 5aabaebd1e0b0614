//! Step 1 of the pipeline: per-metric robust baselines over a ring of recent values.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Baseline {
    pub(crate) median: f64,
    pub(crate) scale: f64,
    pub(crate) mean: f64,
    /// `max(std, rel_floor * |mean|, abs_floor)`.
    pub(crate) sd: f64,
    /// All values the baseline saw were >= 0 (expected range is then clamped at 0).
    pub(crate) nonneg: bool,
}

impl Baseline {
    pub(crate) fn z(&self, v: f64) -> f64 {
        ((v - self.median) / self.scale).clamp(-CLIP, CLIP)
    }

    /// Host-PCA input: robust z, or `(v - mean) / sd` clipped at +-PCA_STD_CLIP.
    pub(crate) fn pca_z(&self, v: f64, std_scale: bool) -> f64 {
        if std_scale {
            ((v - self.mean) / self.sd).clamp(-PCA_STD_CLIP, PCA_STD_CLIP)
        } else {
            self.z(v)
        }
    }

    /// Expected range in the metric's units; a percentage's never leaves [0, 100].
    pub(crate) fn expected(&self, bounded: bool) -> (f64, f64) {
        let lo = self.median - EXPECTED_Z * self.scale;
        let hi = self.median + EXPECTED_Z * self.scale;
        let lo = if self.nonneg || bounded {
            lo.max(0.0)
        } else {
            lo
        };
        if bounded {
            (lo.min(100.0), hi.clamp(0.0, 100.0))
        } else {
            (lo, hi)
        }
    }
}

/// Gate factor for a window whose newest normalised value is `z_now`.
pub(crate) fn gate(z_now: f32, gate_z: f64) -> f64 {
    if gate_z > 0.0 {
        (f64::from(z_now).abs() - (gate_z - 1.0).max(0.0)).clamp(0.0, 1.0)
    } else {
        1.0
    }
}

/// numpy-convention median (mean of the two middle values for an even count); reorders `xs`.
pub(crate) fn median_in_place(xs: &mut [f64]) -> f64 {
    let n = xs.len();
    if n == 0 {
        return 0.0;
    }
    let (_, &mut hi, _) = xs.select_nth_unstable_by(n / 2, f64::total_cmp);
    if n % 2 == 1 {
        hi
    } else {
        let lo = xs[..n / 2]
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        0.5 * (lo + hi)
    }
}

pub(crate) fn robust_baseline(
    values: &[f64],
    scratch: &mut Vec<f64>,
    rel_floor: f64,
    abs_floor: f64,
) -> Option<Baseline> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    let nonneg = values.iter().all(|&v| v >= 0.0);
    scratch.clear();
    scratch.extend_from_slice(values);
    let median = median_in_place(scratch);
    for x in scratch.iter_mut() {
        *x = (*x - median).abs();
    }
    let mad = median_in_place(scratch);
    let scale = (MAD_SCALE * mad)
        .max(STD_FLOOR_FRAC * var.sqrt())
        .max(rel_floor * median.abs())
        .max(abs_floor)
        .max(1e-12);
    if !(median.is_finite() && scale.is_finite()) {
        return None;
    }
    let sd = var
        .sqrt()
        .max(rel_floor * mean.abs())
        .max(abs_floor)
        .max(1e-12);
    if !(mean.is_finite() && sd.is_finite()) {
        return None;
    }
    Some(Baseline {
        median,
        scale,
        mean,
        sd,
        nonneg,
    })
}

/// numpy `quantile` with linear interpolation; `xs` is reordered. None when empty.
pub(crate) fn quantile(xs: &mut [f64], q: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (xs.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(xs.len() - 1);
    let frac = pos - lo as f64;
    Some(xs[lo] + (xs[hi] - xs[lo]) * frac)
}

/// Fixed-capacity ring of the latest raw values of one metric.
#[derive(Debug, Clone)]
pub(crate) struct Ring {
    pub(crate) buf: Vec<f64>,
    pub(crate) head: usize,
    pub(crate) cap: usize,
}

impl Ring {
    pub(crate) fn new(cap: usize) -> Self {
        Ring {
            buf: Vec::new(),
            head: 0,
            cap: cap.max(1),
        }
    }

    pub(crate) fn push(&mut self, v: f64) {
        if self.buf.len() < self.cap {
            self.buf.push(v);
        } else {
            self.buf[self.head] = v;
            self.head = (self.head + 1) % self.cap;
        }
    }

    /// Values in no particular order (all a median needs).
    pub(crate) fn values(&self) -> &[f64] {
        &self.buf
    }

    /// Moves the values older than the newest `n` to the level of the newest (their median
    /// to the newest's median, their spread around it widened as much as the newest's is wider,
    /// never narrowed), so the ring keeps its long history of how the metric moves but at its
    /// new level. Returns false (nothing changed) when either side has fewer than `min` values,
    /// or when the two medians are no more than `min_move` apart and the newest values' spread
    /// is less than twice the older ones' (the metric did not move: the newest values are a
    /// stretch of its usual pattern).
    pub(crate) fn recentre(
        &mut self,
        n: usize,
        min: usize,
        min_move: f64,
        scratch: &mut Vec<f64>,
    ) -> bool {
        let len = self.buf.len();
        if n < min || len < n + min {
            return false;
        }
        let mut ordered: Vec<f64> = self.chronological().collect();
        let (old, new) = ordered.split_at_mut(len - n);
        let spread = |xs: &[f64], scratch: &mut Vec<f64>| {
            scratch.clear();
            scratch.extend_from_slice(xs);
            let med = median_in_place(scratch);
            for x in scratch.iter_mut() {
                *x = (*x - med).abs();
            }
            (med, median_in_place(scratch))
        };
        let (old_med, old_mad) = spread(old, scratch);
        let (new_med, new_mad) = spread(new, scratch);
        let widen = if old_mad > 0.0 {
            (new_mad / old_mad).clamp(1.0, 10.0)
        } else {
            1.0
        };
        if (new_med - old_med).abs() <= min_move && widen < 2.0 {
            return false;
        }
        for v in old.iter_mut() {
            *v = new_med + (*v - old_med) * widen;
        }
        self.buf = ordered;
        self.head = 0;
        true
    }

    /// Values oldest first.
    pub(crate) fn chronological(&self) -> impl Iterator<Item = f64> + '_ {
        let (new, old) = self.buf.split_at(self.head.min(self.buf.len()));
        old.iter().chain(new).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_of(values: impl IntoIterator<Item = f64>, cap: usize) -> Ring {
        let mut r = Ring::new(cap);
        for v in values {
            r.push(v);
        }
        r
    }

    #[test]
    fn recentre_moves_the_history_to_the_new_level_and_keeps_its_spread() {
        // a wrapped ring: 100 values alternating 9/11 around 10, then 20 around 50 (+-1)
        let values = (0..100)
            .map(|i| if i % 2 == 0 { 9.0 } else { 11.0 })
            .chain((0..20).map(|i| if i % 2 == 0 { 49.0 } else { 51.0 }));
        let mut r = ring_of(values, 110);
        let mut scratch = Vec::new();
        assert!(r.recentre(20, 12, 3.0, &mut scratch));
        let all: Vec<f64> = r.chronological().collect();
        assert_eq!(all.len(), 110);
        assert!(all.iter().all(|&v| v == 49.0 || v == 51.0), "{all:?}");
        // newest last, as before
        assert_eq!(all[109], 51.0);
    }

    #[test]
    fn recentre_widens_to_a_wider_new_spread_but_never_narrows() {
        let mut scratch = Vec::new();
        let wider = (0..100)
            .map(|i| if i % 2 == 0 { 9.0 } else { 11.0 })
            .chain((0..20).map(|i| if i % 2 == 0 { 46.0 } else { 54.0 }));
        let mut r = ring_of(wider, 200);
        assert!(r.recentre(20, 12, 3.0, &mut scratch));
        let old: Vec<f64> = r.chronological().take(100).collect();
        assert!(old.iter().all(|&v| v == 46.0 || v == 54.0), "{old:?}");
        let narrower = (0..100)
            .map(|i| if i % 2 == 0 { 5.0 } else { 15.0 })
            .chain((0..20).map(|i| if i % 2 == 0 { 49.0 } else { 51.0 }));
        let mut r = ring_of(narrower, 200);
        assert!(r.recentre(20, 12, 3.0, &mut scratch));
        let old: Vec<f64> = r.chronological().take(100).collect();
        assert!(old.iter().all(|&v| v == 45.0 || v == 55.0), "{old:?}");
    }

    #[test]
    fn recentre_takes_a_metric_whose_spread_tripled_at_the_same_level() {
        let mut scratch = Vec::new();
        let values = (0..100)
            .map(|i| if i % 2 == 0 { 9.0 } else { 11.0 })
            .chain((0..20).map(|i| if i % 2 == 0 { 7.0 } else { 13.0 }));
        let mut r = ring_of(values, 200);
        assert!(r.recentre(20, 12, 3.0, &mut scratch));
        let old: Vec<f64> = r.chronological().take(100).collect();
        assert!(old.iter().all(|&v| v == 7.0 || v == 13.0), "{old:?}");
    }

    #[test]
    fn recentre_leaves_a_metric_that_did_not_move_or_too_few_values() {
        let mut scratch = Vec::new();
        let values: Vec<f64> = (0..120).map(|i| f64::from(i % 7)).collect();
        let mut r = ring_of(values.clone(), 200);
        assert!(!r.recentre(20, 12, 3.0, &mut scratch));
        assert_eq!(r.chronological().collect::<Vec<_>>(), values);
        let mut r = ring_of((0..20).map(f64::from), 200);
        assert!(!r.recentre(10, 12, 0.0, &mut scratch));
        assert!(!r.recentre(15, 12, 0.0, &mut scratch));
    }
}
