//! What operators teach the detector, as detection settings of a policy: metric floors and
//! quiet windows, their checks, and [`derive`], the one place an operator's verdict on an
//! anomaly event becomes those settings. The control plane calls it for
//! `POST /anomaly/{id}/feedback` and the replay evaluation calls it on the false alarms of a
//! labelled period, so what is measured is what the fleet gets.
//!
//! - A [`Floor`] widens the normal band of some metrics: a value above its baseline but not
//!   above `max`, or below it but not below `min`, is not evidence of anything.
//! - A [`QuietWindow`] is a recurring time of the week (UTC) during which some families or
//!   metrics are not evidence (planned work: a nightly backup, a weekly deploy).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::action::glob_match;
use crate::document::{DetectionSettings, PolicyError, Target};
use crate::metrics::metric_name;
use crate::Family;

/// Floors and quiet windows one policy may carry.
pub const MAX_FLOORS: usize = 64;
pub const MAX_QUIET_WINDOWS: usize = 16;
/// Metric globs per floor or window.
pub const MAX_GLOBS: usize = 16;
/// How much beyond the value seen in a false alarm a derived floor lies, as a share of that
/// value's distance from the expected range (a first choice, not tuned; measured with
/// `models/examples/feedback_replay.rs`).
pub const FLOOR_MARGIN: f64 = 0.1;
/// Contributors of an event a false positive raises floors for when the scope names none.
pub const DEFAULT_FLOOR_METRICS: usize = 3;

/// A metric key (`name` or `name:device`) matches a glob when its whole key or its name does
/// (`disk.busy_pct` covers `disk.busy_pct:sda`).
pub fn metric_matches(glob: &str, key: &str) -> bool {
    glob_match(glob, key) || glob_match(glob, metric_name(key))
}

/// The normal band of `metrics` widened to `min..=max` (either edge may be absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Floor {
    /// Metric globs, e.g. `cpu.user_pct` or `disk.busy_pct:sd*`.
    pub metrics: Vec<String>,
    /// A value under its baseline is not evidence unless it is below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// A value over its baseline is not evidence unless it is above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

impl Floor {
    pub fn covers(&self, key: &str) -> bool {
        self.metrics.iter().any(|g| metric_matches(g, key))
    }

    /// Whether `value`, `z` normalised units from its baseline, stays inside the widened band.
    pub fn holds_back(&self, value: f64, z: f64) -> bool {
        if z > 0.0 {
            self.max.is_some_and(|m| value <= m)
        } else if z < 0.0 {
            self.min.is_some_and(|m| value >= m)
        } else {
            true
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    pub const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    /// The UTC day of the week of a Unix time in milliseconds.
    pub fn of(ms: i64) -> Weekday {
        // 1970-01-01 was a Thursday
        let days = ms.div_euclid(86_400_000);
        Weekday::ALL[(days + 3).rem_euclid(7) as usize]
    }

    fn previous(self) -> Weekday {
        Weekday::ALL[(self as usize + 6) % 7]
    }
}

/// A time of day, UTC, written `HH:MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeOfDay {
    /// Minutes since midnight, 0..1440.
    pub minutes: u16,
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.minutes / 60, self.minutes % 60)
    }
}

impl std::str::FromStr for TimeOfDay {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a time HH:MM (00:00 to 23:59)");
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let h: u16 = h.parse().map_err(|_| bad())?;
        let m: u16 = m.parse().map_err(|_| bad())?;
        if h > 23 || m > 59 {
            return Err(bad());
        }
        Ok(TimeOfDay {
            minutes: h * 60 + m,
        })
    }
}

impl Serialize for TimeOfDay {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Recurring days and hours (UTC): `start` to `end`, on each of `days` (none: every day); an
/// `end` at or before `start` runs past midnight into the next day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recurrence {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<Weekday>,
    pub start: TimeOfDay,
    pub end: TimeOfDay,
}

