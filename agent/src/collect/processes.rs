//! The process table, read from `/proc` without `sysinfo`.
//!
//! Only thread-group leaders are listed: `readdir` of `/proc` shows one
//! directory per process, while threads live under `/proc/PID/task` (they can
//! still be opened as `/proc/TID`, which is why we never guess pids). The
//! process's `stat` already sums the CPU time of all its threads, live and
//! exited. Kernel threads are left out: they cannot be restarted or stopped
//! and would only crowd the top lists.
//!
//! A [`ProcSnapshot`] holds cumulative counters; [`usage`] turns two of them
//! into rates over the interval between them, so figures are as fresh as the
//! snapshots (no stale sample from some earlier refresh).
//!
//! Processes come and go while we read: one that vanishes between the
//! directory listing and the reads of its files is skipped silently.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use super::ProcessInfo;

/// Clock ticks per second in `/proc/PID/stat`. The kernel reports these
/// fields in `USER_HZ`, which it fixes at 100 for every architecture we run
/// on, whatever `CONFIG_HZ` is; that is the ABI `ps` and `top` rely on too.
pub const USER_HZ: u64 = 100;

/// `PF_KTHREAD` in the `flags` field of `/proc/PID/stat`.
pub const PF_KTHREAD: u64 = 0x0020_0000;

/// `kthreadd`, parent of every kernel thread.
const KTHREADD_PID: u32 = 2;

/// Longest command line we keep, in bytes (the proto says so).
pub const CMDLINE_CAP: usize = 512;

/// The kernel keeps `comm` in 16 bytes with the NUL, so a 15-byte comm may
/// have been cut.
const COMM_MAX: usize = 15;

/// Fallback page size when `/proc/self/auxv` cannot be read: 4 KiB is the
/// page size of x86-64 and of most arm64 kernels.
const DEFAULT_PAGE_SIZE: u64 = 4096;

/// `AT_PAGESZ` in the ELF auxiliary vector.
const AT_PAGESZ: usize = 6;

// Bounds on what we read of each file. `stat`, `statm` and `io` are far
// smaller; `cmdline` can be megabytes (long Java class paths), and we keep
// only its start; `cgroup` has one line per v1 hierarchy.
const SMALL_FILE_LIMIT: u64 = 4096;
const CMDLINE_READ_LIMIT: u64 = 4096;
const CGROUP_READ_LIMIT: u64 = 16 * 1024;

/// The fields of `/proc/PID/stat` we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatFields {
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    pub flags: u64,
    /// `utime + stime`, in [`USER_HZ`] ticks, all threads included.
    pub cpu_ticks: u64,
    pub threads: u32,
    /// Start time after boot, in [`USER_HZ`] ticks.
    pub starttime: u64,
}

/// Parses `/proc/PID/stat`. `comm` sits in parentheses and may itself hold
/// spaces and parentheses, so it runs to the *last* `)`; it may also be any
/// bytes, hence `&[u8]` and a lossy conversion.
pub fn parse_stat(text: &[u8]) -> Option<StatFields> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let comm = String::from_utf8_lossy(&text[open + 1..close]).into_owned();
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    // Fields after `comm`, counted from 0: state, ppid, pgrp, session,
    // tty_nr, tpgid, flags, minflt, cminflt, majflt, cmajflt, utime, stime,
    // cutime, cstime, priority, nice, num_threads, itrealvalue, starttime.
    let mut f = rest.split_ascii_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let flags = f.nth(4)?.parse().ok()?;
    let utime: u64 = f.nth(4)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    let threads = f.nth(4)?.parse().ok()?;
    let starttime = f.nth(1)?.parse().ok()?;
    Some(StatFields {
        comm,
        state,
        ppid,
        flags,
        cpu_ticks: utime.saturating_add(stime),
        threads,
        starttime,
    })
}

/// Kernel threads carry `PF_KTHREAD`; `kthreadd` and its children are
/// kernel threads too (the flag check alone misses nothing on current
/// kernels, the pid rules guard older ones).
pub fn is_kernel_thread(pid: u32, ppid: u32, flags: u64) -> bool {
    flags & PF_KTHREAD != 0 || pid == KTHREADD_PID || ppid == KTHREADD_PID
}

/// Resident pages, the second field of `/proc/PID/statm`.
pub fn parse_statm_resident(text: &str) -> Option<u64> {
    text.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Storage bytes from `/proc/PID/io`; a field the kernel does not report is
/// `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoBytes {
    pub read: Option<u64>,
    pub write: Option<u64>,
}

pub fn parse_io(text: &str) -> IoBytes {
    let mut io = IoBytes::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().parse().ok();
        match key.trim() {
            "read_bytes" => io.read = value,
            "write_bytes" => io.write = value,
            _ => {}
        }
    }
    io
}

