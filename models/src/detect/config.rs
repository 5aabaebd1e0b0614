//! [`DetectorConfig`]: the live profile (1-second ticks) and the 5-minute profile, and the
//! per-metric floors and warm-ups they imply.

use super::*;

/// Tuning of a [`Detector`]. `Default` is the live profile for 1-second ticks;
/// [`DetectorConfig::five_minute`] is the profile for 5-minute data (replay and evaluation).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectorConfig {
    /// Ticks before a threshold exists; no alarm before. At the end of warm-up the baselines,
    /// the host PCA and the thresholds are computed from the warm-up ticks.
    pub warmup_ticks: usize,
    /// Quantile of the warm-up host scores used as threshold, e.g. 0.995.
    pub threshold_quantile: f64,
    /// 1.0 by default; the threshold is divided by it (higher = more alarms).
    pub sensitivity: f64,
    /// Consecutive over-threshold ticks needed to open an event (0 is treated as 1).
    pub min_duration_ticks: usize,
    /// Consecutive ticks under the clear threshold (`clear_fraction` x threshold) to close an
    /// event (0 is treated as 1).
    pub clear_ticks: usize,
    /// After an event has been quiet for `clear_ticks`, it is held open this many more ticks
    /// (0 = closes at once): if its state goes over the threshold again meanwhile, the same
    /// event goes on instead of a new one opening, and if not it closes, ending where it
    /// recovered. A flapping incident is one event, not one per flap. While held, the tick is
    /// not alarming and the family's values enter its baselines.
    pub merge_ticks: usize,
    /// Emit an `Updated` change at most this often while an event is open (0 = every tick).
    pub update_every_ticks: usize,
    /// Metric names never scored: an exact name (`disk.busy_pct:sda`), a base name that matches
    /// every instance (`disk.busy_pct` matches `disk.busy_pct:sda`), or a prefix ending in `*`.
    pub ignore: Vec<String>,
    /// Widened normal bands from operators' feedback (fleet policies): a move of a covered
    /// metric that stays inside its band is not evidence (no window score, no share of the PCA
    /// error, no sustained or saturation ratio).
    pub floors: Vec<sco_policy::Floor>,
    /// Recurring times (UTC) when the covered metrics are not evidence, the same way.
    pub quiet_windows: Vec<sco_policy::QuietWindow>,
    /// The clear threshold as a fraction of the alarm threshold (hysteresis), in (0, 1].
    pub clear_fraction: f64,
    /// Raw values kept per metric for its rolling baseline (median, MAD, std).
    pub baseline_window: usize,
    /// A metric's baseline is recomputed every this many of its observations (staggered).
    pub rebaseline_every_ticks: usize,
    /// Scale floor relative to the metric's level: `rel_scale_floor * |median|`.
    pub rel_scale_floor: f64,
    /// Absolute scale floor, in the metric's own units.
    pub abs_scale_floor: f64,
    /// Scale floor of percentages (metrics named `*_pct`), in percentage points: a wiggle of a
    /// fraction of a point (0.0 % to 2.4 % CPU steal, a disk 1 % busy) is never an anomaly.
    pub pct_scale_floor: f64,
    /// Scale floor of the host's CPU percentages (`cpu.*_pct`), in percentage points, where
    /// it is above `pct_scale_floor`: CPU time is counted in clock ticks, so a CPU percentage
    /// moves in steps of `100 / (CPUs x 100 Hz x interval)` (0.5 points each second on 2 CPUs,
    /// 2.5 every 200 ms). The agent sets it to two such steps: a value a step or two off its
    /// idle level is the measurement's grain, not evidence (0 = no such floor).
    pub cpu_scale_floor: f64,
    /// Adds the host PCA component (fitted at the end of warm-up).
    pub host_pca: bool,
    /// Share of variance the host PCA's kept components explain.
    pub pca_variance: f64,
    /// At most this many metrics enter the host PCA (the first ones seen).
    pub pca_max_metrics: usize,
    /// Normalisation of the host-PCA input: `false` = the window model's robust
    /// `(v - median) / scale` (clipped at +-10); `true` = `(v - mean) / sd` over the same rolling
    /// window (`sd = max(std, rel_scale_floor * |mean|, abs_scale_floor)`, clipped at +-100).
    pub pca_std_scale: bool,
    /// Quantile of the warm-up SPEs used as host-PCA threshold (None = `threshold_quantile`).
    pub pca_quantile: Option<f64>,
    /// How the warm-up rows the host PCA is fitted and thresholded on are normalised: `true` =
    /// each row with the rolling baseline the metric would have had at that tick live (the same
    /// normalisation the live ticks get, so the threshold is a quantile of the same kind of
    /// scores); `false` = every row with the baseline at the end of warm-up.
    pub pca_rolling_fit: bool,
    /// Host ratio = mean of the last `smooth_ticks` combined ratios (1 = no smoothing). Rows
    /// of the warm-up count (the mean is warm from the first live tick).
    pub smooth_ticks: usize,
    /// Calibrates the (smoothed) combined ratio: if set, it is divided by this quantile of its
    /// own values over the warm-up ticks, so 1.0 is again the alarm threshold. None = the
    /// combined ratio is used as is (1.0 = a component at its own threshold).
    pub score_quantile: Option<f64>,
    /// Floor of the `score_quantile` threshold, in units of the component thresholds: the
    /// smoothed ratio can never alarm below this share of a component's own threshold (a host
    /// whose warm-up was perfectly quiet does not become over-sensitive).
    pub min_score_threshold: f64,
    /// The ranking score ([`Tick::rank`](super::Tick::rank)): `(ticks, quantile)` scales whose
    /// calibrated trailing means are combined by a geometric mean (see `detect/rank.rs`). Empty
    /// = the rank is the alarm score.
    pub rank_scales: Vec<(usize, f64)>,
    /// Floor of the window-model threshold (model score units).
    pub min_model_threshold: f64,
    /// Floor of the host-PCA threshold (squared normalised units).
    pub min_pca_threshold: f64,
    /// Contributors listed per event.
    pub max_contributors: usize,
    /// "Is it happening now" gate, in normalised units: a metric's window-model score is
    /// multiplied by `clamp(|z_now| - (current_gate_z - 1), 0, 1)` (0 below `gate - 1`, 1 from
    /// `gate` on), so a single spike that is still inside the 8-tick window stops scoring once
    /// the value is back to normal (0 disables the gate).
    pub current_gate_z: f64,
    /// One event per metric [`Family`] (CPU, memory, disk space, disk I/O, network,
    /// processes), each with its own lifecycle, threshold crossing and contributors; `false` =
    /// one whole-host event (the 5-minute profile: the datasets' columns have no families).
    pub per_family: bool,
    /// Ratio a saturated bounded resource ([`saturation_level`]) scores at least, once warm
    /// (0 disables): saturation is anomalous whatever the baseline has seen.
    pub saturation_ratio: f64,
    /// While a family is alarming (over threshold, or its event open), its metrics' values do
    /// not enter their baselines: an incident is never learnt as normal.
    pub freeze_baselines: bool,
    /// An event firing this many ticks is taken for a new normal (a deploy, a resize): with
    /// `freeze_baselines` its baselines start learning again, so the level enters them as they
    /// refill; without it (they learnt all along) each of its metrics whose level moved out of
    /// its expected range since it opened has its older values moved to the new level and its
    /// baseline recomputed at once. The event then closes saying so; saturation still alarms.
    /// 0 = never.
    pub relearn_after_ticks: usize,
    /// Where baselines learn all along (`freeze_baselines` off): take the new normal when the
    /// evidence, not an event, has lasted `relearn_after_ticks`: the `smooth_ticks` mean over
    /// its `score_quantile` warm-up threshold, quiet gaps up to `merge_ticks` bridged. With an
    /// alarm whose thresholds adapt (`alarm_scales`) events may end before a lasting change is
    /// learnt; this keeps the relearning of the fixed alarm. A host with a single series
    /// (`single_series`) relearns on its event still.
    pub relearn_on_evidence: bool,
    /// A metric is listed as a contributor only if its own ratio is at least this (the top
    /// metric always is): no padding with metrics at normal values.
    pub contributor_min_ratio: f64,
    /// Sustained deviation (0 = off): each metric's mean normalised value over its last
    /// `sustain_ticks` ticks, divided by the largest such mean of its warm-up (at least
    /// `SUSTAIN_FLOOR`), is one more ratio of the metric. It tells a runaway from the short
    /// bursts a busy host has all the time: a burst of one tick has a mean of a fraction of
    /// its height over the window, a runaway its whole height.
    pub sustain_ticks: usize,
    /// Evidence for a host with exactly one metric (`None` = the multivariate evidence
    /// always): see `detect/single.rs`.
    pub single_series: Option<SingleSeries>,
    /// An alarm whose thresholds keep adapting after warm-up (empty = the `smooth_ticks` mean
    /// against its `score_quantile` warm-up quantile for good): for each `(ticks, risk)` the
    /// trailing mean of the combined ratio over `ticks` ticks against the value it exceeds
    /// with probability `risk` under a generalized Pareto fit of its tail over the ticks judged
    /// normal (`detect/tail.rs`); the alarm ratio is the largest of them.
    pub alarm_scales: Vec<(usize, f64)>,
    /// A multi-scale alarm with fixed thresholds (empty = the `smooth_ticks` mean against its
    /// `score_quantile` warm-up quantile, which is `[(smooth_ticks, score_quantile)]` here):
    /// for each `(ticks, quantile)` the trailing mean of the combined ratio over `ticks` ticks
    /// against that quantile of the same mean over the warm-up (floor `min_score_threshold`);
    /// the alarm ratio is the largest, so a short incident strong at one tick and a long one
    /// weak at each tick both cross. With `alarm_scales` as well, the alarm ratio is the
    /// largest of both kinds.
    pub alarm_quantile_scales: Vec<(usize, f64)>,
    /// A spike alarm beside the scales: the last tick's error against a second host PCA,
    /// fitted on the warm-up rows each normalised with the baseline of the end of warm-up (as
    /// `pca_rolling_fit = false` fits); its ratio joins the alarm's largest. None = off. Needs
    /// `host_pca` and `pca_rolling_fit` (without the rolling fit there is one kind of fit).
    pub spike_alarm: Option<SpikeAlarm>,
}

