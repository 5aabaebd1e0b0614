//! Live anomaly detection on the host: feeds every tick to the shared
//! [`sco_models::detect::Detector`] (the same code `replay` runs), keeps the
//! raw context an event needs at onset, names the processes that consumed the
//! event's resource, keeps the learnt state across restarts (sled), and
//! hot-swaps the model file.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sco_models::detect::{
    Anomaly, Detector, DetectorConfig, DetectorSnapshot, EventChange, EventKind, Family,
};
use sco_models::Model;

use crate::collect::processes::{self, ProcSnapshot, Resource};
use crate::collect::{ProcessInfo, Sample};
use crate::config::{Config, DetectSection};
use crate::status::Status;

/// The key a metric has in the detector: `name` or `name:device`.
pub fn metric_key(name: &str, device: &str) -> String {
    if device.is_empty() {
        name.to_string()
    } else {
        format!("{name}:{device}")
    }
}

pub use sco_policy::NOT_SCORED;

/// Metrics always included in an event's context, besides its contributors.
const CONTEXT_ALWAYS: [&str; 3] = ["cpu.total_pct", "mem.used_pct", "load.1"];
const MAX_CONTEXT_SERIES: usize = 12;
/// Culprits listed per event.
const MAX_CULPRITS: usize = 5;
/// Key of the detector's learnt state in its sled tree.
const SNAPSHOT_KEY: &[u8] = b"detector";
/// A saved state older than this is not restored: the host may have changed too much.
const SNAPSHOT_MAX_AGE_MS: i64 = 24 * 3600 * 1000;
/// A process snapshot taken when a family went over its threshold serves an onset this long.
const RUN_BASE_MAX_AGE: Duration = Duration::from_secs(10);
/// The learnt state is saved this often (and at shutdown).
const SNAPSHOT_EVERY: Duration = Duration::from_secs(300);

/// The resource whose consumers explain an event of `family`.
pub fn resource_of(family: Family) -> Option<Resource> {
    match family {
        Family::Cpu | Family::Processes => Some(Resource::Cpu),
        Family::Memory => Some(Resource::MemoryGrowth),
        Family::DiskIo | Family::DiskSpace => Some(Resource::Io),
        Family::Network | Family::Host => None,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("model {path}: {reason}")]
    Model { path: String, reason: String },
}

/// The live detector's settings for a collection every `interval_ms` on a host with `cpus`
/// CPUs (as `/proc/stat` counts them: see [`cpu_count`]).
pub fn detector_config(d: &DetectSection, interval_ms: u64, cpus: usize) -> DetectorConfig {
    let ticks = |secs: u64| (secs.saturating_mul(1000) / interval_ms.max(1)).max(1) as usize;
    DetectorConfig {
        cpu_scale_floor: CPU_FLOOR_STEPS * cpu_step_pct(interval_ms, cpus),
        warmup_ticks: ticks(d.warmup_secs),
        threshold_quantile: d.threshold_quantile,
        sensitivity: d.sensitivity,
        min_duration_ticks: ticks(d.min_duration_secs),
        clear_ticks: ticks(d.clear_secs),
        merge_ticks: if d.merge_secs == 0 {
            0
        } else {
            ticks(d.merge_secs)
        },
        update_every_ticks: ticks(d.update_every_secs),
        ignore: d.ignore.clone(),
        sustain_ticks: ticks(SUSTAIN_SECS),
        baseline_window: ticks(BASELINE_SECS),
        relearn_after_ticks: ticks(RELEARN_SECS),
        ..DetectorConfig::default()
    }
}

/// How far back a metric's rolling baseline looks, in seconds whatever the collection interval
/// (the live profile's 1200 ticks at one tick a second). In ticks, an agent sampling every
/// 200 ms had a 4-minute baseline: a memory growth on a database host whose warm-up had moved
/// its memory took 17 s to open its event instead of 4 (`agent/tests/busy_host.rs`).
///
/// How often it is recomputed stays the live profile's 120 ticks (`rebaseline_every_ticks`):
/// the work per tick stays bounded, and a young agent's baseline, its ring far from full, follows
/// what the host does after a short warm-up. Every 2 minutes at 200 ms, an agent calibrated on
/// 45 s held a CPU event open for a minute after its cause (the host's CPU a few points over
/// the warm-up's idle level until the first recomputation; seen in CI and reproduced here).
const BASELINE_SECS: u64 = 1200;

