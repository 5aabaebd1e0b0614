//! What the agent says about itself.
//!
//! - `status.json` in the data directory: the detector's state and which process wrote it
//!   when, for `sco-agent status` (the agent's sled database is locked while it runs, so the
//!   state is written here, atomically, whenever it changes and every [`REFRESH`]). A clean
//!   shutdown marks it stopped; a killed agent leaves a pid that no longer runs. Either way
//!   `sco-agent status` says the agent is not running.
//! - [`Activity`]: counters the running agent's tasks update (acks, samples, remediation
//!   decisions), read by the local health and Prometheus endpoint (`exporter`).

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub const FILE: &str = "status.json";

/// How often the running agent rewrites `status.json` even when nothing changed, so its age
/// says whether the agent is still alive.
pub const REFRESH: Duration = Duration::from_secs(10);

/// A file older than this, written by a process that still exists, means an agent that no
/// longer makes progress.
pub const STALE_AFTER: Duration = Duration::from_secs(3 * 10 + 5);

/// What the detector is doing: written here, sent in heartbeats, shown by `GET /hosts/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// "warming_up" or "calibrated"; empty when detection is off.
    pub detector: String,
    pub warm_until_ms: i64,
    pub calibrated_at_ms: i64,
    pub restored: bool,
    pub model: String,
}

/// The content of `status.json`: the detector's state and who wrote it when. Files of
/// earlier agents have only the state; the rest then reads as zero.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    #[serde(flatten)]
    pub status: Status,
    /// The agent process that wrote the file.
    #[serde(default)]
    pub pid: u32,
    /// Its start time in clock ticks after boot (field 22 of `/proc/<pid>/stat`), so a pid
    /// reused by another process is not taken for the agent.
    #[serde(default)]
    pub pid_start_ticks: u64,
    #[serde(default)]
    pub written_ms: i64,
    /// Set by a clean shutdown.
    #[serde(default)]
    pub stopped_ms: i64,
    /// The link to the control plane and what remediation did, as at `written_ms`.
    #[serde(default)]
    pub link: Option<Link>,
}

/// What `sco-agent status` shows beside the detector (the same figures as the agent's
/// `/health`), refreshed in `status.json` every [`REFRESH`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub connected: bool,
    /// Messages not yet acknowledged by the control plane.
    pub outbox_messages: u64,
    /// Dropped from a full outbox (oldest first), over the outbox's life.
    pub outbox_dropped: u64,
    /// 0 until the control plane acknowledged something.
    pub last_ack_ms: i64,
    /// Counts since the agent started, per [`ACTION_DECISIONS`] entry.
    pub actions: Vec<u64>,
    /// Counts since the agent started, per [`RULE_DECISIONS`] entry.
    pub rules_fired: Vec<u64>,
}

impl Link {
    pub fn new(
        connected: bool,
        outbox_messages: u64,
        outbox_dropped: u64,
        a: &ActivitySnapshot,
    ) -> Self {
        Self {
            connected,
            outbox_messages,
            outbox_dropped,
            last_ack_ms: a.last_ack_ms,
            actions: a.actions.to_vec(),
            rules_fired: a.rules_fired.to_vec(),
        }
    }

