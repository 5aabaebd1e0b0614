//! Parsers for the `/proc` files the collector reads. Pure functions over
//! text, so they are tested with fixtures and never touch the host.

/// Jiffies from the aggregate `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    /// Guest time is already counted in user and nice, so it is left out.
    pub fn total(&self) -> u64 {
        self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
    }
}

pub fn parse_stat_cpu(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    if v.len() < 4 {
        return None;
    }
    Some(CpuTimes {
        user: get(0),
        nice: get(1),
        system: get(2),
        idle: get(3),
        iowait: get(4),
        irq: get(5),
        softirq: get(6),
        steal: get(7),
    })
}

/// The CPUs `/proc/stat` counts time for (its `cpuN` lines); None when it lists none.
pub fn parse_cpu_count(text: &str) -> Option<usize> {
    let n = text
        .lines()
        .filter(|l| {
            l.strip_prefix("cpu")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count();
    (n > 0).then_some(n)
}

pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// Values of `/proc/meminfo` in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    pub total: u64,
    pub available: u64,
    pub cached: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

pub fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let mut m = MemInfo::default();
    let mut seen = 0;
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(key), Some(value)) = (it.next(), it.next()) else {
            continue;
        };
        let Ok(kib) = value.parse::<u64>() else {
            continue;
        };
        let bytes = kib.saturating_mul(1024);
        match key {
            "MemTotal:" => m.total = bytes,
            "MemAvailable:" => m.available = bytes,
            "Cached:" => m.cached = bytes,
            "SwapTotal:" => m.swap_total = bytes,
            "SwapFree:" => m.swap_free = bytes,
            _ => continue,
        }
        seen += 1;
    }
    (seen >= 2 && m.total > 0).then_some(m)
}

/// Cumulative counters of one block device from `/proc/diskstats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskStat {
    pub name: String,
    pub reads: u64,
    pub sectors_read: u64,
    pub writes: u64,
    pub sectors_written: u64,
    /// Milliseconds spent doing I/O.
    pub io_ms: u64,
}

/// Whole disks only: partitions, loop and ram devices are skipped by the
/// caller's `is_disk` predicate (it knows about `/sys/block`).
pub fn parse_diskstats(text: &str, is_disk: impl Fn(&str) -> bool) -> Vec<DiskStat> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 14 {
                return None;
            }
            let name = f[2];
            if name.starts_with("loop") || name.starts_with("ram") || !is_disk(name) {
                return None;
            }
            let n = |i: usize| f[i].parse::<u64>().ok();
            Some(DiskStat {
                name: name.to_string(),
                reads: n(3)?,
                sectors_read: n(5)?,
                writes: n(7)?,
                sectors_written: n(9)?,
                io_ms: n(12)?,
            })
        })
        .collect()
}

/// Cumulative counters of one interface from `/proc/net/dev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetStat {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_drops: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_drops: u64,
}

pub fn parse_net_dev(text: &str) -> Vec<NetStat> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let name = name.trim();
            if name == "lo" || name.contains('|') {
                return None;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().ok())
                .collect::<Option<_>>()?;
            if f.len() < 16 {
                return None;
            }
            Some(NetStat {
                name: name.to_string(),
                rx_bytes: f[0],
                rx_packets: f[1],
                rx_errors: f[2],
                rx_drops: f[3],
                tx_bytes: f[8],
                tx_packets: f[9],
                tx_errors: f[10],
                tx_drops: f[11],
            })
        })
        .collect()
}

/// Cumulative stall time in microseconds from one `/proc/pressure/*` file:
/// (`some total`, `full total`); `full` is absent for cpu on older kernels.
pub fn parse_pressure(text: &str) -> Option<(u64, Option<u64>)> {
    let total = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))?
            .split_whitespace()
            .find_map(|f| f.strip_prefix("total="))?
            .parse::<u64>()
            .ok()
    };
    Some((total("some ")?, total("full ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu() {
        let text = "cpu  10 2 30 400 5 6 7 8 9 10\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1\n";
        let c = parse_stat_cpu(text).expect("parses");
        assert_eq!(c.user, 10);
        assert_eq!(c.steal, 8);
        assert_eq!(c.total(), 10 + 2 + 30 + 400 + 5 + 6 + 7 + 8);
        assert_eq!(parse_stat_cpu("cpu  x y\n"), None);
        assert_eq!(parse_stat_cpu(""), None);
    }

    #[test]
    fn cpu_count() {
        let text = "cpu  10 2 30 400\ncpu0 1 2 3 4\ncpu1 1 2 3 4\ncpu12 1 2 3 4\nintr 1\nctxt 2\n";
        assert_eq!(parse_cpu_count(text), Some(3));
        assert_eq!(parse_cpu_count("cpu  10 2 30 400\nintr 1\n"), None);
        assert_eq!(parse_cpu_count(""), None);
    }

    #[test]
    fn loadavg() {
        assert_eq!(
            parse_loadavg("0.52 0.58 0.59 1/467 12345\n"),
            Some([0.52, 0.58, 0.59])
        );
        assert_eq!(parse_loadavg("0.5"), None);
    }

    #[test]
    fn meminfo() {
        let text = "MemTotal:       16000 kB\nMemFree: 1000 kB\nMemAvailable:    8000 kB\nCached: 2000 kB\nSwapTotal: 100 kB\nSwapFree: 40 kB\n";
        let m = parse_meminfo(text).expect("parses");
        assert_eq!(m.total, 16000 * 1024);
        assert_eq!(m.available, 8000 * 1024);
        assert_eq!(m.swap_total - m.swap_free, 60 * 1024);
        assert_eq!(parse_meminfo("garbage"), None);
    }

    #[test]
    fn diskstats_skips_partitions_and_loops() {
        let text = "   8       0 sda 100 0 800 0 50 0 400 0 0 30 0 0 0 0 0 0 0\n   8       1 sda1 1 0 8 0 1 0 4 0 0 3 0 0 0 0 0 0 0\n   7       0 loop0 1 0 8 0 1 0 4 0 0 3 0 0\n";
        let d = parse_diskstats(text, |n| n == "sda");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].name, "sda");
        assert_eq!(d[0].sectors_read, 800);
        assert_eq!(d[0].sectors_written, 400);
        assert_eq!(d[0].io_ms, 30);
    }

    #[test]
    fn net_dev() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo: 1 2 0 0 0 0 0 0 1 2 0 0 0 0 0 0\n  eth0: 1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0\n";
        let n = parse_net_dev(text);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].name, "eth0");
        assert_eq!((n[0].rx_bytes, n[0].tx_bytes), (1000, 2000));
        assert_eq!((n[0].rx_drops, n[0].tx_errors), (2, 3));
    }

    #[test]
    fn pressure() {
        let text = "some avg10=0.00 avg60=0.00 avg300=0.00 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=678\n";
        assert_eq!(parse_pressure(text), Some((12345, Some(678))));
        assert_eq!(
            parse_pressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n"),
            Some((5, None))
        );
        assert_eq!(parse_pressure("nonsense"), None);
    }
}