/// How long an event fires before its level is taken for a new normal (a deploy, a resize), in
/// seconds whatever the collection interval (the live profile's 1800 ticks at one tick a second).
/// In ticks, an agent sampling every 200 ms learnt a lasting incident after 6 minutes.
const RELEARN_SECS: u64 = 1800;

/// Clock ticks a second in `/proc/stat` (`USER_HZ`: 100 on every Linux architecture the agent
/// is built for).
const USER_HZ: f64 = 100.0;

/// A CPU percentage's scale floor, in steps of its measurement (`cpu_step_pct`): two, so one
/// clock tick either way of an idle level is grain, not evidence. At one second on 2 CPUs that
/// is the 1-point floor of every percentage; at 200 ms it is 5 points, where the percentage
/// floor alone let an idle host polled a little more than during its warm-up hold a CPU event
/// open (`sco-models`' `a_few_points_of_cpu_at_the_grain_of_a_fast_interval_are_no_event_...`).
const CPU_FLOOR_STEPS: f64 = 2.0;

/// The step in which the host's CPU percentages move: one clock tick of all its CPUs' time in
/// one interval.
pub fn cpu_step_pct(interval_ms: u64, cpus: usize) -> f64 {
    let ticks = cpus.max(1) as f64 * USER_HZ * interval_ms.max(1) as f64 / 1000.0;
    100.0 / ticks
}

/// The CPUs `<proc_root>/stat` counts time for; the CPUs this process may run on when it cannot
/// be read (they are at most as many).
pub fn cpu_count(proc_root: &Path) -> usize {
    std::fs::read_to_string(proc_root.join("stat"))
        .ok()
        .and_then(|t| crate::collect::procfs::parse_cpu_count(&t))
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1)
}

/// The sustained-deviation window (see `DetectorConfig::sustain_ticks`): a deviation lasting
/// this long counts in full, a one-second burst a third.
const SUSTAIN_SECS: u64 = 3;

fn load_model(path: Option<&Path>) -> Result<Model, DetectError> {
    match path {
        None => Model::shipped().map_err(|e| DetectError::Model {
            path: "built-in".into(),
            reason: e.to_string(),
        }),
        Some(p) => Model::load(p).map_err(|e| DetectError::Model {
            path: p.display().to_string(),
            reason: e.to_string(),
        }),
    }
}

fn model_name(m: &Model) -> String {
    format!("{}@{}", m.manifest().name, m.manifest().version)
}

/// The newest modification time of a manifest and the files beside it.
fn model_stamp(manifest: &Path) -> Option<SystemTime> {
    let dir = manifest.parent()?;
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .chain(
            std::fs::metadata(manifest)
                .ok()
                .and_then(|m| m.modified().ok()),
        )
        .max()
}

pub struct LiveDetector {
    detector: Detector,
    model_path: Option<PathBuf>,
    model_name: String,
    /// The fleet model in force (`fleet_model`), 0 when the agent runs its own; while one is,
    /// the configured file is not watched.
    fleet_number: u64,
    stamp: Option<SystemTime>,
    refused_stamp: Option<SystemTime>,
    check_every: Duration,
    last_check: Instant,
    interval_ms: u64,
    history: VecDeque<(i64, BTreeMap<String, f64>)>,
    history_len: usize,
    latest_processes: Vec<ProcessInfo>,
    /// The collector's last process snapshot.
    process_base: Option<Arc<ProcSnapshot>>,
    /// A process snapshot taken when a family went over its threshold. Culprits are the
    /// deltas from it (if recent) to a fresh snapshot read at onset, so they cover exactly the
    /// run that opened the event; else from the collector's last one.
    run_base: Option<(Instant, Arc<ProcSnapshot>)>,
    proc_root: PathBuf,
    /// Where the learnt state is kept (None: not kept).
    state: Option<sled::Tree>,
    last_save: Instant,
    run_started_ms: i64,
    /// Detector event id → sequence number of the message that opened it.
    open: HashMap<u64, u64>,
    warm: bool,
    /// Ticks scored without error, for observers and tests.
    pub ticks_scored: u64,
}

/// One metric's recent values around an event, oldest first, one per tick.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextSeries {
    pub metric: String,
    pub start_ms: i64,
    pub step_ms: u32,
    pub values: Vec<f64>,
}

