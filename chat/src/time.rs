//! Time ranges in words ("last 2 hours", "past 30 min", "since 9:00", "since yesterday",
//! "today"), turned into Unix milliseconds against a `now` the caller gives. There is no
//! clock here: the same words at the same `now` always give the same range. Days and
//! clock times are UTC.

use serde::{Deserialize, Serialize};

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// The longest range a phrase may ask for; longer ones are clipped to it.
pub const MAX_RANGE_MS: i64 = 90 * DAY_MS;

/// A half-open interval `[from_ms, to_ms)` of Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl TimeRange {
    /// The `dur_ms` before `now_ms`.
    pub fn last(now_ms: i64, dur_ms: i64) -> Self {
        let dur = dur_ms.clamp(0, MAX_RANGE_MS);
        TimeRange {
            from_ms: now_ms.saturating_sub(dur),
            to_ms: now_ms,
        }
    }

    /// From the start of today (UTC) to now.
    pub fn today(now_ms: i64) -> Self {
        TimeRange {
            from_ms: start_of_day(now_ms),
            to_ms: now_ms,
        }
    }

    /// The whole of yesterday (UTC).
    pub fn yesterday(now_ms: i64) -> Self {
        let today = start_of_day(now_ms);
        TimeRange {
            from_ms: today.saturating_sub(DAY_MS),
            to_ms: today,
        }
    }

    /// From the start of yesterday (UTC) to now.
    pub fn since_yesterday(now_ms: i64) -> Self {
        TimeRange {
            from_ms: start_of_day(now_ms).saturating_sub(DAY_MS),
            to_ms: now_ms,
        }
    }

    /// From the latest `hour:minute` (UTC) at or before now, to now: "since 9:00" at
    /// 08:00 means yesterday 09:00.
    pub fn since_clock(now_ms: i64, hour: u32, minute: u32) -> Self {
        let mut from = start_of_day(now_ms)
            .saturating_add(i64::from(hour.min(23)) * HOUR_MS)
            .saturating_add(i64::from(minute.min(59)) * MINUTE_MS);
        if from > now_ms {
            from = from.saturating_sub(DAY_MS);
        }
        TimeRange {
            from_ms: from,
            to_ms: now_ms,
        }
    }

    pub fn duration_ms(&self) -> i64 {
        self.to_ms.saturating_sub(self.from_ms)
    }
}

/// Midnight UTC of the day `ms` falls in.
pub fn start_of_day(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS).saturating_mul(DAY_MS)
}

/// Unix milliseconds of a UTC date and time (proleptic Gregorian calendar).
pub fn utc_ms(year: i64, month: u32, day: u32, hour: u32, minute: u32) -> i64 {
    days_from_civil(year, month, day)
        .saturating_mul(DAY_MS)
        .saturating_add(i64::from(hour) * HOUR_MS + i64::from(minute) * MINUTE_MS)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let m = i64::from(m.clamp(1, 12));
    let d = i64::from(d.clamp(1, 31));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A range in words at the start of `words`: the range and how many words it took.
///
/// Understood: `last|past|previous [n] <unit>` (`n` a number or a/an/one..twelve, or
/// glued: `2h`, `30m`, `90min`), `since <clock>` (`9`, `9:00`, `09:30`, `9am`, `9:15pm`),
/// `since yesterday|midnight|today`, `today`, `yesterday`.
pub fn range_at(words: &[&str], now_ms: i64) -> Option<(TimeRange, usize)> {
    let first = *words.first()?;
    match first {
        "today" => Some((TimeRange::today(now_ms), 1)),
        "yesterday" => Some((TimeRange::yesterday(now_ms), 1)),
        "since" => {
            let next = *words.get(1)?;
            match next {
                "yesterday" => Some((TimeRange::since_yesterday(now_ms), 2)),
                "midnight" | "today" => Some((TimeRange::today(now_ms), 2)),
                _ => {
                    let (h, m) = clock(next, words.get(2).copied())?;
                    let used = if words.get(2).is_some_and(|w| is_meridiem(w)) {
                        3
                    } else {
                        2
                    };
                    // "since 9:00 utc": the only zone there is
                    let used = if words.get(used) == Some(&"utc") {
                        used + 1
                    } else {
                        used
                    };
                    Some((TimeRange::since_clock(now_ms, h, m), used))
                }
            }
        }
        "last" | "past" | "previous" => {
            let (dur, used) = duration(&words[1..])?;
            Some((TimeRange::last(now_ms, dur), 1 + used))
        }
        _ => None,
    }
}

fn is_meridiem(w: &str) -> bool {
    matches!(w, "am" | "pm")
}

/// `9`, `9:00`, `09:30`, `9am`, `9:15pm`, or `9` followed by `am`/`pm`.
fn clock(word: &str, next: Option<&str>) -> Option<(u32, u32)> {
    let (body, meridiem) = if let Some(b) = word.strip_suffix("am") {
        (b, Some(false))
    } else if let Some(b) = word.strip_suffix("pm") {
        (b, Some(true))
    } else {
        match next {
            Some("am") => (word, Some(false)),
            Some("pm") => (word, Some(true)),
            _ => (word, None),
        }
    };
    let (h, m) = match body.split_once(':') {
        Some((h, m)) => (h, m),
        None => (body, "0"),
    };
    if h.is_empty() || h.len() > 2 || m.is_empty() || m.len() > 2 {
        return None;
    }
    let mut h: u32 = h.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    if m > 59 {
        return None;
    }
    match meridiem {
        Some(pm) => {
            if !(1..=12).contains(&h) {
                return None;
            }
            h %= 12;
            if pm {
                h += 12;
            }
        }
        None if h > 23 => return None,
        None => {}
    }
    Some((h, m))
}

/// `[n] unit` or a glued `2h`: the duration and how many words it took. Without a
/// number the amount is one ("last hour").
fn duration(words: &[&str]) -> Option<(i64, usize)> {
    let first = *words.first()?;
    if let Some(unit) = unit_ms(first) {
        return Some((unit, 1));
    }
    if let Some(d) = glued(first) {
        return Some((d, 1));
    }
    let n = number(first)?;
    let unit = unit_ms(words.get(1)?)?;
    Some((n.saturating_mul(unit), 2))
}

/// `2h`, `30m`, `90min`, `1d`, `2hrs`.
fn glued(word: &str) -> Option<i64> {
    let split = word.find(|c: char| !c.is_ascii_digit())?;
    if split == 0 {
        return None;
    }
    let n: i64 = word[..split].parse().ok()?;
    Some(n.saturating_mul(unit_ms(&word[split..])?))
}

fn number(word: &str) -> Option<i64> {
    const WORDS: [&str; 13] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve",
    ];
    match word {
        "a" | "an" => Some(1),
        "few" | "couple" => None,
        _ => WORDS
            .iter()
            .position(|w| *w == word)
            .map(|i| i as i64)
            .or_else(|| word.parse::<i64>().ok().filter(|n| *n > 0)),
    }
}

