//! Scoring a posted window without a host calibration (`POST /anomaly`), and the
//! explanation of one row shared with the live detector.

use super::*;

/// Errors of [`score_window`]. Rows and columns are numbered from 1.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("no metrics: a window needs at least one metric column")]
    NoMetrics,
    #[error("window has {rows} rows, at least {min} are needed")]
    TooFewRows { rows: usize, min: usize },
    #[error("row {row} has {got} values, expected {expected} (one per metric)")]
    RaggedRow {
        row: usize,
        expected: usize,
        got: usize,
    },
    #[error("row {row}, column {column} ({metric}): value is not a finite number")]
    NonFinite {
        row: usize,
        column: usize,
        metric: String,
    },
    #[error("metric {metric} appears twice (columns {first} and {second})")]
    DuplicateMetric {
        metric: String,
        first: usize,
        second: usize,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Result of [`score_window`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowScore {
    /// One score per row in [0, 1] (0.5 = at the reference threshold).
    pub scores: Vec<f64>,
    /// One host score per row in units of the reference threshold.
    pub raw_scores: Vec<f64>,
    /// Index (0-based) of the worst row (the first one on ties).
    pub worst_row: usize,
    /// Top contributors of the worst row, largest first.
    pub contributors: Vec<Contributor>,
    /// The per-metric model-score threshold used ([`REFERENCE_MODEL_THRESHOLD`]).
    pub threshold: f64,
}

/// The `max` largest contributors from `(name, value, baseline, ratio)`, largest first (ties
/// keep input order); shares are `ratio^2 / sum ratio^2` over all given metrics.
pub(crate) fn contributors_of<'a>(
    items: impl Iterator<Item = (&'a str, f64, Baseline, f64, bool)>,
    max: usize,
) -> Vec<Contributor> {
    let mut all: Vec<(&str, f64, Baseline, f64, bool)> = items.filter(|x| x.3 > 0.0).collect();
    let total: f64 = all.iter().map(|x| x.3 * x.3).sum();
    if total <= 0.0 || !total.is_finite() {
        return Vec::new();
    }
    all.sort_by(|a, b| b.3.total_cmp(&a.3));
    all.truncate(max);
    all.into_iter()
        .map(|(name, value, b, r, bounded)| {
            let (lo, hi) = b.expected(bounded);
            Contributor {
                metric: name.to_string(),
                value,
                expected_low: lo,
                expected_high: hi,
                contribution: r * r / total,
            }
        })
        .collect()
}

/// Scores a posted window (rows = ticks, columns = metrics) with normalisation estimated from
/// the window itself (robustly: median and MAD per column, with the default floors); per-row
/// scores in [0, 1] and the top contributors of the worst row. Windows at the start are padded
/// with the median (z = 0). No host calibration exists, so the threshold is the model's
/// reference threshold [`REFERENCE_MODEL_THRESHOLD`] per metric, and no host PCA is used.
pub fn score_window(
    model: &Model,
    metrics: &[String],
    rows: &[Vec<f64>],
) -> Result<WindowScore, DetectError> {
    if metrics.is_empty() {
        return Err(DetectError::NoMetrics);
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (j, name) in metrics.iter().enumerate() {
        if let Some(&first) = seen.get(name.as_str()) {
            return Err(DetectError::DuplicateMetric {
                metric: name.clone(),
                first: first + 1,
                second: j + 1,
            });
        }
        seen.insert(name, j);
    }
    if rows.len() < MIN_WINDOW_ROWS {
        return Err(DetectError::TooFewRows {
            rows: rows.len(),
            min: MIN_WINDOW_ROWS,
        });
    }
    let nm = metrics.len();
    for (i, row) in rows.iter().enumerate() {
        if row.len() != nm {
            return Err(DetectError::RaggedRow {
                row: i + 1,
                expected: nm,
                got: row.len(),
            });
        }
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            return Err(DetectError::NonFinite {
                row: i + 1,
                column: j + 1,
                metric: metrics[j].clone(),
            });
        }
    }
    let cfg = DetectorConfig::default();
    let f = model.features();
    let mut scratch = Vec::new();
    let mut baselines = Vec::with_capacity(nm);
    for j in 0..nm {
        let col: Vec<f64> = rows.iter().map(|r| r[j]).collect();
        let floor = cfg.abs_floor_for(&metrics[j]);
        let b =
            robust_baseline(&col, &mut scratch, cfg.rel_scale_floor, floor).ok_or_else(|| {
                DetectError::NonFinite {
                    row: 1,
                    column: j + 1,
                    metric: metrics[j].clone(),
                }
            })?;
        baselines.push(b);
    }
    let n = rows.len() * nm;
    let mut batch = Vec::with_capacity(n * f);
    for t in 0..rows.len() {
        for (j, b) in baselines.iter().enumerate() {
            for lag in 0..f {
                let z = if lag <= t { b.z(rows[t - lag][j]) } else { 0.0 };
                batch.push(z as f32);
            }
        }
    }
    let scores = model.score(&batch, n)?;
    let thr = REFERENCE_MODEL_THRESHOLD;
    let mut raw_scores = Vec::with_capacity(rows.len());
    let mut worst = (0usize, f64::NEG_INFINITY);
    for t in 0..rows.len() {
        let r = scores.score[t * nm..(t + 1) * nm]
            .iter()
            .zip(batch[t * nm * f..].chunks(f))
            .map(|(&s, w)| gate(w[0], cfg.current_gate_z) * f64::from(s).max(0.0) / thr)
            .fold(0.0, f64::max);
        if r > worst.1 {
            worst = (t, r);
        }
        raw_scores.push(r);
    }
    let wt = worst.0;
    let contributors = contributors_of(
        (0..nm).map(|j| {
            (
                metrics[j].as_str(),
                rows[wt][j],
                baselines[j],
                gate(batch[(wt * nm + j) * f], cfg.current_gate_z)
                    * f64::from(scores.score[wt * nm + j]).max(0.0)
                    / thr,
                is_bounded(&metrics[j]),
            )
        }),
        cfg.max_contributors,
    );
    Ok(WindowScore {
        scores: raw_scores.iter().map(|r| r / (1.0 + r)).collect(),
        raw_scores,
        worst_row: wt,
        contributors,
        threshold: thr,
    })
}
