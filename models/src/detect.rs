//! The one detection pipeline: used live by the agent (one [`Detector`] per host, one
//! [`Detector::tick`] per collection tick), offline by [`crate::replay`], and by the control plane
//! to score a posted window ([`score_window`]).
//!
//! Per tick, for one host:
//! 1. **Online per-host normalisation.** Each metric keeps its last `baseline_window` raw values;
//!    its baseline (median, scale) is recomputed from them every `rebaseline_every_ticks`
//!    observations (staggered across metrics), with
//!    `scale = max(1.4826 * MAD, 0.5 * std, rel_scale_floor * |median|, abs_scale_floor)`, with
//!    `abs_scale_floor` raised to `pct_scale_floor` (one percentage point) for `*_pct` metrics.
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
//!    CPU family's evidence and baselines, so one I/O saturation is one event.
//! 6. **Explanations.** Per metric, `c = max(window score / thr_window, PCA residual^2 / thr_pca)`
//!    of the current tick; contributors are the metrics with the largest `c`, each with its
//!    current value, its expected range `median -/+ 3 * scale` in the metric's own units, and its
//!    share `c^2 / sum c^2`.
//!
//! Where each part lives: [`DetectorConfig`] in `config.rs`; step 1 in `baseline.rs`; step 3
//! in `pca.rs`; step 4's end of warm-up in `calibrate.rs`; the tick (steps 2 to 6) and the
//! event lifecycle here; metric families in `family.rs`; saving and restoring a warm detector
//! in `snapshot.rs`; [`score_window`] in `window.rs`. This file stays long (about 1,060 lines
//! besides tests) because [`Detector::tick`] runs steps 2 to 6 as one pass over the host's
//! metrics with shared per-tick state; splitting it further would scatter that state.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::linalg::symmetric_eigen;
use crate::{Model, ModelError};

mod baseline;
mod calibrate;
mod config;
mod family;
mod pca;
mod rank;
mod snapshot;
mod window;

use baseline::*;
use pca::*;
use window::contributors_of;

pub use config::DetectorConfig;
pub use family::{
    direction, io_driven_cpu, is_bounded, saturation_level, upper_only, Direction, Family,
};
pub use sco_policy::Severity;
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
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contributor {
    pub metric: String,
    /// The metric's value at that tick, in its own units.
    pub value: f64,
    /// `median - 3 * scale` (not below 0 for a metric whose recent values are all >= 0).
    pub expected_low: f64,
    /// `median + 3 * scale` (never above 100 for a percentage).
    pub expected_high: f64,
    /// Share of the score, 0..1 (`c^2 / sum c^2` over the scored metrics).
    pub contribution: f64,
}

// ------------------------------------------------------------------------------ detector

#[derive(Debug, Clone)]
struct MetricState {
    name: String,
    slot: usize,
    ignored: bool,
    /// [`DetectorConfig::abs_floor_for`] this metric.
    abs_floor: f64,
    /// [`DetectorConfig::rel_floor_for`] this metric.
    rel_floor: f64,
    ring: Ring,
    observed: u64,
    baseline: Option<Baseline>,
    /// Last `features` normalised values, newest first.
    lags: Vec<f32>,
    filled: usize,
    last_value: f64,
    /// Tick index (1-based) of the last observation, to drop duplicates within a tick.
    seen_tick: u64,
    /// Column in the host PCA, if any.
    pca_col: Option<usize>,
    /// Per-metric ratio `c` of the current tick.
    ratio: f64,
    family: Family,
    /// Index of its event state in `Detector::families`: its family's, or for the space of
    /// one mount that mount's own (see [`Detector::slot_of`]).
    slot_idx: usize,
    /// A percentage (expected range clamped to [0, 100]).
    bounded: bool,
    /// [`saturation_level`] of this metric.
    saturation: Option<f64>,
    /// The last `sustain_ticks` normalised values, and the calibrated threshold of their mean.
    sustain: Ring,
    sustain_thr: Option<f64>,
    /// Sustained-deviation ratio of this tick.
    sustain_ratio: f64,
    /// Which way its move is a symptom ([`direction`]); the other way it is never scored.
    direction: Direction,
    /// [`io_driven_cpu`]: not CPU evidence while the host's disk I/O is anomalous.
    io_driven: bool,
    /// Its band from the floors ([`DetectorConfig::floors`]): `(min, max)`.
    band: (Option<f64>, Option<f64>),
    /// The quiet windows that cover it (indexes into [`DetectorConfig::quiet_windows`]).
    quiet: Vec<usize>,
    /// Not evidence this tick: inside its band, or in a quiet window.
    muted: bool,
}

