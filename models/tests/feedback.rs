//! The detector honours what operators taught it: floors and quiet windows from fleet
//! policies (`sco_policy::feedback`), derived from a false alarm exactly as the control plane
//! derives them.

use std::sync::Arc;

use sco_models::{Detector, DetectorConfig, EventKind, Model, Tick};
use sco_policy::feedback::{derive, EventFacts, Evidence, Scope};
use sco_policy::{Family, Floor, QuietWindow, Verdict, Weekday};

const CPU: &str = "cpu.total_pct";
const MEM: &str = "mem.used_pct";

mod common;
use common::Noise;

fn config() -> DetectorConfig {
    DetectorConfig {
        warmup_ticks: 300,
        baseline_window: 300,
        rebaseline_every_ticks: 10,
        min_duration_ticks: 5,
        clear_ticks: 10,
        update_every_ticks: 30,
        relearn_after_ticks: 200,
        ..DetectorConfig::default()
    }
}

/// Runs 1100 one-second ticks of a normal host (cpu ~5 %, memory ~40 %) with `level` of
/// `metric` during ticks 700..740; `lessons` are given to the detector at tick 600 (as a
/// policy reaching a warm agent would).
fn run(
    config: DetectorConfig,
    metric: &str,
    level: f64,
    lessons: Option<(Vec<Floor>, Vec<QuietWindow>)>,
) -> Vec<Tick> {
    let model = Arc::new(Model::shipped().expect("shipped model loads"));
    let mut det = Detector::new(model, config);
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    let mut lessons = lessons;
    (0..1100usize)
        .map(|t| {
            if t == 600 {
                if let Some((f, q)) = lessons.take() {
                    det.set_lessons(f, q);
                }
            }
            let mut v = vec![
                (CPU, 5.0 + 0.5 * noise.next()),
                (MEM, 40.0 + 0.3 * noise.next()),
            ];
            if (700..740).contains(&t) {
                for x in &mut v {
                    if x.0 == metric {
                        x.1 = level;
                    }
                }
            }
            det.tick(t as i64 * 1000, &v).expect("tick")
        })
        .collect()
}

fn opened(ticks: &[Tick]) -> Vec<&sco_models::Anomaly> {
    ticks
        .iter()
        .flat_map(|t| &t.changes)
        .filter(|c| c.kind == EventKind::Opened)
        .map(|c| &c.event)
        .collect()
}

fn facts(ev: &sco_models::Anomaly) -> EventFacts {
    EventFacts {
        host: "agent-1".into(),
        family: ev.family,
        started_ms: ev.started_ms,
        ended_ms: ev.ended_ms,
        contributors: ev
            .contributors
            .iter()
            .map(|c| Evidence {
                metric: c.metric.clone(),
                value: c.value,
                expected_low: c.expected_low,
                expected_high: c.expected_high,
            })
            .collect(),
    }
}

#[test]
fn a_false_positive_floor_silences_that_deviation_and_nothing_bigger_or_elsewhere() {
    let before = run(config(), CPU, 40.0, None);
    let events = opened(&before);
    assert_eq!(events.len(), 1, "{events:?}");
    let lesson = derive(Verdict::FalsePositive, &facts(events[0]), &Scope::default())
        .expect("derives")
        .expect("a false positive teaches something");
    let floors = lesson.detection.floors.clone();
    assert_eq!(floors.len(), 1, "{floors:?}");
    assert_eq!(floors[0].metrics, [CPU]);
    let max = floors[0].max.expect("a rise gives a max");
    assert!((40.0..45.0).contains(&max), "floor {max}");

    // the same deviation again: not evidence any more
    let after = run(config(), CPU, 40.0, Some((floors.clone(), Vec::new())));
    assert!(opened(&after).is_empty(), "{:?}", opened(&after));
    // a larger one still alarms, as does another metric
    let bigger = run(config(), CPU, 95.0, Some((floors.clone(), Vec::new())));
    assert_eq!(opened(&bigger).len(), 1);
    let memory = run(config(), MEM, 90.0, Some((floors, Vec::new())));
    let ev = opened(&memory);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].family, Family::Memory);
}

#[test]
fn quiet_windows_hold_only_at_their_time_and_for_their_family() {
    // ticks are seconds from 1970-01-01 00:00 UTC, a Thursday: the burst is at 00:11:40
    let window = |days: Vec<Weekday>, families: Vec<Family>| QuietWindow {
        days,
        start: "00:11".parse().expect("time"),
        end: "00:15".parse().expect("time"),
        families,
        metrics: Vec::new(),
    };
    let quiet = run(
        config(),
        CPU,
        40.0,
        Some((Vec::new(), vec![window(vec![], vec![Family::Cpu])])),
    );
    assert!(opened(&quiet).is_empty(), "{:?}", opened(&quiet));
    let whole_host = run(
        config(),
        CPU,
        40.0,
        Some((Vec::new(), vec![window(vec![Weekday::Thu], vec![])])),
    );
    assert!(opened(&whole_host).is_empty());
    // another day, or another family: it alarms
    let monday = run(
        config(),
        CPU,
        40.0,
        Some((Vec::new(), vec![window(vec![Weekday::Mon], vec![])])),
    );
    assert_eq!(opened(&monday).len(), 1);
    let memory_only = run(
        config(),
        CPU,
        40.0,
        Some((Vec::new(), vec![window(vec![], vec![Family::Memory])])),
    );
    assert_eq!(opened(&memory_only).len(), 1);

    // derived from an expected event: the same hours every day
    let before = run(config(), CPU, 40.0, None);
    let ev = opened(&before)[0].clone();
    let lesson = derive(Verdict::Expected, &facts(&ev), &Scope::default())
        .expect("derives")
        .expect("a lesson");
    let again = run(
        config(),
        CPU,
        40.0,
        Some((Vec::new(), lesson.detection.quiet_windows)),
    );
    assert!(opened(&again).is_empty());
}

#[test]
fn floors_also_hold_in_the_smoothed_whole_host_profile() {
    let smoothed = DetectorConfig {
        pca_rolling_fit: true,
        pca_variance: 0.95,
        smooth_ticks: 12,
        score_quantile: Some(0.98),
        min_duration_ticks: 1,
        clear_ticks: 1,
        clear_fraction: 1.0,
        per_family: false,
        saturation_ratio: 0.0,
        freeze_baselines: false,
        relearn_after_ticks: 0,
        contributor_min_ratio: 0.0,
        ..config()
    };
    let before = run(smoothed.clone(), CPU, 40.0, None);
    let events = opened(&before);
    assert!(!events.is_empty());
    let lesson = derive(Verdict::FalsePositive, &facts(events[0]), &Scope::default())
        .expect("derives")
        .expect("a lesson");
    let after = run(
        smoothed,
        CPU,
        40.0,
        Some((lesson.detection.floors, Vec::new())),
    );
    assert!(opened(&after).is_empty(), "{:?}", opened(&after));
}
