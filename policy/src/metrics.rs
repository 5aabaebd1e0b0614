//! The metrics the agent collects, which of them the detector scores, and the checks a
//! policy's metric names and globs go through.

use crate::action::glob_match;

/// Every metric name the agent collects (the device, after `:` in a metric
/// key, is free). Policy conditions are checked against it, so a misspelt
/// metric is refused when the policy is written instead of silently never
/// firing. A test keeps it in step with README's "What the agent collects".
pub const KNOWN_METRICS: &[&str] = &[
    "cpu.total_pct",
    "cpu.user_pct",
    "cpu.system_pct",
    "cpu.iowait_pct",
    "cpu.steal_pct",
    "load.1",
    "load.5",
    "load.15",
    "mem.used_bytes",
    "mem.available_bytes",
    "mem.cached_bytes",
    "mem.used_pct",
    "swap.used_bytes",
    "swap.used_pct",
    "disk.used_bytes",
    "disk.used_pct",
    "disk.read_bytes_per_s",
    "disk.write_bytes_per_s",
    "disk.reads_per_s",
    "disk.writes_per_s",
    "disk.busy_pct",
    "net.rx_bytes_per_s",
    "net.rx_packets_per_s",
    "net.rx_errors_per_s",
    "net.rx_drops_per_s",
    "net.tx_bytes_per_s",
    "net.tx_packets_per_s",
    "net.tx_errors_per_s",
    "net.tx_drops_per_s",
    "proc.count",
    "psi.cpu.some_pct",
    "psi.cpu.full_pct",
    "psi.memory.some_pct",
    "psi.memory.full_pct",
    "psi.io.some_pct",
    "psi.io.full_pct",
];

/// Collected and kept in the context, but not scored: `(prefix, why, what to use instead)`.
/// Load averages are 1-, 5- and 15-minute moving averages of the run queue, so they move a
/// minute after the cause and keep an event open for minutes after it is gone; CPU time and
/// CPU pressure (PSI, per tick) carry the same signal without the lag. The page cache grows
/// with every file written or read and is given back on demand: its growth is the kernel
/// doing its job, not a memory problem; `mem.used_*` (total minus available) is.
pub const NOT_SCORED: [(&str, &str, &str); 2] = [
    (
        "load.",
        "minute-long averages that lag their cause",
        "use cpu.* or psi.cpu.*, or a state condition such as \"load.1 > 8\"",
    ),
    (
        "mem.cached_bytes",
        "the page cache grows and shrinks with ordinary file I/O",
        "use mem.used_* or psi.memory.*",
    ),
];

/// Whether the detector scores metric key `key` (`name` or `name:device`).
pub fn is_scored(key: &str) -> bool {
    !NOT_SCORED.iter().any(|(p, _, _)| key.starts_with(p))
}

pub(crate) fn check_metric(metric: &str) -> Result<(), String> {
    if metric.len() > 256 || metric.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "metric {metric:?} is longer than 256 bytes or has spaces or control characters"
        ));
    }
    Ok(())
}

/// The metric name of a key: `disk.used_pct:/var` names `disk.used_pct`.
pub fn metric_name(key: &str) -> &str {
    key.split_once(':').map_or(key, |(name, _)| name)
}

/// Checks that a metric key (`name` or `name:device`) names a collected
/// metric; the device is not checked (mounts and interfaces vary by host).
pub(crate) fn check_known_metric(key: &str) -> Result<(), String> {
    let name = metric_name(key);
    if KNOWN_METRICS.contains(&name) {
        return Ok(());
    }
    Err(format!(
        "unknown metric {name:?}, the agent never collects it; {}",
        suggestion(name)
    ))
}

/// Checks that a metric glob (`cpu.*`, `disk.busy_pct:sd*`) matches at
/// least one collected metric.
pub fn check_known_glob(glob: &str) -> Result<(), String> {
    let name = metric_name(glob);
    if KNOWN_METRICS.iter().any(|m| glob_match(name, m)) {
        return Ok(());
    }
    Err(format!(
        "{glob:?} matches no metric the agent collects; {}",
        suggestion(name)
    ))
}

/// "did you mean ...?" when a known name is close enough to be the intended
/// one, else the families of known names.
fn suggestion(name: &str) -> String {
    // Close: at most a third of the longer name differs (at least 2
    // characters), which catches typos and a dropped suffix (`cpu.total`)
    // without suggesting an unrelated metric.
    let close = KNOWN_METRICS
        .iter()
        .map(|m| (edit_distance(name, m), *m))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, m)| *d <= (name.chars().count().max(m.len()) / 3).max(2));
    if let Some((_, m)) = close {
        return format!("did you mean {m}?");
    }
    let mut families: Vec<&str> = Vec::new();
    for m in KNOWN_METRICS {
        let family = m.split('.').next().unwrap_or(m);
        if !families.contains(&family) {
            families.push(family);
        }
    }
    format!(
        "known metrics are {} (see \"What the agent collects\" in the README)",
        families
            .iter()
            .map(|f| format!("{f}.*"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Levenshtein distance over characters.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
