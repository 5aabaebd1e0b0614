//! The host metrics the agent collects, under node_exporter's names, types and labels.
//!
//! Read at scrape time from the files the collector reads (its [`HostPaths`]), with the
//! collector's own parsers (`collect::procfs`, `collect::mounts`), so the devices are the
//! collector's: whole disks (no partitions, loop or ram devices), network interfaces but
//! `lo`, the mounts it measures (less those node_exporter leaves out by default). The
//! collector keeps rates and percentages only; Prometheus wants the kernel's counters, and
//! reading them when asked costs nothing between scrapes. What is not offered and why is in
//! the README ("Agent health and Prometheus endpoint").

use std::collections::HashMap;
use std::path::Path;

use super::text::{Kind, Text};
use crate::collect::procfs::{self, CpuTimes};
use crate::collect::{mounts as collected, HostPaths};

/// `/proc/stat` counts CPU time in USER_HZ ticks, which the kernel fixes at 100 on the
/// architectures the agent runs on (node_exporter assumes the same).
const USER_HZ: f64 = 100.0;

/// One mounted filesystem, as node_exporter labels it.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub device: String,
    pub fstype: String,
    pub mountpoint: String,
    pub size_bytes: u64,
    pub avail_bytes: u64,
}

/// Writes every node_* family the host offers. Missing files (old kernels, containers)
/// only leave out their families.
pub fn write(t: &mut Text, host: &HostPaths) {
    write_proc(t, &host.proc, &host.sys.join("block"));
    write_filesystems(t, &mounts(host));
}