    /// Lines for a person on the host.
    pub fn describe(&self, now_ms: i64) -> Vec<String> {
        let ack = if self.last_ack_ms > 0 {
            format!(
                "last acknowledgement {} s ago",
                ((now_ms - self.last_ack_ms) / 1000).max(0)
            )
        } else {
            "nothing acknowledged yet".to_string()
        };
        let counts = |names: &[&str], values: &[u64]| {
            names
                .iter()
                .zip(values.iter().chain(std::iter::repeat(&0)))
                .map(|(n, v)| format!("{n} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        vec![
            format!(
                "control plane: {}, {ack}",
                if self.connected {
                    "connected"
                } else {
                    "not connected"
                }
            ),
            format!(
                "outbox: {} messages waiting, {} dropped",
                self.outbox_messages, self.outbox_dropped
            ),
            format!(
                "remediation since start: requests {}; rules fired {}",
                counts(&ACTION_DECISIONS, &self.actions),
                counts(&RULE_DECISIONS, &self.rules_fired)
            ),
        ]
    }
}

/// Writes the state as the running agent's (temp file + rename, so a reader never sees half
/// a file); failures are logged, never fatal.
pub fn write(data_dir: &Path, status: &Status, link: Option<Link>) {
    write_recorded(data_dir, status, link, 0);
}

/// Writes the state one last time, marked stopped (at a clean shutdown).
pub fn write_stopped(data_dir: &Path, status: &Status, link: Option<Link>) {
    write_recorded(data_dir, status, link, crate::clock::now_ms());
}

fn write_recorded(data_dir: &Path, status: &Status, link: Option<Link>, stopped_ms: i64) {
    let pid = std::process::id();
    let recorded = Recorded {
        status: status.clone(),
        pid,
        pid_start_ticks: start_ticks(Path::new("/proc"), pid).unwrap_or(0),
        written_ms: crate::clock::now_ms(),
        stopped_ms,
        link,
    };
    let tmp = data_dir.join(format!("{FILE}.tmp"));
    let result = serde_json::to_vec_pretty(&recorded)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, data_dir.join(FILE)));
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not write {FILE}");
    }
}

/// Start time of process `pid` in clock ticks after boot, from `<proc_root>/<pid>/stat`.
pub fn start_ticks(proc_root: &Path, pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let (_, rest) = text.rsplit_once(')')?;
    // `rest` starts at field 3 (state); starttime is field 22.
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("{path}: {source} (is the agent running with this data directory?)")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a status file: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
}

/// Reads `status.json`; for a file without `written_ms` (an earlier agent's), its
/// modification time stands in.
pub fn read(data_dir: &Path) -> Result<Recorded, StatusError> {
    let path = data_dir.join(FILE);
    let text = std::fs::read(&path).map_err(|source| StatusError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let mut recorded: Recorded =
        serde_json::from_slice(&text).map_err(|source| StatusError::Parse {
            path: path.display().to_string(),
            source,
        })?;
    if recorded.written_ms == 0 {
        recorded.written_ms = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    }
    Ok(recorded)
}

/// Whether the agent that wrote a status file still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Running,
    /// Stopped cleanly, or its process is gone.
    NotRunning,
    /// Its process exists but has not rewritten the file for longer than [`STALE_AFTER`].
    NotUpdating,
}

/// Decides from the recorded pid (checked against the processes under `proc_root`, with its
/// start time) and the file's age at `now_ms`.
pub fn liveness(r: &Recorded, now_ms: i64, proc_root: &Path) -> Liveness {
    let stale = now_ms.saturating_sub(r.written_ms) > STALE_AFTER.as_millis() as i64;
    if r.stopped_ms > 0 {
        return Liveness::NotRunning;
    }
    if r.pid == 0 {
        // an earlier agent's file carries no pid: its age is all there is
        return if stale {
            Liveness::NotRunning
        } else {
            Liveness::Running
        };
    }
    match start_ticks(proc_root, r.pid) {
        Some(t) if r.pid_start_ticks == 0 || t == r.pid_start_ticks => {
            if stale {
                Liveness::NotUpdating
            } else {
                Liveness::Running
            }
        }
        _ => Liveness::NotRunning,
    }
}

pub use sco_policy::utc;

/// Human-readable lines, times relative to `now_ms`.
pub fn describe(s: &Status, now_ms: i64) -> String {
    let ago = |ms: i64| format!("{} s ago", ((now_ms - ms) / 1000).max(0));
    match s.detector.as_str() {
        "calibrated" => format!(
            "detector: calibrated ({}{}), model {}",
            ago(s.calibrated_at_ms),
            if s.restored {
                ", restored at start"
            } else {
                ""
            },
            s.model
        ),
        "warming_up" => format!(
            "detector: warming up, no alarms until about {} s from now, model {}",
            ((s.warm_until_ms - now_ms) / 1000).max(0),
            s.model
        ),
        "" => "detector: off".to_string(),
        other => format!("detector: {other:?}, model {}", s.model),
    }
}

/// Remediation decisions, in the order they are reported.
pub const ACTION_DECISIONS: [&str; 4] = ["executed", "dry_run", "refused", "failed"];
/// What became of a policy rule that fired.
pub const RULE_DECISIONS: [&str; 3] = ["proposed", "dry_run", "refused"];