impl MetricState {
    /// A metric seen for the first time (or restored, which then sets its ring, baseline and
    /// sustained-deviation threshold): everything that follows from its name and the config.
    fn new(name: String, slot: usize, config: &DetectorConfig, features: usize) -> Self {
        Self {
            slot,
            ignored: config.is_ignored(&name),
            abs_floor: config.abs_floor_for(&name),
            rel_floor: config.rel_floor_for(&name),
            ring: Ring::new(config.baseline_window),
            observed: 0,
            baseline: None,
            lags: vec![0.0; features],
            filled: 0,
            last_value: 0.0,
            seen_tick: 0,
            pca_col: None,
            ratio: 0.0,
            family: Family::of(&name),
            slot_idx: Family::of(&name).index(),
            bounded: is_bounded(&name),
            saturation: saturation_level(&name),
            sustain: Ring::new(config.sustain_ticks),
            sustain_thr: None,
            sustain_ratio: 0.0,
            direction: direction(&name),
            io_driven: io_driven_cpu(&name),
            band: config.band_for(&name),
            quiet: config.quiet_for(&name, Family::of(&name)),
            muted: false,
            name,
        }
    }

    /// Whether a move of `z` to `value` stays inside the band the floors give it.
    fn inside_band(&self, value: f64, z: f64) -> bool {
        let (lo, hi) = self.band;
        if z > 0.0 {
            hi.is_some_and(|h| value <= h)
        } else if z < 0.0 {
            lo.is_some_and(|l| value >= l)
        } else {
            lo.is_some() || hi.is_some()
        }
    }

    /// Its current value is unusual now: outside the current-value gate, or saturated.
    fn outside_gate(&self, gate_z: f64) -> bool {
        if self.below_normal() {
            return false;
        }
        gate_z <= 0.0
            || self
                .lags
                .first()
                .is_some_and(|z| f64::from(*z).abs() > (gate_z - 1.0).max(0.0))
            || self
                .saturation
                .is_some_and(|level| self.last_value >= level)
    }

    /// A one-way metric moved the harmless way now (an [`upper_only`] one below its normal,
    /// available memory above it): not a symptom, never scored.
    fn below_normal(&self) -> bool {
        self.lags
            .first()
            .is_some_and(|&z| harmless(self.direction, f64::from(z)))
    }