/// `/proc/PID/cmdline` as one line: arguments are NUL-separated (with a
/// trailing NUL), joined here by spaces, and the result is capped at
/// [`CMDLINE_CAP`] bytes on a character boundary. Empty for kernel threads
/// and zombies, whose file is empty.
pub fn parse_cmdline(raw: &[u8]) -> String {
    let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let joined: Vec<u8> = raw[..end]
        .iter()
        .map(|&b| if b == 0 { b' ' } else { b })
        .collect();
    let mut s = String::from_utf8_lossy(&joined).into_owned();
    if s.len() > CMDLINE_CAP {
        let mut cut = CMDLINE_CAP;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// The process name, not cut at the kernel's 15 bytes: when `comm` is 15
/// bytes long (so possibly cut) and the basename of `argv[0]` starts with
/// it, that basename; else `comm`.
///
/// A shorter `comm` is already whole, and taking `argv[0]` then would pick
/// up the titles some daemons write over their argv (`nginx: master process
/// ...`, `postgres: checkpointer`).
pub fn full_name(comm: &str, cmdline_raw: &[u8]) -> String {
    if comm.len() < COMM_MAX {
        return comm.to_string();
    }
    let argv0 = cmdline_raw.split(|&b| b == 0).next().unwrap_or_default();
    let base = argv0.rsplit(|&b| b == b'/').next().unwrap_or_default();
    match std::str::from_utf8(base) {
        Ok(base) if !base.is_empty() && base.starts_with(comm) => base.to_string(),
        _ => comm.to_string(),
    }
}

/// The cgroup path of a process from `/proc/PID/cgroup`: the unified (v2)
/// `0::` line, else the `name=systemd` v1 hierarchy, else the first other
/// v1 hierarchy that places the process below the root; `/` when all say
/// root. Hybrid hosts put `0::/` beside populated v1 lines, hence the order.
pub fn parse_cgroup(text: &str) -> &str {
    let mut systemd = None;
    let mut other = None;
    for line in text.lines() {
        let mut it = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        // A removed cgroup still named by a process shows this suffix.
        let path = path.strip_suffix(" (deleted)").unwrap_or(path);
        if path.is_empty() || path == "/" {
            continue;
        }
        if id == "0" && controllers.is_empty() {
            return path;
        }
        if controllers == "name=systemd" {
            systemd.get_or_insert(path);
        } else {
            other.get_or_insert(path);
        }
    }
    systemd.or(other).unwrap_or("/")
}

/// The unit a cgroup path belongs to: its innermost component ending in
/// `.service` or `.scope` (a service may nest its own cgroups, and user
/// services sit inside `user@UID.service`), else the path itself; empty for
/// the root.
pub fn unit_of(cgroup_path: &str) -> &str {
    if cgroup_path.is_empty() || cgroup_path == "/" {
        return "";
    }
    cgroup_path
        .rsplit('/')
        .find(|c| c.ends_with(".service") || c.ends_with(".scope"))
        .unwrap_or(cgroup_path)
}

/// `AT_PAGESZ` from the raw bytes of `/proc/self/auxv` (native-endian
/// pairs of machine words).
pub fn parse_auxv_page_size(raw: &[u8]) -> Option<u64> {
    const W: usize = std::mem::size_of::<usize>();
    raw.chunks_exact(2 * W).find_map(|pair| {
        let key = usize::from_ne_bytes(pair[..W].try_into().ok()?);
        let value = usize::from_ne_bytes(pair[W..].try_into().ok()?);
        (key == AT_PAGESZ).then_some(value as u64)
    })
}

/// The host's page size, for `statm`'s page counts. Read once from our own
/// auxiliary vector (a property of the running kernel, not of the proc root
/// being read) because 64 KiB pages exist on arm64 and ppc64.
pub fn page_size() -> u64 {
    static PAGE_SIZE: OnceLock<u64> = OnceLock::new();
    *PAGE_SIZE.get_or_init(|| {
        std::fs::read("/proc/self/auxv")
            .ok()
            .and_then(|raw| parse_auxv_page_size(&raw))
            .filter(|&p| p > 0)
            .unwrap_or(DEFAULT_PAGE_SIZE)
    })
}

/// Seconds since boot, the first field of `/proc/uptime`.
pub fn parse_uptime(text: &str) -> Option<f64> {
    text.split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s >= 0.0)
}

/// One process's counters at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcStat {
    pub pid: u32,
    pub ppid: u32,
    /// See [`full_name`].
    pub name: String,
    pub cmdline: String,
    /// See [`unit_of`].
    pub unit: String,
    pub state: char,
    pub threads: u32,
    /// Cumulative `utime + stime` of all threads, [`USER_HZ`] ticks.
    pub cpu_ticks: u64,
    /// Ticks after boot; with the pid it identifies the process, since pids
    /// are reused.
    pub starttime: u64,
    pub rss_bytes: u64,
    /// Cumulative bytes from storage; `None` when `/proc/PID/io` is not
    /// readable (other users' processes when we are not root).
    pub read_bytes: Option<u64>,
    pub write_bytes: Option<u64>,
}

/// All user processes at one moment.
#[derive(Clone)]
pub struct ProcSnapshot {
    /// When the reading started.
    pub at: Instant,
    /// `/proc/uptime` at `at`, to tell processes started since an earlier
    /// snapshot from ones it missed; `None` if unreadable.
    pub uptime_secs: Option<f64>,
    pub procs: HashMap<u32, ProcStat>,
}

