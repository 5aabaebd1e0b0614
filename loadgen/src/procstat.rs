//! CPU time and resident memory of a process, from `/proc/<pid>/stat` and
//! `/proc/<pid>/status`: the control plane's cost while it serves the load,
//! and the load generator's own.

use std::time::Instant;

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on
/// every Linux architecture in use).
const USER_HZ: f64 = 100.0;

#[derive(Debug, Clone, Copy)]
pub struct Sample {
    at: Instant,
    cpu_secs: f64,
    pub rss_bytes: u64,
}

/// The process named by `pid` ("self" for this one), or None when it is gone.
pub fn sample(pid: &str) -> Option<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(Sample {
        at: Instant::now(),
        cpu_secs: (utime + stime) / USER_HZ,
        rss_bytes: rss_kib * 1024,
    })
}

/// CPU used between two samples, in percent of one core.
pub fn cpu_pct(earlier: &Sample, later: &Sample) -> f64 {
    let wall = later.at.duration_since(earlier.at).as_secs_f64();
    if wall <= 0.0 {
        return 0.0;
    }
    ((later.cpu_secs - earlier.cpu_secs) / wall * 100.0).max(0.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let s = super::sample("self").expect("own /proc entry");
        assert!(s.rss_bytes > 0);
        assert!(super::sample("0").is_none());
    }
}