    fn push_z(&mut self, z: f32) {
        if self.lags.is_empty() {
            return;
        }
        self.lags.rotate_right(1);
        self.lags[0] = z;
        self.filled = (self.filled + 1).min(self.lags.len());
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Calibration {
    model_threshold: f64,
    pca: Option<HostPca>,
    pca_threshold: f64,
    /// Divides the smoothed combined ratio (1.0 without `score_quantile`).
    score_threshold: f64,
}

#[derive(Debug, Clone)]
struct OpenEvent {
    anomaly: Anomaly,
    peak_ratio: f64,
    last_emit_tick: u64,
    /// Over the clear level or not, for the last `clear_ticks` ticks (newest last).
    recent: std::collections::VecDeque<bool>,
    /// Ticks since it opened.
    age: usize,
}

impl OpenEvent {
    /// Records this tick; true when the event may close: the family is under its clear level
    /// now and was over it in at most a tenth of the last `clear_ticks` ticks. A busy host's
    /// own short spikes (a write flushed every few seconds) would otherwise keep an event open
    /// long after its cause is gone.
    fn quiet_for(&mut self, over: bool, clear_ticks: usize) -> bool {
        self.recent.push_back(over);
        while self.recent.len() > clear_ticks {
            self.recent.pop_front();
        }
        let overs = self.recent.iter().filter(|&&o| o).count();
        !over && self.recent.len() >= clear_ticks && overs <= clear_ticks / 10
    }
}

/// Event state of one [`Family`], or of the space of one mount.
#[derive(Debug, Clone, Default)]
struct FamilyState {
    /// The mount whose space it watches (None: the whole family).
    device: Option<String>,
    event: Option<OpenEvent>,
    /// Consecutive over-threshold ticks while no event is open.
    over_run: usize,
    over_start_ms: i64,
    run_peak_ratio: f64,
    /// Over [`RISING_RATIO`] since the last tick below it.
    rising: bool,
    /// Ratio of this tick.
    ratio: f64,
}

/// A normalised move `z` the harmless way for a metric of this direction.
fn harmless(direction: Direction, z: f64) -> bool {
    match direction {
        Direction::Both => false,
        Direction::Rise => z < 0.0,
        Direction::Fall => z > 0.0,
    }
}

/// How far a normalised move `z` goes the symptom's way (0 when it goes the harmless way).
fn symptom(direction: Direction, z: f64) -> f64 {
    match direction {
        Direction::Both => z.abs(),
        Direction::Rise => z.max(0.0),
        Direction::Fall => (-z).max(0.0),
    }
}

/// The family of event state `slot` (the mounts' states come after the families).
fn slot_family(slot: usize) -> Family {
    Family::ALL.get(slot).copied().unwrap_or(Family::DiskSpace)
}

/// Share of its threshold at which a family counts as rising (see [`Tick::run_started`]).
pub const RISING_RATIO: f64 = 0.5;

/// Whether a family's values enter their baselines (see `freeze_baselines`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Learning {
    /// Yes.
    Normal,
    /// No: the family is over threshold or its event is open.
    Frozen,
    /// Yes, all: its event has been open `relearn_after_ticks`.
    Relearn,
}

impl FamilyState {
    fn learning(&self, relearn_after: usize) -> Learning {
        match &self.event {
            Some(e) if relearn_after > 0 && e.age >= relearn_after => Learning::Relearn,
            Some(_) => Learning::Frozen,
            None if self.over_run > 0 => Learning::Frozen,
            None => Learning::Normal,
        }
    }
}

/// Floor of a metric's sustained-deviation threshold, in normalised units (mean over
/// `sustain_ticks`): a metric whose warm-up was flat needs a clear, lasting move to alarm.
const SUSTAIN_FLOOR: f64 = 4.0;

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
    pca_z: Vec<f64>,
    pca_centred: Vec<f64>,
    pca_res: Vec<f64>,
    /// The last `smooth_ticks` combined ratios (warm-up ones included).
    smooth: Ring,
    /// Which of the quiet windows hold at this tick.
    quiet_now: Vec<bool>,
    /// The combined ratio of every warm-up tick (NaN = nothing scored), kept from calibration.
    warm_ratios: Vec<f64>,
    /// The combined ratio of the last tick, before smoothing (0 when nothing was scored).
    last_combined: f64,
    /// The ranking score's scales and recent ratios.
    rank: rank::RankScore,
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
            pca_z: Vec::new(),
            pca_centred: Vec::new(),
            pca_res: Vec::new(),
            smooth: Ring::new(1),
            quiet_now: Vec::new(),
            warm_ratios: Vec::new(),
            last_combined: 0.0,
            rank: rank::RankScore::empty(),
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