/// The families read from `/proc`.
pub fn write_proc(t: &mut Text, proc_root: &Path, sys_block: &Path) {
    let read = |rel: &str| std::fs::read_to_string(proc_root.join(rel)).ok();

    if let Some(stat) = read("stat") {
        let cpus = parse_cpus(&stat);
        let mut f = t.family(
            "node_cpu_seconds_total",
            Kind::Counter,
            "Seconds the CPUs spent in each mode.",
        );
        for (cpu, c) in &cpus {
            let modes = [
                ("user", c.user),
                ("nice", c.nice),
                ("system", c.system),
                ("idle", c.idle),
                ("iowait", c.iowait),
                ("irq", c.irq),
                ("softirq", c.softirq),
                ("steal", c.steal),
            ];
            for (mode, ticks) in modes {
                f.float(
                    &[("cpu", cpu.as_str()), ("mode", mode)],
                    ticks as f64 / USER_HZ,
                );
            }
        }
    }

    if let Some(l) = read("loadavg").and_then(|s| procfs::parse_loadavg(&s)) {
        t.family("node_load1", Kind::Gauge, "1m load average.")
            .float(&[], l[0]);
        t.family("node_load5", Kind::Gauge, "5m load average.")
            .float(&[], l[1]);
        t.family("node_load15", Kind::Gauge, "15m load average.")
            .float(&[], l[2]);
    }

    if let Some(m) = read("meminfo").and_then(|s| procfs::parse_meminfo(&s)) {
        let families = [
            (
                "node_memory_MemTotal_bytes",
                "Memory information field MemTotal_bytes.",
                m.total,
            ),
            (
                "node_memory_MemAvailable_bytes",
                "Memory information field MemAvailable_bytes.",
                m.available,
            ),
            (
                "node_memory_Cached_bytes",
                "Memory information field Cached_bytes.",
                m.cached,
            ),
            (
                "node_memory_SwapTotal_bytes",
                "Memory information field SwapTotal_bytes.",
                m.swap_total,
            ),
            (
                "node_memory_SwapFree_bytes",
                "Memory information field SwapFree_bytes.",
                m.swap_free,
            ),
        ];
        for (name, help, v) in families {
            t.family(name, Kind::Gauge, help).int(&[], v);
        }
    }

    if let Some(s) = read("diskstats") {
        let disks = procfs::parse_diskstats(&s, |n| sys_block.join(n).exists());
        type Field = fn(&procfs::DiskStat) -> u64;
        let counts: [(&str, &str, Field); 4] = [
            (
                "node_disk_read_bytes_total",
                "The total number of bytes read successfully.",
                |d| d.sectors_read.saturating_mul(512),
            ),
            (
                "node_disk_written_bytes_total",
                "The total number of bytes written successfully.",
                |d| d.sectors_written.saturating_mul(512),
            ),
            (
                "node_disk_reads_completed_total",
                "The total number of reads completed successfully.",
                |d| d.reads,
            ),
            (
                "node_disk_writes_completed_total",
                "The total number of writes completed successfully.",
                |d| d.writes,
            ),
        ];
        for (name, help, field) in counts {
            let mut f = t.family(name, Kind::Counter, help);
            for d in &disks {
                f.int(&[("device", d.name.as_str())], field(d));
            }
        }
        let mut f = t.family(
            "node_disk_io_time_seconds_total",
            Kind::Counter,
            "Total seconds spent doing I/Os.",
        );
        for d in &disks {
            f.float(&[("device", d.name.as_str())], d.io_ms as f64 / 1000.0);
        }
    }

    if let Some(s) = read("net/dev") {
        let nets = procfs::parse_net_dev(&s);
        type Field = fn(&procfs::NetStat) -> u64;
        let counts: [(&str, &str, Field); 8] = [
            (
                "node_network_receive_bytes_total",
                "Network device statistic receive_bytes.",
                |n| n.rx_bytes,
            ),
            (
                "node_network_transmit_bytes_total",
                "Network device statistic transmit_bytes.",
                |n| n.tx_bytes,
            ),
            (
                "node_network_receive_packets_total",
                "Network device statistic receive_packets.",
                |n| n.rx_packets,
            ),
            (
                "node_network_transmit_packets_total",
                "Network device statistic transmit_packets.",
                |n| n.tx_packets,
            ),
            (
                "node_network_receive_errs_total",
                "Network device statistic receive_errs.",
                |n| n.rx_errors,
            ),
            (
                "node_network_transmit_errs_total",
                "Network device statistic transmit_errs.",
                |n| n.tx_errors,
            ),
            (
                "node_network_receive_drop_total",
                "Network device statistic receive_drop.",
                |n| n.rx_drops,
            ),
            (
                "node_network_transmit_drop_total",
                "Network device statistic transmit_drop.",
                |n| n.tx_drops,
            ),
        ];
        for (name, help, field) in counts {
            let mut f = t.family(name, Kind::Counter, help);
            for n in &nets {
                f.int(&[("device", n.name.as_str())], field(n));
            }
        }
    }

    // Stall totals are microseconds. The "full" line of cpu (kernel 5.13+) is left out:
    // node_exporter 1.5 (Debian 12) has no family for it.
    let pressure =
        |r: &str| read(&format!("pressure/{r}")).and_then(|s| procfs::parse_pressure(&s));
    let secs = |us: u64| us as f64 / 1e6;
    if let Some((some, _)) = pressure("cpu") {
        t.family(
            "node_pressure_cpu_waiting_seconds_total",
            Kind::Counter,
            "Total time in seconds that processes have waited for CPU time",
        )
        .float(&[], secs(some));
    }
    for (r, waiting, stalled, waiting_help, stalled_help) in [
        (
            "memory",
            "node_pressure_memory_waiting_seconds_total",
            "node_pressure_memory_stalled_seconds_total",
            "Total time in seconds that processes have waited for memory",
            "Total time in seconds no process could make progress due to memory congestion",
        ),
        (
            "io",
            "node_pressure_io_waiting_seconds_total",
            "node_pressure_io_stalled_seconds_total",
            "Total time in seconds that processes have waited due to IO congestion",
            "Total time in seconds no process could make progress due to IO congestion",
        ),
    ] {
        if let Some((some, full)) = pressure(r) {
            t.family(waiting, Kind::Counter, waiting_help)
                .float(&[], secs(some));
            if let Some(full) = full {
                t.family(stalled, Kind::Counter, stalled_help)
                    .float(&[], secs(full));
            }
        }
    }
}

/// The mounts the collector measures, with the device and type node_exporter labels them
/// with (from the same mount table), less those node_exporter leaves out by default.
fn mounts(host: &HostPaths) -> Vec<Mount> {
    let read = |rel: &str| std::fs::read_to_string(host.proc.join(rel)).unwrap_or_default();
    // The tables `collect::mounts` takes its list from, in its order of preference; in the
    // agent's own table a host's mount shows under `root_fs`.
    let tables = if host.root == Path::new("/") {
        vec![(read("mounts"), false)]
    } else {
        vec![(read("1/mounts"), false), (read("mounts"), true)]
    };
    let mut kinds: HashMap<String, (String, String)> = HashMap::new();
    for (text, under_root) in tables {
        for (device, point, fstype) in collected::parse_mounts(&text) {
            let point = if under_root {
                match Path::new(&point).strip_prefix(&host.root) {
                    Ok(rest) => Path::new("/").join(rest).display().to_string(),
                    Err(_) => continue,
                }
            } else {
                point
            };
            kinds.entry(point).or_insert((device, fstype));
        }
    }
    collected::mounts(host)
        .into_iter()
        .filter_map(|m| {
            let (device, fstype) = kinds.get(&m.point)?.clone();
            if node_exporter_ignores(&m.point, &fstype) {
                return None;
            }
            let (size_bytes, avail_bytes) = collected::space(&m.path)?;
            Some(Mount {
                device,
                fstype,
                mountpoint: m.point,
                size_bytes,
                avail_bytes,
            })
        })
        .collect()
}

