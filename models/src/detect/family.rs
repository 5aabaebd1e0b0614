//! Metric families: what an event is about. Each family has its own event lifecycle, so a
//! CPU runaway during unrelated I/O pressure is its own event (and the rule that names CPU
//! matches it), and an event closes when *its* metrics are back, whatever else is going on.
//!
//! Pressure (PSI) belongs to the resource it measures: `psi.cpu.*` is CPU, `psi.memory.*`
//! memory, `psi.io.*` disk I/O. One cause (a runaway) raises both its resource's time and its
//! pressure; as separate families it would be two events for one cause.

use serde::{Deserialize, Serialize};

/// What an anomaly event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Cpu,
    Memory,
    DiskSpace,
    DiskIo,
    Network,
    Processes,
    /// Metrics of no known family (the columns of the labelled datasets), and the one
    /// whole-host event of a detector without per-family events.
    Host,
}

impl Family {
    pub const ALL: [Family; 7] = [
        Family::Cpu,
        Family::Memory,
        Family::DiskSpace,
        Family::DiskIo,
        Family::Network,
        Family::Processes,
        Family::Host,
    ];

    /// The family of a metric key (`name` or `name:device`).
    pub fn of(metric: &str) -> Family {
        let base = metric.split(':').next().unwrap_or(metric);
        let starts = |p: &str| base.starts_with(p);
        // time spent waiting for I/O is an I/O symptom: a disk saturation raises it, and a CPU
        // runaway only lowers it (see `upper_only`)
        if base == "cpu.iowait_pct" {
            Family::DiskIo
        } else if base == "cpu.steal_pct" {
            // time the hypervisor gave to other guests: no process of this host causes it, and
            // as a cpu event it would absorb a real runaway that starts meanwhile
            Family::Host
        } else if starts("cpu.") || starts("psi.cpu.") || starts("load.") {
            Family::Cpu
        } else if starts("mem.") || starts("swap.") || starts("psi.memory.") {
            Family::Memory
        } else if starts("disk.used_") {
            Family::DiskSpace
        } else if starts("disk.") || starts("psi.io.") {
            Family::DiskIo
        } else if starts("net.") {
            Family::Network
        } else if starts("proc.") {
            Family::Processes
        } else {
            Family::Host
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Cpu => "cpu",
            Family::Memory => "memory",
            Family::DiskSpace => "disk_space",
            Family::DiskIo => "disk_io",
            Family::Network => "network",
            Family::Processes => "processes",
            Family::Host => "host",
        }
    }

    pub fn parse(s: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// Position in [`Family::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Only a rise of this metric is a symptom: waiting (I/O wait, steal, pressure) and errors or
/// drops. Below its normal it is never scored: a CPU runaway lowers I/O wait (busy CPUs are not
/// idle-waiting), which is no I/O problem.
pub fn upper_only(metric: &str) -> bool {
    let base = metric.split(':').next().unwrap_or(metric);
    matches!(base, "cpu.iowait_pct" | "cpu.steal_pct")
        || base.starts_with("psi.")
        || (base.starts_with("net.") && (base.contains("errors") || base.contains("drops")))
}

/// A percentage: its expected range is clamped to [0, 100], whatever its baseline says.
pub fn is_bounded(metric: &str) -> bool {
    metric.split(':').next().unwrap_or(metric).ends_with("_pct")
}

/// The level at which a bounded resource is saturated: anomalous by definition once the
/// detector is warm, whatever the host's baseline has seen (a host always at 100 % CPU is
/// reported, not learnt). Only whole resources: a disk 100 % busy for a few seconds or a
/// single core are normal on busy hosts, so `disk.busy_pct` and pressure have no level.
pub fn saturation_level(metric: &str) -> Option<f64> {
    match metric.split(':').next().unwrap_or(metric) {
        "cpu.total_pct" => Some(97.0),
        "mem.used_pct" => Some(95.0),
        "swap.used_pct" => Some(90.0),
        "disk.used_pct" => Some(95.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_map_to_their_resource() {
        let cases = [
            ("cpu.total_pct", Family::Cpu),
            ("psi.cpu.some_pct", Family::Cpu),
            ("cpu.iowait_pct", Family::DiskIo),
            ("cpu.steal_pct", Family::Host),
            ("load.1", Family::Cpu),
            ("mem.used_bytes", Family::Memory),
            ("swap.used_pct", Family::Memory),
            ("psi.memory.full_pct", Family::Memory),
            ("disk.used_pct:/var", Family::DiskSpace),
            ("disk.used_bytes:/", Family::DiskSpace),
            ("disk.busy_pct:sda", Family::DiskIo),
            ("disk.write_bytes_per_s:nvme0n1", Family::DiskIo),
            ("psi.io.some_pct", Family::DiskIo),
            ("net.rx_bytes_per_s:eth0", Family::Network),
            ("proc.count", Family::Processes),
            ("col_17", Family::Host),
            ("value", Family::Host),
        ];
        for (metric, family) in cases {
            assert_eq!(Family::of(metric), family, "{metric}");
        }
    }

    #[test]
    fn names_round_trip() {
        for f in Family::ALL {
            assert_eq!(Family::parse(f.as_str()), Some(f));
            assert_eq!(Family::ALL[f.index()], f);
        }
        assert_eq!(Family::parse("gpu"), None);
    }

    #[test]
    fn only_whole_resources_saturate() {
        assert_eq!(saturation_level("cpu.total_pct"), Some(97.0));
        assert_eq!(saturation_level("disk.used_pct:/data"), Some(95.0));
        assert_eq!(saturation_level("disk.busy_pct:sda"), None);
        assert_eq!(saturation_level("cpu.user_pct"), None);
        assert!(is_bounded("disk.busy_pct:sda"));
        assert!(upper_only("cpu.iowait_pct") && upper_only("psi.io.full_pct"));
        assert!(upper_only("net.rx_drops_per_s:eth0") && !upper_only("net.rx_bytes_per_s:eth0"));
        assert!(!upper_only("cpu.total_pct"));
        assert!(!is_bounded("mem.used_bytes"));
    }
}
