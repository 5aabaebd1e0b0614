//! Does operators' feedback lower false alarms without hiding real anomalies? Replays labelled
//! hosts with the detector `sco-agent replay` runs (the 5-minute profile, the train file as
//! warm-up, one tick per row) and splits each test file in two periods:
//!
//! 1. Period 1: every event that overlaps no labelled row is a false alarm; the operator marks
//!    each one `false_positive` with the default scope, and the floors come from
//!    `sco_policy::feedback::derive`, the function the control plane calls for
//!    `POST /anomaly/{id}/feedback`, on the event as the control plane stores it (its last
//!    contributors).
//! 2. Period 2 is replayed twice from the same state: without feedback, and with those floors
//!    given to the detector at the first row of period 2 (`Detector::set_lessons`, what the
//!    agent does when the generated policy arrives).
//!
//! For period 2 it counts false-alarm events and the labelled anomaly segments that had an
//! alarm on at least one of their rows (event recall), and, as a chance control, the segments the
//! same alarm rows hit when shifted circularly against the labels (a long segment is hit by any
//! alarm that happens to fall in it). Period 2's labels are read only to score.
//!
//! `cargo run -p sco-models --example feedback_replay -- ../shared/data/jumpstarter/Dataset3`
//! (a folder with `train/`, `test/` and `test_label/`; `--hosts N` takes the first N files;
//! `--floor-metrics N` scopes each verdict to the event's top N contributors outside their range
//! instead of the API's default scope).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use sco_models::{Anomaly, Detector, DetectorConfig, EventKind, Model};
use sco_policy::feedback::{derive, EventFacts, Evidence, Scope};
use sco_policy::{Floor, Verdict};

fn read_rows(path: &Path) -> Result<Vec<Vec<f64>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            l.split(',')
                .map(|v| {
                    let v = v.trim();
                    if v.is_empty() {
                        Ok(f64::NAN)
                    } else {
                        v.parse::<f64>()
                            .map_err(|e| format!("{}: line {}: {v:?}: {e}", path.display(), i + 1))
                    }
                })
                .collect()
        })
        .collect()
}

fn read_labels(path: &Path) -> Result<Vec<bool>, String> {
    Ok(read_rows(path)?
        .into_iter()
        .map(|r| r.first().is_some_and(|v| *v > 0.5))
        .collect())
}

/// Maximal runs of labelled rows in `from..to`.
fn segments(labels: &[bool], from: usize, to: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &l) in labels.iter().enumerate().take(to).skip(from) {
        match (l, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, to));
    }
    out
}

struct Event {
    first_row: usize,
    last_row: usize,
    anomaly: Anomaly,
}

struct Run {
    /// Alarm on, per test row.
    alarm: Vec<bool>,
    events: Vec<Event>,
}

/// Replays warm-up then test; `lessons(row)` may return floors to give the detector before
/// that test row.
fn replay(
    model: &Arc<Model>,
    train: &[Vec<f64>],
    test: &[Vec<f64>],
    mut lessons: impl FnMut(usize, &[Event]) -> Option<Vec<Floor>>,
) -> Result<Run, String> {
    let width = test.first().map_or(0, Vec::len);
    let names: Vec<String> = (1..=width).map(|i| format!("m{i}")).collect();
    // exactly `sco-agent replay --warmup train.csv --input test.csv`
    let mut det = Detector::new(model.clone(), DetectorConfig::five_minute(train.len()));
    let mut tick_no = 0i64;
    let mut feed = |det: &mut Detector, row: &[f64]| {
        tick_no += 1;
        let values: Vec<(&str, f64)> = names
            .iter()
            .zip(row)
            .filter(|(_, v)| !v.is_nan())
            .map(|(n, v)| (n.as_str(), *v))
            .collect();
        det.tick(tick_no * 1000, &values).map_err(|e| e.to_string())
    };
    for row in train {
        feed(&mut det, row)?;
    }
    let mut run = Run {
        alarm: Vec::with_capacity(test.len()),
        events: Vec::new(),
    };
    let mut open: Option<usize> = None;
    for (i, row) in test.iter().enumerate() {
        if let Some(floors) = lessons(i, &run.events) {
            det.set_lessons(floors, Vec::new());
        }
        let tick = feed(&mut det, row)?;
        for c in &tick.changes {
            match c.kind {
                EventKind::Opened => {
                    run.events.push(Event {
                        first_row: i,
                        last_row: i,
                        anomaly: c.event.clone(),
                    });
                    open = Some(run.events.len() - 1);
                }
                EventKind::Updated | EventKind::Closed => {
                    if let Some(e) = open.and_then(|k| run.events.get_mut(k)) {
                        e.last_row = i;
                        e.anomaly = c.event.clone();
                    }
                    if c.kind == EventKind::Closed {
                        open = None;
                    }
                }
            }
        }
        if let Some(e) = open.and_then(|k| run.events.get_mut(k)) {
            e.last_row = i;
        }
        run.alarm.push(tick.alarm);
    }
    Ok(run)
}