// A snapshot holds hundreds of processes; `Sample`s are logged with `{:?}`
// and should stay readable.
impl fmt::Debug for ProcSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcSnapshot")
            .field("at", &self.at)
            .field("uptime_secs", &self.uptime_secs)
            .field("procs", &self.procs.len())
            .finish()
    }
}

/// Reads small `/proc` files into one reused buffer, so a snapshot costs
/// one allocation per process path and per string kept, not per file.
struct Reader {
    buf: Vec<u8>,
    cmdline: Vec<u8>,
}

impl Reader {
    fn new() -> Self {
        Self {
            buf: Vec::with_capacity(SMALL_FILE_LIMIT as usize),
            cmdline: Vec::with_capacity(CMDLINE_READ_LIMIT as usize),
        }
    }

    fn read_into(path: &Path, buf: &mut Vec<u8>, limit: u64) -> Option<()> {
        buf.clear();
        File::open(path).ok()?.take(limit).read_to_end(buf).ok()?;
        Some(())
    }

    /// Reads one process from its directory; `None` when it vanished, is
    /// a kernel thread or its `stat` is unreadable.
    fn process(&mut self, dir: &Path, pid: u32) -> Option<ProcStat> {
        let mut path = dir.join("stat");
        Self::read_into(&path, &mut self.buf, SMALL_FILE_LIMIT)?;
        let stat = parse_stat(&self.buf)?;
        if is_kernel_thread(pid, stat.ppid, stat.flags) {
            return None;
        }

        path.set_file_name("statm");
        Self::read_into(&path, &mut self.buf, SMALL_FILE_LIMIT)?;
        let resident = parse_statm_resident(&String::from_utf8_lossy(&self.buf))?;

        // Denied for other users' processes unless we are root: absent, not
        // an error.
        path.set_file_name("io");
        let io = Self::read_into(&path, &mut self.buf, SMALL_FILE_LIMIT)
            .map(|()| parse_io(&String::from_utf8_lossy(&self.buf)))
            .unwrap_or_default();

        // From here a process that vanishes keeps what we already have.
        path.set_file_name("cmdline");
        if Self::read_into(&path, &mut self.cmdline, CMDLINE_READ_LIMIT).is_none() {
            self.cmdline.clear();
        }
        let cmdline = parse_cmdline(&self.cmdline);
        let name = full_name(&stat.comm, &self.cmdline);

        path.set_file_name("cgroup");
        let unit = match Self::read_into(&path, &mut self.buf, CGROUP_READ_LIMIT) {
            Some(()) => unit_of(parse_cgroup(&String::from_utf8_lossy(&self.buf))).to_string(),
            None => String::new(),
        };

        Some(ProcStat {
            pid,
            ppid: stat.ppid,
            name,
            cmdline,
            unit,
            state: stat.state,
            threads: stat.threads,
            cpu_ticks: stat.cpu_ticks,
            starttime: stat.starttime,
            rss_bytes: resident.saturating_mul(page_size()),
            read_bytes: io.read,
            write_bytes: io.write,
        })
    }
}