impl Recurrence {
    pub fn contains(&self, ms: i64) -> bool {
        let minute = (ms.div_euclid(60_000).rem_euclid(1440)) as u16;
        let today = Weekday::of(ms);
        let on = |d: Weekday| self.days.is_empty() || self.days.contains(&d);
        let (start, end) = (self.start.minutes, self.end.minutes);
        if start < end {
            on(today) && (start..end).contains(&minute)
        } else {
            // past midnight: the evening part belongs to today, the morning part to yesterday
            (on(today) && minute >= start) || (on(today.previous()) && minute < end)
        }
    }
}

/// While its recurrence holds, `families` and `metrics` are not evidence (both empty: the
/// whole host).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietWindow {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<Weekday>,
    pub start: TimeOfDay,
    pub end: TimeOfDay,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub families: Vec<Family>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<String>,
}

impl QuietWindow {
    /// When it recurs.
    pub fn when(&self) -> Recurrence {
        Recurrence {
            days: self.days.clone(),
            start: self.start,
            end: self.end,
        }
    }

    pub fn is_whole_host(&self) -> bool {
        self.families.is_empty() && self.metrics.is_empty()
    }

    /// Whether metric `key` of family `family` is quiet at `ms`.
    pub fn quiets(&self, ms: i64, key: &str, family: Family) -> bool {
        self.when().contains(ms)
            && (self.is_whole_host()
                || self.families.contains(&family)
                || self.metrics.iter().any(|g| metric_matches(g, key)))
    }
}

fn check_globs(field: &str, globs: &[String], known: bool) -> Result<(), PolicyError> {
    if globs.len() > MAX_GLOBS {
        return Err(PolicyError::new(
            field,
            format!("{} globs, at most {MAX_GLOBS}", globs.len()),
        ));
    }
    for (i, g) in globs.iter().enumerate() {
        let at = || format!("{field}[{i}]");
        crate::metrics::check_metric(g).map_err(|r| PolicyError::new(at(), r))?;
        if g.is_empty() {
            return Err(PolicyError::new(at(), "empty glob"));
        }
        if known {
            crate::metrics::check_known_glob(g).map_err(|r| PolicyError::new(at(), r))?;
        }
    }
    Ok(())
}

/// Checks the floors and quiet windows of detection settings, naming the field.
pub(crate) fn validate(d: &DetectionSettings) -> Result<(), PolicyError> {
    if d.floors.len() > MAX_FLOORS {
        return Err(PolicyError::new(
            "detection.floors",
            format!("{} floors, at most {MAX_FLOORS}", d.floors.len()),
        ));
    }
    for (i, f) in d.floors.iter().enumerate() {
        let at = |s: &str| format!("detection.floors[{i}].{s}");
        if f.metrics.is_empty() {
            return Err(PolicyError::new(at("metrics"), "names no metric"));
        }
        check_globs(&at("metrics"), &f.metrics, true)?;
        for (name, v) in [("min", f.min), ("max", f.max)] {
            if v.is_some_and(|v| !v.is_finite()) {
                return Err(PolicyError::new(at(name), "not a finite number"));
            }
        }
        match (f.min, f.max) {
            (None, None) => {
                return Err(PolicyError::new(
                    format!("detection.floors[{i}]"),
                    "needs min, max or both",
                ))
            }
            (Some(lo), Some(hi)) if lo > hi => {
                return Err(PolicyError::new(
                    at("min"),
                    format!("{lo} is above max {hi}"),
                ))
            }
            _ => {}
        }
    }
    if d.quiet_windows.len() > MAX_QUIET_WINDOWS {
        return Err(PolicyError::new(
            "detection.quiet_windows",
            format!(
                "{} windows, at most {MAX_QUIET_WINDOWS}",
                d.quiet_windows.len()
            ),
        ));
    }
    for (i, w) in d.quiet_windows.iter().enumerate() {
        let at = |s: &str| format!("detection.quiet_windows[{i}].{s}");
        if w.start == w.end {
            return Err(PolicyError::new(
                at("end"),
                format!("{} is its start: an empty window", w.end),
            ));
        }
        check_globs(&at("metrics"), &w.metrics, true)?;
    }
    Ok(())
}

