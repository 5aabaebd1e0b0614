//! How the detector treats each metric beyond its family ([`Family`], shared with policies
//! through `sco-policy`): which metrics only count when they rise, which are bounded, and
//! which levels are saturation.

pub use sco_policy::Family;

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
