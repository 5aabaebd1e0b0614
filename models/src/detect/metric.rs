//! Step 1's state of one metric: its ring of raw values, baseline, normalised lags, and what
//! its name says (family, direction, bounds, saturation, floors, quiet windows).

use super::*;

#[derive(Debug, Clone)]
pub(super) struct MetricState {
    pub(super) name: String,
    pub(super) slot: usize,
    pub(super) ignored: bool,
    /// [`DetectorConfig::abs_floor_for`] this metric.
    pub(super) abs_floor: f64,
    /// [`DetectorConfig::rel_floor_for`] this metric.
    pub(super) rel_floor: f64,
    pub(super) ring: Ring,
    pub(super) observed: u64,
    pub(super) baseline: Option<Baseline>,
    /// Last `features` normalised values, newest first.
    pub(super) lags: Vec<f32>,
    pub(super) filled: usize,
    pub(super) last_value: f64,
    /// Tick index (1-based) of the last observation, to drop duplicates within a tick.
    pub(super) seen_tick: u64,
    /// Column in the host PCA, if any.
    pub(super) pca_col: Option<usize>,
    /// Per-metric ratio `c` of the current tick.
    pub(super) ratio: f64,
    pub(super) family: Family,
    /// Index of its event state in `Detector::families`: its family's, or for the space of
    /// one mount that mount's own (see [`Detector::slot_of`]).
    pub(super) slot_idx: usize,
    /// A percentage (expected range clamped to [0, 100]).
    pub(super) bounded: bool,
    /// [`saturation_level`] of this metric.
    pub(super) saturation: Option<f64>,
    /// The last `sustain_ticks` normalised values, and the calibrated threshold of their mean.
    pub(super) sustain: Ring,
    pub(super) sustain_thr: Option<f64>,
    /// Sustained-deviation ratio of this tick.
    pub(super) sustain_ratio: f64,
    /// Which way its move is a symptom ([`direction`]); the other way it is never scored.
    pub(super) direction: Direction,
    /// [`io_driven_cpu`]: not CPU evidence while the host's disk I/O is anomalous.
    pub(super) io_driven: bool,
    /// Disk I/O evidence only while its disk is loaded ([`disk_rate`]).
    pub(super) disk_rate: bool,
    /// Says whether a disk, or every disk, is loaded ([`disk_load`]).
    pub(super) disk_load: bool,
    /// Its band from the floors ([`DetectorConfig::floors`]): `(min, max)`.
    pub(super) band: (Option<f64>, Option<f64>),
    /// The quiet windows that cover it (indexes into [`DetectorConfig::quiet_windows`]).
    pub(super) quiet: Vec<usize>,
    /// Not evidence this tick: inside its band, or in a quiet window.
    pub(super) muted: bool,
}

impl MetricState {
    /// A metric seen for the first time (or restored, which then sets its ring, baseline and
    /// sustained-deviation threshold): everything that follows from its name and the config.
    pub(super) fn new(name: String, slot: usize, config: &DetectorConfig, features: usize) -> Self {
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
            disk_rate: disk_rate(&name),
            disk_load: disk_load(&name),
            band: config.band_for(&name),
            quiet: config.quiet_for(&name, Family::of(&name)),
            muted: false,
            name,
        }
    }

    /// Whether a move of `z` to `value` stays inside the band the floors give it.
    pub(super) fn inside_band(&self, value: f64, z: f64) -> bool {
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
    pub(super) fn outside_gate(&self, gate_z: f64) -> bool {
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
    pub(super) fn below_normal(&self) -> bool {
        self.lags
            .first()
            .is_some_and(|&z| harmless(self.direction, f64::from(z)))
    }

    pub(super) fn push_z(&mut self, z: f32) {
        if self.lags.is_empty() {
            return;
        }
        self.lags.rotate_right(1);
        self.lags[0] = z;
        self.filled = (self.filled + 1).min(self.lags.len());
    }
}

/// A normalised move `z` the harmless way for a metric of this direction.
pub(super) fn harmless(direction: Direction, z: f64) -> bool {
    match direction {
        Direction::Both => false,
        Direction::Rise => z < 0.0,
        Direction::Fall => z > 0.0,
    }
}

/// How far a normalised move `z` goes the symptom's way (0 when it goes the harmless way).
pub(super) fn symptom(direction: Direction, z: f64) -> f64 {
    match direction {
        Direction::Both => z.abs(),
        Direction::Rise => z.max(0.0),
        Direction::Fall => (-z).max(0.0),
    }
}

/// Floor of a metric's sustained-deviation threshold, in normalised units (mean over
/// `sustain_ticks`): a metric whose warm-up was flat needs a clear, lasting move to alarm.
pub(super) const SUSTAIN_FLOOR: f64 = 4.0;
