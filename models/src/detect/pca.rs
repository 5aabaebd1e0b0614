//! Step 3: the host PCA, fitted at the end of warm-up, and the rolling normalisation of the
//! warm-up rows it is fitted on.

use super::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HostPca {
    /// Metric index (into `Detector::metrics`) of each PCA column.
    pub(crate) metrics: Vec<usize>,
    pub(crate) mean: Vec<f64>,
    /// k x d, row-major.
    pub(crate) components: Vec<f64>,
    pub(crate) k: usize,
}

impl HostPca {
    /// Fits on rows of normalised values (NaN = missing, imputed at the column mean).
    pub(crate) fn fit(metrics: Vec<usize>, rows: &[Vec<f64>], variance: f64) -> Option<HostPca> {
        let d = metrics.len();
        if d < 2 || rows.len() < 2 * d {
            return None;
        }
        let mut mean = vec![0.0; d];
        let mut count = vec![0usize; d];
        for r in rows {
            for (j, &v) in r.iter().enumerate() {
                if !v.is_nan() {
                    mean[j] += v;
                    count[j] += 1;
                }
            }
        }
        for (m, &c) in mean.iter_mut().zip(&count) {
            *m = if c > 0 { *m / c as f64 } else { 0.0 };
        }
        let mut cov = vec![0.0; d * d];
        let mut c = vec![0.0; d];
        for r in rows {
            for j in 0..d {
                c[j] = if r[j].is_nan() { 0.0 } else { r[j] - mean[j] };
            }
            for i in 0..d {
                if c[i] == 0.0 {
                    continue;
                }
                for j in i..d {
                    cov[i * d + j] += c[i] * c[j];
                }
            }
        }
        let n = rows.len() as f64;
        for i in 0..d {
            for j in i..d {
                cov[i * d + j] /= n;
                cov[j * d + i] = cov[i * d + j];
            }
        }
        let (values, vectors) = symmetric_eigen(&cov, d);
        let total: f64 = values.iter().map(|v| v.max(0.0)).sum();
        if total <= 0.0 {
            return None;
        }
        let mut k = 0;
        let mut acc = 0.0;
        while k < d && acc < variance * total {
            acc += values[k].max(0.0);
            k += 1;
        }
        let k = k.clamp(1, d - 1);
        let components = vectors[..k].iter().flatten().copied().collect();
        Some(HostPca {
            metrics,
            mean,
            components,
            k,
        })
    }

    /// Squared reconstruction error over the present columns; `res` gets per-column residuals
    /// (0 for missing columns). `z` holds normalised values, NaN = missing.
    pub(crate) fn spe(&self, z: &[f64], centred: &mut [f64], res: &mut [f64]) -> f64 {
        let d = self.mean.len();
        for j in 0..d {
            centred[j] = if z[j].is_nan() {
                0.0
            } else {
                z[j] - self.mean[j]
            };
            res[j] = centred[j];
        }
        for i in 0..self.k {
            let comp = &self.components[i * d..(i + 1) * d];
            let p: f64 = comp.iter().zip(centred.iter()).map(|(a, b)| a * b).sum();
            for (r, a) in res.iter_mut().zip(comp) {
                *r -= p * a;
            }
        }
        let mut spe = 0.0;
        for j in 0..d {
            if z[j].is_nan() {
                res[j] = 0.0;
            } else {
                spe += res[j] * res[j];
            }
        }
        spe
    }
}

/// This tick's host-PCA input and the buffers of its reconstruction, reused every tick.
#[derive(Debug, Default)]
pub(crate) struct PcaScratch {
    /// Each column's normalised value this tick (NaN = not seen).
    pub(crate) z: Vec<f64>,
    centred: Vec<f64>,
    /// Each column's residual after [`PcaScratch::error`].
    pub(crate) res: Vec<f64>,
}

impl PcaScratch {
    /// `pca`'s squared error over this tick's columns (each one's residual in `res`), or
    /// None when no column was seen or `z` is not `pca`'s.
    pub(crate) fn error(&mut self, pca: &HostPca) -> Option<f64> {
        let d = pca.metrics.len();
        if self.z.len() != d || self.z.iter().all(|v| v.is_nan()) {
            return None;
        }
        self.centred.resize(d, 0.0);
        self.res.resize(d, 0.0);
        Some(pca.spe(&self.z, &mut self.centred, &mut self.res))
    }
}

/// The host-PCA input of every warm-up row, each metric normalised with the rolling baseline it
/// would have had at that tick live (same ring, same staggered recomputation as
/// [`Detector::tick`]); NaN where the metric is missing or has no baseline yet.
pub(crate) fn rolling_pca_rows(
    rows: &[Vec<f64>],
    cols: &[usize],
    slots: &[u64],
    floors: &[f64],
    config: &DetectorConfig,
    metric_warmup: u64,
    scratch: &mut Vec<f64>,
) -> Vec<Vec<f64>> {
    let every = config.rebaseline_every_ticks.max(1) as u64;
    let mut out = vec![vec![f64::NAN; cols.len()]; rows.len()];
    for (col, ((&i, &slot), &floor)) in cols.iter().zip(slots).zip(floors).enumerate() {
        let mut ring = Ring::new(config.baseline_window);
        let mut observed = 0u64;
        let mut baseline: Option<Baseline> = None;
        for (t, row) in rows.iter().enumerate() {
            let Some(&v) = row.get(i) else { continue };
            if v.is_nan() {
                continue;
            }
            ring.push(v);
            observed += 1;
            let rebase = match baseline {
                None => observed >= metric_warmup,
                Some(_) => (observed + slot).is_multiple_of(every),
            };
            if rebase {
                if let Some(b) =
                    robust_baseline(ring.values(), scratch, config.rel_scale_floor, floor)
                {
                    baseline = Some(b);
                }
            }
            if let Some(b) = baseline {
                out[t][col] = b.pca_z(v, config.pca_std_scale);
            }
        }
    }
    out
}