/// An event change ready to become a durable message.
pub struct Outgoing {
    change: EventChange,
    context: Vec<ContextSeries>,
    processes: Vec<ProcessInfo>,
    culprits: Vec<ProcessInfo>,
}

/// An event change as it is sent (`crate::pb::anomaly_message` makes the message).
pub struct EventReport<'a> {
    pub change: &'a EventChange,
    /// Sequence number of the message that opened the event: its id.
    pub open_seq: u64,
    pub run_started_ms: i64,
    pub model: &'a str,
    pub context: &'a [ContextSeries],
    pub processes: &'a [ProcessInfo],
    pub culprits: &'a [ProcessInfo],
}

impl Outgoing {
    pub fn change(&self) -> &EventChange {
        &self.change
    }

    /// The processes that consumed the event's resource before onset, heaviest first.
    pub fn culprits(&self) -> &[ProcessInfo] {
        &self.culprits
    }
}

impl LiveDetector {
    /// `state`: the sled tree the learnt state is restored from and saved to.
    pub fn new(
        config: &Config,
        run_started_ms: i64,
        state: Option<sled::Tree>,
    ) -> Result<Self, DetectError> {
        let d = &config.detect;
        let stamp = d.model.as_deref().and_then(model_stamp);
        let mut refused_stamp = None;
        // A bad model file must not stop collection: start on the built-in
        // model, and pick the file up once it is replaced by a valid one.
        let model = match load_model(d.model.as_deref()) {
            Ok(m) => m,
            Err(e) if d.model.is_some() => {
                tracing::error!(error = %e, "refused the configured model; running the built-in one");
                refused_stamp = stamp;
                load_model(None)?
            }
            Err(e) => return Err(e),
        };
        let name = model_name(&model);
        tracing::info!(model = %name, "anomaly model loaded");
        let mut detector = Detector::new(
            Arc::new(model),
            detector_config(
                d,
                config.agent.interval_ms,
                cpu_count(&config.agent.proc_root),
            ),
        );
        if let Some(tree) = &state {
            restore(&mut detector, tree, run_started_ms);
        }
        Ok(Self {
            detector,
            stamp: if refused_stamp.is_some() { None } else { stamp },
            model_path: d.model.clone(),
            model_name: name,
            fleet_number: 0,
            refused_stamp,
            check_every: Duration::from_secs(d.model_check_secs),
            last_check: Instant::now(),
            interval_ms: config.agent.interval_ms,
            history: VecDeque::new(),
            history_len: ((d.context_secs * 1000) / config.agent.interval_ms.max(1)) as usize,
            latest_processes: Vec::new(),
            process_base: None,
            run_base: None,
            proc_root: config.agent.proc_root.clone(),
            state,
            last_save: Instant::now(),
            run_started_ms,
            open: HashMap::new(),
            warm: false,
            ticks_scored: 0,
        })
    }

    pub fn model_name(&self) -> &str {
        &self.model_name
    }

    pub fn is_warm(&self) -> bool {
        self.detector.is_warm()
    }

    /// What the detector is doing, for heartbeats and `GET /hosts/{id}`.
    pub fn state(&self, now_ms: i64) -> Status {
        let warm = self.detector.is_warm();
        Status {
            detector: if warm { "calibrated" } else { "warming_up" }.into(),
            warm_until_ms: if warm {
                0
            } else {
                now_ms
                    + i64::try_from(self.detector.warmup_ticks_left() * self.interval_ms)
                        .unwrap_or(i64::MAX / 2)
            },
            calibrated_at_ms: self.detector.calibrated_ms().unwrap_or(0),
            restored: self.detector.is_restored(),
            model: self.model_name.clone(),
        }
    }