/// The spike alarm of [`DetectorConfig::spike_alarm`]. The host PCA fitted on rolling-normalised
/// rows ranks and alarms better on labelled incidents; one fitted on the warm-up as a whole,
/// keeping more of its variance, sees a single sample that breaks the host's usual correlations
/// far more often at the same false-alarm cost (models/README.md, "One-tick incidents").
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SpikeAlarm {
    /// Share of the warm-up rows' variance its components keep.
    pub variance: f64,
    /// Quantile of its warm-up errors used as threshold (at least `floor`).
    pub quantile: f64,
    /// The lowest threshold, in squared standard deviations of error.
    pub floor: f64,
}

impl Default for DetectorConfig {
    /// Live profile for 1-second ticks: 10 minutes of warm-up, 5 s to open, 30 s quiet to close,
    /// a 20-minute rolling baseline (a sustained level shift is absorbed in about 12 minutes).
    fn default() -> Self {
        DetectorConfig {
            warmup_ticks: 600,
            threshold_quantile: 0.995,
            sensitivity: 1.0,
            min_duration_ticks: 5,
            clear_ticks: 30,
            merge_ticks: 0,
            update_every_ticks: 30,
            ignore: Vec::new(),
            floors: Vec::new(),
            quiet_windows: Vec::new(),
            clear_fraction: 0.8,
            baseline_window: 1200,
            rebaseline_every_ticks: 120,
            rel_scale_floor: 0.01,
            abs_scale_floor: 0.01,
            pct_scale_floor: 1.0,
            cpu_scale_floor: 0.0,
            host_pca: true,
            pca_variance: 0.9,
            pca_max_metrics: 128,
            pca_std_scale: true,
            pca_quantile: Some(0.99),
            pca_rolling_fit: false,
            smooth_ticks: 1,
            score_quantile: None,
            min_score_threshold: 0.2,
            // not chosen on live (1-second) data: none to choose on
            rank_scales: Vec::new(),
            min_model_threshold: 26.12,
            min_pca_threshold: 9.0,
            max_contributors: 5,
            current_gate_z: 3.0,
            per_family: true,
            saturation_ratio: 1.5,
            freeze_baselines: true,
            relearn_after_ticks: 1800,
            relearn_on_evidence: false,
            contributor_min_ratio: 0.3,
            sustain_ticks: 3,
            single_series: None,
            alarm_scales: Vec::new(),
            alarm_quantile_scales: Vec::new(),
            spike_alarm: None,
        }
    }
}

