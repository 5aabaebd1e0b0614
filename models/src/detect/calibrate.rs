//! Step 4: the end of warm-up: baselines, window-model and PCA thresholds, and the score
//! threshold of the smoothed host ratio.

use super::*;

impl Detector {
    /// End of warm-up: baselines, window-model and PCA thresholds from the warm-up ticks.
    pub(crate) fn calibrate(&mut self) -> Result<(), ModelError> {
        let f = self.model.features();
        let rows = std::mem::take(&mut self.warm_rows);
        let first: Vec<f64> = rows
            .iter()
            .map(|r| r.first().copied().unwrap_or(f64::NAN))
            .collect();
        self.calibrate_single(&first);
        let ticks = rows.len();
        let nm = self.metrics.len();
        let metric_warmup = self.config.metric_warmup(f) as u64;
        for m in &mut self.metrics {
            m.lags = vec![0.0; f];
            m.filled = 0;
            m.pca_col = None;
            m.baseline = if m.ignored || m.observed < metric_warmup {
                None
            } else {
                robust_baseline(m.ring.values(), &mut self.scratch, m.rel_floor, m.abs_floor)
            };
        }
        // normalised warm-up rows (NaN = missing or no baseline)
        let z_rows: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| {
                (0..nm)
                    .map(|i| match (r.get(i), self.metrics[i].baseline) {
                        (Some(&v), Some(b)) if !v.is_nan() => b.z(v),
                        _ => f64::NAN,
                    })
                    .collect()
            })
            .collect();

        // window model over every warm-up window, in chunks
        let mut host_model = vec![f64::NAN; ticks];
        let gate_z = self.config.current_gate_z;
        const CHUNK: usize = 8192;
        let mut batch: Vec<f32> = Vec::with_capacity(CHUNK * f);
        let mut owners: Vec<usize> = Vec::with_capacity(CHUNK);
        for (t, zr) in z_rows.iter().enumerate() {
            for (i, &z) in zr.iter().enumerate() {
                if z.is_nan() {
                    continue;
                }
                let m = &mut self.metrics[i];
                m.push_z(z as f32);
                if m.filled >= f && f > 0 {
                    if gate_z > 0.0 && f64::from(m.lags[0]).abs() <= (gate_z - 1.0).max(0.0) {
                        // inside the gate: the gated score is exactly 0, no model call
                        if host_model[t].is_nan() {
                            host_model[t] = 0.0;
                        }
                    } else {
                        batch.extend_from_slice(&m.lags);
                        owners.push(t);
                    }
                }
            }
            if owners.len() >= CHUNK {
                flush_max(
                    &self.model,
                    gate_z,
                    &mut batch,
                    &mut owners,
                    &mut host_model,
                )?;
            }
        }
        flush_max(
            &self.model,
            gate_z,
            &mut batch,
            &mut owners,
            &mut host_model,
        )?;
        // sustained-deviation thresholds: the largest mean over `sustain_ticks` of each
        // metric's warm-up
        let k = self.config.sustain_ticks;
        if k > 0 {
            for (i, m) in self.metrics.iter_mut().enumerate() {
                m.sustain = Ring::new(k);
                m.sustain_thr = None;
                if m.baseline.is_none() {
                    continue;
                }
                let mut window = Ring::new(k);
                let mut worst = 0.0f64;
                for zr in &z_rows {
                    let Some(&z) = zr.get(i) else { continue };
                    if z.is_nan() {
                        continue;
                    }
                    window.push(z);
                    let w = window.values();
                    if w.len() >= k {
                        let mean = w.iter().sum::<f64>() / k as f64;
                        worst = worst.max(symptom(m.direction, mean));
                    }
                }
                m.sustain_thr = Some(worst.max(SUSTAIN_FLOOR));
            }
        }
        let mut scored: Vec<f64> = host_model.iter().copied().filter(|v| !v.is_nan()).collect();
        let model_threshold = quantile(&mut scored, self.config.threshold_quantile)
            .unwrap_or(0.0)
            .max(self.config.min_model_threshold)
            .max(1e-9);
        // combined ratio of every warm-up tick (NaN = nothing scored), for `score_quantile`
        let mut combined: Vec<f64> = host_model.iter().map(|v| v / model_threshold).collect();

        // host PCA over metrics present in at least half of the warm-up ticks
        let mut pca = None;
        let mut spike_pca = None;
        let mut pca_threshold = self.config.min_pca_threshold.max(1e-9);
        if self.config.host_pca {
            let cols: Vec<usize> = (0..nm)
                .filter(|&i| {
                    self.metrics[i].baseline.is_some()
                        && 2 * z_rows
                            .iter()
                            .filter(|r| r.get(i).is_some_and(|v| !v.is_nan()))
                            .count()
                            >= ticks
                })
                .take(self.config.pca_max_metrics)
                .collect();
            let std_scale = self.config.pca_std_scale;
            // every row normalised with the baseline of the end of warm-up
            let whole_rows = |metrics: &[MetricState]| -> Vec<Vec<f64>> {
                rows.iter()
                    .zip(&z_rows)
                    .map(|(raw, zr)| {
                        cols.iter()
                            .map(|&i| match metrics[i].baseline {
                                Some(b) if std_scale && !zr[i].is_nan() => b.pca_z(raw[i], true),
                                _ => zr[i],
                            })
                            .collect()
                    })
                    .collect()
            };
            let spike_data = match self.config.spike_alarm {
                Some(s) if self.config.pca_rolling_fit => Some((s, whole_rows(&self.metrics))),
                _ => None,
            };
            let data: Vec<Vec<f64>> = if self.config.pca_rolling_fit {
                let slots: Vec<u64> = cols.iter().map(|&i| self.metrics[i].slot as u64).collect();
                let floors: Vec<f64> = cols.iter().map(|&i| self.metrics[i].abs_floor).collect();
                rolling_pca_rows(
                    &rows,
                    &cols,
                    &slots,
                    &floors,
                    &self.config,
                    metric_warmup,
                    &mut self.scratch,
                )
            } else {
                whole_rows(&self.metrics)
            };
            if let Some((s, spike_rows)) = spike_data {
                spike_pca =
                    fit_with_threshold(cols.clone(), &spike_rows, s.variance, s.quantile, s.floor)
                        .map(|(p, thr, _)| (p, thr));
            }
            let q = self
                .config
                .pca_quantile
                .unwrap_or(self.config.threshold_quantile);
            let fitted = fit_with_threshold(
                cols,
                &data,
                self.config.pca_variance,
                q,
                self.config.min_pca_threshold,
            );
            if let Some((p, thr, spe_rows)) = fitted {
                pca_threshold = thr;
                for (col, &i) in p.metrics.iter().enumerate() {
                    self.metrics[i].pca_col = Some(col);
                }
                for (c, &e) in combined.iter_mut().zip(&spe_rows) {
                    // NaN-aware max: NaN only when both are missing
                    *c = c.max(e / pca_threshold);
                }
                pca = Some(p);
            }
        }