    /// Swaps the model. If the new model has the same feature schema (same feature names, so
    /// the same window length), baselines, windows and thresholds are kept; otherwise the
    /// detector warms up again (an open event is closed at the next tick).
    pub fn replace_model(&mut self, model: Arc<Model>) {
        let same = model.manifest().features == self.model.manifest().features;
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

    /// One tick: the current value of every metric this host has (names like
    /// "cpu.total_pct" or "disk.busy_pct:sda"). Metrics may appear, disappear or skip ticks;
    /// non-finite values count as missing. The first value wins if a name repeats in a tick.
    pub fn tick(&mut self, ts_ms: i64, values: &[(&str, f64)]) -> Result<Tick, ModelError> {
        self.ticks += 1;
        let t = self.ticks;
        if let Some(prev) = self.last_ts_ms.filter(|&p| ts_ms > p) {
            self.tick_ms = ts_ms - prev;
        }
        self.last_ts_ms = Some(ts_ms);
        let f = self.model.features();
        let warming = self.calib.is_none();
        if warming {
            self.warm_rows.push(vec![f64::NAN; self.metrics.len()]);
        }
        self.batch.clear();
        self.batch_metrics.clear();
        self.touched.clear();
        let pca_cols = self
            .calib
            .as_ref()
            .and_then(|c| c.pca.as_ref())
            .map_or(0, |p| p.metrics.len());
        self.pca_z.clear();
        self.pca_z.resize(pca_cols, f64::NAN);
        let metric_warmup = self.config.metric_warmup(f) as u64;
        let every = self.config.rebaseline_every_ticks.max(1) as u64;

        let gate_z = self.config.current_gate_z;
        let gate_skip = (gate_z - 1.0).max(0.0);
        let relearn = self.config.relearn_after_ticks;
        self.quiet_now.clear();
        self.quiet_now.extend(
            self.config
                .quiet_windows
                .iter()
                .map(|w| w.when().contains(ts_ms)),
        );
        self.slot_learning.clear();
        self.slot_learning
            .extend(self.families.iter().map(|st| st.learning(relearn)));
        for (pos, &(name, v)) in values.iter().enumerate() {
            if !v.is_finite() {
                continue;
            }
            let guess = self
                .order
                .get(pos)
                .copied()
                .filter(|&i| self.metrics[i].name == name);
            let idx = match guess.or_else(|| self.index.get(name).copied()) {
                Some(i) => i,
                None => {
                    let i = self.metrics.len();
                    let mut m = MetricState::new(name.to_string(), i, &self.config, f);
                    m.slot_idx = self.slot_of(&m.name, m.family);
                    self.metrics.push(m);
                    self.index.insert(name.to_string(), i);
                    i
                }
            };
            if pos < self.order.len() {
                self.order[pos] = idx;
            } else if pos == self.order.len() {
                self.order.push(idx);
            }
            let m = &mut self.metrics[idx];
            if m.ignored || m.seen_tick == t {
                continue;
            }
            m.seen_tick = t;
            m.last_value = v;
            m.muted = false;
            // an alarming family's values stay out of its baselines (never learn an incident);
            // short bursts that stay under the threshold are the host's normal and are learnt
            // (the CPU time an I/O saturation drives is frozen with the I/O it belongs to)
            let learning = |i: usize| {
                self.slot_learning
                    .get(i)
                    .copied()
                    .unwrap_or(Learning::Normal)
            };
            let frozen = learning(m.slot_idx) == Learning::Frozen
                || (m.io_driven && learning(Family::DiskIo.index()) == Learning::Frozen);
            let learn = !self.config.freeze_baselines || warming || !frozen;
            if learn {
                m.ring.push(v);
            }
            m.observed += 1;
            if warming {
                if let Some(row) = self.warm_rows.last_mut() {
                    if row.len() <= idx {
                        row.resize(idx + 1, f64::NAN);
                    }
                    row[idx] = v;
                }
                continue;
            }
            let rebase = match m.baseline {
                None => m.observed >= metric_warmup,
                Some(_) => (m.observed + m.slot as u64).is_multiple_of(every),
            };
            if rebase {
                if let Some(b) =
                    robust_baseline(m.ring.values(), &mut self.scratch, m.rel_floor, m.abs_floor)
                {
                    m.baseline = Some(b);
                }
            }
            let Some(b) = m.baseline else { continue };
            let z = b.z(v);
            m.push_z(z as f32);
            m.muted = m.inside_band(v, z)
                || m.quiet
                    .iter()
                    .any(|&w| self.quiet_now.get(w).copied().unwrap_or(false));
            m.ratio = 0.0;
            m.sustain_ratio = 0.0;
            if self.config.sustain_ticks > 0 {
                m.sustain.push(z);
                let w = m.sustain.values();
                if let (Some(thr), true) = (m.sustain_thr, w.len() >= self.config.sustain_ticks) {
                    let mean = w.iter().sum::<f64>() / w.len() as f64;
                    m.sustain_ratio = symptom(m.direction, mean) / thr;
                }
            }
            if let Some(col) = m.pca_col {
                // a metric that is not evidence enters the host PCA at its normal value, so its
                // move breaks no relation either
                self.pca_z[col] = if m.muted {
                    0.0
                } else {
                    b.pca_z(v, self.config.pca_std_scale)
                };
            }
            // a window whose current value is inside the gate scores exactly 0: no model call
            let inside_gate = (gate_z > 0.0 && f64::from(m.lags[0]).abs() <= gate_skip)
                || m.below_normal()
                || m.muted;
            if m.filled >= f && f > 0 && !inside_gate {
                self.batch.extend_from_slice(&m.lags);
                self.batch_metrics.push(idx);
            }
            self.touched.push(idx);
        }

        if warming {
            if t as usize >= self.config.warmup_ticks {
                self.calibrate()?;
            }
            if self.calib.is_some() {
                self.calibrated_ms = Some(ts_ms);
                self.restored = false;
            }
            // events left open by a model swap close now
            let mut changes = Vec::new();
            for st in &mut self.families {
                st.over_run = 0;
                if let Some(mut open) = st.event.take() {
                    open.anomaly.ended_ms = Some(ts_ms);
                    open.anomaly.updated_ms = ts_ms;
                    open.anomaly.close_reason =
                        Some("model replaced: the detector is warming up again".into());
                    changes.push(EventChange {
                        kind: EventKind::Closed,
                        event: open.anomaly,
                    });
                }
            }
            return Ok(Tick {
                score: 0.0,
                raw_score: 0.0,
                rank: 0.0,
                alarm: false,
                top_metric: None,
                changes,
                run_started: false,
            });
        }
        let Some(calib) = self.calib.as_ref() else {
            return Ok(Tick {
                score: 0.0,
                raw_score: 0.0,
                rank: 0.0,
                alarm: false,
                top_metric: None,
                changes: Vec::new(),
                run_started: false,
            });
        };

        // window model: one batched call for every metric of the host
        let n = self.batch_metrics.len();
        let mut ratio = 0.0f64;
        if n > 0 {
            let scores = self.model.score(&self.batch, n)?;
            for (row, (&idx, &s)) in self.batch_metrics.iter().zip(&scores.score).enumerate() {
                let g = gate(self.batch[row * f], gate_z);
                let r = g * f64::from(s).max(0.0) / calib.model_threshold;
                let r = if r.is_finite() { r } else { 0.0 };
                self.metrics[idx].ratio = r;
                ratio = ratio.max(r);
            }
        }
        // host PCA over the metrics seen this tick; its squared error is also split by family
        let slots = self.families.len();
        self.slot_spe.clear();
        self.slot_spe.resize(slots, 0.0);
        // the part of the CPU family's that comes from [`io_driven_cpu`] metrics
        let mut io_cpu_spe = 0.0f64;
        let mut pca_thr = f64::INFINITY;
        if let Some(pca) = calib.pca.as_ref() {
            if self.pca_z.iter().any(|v| !v.is_nan()) {
                let d = pca.metrics.len();
                self.pca_centred.resize(d, 0.0);
                self.pca_res.resize(d, 0.0);
                let spe = pca.spe(&self.pca_z, &mut self.pca_centred, &mut self.pca_res);
                let thr = calib.pca_threshold;
                pca_thr = thr;
                // the error of metrics that are not evidence now (floors, quiet windows)
                let mut muted_spe = 0.0f64;
                for (col, &idx) in pca.metrics.iter().enumerate() {
                    let sq = self.pca_res[col] * self.pca_res[col];
                    let m = &mut self.metrics[idx];
                    if m.seen_tick == t && m.muted {
                        muted_spe += sq;
                    } else if m.seen_tick == t && !m.below_normal() {
                        m.ratio = m.ratio.max(sq / thr);
                        self.slot_spe[m.slot_idx] += sq;
                        if m.io_driven {
                            io_cpu_spe += sq;
                        }
                    }
                }
                ratio = ratio.max((spe - muted_spe).max(0.0) / thr);
            }
        }
        if !ratio.is_finite() {
            ratio = 0.0;
        }
        // smoothing over the last `smooth_ticks` ticks, then the calibrated threshold
        self.last_combined = ratio;
        let rank = self.rank.push(ratio);
        self.smooth.push(ratio);
        let recent = self.smooth.values();
        let mean = recent.iter().sum::<f64>() / recent.len().max(1) as f64;
        let score_threshold = calib.score_threshold;
        let mut ratio = mean / score_threshold;
        if !ratio.is_finite() {
            ratio = 0.0;
        }
        // a lasting deviation counts as much as the window model's view of it
        for &idx in &self.touched {
            let m = &mut self.metrics[idx];
            if m.sustain_ratio > 0.0 && !m.below_normal() && !m.muted {
                m.ratio = m.ratio.max(m.sustain_ratio);
            }
        }
        // a saturated bounded resource is anomalous whatever its baseline says
        let sat = self.config.saturation_ratio;
        if sat > 0.0 {
            for &idx in &self.touched {
                let m = &mut self.metrics[idx];
                if !m.muted && m.saturation.is_some_and(|level| m.last_value >= level) {
                    m.ratio = m.ratio.max(sat);
                }
            }
        }
        let mut top: Option<usize> = None;
        for &idx in &self.touched {
            let r = self.metrics[idx].ratio;
            let better = match top {
                None => true,
                Some(b) => r > self.metrics[b].ratio,
            };
            if r > 0.0 && better {
                top = Some(idx);
            }
        }

        let sensitivity = self.config.sensitivity.max(0.0);
        let mut changes = Vec::new();
        if self.config.per_family {
            // each family: the largest of its metrics' ratios and its share of the PCA error,
            // counted only for metrics whose value is outside the current-value gate now (a
            // broken relation shows in the residuals of normal-valued metrics too; those belong
            // to the family that actually moved)
            for st in &mut self.families {
                st.ratio = 0.0;
            }
            self.slot_moved.clear();
            self.slot_moved.resize(slots, false);
            // the CPU family without its I/O-driven metrics
            let (mut cpu_rest, mut cpu_rest_moved) = (0.0f64, false);
            for &idx in &self.touched {
                let m = &self.metrics[idx];
                if m.muted || !m.outside_gate(gate_z) {
                    continue;
                }
                self.slot_moved[m.slot_idx] = true;
                let r = m.ratio / score_threshold;
                if m.family == Family::Cpu && !m.io_driven {
                    cpu_rest = cpu_rest.max(r);
                    cpu_rest_moved = true;
                }
                let st = &mut self.families[m.slot_idx];
                st.ratio = st.ratio.max(r);
            }
            let spe_ratio = |moved: bool, spe: f64| {
                let r = if moved {
                    spe / pca_thr / score_threshold
                } else {
                    0.0
                };
                if r.is_finite() {
                    r
                } else {
                    0.0
                }
            };
            let mut host = 0.0f64;
            for (i, st) in self.families.iter_mut().enumerate() {
                let r = st
                    .ratio
                    .max(spe_ratio(self.slot_moved[i], self.slot_spe[i]));
                st.ratio = if r.is_finite() { r } else { 0.0 };
            }
            // while disk I/O is anomalous, what it drives in the CPU family is its symptom
            let io = &self.families[Family::DiskIo.index()];
            self.io_episode = io.event.is_some() || io.ratio * sensitivity > RISING_RATIO;
            if self.io_episode {
                let cpu_spe = (self.slot_spe[Family::Cpu.index()] - io_cpu_spe).max(0.0);
                self.families[Family::Cpu.index()].ratio =
                    cpu_rest.max(spe_ratio(cpu_rest_moved, cpu_spe));
            }
            for st in &self.families {
                host = host.max(st.ratio);
            }
            ratio = host;
            for slot in 0..self.families.len() {
                let r_eff = self.families[slot].ratio * sensitivity;
                if let Some(c) = self.advance_event(slot, ts_ms, r_eff) {
                    changes.push(c);
                }
            }
        } else {
            self.families[Family::Host.index()].ratio = ratio;
            if let Some(c) = self.advance_event(Family::Host.index(), ts_ms, ratio * sensitivity) {
                changes.push(c);
            }
        }
        let r_eff = ratio * sensitivity;
        let score = r_eff / (1.0 + r_eff);
        Ok(Tick {
            score,
            raw_score: ratio,
            rank: rank.unwrap_or(score),
            alarm: self.families.iter().any(|f| f.event.is_some()),
            top_metric: top.map(|i| self.metrics[i].name.clone()),
            changes,
            run_started: std::mem::take(&mut self.run_started),
        })
    }

    /// Hysteresis and minimum duration of one event state (`families[fi]`); returns its event
    /// change of this tick.
    fn advance_event(&mut self, fi: usize, ts_ms: i64, r_eff: f64) -> Option<EventChange> {
        let t = self.ticks;
        let family = slot_family(fi);
        let score = r_eff / (1.0 + r_eff);
        let clear_ticks = self.config.clear_ticks.max(1);
        if self.families[fi].event.is_some() {
            let new_peak = self.families[fi]
                .event
                .as_ref()
                .is_some_and(|o| r_eff > o.peak_ratio);
            let contributors = new_peak.then(|| self.contributors(fi));
            let relearn = self.config.relearn_after_ticks;
            let interval_ms = self.interval_ms_hint();
            let st = &mut self.families[fi];
            let open = st.event.as_mut()?;
            open.age += 1;
            open.anomaly.score = score;
            open.anomaly.updated_ms = ts_ms;
            let quiet = open.quiet_for(r_eff >= self.config.clear_fraction, clear_ticks);
            if let Some(contributors) = contributors.filter(|c| !c.is_empty()) {
                open.peak_ratio = r_eff;
                open.anomaly.peak_score = score;
                open.anomaly.severity = Severity::from_ratio(r_eff);
                open.anomaly.contributors = contributors;
            }
            if quiet {
                let mut closed = st.event.take()?;
                let lasted_s = (ts_ms - closed.anomaly.started_ms).max(0) as f64 / 1000.0;
                let quiet_s = (clear_ticks as i64 * interval_ms) as f64 / 1000.0;
                let why = if relearn > 0 && closed.age >= relearn {
                    "the new level became this host's normal"
                } else {
                    "recovered"
                };
                let what = match &st.device {
                    Some(d) => format!("{family} of {d}"),
                    None => family.to_string(),
                };
                closed.anomaly.close_reason = Some(format!(
                    "{why}: {what} under its clear level for {quiet_s:.0} s; lasted {lasted_s:.0} s"
                ));
                closed.anomaly.ended_ms = Some(ts_ms);
                st.over_run = 0;
                st.rising = false;
                return Some(EventChange {
                    kind: EventKind::Closed,
                    event: closed.anomaly,
                });
            }
            if t.saturating_sub(open.last_emit_tick) >= self.config.update_every_ticks as u64 {
                open.last_emit_tick = t;
                return Some(EventChange {
                    kind: EventKind::Updated,
                    event: open.anomaly.clone(),
                });
            }
            return None;
        }
        let st = &mut self.families[fi];
        if r_eff > RISING_RATIO && !st.rising {
            self.run_started = true;
        }
        st.rising = r_eff > RISING_RATIO;
        if r_eff > 1.0 {
            if st.over_run == 0 {
                st.over_start_ms = ts_ms;
                st.run_peak_ratio = 0.0;
            }
            st.over_run += 1;
            st.run_peak_ratio = st.run_peak_ratio.max(r_eff);
        } else {
            st.over_run = 0;
        }
        if st.over_run < self.config.min_duration_ticks.max(1) {
            return None;
        }
        let contributors = self.contributors(fi);
        let st = &mut self.families[fi];
        let peak = st.run_peak_ratio;
        let anomaly = Anomaly {
            local_id: self.next_id,
            family,
            started_ms: st.over_start_ms,
            updated_ms: ts_ms,
            ended_ms: None,
            score,
            peak_score: peak / (1.0 + peak),
            severity: Severity::from_ratio(peak),
            contributors,
            close_reason: None,
        };
        self.next_id += 1;
        st.over_run = 0;
        st.event = Some(OpenEvent {
            anomaly: anomaly.clone(),
            peak_ratio: peak,
            last_emit_tick: t,
            recent: std::collections::VecDeque::new(),
            age: 0,
        });
        Some(EventChange {
            kind: EventKind::Opened,
            event: anomaly,
        })
    }

    /// The event state of a metric: its family's, or for the space of a mount
    /// (`disk.used_pct:/var`) that mount's own, made on first sight.
    fn slot_of(&mut self, name: &str, family: Family) -> usize {
        let device = match name.split_once(':') {
            Some((_, d)) if family == Family::DiskSpace && !d.is_empty() => d,
            _ => return family.index(),
        };
        if let Some(i) = self
            .families
            .iter()
            .position(|st| st.device.as_deref() == Some(device))
        {
            return i;
        }
        self.families.push(FamilyState {
            device: Some(device.to_string()),
            ..FamilyState::default()
        });
        self.families.len() - 1
    }

    /// Milliseconds per tick, from the last two tick timestamps (1 s before there are two).
    fn interval_ms_hint(&self) -> i64 {
        self.tick_ms
    }

    /// Top contributors of the current tick among the metrics of event state `slot` (every
    /// metric for the whole-host event): the largest ratios, each at least
    /// `contributor_min_ratio` except the top one.
    fn contributors(&self, slot: usize) -> Vec<Contributor> {
        let family = slot_family(slot);
        let per_family = self.config.per_family;
        let min = self.config.contributor_min_ratio;
        let mut list = contributors_of(
            self.touched.iter().filter_map(|&i| {
                let m = &self.metrics[i];
                if per_family && m.slot_idx != slot {
                    return None;
                }
                if per_family && family == Family::Cpu && m.io_driven && self.io_episode {
                    return None;
                }
                m.baseline
                    .map(|b| (m.name.as_str(), m.last_value, b, m.ratio, m.bounded))
            }),
            self.config.max_contributors,
        );
        if min > 0.0 && !list.is_empty() {
            let keep: Vec<bool> = list
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    i == 0
                        || self.index.get(&c.metric).is_some_and(|&j| {
                            let m = &self.metrics[j];
                            m.ratio >= min && m.outside_gate(self.config.current_gate_z)
                        })
                })
                .collect();
            let mut k = keep.into_iter();
            list.retain(|_| k.next().unwrap_or(false));
        }
        list
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
                assert_eq!(det.pca_z.len(), 3, "tick {t}");
                for (col, &i) in det
                    .calib
                    .as_ref()
                    .and_then(|c| c.pca.as_ref())
                    .map(|p| p.metrics.clone())
                    .unwrap_or_default()
                    .iter()
                    .enumerate()
                {
                    let (live, sim) = (det.pca_z[col], want[t][i]);
                    assert!(
                        (live - sim).abs() < 1e-9,
                        "tick {t}, metric {i}: {live} vs {sim}"
                    );
                }
            }
        }
    }
}