impl DetectorConfig {
    /// Profile for 5-minute data (the labelled datasets; `sco-agent replay` defaults): warm-up
    /// = `warmup_ticks` (replay uses the whole `--warmup` file), a one-week rolling baseline
    /// recomputed hourly, the host PCA fitted on rolling-normalised warm-up rows keeping 95 % of
    /// the variance, the host ratio averaged over the last hour (12 ticks) and thresholded at the
    /// 0.98 quantile of its own warm-up values (and, for short incidents, the last tick and the
    /// last three against their own higher quantiles), an alarm from the first tick over a
    /// threshold, one tick under them to close. The live `Default` keeps the previous host-PCA fit
    /// (end-of-warm-up baseline, 90 %) and no smoothing: these choices were made on 5-minute data.
    pub fn five_minute(warmup_ticks: usize) -> Self {
        DetectorConfig {
            warmup_ticks,
            threshold_quantile: 0.995,
            min_duration_ticks: 1,
            clear_ticks: 1,
            // an event quiet for four hours closes; one that fires again sooner goes on
            // (chosen on development data: models/README.md, "One event per incident")
            merge_ticks: 48,
            update_every_ticks: 12,
            clear_fraction: 1.0,
            baseline_window: 2016,
            rebaseline_every_ticks: 12,
            pca_variance: 0.95,
            pca_rolling_fit: true,
            smooth_ticks: 12,
            score_quantile: Some(0.98),
            // the alarm, whichever is highest: the last tick against its 0.999 warm-up quantile,
            // the last three against 0.995, and the last hour against the threshold its own
            // tail says is exceeded 1 % of the time, learnt on the ticks judged normal (chosen on
            // development data: models/README.md, "Short incidents: a multi-scale alarm")
            alarm_quantile_scales: vec![(3, 0.993)],
            // and the last tick against a host PCA fitted on the whole warm-up, keeping 99 % of
            // its variance: an error of more than its 0.999 quantile and of two and a quarter
            // standard deviations (chosen on development data: models/README.md, "One-tick
            // incidents")
            spike_alarm: Some(SpikeAlarm {
                variance: 0.99,
                quantile: 0.999,
                floor: 5.0,
            }),
            alarm_scales: vec![(12, 0.01)],
            // now, the last hour and the last four hours, each against its 0.8 warm-up quantile
            // (chosen on development data: models/README.md, "A score that ranks")
            rank_scales: vec![(1, 0.8), (12, 0.8), (48, 0.8)],
            // the whole-host event and baselines that learn: events per family, frozen
            // baselines and the sustained ratio do worse on the labelled 5-minute data
            // (models/README.md, "The live profile's edge-loop settings on the 5-minute data")
            per_family: false,
            saturation_ratio: 0.0,
            freeze_baselines: false,
            // an event firing 12 hours is a new normal: the metrics that moved are moved to
            // their new level (chosen on development data: models/README.md, "A new normal")
            relearn_after_ticks: 144,
            // on the hourly mean having been over its fixed warm-up threshold that long, so an
            // adaptive alarm that ends early still learns a lasting change
            relearn_on_evidence: true,
            contributor_min_ratio: 0.0,
            sustain_ticks: 0,
            // a single series (NAB-style files): its own tail evidence (chosen on nab-dev:
            // models/README.md, "A single series"; the threshold and the moments' month-long
            // memory in "A month of surprise")
            single_series: Some(SingleSeries {
                mean_ticks: 5,
                tail_z: 2.7,
                refractory_ticks: 100,
                level_weight: 0.5,
                seasonal_weight: 1.0,
                seasonal_periods: 3,
                seasonal_min_acf: 0.5,
                weekly_weight: 1.0,
                moments_half_life: 8640,
                // a value far past anything the series has had opens its own event (chosen on
                // nab-dev: models/README.md, "A record far beyond")
                extreme_opens: true,
                // a burst shaped like one the series had in normal times in the last month is
                // only as surprising as it is unlike the nearest (models/README.md, "Shapes")
                neighbour_ticks: 5,
                neighbour_history: 8640,
                // the evidence must also reach what the last two weeks without an event reached
                // about twice (models/README.md, "An alarm bar")
                bar_quantile: 0.9995,
                bar_history: 4032,
            }),
            ..DetectorConfig::default()
        }
    }