/// What the running agent's tasks count about themselves. Atomics, so the uplink, the
/// remediation task and the pipeline update it without a lock and a scrape reads it
/// without stopping them. Counters start at zero with the process, as Prometheus expects.
#[derive(Debug, Default)]
pub struct Activity {
    started_ms: AtomicI64,
    last_ack_ms: AtomicI64,
    last_sample_ms: AtomicI64,
    in_flight_bytes: AtomicU64,
    send_window_bytes: AtomicU64,
    actions: [AtomicU64; ACTION_DECISIONS.len()],
    rules_fired: [AtomicU64; RULE_DECISIONS.len()],
}

/// A copy of [`Activity`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivitySnapshot {
    pub started_ms: i64,
    /// 0 until the control plane acknowledged something.
    pub last_ack_ms: i64,
    /// 0 until the first sample.
    pub last_sample_ms: i64,
    /// Bytes sent to the control plane and not yet acknowledged, and how many the uplink
    /// allows ([`crate::flight`]); 0 before the first stream.
    pub in_flight_bytes: u64,
    pub send_window_bytes: u64,
    /// Counts per [`ACTION_DECISIONS`] entry.
    pub actions: [u64; ACTION_DECISIONS.len()],
    /// Counts per [`RULE_DECISIONS`] entry.
    pub rules_fired: [u64; RULE_DECISIONS.len()],
}

impl Activity {
    pub fn new(started_ms: i64) -> Self {
        let a = Self::default();
        a.started_ms.store(started_ms, Ordering::Relaxed);
        a
    }

    /// The control plane acknowledged messages.
    pub fn acked(&self, now_ms: i64) {
        self.last_ack_ms.store(now_ms, Ordering::Relaxed);
    }

    /// What the uplink has in flight, and its window.
    pub fn in_flight(&self, bytes: u64, window: u64) {
        self.in_flight_bytes.store(bytes, Ordering::Relaxed);
        self.send_window_bytes.store(window, Ordering::Relaxed);
    }

    /// The pipeline received a sample taken at `ts_ms`.
    pub fn sampled(&self, ts_ms: i64) {
        self.last_sample_ms.store(ts_ms, Ordering::Relaxed);
    }