fn unit_ms(word: &str) -> Option<i64> {
    Some(match word {
        "m" | "min" | "mins" | "minute" | "minutes" => MINUTE_MS,
        "h" | "hr" | "hrs" | "hour" | "hours" => HOUR_MS,
        "d" | "day" | "days" => DAY_MS,
        "w" | "wk" | "week" | "weeks" => 7 * DAY_MS,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-03-10 14:30 UTC.
    const NOW: i64 = 1_773_153_000_000;
    const TODAY: i64 = 1_773_100_800_000;

    fn words(s: &str) -> Vec<&str> {
        s.split_whitespace().collect()
    }

    #[test]
    fn civil_dates() {
        assert_eq!(utc_ms(1970, 1, 1, 0, 0), 0);
        assert_eq!(utc_ms(2026, 3, 10, 14, 30), NOW);
        assert_eq!(utc_ms(2026, 3, 10, 0, 0), TODAY);
        assert_eq!(utc_ms(2000, 2, 29, 0, 0), 951_782_400_000);
        assert_eq!(start_of_day(NOW), TODAY);
        assert_eq!(start_of_day(-1), -DAY_MS);
    }

    #[test]
    fn phrases() {
        // (words, from_ms, to_ms, words used)
        let cases: &[(&str, i64, i64, usize)] = &[
            ("last 2 hours", NOW - 2 * HOUR_MS, NOW, 3),
            ("past 30 min", NOW - 30 * MINUTE_MS, NOW, 3),
            ("last hour of cpu", NOW - HOUR_MS, NOW, 2),
            ("last day", NOW - DAY_MS, NOW, 2),
            ("past 2h", NOW - 2 * HOUR_MS, NOW, 2),
            ("last 90min", NOW - 90 * MINUTE_MS, NOW, 2),
            ("previous three days", NOW - 3 * DAY_MS, NOW, 3),
            ("last an hour", NOW - HOUR_MS, NOW, 3),
            ("last week", NOW - 7 * DAY_MS, NOW, 2),
            ("since 9:00", TODAY + 9 * HOUR_MS, NOW, 2),
            ("since 9", TODAY + 9 * HOUR_MS, NOW, 2),
            ("since 9am", TODAY + 9 * HOUR_MS, NOW, 2),
            ("since 2 pm", TODAY + 14 * HOUR_MS, NOW, 3),
            (
                "since 13:15 utc",
                TODAY + 13 * HOUR_MS + 15 * MINUTE_MS,
                NOW,
                3,
            ),
            // later than now today: yesterday's
            ("since 15:00", TODAY - 9 * HOUR_MS, NOW, 2),
            ("since 12am", TODAY, NOW, 2),
            ("since yesterday", TODAY - DAY_MS, NOW, 2),
            ("since midnight", TODAY, NOW, 2),
            ("today", TODAY, NOW, 1),
            ("yesterday", TODAY - DAY_MS, TODAY, 1),
            ("last 1000 days", NOW - MAX_RANGE_MS, NOW, 3),
        ];
        for (text, from, to, used) in cases {
            let got = range_at(&words(text), NOW);
            assert_eq!(
                got,
                Some((
                    TimeRange {
                        from_ms: *from,
                        to_ms: *to
                    },
                    *used
                )),
                "{text}"
            );
        }
    }

    #[test]
    fn not_ranges() {
        for text in [
            "",
            "last",
            "last call",
            "past few hours",
            "since",
            "since 25:00",
            "since 9:75",
            "since 13pm",
            "since then",
            "last 0 hours",
            "last -2 hours",
            "last 99999999999999999999 hours",
            "hours",
        ] {
            assert_eq!(range_at(&words(text), NOW), None, "{text}");
        }
    }

    #[test]
    fn extreme_now_does_not_overflow() {
        for now in [i64::MIN, i64::MAX, 0] {
            let _ = TimeRange::last(now, MAX_RANGE_MS);
            let _ = TimeRange::since_clock(now, 23, 59);
            let _ = TimeRange::yesterday(now);
            let _ = TimeRange::since_yesterday(now);
            let _ = TimeRange::today(now);
        }
    }
}
