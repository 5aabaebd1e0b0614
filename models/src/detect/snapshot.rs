//! Saving and restoring a warm detector, so an agent restart is not a new warm-up: the
//! rolling baselines (each metric's recent raw values) and the calibration (thresholds, host
//! PCA) survive; the 8-tick windows refill in 8 ticks, and open events do not survive (the
//! control plane closes them when the agent restarts).

use serde::{Deserialize, Serialize};

use super::tail::{AlarmScale, AlarmScaleState};
use super::{Baseline, Calibration, Detector, Family, FamilyState, HostPca, MetricState, Ring};

/// Bumped when the layout changes; an older snapshot is ignored (the detector warms up).
const SNAPSHOT_VERSION: u32 = 1;

/// The longest ranking scale a snapshot may name (a week of 1-second ticks): a larger one is
/// a corrupt file, not a configuration.
const MAX_RANK_TICKS: usize = 7 * 24 * 3600;

/// A warm detector's learnt state. Serialise it with any serde format.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DetectorSnapshot {
    version: u32,
    /// The model's feature names: baselines and thresholds only make sense for the same schema.
    features: Vec<String>,
    /// Model name and version (the thresholds are in its score units).
    pub model: String,
    /// Timestamp of the last tick before the snapshot.
    pub saved_ms: i64,
    pub calibrated_ms: i64,
    next_id: u64,
    metrics: Vec<MetricSnapshot>,
    model_threshold: f64,
    pca_threshold: f64,
    score_threshold: f64,
    pca: Option<PcaSnapshot>,
    /// The ranking score's `(ticks, threshold)` scales (absent in older snapshots: no ranking
    /// score until the next warm-up).
    #[serde(default)]
    rank_scales: Vec<(usize, f64)>,
    /// The multi-scale alarm's `(ticks, threshold)` scales (absent in older snapshots: the
    /// `smooth_ticks` alarm until the next warm-up).
    #[serde(default)]
    alarm_quantile_scales: Vec<(usize, f64)>,
    /// The spike alarm's host PCA (the same columns as `pca`) and its threshold (absent in
    /// older snapshots: no spike alarm until the next warm-up).
    #[serde(default)]
    spike_pca: Option<SpikePcaSnapshot>,
    /// The adaptive alarm scales' state (absent in older snapshots: the hourly mean against its
    /// fixed warm-up threshold until the next warm-up).
    #[serde(default)]
    alarm_scales: Vec<AlarmScaleState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SpikePcaSnapshot {
    mean: Vec<f64>,
    components: Vec<f64>,
    k: usize,
    threshold: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct MetricSnapshot {
    name: String,
    /// Recent raw values, oldest first (f32: a baseline needs no more precision).
    values: Vec<f32>,
    observed: u64,
    baseline: Option<Baseline>,
    #[serde(default)]
    sustain_thr: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PcaSnapshot {
    metrics: Vec<String>,
    mean: Vec<f64>,
    components: Vec<f64>,
    k: usize,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RestoreError {
    #[error("snapshot layout version {found} is not {SNAPSHOT_VERSION}")]
    Version { found: u32 },
    #[error("snapshot was made with model {found}, this detector runs {expected}")]
    Model { found: String, expected: String },
    #[error("snapshot features {found:?} differ from the model's {expected:?}")]
    Features {
        found: Vec<String>,
        expected: Vec<String>,
    },
    #[error("snapshot is inconsistent: {0}")]
    Inconsistent(String),
    #[error("the detector has already seen ticks; restore into a new one")]
    NotFresh,
}

fn model_id(d: &Detector) -> String {
    let m = d.model.manifest();
    format!("{}@{}", m.name, m.version)
}

impl Detector {
    /// The learnt state, once warm (None while warming up).
    pub fn snapshot(&self) -> Option<DetectorSnapshot> {
        let calib = self.calib.as_ref()?;
        let metrics = self
            .metrics
            .iter()
            .map(|m| MetricSnapshot {
                name: m.name.clone(),
                values: m.ring.chronological().map(|v| v as f32).collect(),
                observed: m.observed,
                baseline: m.baseline,
                sustain_thr: m.sustain_thr,
            })
            .collect();
        let pca = calib.pca.as_ref().map(|p| PcaSnapshot {
            metrics: p
                .metrics
                .iter()
                .map(|&i| self.metrics[i].name.clone())
                .collect(),
            mean: p.mean.clone(),
            components: p.components.clone(),
            k: p.k,
        });
        Some(DetectorSnapshot {
            version: SNAPSHOT_VERSION,
            features: self.model.manifest().features.clone(),
            model: model_id(self),
            saved_ms: self.last_ts_ms.unwrap_or(0),
            calibrated_ms: self.calibrated_ms.unwrap_or(0),
            next_id: self.next_id,
            metrics,
            model_threshold: calib.model_threshold,
            pca_threshold: calib.pca_threshold,
            score_threshold: calib.score_threshold,
            pca,
            rank_scales: self.rank.scales().to_vec(),
            alarm_quantile_scales: self.alarm_quantile.scales().to_vec(),
            alarm_scales: self.alarm_scales.iter().map(AlarmScale::state).collect(),
            spike_pca: calib.spike_pca.as_ref().map(|(p, thr)| SpikePcaSnapshot {
                mean: p.mean.clone(),
                components: p.components.clone(),
                k: p.k,
                threshold: *thr,
            }),
        })
    }

    /// Makes a new detector (no tick yet) warm from a snapshot of the same model. The
    /// configuration stays this detector's own.
    pub fn restore(&mut self, snap: DetectorSnapshot) -> Result<(), RestoreError> {
        if self.ticks != 0 || !self.metrics.is_empty() {
            return Err(RestoreError::NotFresh);
        }
        if snap.version != SNAPSHOT_VERSION {
            return Err(RestoreError::Version {
                found: snap.version,
            });
        }
        let expected = model_id(self);
        if snap.model != expected {
            return Err(RestoreError::Model {
                found: snap.model,
                expected,
            });
        }
        if snap.features != self.model.manifest().features {
            return Err(RestoreError::Features {
                found: snap.features,
                expected: self.model.manifest().features.clone(),
            });
        }
        let f = self.model.features();
        let mut metrics = Vec::with_capacity(snap.metrics.len());
        let mut index = std::collections::HashMap::new();
        for (i, m) in snap.metrics.into_iter().enumerate() {
            if index.insert(m.name.clone(), i).is_some() {
                return Err(RestoreError::Inconsistent(format!(
                    "metric {} appears twice",
                    m.name
                )));
            }
            let mut ring = Ring::new(self.config.baseline_window);
            for v in &m.values {
                let v = f64::from(*v);
                if v.is_finite() {
                    ring.push(v);
                }
            }
            let baseline = m.baseline.filter(|b| {
                [b.median, b.scale, b.mean, b.sd]
                    .iter()
                    .all(|v| v.is_finite())
            });
            let mut state = MetricState::new(m.name, i, &self.config, f);
            state.ring = ring;
            state.observed = m.observed;
            state.baseline = baseline;
            state.sustain_thr = m.sustain_thr.filter(|t| t.is_finite() && *t > 0.0);
            metrics.push(state);
        }
        let pca = match snap.pca {
            None => None,
            Some(p) => {
                let d = p.metrics.len();
                if p.mean.len() != d || p.components.len() != p.k * d || p.k == 0 || p.k >= d {
                    return Err(RestoreError::Inconsistent("host PCA shape".into()));
                }
                let cols = p
                    .metrics
                    .iter()
                    .map(|name| {
                        index.get(name).copied().ok_or_else(|| {
                            RestoreError::Inconsistent(format!("PCA metric {name} has no state"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                for (col, &i) in cols.iter().enumerate() {
                    metrics[i].pca_col = Some(col);
                }
                Some(HostPca {
                    metrics: cols,
                    mean: p.mean,
                    components: p.components,
                    k: p.k,
                })
            }
        };
        let spike_pca = match (snap.spike_pca, &pca) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(RestoreError::Inconsistent(
                    "spike PCA without host PCA".into(),
                ))
            }
            (Some(s), Some(host)) => {
                let d = host.metrics.len();
                if s.mean.len() != d
                    || s.components.len() != s.k * d
                    || s.k == 0
                    || s.k >= d
                    || !(s.threshold.is_finite() && s.threshold > 0.0)
                {
                    return Err(RestoreError::Inconsistent("spike PCA shape".into()));
                }
                let spike = HostPca {
                    metrics: host.metrics.clone(),
                    mean: s.mean,
                    components: s.components,
                    k: s.k,
                };
                Some((spike, s.threshold))
            }
        };
        let thresholds = [
            snap.model_threshold,
            snap.pca_threshold,
            snap.score_threshold,
        ];
        if !thresholds
            .iter()
            .chain(snap.rank_scales.iter().map(|s| &s.1))
            .chain(snap.alarm_quantile_scales.iter().map(|s| &s.1))
            .all(|v| v.is_finite() && *v > 0.0)
            || snap
                .rank_scales
                .iter()
                .chain(&snap.alarm_quantile_scales)
                .any(|s| s.0 == 0 || s.0 > MAX_RANK_TICKS)
        {
            return Err(RestoreError::Inconsistent("thresholds".into()));
        }
        let saved_scales = snap
            .alarm_scales
            .into_iter()
            .map(|s| AlarmScale::from_state(s, MAX_RANK_TICKS))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| RestoreError::Inconsistent("adaptive alarm state".into()))?;
        self.metrics = metrics;
        self.index = index;
        self.order.clear();
        self.warm_rows.clear();
        self.ticks = self.config.warmup_ticks as u64;
        self.next_id = snap.next_id.max(1);
        self.families = vec![FamilyState::default(); Family::ALL.len()];
        for i in 0..self.metrics.len() {
            let (name, family) = (self.metrics[i].name.clone(), self.metrics[i].family);
            self.metrics[i].slot_idx = self.slot_of(&name, family);
        }
        self.smooth = Ring::new(self.config.smooth_ticks.max(1));
        self.rank =
            super::rank::RankScore::restored(snap.rank_scales, super::rank::Combine::Geometric);
        // the adaptive scales go on from their saved state when it is that of the configured
        // scales; otherwise (an older snapshot, other scales) the hourly mean stands against its
        // fixed warm-up threshold in their place until the next warm-up (once: a restored
        // detector saves it among its fixed scales)
        let mut fixed = snap.alarm_quantile_scales;
        let configured = &self.config.alarm_scales;
        if !configured.is_empty()
            && saved_scales.len() == configured.len()
            && saved_scales
                .iter()
                .zip(configured)
                .all(|(s, &(ticks, risk))| s.is(ticks, risk))
        {
            self.alarm_scales = saved_scales;
        } else {
            self.alarm_scales.clear();
            let hourly = self.config.smooth_ticks.max(1);
            if !configured.is_empty() && !fixed.iter().any(|s| s.0 == hourly) {
                fixed.push((hourly, snap.score_threshold));
            }
        }
        self.alarm_quantile = super::rank::RankScore::restored(fixed, super::rank::Combine::Max);
        self.calib = Some(Calibration {
            model_threshold: snap.model_threshold,
            pca,
            pca_threshold: snap.pca_threshold,
            spike_pca,
            score_threshold: snap.score_threshold,
        });
        self.calibrated_ms = Some(snap.calibrated_ms);
        self.restored = true;
        Ok(())
    }
}
