//! Host metric collection: one [`Collector::sample`] per tick.
//!
//! Everything comes from the procfs at [`HostPaths::proc`] (cheap, exact
//! counters) except whole-disk detection (`<sys>/block`) and per-mount usage
//! ([`mounts`]: a mount table and `statvfs` under [`HostPaths::root`]);
//! [`processes`] reads the process table.
//! Rates are computed from counters; a counter that goes backwards (reset,
//! wrap, device re-created) produces no rate for that tick instead of a
//! negative or absurd one, and the new value becomes the baseline.

pub mod mounts;
pub mod processes;
pub mod procfs;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use procfs::{CpuTimes, DiskStat, NetStat};

/// Where the host's procfs, sysfs and root file system are seen, like node_exporter's
/// `--path.procfs`, `--path.sysfs` and `--path.rootfs` (`agent.proc_root`, `sys_root`,
/// `root_fs`). The defaults are the agent's own: `/proc`, `/sys`, `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub root: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        Self {
            proc: PathBuf::from("/proc"),
            sys: PathBuf::from("/sys"),
            root: PathBuf::from("/"),
        }
    }
}

/// One measured value. `device` names the disk, mount or interface, empty for
/// host-wide metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub device: String,
    pub value: f64,
}

/// One process over a sampled interval (see [`processes::usage`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessInfo {
    pub pid: u32,
    /// Full executable name, not cut at the kernel's 15 bytes.
    pub name: String,
    /// Percent of one core; above 100 for several busy threads.
    pub cpu_pct: f64,
    pub rss_bytes: u64,
    /// Arguments joined by spaces, capped at 512 bytes; empty for zombies.
    pub cmdline: String,
    /// systemd unit (`nginx.service`), else the cgroup path, else empty.
    pub unit: String,
    /// Storage I/O; 0 when the kernel does not tell us (not our process).
    pub read_bytes_per_s: f64,
    pub write_bytes_per_s: f64,
    /// Resident memory gained over the interval (all of it for a process started in it).
    pub rss_growth_bytes: i64,
}

/// Everything measured at one tick.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub ts_ms: i64,
    pub metrics: Vec<Metric>,
    /// Present only on ticks where processes were sampled, after the first.
    pub top_processes: Option<Vec<ProcessInfo>>,
    /// The process table read on this tick, on every tick where processes
    /// were sampled (the first one too): a later snapshot, say at an anomaly
    /// onset, diffs against it with [`processes::usage`]. Shared, because
    /// samples are cloned and a table holds hundreds of processes.
    pub process_snapshot: Option<Arc<processes::ProcSnapshot>>,
}

/// Rate of a monotonic counter; `None` on reset, wrap or a zero interval.
pub fn counter_rate(prev: u64, cur: u64, dt_secs: f64) -> Option<f64> {
    if cur < prev || dt_secs <= 0.0 || !dt_secs.is_finite() {
        return None;
    }
    Some((cur - prev) as f64 / dt_secs)
}

/// CPU percentages between two readings; `None` if any counter went back.
pub fn cpu_pcts(prev: &CpuTimes, cur: &CpuTimes) -> Option<[f64; 5]> {
    let d = |a: u64, b: u64| b.checked_sub(a);
    let total = d(prev.total(), cur.total())?;
    if total == 0 {
        return None;
    }
    let user = d(prev.user, cur.user)? + d(prev.nice, cur.nice)?;
    let system =
        d(prev.system, cur.system)? + d(prev.irq, cur.irq)? + d(prev.softirq, cur.softirq)?;
    let idle = d(prev.idle, cur.idle)?;
    let iowait = d(prev.iowait, cur.iowait)?;
    let steal = d(prev.steal, cur.steal)?;
    let pct = |v: u64| (v as f64 * 100.0 / total as f64).clamp(0.0, 100.0);
    let busy = total.saturating_sub(idle + iowait);
    Some([pct(busy), pct(user), pct(system), pct(iowait), pct(steal)])
}

const PSI_RESOURCES: [&str; 3] = ["cpu", "memory", "io"];

