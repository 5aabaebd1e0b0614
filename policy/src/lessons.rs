//! What operators teach the detector, as detection settings of a policy: metric floors and
//! quiet windows. [`crate::feedback::derive`] makes them from a verdict; the policy document
//! checks them.
//!
//! - A [`Floor`] widens the normal band of some metrics: a value above its baseline but not
//!   above `max`, or below it but not below `min`, is not evidence of anything.
//! - A [`QuietWindow`] is a recurring time of the week (UTC) during which some families or
//!   metrics are not evidence (planned work: a nightly backup, a weekly deploy).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::action::glob_match;
use crate::error::PolicyError;
use crate::metrics::metric_name;
use crate::Family;

/// Floors and quiet windows one policy may carry.
pub const MAX_FLOORS: usize = 64;
pub const MAX_QUIET_WINDOWS: usize = 16;
/// Metric globs per floor or window.
pub const MAX_GLOBS: usize = 16;

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

pub(crate) fn check_globs(field: &str, globs: &[String], known: bool) -> Result<(), PolicyError> {
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
pub(crate) fn check(floors: &[Floor], quiet_windows: &[QuietWindow]) -> Result<(), PolicyError> {
    if floors.len() > MAX_FLOORS {
        return Err(PolicyError::new(
            "detection.floors",
            format!("{} floors, at most {MAX_FLOORS}", floors.len()),
        ));
    }
    for (i, f) in floors.iter().enumerate() {
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
    if quiet_windows.len() > MAX_QUIET_WINDOWS {
        return Err(PolicyError::new(
            "detection.quiet_windows",
            format!(
                "{} windows, at most {MAX_QUIET_WINDOWS}",
                quiet_windows.len()
            ),
        ));
    }
    for (i, w) in quiet_windows.iter().enumerate() {
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
