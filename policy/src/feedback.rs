//! [`derive`], the one place an operator's verdict on an anomaly event becomes detection
//! settings (floors and quiet windows, `crate::lessons`). The control plane calls it for
//! `POST /anomaly/{id}/feedback` and the replay evaluation calls it on the false alarms of a
//! labelled period, so what is measured is what the fleet gets.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::document::{DetectionSettings, Target};
use crate::error::PolicyError;
use crate::lessons::{check_globs, metric_matches, Floor, QuietWindow, Recurrence, TimeOfDay};
use crate::Family;

/// How much beyond the value seen in a false alarm a derived floor lies, as a share of that
/// value's distance from the expected range (a first choice, not tuned; measured with
/// `models/examples/feedback_replay.rs`).
pub const FLOOR_MARGIN: f64 = 0.1;
/// Contributors of an event a false positive raises floors for when the scope names none.
pub const DEFAULT_FLOOR_METRICS: usize = 3;

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
}
