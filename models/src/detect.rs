//! The one detection pipeline: used live by the agent (one [`Detector`] per host, one
//! [`Detector::tick`] per collection tick), offline by [`crate::replay`], and by the control plane
//! to score a posted window ([`score_window`]).
//!
//! Per tick, for one host:
//! 1. **Online per-host normalisation.** Each metric keeps its last `baseline_window` raw values;
//!    its baseline (median, scale) is recomputed from them every `rebaseline_every_ticks`
//!    observations (staggered across metrics), with
//!    `scale = max(1.4826 * MAD, 0.5 * std, rel_scale_floor * |median|, abs_scale_floor)`, with
//!    `abs_scale_floor` raised to `pct_scale_floor` (one percentage point) for `*_pct` metrics
//!    and to `cpu_scale_floor` (two steps of the CPU measurement, set by the agent) for `cpu.*_pct`.
//!    A sustained level shift therefore becomes the new normal once it fills half the window;
//!    a short anomaly does not move a median. `z = clip((v - median) / scale, -10, 10)`.
//!    Missing values (a metric that skips a tick, a counter reset, a non-finite value) are
//!    simply not observed: the metric is not scored that tick and its window does not advance.
//! 2. **Window model.** Every metric with 8 normalised values gives one row
//!    `[z_t, z_(t-1), ..., z_(t-7)]`; all rows of the host go to the ONNX model in **one** batched
//!    call, except rows whose current value is inside the current-value gate (their gated score
//!    is exactly 0, see step 5). Window component = max over metrics of the model score.
//! 3. **Host PCA** (optional, on by default). At the end of warm-up, a PCA of the host's
//!    normalised metric vectors (with `pca_std_scale`, the default, `(v - mean) / sd` over the
//!    same rolling window instead of the robust z; cyclic Jacobi on the covariance) keeps the
//!    components that explain `pca_variance` of the variance; PCA component = squared
//!    reconstruction error (SPE) of the current vector. It sees changes in the relations between
//!    metrics that a per-metric model cannot see. With `pca_rolling_fit` (5-minute profile) the
//!    warm-up rows it is fitted and thresholded on are normalised with the rolling baseline each
//!    metric would have had at that tick live, i.e. exactly like the live ticks it then scores.
//! 4. **Per-host thresholds.** At the end of warm-up, each component's threshold is the
//!    `threshold_quantile` quantile (`pca_quantile` for the PCA, if set) of its scores over the
//!    warm-up ticks (with floors, so a host whose metrics are all constant never alarms).
//!    Combined ratio `c = max(window / thr_window, pca / thr_pca)`; host ratio
//!    `r = mean(c over the last smooth_ticks ticks) / thr_score`, where `thr_score` is the
//!    `score_quantile` quantile of the same smoothed ratio over the warm-up ticks (floor
//!    `min_score_threshold`), or 1 without `score_quantile` (the live default: no smoothing, no
//!    recalibration, `r = c`). `raw_score = r` (1.0 = at threshold); with
//!    `r_eff = r * sensitivity`, `score = r_eff / (1 + r_eff)` (0.5 = at threshold). The
//!    smoothing is a simple anomaly likelihood: a tick alarms when the recent mean of the host's
//!    ratios is in the top `1 - score_quantile` of its warm-up distribution.
//! 5. **Events with hysteresis.** `min_duration_ticks` consecutive ticks with `r_eff > 1` open an
//!    event; `clear_ticks` consecutive ticks with `r_eff < clear_fraction` close it; while open,
//!    an `Updated` change is emitted at most every `update_every_ticks` ticks.
//!    A metric's window score is gated by its current value (`current_gate_z`): a spike that
//!    is over stops scoring when the value is back, although it stays in the 8-tick window.
//!    With `per_family` (the live default) each family has its own event; a one-way metric
//!    ([`direction`]: memory in use only when it rises, available memory only when it falls)
//!    is never scored the harmless way, and while disk I/O is anomalous the CPU metrics it
//!    drives by itself ([`io_driven_cpu`]: system and total time, CPU pressure, load) are left out of the
//!    CPU family's evidence and baselines, so one I/O saturation is one event. A disk's read
//!    and write rates ([`disk_rate`]) are disk I/O evidence only while that disk is loaded
//!    ([`disk_load`]: its busy time, or the host's I/O pressure or I/O wait, up past the gate
//!    too), or while the host has none of those metrics: a few megabytes read on an idle disk
//!    are many of its deviations and no disk problem.
//! 6. **Explanations.** Per metric, `c = max(window score / thr_window, PCA residual^2 / thr_pca)`
//!    of the current tick; contributors are the metrics with the largest `c`, each with its
//!    current value, its expected range `median -/+ 3 * scale` in the metric's own units, and its
//!    share `c^2 / sum c^2`.
//!
//! Where each part lives: [`DetectorConfig`] in `config.rs`; a metric's own state (step 1) in
//! `metric.rs` over the rolling baselines of `baseline.rs`; [`Detector::tick`] in `tick.rs`,
//! one method per step (observe, window model, host PCA, smoothing, family ratios); step 3's
//! PCA in `pca.rs`; step 4's end of warm-up in `calibrate.rs`; the event lifecycle and the
//! contributors (steps 5 and 6) in `events.rs`; metric families in `family.rs`; the ranking
//! score in `rank.rs`; the evidence of a host with a single series in `single.rs`; saving and
//! restoring a warm detector in `snapshot.rs`; [`score_window`]
//! in `window.rs`. This file holds the public records and the detector's state.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::linalg::symmetric_eigen;
use crate::{Model, ModelError};

