//! A drill on a busy host. A control plane and one agent learn their
//! baseline under a steady background load (an fsync'ing `dd` loop, a
//! process holding 300 MiB, one-second CPU bursts); a quiet phase with only
//! that load must open no event; then faults are injected one at a time and
//! overlapping: a CPU runaway (stopped by an `auto` rule), memory growth, a
//! filling file system (a loop-mounted ext4 image, root only) and I/O
//! saturation, the CPU runaway once more while the I/O saturation runs.
//!
//! For each fault it measures fault → open event of the fault's family,
//! whether the culprit is named, fault → remediated (CPU) and cause stopped →
//! event closed, and prints a table. Behaviour is asserted; timing is only
//! reported (targets: fault → event ≤ 3 s, fault → remediated ≤ 5 s p90).
//!
//! `SCO_DRILL_SIZE=short` (default: a few minutes) or `full` (10 CPU
//! runaways, three of every other fault, a 10-minute quiet phase).
//! `SCO_DRILL_WARMUP_SECS`, `SCO_DRILL_QUIET_SECS`, `SCO_DRILL_CPU_RUNS` and
//! `SCO_DRILL_RUNAWAY_PROCS` (busy loops per CPU runaway, default half the
//! CPUs rounded up) override single figures; `SCO_DRILL_DB=postgres` runs
//! it on the server of `SCO_TEST_POSTGRES_URL`; `SCO_DRILL_LOG_DIR` keeps
//! the agent's and the control plane's logs. `SCO_DRILL_BACKGROUND=database`
//! makes the host a database server instead of the synthetic load: `pgbench`
//! against the PostgreSQL of `SCO_TEST_POSTGRES_URL` (a database
//! `sco_bench_drill`, scale 20), four clients at a rate that changes every 45 s
//! (25 to 400 transactions a second). `scripts/drill.sh` builds the
//! binaries and runs it.
//!
//! Long (about 1,400 lines) because the drill is one scenario runner (faults, load, measurements,
//! the table) and its faults; each fault is a few lines of its own.

use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sco_tests::{patience, Db, Sandbox};
use serde_json::Value;

const HOST: &str = "drill-agent";
const ADMIN_PASSWORD: &str = "admin-password-1";
/// `policy/rule`, as the actions name it.
const RULE: &str = "drill/stop-runaway";
const POLL: Duration = Duration::from_millis(200);
/// Pause after every fault's events have closed, before the next fault.
const GAP: Duration = Duration::from_secs(3);

/// How long and how often.
#[derive(Debug)]
struct Size {
    name: &'static str,
    warmup_secs: u64,
    quiet_secs: u64,
    cpu_runs: usize,
    other_runs: usize,
    overlap_runs: usize,
    /// Shortest I/O saturation.
    io_secs: u64,
}

fn env_u64(key: &str) -> Option<u64> {
    let v = std::env::var(key).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{key}={v:?} is not a number")),
    )
}

impl Size {
    fn from_env() -> Self {
        let size = std::env::var("SCO_DRILL_SIZE").unwrap_or_default();
        let full = match size.as_str() {
            "" | "short" => false,
            "full" => true,
            other => panic!("SCO_DRILL_SIZE={other:?} is not short or full"),
        };
        let (quiet_secs, cpu_runs, other_runs) = if full { (600, 10, 3) } else { (60, 3, 1) };
        Self {
            name: if full { "full" } else { "short" },
            warmup_secs: env_u64("SCO_DRILL_WARMUP_SECS").unwrap_or(120),
            quiet_secs: env_u64("SCO_DRILL_QUIET_SECS").unwrap_or(quiet_secs),
            cpu_runs: env_u64("SCO_DRILL_CPU_RUNS").map_or(cpu_runs, |n| n as usize),
            other_runs,
            overlap_runs: other_runs,
            io_secs: 20,
        }
    }
}

/// The agent's detection settings: a warm-up under the background load, two
/// seconds over the threshold to open, ten under the clear level to close, no
/// hold after that (each fault its own event, measured as it closes).
/// The space of the root file system is not scored: it is shared with
/// whatever else runs on the machine (on CI, other builds and their temporary
/// files), which filled it by several points during runs and opened events no
/// fault of the drill explains. The drill fills its own loop-mounted file
/// system instead.
fn detect_toml(warmup_secs: u64) -> String {
    format!(
        "[detect]\nwarmup_secs = {warmup_secs}\nmin_duration_secs = 1\nclear_secs = 10\nmerge_secs = 0\n\
         update_every_secs = 2\ncontext_secs = 10\n\
         ignore = [\"disk.used_pct:/\", \"disk.used_bytes:/\"]\n"
    )
}

/// The rule that stops a CPU runaway: on a CPU event (not an I/O event, which names
/// `cpu.iowait_pct`), the heaviest matching process only.
const POLICY: &str = r#"
name: drill
rules:
  - name: stop-runaway
    when: { anomaly: { families: [cpu] }, for_secs: 1 }
    action: { type: kill_process, top_consumer: cpu, pattern: "*drill-runaway*", grace_secs: 2 }
    mode: auto
    cooldown_secs: 0
    max_per_hour: 60
    verify: { metric: cpu.total_pct, below: 90, within_secs: 30 }
"#;

/// The database background: `pgbench` against `$1` for ever, four clients, the rate changing
/// every 45 s.
const BG_DATABASE: &str = "while :; do for r in 50 200 100 400 25 300; do \
    pgbench -n -c 4 -j 2 -T 45 -R $r \"$1\" >/dev/null 2>&1 || sleep 5; done; done";

/// A `pgbench` database of scale 20 on the server of `SCO_TEST_POSTGRES_URL` (dropped and made
/// again); returns its URL.
fn bench_database() -> String {
    let base = std::env::var("SCO_TEST_POSTGRES_URL")
        .expect("SCO_DRILL_BACKGROUND=database needs SCO_TEST_POSTGRES_URL");
    let (server, _) = base
        .rsplit_once('/')
        .expect("SCO_TEST_POSTGRES_URL ends in /database");
    for sql in [
        "DROP DATABASE IF EXISTS sco_bench_drill",
        "CREATE DATABASE sco_bench_drill",
    ] {
        run_cmd("psql", &[&base, "-qc", sql]).unwrap_or_else(|e| panic!("{e}"));
    }
    let url = format!("{server}/sco_bench_drill");
    run_cmd("pgbench", &["-i", "-q", "-s", "20", &url]).unwrap_or_else(|e| panic!("{e}"));
    url
}