/// An operator's verdict on an anomaly event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A real problem: recorded, never suppresses anything.
    TruePositive,
    /// Not a problem: the deviation is this host's normal.
    FalsePositive,
    /// Planned work (a deploy, a backup, a batch job).
    Expected,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::TruePositive => "true_positive",
            Verdict::FalsePositive => "false_positive",
            Verdict::Expected => "expected",
        }
    }
}

impl std::str::FromStr for Verdict {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "true_positive" => Ok(Verdict::TruePositive),
            "false_positive" => Ok(Verdict::FalsePositive),
            "expected" => Ok(Verdict::Expected),
            other => Err(format!(
                "unknown verdict {other:?}; expected true_positive, false_positive or expected"
            )),
        }
    }
}

/// Where a lesson applies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Hosts whose labels all match; none: the event's host only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Metric globs; none: the event's top contributors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<String>,
    /// For `expected`: when the planned work recurs; none: every day at the event's hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Recurrence>,
}

/// One contributor of the event, as the detector explained it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub metric: String,
    pub value: f64,
    pub expected_low: f64,
    pub expected_high: f64,
}

/// What [`derive`] needs to know of an event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventFacts {
    pub host: String,
    pub family: Family,
    pub started_ms: i64,
    /// None while it is open.
    pub ended_ms: Option<i64>,
    /// Largest first.
    pub contributors: Vec<Evidence>,
}

/// The detection settings a verdict gives, and the hosts they apply to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lesson {
    pub target: Target,
    pub detection: DetectionSettings,
}

/// Turns a verdict on an event into the settings that would have kept it quiet, for the
/// scope's hosts. A true positive changes nothing (`None`). A false positive raises a floor
/// for each contributor the scope covers (default: the top [`DEFAULT_FLOOR_METRICS`]) just
/// beyond the value it had ([`FLOOR_MARGIN`]); an expected event gets a quiet window for its
/// family (or the scope's metrics) at the scope's recurrence, or every day at the event's
/// hours (rounded out to 15 minutes).
pub fn derive(
    verdict: Verdict,
    event: &EventFacts,
    scope: &Scope,
) -> Result<Option<Lesson>, PolicyError> {
    for (k, v) in &scope.labels {
        if k.is_empty() || k.len() > 64 || v.len() > 128 {
            return Err(PolicyError::new(
                format!("scope.labels.{k}"),
                "label keys are 1..=64 bytes, values at most 128",
            ));
        }
    }
    check_globs("scope.metrics", &scope.metrics, false)?;
    if scope.window.is_some() && verdict != Verdict::Expected {
        return Err(PolicyError::new(
            "scope.window",
            "only an expected verdict has a window",
        ));
    }
    let target = if scope.labels.is_empty() {
        Target {
            hosts: vec![event.host.clone()],
            ..Target::default()
        }
    } else {
        Target {
            labels: scope.labels.clone(),
            ..Target::default()
        }
    };
    let mut detection = DetectionSettings::default();
    match verdict {
        Verdict::TruePositive => return Ok(None),
        Verdict::FalsePositive => {
            let covered: Vec<&Evidence> = if scope.metrics.is_empty() {
                event
                    .contributors
                    .iter()
                    .filter(|c| outside(c))
                    .take(DEFAULT_FLOOR_METRICS)
                    .collect()
            } else {
                for (i, g) in scope.metrics.iter().enumerate() {
                    if !event
                        .contributors
                        .iter()
                        .any(|c| metric_matches(g, &c.metric))
                    {
                        return Err(PolicyError::new(
                            format!("scope.metrics[{i}]"),
                            format!(
                                "{g:?} matches no contributor of the event, so there is no value to \
                                 raise its floor to"
                            ),
                        ));
                    }
                }
                event
                    .contributors
                    .iter()
                    .filter(|c| {
                        outside(c) && scope.metrics.iter().any(|g| metric_matches(g, &c.metric))
                    })
                    .collect()
            };
            for c in covered {
                let floor = if c.value > c.expected_high {
                    Floor {
                        metrics: vec![c.metric.clone()],
                        min: None,
                        max: Some(c.value + FLOOR_MARGIN * (c.value - c.expected_high)),
                    }
                } else {
                    Floor {
                        metrics: vec![c.metric.clone()],
                        min: Some(c.value - FLOOR_MARGIN * (c.expected_low - c.value)),
                        max: None,
                    }
                };
                detection.floors.push(floor);
            }
            if detection.floors.is_empty() {
                return Err(PolicyError::new(
                    "scope.metrics",
                    "no contributor of the event is outside its expected range; there is no floor \
                     to raise (give the metrics, or use expected with a window)",
                ));
            }
        }
        Verdict::Expected => {
            let when = match &scope.window {
                Some(w) => w.clone(),
                None => {
                    const Q: i64 = 15 * 60_000;
                    let start = event.started_ms.div_euclid(Q) * Q;
                    let end = event.ended_ms.unwrap_or(event.started_ms + 4 * Q);
                    let end = (end.div_euclid(Q) + 1) * Q;
                    if end - start >= 86_400_000 {
                        return Err(PolicyError::new(
                            "scope.window",
                            "the event lasted a day or more; give the window it recurs in",
                        ));
                    }
                    let tod = |ms: i64| TimeOfDay {
                        minutes: (ms.div_euclid(60_000).rem_euclid(1440)) as u16,
                    };
                    Recurrence {
                        days: Vec::new(),
                        start: tod(start),
                        end: tod(end),
                    }
                }
            };
            let (families, metrics) = if scope.metrics.is_empty() {
                (vec![event.family], Vec::new())
            } else {
                (Vec::new(), scope.metrics.clone())
            };
            detection.quiet_windows.push(QuietWindow {
                days: when.days,
                start: when.start,
                end: when.end,
                families,
                metrics,
            });
        }
    }
    Ok(Some(Lesson { target, detection }))
}