mod baseline;
mod calibrate;
mod config;
mod events;
mod family;
mod metric;
mod pca;
mod rank;
mod single;
mod snapshot;
mod tail;
mod tick;
mod window;

use baseline::*;
use events::*;
use metric::*;
use pca::*;
use window::contributors_of;

pub use config::{DetectorConfig, SpikeAlarm};
pub use events::RISING_RATIO;
pub use family::{
    direction, disk_load, disk_rate, io_driven_cpu, is_bounded, saturation_level, upper_only,
    Direction, Family,
};
pub use sco_policy::{Contributor, Severity};
pub use single::SingleSeries;
pub use snapshot::{DetectorSnapshot, RestoreError};
pub use window::{score_window, DetectError, WindowScore};

/// Normalised values are clipped to +-CLIP (the model card's normalisation).
pub const CLIP: f64 = 10.0;
/// Clip of the mean/std-normalised host-PCA input (`pca_std_scale`).
const PCA_STD_CLIP: f64 = 100.0;
/// MAD to standard deviation for normal data.
const MAD_SCALE: f64 = 1.4826;
/// Scale floor as a fraction of the standard deviation (the model card's normalisation).
const STD_FLOOR_FRAC: f64 = 0.5;
/// Expected range = median -/+ EXPECTED_Z * scale.
const EXPECTED_Z: f64 = 3.0;
/// Scale floor of CPU steal and pressure, in multiples of `pct_scale_floor`.
const NOISY_PCT_FLOOR: f64 = 5.0;
/// Scale floor of a disk's read and write rates: bytes per second, and I/Os per second. A
/// near-idle disk's baseline is a few I/Os a second, so a handful more (a binary paged in, a
/// cache miss: 0.4 to 6 MB read in a second with the disk under 2 % busy) was 20 to 400 times
/// its scale and a `critical` event. In 40 minutes of the busy-host drill's load replayed
/// through the live profile at one row a second (`models/eval/busy-host`), four such events
/// opened; with these floors one, and every injected fault still opened its event. A disk that
/// is really loaded moves by far more (the drill's I/O saturation: over 1 GB/s). The one left
/// (6 MB read in two seconds, the disk under 1 % busy) is gone since rates count only while
/// their disk is loaded ([`disk_load`]).
const DISK_BYTES_SCALE_FLOOR: f64 = 1024.0 * 1024.0;
const DISK_OPS_SCALE_FLOOR: f64 = 25.0;
/// Fewest values a relearnt metric's baseline is restarted on (see `relearn_after_ticks`).
const REBASE_MIN_VALUES: usize = 12;
/// How far (in its baseline's scales) the median of a metric's values since a relearnt event
/// opened must be from the median of its older values for the metric to be moved to that level.
const REBASE_MIN_MOVE: f64 = 1.0;
/// Minimum number of rows [`score_window`] accepts.
pub const MIN_WINDOW_ROWS: usize = 16;
/// Model-score threshold [`score_window`] uses when no host calibration exists: the median of
/// the per-host window-model thresholds the detector calibrates (0.995 quantile of the gated
/// max over 19 metrics) on the train halves of ASD and JumpStarter Dataset3 (range 268..500).
pub const REFERENCE_MODEL_THRESHOLD: f64 = 360.0;