    /// Saves the learnt state (once warm) to the sled tree; called periodically and at
    /// shutdown. Failures are logged: losing it only costs a warm-up.
    pub fn save(&mut self) {
        self.last_save = Instant::now();
        let (Some(tree), Some(snap)) = (&self.state, self.detector.snapshot()) else {
            return;
        };
        let result = serde_json::to_vec(&snap)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                tree.insert(SNAPSHOT_KEY, bytes)
                    .and_then(|_| tree.flush())
                    .map_err(|e| e.to_string())
            });
        match result {
            Ok(_) => tracing::debug!("detector state saved"),
            Err(e) => tracing::warn!(error = %e, "could not save the detector state"),
        }
    }

    /// Applies detection settings of the policies in force over the
    /// `[detect]` configuration (`None`: back to the configuration).
    pub fn tune(&mut self, d: &DetectSection, policy: Option<&crate::policy::DetectionSettings>) {
        let ticks = |secs: u64| ((secs * 1000) / self.interval_ms.max(1)).max(1) as usize;
        let mut ignore = d.ignore.clone();
        let (mut sensitivity, mut min_secs) = (d.sensitivity, d.min_duration_secs);
        let (mut floors, mut quiet) = (Vec::new(), Vec::new());
        if let Some(p) = policy {
            sensitivity = p.sensitivity.unwrap_or(sensitivity);
            min_secs = p.min_duration_secs.unwrap_or(min_secs);
            ignore.extend(p.ignore_metrics.iter().cloned());
            floors.extend(p.floors.iter().cloned());
            quiet.extend(p.quiet_windows.iter().cloned());
        }
        self.detector.tune(sensitivity, ticks(min_secs), ignore);
        self.detector.set_lessons(floors, quiet);
    }

    /// Scores one sample; returns the event changes it caused.
    pub fn observe(&mut self, sample: &Sample) -> Vec<Outgoing> {
        if self.last_check.elapsed() >= self.check_every {
            self.last_check = Instant::now();
            if let Err(e) = self.reload_if_changed() {
                tracing::error!(error = %e, "refused new model; the current one keeps running");
            }
        }
        if let Some(p) = &sample.top_processes {
            self.latest_processes = p.clone();
        }
        if let Some(snap) = &sample.process_snapshot {
            self.process_base = Some(snap.clone());
        }
        if self.detector.is_warm() && self.last_save.elapsed() >= SNAPSHOT_EVERY {
            self.save();
        }
        // sorted by key, so a host's metrics reach the detector (and its PCA columns) in the same
        // order on every run and after every restart
        let values: BTreeMap<String, f64> = sample
            .metrics
            .iter()
            .map(|m| (metric_key(m.name, &m.device), m.value))
            .collect();
        let refs: Vec<(&str, f64)> = values
            .iter()
            .filter(|(k, _)| sco_policy::is_scored(k))
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        let tick = self.detector.tick(sample.ts_ms, &refs);
        if !self.warm && self.detector.is_warm() {
            self.warm = true;
            let (window, pca) = self.detector.thresholds().unwrap_or((f64::NAN, None));
            tracing::info!(
                model = %self.model_name,
                window_threshold = window,
                pca_threshold = pca.unwrap_or(f64::NAN),
                "anomaly detector calibrated on this host"
            );
        }
        if self.history_len > 0 {
            if self.history.len() >= self.history_len {
                self.history.pop_front();
            }
            self.history.push_back((sample.ts_ms, values));
        }
        let changes = match tick {
            Ok(t) => {
                self.ticks_scored += 1;
                if t.run_started && t.changes.is_empty() {
                    // a family just went over its threshold: the culprits of the event it may
                    // open are what runs from now to the onset, not what ran seconds before
                    self.run_base = Some((
                        Instant::now(),
                        Arc::new(processes::snapshot(&self.proc_root)),
                    ));
                }
                t.changes
            }
            Err(e) => {
                tracing::warn!(error = %e, "scoring failed for this tick");
                Vec::new()
            }
        };
        // one fresh process read serves every event opened at this tick
        let mut fresh: Option<Vec<ProcessInfo>> = None;
        changes
            .into_iter()
            .map(|change| {
                if change.kind != EventKind::Opened {
                    return Outgoing {
                        change,
                        context: Vec::new(),
                        processes: Vec::new(),
                        culprits: Vec::new(),
                    };
                }
                let usage = fresh.get_or_insert_with(|| self.usage_now());
                let culprits = resource_of(change.event.family)
                    .map(|r| processes::top_by(usage, r, MAX_CULPRITS))
                    .unwrap_or_default();
                Outgoing {
                    context: self.context(&change.event),
                    processes: self.processes(),
                    culprits,
                    change,
                }
            })
            .collect()
    }

    /// Per-process usage from the collector's last process snapshot to now. Reading /proc
    /// here blocks the detection task for a few milliseconds, once per onset: rare enough
    /// not to need another thread, and the culprits must be read at onset, not later.
    fn usage_now(&self) -> Vec<ProcessInfo> {
        let now = processes::snapshot(&self.proc_root);
        let run_base = self
            .run_base
            .as_ref()
            .filter(|(at, _)| at.elapsed() <= RUN_BASE_MAX_AGE)
            .map(|(_, s)| s);
        match run_base.or(self.process_base.as_ref()) {
            Some(base) => processes::usage(base, &now),
            // no sample yet (the first seconds after start): memory is known, rates are not
            None => processes::usage(&now, &now),
        }
    }

    /// The fleet model in force, 0 when the agent runs its own.
    pub fn fleet_number(&self) -> u64 {
        self.fleet_number
    }

    /// Runs fleet model `number` from its verified `manifest`, or with `None` the agent's own
    /// model again (the configured file, else the built-in one). On an error the running model
    /// stays.
    pub fn use_fleet_model(
        &mut self,
        number: u64,
        manifest: Option<&Path>,
    ) -> Result<(), DetectError> {
        if number == self.fleet_number {
            return Ok(());
        }
        let model = match manifest {
            Some(p) => load_model(Some(p))?,
            None => match load_model(self.model_path.as_deref()) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(error = %e, "refused the configured model; running the built-in one");
                    load_model(None)?
                }
            },
        };
        self.model_name = model_name(&model);
        self.detector.replace_model(Arc::new(model));
        // another file warms up again: its calibration is logged when it ends
        self.warm = self.detector.is_warm();
        self.fleet_number = number;
        if number == 0 {
            self.stamp = self.model_path.as_deref().and_then(model_stamp);
            self.refused_stamp = None;
        }
        tracing::info!(model = %self.model_name, fleet_model = number, "anomaly model replaced");
        Ok(())
    }

    /// Checks the model file and swaps in a new model that validates.
    pub fn reload_if_changed(&mut self) -> Result<bool, DetectError> {
        if self.fleet_number != 0 {
            return Ok(false);
        }
        let Some(path) = self.model_path.clone() else {
            return Ok(false);
        };
        let stamp = model_stamp(&path);
        if (stamp.is_some() && stamp == self.stamp)
            || (stamp.is_some() && stamp == self.refused_stamp)
        {
            return Ok(false);
        }
        match load_model(Some(&path)) {
            Ok(model) => {
                self.model_name = model_name(&model);
                self.detector.replace_model(Arc::new(model));
                self.warm = self.detector.is_warm();
                self.stamp = stamp;
                self.refused_stamp = None;
                tracing::info!(model = %self.model_name, "anomaly model replaced");
                Ok(true)
            }
            Err(e) => {
                self.refused_stamp = stamp;
                Err(e)
            }
        }
    }

    fn context(&self, event: &Anomaly) -> Vec<ContextSeries> {
        let mut names: Vec<&str> = event
            .contributors
            .iter()
            .map(|c| c.metric.as_str())
            .collect();
        for m in CONTEXT_ALWAYS {
            if !names.contains(&m) {
                names.push(m);
            }
        }
        names.truncate(MAX_CONTEXT_SERIES);
        let start_ms = self.history.front().map_or(0, |(ts, _)| *ts);
        names
            .into_iter()
            .map(|name| ContextSeries {
                metric: name.to_string(),
                start_ms,
                step_ms: u32::try_from(self.interval_ms).unwrap_or(u32::MAX),
                values: self
                    .history
                    .iter()
                    .map(|(_, v)| v.get(name).copied().unwrap_or(f64::NAN))
                    .collect(),
            })
            .collect()
    }

    fn processes(&self) -> Vec<ProcessInfo> {
        self.latest_processes.clone()
    }

    /// What to send for a change; `seq` is its message's own sequence number, which becomes
    /// the event's id when it opens it.
    pub fn report<'a>(&'a mut self, out: &'a Outgoing, seq: u64) -> EventReport<'a> {
        let e = &out.change.event;
        if out.change.kind == EventKind::Opened {
            self.open.insert(e.local_id, seq);
        }
        let open_seq = self.open.get(&e.local_id).copied().unwrap_or(seq);
        if out.change.kind == EventKind::Closed {
            self.open.remove(&e.local_id);
        }
        EventReport {
            change: &out.change,
            open_seq,
            run_started_ms: self.run_started_ms,
            model: &self.model_name,
            context: &out.context,
            processes: &out.processes,
            culprits: &out.culprits,
        }
    }
}

