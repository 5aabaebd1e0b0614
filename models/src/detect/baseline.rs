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

    /// Drops all but the newest `n` values; returns how many are left.
    pub(crate) fn keep_newest(&mut self, n: usize) -> usize {
        let skip = self.buf.len().saturating_sub(n);
        let kept: Vec<f64> = self.chronological().skip(skip).collect();
        self.buf = kept;
        self.head = 0;
        self.buf.len()
    }

    /// Values oldest first.
    pub(crate) fn chronological(&self) -> impl Iterator<Item = f64> + '_ {
        let (new, old) = self.buf.split_at(self.head.min(self.buf.len()));
        old.iter().chain(new).copied()
    }
}