fn is_false_alarm(e: &Event, labels: &[bool]) -> bool {
    !(e.first_row..=e.last_row).any(|r| labels.get(r).copied().unwrap_or(false))
}

/// What the operator's verdicts name (development flags; the defaults are the API's).
#[derive(Clone, Copy)]
struct Teach {
    /// Contributors scoped per false alarm (`--floor-metrics`); None: the API's default scope.
    metrics: Option<usize>,
}

/// The floors an operator's `false_positive` on each false alarm of `events` gives.
fn floors_from(events: &[Event], labels: &[bool], before: usize, teach: Teach) -> Vec<Floor> {
    let mut floors = Vec::new();
    for e in events
        .iter()
        .filter(|e| e.last_row < before && is_false_alarm(e, labels))
    {
        let facts = EventFacts {
            host: "replay".into(),
            family: e.anomaly.family,
            started_ms: e.anomaly.started_ms,
            ended_ms: e.anomaly.ended_ms,
            contributors: e
                .anomaly
                .contributors
                .iter()
                .map(|c| Evidence {
                    metric: c.metric.clone(),
                    value: c.value,
                    expected_low: c.expected_low,
                    expected_high: c.expected_high,
                })
                .collect(),
        };
        // an event with no contributor outside its range gives nothing (the API answers 400)
        let scope = match teach.metrics {
            None => Scope::default(),
            Some(n) => Scope {
                metrics: facts
                    .contributors
                    .iter()
                    .filter(|c| c.value > c.expected_high || c.value < c.expected_low)
                    .take(n)
                    .map(|c| c.metric.clone())
                    .collect(),
                ..Scope::default()
            },
        };
        if let Ok(Some(lesson)) = derive(Verdict::FalsePositive, &facts, &scope) {
            floors.extend(lesson.detection.floors);
        }
    }
    floors
}

#[derive(Default)]
struct Period2 {
    false_alarms: usize,
    segments: usize,
    detected: usize,
    /// Segments the same alarms would hit by chance: the mean over [`SHIFTS`] circular shifts
    /// of period 2's alarm rows against its labels.
    chance: f64,
    alarm_rows: usize,
    /// Alarm rows that are labelled.
    true_rows: usize,
}

/// Circular shifts of the alarm rows for the chance control, as fractions of period 2.
const SHIFTS: usize = 16;

/// Segments of `segs` with an alarm in `alarm` (period 2's rows from `from`) shifted by `k` rows.
fn hit_shifted(alarm: &[bool], segs: &[(usize, usize)], from: usize, k: usize) -> usize {
    let n = alarm.len() - from;
    segs.iter()
        .filter(|(s, t)| (*s..*t).any(|r| alarm[from + (r - from + k) % n]))
        .count()
}