/// Restores the learnt state saved by an earlier run of the same model, if recent enough.
fn restore(detector: &mut Detector, tree: &sled::Tree, now_ms: i64) {
    let bytes = match tree.get(SNAPSHOT_KEY) {
        Ok(Some(b)) => b,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the saved detector state; warming up");
            return;
        }
    };
    let snap: DetectorSnapshot = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "saved detector state is unreadable; warming up");
            return;
        }
    };
    let age_ms = now_ms - snap.saved_ms;
    if age_ms > SNAPSHOT_MAX_AGE_MS {
        tracing::info!(
            age_secs = age_ms / 1000,
            "saved detector state is older than a day; warming up"
        );
        return;
    }
    match detector.restore(snap) {
        Ok(()) => tracing::info!(
            age_secs = age_ms / 1000,
            "detector state restored: no warm-up needed"
        ),
        Err(e) => tracing::info!(reason = %e, "saved detector state not used; warming up"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::Metric;

    #[test]
    fn the_cpu_floor_is_two_steps_of_the_measurement() {
        let floor = |ms, cpus| detector_config(&DetectSection::default(), ms, cpus).cpu_scale_floor;
        // one second on 2 CPUs: 200 clock ticks, a step of 0.5 points (the 1-point floor of
        // every percentage); 200 ms on 2 CPUs: 2.5-point steps; one second on 16 CPUs: 1/16
        assert!((floor(1000, 2) - 1.0).abs() < 1e-9);
        assert!((floor(200, 2) - 5.0).abs() < 1e-9);
        assert!((floor(1000, 16) - 0.125).abs() < 1e-9);
        assert!((floor(1000, 1) - 2.0).abs() < 1e-9);
        // nothing counted is one CPU, not a division by zero
        assert!((floor(1000, 0) - 2.0).abs() < 1e-9);
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("stat"),
            "cpu  1 2 3 4\ncpu0 1 2 3 4\ncpu1 1 2 3 4\n",
        )
        .expect("write");
        assert_eq!(cpu_count(dir.path()), 2);
        assert!(cpu_count(&dir.path().join("missing")) >= 1);
    }

    #[test]
    fn durations_are_in_seconds_whatever_the_interval() {
        let d = DetectSection::default();
        let (second, fast) = (detector_config(&d, 1000, 2), detector_config(&d, 200, 2));
        // one tick a second is the live profile itself
        let live = DetectorConfig::default();
        assert_eq!(second.baseline_window, live.baseline_window);
        assert_eq!(second.relearn_after_ticks, live.relearn_after_ticks);
        for (what, a, b) in [
            ("warm-up", second.warmup_ticks, fast.warmup_ticks),
            (
                "to open",
                second.min_duration_ticks,
                fast.min_duration_ticks,
            ),
            ("to close", second.clear_ticks, fast.clear_ticks),
            ("baseline", second.baseline_window, fast.baseline_window),
            (
                "new normal",
                second.relearn_after_ticks,
                fast.relearn_after_ticks,
            ),
            ("sustained", second.sustain_ticks, fast.sustain_ticks),
        ] {
            assert_eq!(a * 5, b, "{what}: {a} ticks at 1 s, {b} at 200 ms");
        }
    }

    fn sample(ts_ms: i64, cpu: f64) -> Sample {
        Sample {
            ts_ms,
            metrics: vec![
                Metric {
                    name: "cpu.total_pct",
                    device: String::new(),
                    value: cpu,
                },
                Metric {
                    name: "mem.used_pct",
                    device: String::new(),
                    value: 40.0,
                },
            ],
            top_processes: None,
            process_snapshot: None,
        }
    }

    fn config_with_model(manifest: &Path) -> Config {
        let mut c =
            Config::from_toml(include_str!("../../packaging/agent.example.toml")).expect("example");
        c.detect.model = Some(manifest.to_path_buf());
        c.detect.model_check_secs = 1;
        c
    }

    #[test]
    fn a_corrupted_model_is_refused_and_the_previous_one_keeps_scoring() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/shipped");
        for f in std::fs::read_dir(&shipped).expect("shipped model dir") {
            let f = f.expect("entry");
            std::fs::copy(f.path(), dir.path().join(f.file_name())).expect("copy");
        }
        let manifest = dir.path().join("manifest.json");
        let mut live =
            LiveDetector::new(&config_with_model(&manifest), 0, None).expect("valid model loads");
        let name = live.model_name().to_string();
        for i in 0..5 {
            live.observe(&sample(i * 1000, 5.0));
        }
        assert_eq!(live.ticks_scored, 5);

        // Corrupt the model file: same size, one byte flipped.
        let onnx = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "onnx"))
            .expect("an onnx file");
        let mut bytes = std::fs::read(&onnx).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&onnx, &bytes).expect("write");
        let err = live
            .reload_if_changed()
            .expect_err("corrupted model refused")
            .to_string();
        assert!(err.contains("sha256"), "{err}");
        assert_eq!(live.model_name(), name);
        // Not retried (and not re-logged) until the file changes again.
        assert!(!live
            .reload_if_changed()
            .expect("same refused file is skipped"));
        for i in 5..10 {
            live.observe(&sample(i * 1000, 5.0));
        }
        assert_eq!(live.ticks_scored, 10, "the previous model keeps scoring");

        // A manifest that does not match the model is refused too.
        bytes[mid] ^= 0xff;
        std::fs::write(&onnx, &bytes).expect("restore");
        let text = std::fs::read_to_string(&manifest).expect("manifest");
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&manifest, text.replacen("\"x\"", "\"input\"", 1)).expect("write manifest");
        let result = live.reload_if_changed();
        if text.contains("\"x\"") {
            assert!(
                result.is_err(),
                "a manifest naming another input is refused"
            );
        }

        // Restoring a valid model is accepted again.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&manifest, &text).expect("restore manifest");
        assert!(live.reload_if_changed().expect("valid model accepted"));
        assert_eq!(live.model_name(), name);
    }

    #[test]
    fn a_bad_model_at_start_falls_back_to_the_built_in_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let manifest = dir.path().join("manifest.json");
        std::fs::write(&manifest, "{ not json").expect("write");
        let mut live =
            LiveDetector::new(&config_with_model(&manifest), 0, None).expect("starts anyway");
        live.observe(&sample(0, 5.0));
        assert_eq!(live.ticks_scored, 1);
        assert!(!live
            .reload_if_changed()
            .expect("the same bad file is not retried"));
    }

    #[test]
    fn the_order_metrics_arrive_in_does_not_change_what_is_learnt() {
        // the same host twice, its metrics listed in opposite orders: the same columns, the same
        // thresholds and ratios to the last bit
        const NAMES: [&str; 8] = [
            "cpu.total_pct",
            "cpu.user_pct",
            "cpu.system_pct",
            "mem.used_pct",
            "disk.busy_pct",
            "net.rx_bytes_per_s",
            "net.tx_bytes_per_s",
            "proc.count",
        ];
        let host = |ts_ms: i64, reversed: bool| {
            let t = ts_ms as f64 / 1000.0;
            let mut metrics: Vec<Metric> = NAMES
                .iter()
                .enumerate()
                .map(|(i, name)| Metric {
                    name,
                    device: String::new(),
                    value: 20.0
                        + 5.0 * (t / (7.0 + i as f64)).sin()
                        + (t * 0.37 * (i + 1) as f64).cos(),
                })
                .collect();
            if reversed {
                metrics.reverse();
            }
            Sample {
                ts_ms,
                metrics,
                top_processes: None,
                process_snapshot: None,
            }
        };
        let config =
            Config::from_toml(include_str!("../../packaging/agent.example.toml")).expect("example");
        let mut a = LiveDetector::new(&config, 0, None).expect("detector");
        let mut b = LiveDetector::new(&config, 0, None).expect("detector");
        let mut i = 0;
        while !a.is_warm() {
            assert!(i < 100_000, "never warm");
            a.observe(&host(i * 1000, false));
            b.observe(&host(i * 1000, true));
            i += 1;
        }
        assert!(b.is_warm());
        for j in i..i + 60 {
            a.observe(&host(j * 1000, false));
            b.observe(&host(j * 1000, true));
            assert_eq!(
                a.detector.combined_ratio().to_bits(),
                b.detector.combined_ratio().to_bits()
            );
        }
        let (wa, pa) = a.detector.thresholds().expect("thresholds");
        let (wb, pb) = b.detector.thresholds().expect("thresholds");
        assert_eq!(wa.to_bits(), wb.to_bits());
        assert_eq!(pa.map(f64::to_bits), pb.map(f64::to_bits));
    }

    #[test]
    fn keys_name_devices() {
        assert_eq!(metric_key("cpu.total_pct", ""), "cpu.total_pct");
        assert_eq!(metric_key("disk.busy_pct", "sda"), "disk.busy_pct:sda");
    }
}