    /// The absolute scale floor of metric `name` (`"name"` or `"name:device"`).
    pub(crate) fn abs_floor_for(&self, name: &str) -> f64 {
        let base = name.split(':').next().unwrap_or(name);
        if base == "cpu.steal_pct" || base.starts_with("psi.") {
            // stalls and steal flicker by several points on any busy host or shared VM: a
            // few points of them are weather, not an incident (chosen on the busy-host drill)
            self.abs_scale_floor
                .max(self.pct_scale_floor * NOISY_PCT_FLOOR)
                .max(self.cpu_floor(base))
        } else if base == "disk.read_bytes_per_s" || base == "disk.write_bytes_per_s" {
            self.abs_scale_floor.max(DISK_BYTES_SCALE_FLOOR)
        } else if base == "disk.reads_per_s" || base == "disk.writes_per_s" {
            self.abs_scale_floor.max(DISK_OPS_SCALE_FLOOR)
        } else if base.ends_with("_pct") {
            self.abs_scale_floor
                .max(self.pct_scale_floor)
                .max(self.cpu_floor(base))
        } else {
            self.abs_scale_floor
        }
    }

    /// `cpu_scale_floor` for a CPU percentage, 0 for any other metric.
    fn cpu_floor(&self, base: &str) -> f64 {
        if base.starts_with("cpu.") && base.ends_with("_pct") {
            self.cpu_scale_floor
        } else {
            0.0
        }
    }