/// Holds 300 MiB and writes to every page of it every two seconds.
const BG_MEM: &str = "import time
b = bytearray(300 << 20)
n = len(b) // 4096
v = 0
while True:
    v = (v + 1) % 256
    b[::4096] = bytes([v]) * n
    time.sleep(2)
";

/// One core busy for one second every eight.
const BG_CPU: &str = "import time
while True:
    t = time.time()
    while time.time() - t < 1.0:
        pass
    time.sleep(7)
";

/// Grows by 64 MiB/s (16 MiB every 250 ms, every page touched) up to
/// `argv[2]` bytes, then holds.
const MEM_GROW: &str = "import sys, time
cap = int(sys.argv[2])
step = 16 << 20
chunks = []
start = time.time()
while len(chunks) * step < cap:
    c = bytearray(step)
    c[::4096] = b'\\x01' * (step // 4096)
    chunks.append(c)
    time.sleep(max(0.0, start + len(chunks) * 0.25 - time.time()))
while True:
    time.sleep(1)
";

/// Direct (uncached) writes back to back; `conv=fsync` where the file system
/// refuses O_DIRECT.
const IO_SAT: &str = "while :; do
  dd if=/dev/zero of=\"$1\" bs=1M count=1024 oflag=direct 2>/dev/null ||
    dd if=/dev/zero of=\"$1\" bs=1M count=1024 conv=fsync 2>/dev/null
done";

const BG_IO: &str =
    "while :; do dd if=/dev/zero of=\"$1\" bs=1M count=32 conv=fsync 2>/dev/null; sleep 4; done";

const BUSY_LOOP: &str = "while :; do :; done";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A spawned process in a process group of its own; the group is killed
/// when it is dropped, whatever happened (shell loops leave `dd` children).
struct Job {
    child: Child,
}

impl Job {
    fn spawn(program: &str, args: &[&str]) -> Self {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program} {args:?}: {e}"));
        Self { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reaps the process once it has exited.
    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn stop(&mut self) {
        // Only while the leader lives (a zombie counts) is its pid surely
        // still this group's id.
        if self.running() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.pid())])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Copies the sandbox's logs to `SCO_DRILL_LOG_DIR`, when set, however the
/// drill ends (dropped before the sandbox's directory).
struct KeepLogs(PathBuf);

impl Drop for KeepLogs {
    fn drop(&mut self) {
        let Some(to) = std::env::var_os("SCO_DRILL_LOG_DIR") else {
            return;
        };
        let to = PathBuf::from(to);
        let _ = std::fs::create_dir_all(&to);
        let logs = std::fs::read_dir(&self.0).into_iter().flatten().flatten();
        for log in logs.filter(|f| f.path().extension().is_some_and(|x| x == "log")) {
            if let Err(e) = std::fs::copy(log.path(), to.join(log.file_name())) {
                eprintln!("drill: keeping {}: {e}", log.path().display());
            }
        }
        eprintln!("drill: logs kept in {}", to.display());
    }
}

fn run_cmd(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {} {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A 256 MiB ext4 image on a loop device, mounted; unmounted and detached
/// when dropped, also when only half set up.
struct LoopMount {
    mountpoint: PathBuf,
    device: Option<String>,
    mounted: bool,
}

impl LoopMount {
    fn create(dir: &Path) -> Result<Self, String> {
        let image = dir.join("fill.img");
        let mut m = Self {
            mountpoint: dir.join("fill"),
            device: None,
            mounted: false,
        };
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(256 << 20))
            .map_err(|e| format!("{}: {e}", image.display()))?;
        let image = image.to_str().ok_or("temp path is not UTF-8")?;
        let device = run_cmd("losetup", &["--find", "--show", image])?
            .trim()
            .to_string();
        m.device = Some(device.clone());
        run_cmd("mkfs.ext4", &["-q", "-F", "-m", "0", &device])?;
        std::fs::create_dir_all(&m.mountpoint).map_err(|e| e.to_string())?;
        let mountpoint = m.mountpoint.to_str().ok_or("temp path is not UTF-8")?;
        run_cmd("mount", &[&device, mountpoint])?;
        m.mounted = true;
        Ok(m)
    }

    /// (size, available) in bytes.
    fn usage(&self) -> Option<(u64, u64)> {
        let mountpoint = self.mountpoint.to_str()?;
        let out = run_cmd("df", &["-B1", "--output=size,avail", mountpoint]).ok()?;
        let mut numbers = out
            .lines()
            .nth(1)?
            .split_whitespace()
            .map(|n| n.parse().ok());
        Some((numbers.next()??, numbers.next()??))
    }

    fn used_pct(&self) -> f64 {
        self.usage().map_or(f64::NAN, |(size, avail)| {
            100.0 * (size - avail) as f64 / size as f64
        })
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        if self.mounted {
            let mountpoint = self.mountpoint.display().to_string();
            if let Err(e) = run_cmd("umount", &[&mountpoint]) {
                eprintln!("drill: {e}; detaching lazily");
                if let Err(e) = run_cmd("umount", &["-l", &mountpoint]) {
                    eprintln!("drill: {e}");
                }
            }
        }
        if let Some(device) = &self.device {
            if let Err(e) = run_cmd("losetup", &["-d", device]) {
                eprintln!("drill: {e}");
            }
        }
    }
}

/// The family of a metric key, as the detector assigns it.
fn metric_family(metric: &str) -> &'static str {
    let base = metric.split(':').next().unwrap_or(metric);
    let starts = |p: &str| base.starts_with(p);
    if starts("cpu.") || starts("psi.cpu.") || starts("load.") {
        "cpu"
    } else if starts("mem.") || starts("swap.") || starts("psi.memory.") {
        "memory"
    } else if starts("disk.used_") {
        "disk_space"
    } else if starts("disk.") || starts("psi.io.") {
        "disk_io"
    } else if starts("net.") {
        "network"
    } else if starts("proc.") {
        "processes"
    } else {
        "host"
    }
}

/// The event's `family`, when the control plane reports one.
fn explicit_family(e: &Value) -> Option<&str> {
    e["family"].as_str().filter(|f| !f.is_empty())
}

/// Whether `e` is about `family`: its `family` field, or, from a control
/// plane without that field, any of its metrics in that family.
fn is_family(e: &Value, family: &str) -> bool {
    match explicit_family(e) {
        Some(f) => f == family,
        None => {
            let contributors = e["contributors"].as_array().cloned().unwrap_or_default();
            std::iter::once(&e["top_metric"])
                .chain(contributors.iter().map(|c| &c["metric"]))
                .filter_map(Value::as_str)
                .any(|m| metric_family(m) == family)
        }
    }
}

/// Whether an event that was open before the fault shows it: a filled file system among
/// its contributors (`marker` is the mount point); any other fault cannot be told apart from
/// what opened the event, so an open event of its family is all that is asked.
fn names_fault(e: &Value, fault: Fault, marker: &str) -> bool {
    if fault != Fault::DiskSpace {
        return e["status"] == "open";
    }
    let contributors = e["contributors"].as_array().cloned().unwrap_or_default();
    std::iter::once(&e["top_metric"])
        .chain(contributors.iter().map(|c| &c["metric"]))
        .filter_map(Value::as_str)
        .any(|m| m.ends_with(&format!(":{marker}")))
}

fn describe(e: &Value) -> String {
    format!(
        "{} family={} top={} severity={} peak score={:.2} now={:.2}",
        e["id"].as_str().unwrap_or("?"),
        explicit_family(e).unwrap_or("(none)"),
        e["top_metric"].as_str().unwrap_or("?"),
        e["severity"].as_str().unwrap_or("?"),
        e["peak_score"].as_f64().unwrap_or(f64::NAN),
        e["score"].as_f64().unwrap_or(f64::NAN),
    )
}

fn describe_culprits(e: &Value) -> String {
    let Some(culprits) = e["culprits"].as_array() else {
        return "no culprits field".into();
    };
    if culprits.is_empty() {
        return "culprits empty".into();
    }
    culprits
        .iter()
        .take(3)
        .map(|c| {
            format!(
                "{}:{} cpu={:.0}% rss={}M w={}K/s",
                c["pid"],
                c["name"].as_str().unwrap_or("?"),
                c["cpu_pct"].as_f64().unwrap_or(f64::NAN),
                c["rss_bytes"].as_u64().unwrap_or(0) >> 20,
                c["write_bytes_per_s"].as_f64().unwrap_or(0.0) as u64 >> 10,
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Position of the first culprit that is one of `pids` or whose command
/// line carries `marker`.
fn culprit_rank(e: &Value, pids: &[u32], marker: &str) -> Option<usize> {
    e["culprits"].as_array()?.iter().position(|c| {
        c["pid"]
            .as_u64()
            .is_some_and(|p| pids.iter().any(|&q| u64::from(q) == p))
            || c["cmdline"].as_str().is_some_and(|l| l.contains(marker))
    })
}

const FINAL_STATES: [&str; 6] = [
    "succeeded",
    "failed",
    "refused",
    "expired",
    "rejected",
    "dry_run",
];

fn is_final(action: &Value) -> bool {
    FINAL_STATES.contains(&action["state"].as_str().unwrap_or_default())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Cpu,
    CpuDuringIo,
    Memory,
    DiskSpace,
    DiskIo,
    /// The I/O saturation a [`Fault::CpuDuringIo`] runs in.
    DiskIoUnderCpu,
}

impl Fault {
    const ALL: [Fault; 6] = [
        Fault::Cpu,
        Fault::CpuDuringIo,
        Fault::Memory,
        Fault::DiskSpace,
        Fault::DiskIo,
        Fault::DiskIoUnderCpu,
    ];

    fn family(self) -> &'static str {
        match self {
            Fault::Cpu | Fault::CpuDuringIo => "cpu",
            Fault::Memory => "memory",
            Fault::DiskSpace => "disk_space",
            Fault::DiskIo | Fault::DiskIoUnderCpu => "disk_io",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Fault::Cpu => "cpu runaway",
            Fault::CpuDuringIo => "cpu runaway + io",
            Fault::Memory => "memory growth",
            Fault::DiskSpace => "disk filling",
            Fault::DiskIo => "io saturation",
            Fault::DiskIoUnderCpu => "io + cpu runaway",
        }
    }

    fn is_cpu(self) -> bool {
        matches!(self, Fault::Cpu | Fault::CpuDuringIo)
    }
}

/// What one injected fault did.
#[derive(Debug)]
struct Run {
    fault: Fault,
    n: usize,
    /// Why the fault was not injected.
    skipped: Option<String>,
    /// The event, as first seen open.
    event: Option<Value>,
    /// Fault → event visible through the REST API.
    detect: Option<Duration>,
    /// Whether the culprit was named (`None`: not applicable).
    culprit: Option<bool>,
    /// CPU: injected processes that died, of all.
    killed: (usize, usize),
    /// CPU: fault → every injected process dead.
    remediated: Option<Duration>,
    /// CPU: the rule's action for this fault.
    action_state: String,
    /// When the fault was injected and when its cause stopped (Unix ms).
    started_ms: i64,
    stopped_ms: Option<i64>,
    /// Cause stopped → the event's `ended_ms`.
    close: Option<i64>,
    closed: bool,
    /// The fault joined an event of its family that was already open (one event per family:
    /// a second cause updates it); its culprits were read at that event's onset.
    absorbed: bool,
    notes: Vec<String>,
}

impl Run {
    fn new(fault: Fault, n: usize) -> Self {
        Self {
            fault,
            n,
            skipped: None,
            event: None,
            detect: None,
            culprit: None,
            killed: (0, 0),
            remediated: None,
            action_state: String::new(),
            started_ms: 0,
            stopped_ms: None,
            close: None,
            closed: false,
            absorbed: false,
            notes: Vec::new(),
        }
    }

    fn event_id(&self) -> Option<String> {
        Some(self.event.as_ref()?["id"].as_str()?.to_string())
    }

    fn detected_explicitly(&self) -> bool {
        self.event
            .as_ref()
            .is_some_and(|e| explicit_family(e) == Some(self.fault.family()))
    }

    fn summary(&self) -> String {
        let secs =
            |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64()));
        let mut s = format!("{} #{}: ", self.fault.label(), self.n);
        if let Some(reason) = &self.skipped {
            s.push_str(&format!("skipped ({reason})"));
            return s;
        }
        s.push_str(&format!(
            "event {} {}",
            secs(self.detect),
            self.event.as_ref().map_or("none".into(), describe)
        ));
        if let Some(e) = &self.event {
            s.push_str(&format!(
                "; culprit {} [{}]",
                match self.culprit {
                    Some(true) => "named",
                    Some(false) => "NOT named",
                    None => "n/a",
                },
                describe_culprits(e)
            ));
        }
        if self.fault.is_cpu() {
            s.push_str(&format!(
                "; killed {}/{} at {}; action {}",
                self.killed.0,
                self.killed.1,
                secs(self.remediated),
                self.action_state
            ));
        }
        s.push_str(&format!(
            "; closed {}",
            match (self.closed, self.close) {
                (true, Some(ms)) => format!("{:.1}s after the cause stopped", ms as f64 / 1000.0),
                (true, None) => "(no ended_ms)".into(),
                (false, _) => "no".into(),
            }
        ));
        for note in &self.notes {
            s.push_str(&format!("; {note}"));
        }
        s
    }
}

struct Drill<'a> {
    sb: &'a Sandbox,
    /// Access tokens live 15 minutes; a full drill lasts longer.
    token: Mutex<String>,
    python: String,
    work: PathBuf,
    size: Size,
    cpus: usize,
    /// Busy loops per CPU runaway.
    runaways: usize,
    mem_cap: u64,
    runs: Vec<Run>,
}

impl Drill<'_> {
    async fn get(&self, path: &str) -> Value {
        let token = self.token.lock().expect("token lock").clone();
        let (mut status, mut body) = self.sb.get(&token, path).await;
        if status == 401 {
            let fresh = self.sb.login("admin", ADMIN_PASSWORD).await;
            *self.token.lock().expect("token lock") = fresh.clone();
            (status, body) = self.sb.get(&fresh, path).await;
        }
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn open_events(&self) -> Vec<Value> {
        let body = self
            .get(&format!("/anomaly?host={HOST}&status=open&limit=1000"))
            .await;
        body["anomalies"].as_array().cloned().unwrap_or_default()
    }

    /// Events that started at or after `from_ms`, oldest first.
    async fn events_since(&self, from_ms: i64) -> Vec<Value> {
        let mut all = Vec::new();
        let mut offset = 0;
        loop {
            let body = self
                .get(&format!(
                    "/anomaly?host={HOST}&from={from_ms}&limit=1000&offset={offset}"
                ))
                .await;
            all.extend(body["anomalies"].as_array().cloned().unwrap_or_default());
            match body["next_offset"].as_i64() {
                Some(next) => offset = next,
                None => break,
            }
        }
        all.reverse();
        all
    }

    async fn event(&self, id: &str) -> Value {
        self.get(&format!("/anomaly/{id}")).await["anomaly"].clone()
    }

    /// Just before a fault: the ids of the open events of its family (one
    /// of them would hide the fault's own event).
    async fn begin(&self, run: &mut Run) -> HashSet<String> {
        run.started_ms = now_ms();
        let open: Vec<Value> = self
            .open_events()
            .await
            .into_iter()
            .filter(|e| is_family(e, run.fault.family()))
            .collect();
        for e in &open {
            run.notes
                .push(format!("already open at injection: {}", describe(e)));
        }
        open.iter()
            .filter_map(|e| Some(e["id"].as_str()?.to_string()))
            .collect()
    }

    /// An open event of `family` that was not open before the fault.
    async fn new_event(&self, family: &str, before: &HashSet<String>) -> Option<Value> {
        self.open_events().await.into_iter().find(|e| {
            is_family(e, family) && e["id"].as_str().is_some_and(|id| !before.contains(id))
        })
    }

    /// Waits for the fault's event; then checks its culprits.
    async fn detect(
        &self,
        run: &mut Run,
        before: &HashSet<String>,
        t0: Instant,
        pids: &[u32],
        marker: &str,
    ) {
        self.detect_among(run, before, &HashSet::new(), t0, pids, marker)
            .await;
    }

    /// [`Drill::detect`], where the events in `ignore` (open before the fault, about something
    /// else) are neither joined nor taken for the fault's own.
    async fn detect_among(
        &self,
        run: &mut Run,
        before: &HashSet<String>,
        ignore: &HashSet<String>,
        t0: Instant,
        pids: &[u32],
        marker: &str,
    ) {
        let deadline = t0 + patience();
        if let Some(id) = before.iter().next() {
            // An event of the fault's family is open already (something else on the host,
            // such as another tenant filling the root file system): the fault joins it (one
            // event per family). It counts as seen once the event names the fault.
            run.absorbed = true;
            while Instant::now() < deadline {
                let e = self.event(id).await;
                let named = e["status"] == "open" && names_fault(&e, run.fault, marker);
                run.event = Some(e);
                if named {
                    run.notes.push(format!(
                        "joined the open {} event, which named it after {:.1}s",
                        run.fault.family(),
                        t0.elapsed().as_secs_f64()
                    ));
                    break;
                }
                tokio::time::sleep(POLL).await;
            }
            if !run
                .event
                .as_ref()
                .is_some_and(|e| names_fault(e, run.fault, marker))
            {
                run.notes.push(format!(
                    "the open {} event it joined never named it",
                    run.fault.family()
                ));
                run.event = None;
            }
            return;
        }
        let known: HashSet<String> = before.union(ignore).cloned().collect();
        while Instant::now() < deadline {
            if let Some(e) = self.new_event(run.fault.family(), &known).await {
                run.detect = Some(t0.elapsed());
                run.event = Some(e);
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        self.check_culprit(run, pids, marker).await;
    }

    /// Culprits are read at onset; the list item carries them, else the
    /// single-event read may.
    async fn check_culprit(&self, run: &mut Run, pids: &[u32], marker: &str) {
        if run.fault == Fault::DiskSpace {
            // Space is taken by a file, not by a running process.
            return;
        }
        let Some(id) = run.event_id() else {
            return;
        };
        let mut event = run.event.clone().unwrap_or_default();
        if !event["culprits"].is_array() {
            let full = self.event(&id).await;
            if full["culprits"].is_array() {
                event = full;
                run.event = Some(event.clone());
            }
        }
        let rank = culprit_rank(&event, pids, marker);
        if let Some(k) = rank.filter(|&k| k > 0) {
            run.notes
                .push(format!("the injected process is culprit #{}", k + 1));
        }
        // A runaway started during an I/O saturation may find the cpu event opened by the
        // writer's own system time (and a background burst) a moment before it: then it is
        // one of the culprits read at that onset, not necessarily the first.
        run.culprit = Some(if run.fault == Fault::Cpu {
            rank == Some(0)
        } else {
            rank.is_some()
        });
    }

    /// Waits for the run's event to close; `stopped_ms` is when its cause
    /// stopped.
    async fn wait_closed(&self, run: &mut Run, stopped_ms: i64) {
        run.stopped_ms = Some(stopped_ms);
        let Some(id) = run.event_id() else {
            return;
        };
        let deadline = Instant::now() + patience();
        loop {
            let e = self.event(&id).await;
            if e["status"] == "closed" {
                run.closed = true;
                run.close = e["ended_ms"].as_i64().map(|t| t - stopped_ms);
                if run.close.is_some_and(|c| c < 0) {
                    run.notes.push("closed before its cause stopped".into());
                }
                let reason = e["close_reason"].as_str().unwrap_or_default();
                if !reason.starts_with("recovered") {
                    run.notes.push(format!("close_reason {reason:?}"));
                }
                return;
            }
            if Instant::now() > deadline {
                run.notes.push(format!("still open: {}", describe(&e)));
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until nothing is open, then a little more.
    async fn settle(&self) {
        let deadline = Instant::now() + patience();
        loop {
            let open = self.open_events().await;
            if open.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                let open: Vec<String> = open.iter().map(describe).collect();
                eprintln!("drill: still open before the next fault: {open:?}");
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        tokio::time::sleep(GAP).await;
    }

    /// The rule's action for this fault: the one whose report names one of
    /// `pids`, else the newest one created since the fault.
    async fn action_for(&self, pids: &[u32], since_ms: i64) -> Option<Value> {
        let body = self
            .get(&format!(
                "/remediation/actions?host={HOST}&rule={RULE}&limit=100"
            ))
            .await;
        let actions = body["actions"].as_array().cloned().unwrap_or_default();
        let names_ours = |a: &&Value| {
            a["report"]["pids"].as_array().is_some_and(|ps| {
                ps.iter().any(|p| {
                    p["pid"]
                        .as_u64()
                        .is_some_and(|p| pids.iter().any(|&q| u64::from(q) == p))
                })
            })
        };
        actions
            .iter()
            .find(names_ours)
            .or_else(|| {
                actions
                    .iter()
                    .find(|a| a["created_at_ms"].as_i64().is_some_and(|t| t >= since_ms))
            })
            .cloned()
    }

    /// One runaway: `cpus` busy loops whose command lines carry the rule's
    /// pattern. Done when the event is seen, the loops are dead and the
    /// action is final, or at the end of the sandbox's patience.
    async fn cpu_runaway(&self, fault: Fault, n: usize) -> Run {
        let mut run = Run::new(fault, n);
        let marker = format!("drill-runaway-{n}");
        let before = self.begin(&mut run).await;
        let since_ms = now_ms();
        let t0 = Instant::now();
        let mut procs: Vec<Job> = (0..self.runaways)
            .map(|_| Job::spawn("sh", &["-c", BUSY_LOOP, &marker]))
            .collect();
        let pids: Vec<u32> = procs.iter().map(Job::pid).collect();
        let mut dead_ms = None;
        let mut action: Option<Value> = None;
        let deadline = t0 + patience();
        if let Some(id) = before.iter().next() {
            // a cpu event is open already (the I/O writer's own CPU time, for example): the
            // runaway joins it, and the rule that names cpu acts on it
            run.event = Some(self.event(id).await);
            run.absorbed = true;
            run.notes
                .push("joined the open cpu event (no fault→event time)".into());
        }
        while Instant::now() < deadline {
            if run.event.is_none() {
                if let Some(e) = self.new_event("cpu", &before).await {
                    run.detect = Some(t0.elapsed());
                    run.event = Some(e);
                }
            }
            if dead_ms.is_none() && procs.iter_mut().all(|p| !p.running()) {
                dead_ms = Some(now_ms());
                run.remediated = Some(t0.elapsed());
            }
            // A refused firing may be followed by one that acts.
            if dead_ms.is_none() || !action.as_ref().is_some_and(is_final) {
                action = self.action_for(&pids, since_ms).await;
            }
            if run.event.is_some() && dead_ms.is_some() && action.as_ref().is_some_and(is_final) {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        let alive = procs.iter_mut().map(Job::running).filter(|r| *r).count();
        run.killed = (pids.len() - alive, pids.len());
        match &action {
            Some(a) => {
                run.action_state = a["state"].as_str().unwrap_or("?").to_string();
                let reason = a["reason"].as_str().unwrap_or_default();
                if run.action_state != "succeeded" && !reason.is_empty() {
                    run.notes.push(format!("action reason: {reason}"));
                }
            }
            None => run.action_state = "none".into(),
        }
        let stopped_ms = dead_ms.unwrap_or_else(|| {
            procs.iter_mut().for_each(Job::stop);
            run.notes
                .push("not remediated in time: stopped by the drill".into());
            now_ms()
        });
        self.check_culprit(&mut run, &pids, &marker).await;
        // during an I/O saturation too: the writer's own CPU time is the I/O event's symptom,
        // so the runaway's event closes once the runaway is gone, while the I/O goes on
        self.wait_closed(&mut run, stopped_ms).await;
        run
    }

    async fn memory_growth(&self, n: usize) -> Run {
        let mut run = Run::new(Fault::Memory, n);
        let marker = format!("drill-memgrow-{n}");
        let before = self.begin(&mut run).await;
        let t0 = Instant::now();
        let mut job = Job::spawn(
            &self.python,
            &["-c", MEM_GROW, &marker, &self.mem_cap.to_string()],
        );
        self.detect(&mut run, &before, t0, &[job.pid()], &marker)
            .await;
        job.stop();
        let stopped_ms = now_ms();
        self.wait_closed(&mut run, stopped_ms).await;
        run
    }

    async fn disk_filling(&self, n: usize, mount: Result<&LoopMount, &str>) -> Run {
        let mut run = Run::new(Fault::DiskSpace, n);
        let mount = match mount {
            Ok(m) => m,
            Err(reason) => {
                run.skipped = Some(reason.to_string());
                return run;
            }
        };
        let Some((size, avail)) = mount.usage() else {
            run.skipped = Some("df failed on the loop mount".into());
            return run;
        };
        let marker = format!("drill-fill-{n}");
        let file = mount.mountpoint.join(&marker);
        let path = file.display().to_string();
        let bytes = avail.saturating_sub(size * 3 / 100);
        let mountpoint = mount.mountpoint.display().to_string();
        let mut before = self.begin(&mut run).await;
        // every mount has its own disk-space event: another file system's open event (another
        // tenant filling `/`) is not this fault's, which must open its own
        let mut others = HashSet::new();
        for id in &before {
            if !names_fault(&self.event(id).await, Fault::DiskSpace, &mountpoint) {
                others.insert(id.clone());
            }
        }
        let open_here: HashSet<String> = before.difference(&others).cloned().collect();
        before = open_here;
        let ignore = others;
        let t0 = Instant::now();
        // fallocate takes the space without writing it, so the fault is
        // the space alone, not also a burst of writes.
        if let Err(e) = run_cmd("fallocate", &["-l", &bytes.to_string(), &path]) {
            run.notes.push(format!("{e}; writing instead"));
            let count = format!("count={}", bytes >> 20);
            let of = format!("of={path}");
            if let Err(e) = run_cmd("dd", &["if=/dev/zero", &of, "bs=1M", &count, "conv=fsync"]) {
                run.notes.push(e);
            }
        }
        run.notes
            .push(format!("filled to {:.1}%", mount.used_pct()));
        self.detect_among(&mut run, &before, &ignore, t0, &[], &mountpoint)
            .await;
        if let Err(e) = std::fs::remove_file(&file) {
            run.notes.push(format!("remove {path}: {e}"));
        }
        let stopped_ms = now_ms();
        self.wait_closed(&mut run, stopped_ms).await;
        run
    }

    /// Starts an I/O saturation and waits for its event.
    async fn start_io(&self, fault: Fault, n: usize, marker: &str) -> (Run, Job, Instant) {
        let mut run = Run::new(fault, n);
        let file = self.work.join(marker).display().to_string();
        let before = self.begin(&mut run).await;
        let t0 = Instant::now();
        let job = Job::spawn("sh", &["-c", IO_SAT, marker, &file]);
        self.detect(&mut run, &before, t0, &[job.pid()], marker)
            .await;
        (run, job, t0)
    }

    /// Stops it after at least `io_secs` and waits for its event to close.
    async fn finish_io(&self, mut run: Run, mut job: Job, t0: Instant) -> Run {
        let until = t0 + Duration::from_secs(self.size.io_secs);
        if let Some(rest) = until.checked_duration_since(Instant::now()) {
            tokio::time::sleep(rest).await;
        }
        job.stop();
        let stopped_ms = now_ms();
        self.wait_closed(&mut run, stopped_ms).await;
        run
    }

    async fn io_saturation(&self, n: usize) -> Run {
        let marker = format!("drill-iosat-{n}");
        let (run, job, t0) = self.start_io(Fault::DiskIo, n, &marker).await;
        self.finish_io(run, job, t0).await
    }

    /// A CPU runaway while an I/O saturation runs: it must be remediated
    /// while the I/O event is open.
    async fn overlap(&self, n: usize) -> (Run, Run) {
        let marker = format!("drill-iosat-overlap-{n}");
        let (io, job, t0) = self.start_io(Fault::DiskIoUnderCpu, n, &marker).await;
        let mut cpu = self.cpu_runaway(Fault::CpuDuringIo, n).await;
        match io.event_id() {
            Some(id) => {
                let e = self.event(&id).await;
                let open_at_kill = cpu.remediated.is_some()
                    && cpu.stopped_ms.is_some_and(|killed| {
                        e["ended_ms"].as_i64().is_none_or(|ended| ended > killed)
                    });
                if !open_at_kill {
                    cpu.notes.push(format!(
                        "the io event was not open when the runaway died: {}",
                        describe(&e)
                    ));
                }
            }
            None => cpu.notes.push("no io event to overlap with".into()),
        }
        let io = self.finish_io(io, job, t0).await;
        (cpu, io)
    }

    fn record(&mut self, run: Run) {
        eprintln!("drill: {}", run.summary());
        self.runs.push(run);
    }
}

fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// `p50/p90/max` in seconds, `-` without values.
fn spread(values: &[f64], quantiles: &[f64]) -> String {
    if values.is_empty() {
        return "-".into();
    }
    quantiles
        .iter()
        .map(|&q| format!("{:.1}", quantile(values, q)))
        .collect::<Vec<_>>()
        .join("/")
}

fn mem_total_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").expect("read /proc/meminfo");
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("MemTotal in /proc/meminfo");
    kib * 1024
}

fn python() -> String {
    run_cmd("python3", &["-c", "import sys; print(sys.executable)"])
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| panic!("the drill needs python3: {e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn drill_on_a_busy_host() {
    let db = match std::env::var("SCO_DRILL_DB").as_deref() {
        Ok("postgres") => Db::Postgres,
        Ok("sqlite") | Err(_) => Db::Sqlite,
        Ok(other) => panic!("SCO_DRILL_DB={other:?} is not sqlite or postgres"),
    };
    let size = Size::from_env();
    // Dropped last: everything below lives in it.
    let work = tempfile::tempdir().expect("tempdir");
    let Some(mut sb) = Sandbox::new(db).await else {
        return;
    };
    sb.control_plane_extra = "[remediation]\ntick_ms = 200\n".into();
    let _keep = KeepLogs(sb.path().to_path_buf());
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    // Half the CPUs, rounded up: one busy loop on a 2-CPU host. The rule's
    // `top_consumer` stops one process per firing, and a rule fires again
    // only a minute later while its condition holds, so more loops than
    // that would take minutes to stop.
    let runaways = env_u64("SCO_DRILL_RUNAWAY_PROCS").map_or(cpus.div_ceil(2), |n| n as usize);
    let mem_cap = (mem_total_bytes() / 4).min(4 << 30);
    let python = python();

    // The file system to fill exists before the agent starts, so its usage
    // is part of the baseline.
    let mount = LoopMount::create(work.path()).map_err(|e| format!("loop mount failed: {e}"));
    if let Err(e) = &mount {
        eprintln!("drill: the disk-filling fault is skipped: {e}");
    }

    // Everything CPU-heavy on the test's side (password hashing, policy
    // signing) before the agent starts.
    let _cp = sb.start_control_plane_from_env();
    let token = sb.admin_token().await;
    let revision = sb.publish_policy(&token, POLICY).await;

    // The background load runs from before the warm-up to the end.
    let bg_file = work.path().join("bg").display().to_string();
    let _background = match std::env::var("SCO_DRILL_BACKGROUND").as_deref() {
        Err(_) | Ok("synthetic") => vec![
            Job::spawn("sh", &["-c", BG_IO, "drill-bg-io", &bg_file]),
            Job::spawn(&python, &["-c", BG_MEM, "drill-bg-mem"]),
            Job::spawn(&python, &["-c", BG_CPU, "drill-bg-cpu"]),
        ],
        Ok("database") => {
            let url = bench_database();
            vec![Job::spawn("sh", &["-c", BG_DATABASE, "drill-bg-db", &url])]
        }
        Ok(other) => panic!("SCO_DRILL_BACKGROUND={other:?} is not synthetic or database"),
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    let agent = sb.start_agent_from_env(HOST, &detect_toml(size.warmup_secs));
    let mut drill = Drill {
        sb: &sb,
        token: Mutex::new(token.clone()),
        python,
        work: work.path().to_path_buf(),
        size,
        cpus,
        runaways,
        mem_cap,
        runs: Vec::new(),
    };
    sb.wait_policy_applied(&token, "drill", HOST, revision)
        .await;
    // The warm-up sees the drill's own polling too.
    let deadline = Instant::now() + Duration::from_secs(drill.size.warmup_secs) + patience();
    while !agent.log_contains("detector calibrated") {
        assert!(
            Instant::now() < deadline,
            "the detector did not calibrate:\n{}",
            agent.log_tail()
        );
        drill.open_events().await;
        tokio::time::sleep(POLL).await;
    }
    eprintln!(
        "drill: calibrated; quiet phase of {} s with the background load only",
        drill.size.quiet_secs
    );

    let quiet_from = now_ms();
    let quiet_end = Instant::now() + Duration::from_secs(drill.size.quiet_secs);
    while Instant::now() < quiet_end {
        drill.open_events().await;
        tokio::time::sleep(POLL).await;
    }
    let quiet_to = now_ms();
    let quiet_events: Vec<Value> = drill
        .events_since(quiet_from)
        .await
        .into_iter()
        .filter(|e| e["started_ms"].as_i64().is_some_and(|t| t < quiet_to))
        .collect();
    for e in &quiet_events {
        eprintln!(
            "drill: event in the quiet phase: {} [{}]",
            describe(e),
            describe_culprits(e)
        );
    }
    drill.settle().await;

    let faults_from = now_ms();
    for n in 1..=drill.size.cpu_runs {
        let run = drill.cpu_runaway(Fault::Cpu, n).await;
        drill.record(run);
        drill.settle().await;
    }
    for n in 1..=drill.size.other_runs {
        let run = drill.memory_growth(n).await;
        drill.record(run);
        drill.settle().await;
    }
    for n in 1..=drill.size.other_runs {
        let run = drill
            .disk_filling(n, mount.as_ref().map_err(String::as_str))
            .await;
        drill.record(run);
        drill.settle().await;
    }
    for n in 1..=drill.size.other_runs {
        let run = drill.io_saturation(n).await;
        drill.record(run);
        drill.settle().await;
    }
    for n in 1..=drill.size.overlap_runs {
        let (cpu, io) = drill.overlap(n).await;
        drill.record(io);
        drill.record(cpu);
        drill.settle().await;
    }

    // Events no fault explains.
    let ours: HashSet<String> = drill.runs.iter().filter_map(Run::event_id).collect();
    let stray: Vec<Value> = drill
        .events_since(faults_from)
        .await
        .into_iter()
        .filter(|e| e["id"].as_str().is_some_and(|id| !ours.contains(id)))
        .collect();

    print_table(&drill, &quiet_events, &stray);
    let mut failures = failures(&drill, &quiet_events);
    // One event per cause: an I/O saturation alone opens no cpu event with its own CPU time.
    for e in stray.iter().filter(|e| is_family(e, "cpu")) {
        let started = e["started_ms"].as_i64().unwrap_or(0);
        if let Some(r) = drill.runs.iter().find(|r| {
            r.fault == Fault::DiskIo
                && r.skipped.is_none()
                && r.started_ms <= started
                && r.stopped_ms.is_none_or(|s| started <= s)
        }) {
            failures.push(format!(
                "{} #{} also opened a cpu event (two events for one cause): {}",
                r.fault.label(),
                r.n,
                describe(e)
            ));
        }
    }
    // The agent's log tail is printed when it is dropped.
    assert!(
        failures.is_empty(),
        "the drill failed:\n  {}",
        failures.join("\n  ")
    );
}

/// One line of the table: columns padded to `WIDTHS` (characters).
fn row(cols: &[&str]) -> String {
    const WIDTHS: [usize; 9] = [18, 3, 9, 7, 20, 8, 26, 16, 7];
    let mut line = String::new();
    for (i, (col, width)) in cols.iter().zip(WIDTHS).enumerate() {
        let pad = width.saturating_sub(col.chars().count());
        if i == 0 {
            line.push_str(col);
            line.push_str(&" ".repeat(pad));
        } else {
            line.push_str(&" ".repeat(pad + 1));
            line.push_str(col);
        }
    }
    line.push('\n');
    line
}

fn print_table(drill: &Drill<'_>, quiet: &[Value], stray: &[Value]) {
    let secs = |d: Duration| d.as_secs_f64();
    let background = match std::env::var("SCO_DRILL_BACKGROUND").as_deref() {
        Ok("database") => "pgbench, 4 clients, 25 to 400 transactions/s changing every 45 s",
        _ => "dd 32 MiB + fsync every 4 s, 300 MiB held, 1 s of one core every 8 s",
    };
    let mut out = format!(
        "\n== drill ({}) on {} CPUs, {} busy loop(s) per CPU runaway; background: {background}; \
         warm-up {} s, quiet phase {} s ==\n",
        drill.size.name, drill.cpus, drill.runaways, drill.size.warmup_secs, drill.size.quiet_secs
    );
    out.push_str(&row(&[
        "fault",
        "n",
        "detected",
        "family",
        "event s p50/p90/max",
        "culprit",
        "remediated s p50/p90/max",
        "closed s p50/max",
        "closed",
    ]));
    for fault in Fault::ALL {
        let runs: Vec<&Run> = drill
            .runs
            .iter()
            .filter(|r| r.fault == fault && r.skipped.is_none())
            .collect();
        let skipped = drill
            .runs
            .iter()
            .filter(|r| r.fault == fault && r.skipped.is_some())
            .count();
        if runs.is_empty() && skipped == 0 {
            continue;
        }
        let n = runs.len();
        let of_n = |k: usize| format!("{k}/{n}");
        let detected: Vec<f64> = runs.iter().filter_map(|r| r.detect.map(secs)).collect();
        let explicit = runs.iter().filter(|r| r.detected_explicitly()).count();
        let culprit = if fault == Fault::DiskSpace {
            "n/a".to_string()
        } else {
            of_n(runs.iter().filter(|r| r.culprit == Some(true)).count())
        };
        let remediated = if fault.is_cpu() {
            let t: Vec<f64> = runs.iter().filter_map(|r| r.remediated.map(secs)).collect();
            format!("{} ({})", spread(&t, &[0.5, 0.9, 1.0]), of_n(t.len()))
        } else {
            "n/a".into()
        };
        let closes: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.close.map(|ms| ms as f64 / 1000.0))
            .collect();
        let label = if skipped > 0 {
            format!("{} ({skipped} skipped)", fault.label())
        } else {
            fault.label().to_string()
        };
        out.push_str(&row(&[
            &label,
            &n.to_string(),
            &of_n(detected.len()),
            &of_n(explicit),
            &spread(&detected, &[0.5, 0.9, 1.0]),
            &culprit,
            &remediated,
            &spread(&closes, &[0.5, 1.0]),
            &of_n(runs.iter().filter(|r| r.closed).count()),
        ]));
    }
    let joined: Vec<String> = drill
        .runs
        .iter()
        .filter(|r| r.absorbed)
        .map(|r| format!("{} #{}", r.fault.label(), r.n))
        .collect();
    out.push_str(&format!(
        "quiet phase ({} s, background load only): {} events opened (target 0)\n\
         events during the faults that no fault explains: {}\n\
         faults that joined an already open event of their family (not counted as detected): \
         {joined:?}\n",
        drill.size.quiet_secs,
        quiet.len(),
        stray.len()
    ));
    for e in stray {
        let started = e["started_ms"].as_i64().unwrap_or(0);
        let during = drill
            .runs
            .iter()
            .find(|r| {
                r.skipped.is_none()
                    && r.started_ms <= started
                    && r.stopped_ms.is_none_or(|s| started <= s + 2_000)
            })
            .map_or("between faults".into(), |r| {
                format!("during {} #{}", r.fault.label(), r.n)
            });
        out.push_str(&format!(
            "  {during}: {} [{}]\n",
            describe(e),
            describe_culprits(e)
        ));
    }
    out.push_str(
        "detected: fault → an open event of its family in GET /anomaly (by its `family` field, or \
         without one by its metrics); family: by the field itself; culprit: an injected process in \
         `culprits` (the first one for a lone CPU runaway); remediated: fault → every injected process dead; \
         closed: cause stopped → `ended_ms`.\n\
         targets (reported, not asserted): fault → event ≤ 3 s, fault → remediated ≤ 5 s p90\n",
    );
    for run in &drill.runs {
        out.push_str(&format!("  {}\n", run.summary()));
    }
    eprintln!("{out}");
}

/// Behaviour the drill asserts.
fn failures(drill: &Drill<'_>, quiet: &[Value]) -> Vec<String> {
    let mut failures = Vec::new();
    if !quiet.is_empty() {
        let events: Vec<String> = quiet.iter().map(describe).collect();
        failures.push(format!(
            "{} events opened in the quiet phase: {events:?}",
            quiet.len()
        ));
    }
    for run in drill.runs.iter().filter(|r| r.skipped.is_none()) {
        let what = format!("{} #{}", run.fault.label(), run.n);
        let family = run.fault.family();
        match &run.event {
            None => failures.push(format!("{what}: no open event of family {family}")),
            Some(e) if explicit_family(e) != Some(family) => failures.push(format!(
                "{what}: the event has family {:?}, not {family:?} (found by its metrics)",
                explicit_family(e)
            )),
            Some(_) => {}
        }
        if run.fault == Fault::CpuDuringIo && run.absorbed {
            failures.push(format!(
                "{what}: joined a cpu event open before it (the I/O writer's?) instead of opening its own"
            ));
        }
        if run.fault.is_cpu() {
            if run.event.is_some() && !run.absorbed && run.culprit != Some(true) {
                failures.push(format!(
                    "{what}: the runaway is not among the culprits (the first for a lone runaway): {}",
                    run.event.as_ref().map_or(String::new(), describe_culprits)
                ));
            }
            if run.remediated.is_none() || run.action_state != "succeeded" {
                failures.push(format!(
                    "{what}: not remediated: {}/{} killed, action {}",
                    run.killed.0, run.killed.1, run.action_state
                ));
            }
        }
        // A joined event closes when what opened it ends, which is not the drill's doing.
        if run.event.is_some() && !run.absorbed && !run.closed {
            failures.push(format!(
                "{what}: the event did not close after its cause stopped"
            ));
        }
    }
    failures
}
