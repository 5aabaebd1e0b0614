//! Durations on the command line (`90`, `90s`, `5m`, `1h30m`, `7d`) and in output
//! (ages such as `12s ago`, UTC timestamps).

/// Seconds in `s`: whole numbers each followed by `s`, `m`, `h` or `d`; a bare number is
/// seconds.
pub fn parse_secs(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a duration such as 90s, 5m, 1h30m or 7d");
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

/// Now, Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `12s ago`, `3m ago`, `in 5m` for a Unix-ms time relative to `now_ms`; `-` for 0.
pub fn age(ms: i64, now_ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    let diff = (now_ms - ms) / 1000;
    let span = |s: i64| match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    };
    if diff >= 0 {
        format!("{} ago", span(diff))
    } else {
        format!("in {}", span(-diff))
    }
}

/// `2026-12-02 11:38:05 UTC` for a Unix-ms time; `-` for 0.
pub fn utc(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    sco_policy::utc(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (text, secs) in [
            ("90", Some(90)),
            ("90s", Some(90)),
            ("5m", Some(300)),
            ("1h30m", Some(5400)),
            ("7d", Some(604_800)),
            ("", None),
            ("h", None),
            ("5x", None),
            ("5m3", None),
            ("-5", None),
            ("99999999999999999999d", None),
        ] {
            assert_eq!(parse_secs(text).ok(), secs, "{text:?}");
        }
    }

    #[test]
    fn ages_and_timestamps() {
        let now = 1_000_000_000_000;
        assert_eq!(age(0, now), "-");
        assert_eq!(age(now - 12_000, now), "12s ago");
        assert_eq!(age(now - 180_000, now), "3m ago");
        assert_eq!(age(now + 300_000, now), "in 5m");
        assert_eq!(age(now - 2 * 86_400_000, now), "2d ago");
        assert_eq!(utc(0), "-");
        assert_eq!(utc(1), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_827_696_000), "2000-02-29 12:34:56 UTC");
        assert_eq!(utc(1_796_212_800_000), "2026-12-02 12:00:00 UTC");
    }
}