        // smoothing and the calibrated threshold of the combined ratio
        let k = self.config.smooth_ticks.max(1);
        let score_threshold = match self.config.score_quantile {
            None => 1.0,
            Some(q) => {
                let mut smoothed = smoothed_scored(&combined, k);
                quantile(&mut smoothed, q)
                    .unwrap_or(0.0)
                    .max(self.config.min_score_threshold)
                    .max(1e-9)
            }
        };
        self.smooth = Ring::new(k);
        for &c in &combined[combined.len().saturating_sub(k)..] {
            self.smooth.push(if c.is_nan() { 0.0 } else { c });
        }
        self.alarm_scales = self
            .config
            .alarm_scales
            .iter()
            .map(|&(ticks, risk)| {
                tail::AlarmScale::calibrate(
                    &combined,
                    ticks,
                    risk,
                    self.config.baseline_window,
                    self.config.min_score_threshold,
                )
            })
            .collect();
        self.alarm_quantile = rank::RankScore::calibrate_max(
            &combined,
            &self.config.alarm_quantile_scales,
            self.config.min_score_threshold,
        );
        self.rank = rank::RankScore::calibrate(
            &combined,
            &self.config.rank_scales,
            self.config.min_score_threshold,
        );
        self.warm_ratios = combined;
        self.calib = Some(Calibration {
            model_threshold,
            // the spike PCA reads the host PCA's inputs: none without it
            spike_pca: spike_pca.filter(|_| pca.is_some()),
            pca,
            pca_threshold,
            score_threshold,
        });
        Ok(())
    }
}

/// A host PCA fitted on the rows with any value (NaN = missing), its threshold (the `q`
/// quantile of the rows' errors, at least `floor`) and every row's error (NaN = no value).
fn fit_with_threshold(
    cols: Vec<usize>,
    data: &[Vec<f64>],
    variance: f64,
    q: f64,
    floor: f64,
) -> Option<(HostPca, f64, Vec<f64>)> {
    let present: Vec<bool> = data.iter().map(|r| r.iter().any(|v| !v.is_nan())).collect();
    let fit_rows: Vec<Vec<f64>> = data
        .iter()
        .zip(&present)
        .filter(|(_, &p)| p)
        .map(|(r, _)| r.clone())
        .collect();
    let p = HostPca::fit(cols, &fit_rows, variance)?;
    let d = p.metrics.len();
    let (mut c, mut res) = (vec![0.0; d], vec![0.0; d]);
    let errors: Vec<f64> = data
        .iter()
        .zip(&present)
        .map(|(r, &here)| {
            if here {
                p.spe(r, &mut c, &mut res)
            } else {
                f64::NAN
            }
        })
        .collect();
    let mut scored: Vec<f64> = errors.iter().copied().filter(|v| !v.is_nan()).collect();
    let thr = quantile(&mut scored, q).unwrap_or(0.0).max(floor).max(1e-9);
    Some((p, thr, errors))
}

/// Trailing means over `k` ticks of `combined` (NaN counts as 0, shorter windows at the start),
/// kept only at the ticks where `combined` is not NaN.
pub(crate) fn smoothed_scored(combined: &[f64], k: usize) -> Vec<f64> {
    let k = k.max(1);
    let mut out = Vec::with_capacity(combined.len());
    let mut sum = 0.0;
    for (t, &c) in combined.iter().enumerate() {
        sum += if c.is_nan() { 0.0 } else { c };
        if t >= k {
            let old = combined[t - k];
            sum -= if old.is_nan() { 0.0 } else { old };
        }
        if !c.is_nan() {
            out.push(sum / (t + 1).min(k) as f64);
        }
    }
    out
}

/// Scores the pending warm-up rows and folds them into `host[owner] = max(...)`.
pub(crate) fn flush_max(
    model: &Model,
    gate_z: f64,
    batch: &mut Vec<f32>,
    owners: &mut Vec<usize>,
    host: &mut [f64],
) -> Result<(), ModelError> {
    if owners.is_empty() {
        return Ok(());
    }
    let f = model.features();
    let scores = model.score(batch, owners.len())?;
    for (row, (&t, &s)) in owners.iter().zip(&scores.score).enumerate() {
        let s = gate(batch[row * f], gate_z) * f64::from(s);
        if s.is_finite() && (host[t].is_nan() || s > host[t]) {
            host[t] = s;
        }
    }
    batch.clear();
    owners.clear();
    Ok(())
}