fn score(run: &Run, labels: &[bool], from: usize) -> Period2 {
    let segs = segments(labels, from, labels.len().min(run.alarm.len()));
    let n = run.alarm.len().saturating_sub(from);
    // shifts spread over the period, none near 0 (which is the run itself)
    let chance = if n > 0 {
        (1..=SHIFTS)
            .map(|i| hit_shifted(&run.alarm, &segs, from, i * n / (SHIFTS + 1)) as f64)
            .sum::<f64>()
            / SHIFTS as f64
    } else {
        0.0
    };
    Period2 {
        chance,
        true_rows: run.alarm[from..]
            .iter()
            .zip(&labels[from..])
            .filter(|(a, l)| **a && **l)
            .count(),
        false_alarms: run
            .events
            .iter()
            .filter(|e| e.first_row >= from && is_false_alarm(e, labels))
            .count(),
        segments: segs.len(),
        detected: segs
            .iter()
            .filter(|(s, t)| run.alarm[*s..*t].iter().any(|a| *a))
            .count(),
        alarm_rows: run.alarm[from..].iter().filter(|a| **a).count(),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first().map(Path::new) else {
        eprintln!("usage: feedback_replay DATASET_DIR [--hosts N]");
        return ExitCode::from(2);
    };
    let limit = match args.iter().position(|a| a == "--hosts") {
        Some(i) => match args.get(i + 1).and_then(|v| v.parse::<usize>().ok()) {
            Some(n) => n,
            None => {
                eprintln!("--hosts needs a number");
                return ExitCode::from(2);
            }
        },
        None => usize::MAX,
    };
    let teach = Teach {
        metrics: match args.iter().position(|a| a == "--floor-metrics") {
            Some(i) => match args.get(i + 1).and_then(|v| v.parse::<usize>().ok()) {
                Some(n) => Some(n),
                None => {
                    eprintln!("--floor-metrics needs a number");
                    return ExitCode::from(2);
                }
            },
            None => None,
        },
    };
    match run(dir, limit, teach) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &Path, limit: usize, teach: Teach) -> Result<(), String> {
    let model = Arc::new(Model::shipped().map_err(|e| e.to_string())?);
    let mut files: Vec<_> = std::fs::read_dir(dir.join("test"))
        .map_err(|e| format!("{}: {e}", dir.join("test").display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    files.sort_by_key(|f| {
        let s = f.to_string_lossy().to_string();
        let digits: String = s.chars().filter(char::is_ascii_digit).collect();
        (digits.parse::<u64>().unwrap_or(u64::MAX), s)
    });
    println!("host,period1_false_alarms,floors,p2_false_alarms_before,p2_false_alarms_after,p2_segments,p2_detected_before,p2_detected_after,p2_alarm_rows_before,p2_alarm_rows_after,p2_chance_before,p2_chance_after,p2_true_rows_before,p2_true_rows_after");
    let (mut before_all, mut after_all) = (Period2::default(), Period2::default());
    let mut fa1 = 0;
    for f in files.into_iter().take(limit) {
        let train = read_rows(&dir.join("train").join(&f))?;
        let test = read_rows(&dir.join("test").join(&f))?;
        let labels = read_labels(&dir.join("test_label").join(&f))?;
        let half = test.len() / 2;
        let plain = replay(&model, &train, &test, |_, _| None)?;
        let floors = floors_from(&plain.events, &labels, half, teach);
        let p1 = plain
            .events
            .iter()
            .filter(|e| e.last_row < half && is_false_alarm(e, &labels))
            .count();
        let taught_floors = floors.clone();
        let taught = replay(&model, &train, &test, |row, _| {
            (row == half).then(|| taught_floors.clone())
        })?;
        let (b, a) = (score(&plain, &labels, half), score(&taught, &labels, half));
        println!(
            "{},{p1},{},{},{},{},{},{},{},{},{:.2},{:.2},{},{}",
            f.to_string_lossy(),
            floors.len(),
            b.false_alarms,
            a.false_alarms,
            b.segments,
            b.detected,
            a.detected,
            b.alarm_rows,
            a.alarm_rows,
            b.chance,
            a.chance,
            b.true_rows,
            a.true_rows
        );
        fa1 += p1;
        for (all, one) in [(&mut before_all, b), (&mut after_all, a)] {
            all.false_alarms += one.false_alarms;
            all.segments += one.segments;
            all.detected += one.detected;
            all.alarm_rows += one.alarm_rows;
            all.chance += one.chance;
            all.true_rows += one.true_rows;
        }
    }
    println!(
        "total: period 1 false alarms marked {fa1}; period 2 false alarms {} -> {}; labelled segments detected {}/{} -> {}/{} (by chance, shifted alarms: {:.1} -> {:.1}); alarm rows {} -> {}, of which labelled {} -> {}",
        before_all.false_alarms,
        after_all.false_alarms,
        before_all.detected,
        before_all.segments,
        after_all.detected,
        after_all.segments,
        before_all.chance,
        after_all.chance,
        before_all.alarm_rows,
        after_all.alarm_rows,
        before_all.true_rows,
        after_all.true_rows
    );
    Ok(())
}
