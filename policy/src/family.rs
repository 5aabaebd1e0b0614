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
        // runaway only lowers it (the detector scores only its rise)
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
}