/// Result of one [`Detector::tick`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tick {
    /// `r_eff / (1 + r_eff)` in [0, 1]: 0.5 = at the (sensitivity-adjusted) threshold; 0 before
    /// the detector is warm.
    pub score: f64,
    /// Host score in units of the calibrated threshold, before sensitivity (1.0 = at threshold).
    pub raw_score: f64,
    /// How anomalous this tick is, for ranking, in [0, 1): the evidence at several time scales
    /// (`DetectorConfig::rank_scales`), apart from the alarm decision, which may smooth. Equal
    /// to `score` without rank scales; 0 before the detector is warm.
    pub rank: f64,
    /// An event is open after this tick.
    pub alarm: bool,
    /// Metric that contributed most this tick (None before warm or when nothing was scored).
    pub top_metric: Option<String>,
    /// Events opened, updated or closed by this tick (at most one per family, or per mount for
    /// disk space).
    pub changes: Vec<EventChange>,
    /// A family without an open event rose past [`RISING_RATIO`] of its threshold at this tick
    /// (an event may open once it has been over the whole threshold for `min_duration_ticks`):
    /// the moment to take a reference for what happens next. Taken before the threshold, so
    /// that what caused a fast onset is measured over more than the last second.
    pub run_started: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Opened,
    Updated,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventChange {
    pub kind: EventKind,
    pub event: Anomaly,
}

/// One anomaly event of one host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    /// Per-detector sequence number, from 1.
    pub local_id: u64,
    /// What the event is about; its contributors are metrics of this family only.
    pub family: Family,
    /// Timestamp of the first over-threshold tick of the run that opened the event.
    pub started_ms: i64,
    /// Timestamp of the latest tick folded into the event.
    pub updated_ms: i64,
    /// Timestamp of the tick that closed the event.
    pub ended_ms: Option<i64>,
    /// Score of the latest tick, in [0, 1].
    pub score: f64,
    /// Highest score since the event started, in [0, 1].
    pub peak_score: f64,
    pub severity: Severity,
    /// Top contributors at the peak tick, largest first.
    pub contributors: Vec<Contributor>,
    /// Why it closed and how long it lasted (set when it closes).
    pub close_reason: Option<String>,
    /// When it recovered, while it is held open in case it comes back
    /// ([`DetectorConfig::merge_ticks`]); None while it fires.
    pub recovered_ms: Option<i64>,
}

// ------------------------------------------------------------------------------ detector

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Calibration {
    model_threshold: f64,
    pca: Option<HostPca>,
    pca_threshold: f64,
    /// `spike_alarm`: the whole-warm-up host PCA and its threshold.
    spike_pca: Option<(HostPca, f64)>,
    /// Divides the smoothed combined ratio (1.0 without `score_quantile`).
    score_threshold: f64,
}

/// Detection state for one host. Feed it one [`Detector::tick`] per collection tick.
#[derive(Debug)]
pub struct Detector {
    model: Arc<Model>,
    config: DetectorConfig,
    /// Ticks since the (re)start of warm-up.
    ticks: u64,
    index: HashMap<String, usize>,
    /// Metric index of each position of the previous tick's input: hosts send their metrics in
    /// the same order every tick, so a name is checked against this guess (one string compare)
    /// before the hash map is asked.
    order: Vec<usize>,
    metrics: Vec<MetricState>,
    /// Warm-up rows of raw values by metric index (NaN = missing).
    warm_rows: Vec<Vec<f64>>,
    calib: Option<Calibration>,
    /// Event state per family, indexed by [`Family::index`], then one per mount whose space
    /// is watched: file systems fill independently, so a second one filling is its own event.
    families: Vec<FamilyState>,
    /// Scratch, one per entry of `families`: learning state, PCA error, moved this tick.
    slot_learning: Vec<Learning>,
    slot_spe: Vec<f64>,
    slot_moved: Vec<bool>,
    next_id: u64,
    /// When the current calibration was made (tick timestamp), and whether it was restored.
    calibrated_ms: Option<i64>,
    restored: bool,
    last_ts_ms: Option<i64>,
    /// Milliseconds between the last two ticks (for close reasons).
    tick_ms: i64,
    /// See [`Tick::run_started`].
    run_started: bool,
    /// Disk I/O is anomalous this tick (its event is open or it is past [`RISING_RATIO`]):
    /// the [`io_driven_cpu`] metrics are its symptoms, not CPU evidence.
    io_episode: bool,
    // scratch buffers, reused every tick
    scratch: Vec<f64>,
    batch: Vec<f32>,
    batch_metrics: Vec<usize>,
    touched: Vec<usize>,
    pca: PcaScratch,
    /// The last `smooth_ticks` combined ratios (warm-up ones included).
    smooth: Ring,
    /// Which of the quiet windows hold at this tick.
    quiet_now: Vec<bool>,
    /// The combined ratio of every warm-up tick (NaN = nothing scored), kept from calibration.
    warm_ratios: Vec<f64>,
    /// The combined ratio of the last tick, before smoothing (0 when nothing was scored).
    last_combined: f64,
    /// `relearn_on_evidence`: the tick the evidence's current run began, the last tick it was
    /// over, and whether this run was relearnt already.
    elevated: Option<(u64, u64, bool)>,
    /// The ranking score's scales and recent ratios.
    rank: rank::RankScore,
    /// The single-series evidence of a host with one metric (see `detect/single.rs`).
    single: Option<single::SingleState>,
    /// The adaptive alarm's time scales (`alarm_scales`).
    alarm_scales: Vec<tail::AlarmScale>,
    /// The multi-scale alarm with fixed thresholds (`alarm_quantile_scales`; empty = off).
    alarm_quantile: rank::RankScore,
}

