//! How serious an anomaly event is: the detector rates it, policies filter on it.

use serde::{Deserialize, Serialize};

use crate::contributor::Contributor;
use crate::metrics::metric_name;

/// How serious an event is ([`Severity::of_event`]): the larger of how unusual it is (how far over
/// its threshold its peak went, at most `high`) and how much of a resource it takes (its
/// percentage contributors above their expected range; only a resource running out, memory, swap
/// or a filesystem at 95 % or more, is `critical`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Low 0 .. critical 3: stored beside the name so queries can filter by order.
    pub fn rank(self) -> i64 {
        self as i64
    }

    /// An event's severity from its peak ratio (`r_eff` = score / threshold) and its contributors
    /// at that peak: `max(min(from_ratio(r), high), from_impact(contributors))`. How unusual a move
    /// is says little about its cost (a disk 1 % busy reading twice its usual handful of blocks
    /// is far over its threshold), so that alone never says `critical`; a whole core taken on a
    /// host that idles, or a filesystem filling up, says `high` or `critical` however ordinary
    /// its score.
    pub fn of_event(r: f64, contributors: &[Contributor]) -> Self {
        Self::from_ratio(r)
            .min(Severity::High)
            .max(Self::from_impact(contributors))
    }

    /// How much of a resource the event takes, from its contributors that are a share of a
    /// resource in use (a metric named `*_pct`, 0..100) and above their expected range:
    /// `critical` when memory, swap or a filesystem (`mem.used_pct`, `swap.used_pct`,
    /// `disk.used_pct`) is at 95 % or more; `high` at 85 % or more of anything, or 30 points
    /// over the expected range; `medium` 10 points over it; else `low`. Time shares (CPU,
    /// busy time, pressure) stop at `high`: a saturated CPU or disk slows work, a full disk
    /// or memory fails it.
    pub fn from_impact(contributors: &[Contributor]) -> Self {
        contributors
            .iter()
            .filter(|c| metric_name(&c.metric).ends_with("_pct") && c.value > c.expected_high)
            .map(|c| {
                let exhaustible = matches!(
                    metric_name(&c.metric),
                    "mem.used_pct" | "swap.used_pct" | "disk.used_pct"
                );
                let over = c.value - c.expected_high;
                if exhaustible && c.value >= 95.0 {
                    Severity::Critical
                } else if c.value >= 85.0 || over >= 30.0 {
                    Severity::High
                } else if over >= 10.0 {
                    Severity::Medium
                } else {
                    Severity::Low
                }
            })
            .max()
            .unwrap_or(Severity::Low)
    }

    /// Severity for a score ratio `r_eff` (1.0 = at threshold): low < 1.5, medium < 3,
    /// high < 6, critical >= 6.
    pub fn from_ratio(r: f64) -> Self {
        if r >= 6.0 {
            Severity::Critical
        } else if r >= 3.0 {
            Severity::High
        } else if r >= 1.5 {
            Severity::Medium
        } else {
            Severity::Low
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_order() {
        for (i, s) in Severity::ALL.into_iter().enumerate() {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
            assert_eq!(s.rank(), i as i64);
            assert_eq!(
                serde_json::to_string(&s).expect("json"),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(Severity::parse("Critical"), None);
        assert!(Severity::Low < Severity::Critical);
    }

    fn c(metric: &str, value: f64, expected_high: f64) -> Contributor {
        Contributor {
            metric: metric.to_string(),
            value,
            expected_low: 0.0,
            expected_high,
            contribution: 0.5,
        }
    }

    #[test]
    fn a_whole_core_on_an_idle_host_is_high_however_ordinary_its_score() {
        // one of two cores pegged on a host that idles around 4 %: 55 %, 40 points over the range
        let cpu = [c("cpu.total_pct", 55.0, 15.0), c("load.1", 1.2, 0.5)];
        assert_eq!(Severity::of_event(1.2, &cpu), Severity::High);
        // the same core on a 64-core host: 1.6 points of the host, the score decides
        let big = [c("cpu.total_pct", 6.0, 5.0)];
        assert_eq!(Severity::of_event(1.2, &big), Severity::Low);
        assert_eq!(Severity::of_event(2.0, &big), Severity::Medium);
    }

    #[test]
    fn only_a_resource_running_out_is_critical() {
        // far over its threshold, on metrics that are not a share of anything: at most high
        let burst = [
            c("disk.reads_per_s:vda", 400.0, 30.0),
            c("disk.busy_pct:vda", 1.0, 3.0),
        ];
        assert_eq!(Severity::of_event(40.0, &burst), Severity::High);
        // a filesystem at 97 % (device suffix and all), or memory at 96 %: critical at any score
        let full = [c("disk.used_pct:/var", 97.0, 80.0)];
        assert_eq!(Severity::of_event(1.1, &full), Severity::Critical);
        assert_eq!(
            Severity::of_event(1.1, &[c("mem.used_pct", 96.0, 90.0)]),
            Severity::Critical
        );
        // a disk 100 % busy or a CPU 99 % used slows work: high, not critical
        let busy = [
            c("disk.busy_pct:vda", 100.0, 20.0),
            c("cpu.total_pct", 99.0, 40.0),
        ];
        assert_eq!(Severity::of_event(8.0, &busy), Severity::High);
        // a percentage within its range, however high, adds nothing (a host that is always busy)
        let usual = [c("cpu.total_pct", 96.0, 100.0)];
        assert_eq!(Severity::of_event(1.2, &usual), Severity::Low);
        // 12 points over the range: medium
        assert_eq!(
            Severity::of_event(1.0, &[c("psi.cpu.some_pct", 20.0, 8.0)]),
            Severity::Medium
        );
    }
}