    /// A remediation request was handled with `decision` (one of [`ACTION_DECISIONS`];
    /// anything else is not counted).
    pub fn action(&self, decision: &str) {
        if let Some(i) = ACTION_DECISIONS.iter().position(|d| *d == decision) {
            self.actions[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A policy rule fired and became `decision` (one of [`RULE_DECISIONS`]).
    pub fn rule_fired(&self, decision: &str) {
        if let Some(i) = RULE_DECISIONS.iter().position(|d| *d == decision) {
            self.rules_fired[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> ActivitySnapshot {
        ActivitySnapshot {
            started_ms: self.started_ms.load(Ordering::Relaxed),
            last_ack_ms: self.last_ack_ms.load(Ordering::Relaxed),
            last_sample_ms: self.last_sample_ms.load(Ordering::Relaxed),
            in_flight_bytes: self.in_flight_bytes.load(Ordering::Relaxed),
            send_window_bytes: self.send_window_bytes.load(Ordering::Relaxed),
            actions: std::array::from_fn(|i| self.actions[i].load(Ordering::Relaxed)),
            rules_fired: std::array::from_fn(|i| self.rules_fired[i].load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_reads_back_and_describes_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let activity = Activity::new(1_000);
        activity.acked(58_000);
        activity.action("executed");
        activity.rule_fired("proposed");
        activity.rule_fired("proposed");
        let link = Link::new(true, 7, 2, &activity.snapshot());
        write(dir.path(), &Status::default(), Some(link.clone()));
        let back = read(dir.path()).expect("read");
        assert_eq!(back.link.as_ref(), Some(&link));
        assert_eq!(
            link.describe(60_500),
            [
                "control plane: connected, last acknowledgement 2 s ago",
                "outbox: 7 messages waiting, 2 dropped",
                "remediation since start: requests executed 1, dry_run 0, refused 0, failed 0; \
                 rules fired proposed 2, dry_run 0, refused 0",
            ]
        );
        // files of agents before the link have none
        std::fs::write(
            dir.path().join(FILE),
            r#"{"detector":"calibrated","warm_until_ms":0,"calibrated_at_ms":5,"restored":false,"model":"m","pid":1}"#,
        )
        .expect("write");
        assert_eq!(read(dir.path()).expect("read old").link, None);
    }

    #[test]
    fn written_state_reads_back_and_describes_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = Status {
            detector: "warming_up".into(),
            warm_until_ms: 400_000,
            calibrated_at_ms: 0,
            restored: false,
            model: "m@1".into(),
        };
        write(dir.path(), &d, None);
        let r = read(dir.path()).expect("reads back");
        assert_eq!(r.status, d);
        assert_eq!(r.pid, std::process::id());
        assert!(r.pid_start_ticks > 0 && r.written_ms > 0 && r.stopped_ms == 0);
        assert_eq!(
            describe(&r.status, 100_000),
            "detector: warming up, no alarms until about 300 s from now, model m@1"
        );
        assert_eq!(describe(&Status::default(), 0), "detector: off");
        let e = read(&dir.path().join("missing")).expect_err("no file");
        assert!(e.to_string().contains("is the agent running"), "{e}");
    }

    #[test]
    fn an_earlier_agents_file_still_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join(FILE),
            r#"{"detector":"calibrated","warm_until_ms":0,"calibrated_at_ms":5,"restored":true,"model":"m"}"#,
        )
        .expect("write");
        let r = read(dir.path()).expect("reads");
        assert_eq!(r.status.detector, "calibrated");
        assert_eq!(r.pid, 0);
        assert!(r.written_ms > 0, "the file's modification time stands in");
        let proc_root = Path::new("/proc");
        assert_eq!(liveness(&r, r.written_ms, proc_root), Liveness::Running);
        assert_eq!(
            liveness(&r, r.written_ms + 60_000, proc_root),
            Liveness::NotRunning
        );
    }

    #[test]
    fn liveness_from_pid_start_time_and_age() {
        let dir = tempfile::tempdir().expect("tempdir");
        let proc_root = dir.path();
        // a fake /proc: pid 42 started at tick 777, with a command name full of traps
        std::fs::create_dir_all(proc_root.join("42")).expect("mkdir");
        let stat =
            "42 (sco agent) x) S 1 42 42 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 2 0 777 1000 50";
        std::fs::write(proc_root.join("42/stat"), stat).expect("write");
        assert_eq!(start_ticks(proc_root, 42), Some(777));
        assert_eq!(start_ticks(proc_root, 43), None);

        let now = 1_000_000;
        let running = Recorded {
            pid: 42,
            pid_start_ticks: 777,
            written_ms: now - 1000,
            ..Default::default()
        };
        let cases = [
            (running.clone(), Liveness::Running),
            (
                Recorded {
                    stopped_ms: now - 500,
                    ..running.clone()
                },
                Liveness::NotRunning,
            ),
            (
                Recorded {
                    pid: 43,
                    ..running.clone()
                },
                Liveness::NotRunning,
            ),
            (
                Recorded {
                    pid_start_ticks: 778,
                    ..running.clone()
                },
                Liveness::NotRunning,
            ),
            (
                Recorded {
                    written_ms: now - 60_000,
                    ..running.clone()
                },
                Liveness::NotUpdating,
            ),
        ];
        for (r, want) in cases {
            assert_eq!(liveness(&r, now, proc_root), want, "{r:?}");
        }
    }

    #[test]
    fn activity_counts_known_decisions_only() {
        let a = Activity::new(7);
        a.action("executed");
        a.action("executed");
        a.action("failed");
        a.action("nonsense");
        a.rule_fired("proposed");
        a.acked(9);
        a.sampled(8);
        let s = a.snapshot();
        assert_eq!(s.started_ms, 7);
        assert_eq!((s.last_ack_ms, s.last_sample_ms), (9, 8));
        assert_eq!(s.actions, [2, 0, 0, 1]);
        assert_eq!(s.rules_fired, [1, 0, 0]);
    }
}