impl Detector {
    pub fn new(model: Arc<Model>, config: DetectorConfig) -> Self {
        Detector {
            model,
            config,
            ticks: 0,
            index: HashMap::new(),
            order: Vec::new(),
            metrics: Vec::new(),
            warm_rows: Vec::new(),
            calib: None,
            families: vec![FamilyState::default(); Family::ALL.len()],
            slot_learning: Vec::new(),
            slot_spe: Vec::new(),
            slot_moved: Vec::new(),
            next_id: 1,
            calibrated_ms: None,
            restored: false,
            last_ts_ms: None,
            tick_ms: 1000,
            run_started: false,
            io_episode: false,
            scratch: Vec::new(),
            batch: Vec::new(),
            batch_metrics: Vec::new(),
            touched: Vec::new(),
            pca: PcaScratch::default(),
            smooth: Ring::new(1),
            quiet_now: Vec::new(),
            warm_ratios: Vec::new(),
            last_combined: 0.0,
            elevated: None,
            rank: rank::RankScore::empty(),
            single: None,
            alarm_scales: Vec::new(),
            alarm_quantile: rank::RankScore::empty(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Changes the live tuning (fleet policies): sensitivity, minimum duration and ignored
    /// metric globs. Calibration, baselines and open events are kept; a metric that becomes
    /// ignored stops being scored at the next tick.
    pub fn tune(&mut self, sensitivity: f64, min_duration_ticks: usize, ignore: Vec<String>) {
        self.config.sensitivity = sensitivity;
        self.config.min_duration_ticks = min_duration_ticks.max(1);
        self.config.ignore = ignore;
        for m in &mut self.metrics {
            m.ignored = self.config.is_ignored(&m.name);
        }
    }

    /// Changes what operators taught it (fleet policies made from feedback): floors and quiet
    /// windows. Like [`Detector::tune`], it keeps calibration, baselines and open events; the
    /// new settings count from the next tick.
    pub fn set_lessons(
        &mut self,
        floors: Vec<sco_policy::Floor>,
        quiet_windows: Vec<sco_policy::QuietWindow>,
    ) {
        self.config.floors = floors;
        self.config.quiet_windows = quiet_windows;
        for m in &mut self.metrics {
            m.band = self.config.band_for(&m.name);
            m.quiet = self.config.quiet_for(&m.name, m.family);
        }
    }

    /// Swaps the model. If the new model is the same file (same sha256: a reload, or the same
    /// model delivered another way), baselines, windows and thresholds are kept; otherwise the
    /// detector warms up again, because thresholds learnt on one model's scores mean nothing
    /// for another's (an open event is closed at the next tick).
    pub fn replace_model(&mut self, model: Arc<Model>) {
        let same = model.manifest().features == self.model.manifest().features
            && model
                .manifest()
                .sha256
                .eq_ignore_ascii_case(&self.model.manifest().sha256);
        self.model = model;
        if !same {
            let f = self.model.features();
            self.calib = None;
            self.ticks = 0;
            self.warm_rows.clear();
            for m in &mut self.metrics {
                m.lags = vec![0.0; f];
                m.filled = 0;
                m.baseline = None;
                m.pca_col = None;
            }
        }
    }

    /// True once the warm-up is over and a threshold exists.
    pub fn is_warm(&self) -> bool {
        self.calib.is_some()
    }

    /// Ticks of warm-up still to go (0 once warm).
    pub fn warmup_ticks_left(&self) -> u64 {
        if self.calib.is_some() {
            0
        } else {
            (self.config.warmup_ticks as u64).saturating_sub(self.ticks)
        }
    }

    /// Timestamp of the tick the current calibration was made at (or of the original one, if
    /// it was restored), once warm.
    pub fn calibrated_ms(&self) -> Option<i64> {
        self.calib.as_ref().and(self.calibrated_ms)
    }

    /// The calibration and baselines were restored from a snapshot, not warmed up here.
    pub fn is_restored(&self) -> bool {
        self.restored
    }

    /// Events open now, one per family at most (disk space: one per mount).
    pub fn open_events(&self) -> impl Iterator<Item = &Anomaly> {
        self.families
            .iter()
            .filter_map(|f| f.event.as_ref().map(|e| &e.anomaly))
    }

    /// The calibrated thresholds `(window model, host PCA)`, once warm. The PCA threshold is
    /// None when the host has no PCA component.
    pub fn thresholds(&self) -> Option<(f64, Option<f64>)> {
        self.calib
            .as_ref()
            .map(|c| (c.model_threshold, c.pca.as_ref().map(|_| c.pca_threshold)))
    }

    /// The combined ratio (max over components of score / threshold) of every warm-up tick,
    /// NaN where nothing was scored; empty before calibration or after a restore.
    pub fn warmup_ratios(&self) -> &[f64] {
        &self.warm_ratios
    }

    /// The combined ratio of the last tick, before smoothing and the score threshold.
    pub fn combined_ratio(&self) -> f64 {
        self.last_combined
    }

    /// The calibrated threshold of the smoothed combined ratio (`score_quantile`), once warm;
    /// 1.0 when `score_quantile` is None.
    pub fn score_threshold(&self) -> Option<f64> {
        self.calib.as_ref().map(|c| c.score_threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::calibrate::smoothed_scored;
    use super::*;

    #[test]
    fn smoothed_scored_is_a_trailing_mean_at_scored_ticks() {
        let nan = f64::NAN;
        let got = smoothed_scored(&[nan, 3.0, 1.0, nan, 5.0, 2.0], 3);
        // windows: [0,3] / 2, [0,3,1] / 3, [1,0,5] / 3, [0,5,2] / 3
        let want = [1.5, 4.0 / 3.0, 2.0, 7.0 / 3.0];
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
        assert_eq!(smoothed_scored(&[2.0, 4.0], 1), vec![2.0, 4.0]);
    }

    /// The warm-up rows the host PCA is fitted on are normalised exactly like live ticks: a
    /// detector warmed up on the first 200 ticks sees, live, the values `rolling_pca_rows`
    /// computes for the same ticks (from the first scheduled baseline recomputation after the
    /// end of warm-up on, which re-baselines every metric).
    #[test]
    fn rolling_fit_rows_match_live_normalisation() {
        let model = Arc::new(Model::shipped().expect("shipped model loads"));
        let config = DetectorConfig {
            warmup_ticks: 200,
            baseline_window: 120,
            rebaseline_every_ticks: 10,
            pca_rolling_fit: true,
            // the simulation has no events: every value enters the baseline
            freeze_baselines: false,
            ..DetectorConfig::default()
        };
        let names = ["a", "b", "c"];
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let rows: Vec<Vec<f64>> = (0..400)
            .map(|t| {
                (0..3)
                    .map(|j| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let noise = (x >> 11) as f64 / (1u64 << 53) as f64;
                        10.0 * (j + 1) as f64 + noise + if t >= 300 { 5.0 } else { 0.0 }
                    })
                    .collect()
            })
            .collect();
        let metric_warmup = config.metric_warmup(8) as u64;
        let want = rolling_pca_rows(
            &rows,
            &[0, 1, 2],
            &[0, 1, 2],
            &[config.abs_scale_floor; 3],
            &config,
            metric_warmup,
            &mut Vec::new(),
        );
        let mut det = Detector::new(model, config.clone());
        for (t, row) in rows.iter().enumerate() {
            let values: Vec<(&str, f64)> = names.iter().copied().zip(row.iter().copied()).collect();
            det.tick(t as i64, &values).expect("tick");
            if t >= config.warmup_ticks + config.rebaseline_every_ticks {
                assert_eq!(det.pca.z.len(), 3, "tick {t}");
                for (col, &i) in det
                    .calib
                    .as_ref()
                    .and_then(|c| c.pca.as_ref())
                    .map(|p| p.metrics.clone())
                    .unwrap_or_default()
                    .iter()
                    .enumerate()
                {
                    let (live, sim) = (det.pca.z[col], want[t][i]);
                    assert!(
                        (live - sim).abs() < 1e-9,
                        "tick {t}, metric {i}: {live} vs {sim}"
                    );
                }
            }
        }
    }
}