pub fn write_filesystems(t: &mut Text, mounts: &[Mount]) {
    type Field = fn(&Mount) -> u64;
    let gauges: [(&str, &str, Field); 2] = [
        (
            "node_filesystem_avail_bytes",
            "Filesystem space available to non-root users in bytes.",
            |m| m.avail_bytes,
        ),
        (
            "node_filesystem_size_bytes",
            "Filesystem size in bytes.",
            |m| m.size_bytes,
        ),
    ];
    for (name, help, field) in gauges {
        let mut f = t.family(name, Kind::Gauge, help);
        for m in mounts {
            f.int(
                &[
                    ("device", m.device.as_str()),
                    ("fstype", m.fstype.as_str()),
                    ("mountpoint", m.mountpoint.as_str()),
                ],
                field(m),
            );
        }
    }
}

/// node_exporter 1.5's default `--collector.filesystem.mount-points-exclude` and
/// `--collector.filesystem.fs-types-exclude`.
pub fn node_exporter_ignores(mountpoint: &str, fstype: &str) -> bool {
    const TYPES: [&str; 24] = [
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "devtmpfs",
        "fusectl",
        "hugetlbfs",
        "iso9660",
        "mqueue",
        "nsfs",
        "overlay",
        "proc",
        "procfs",
        "pstore",
        "rpc_pipefs",
        "securityfs",
        "selinuxfs",
        "squashfs",
        "sysfs",
        "tracefs",
    ];
    if TYPES.contains(&fstype) {
        return true;
    }
    let Some(rest) = mountpoint.strip_prefix('/') else {
        return false;
    };
    // ^/(dev|proc|sys)($|/) and ^/(run/credentials|var/lib/docker|...)/.+
    let at_or_under =
        |p: &str| rest == p || rest.strip_prefix(p).is_some_and(|r| r.starts_with('/'));
    let strictly_under = |p: &str| {
        rest.strip_prefix(p)
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|r| !r.is_empty())
    };
    ["dev", "proc", "sys"].into_iter().any(at_or_under)
        || [
            "run/credentials",
            "var/lib/docker",
            "var/lib/containers/storage",
        ]
        .into_iter()
        .any(strictly_under)
}

