//! How the detector treats each metric beyond its family ([`Family`], shared with policies
//! through `sco-policy`): which way a metric's move is a symptom, which are bounded, which
//! levels are saturation, and which CPU metrics an I/O saturation moves by itself.

pub use sco_policy::Family;

/// Which way a metric's move is a symptom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Either way.
    Both,
    /// Only a rise. Waiting (I/O wait, steal, pressure) and errors or drops: a CPU runaway
    /// lowers I/O wait (busy CPUs are not idle-waiting), which is no I/O problem. Memory, swap
    /// and disk space in use, and the page cache: less in use is never the fault; after a
    /// memory hog exits, used memory stays under its normal and the cache it evicted takes
    /// minutes to refill, which would keep the hog's event open long after it is gone.
    Rise,
    /// Only a fall: available memory.
    Fall,
}

/// Which way a move of `metric` is a symptom; the other way it is never scored.
pub fn direction(metric: &str) -> Direction {
    let base = metric.split(':').next().unwrap_or(metric);
    if matches!(base, "cpu.iowait_pct" | "cpu.steal_pct")
        || base.starts_with("psi.")
        || (base.starts_with("net.") && (base.contains("errors") || base.contains("drops")))
        || matches!(
            base,
            "mem.used_bytes"
                | "mem.used_pct"
                | "mem.cached_bytes"
                | "swap.used_bytes"
                | "swap.used_pct"
                | "disk.used_bytes"
                | "disk.used_pct"
        )
    {
        Direction::Rise
    } else if base == "mem.available_bytes" {
        Direction::Fall
    } else {
        Direction::Both
    }
}

/// Only a rise of this metric is a symptom (see [`Direction::Rise`]).
pub fn upper_only(metric: &str) -> bool {
    direction(metric) == Direction::Rise
}

/// CPU metrics an I/O saturation moves by itself: the writer's kernel time (system, and so
/// total), the CPU pressure that kernel time puts on everything else that runs (on a small VM
/// a direct-I/O writer takes a good part of a core), and tasks in uninterruptible I/O sleep,
/// which the load average counts. While the host's disk I/O is anomalous they are the I/O's
/// symptoms, not a CPU fault: a `cpu` event then needs user time, so a runaway during the I/O
/// opens its own event instead of joining one the writer opened.
pub fn io_driven_cpu(metric: &str) -> bool {
    let base = metric.split(':').next().unwrap_or(metric);
    matches!(base, "cpu.system_pct" | "cpu.total_pct")
        || base.starts_with("load.")
        || base.starts_with("psi.cpu.")
}

/// A disk's throughput: its read and write rates, in bytes or I/Os per second. On a disk that
/// is otherwise idle, a few megabytes read are many of its deviations and no disk problem, so
/// they are disk I/O evidence only while [`disk_load`] says that disk is loaded: its own busy
/// time, or the host's I/O pressure or I/O wait, up too.
pub fn disk_rate(metric: &str) -> bool {
    let base = metric.split(':').next().unwrap_or(metric);
    base.starts_with("disk.") && base.ends_with("_per_s")
}

/// What says a disk is loaded: its busy time; for every disk, the host's I/O pressure and I/O
/// wait.
pub fn disk_load(metric: &str) -> bool {
    let base = metric.split(':').next().unwrap_or(metric);
    base == "disk.busy_pct" || base == "cpu.iowait_pct" || base.starts_with("psi.io.")
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
        assert_eq!(direction("mem.used_pct"), Direction::Rise);
        assert_eq!(direction("disk.used_bytes:/var"), Direction::Rise);
        assert_eq!(direction("mem.available_bytes"), Direction::Fall);
        assert_eq!(direction("net.rx_bytes_per_s:eth0"), Direction::Both);
        assert!(io_driven_cpu("cpu.system_pct") && io_driven_cpu("load.1"));
        assert!(io_driven_cpu("psi.cpu.some_pct") && !io_driven_cpu("cpu.user_pct"));
        assert!(disk_rate("disk.reads_per_s:vda") && disk_rate("disk.write_bytes_per_s:sda"));
        assert!(!disk_rate("disk.busy_pct:sda") && !disk_rate("net.rx_bytes_per_s:eth0"));
        assert!(disk_load("disk.busy_pct:sda") && disk_load("psi.io.full_pct"));
        assert!(disk_load("cpu.iowait_pct") && !disk_load("disk.reads_per_s:vda"));
    }
}