    /// The relative scale floor of metric `name`: a process count moves by a few processes
    /// whenever anything starts a command, so its floor is 5 % of its level.
    pub(crate) fn rel_floor_for(&self, name: &str) -> f64 {
        if name == "proc.count" {
            self.rel_scale_floor.max(0.05)
        } else {
            self.rel_scale_floor
        }
    }

    pub(crate) fn is_ignored(&self, name: &str) -> bool {
        let base = name.split(':').next().unwrap_or(name);
        self.ignore.iter().any(|p| {
            if let Some(prefix) = p.strip_suffix('*') {
                name.starts_with(prefix)
            } else {
                p == name || p == base
            }
        })
    }

    /// The band the floors give metric `name`: the widest of the floors that cover it.
    pub(crate) fn band_for(&self, name: &str) -> (Option<f64>, Option<f64>) {
        let (mut lo, mut hi) = (None::<f64>, None::<f64>);
        for f in self.floors.iter().filter(|f| f.covers(name)) {
            if let Some(m) = f.min {
                lo = Some(lo.map_or(m, |l| l.min(m)));
            }
            if let Some(m) = f.max {
                hi = Some(hi.map_or(m, |h| h.max(m)));
            }
        }
        (lo, hi)
    }

    /// Indexes of the quiet windows that can cover metric `name` of family `family`.
    pub(crate) fn quiet_for(&self, name: &str, family: Family) -> Vec<usize> {
        self.quiet_windows
            .iter()
            .enumerate()
            .filter(|(_, w)| {
                w.is_whole_host()
                    || w.families.contains(&family)
                    || w.metrics
                        .iter()
                        .any(|g| sco_policy::lessons::metric_matches(g, name))
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Observations a metric needs before it has a baseline (and is scored).
    pub(crate) fn metric_warmup(&self, features: usize) -> usize {
        (self.warmup_ticks.min(self.baseline_window.max(1)) / 2)
            .max(features)
            .max(1)
    }
}