fn outside(c: &Evidence) -> bool {
    c.value.is_finite() && (c.value > c.expected_high || c.value < c.expected_low)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MON_0230: i64 = 1_796_610_600_000; // 2026-12-07 02:30 UTC, a Monday

    #[test]
    fn weekdays_and_windows() {
        assert_eq!(Weekday::of(0), Weekday::Thu);
        assert_eq!(Weekday::of(MON_0230), Weekday::Mon);
        assert_eq!(crate::utc(MON_0230), "2026-12-07 02:30:00 UTC");
        let w = |days: Vec<Weekday>, s: &str, e: &str| Recurrence {
            days,
            start: s.parse().expect("time"),
            end: e.parse().expect("time"),
        };
        let h = 3_600_000;
        assert!(w(vec![], "02:00", "03:00").contains(MON_0230));
        assert!(!w(vec![], "02:00", "03:00").contains(MON_0230 + h));
        assert!(w(vec![Weekday::Mon], "02:00", "03:00").contains(MON_0230));
        assert!(!w(vec![Weekday::Tue], "02:00", "03:00").contains(MON_0230));
        // past midnight: Sunday 23:00 to 03:00 covers Monday 02:30, not Monday 23:30
        let night = w(vec![Weekday::Sun], "23:00", "03:00");
        assert!(night.contains(MON_0230));
        assert!(!night.contains(MON_0230 + 21 * h));
        assert!(night.contains(MON_0230 - 3 * h)); // Sunday 23:30
    }

    #[test]
    fn times_parse_strictly() {
        assert_eq!("00:00".parse::<TimeOfDay>().expect("ok").minutes, 0);
        assert_eq!(
            "23:59".parse::<TimeOfDay>().expect("ok").to_string(),
            "23:59"
        );
        for bad in ["24:00", "7:00", "07:60", "0700", "", "aa:bb", "07:00:00"] {
            assert!(bad.parse::<TimeOfDay>().is_err(), "{bad} accepted");
        }
    }

    fn event() -> EventFacts {
        EventFacts {
            host: "agent-1".into(),
            family: Family::Cpu,
            started_ms: MON_0230,
            ended_ms: Some(MON_0230 + 20 * 60_000),
            contributors: vec![
                Evidence {
                    metric: "cpu.user_pct".into(),
                    value: 60.0,
                    expected_low: 0.0,
                    expected_high: 20.0,
                },
                Evidence {
                    metric: "mem.available_bytes".into(),
                    value: 100.0,
                    expected_low: 200.0,
                    expected_high: 400.0,
                },
                Evidence {
                    metric: "cpu.system_pct".into(),
                    value: 5.0,
                    expected_low: 0.0,
                    expected_high: 10.0,
                },
            ],
        }
    }

    #[test]
    fn false_positive_raises_floors_of_the_contributors_outside_their_range() {
        let l = derive(Verdict::FalsePositive, &event(), &Scope::default())
            .expect("derives")
            .expect("a lesson");
        assert_eq!(l.target.hosts, ["agent-1"]);
        assert!(l.target.labels.is_empty());
        assert_eq!(
            l.detection.floors,
            [
                Floor {
                    metrics: vec!["cpu.user_pct".into()],
                    min: None,
                    max: Some(64.0)
                },
                Floor {
                    metrics: vec!["mem.available_bytes".into()],
                    min: Some(90.0),
                    max: None
                },
            ]
        );
        assert!(l.detection.quiet_windows.is_empty());

        let scoped = Scope {
            metrics: vec!["cpu.*".into()],
            labels: [("role".to_string(), "web".to_string())].into(),
            window: None,
        };
        let l = derive(Verdict::FalsePositive, &event(), &scoped)
            .expect("derives")
            .expect("a lesson");
        assert_eq!(l.detection.floors.len(), 1);
        assert!(l.target.hosts.is_empty());
        assert_eq!(l.target.labels["role"], "web");

        let e = derive(
            Verdict::FalsePositive,
            &event(),
            &Scope {
                metrics: vec!["net.*".into()],
                ..Scope::default()
            },
        )
        .expect_err("no contributor");
        assert_eq!(e.field, "scope.metrics[0]");
    }

    #[test]
    fn true_positive_changes_nothing_and_expected_gets_a_window() {
        assert_eq!(
            derive(Verdict::TruePositive, &event(), &Scope::default()).expect("ok"),
            None
        );
        let l = derive(Verdict::Expected, &event(), &Scope::default())
            .expect("derives")
            .expect("a lesson");
        let w = &l.detection.quiet_windows[0];
        assert_eq!(
            (w.start.to_string(), w.end.to_string()),
            ("02:30".into(), "03:00".into())
        );
        assert_eq!(w.families, [Family::Cpu]);
        assert!(w.quiets(MON_0230 + 86_400_000, "cpu.user_pct", Family::Cpu));
        assert!(!w.quiets(MON_0230, "mem.used_pct", Family::Memory));

        let e = derive(
            Verdict::FalsePositive,
            &event(),
            &Scope {
                window: Some(Recurrence {
                    days: vec![],
                    start: "01:00".parse().expect("t"),
                    end: "02:00".parse().expect("t"),
                }),
                ..Scope::default()
            },
        )
        .expect_err("window on a false positive");
        assert_eq!(e.field, "scope.window");
    }

    #[test]
    fn floors_hold_back_only_moves_inside_the_band() {
        let f = Floor {
            metrics: vec!["disk.busy_pct".into()],
            min: Some(10.0),
            max: Some(50.0),
        };
        assert!(f.covers("disk.busy_pct:sda") && !f.covers("disk.used_pct:/"));
        assert!(f.holds_back(40.0, 2.0));
        assert!(!f.holds_back(60.0, 5.0));
        assert!(f.holds_back(12.0, -3.0));
        assert!(!f.holds_back(5.0, -3.0));
        let up = Floor {
            metrics: vec!["x".into()],
            min: None,
            max: Some(50.0),
        };
        assert!(!up.holds_back(1.0, -8.0), "a drop is still evidence");
    }
}