struct Previous {
    at: Instant,
    cpu: Option<CpuTimes>,
    disks: HashMap<String, DiskStat>,
    nets: HashMap<String, NetStat>,
    psi: HashMap<&'static str, (u64, Option<u64>)>,
}

pub struct Collector {
    host: HostPaths,
    top_n: usize,
    process_every: Duration,
    last_processes: Option<Instant>,
    /// The process table of the last sampled tick, the base for the next.
    last_snapshot: Option<Arc<processes::ProcSnapshot>>,
    prev: Option<Previous>,
}

impl Collector {
    pub fn new(host: &HostPaths, top_n: usize, process_every: Duration) -> Self {
        Self {
            host: host.clone(),
            top_n,
            process_every,
            last_processes: None,
            last_snapshot: None,
            prev: None,
        }
    }

    fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.host.proc.join(rel)).ok()
    }

    /// Takes one sample. Missing files (old kernels, containers) only remove
    /// the metrics they carry.
    pub fn sample(&mut self, ts_ms: i64) -> Sample {
        let now = Instant::now();
        let mut out = Vec::with_capacity(64);
        let mut push = |name: &'static str, device: &str, value: f64| {
            if value.is_finite() {
                out.push(Metric {
                    name,
                    device: device.to_string(),
                    value,
                });
            }
        };

        let cpu = self.read("stat").and_then(|t| procfs::parse_stat_cpu(&t));
        if let Some(load) = self.read("loadavg").and_then(|t| procfs::parse_loadavg(&t)) {
            push("load.1", "", load[0]);
            push("load.5", "", load[1]);
            push("load.15", "", load[2]);
        }
        if let Some(m) = self.read("meminfo").and_then(|t| procfs::parse_meminfo(&t)) {
            let used = m.total.saturating_sub(m.available);
            push("mem.used_bytes", "", used as f64);
            push("mem.available_bytes", "", m.available as f64);
            push("mem.cached_bytes", "", m.cached as f64);
            push("mem.used_pct", "", used as f64 * 100.0 / m.total as f64);
            let swap_used = m.swap_total.saturating_sub(m.swap_free);
            push("swap.used_bytes", "", swap_used as f64);
            if m.swap_total > 0 {
                push(
                    "swap.used_pct",
                    "",
                    swap_used as f64 * 100.0 / m.swap_total as f64,
                );
            }
        }
        push("proc.count", "", self.process_count() as f64);

        let sys_block = self.host.sys.join("block");
        let disks: HashMap<String, DiskStat> = self
            .read("diskstats")
            .map(|t| procfs::parse_diskstats(&t, |n| sys_block.join(n).exists()))
            .unwrap_or_default()
            .into_iter()
            .map(|d| (d.name.clone(), d))
            .collect();
        let nets: HashMap<String, NetStat> = self
            .read("net/dev")
            .map(|t| procfs::parse_net_dev(&t))
            .unwrap_or_default()
            .into_iter()
            .map(|n| (n.name.clone(), n))
            .collect();
        let mut psi = HashMap::new();
        for r in PSI_RESOURCES {
            if let Some(p) = self
                .read(&format!("pressure/{r}"))
                .and_then(|t| procfs::parse_pressure(&t))
            {
                psi.insert(r, p);
            }
        }

        if let Some(prev) = &self.prev {
            let dt = now.duration_since(prev.at).as_secs_f64();
            if let (Some(p), Some(c)) = (&prev.cpu, &cpu) {
                if let Some([total, user, system, iowait, steal]) = cpu_pcts(p, c) {
                    push("cpu.total_pct", "", total);
                    push("cpu.user_pct", "", user);
                    push("cpu.system_pct", "", system);
                    push("cpu.iowait_pct", "", iowait);
                    push("cpu.steal_pct", "", steal);
                }
            }
            for (name, cur) in &disks {
                let Some(p) = prev.disks.get(name) else {
                    continue;
                };
                let pairs = [
                    (
                        "disk.read_bytes_per_s",
                        p.sectors_read * 512,
                        cur.sectors_read * 512,
                    ),
                    (
                        "disk.write_bytes_per_s",
                        p.sectors_written * 512,
                        cur.sectors_written * 512,
                    ),
                    ("disk.reads_per_s", p.reads, cur.reads),
                    ("disk.writes_per_s", p.writes, cur.writes),
                ];
                for (metric, a, b) in pairs {
                    if let Some(r) = counter_rate(a, b, dt) {
                        push(metric, name, r);
                    }
                }
                if let Some(ms) = counter_rate(p.io_ms, cur.io_ms, dt) {
                    push("disk.busy_pct", name, (ms / 10.0).clamp(0.0, 100.0));
                }
            }
            for (name, cur) in &nets {
                let Some(p) = prev.nets.get(name) else {
                    continue;
                };
                let pairs = [
                    ("net.rx_bytes_per_s", p.rx_bytes, cur.rx_bytes),
                    ("net.tx_bytes_per_s", p.tx_bytes, cur.tx_bytes),
                    ("net.rx_packets_per_s", p.rx_packets, cur.rx_packets),
                    ("net.tx_packets_per_s", p.tx_packets, cur.tx_packets),
                    ("net.rx_errors_per_s", p.rx_errors, cur.rx_errors),
                    ("net.tx_errors_per_s", p.tx_errors, cur.tx_errors),
                    ("net.rx_drops_per_s", p.rx_drops, cur.rx_drops),
                    ("net.tx_drops_per_s", p.tx_drops, cur.tx_drops),
                ];
                for (metric, a, b) in pairs {
                    if let Some(r) = counter_rate(a, b, dt) {
                        push(metric, name, r);
                    }
                }
            }
            for (r, (some, full)) in &psi {
                let Some((psome, pfull)) = prev.psi.get(r) else {
                    continue;
                };
                // Stall totals are microseconds; per second of wall time that
                // is the share of time stalled.
                let pct = |a: u64, b: u64| {
                    counter_rate(a, b, dt).map(|us| (us / 10_000.0).clamp(0.0, 100.0))
                };
                let (some_name, full_name) = match *r {
                    "cpu" => ("psi.cpu.some_pct", "psi.cpu.full_pct"),
                    "memory" => ("psi.memory.some_pct", "psi.memory.full_pct"),
                    _ => ("psi.io.some_pct", "psi.io.full_pct"),
                };
                if let Some(v) = pct(*psome, *some) {
                    push(some_name, "", v);
                }
                if let (Some(a), Some(b)) = (pfull, full) {
                    if let Some(v) = pct(*a, *b) {
                        push(full_name, "", v);
                    }
                }
            }
        }

        self.disk_usage(&mut push);

        self.prev = Some(Previous {
            at: now,
            cpu,
            disks,
            nets,
            psi,
        });

        let (top_processes, process_snapshot) = self.maybe_top_processes(now);
        Sample {
            ts_ms,
            metrics: out,
            top_processes,
            process_snapshot,
        }
    }

    fn process_count(&self) -> usize {
        std::fs::read_dir(&self.host.proc)
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .filter(|e| {
                        e.file_name()
                            .to_str()
                            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    /// Space of every counted mount. The mount table is read on every tick
    /// (a few kilobytes, as `sysinfo` did before), so a mount that went away is
    /// never reported with stale figures.
    fn disk_usage(&self, push: &mut impl FnMut(&'static str, &str, f64)) {
        for m in mounts::mounts(&self.host) {
            let Some((total, available)) = mounts::space(&m.path) else {
                continue;
            };
            let used = total.saturating_sub(available);
            push("disk.used_bytes", &m.point, used as f64);
            push(
                "disk.used_pct",
                &m.point,
                used as f64 * 100.0 / total as f64,
            );
        }
    }

    /// Reads the process table every `process_every`; the top list is the
    /// usage since the previous reading, so the first reading only sets the
    /// base.
    fn maybe_top_processes(
        &mut self,
        now: Instant,
    ) -> (
        Option<Vec<ProcessInfo>>,
        Option<Arc<processes::ProcSnapshot>>,
    ) {
        if self.top_n == 0
            || self
                .last_processes
                .is_some_and(|t| now.duration_since(t) < self.process_every)
        {
            return (None, None);
        }
        self.last_processes = Some(now);
        let snapshot = Arc::new(processes::snapshot(&self.host.proc));
        let top = self
            .last_snapshot
            .replace(Arc::clone(&snapshot))
            .map(|prev| top_processes(processes::usage(&prev, &snapshot), self.top_n));
        (top, Some(snapshot))
    }
}

/// The union of the `n` heaviest processes by CPU and by resident memory.
/// CPU heaviest first, then the memory heavy ones not already listed.
pub fn top_processes(all: Vec<ProcessInfo>, n: usize) -> Vec<ProcessInfo> {
    let mut top = processes::top_by(&all, processes::Resource::Cpu, n);
    for p in processes::top_by(&all, processes::Resource::Memory, n) {
        if !top.iter().any(|t| t.pid == p.pid) {
            top.push(p);
        }
    }
    top
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_rates_never_go_negative() {
        let cases = [
            (100, 300, 2.0, Some(100.0)),
            (300, 100, 1.0, None),         // reset
            (u64::MAX - 5, 10, 1.0, None), // wrap
            (5, 5, 1.0, Some(0.0)),
            (5, 10, 0.0, None),
        ];
        for (prev, cur, dt, want) in cases {
            assert_eq!(counter_rate(prev, cur, dt), want, "{prev}->{cur} over {dt}");
        }
    }

    #[test]
    fn cpu_percentages() {
        let a = CpuTimes {
            user: 100,
            idle: 100,
            ..Default::default()
        };
        let b = CpuTimes {
            user: 150,
            system: 10,
            idle: 130,
            iowait: 5,
            steal: 5,
            ..Default::default()
        };
        let [total, user, system, iowait, steal] = cpu_pcts(&a, &b).expect("valid");
        assert!((user - 50.0).abs() < 1e-9);
        assert!((system - 10.0).abs() < 1e-9);
        assert!((iowait - 5.0).abs() < 1e-9);
        assert!((steal - 5.0).abs() < 1e-9);
        assert!((total - 65.0).abs() < 1e-9);
        assert_eq!(cpu_pcts(&b, &a), None, "a counter going back is no rate");
        assert_eq!(cpu_pcts(&a, &a), None, "no time passed");
    }

    #[test]
    fn top_processes_union() {
        let p = |pid, cpu, rss| ProcessInfo {
            pid,
            name: format!("p{pid}"),
            cpu_pct: cpu,
            rss_bytes: rss,
            ..Default::default()
        };
        let top = top_processes(vec![p(1, 90.0, 1), p(2, 1.0, 900), p(3, 5.0, 5)], 1);
        let pids: Vec<u32> = top.iter().map(|p| p.pid).collect();
        assert_eq!(pids, vec![1, 2]);
    }

    fn write(root: &std::path::Path, rel: &str, content: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(path, content).expect("write fixture");
    }

    /// A fake host: procfs, sysfs and root file system in a temp directory, as a pod sees
    /// them under /host. Every reader goes through the configured paths.
    #[test]
    fn samples_a_host_seen_through_configured_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let host = HostPaths {
            proc: dir.path().join("proc"),
            sys: dir.path().join("sys"),
            root: dir.path().join("root"),
        };
        let p = &host.proc;
        write(p, "loadavg", "0.52 0.58 0.59 1/467 12345\n");
        write(
            p,
            "meminfo",
            "MemTotal: 16000 kB\nMemAvailable: 8000 kB\nCached: 2000 kB\n",
        );
        write(p, "diskstats", "   8       0 sda 100 0 800 0 50 0 400 0 0 30 0 0 0 0 0 0 0\n   8       1 sda1 1 0 8 0 1 0 4 0 0 3 0 0 0 0 0 0 0\n");
        write(
            p,
            "net/dev",
            "h1\nh2\n  eth0: 1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0\n",
        );
        write(
            p,
            "pressure/cpu",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=100\n",
        );
        write(p, "uptime", "500.00 900.00\n");
        for pid in ["1", "42"] {
            write(p, &format!("{pid}/comm"), "x\n");
        }
        write(
            p,
            "1/mounts",
            "/dev/sda2 / ext4 rw 0 0\n/dev/sda1 /boot ext4 rw 0 0\nproc /proc proc rw 0 0\n",
        );
        write(p, "mounts", "overlay / overlay rw 0 0\n");
        std::fs::create_dir_all(host.sys.join("block/sda")).expect("sysfs");
        std::fs::create_dir_all(host.root.join("boot")).expect("rootfs");
        let mut c = Collector::new(&host, 3, Duration::from_secs(3600));

        let first = c.sample(0);
        let cpu_line = |user: u64| format!("cpu  {user} 0 10 1000 0 0 0 0\n");
        write(p, "stat", &cpu_line(100));
        let diskstats = "   8       0 sda 200 0 1800 0 60 0 500 0 0 40 0 0 0 0 0 0 0\n   8       1 sda1 2 0 9 0 1 0 4 0 0 3 0 0 0 0 0 0 0\n";
        write(p, "diskstats", diskstats);
        std::thread::sleep(Duration::from_millis(20));
        let second = c.sample(10);
        write(p, "stat", &cpu_line(150));
        std::thread::sleep(Duration::from_millis(20));
        let third = c.sample(20);

        let value = |s: &Sample, name: &str, device: &str| {
            s.metrics
                .iter()
                .find(|m| m.name == name && m.device == device)
                .map(|m| m.value)
        };
        assert_eq!(value(&first, "load.1", ""), Some(0.52));
        assert_eq!(value(&first, "mem.used_bytes", ""), Some(8000.0 * 1024.0));
        assert_eq!(value(&first, "proc.count", ""), Some(2.0));
        assert!(value(&third, "cpu.total_pct", "").is_some());
        // Whole disks from <sys>/block: sda, never its partition.
        let devices: Vec<&str> = second
            .metrics
            .iter()
            .filter(|m| m.name == "disk.reads_per_s")
            .map(|m| m.device.as_str())
            .collect();
        assert_eq!(devices, ["sda"]);
        // Disk space: the host's mount table, measured under root_fs, named as the host does.
        let mut spaces: Vec<&str> = first
            .metrics
            .iter()
            .filter(|m| m.name == "disk.used_pct")
            .map(|m| m.device.as_str())
            .collect();
        spaces.sort_unstable();
        assert_eq!(spaces, ["/", "/boot"]);
        // The process table comes from the fixture too (no stat files: nothing readable).
        let table = first.process_snapshot.expect("read on the first tick");
        assert!(table.procs.is_empty() && table.uptime_secs == Some(500.0));
    }

    #[test]
    fn samples_this_host() {
        let mut c = Collector::new(&HostPaths::default(), 3, Duration::from_millis(1));
        let first = c.sample(0);
        assert!(first.metrics.iter().any(|m| m.name == "mem.used_bytes"));
        std::thread::sleep(Duration::from_millis(50));
        let second = c.sample(50);
        assert!(second.metrics.iter().any(|m| m.name == "cpu.total_pct"));
        for m in &second.metrics {
            assert!(m.value >= 0.0, "{} {} = {}", m.name, m.device, m.value);
        }

        // Processes: the first tick only reads the base table.
        assert!(first.top_processes.is_none());
        let base = first.process_snapshot.expect("first tick reads processes");
        let me = std::process::id();
        assert!(base.procs.contains_key(&me));
        let top = second.top_processes.expect("second tick has usage");
        assert!(!top.is_empty() && top.len() <= 6, "{top:?}");
        let table = second
            .process_snapshot
            .expect("second tick reads processes");
        assert!(table.at > base.at);
        assert!(top.iter().all(|p| table.procs.contains_key(&p.pid)));

        // Not yet time for processes: neither list nor table.
        let mut slow = Collector::new(&HostPaths::default(), 3, Duration::from_secs(3600));
        assert!(slow.sample(0).process_snapshot.is_some());
        let later = slow.sample(1);
        assert!(later.top_processes.is_none() && later.process_snapshot.is_none());
        // Disabled.
        let mut off = Collector::new(&HostPaths::default(), 0, Duration::from_millis(1));
        assert!(off.sample(0).process_snapshot.is_none());
    }
}