/// The per-CPU lines of `/proc/stat` (`cpu0 ...`, not the `cpu` total), in ticks.
pub fn parse_cpus(text: &str) -> Vec<(String, CpuTimes)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let id = fields.next()?.strip_prefix("cpu")?;
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let v: Vec<u64> = fields.map(|f| f.parse().ok()).collect::<Option<_>>()?;
            if v.len() < 4 {
                return None;
            }
            let get = |i: usize| v.get(i).copied().unwrap_or(0);
            Some((
                id.to_string(),
                CpuTimes {
                    user: get(0),
                    nice: get(1),
                    system: get(2),
                    idle: get(3),
                    iowait: get(4),
                    irq: get(5),
                    softirq: get(6),
                    steal: get(7),
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake `/proc` (and `/sys/block`) with one of everything.
    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("proc");
        let files = [
            (
                "stat",
                "cpu  30 0 20 1000 5 1 2 3 0 0\ncpu0 10 0 10 500 5 1 2 3 0 0\ncpu1 20 0 10 500 0 0 0 0 0 0\nintr 1 2\nctxt 5\n",
            ),
            ("loadavg", "0.52 0.58 0.59 1/467 12345\n"),
            (
                "meminfo",
                "MemTotal: 16000 kB\nMemFree: 1000 kB\nMemAvailable: 8000 kB\nCached: 2000 kB\nSwapTotal: 100 kB\nSwapFree: 40 kB\n",
            ),
            (
                "diskstats",
                "   8       0 sda 100 0 800 0 50 0 400 0 0 1500 0 0 0 0 0 0 0\n   8       1 sda1 1 0 8 0 1 0 4 0 0 3 0 0 0 0 0 0 0\n   7       0 loop0 1 0 8 0 1 0 4 0 0 3 0 0\n",
            ),
            (
                "net/dev",
                "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo: 1 2 0 0 0 0 0 0 1 2 0 0 0 0 0 0\n  eth0: 1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0\n",
            ),
            (
                "pressure/cpu",
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=1500000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n",
            ),
            (
                "pressure/io",
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=2000000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=500000\n",
            ),
        ];
        for (rel, text) in files {
            let path = p.join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        std::fs::create_dir_all(dir.path().join("sys/block/sda")).expect("mkdir");
        dir
    }

    #[test]
    fn proc_files_become_node_exporter_families() {
        let dir = fixture();
        let mut t = Text::default();
        write_proc(
            &mut t,
            &dir.path().join("proc"),
            &dir.path().join("sys/block"),
        );
        let out = t.finish();
        for line in [
            "# TYPE node_cpu_seconds_total counter",
            "node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 0.1",
            "node_cpu_seconds_total{cpu=\"1\",mode=\"idle\"} 5",
            "node_cpu_seconds_total{cpu=\"0\",mode=\"steal\"} 0.03",
            "# TYPE node_load1 gauge",
            "node_load15 0.59",
            "node_memory_MemAvailable_bytes 8192000",
            "node_memory_SwapFree_bytes 40960",
            "# TYPE node_disk_read_bytes_total counter",
            "node_disk_read_bytes_total{device=\"sda\"} 409600",
            "node_disk_written_bytes_total{device=\"sda\"} 204800",
            "node_disk_reads_completed_total{device=\"sda\"} 100",
            "node_disk_io_time_seconds_total{device=\"sda\"} 1.5",
            "node_network_receive_bytes_total{device=\"eth0\"} 1000",
            "node_network_transmit_drop_total{device=\"eth0\"} 4",
            "# TYPE node_pressure_cpu_waiting_seconds_total counter",
            "node_pressure_cpu_waiting_seconds_total 1.5",
            "node_pressure_io_waiting_seconds_total 2",
            "node_pressure_io_stalled_seconds_total 0.5",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
        // the aggregate cpu line, partitions, loop devices and lo are not series; no
        // memory pressure file, no memory pressure family
        for absent in [
            "cpu=\"\"",
            "sda1",
            "loop0",
            "device=\"lo\"",
            "node_pressure_memory",
            "node_pressure_cpu_stalled",
        ] {
            assert!(!out.contains(absent), "{absent} in\n{out}");
        }
        // every sample line belongs to the family typed just before it
        let mut family = "";
        for l in out.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap_or("");
            } else if !l.starts_with('#') {
                assert!(l.starts_with(family), "{l} outside {family}");
            }
        }
    }

    #[test]
    fn a_missing_proc_leaves_no_families() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut t = Text::default();
        write_proc(&mut t, dir.path(), dir.path());
        assert_eq!(t.finish(), "");
    }

    #[test]
    fn filesystems_with_node_exporter_labels() {
        let mut t = Text::default();
        write_filesystems(
            &mut t,
            &[Mount {
                device: "/dev/vda".into(),
                fstype: "ext4".into(),
                mountpoint: "/srv/a \"b\"".into(),
                size_bytes: 100,
                avail_bytes: 40,
            }],
        );
        assert_eq!(
            t.finish(),
            "# HELP node_filesystem_avail_bytes Filesystem space available to non-root users in bytes.\n\
             # TYPE node_filesystem_avail_bytes gauge\n\
             node_filesystem_avail_bytes{device=\"/dev/vda\",fstype=\"ext4\",mountpoint=\"/srv/a \\\"b\\\"\"} 40\n\
             # HELP node_filesystem_size_bytes Filesystem size in bytes.\n\
             # TYPE node_filesystem_size_bytes gauge\n\
             node_filesystem_size_bytes{device=\"/dev/vda\",fstype=\"ext4\",mountpoint=\"/srv/a \\\"b\\\"\"} 100\n"
        );
    }

    #[test]
    fn node_exporter_default_exclusions() {
        let cases = [
            ("/", "ext4", false),
            ("/dev", "devtmpfs", true),
            ("/dev/shm", "tmpfs", true),
            ("/devices", "ext4", false),
            ("/sys/fs/cgroup", "tmpfs", true),
            ("/run/credentials", "tmpfs", false),
            ("/run/credentials/x.service", "ramfs", true),
            ("/var/lib/docker/overlay2/abc", "ext4", true),
            ("/var/lib/docker", "ext4", false),
            ("/mnt/data", "overlay", true),
            ("/mnt/data", "xfs", false),
            ("/boot/efi", "vfat", false),
        ];
        for (mountpoint, fstype, ignored) in cases {
            assert_eq!(
                node_exporter_ignores(mountpoint, fstype),
                ignored,
                "{mountpoint} {fstype}"
            );
        }
    }

    #[test]
    fn per_cpu_lines_only() {
        let cpus = parse_cpus("cpu  1 2 3 4\ncpu0 1 2 3 4 5 6 7 8 9 10\ncpux 1 2 3 4\ncpu1 1 2\n");
        assert_eq!(cpus.len(), 1);
        assert_eq!(cpus[0].0, "0");
        assert_eq!(cpus[0].1.steal, 8);
    }
}