fn parse_pid(name: &std::ffi::OsStr) -> Option<u32> {
    let s = name.to_str()?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Reads every user process under `proc_root` (normally `/proc`). Never
/// fails: an unreadable root gives an empty snapshot.
pub fn snapshot(proc_root: &Path) -> ProcSnapshot {
    let at = Instant::now();
    let uptime_secs = std::fs::read_to_string(proc_root.join("uptime"))
        .ok()
        .and_then(|t| parse_uptime(&t));
    let mut procs = HashMap::new();
    let mut reader = Reader::new();
    if let Ok(dir) = std::fs::read_dir(proc_root) {
        for entry in dir.filter_map(Result::ok) {
            let Some(pid) = parse_pid(&entry.file_name()) else {
                continue;
            };
            if let Some(p) = reader.process(&entry.path(), pid) {
                procs.insert(pid, p);
            }
        }
    }
    ProcSnapshot {
        at,
        uptime_secs,
        procs,
    }
}

/// Reads one process now, e.g. to check that the culprit named earlier is
/// still the same process (same `starttime`) before acting on it. `None`
/// when it is gone or is a kernel thread.
pub fn read_one(proc_root: &Path, pid: u32) -> Option<ProcStat> {
    Reader::new().process(&proc_root.join(pid.to_string()), pid)
}

/// Per-process rates between two snapshots of the same proc root: CPU in
/// percent of one core (a process with several busy threads goes above
/// 100), storage bytes per second (0 when the kernel does not tell us).
///
/// A process not in `prev`, or whose pid now belongs to a process with
/// another `starttime` (pid reused), has no baseline: its counters since it
/// started are spread over the interval, which is exact when it started
/// after `prev` (everything it did fell in the interval). If it is older
/// than `prev` (`prev` missed it), they are spread over its age instead, an
/// average rather than an overstatement. Returns nothing for a zero
/// interval.
pub fn usage(prev: &ProcSnapshot, now: &ProcSnapshot) -> Vec<ProcessInfo> {
    let elapsed = now.at.saturating_duration_since(prev.at).as_secs_f64();
    if elapsed <= 0.0 {
        return Vec::new();
    }
    now.procs
        .values()
        .map(|cur| {
            let base = prev
                .procs
                .get(&cur.pid)
                .filter(|p| p.starttime == cur.starttime);
            let (cpu_ticks, read, write, secs) = match base {
                Some(p) => (
                    cur.cpu_ticks.saturating_sub(p.cpu_ticks),
                    delta(p.read_bytes, cur.read_bytes),
                    delta(p.write_bytes, cur.write_bytes),
                    elapsed,
                ),
                None => {
                    let age = now
                        .uptime_secs
                        .map(|up| up - cur.starttime as f64 / USER_HZ as f64)
                        .unwrap_or(0.0);
                    (
                        cur.cpu_ticks,
                        cur.read_bytes.unwrap_or(0),
                        cur.write_bytes.unwrap_or(0),
                        elapsed.max(age),
                    )
                }
            };
            let rss_before = base.map_or(0, |p| p.rss_bytes);
            let rss_growth_bytes = i64::try_from(cur.rss_bytes)
                .unwrap_or(i64::MAX)
                .saturating_sub(i64::try_from(rss_before).unwrap_or(i64::MAX));
            ProcessInfo {
                pid: cur.pid,
                name: cur.name.clone(),
                cpu_pct: cpu_ticks as f64 * 100.0 / USER_HZ as f64 / secs,
                rss_bytes: cur.rss_bytes,
                cmdline: cur.cmdline.clone(),
                unit: cur.unit.clone(),
                read_bytes_per_s: read as f64 / secs,
                write_bytes_per_s: write as f64 / secs,
                rss_growth_bytes,
            }
        })
        .collect()
}

/// Growth of a counter; 0 when either reading is missing (permission came
/// or went) or it went back.
fn delta(prev: Option<u64>, cur: Option<u64>) -> u64 {
    match (prev, cur) {
        (Some(p), Some(c)) => c.saturating_sub(p),
        _ => 0,
    }
}

/// What a process is heavy in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `cpu_pct`.
    Cpu,
    /// `rss_bytes`.
    Memory,
    /// `read_bytes_per_s + write_bytes_per_s`.
    Io,
    /// `rss_growth_bytes`: who took the memory during the interval, not who held the most.
    MemoryGrowth,
}

fn heavier(resource: Resource, a: &ProcessInfo, b: &ProcessInfo) -> Ordering {
    let by = match resource {
        Resource::Cpu => b.cpu_pct.total_cmp(&a.cpu_pct),
        Resource::Memory => b.rss_bytes.cmp(&a.rss_bytes),
        Resource::Io => (b.read_bytes_per_s + b.write_bytes_per_s)
            .total_cmp(&(a.read_bytes_per_s + a.write_bytes_per_s)),
        Resource::MemoryGrowth => b.rss_growth_bytes.cmp(&a.rss_growth_bytes),
    };
    by.then(a.pid.cmp(&b.pid))
}

/// The `n` heaviest processes in `resource`, heaviest first, ties by pid.
pub fn top_by(usages: &[ProcessInfo], resource: Resource, n: usize) -> Vec<ProcessInfo> {
    let mut sorted: Vec<&ProcessInfo> = usages.iter().collect();
    sorted.sort_by(|a, b| heavier(resource, a, b));
    sorted.into_iter().take(n).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn stat_lines() {
        // (line, comm, ppid, flags, cpu_ticks, threads, starttime)
        type Case<'a> = (&'a [u8], &'a str, u32, u64, u64, u32, u64);
        let cases: &[Case] = &[
            (
                b"3642 (cat) R 3640 3640 1860 0 -1 4194304 101 0 0 0 7 3 0 0 20 0 1 0 26367 3133440 382 18446744073709551615 0",
                "cat",
                3640,
                4_194_304,
                10,
                1,
                26367,
            ),
            (
                b"77 (my (odd) prog) S 1 77 77 0 -1 4194560 1 0 0 0 150 50 9 9 20 0 4 0 500 0 0",
                "my (odd) prog",
                1,
                4_194_560,
                200,
                4,
                500,
            ),
            (
                b"78 (a) b) c) S 1 78 78 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 9 0 0\n",
                "a) b) c",
                1,
                0,
                2,
                1,
                9,
            ),
            (
                b"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 24 0 0",
                "kthreadd",
                0,
                2_129_984,
                0,
                1,
                24,
            ),
            (
                b"9 (\xff\xfeweird) S 1 9 9 0 -1 0 0 0 0 0 5 5 0 0 20 0 1 0 7 0 0",
                "\u{fffd}\u{fffd}weird",
                1,
                0,
                10,
                1,
                7,
            ),
        ];
        for &(line, comm, ppid, flags, ticks, threads, start) in cases {
            let s =
                parse_stat(line).unwrap_or_else(|| panic!("{:?}", String::from_utf8_lossy(line)));
            assert_eq!(
                (
                    s.comm.as_str(),
                    s.ppid,
                    s.flags,
                    s.cpu_ticks,
                    s.threads,
                    s.starttime
                ),
                (comm, ppid, flags, ticks, threads, start),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        let bad: &[&[u8]] = &[
            b"",
            b"12 (truncated",
            b"12 )x( S 1 2 3",
            b"12 (short) S 1 2 3 4 5",
            b"12 (nan) S one 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
        ];
        for line in bad {
            assert_eq!(parse_stat(line), None, "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn kernel_threads() {
        let cases = [
            (2, 0, 0x0020_8040, true),  // kthreadd
            (15, 2, 0x0020_8040, true), // a worker
            (15, 2, 0, true),           // child of kthreadd without the flag
            (99, 1, PF_KTHREAD, true),  // the flag alone
            (1, 0, 0x0040_0100, false), // init
            (500, 1, 0x0040_0000, false),
        ];
        for (pid, ppid, flags, want) in cases {
            assert_eq!(
                is_kernel_thread(pid, ppid, flags),
                want,
                "{pid} {ppid} {flags:#x}"
            );
        }
    }

    #[test]
    fn statm_and_uptime() {
        assert_eq!(parse_statm_resident("765 382 340 5 0 105 0\n"), Some(382));
        assert_eq!(parse_statm_resident("765"), None);
        assert_eq!(parse_statm_resident(""), None);
        assert_eq!(parse_uptime("263.68 496.92\n"), Some(263.68));
        assert_eq!(parse_uptime("x 1"), None);
        assert_eq!(parse_uptime(""), None);
    }

    #[test]
    fn io_files() {
        let cases = [
            (
                "rchar: 6976\nwchar: 0\nsyscr: 10\nsyscw: 0\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n",
                Some(4096),
                Some(8192),
            ),
            ("rchar: 1\nread_bytes: 7\n", Some(7), None),
            ("write_bytes: 3", None, Some(3)),
            ("read_bytes: lots\nwrite_bytes:\n", None, None),
            ("", None, None),
        ];
        for (text, read, write) in cases {
            assert_eq!(parse_io(text), IoBytes { read, write }, "{text:?}");
        }
    }

    #[test]
    fn cmdlines() {
        let long = format!("{}\0", "x".repeat(600));
        // 511 ASCII bytes then a 2-byte character straddling the cap.
        let straddle = format!("{}é tail\0", "y".repeat(511));
        let cases: Vec<(&[u8], String)> = vec![
            (
                b"/usr/sbin/nginx\0-g\0daemon off;\0",
                "/usr/sbin/nginx -g daemon off;".into(),
            ),
            (b"sleep\0\0x\0", "sleep  x".into()),
            (b"no-trailing-nul", "no-trailing-nul".into()),
            (b"\0\0", String::new()),
            (b"", String::new()),
            (long.as_bytes(), "x".repeat(CMDLINE_CAP)),
            (straddle.as_bytes(), "y".repeat(511)),
        ];
        for (raw, want) in cases {
            let got = parse_cmdline(raw);
            assert!(got.len() <= CMDLINE_CAP);
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn full_names() {
        let cases: &[(&str, &[u8], &str)] = &[
            (
                "systemd-journal",
                b"/usr/lib/systemd/systemd-journald\0",
                "systemd-journald",
            ),
            (
                "containerd-shim",
                b"/usr/bin/containerd-shim-runc-v2\0-namespace\0moby\0",
                "containerd-shim-runc-v2",
            ),
            // Cut comm but argv[0] is something else (changed by the program).
            ("tokio-runtime-w", b"/opt/app/server\0", "tokio-runtime-w"),
            // Whole comm: argv titles are not names.
            ("nginx", b"nginx: master process /usr/sbin/nginx\0", "nginx"),
            ("postgres", b"postgres: 14/main: checkpointer\0", "postgres"),
            // Kernel threads and zombies have no cmdline.
            ("kworker/0:1-eve", b"", "kworker/0:1-eve"),
            ("abcdefghijklmno", b"\0", "abcdefghijklmno"),
            (
                "abcdefghijklmno",
                b"abcdefghijklmnopq\0",
                "abcdefghijklmnopq",
            ),
        ];
        for &(comm, raw, want) in cases {
            assert_eq!(
                full_name(comm, raw),
                want,
                "{comm} {:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn cgroups_and_units() {
        // (cgroup file, path, unit)
        let cases = [
            ("0::/system.slice/nginx.service\n", "/system.slice/nginx.service", "nginx.service"),
            // A service with its own sub-cgroups.
            ("0::/system.slice/docker.service/payload\n", "/system.slice/docker.service/payload", "docker.service"),
            (
                "0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-firefox-1234.scope\n",
                "/user.slice/user-1000.slice/user@1000.service/app.slice/app-firefox-1234.scope",
                "app-firefox-1234.scope",
            ),
            ("0::/user.slice/user-1000.slice\n", "/user.slice/user-1000.slice", "/user.slice/user-1000.slice"),
            ("0::/docker/4f1c2e\n", "/docker/4f1c2e", "/docker/4f1c2e"),
            ("0::/\n", "/", ""),
            ("", "/", ""),
            ("0::/system.slice/gone.service (deleted)\n", "/system.slice/gone.service", "gone.service"),
            // cgroup v1 with systemd.
            (
                "12:pids:/system.slice/sshd.service\n11:memory:/system.slice/sshd.service\n1:name=systemd:/system.slice/sshd.service\n",
                "/system.slice/sshd.service",
                "sshd.service",
            ),
            // Hybrid: unified tree at the root, v1 populated; systemd's wins.
            (
                "9:name=systemd:/system.slice/cron.service\n4:memory:/other\n0::/\n",
                "/system.slice/cron.service",
                "cron.service",
            ),
            // v1 without systemd (a container runtime's own layout).
            (
                "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/b1eb13\n0::/\n",
                "/process_api/b1eb13",
                "/process_api/b1eb13",
            ),
            ("garbage\n\n", "/", ""),
        ];
        for (text, path, unit) in cases {
            assert_eq!(parse_cgroup(text), path, "{text:?}");
            assert_eq!(unit_of(parse_cgroup(text)), unit, "{text:?}");
        }
    }

    #[test]
    fn auxv_page_size() {
        let words = |pairs: &[(usize, usize)]| -> Vec<u8> {
            pairs
                .iter()
                .flat_map(|&(k, v)| [k.to_ne_bytes(), v.to_ne_bytes()])
                .flatten()
                .collect()
        };
        assert_eq!(
            parse_auxv_page_size(&words(&[(33, 1), (6, 4096), (0, 0)])),
            Some(4096)
        );
        assert_eq!(parse_auxv_page_size(&words(&[(6, 65536)])), Some(65536));
        assert_eq!(parse_auxv_page_size(&words(&[(33, 1), (0, 0)])), None);
        assert_eq!(parse_auxv_page_size(&[1, 2, 3]), None);
        let p = page_size();
        assert!(p.is_power_of_two() && p >= 4096, "{p}");
    }

    fn info(pid: u32, cpu: f64, rss: u64, io: f64) -> ProcessInfo {
        ProcessInfo {
            pid,
            name: format!("p{pid}"),
            cpu_pct: cpu,
            rss_bytes: rss,
            read_bytes_per_s: io,
            ..Default::default()
        }
    }

    #[test]
    fn memory_culprits_are_who_grew_not_who_is_big() {
        // a big steady process and a small one growing fast
        let big = ProcessInfo {
            rss_growth_bytes: 0,
            ..info(1, 0.0, 300 << 20, 0.0)
        };
        let growing = ProcessInfo {
            rss_growth_bytes: 64 << 20,
            ..info(2, 0.0, 100 << 20, 0.0)
        };
        let all = [big, growing];
        assert_eq!(top_by(&all, Resource::Memory, 1)[0].pid, 1);
        assert_eq!(top_by(&all, Resource::MemoryGrowth, 1)[0].pid, 2);
    }

    #[test]
    fn top_by_resource() {
        let all = [
            info(5, 10.0, 100, 0.0),
            info(3, 90.0, 50, 1.0),
            info(4, 10.0, 900, 5.0),
            info(1, 0.0, 900, 5.0),
        ];
        let pids = |r, n| top_by(&all, r, n).iter().map(|p| p.pid).collect::<Vec<_>>();
        assert_eq!(pids(Resource::Cpu, 3), vec![3, 4, 5], "ties by pid");
        assert_eq!(pids(Resource::Memory, 2), vec![1, 4]);
        assert_eq!(pids(Resource::Io, 4), vec![1, 4, 3, 5]);
        assert_eq!(pids(Resource::Cpu, 0), Vec::<u32>::new());
        assert_eq!(pids(Resource::Cpu, 10).len(), 4);
    }

    fn stat(pid: u32, ticks: u64, start: u64, io: Option<(u64, u64)>) -> ProcStat {
        ProcStat {
            pid,
            ppid: 1,
            name: format!("p{pid}"),
            cmdline: String::new(),
            unit: String::new(),
            state: 'S',
            threads: 1,
            cpu_ticks: ticks,
            starttime: start,
            rss_bytes: 4096,
            read_bytes: io.map(|i| i.0),
            write_bytes: io.map(|i| i.1),
        }
    }

    fn snap(at: Instant, uptime: Option<f64>, procs: Vec<ProcStat>) -> ProcSnapshot {
        ProcSnapshot {
            at,
            uptime_secs: uptime,
            procs: procs.into_iter().map(|p| (p.pid, p)).collect(),
        }
    }

    #[test]
    fn usage_between_snapshots() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        // Boot was 1000 s before t0.
        let prev = snap(
            t0,
            Some(1000.0),
            vec![
                stat(10, 1000, 50, Some((0, 0))),
                stat(11, 500, 60, None),
                stat(12, 900, 70, Some((100, 100))),
                stat(13, 5, 80, None),
            ],
        );
        let now = snap(
            t1,
            Some(1002.0),
            vec![
                // 300 ticks over 2 s: 150 % of one core (two busy threads).
                stat(10, 1300, 50, Some((4000, 2000))),
                // io denied: no rate.
                stat(11, 600, 60, None),
                // pid 12 reused by a process started 1 s ago.
                stat(12, 40, 100_100, Some((300, 0))),
                // io readable now but not before: no rate.
                stat(13, 5, 80, Some((50, 50))),
                // Started 0.5 s ago: its whole life counts over the interval.
                stat(20, 80, 100_150, Some((1000, 0))),
                // Started long before prev, which missed it: lifetime average.
                stat(21, 1002 * 50, 0, None),
            ],
        );
        let mut got = usage(&prev, &now);
        got.sort_by_key(|p| p.pid);
        let rows: Vec<(u32, f64, f64, f64)> = got
            .iter()
            .map(|p| (p.pid, p.cpu_pct, p.read_bytes_per_s, p.write_bytes_per_s))
            .collect();
        let want = [
            (10, 150.0, 2000.0, 1000.0),
            (11, 50.0, 0.0, 0.0),
            (12, 20.0, 150.0, 0.0),
            (13, 0.0, 0.0, 0.0),
            (20, 40.0, 500.0, 0.0),
            (21, 50.0, 0.0, 0.0),
        ];
        assert_eq!(rows.len(), want.len());
        for (g, w) in rows.iter().zip(want) {
            assert_eq!(g.0, w.0);
            for (a, b) in [(g.1, w.1), (g.2, w.2), (g.3, w.3)] {
                assert!((a - b).abs() < 1e-9, "pid {}: got {g:?}, want {w:?}", g.0);
            }
        }
        assert!(usage(&prev, &prev).is_empty(), "zero interval");
        assert!(usage(&now, &prev).is_empty(), "time going back");
    }

    fn write(root: &Path, rel: &str, content: &[u8]) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(path, content).expect("write fixture");
    }

    fn stat_line(pid: u32, comm: &str, ppid: u32, flags: u64, utime: u64, start: u64) -> String {
        format!("{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 {flags} 0 0 0 0 {utime} 0 0 0 20 0 1 0 {start} 0 0\n")
    }

    #[test]
    fn snapshot_of_fixture_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "uptime", b"500.00 900.00\n");
        write(root, "stat", b"cpu  1 2 3 4\n");
        write(root, "self", b"not a process");
        // A full process.
        write(
            root,
            "100/stat",
            stat_line(100, "systemd-journal", 1, 0x0040_0100, 42, 7).as_bytes(),
        );
        write(root, "100/statm", b"5000 300 10 1 0 100 0\n");
        write(root, "100/io", b"read_bytes: 11\nwrite_bytes: 22\n");
        write(root, "100/cmdline", b"/usr/lib/systemd/systemd-journald\0");
        write(
            root,
            "100/cgroup",
            b"0::/system.slice/systemd-journald.service\n",
        );
        // Another user's process: no io file.
        write(
            root,
            "200/stat",
            stat_line(200, "a (b) c", 1, 0, 1, 8).as_bytes(),
        );
        write(root, "200/statm", b"10 2 0 0 0 0 0\n");
        write(root, "200/cmdline", b"");
        write(root, "200/cgroup", b"0::/\n");
        // Kernel threads, by flag and by parent.
        write(
            root,
            "2/stat",
            stat_line(2, "kthreadd", 0, 0x0020_8040, 0, 1).as_bytes(),
        );
        write(root, "2/statm", b"0 0 0 0 0 0 0\n");
        write(
            root,
            "30/stat",
            stat_line(30, "kworker/0:1", 2, 0x0420_8060, 9, 2).as_bytes(),
        );
        write(root, "30/statm", b"0 0 0 0 0 0 0\n");
        // Vanished between listing and reading: directory left, files gone.
        std::fs::create_dir_all(root.join("300")).expect("mkdir");
        // Vanished after stat was read.
        write(
            root,
            "400/stat",
            stat_line(400, "short", 1, 0, 1, 9).as_bytes(),
        );

        let s = snapshot(root);
        let mut pids: Vec<u32> = s.procs.keys().copied().collect();
        pids.sort_unstable();
        assert_eq!(pids, vec![100, 200]);
        assert_eq!(s.uptime_secs, Some(500.0));
        assert_eq!(
            s.procs[&100],
            ProcStat {
                pid: 100,
                ppid: 1,
                name: "systemd-journald".into(),
                cmdline: "/usr/lib/systemd/systemd-journald".into(),
                unit: "systemd-journald.service".into(),
                state: 'S',
                threads: 1,
                cpu_ticks: 42,
                starttime: 7,
                rss_bytes: 300 * page_size(),
                read_bytes: Some(11),
                write_bytes: Some(22),
            }
        );
        let p = &s.procs[&200];
        assert_eq!(
            (p.name.as_str(), p.cmdline.as_str(), p.unit.as_str()),
            ("a (b) c", "", "")
        );
        assert_eq!((p.read_bytes, p.write_bytes), (None, None));

        assert_eq!(read_one(root, 100).map(|p| p.starttime), Some(7));
        assert_eq!(read_one(root, 2), None, "kernel thread");
        assert_eq!(read_one(root, 300), None, "vanished");
        assert_eq!(read_one(root, 999), None, "never existed");
        assert!(snapshot(&root.join("missing")).procs.is_empty());
    }

    /// Kills the burner child and stops burner threads however the test ends.
    struct Burners {
        child: Child,
        stop: Arc<AtomicBool>,
        threads: Vec<std::thread::JoinHandle<()>>,
    }

    impl Drop for Burners {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.stop.store(true, AtomicOrdering::Relaxed);
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }

    fn thread_ids() -> Vec<u32> {
        std::fs::read_dir("/proc/self/task")
            .expect("/proc/self/task")
            .filter_map(|e| parse_pid(&e.ok()?.file_name()))
            .collect()
    }

    /// The calling thread's id, from `/proc/thread-self` -> `PID/task/TID`.
    fn own_tid() -> u32 {
        let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
        parse_pid(link.file_name().expect("PID/task/TID")).expect("numeric tid")
    }

    fn thread_ticks(tids: &[u32]) -> u64 {
        tids.iter()
            .map(|t| {
                let raw = std::fs::read(format!("/proc/self/task/{t}/stat")).expect("task stat");
                parse_stat(&raw).expect("task stat parses").cpu_ticks
            })
            .sum()
    }

    #[test]
    fn real_processes_this_host() {
        let proc_root = PathBuf::from("/proc");
        let stop = Arc::new(AtomicBool::new(false));
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        // Two threads of this process burn half the time: enough ticks to
        // see them folded into the process, without starving the child on a
        // small, busy machine.
        let threads = (0..2)
            .map(|_| {
                let stop = Arc::clone(&stop);
                let tid_tx = tid_tx.clone();
                std::thread::spawn(move || {
                    let _ = tid_tx.send(own_tid());
                    let mut x = 0u64;
                    while !stop.load(AtomicOrdering::Relaxed) {
                        let until = Instant::now() + Duration::from_millis(5);
                        while Instant::now() < until {
                            x = std::hint::black_box(x.wrapping_add(1));
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        let child = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sh");
        let burners = Burners {
            child,
            stop,
            threads,
        };
        let child_pid = burners.child.id();
        let me = std::process::id();
        let burner_tids: Vec<u32> = (0..2)
            .map(|_| tid_rx.recv().expect("burner thread reports its tid"))
            .collect();
        assert!(burner_tids.iter().all(|&t| t != me));

        // Other builds may share the cores; a few windows give the child a
        // fair chance to show it is busy.
        let mut attempts = 0;
        let (before, after, threads_delta) = loop {
            attempts += 1;
            let ticks0 = thread_ticks(&burner_tids);
            let before = snapshot(&proc_root);
            std::thread::sleep(Duration::from_millis(1500));
            let after = snapshot(&proc_root);
            let threads_delta = thread_ticks(&burner_tids) - ticks0;
            let child_cpu = usage(&before, &after)
                .iter()
                .find(|p| p.pid == child_pid)
                .map_or(0.0, |p| p.cpu_pct);
            if child_cpu > 30.0 || attempts == 8 {
                break (before, after, threads_delta);
            }
        };
        let all = usage(&before, &after);
        let top = top_by(&all, Resource::Cpu, 10);
        let child = top
            .iter()
            .find(|p| p.pid == child_pid)
            .unwrap_or_else(|| panic!("child {child_pid} not among {top:?}"));
        // A busy loop takes a whole core on an idle host; on a host whose cores are all busy
        // (a build beside the tests) it gets its share, which was 27 % on two cores.
        assert!(child.cpu_pct > 10.0, "{child:?}");
        assert_eq!(child.name, "sh");
        assert!(child.cmdline.contains("while :; do :; done"), "{child:?}");

        // The burner threads' CPU is counted in this process. The process
        // table is read inside the threads' window, so allow a few ticks.
        let own = |s: &ProcSnapshot| s.procs[&me].cpu_ticks;
        let own_delta = own(&after) - own(&before);
        assert!(threads_delta >= 10, "burners barely ran: {threads_delta}");
        assert!(
            own_delta + 5 >= threads_delta,
            "process {own_delta} ticks < its threads' {threads_delta}"
        );
        assert!(after.procs[&me].threads >= 3);

        // Threads are not processes, kernel threads are not listed.
        let tids = thread_ids();
        assert!(burner_tids.iter().all(|t| tids.contains(t)));
        for tid in tids.iter().filter(|&&t| t != me) {
            assert!(all.iter().all(|p| p.pid != *tid), "thread {tid} listed");
            assert!(!after.procs.contains_key(tid), "thread {tid} in the table");
        }
        assert!(all.iter().all(|p| p.pid != 2), "kthreadd listed");
        assert!(
            after.procs.values().all(|p| p.ppid != 2 && p.pid != 2),
            "kernel threads listed"
        );
        for p in &all {
            assert!(p.cpu_pct >= 0.0 && p.cpu_pct.is_finite(), "{p:?}");
        }
        assert_eq!(read_one(&proc_root, me).map(|p| p.pid), Some(me));
        assert_eq!(read_one(&proc_root, 2), None);
        // A thread id is not a process, even though /proc/TID opens.
        assert!(proc_root
            .join(burner_tids[0].to_string())
            .join("stat")
            .exists());
        drop(burners);
    }
}
