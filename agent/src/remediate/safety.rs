//! Local safety rules, checked against the host right before an action runs,
//! whoever asked for it: which processes may be signalled, which files may be
//! deleted, which scripts may run and which webhooks may be called.
//!
//! Everything here is blocking I/O on the procfs (`agent.proc_root`, `/proc`
//! by default) and the file system; the remediator calls it through
//! `spawn_blocking`. Processes are looked up in that procfs but signalled by
//! pid, which is right only when it shows the agent's own pid namespace (a
//! pod needs `hostPID`); [`check_pid_namespace`] refuses otherwise.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::report::{FileEntry, Reason};
use crate::config::RemediateSection;
use sco_policy::glob_match;

type Refusal = (Reason, String);

/// `PF_KTHREAD` in `/proc/PID/stat` flags (include/linux/sched.h).
const PF_KTHREAD: u64 = 0x0020_0000;

/// What `/proc` says about one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    /// `/proc/PID/comm` (at most 15 bytes).
    pub comm: String,
    /// File name of `/proc/PID/exe`, when it can be read.
    pub exe_name: Option<String>,
    /// File name of `argv[0]`.
    pub argv0_name: String,
    /// Arguments joined with spaces.
    pub cmdline: String,
    pub state: char,
    pub flags: u64,
    /// Start time in clock ticks since boot: with the pid, it names one
    /// process even after the pid is reused.
    pub start_time: u64,
}

impl ProcInfo {
    /// Best display name: the executable's, else `comm`.
    pub fn name(&self) -> &str {
        self.exe_name.as_deref().unwrap_or(&self.comm)
    }

    /// Whether `name` is this process's name, allowing for `comm`'s
    /// truncation to 15 bytes.
    pub fn has_name(&self, name: &str) -> bool {
        self.comm == name
            || (name.len() > 15 && self.comm.len() == 15 && name.starts_with(&self.comm))
            || self.exe_name.as_deref() == Some(name)
            || self.argv0_name == name
    }

    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0 || self.exe_name.is_none()
    }
}

/// Reads one process from the procfs at `proc_root`; `None` when it is gone
/// (or unreadable).
pub fn read_proc(proc_root: &Path, pid: u32) -> Option<ProcInfo> {
    let dir = proc_root.join(pid.to_string());
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let comm_from_stat = head.split_once('(')?.1.to_string();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let flags = fields.get(6)?.parse().ok()?;
    let start_time = fields.get(19)?.parse().ok()?;
    let comm = std::fs::read_to_string(dir.join("comm"))
        .map(|c| c.trim_end_matches('\n').to_string())
        .unwrap_or(comm_from_stat);
    let exe_name = std::fs::read_link(dir.join("exe")).ok().and_then(|p| {
        p.file_name().map(|n| {
            n.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_string()
        })
    });
    let raw = std::fs::read(dir.join("cmdline")).unwrap_or_default();
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let argv0_name = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    Some(ProcInfo {
        pid,
        ppid,
        comm,
        exe_name,
        argv0_name,
        cmdline: args.join(" "),
        state,
        flags,
        start_time,
    })
}

/// Every process now visible in the procfs at `proc_root`.
pub fn list_processes(proc_root: &Path) -> Vec<ProcInfo> {
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| read_proc(proc_root, pid))
        .collect()
}

/// True when `p` (same pid and start time) no longer runs: gone, replaced
/// by another process, or a zombie waiting for its parent.
pub fn is_gone(proc_root: &Path, p: &ProcInfo) -> bool {
    match read_proc(proc_root, p.pid) {
        None => true,
        Some(now) => now.start_time != p.start_time || matches!(now.state, 'Z' | 'X'),
    }
}

/// Refuses signals when the procfs at `proc_root` is not of the agent's own
/// pid namespace: its pids would name other processes than the ones a
/// signal reaches (a pod reading the node's procfs without `hostPID`). The
/// agent's own `/proc` always is. `<proc_root>/self` names the reader's pid
/// as that procfs numbers it, so it equals ours exactly when they agree.
pub fn check_pid_namespace(proc_root: &Path) -> Result<(), Refusal> {
    if proc_root == Path::new("/proc") {
        return Ok(());
    }
    let own = std::process::id();
    let seen = std::fs::read_link(proc_root.join("self"))
        .ok()
        .and_then(|l| l.to_str()?.parse::<u32>().ok());
    if seen == Some(own) {
        return Ok(());
    }
    Err((
        Reason::Unsupported,
        format!(
            "agent.proc_root {} is not the agent's own pid namespace ({}/self is {}, the agent \
             is pid {own}): a signal by pid would reach other processes; run the agent in the \
             host's pid namespace (hostPID) or point proc_root at its own /proc",
            proc_root.display(),
            proc_root.display(),
            seen.map_or_else(|| "unreadable".to_string(), |p| p.to_string()),
        ),
    ))
}

/// The processes a signal must never reach, whoever asks.
#[derive(Debug, Clone)]
pub struct ProcessGuard {
    pub protected: HashSet<String>,
    pub self_pid: u32,
    pub parent_pid: u32,
}

impl ProcessGuard {
    pub fn new(config: &RemediateSection) -> Self {
        Self {
            protected: config.protected_processes.iter().cloned().collect(),
            self_pid: std::process::id(),
            parent_pid: std::os::unix::process::parent_id(),
        }
    }

    pub fn check(&self, p: &ProcInfo) -> Result<(), Refusal> {
        let refuse = |why: String| Err((Reason::ProtectedProcess, why));
        if p.pid <= 1 {
            return refuse(format!("pid {} is init", p.pid));
        }
        if p.pid == self.self_pid {
            return refuse(format!("pid {} is the agent itself", p.pid));
        }
        if p.pid == self.parent_pid {
            return refuse(format!("pid {} is the agent's parent", p.pid));
        }
        if p.is_kernel_thread() {
            return refuse(format!(
                "pid {} ({}) is a kernel thread or has no executable",
                p.pid, p.comm
            ));
        }
        if let Some(n) = self.protected.iter().find(|n| p.has_name(n)) {
            return refuse(format!(
                "pid {} ({}) is the protected process {n:?}",
                p.pid,
                p.name()
            ));
        }
        Ok(())
    }
}

/// Resolves the processes a `kill_process` target names and checks each.
/// Any protected match refuses the whole action: a pattern that reaches a
/// protected process is a wrong pattern.
pub fn resolve_processes(
    proc_root: &Path,
    guard: &ProcessGuard,
    name: Option<&str>,
    pattern: Option<&str>,
    pid: Option<u32>,
    max: usize,
) -> Result<Vec<ProcInfo>, Refusal> {
    let found: Vec<ProcInfo> = match (name, pattern, pid) {
        (_, _, Some(pid)) => {
            if pid <= 1 {
                // Checked before /proc: pid 0 and 1 are never valid targets.
                return Err((Reason::ProtectedProcess, format!("pid {pid} is init")));
            }
            read_proc(proc_root, pid).into_iter().collect()
        }
        (Some(n), _, _) => list_processes(proc_root)
            .into_iter()
            .filter(|p| p.has_name(n))
            .collect(),
        (_, Some(pat), _) => list_processes(proc_root)
            .into_iter()
            .filter(|p| glob_match(pat, &p.cmdline))
            .collect(),
        _ => Vec::new(),
    };
    let found: Vec<ProcInfo> = found
        .into_iter()
        .filter(|p| !matches!(p.state, 'Z' | 'X'))
        .collect();
    for p in &found {
        guard.check(p)?;
    }
    if found.is_empty() {
        return Err((
            Reason::NoMatchingProcess,
            "no running process matches".into(),
        ));
    }
    if found.len() > max {
        return Err((
            Reason::TooManyProcesses,
            format!(
                "{} processes match, more than remediate.max_processes ({max})",
                found.len()
            ),
        ));
    }
    Ok(found)
}

/// Resolves `path` (`..` and symlinks) and checks it lies inside one of
/// `roots` (also resolved). Returns the resolved path.
pub fn resolve_inside(path: &Path, roots: &[PathBuf]) -> Result<PathBuf, Refusal> {
    let real = path.canonicalize().map_err(|e| {
        (
            Reason::OutsideAllowlist,
            format!("cannot resolve {}: {e}", path.display()),
        )
    })?;
    let inside = roots
        .iter()
        .filter_map(|r| r.canonicalize().ok())
        .any(|r| real.starts_with(&r));
    if inside {
        Ok(real)
    } else {
        Err((
            Reason::OutsideAllowlist,
            format!(
                "{} (resolved to {}) is not under an allowlisted root",
                path.display(),
                real.display()
            ),
        ))
    }
}

/// Deepest directory level `clean_paths` descends to.
const MAX_DEPTH: usize = 16;

/// The files `clean_paths` would delete: regular files under `root` (never
/// through a symlink, never onto another file system) whose name matches a
/// pattern and whose mtime is before `cutoff_ms`, oldest first, while the
/// total stays within `max_bytes`. Also returns notes on what was skipped.
pub fn plan_clean(
    root: &Path,
    roots: &[PathBuf],
    patterns: &[String],
    cutoff_ms: i64,
    max_bytes: u64,
) -> Result<(Vec<FileEntry>, Vec<String>), Refusal> {
    let root = resolve_inside(root, roots)?;
    let meta = std::fs::symlink_metadata(&root)
        .map_err(|e| (Reason::Io, format!("{}: {e}", root.display())))?;
    if !meta.is_dir() {
        return Err((
            Reason::InvalidAction,
            format!("root {} is not a directory", root.display()),
        ));
    }
    let dev = meta.dev();
    let mut candidates = Vec::new();
    let mut symlinks = 0usize;
    let mut stack = vec![(root.clone(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // symlink_metadata: a symlink is seen as itself, never followed.
            let Ok(m) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if m.file_type().is_symlink() {
                symlinks += 1;
            } else if m.is_dir() {
                if depth + 1 < MAX_DEPTH && m.dev() == dev {
                    stack.push((path, depth + 1));
                }
            } else if m.is_file() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let mtime_ms = m.mtime() * 1000 + m.mtime_nsec() / 1_000_000;
                if mtime_ms < cutoff_ms && patterns.iter().any(|p| glob_match(p, &name)) {
                    candidates.push(FileEntry {
                        path,
                        bytes: m.len(),
                        mtime_ms,
                        outcome: "would_delete".into(),
                    });
                }
            }
        }
    }
    candidates.sort_by(|a, b| a.mtime_ms.cmp(&b.mtime_ms).then(a.path.cmp(&b.path)));
    let mut total = 0u64;
    let mut plan = Vec::new();
    let mut over = 0usize;
    for f in candidates {
        if total + f.bytes > max_bytes {
            over += 1;
            continue;
        }
        total += f.bytes;
        plan.push(f);
    }
    let mut notes = Vec::new();
    if symlinks > 0 {
        notes.push(format!("{symlinks} symlinks not followed"));
    }
    if over > 0 {
        notes.push(format!(
            "{over} matching files left: they would exceed max_bytes ({max_bytes})"
        ));
    }
    Ok((plan, notes))
}

/// Deletes one planned file after checking again that it is still a regular
/// file (not swapped for a symlink) in a directory still inside the roots.
pub fn delete_planned(file: &FileEntry, roots: &[PathBuf]) -> Result<(), String> {
    let parent = file
        .path
        .parent()
        .ok_or_else(|| "file has no parent directory".to_string())?;
    let real_parent = resolve_inside(parent, roots).map_err(|(_, m)| m)?;
    if real_parent != parent {
        return Err(format!(
            "{} moved outside its resolved directory",
            parent.display()
        ));
    }
    let m = std::fs::symlink_metadata(&file.path).map_err(|e| e.to_string())?;
    if !m.is_file() {
        return Err("no longer a regular file".into());
    }
    std::fs::remove_file(&file.path).map_err(|e| e.to_string())
}

/// Checks a `run_script` request: the file resolves inside the script
/// directory, both are owned by root and not writable by group or others, it
/// is a regular executable file and its SHA-256 matches. Returns the resolved
/// path to run.
pub fn check_script(path: &Path, script_dir: &Path, sha256: &str) -> Result<PathBuf, Refusal> {
    let real = resolve_inside(path, &[script_dir.to_path_buf()])?;
    let unsafe_file = |why: String| Err((Reason::UnsafeFile, why));
    for (what, p) in [("script directory", script_dir), ("script", real.as_path())] {
        let m = std::fs::metadata(p).map_err(|e| (Reason::Io, format!("{}: {e}", p.display())))?;
        if m.uid() != 0 {
            return unsafe_file(format!(
                "{what} {} is owned by uid {}, not root",
                p.display(),
                m.uid()
            ));
        }
        if m.permissions().mode() & 0o022 != 0 {
            return unsafe_file(format!(
                "{what} {} is group or world writable (mode {:o})",
                p.display(),
                m.permissions().mode() & 0o7777
            ));
        }
    }
    let m = std::fs::metadata(&real).map_err(|e| (Reason::Io, e.to_string()))?;
    if !m.is_file() || m.permissions().mode() & 0o100 == 0 {
        return unsafe_file(format!(
            "{} is not an executable regular file",
            real.display()
        ));
    }
    let actual =
        sha256_file(&real).map_err(|e| (Reason::Io, format!("{}: {e}", real.display())))?;
    if !actual.eq_ignore_ascii_case(sha256) {
        return Err((
            Reason::ChecksumMismatch,
            format!(
                "sha256 of {} is {actual}, expected {sha256}",
                real.display()
            ),
        ));
    }
    Ok(real)
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Checks a webhook URL against the allowlisted prefixes (`http://` or
/// `https://`; https is verified against `remediate.notify_ca_file`).
pub fn check_webhook(url: &str, allowed: &[String]) -> Result<(), Refusal> {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return Err((
            Reason::InvalidAction,
            format!("url {url:?} is not http:// or https://"),
        ));
    };
    if rest.contains('@') || url.chars().any(|c| c.is_control() || c == ' ') {
        return Err((
            Reason::InvalidAction,
            format!("url {url:?} holds credentials or spaces"),
        ));
    }
    // Origin must be equal and the path must continue the prefix at a `/`,
    // so `http://hooks` never allows `http://hooks.evil`.
    let ok = allowed.iter().any(|p| {
        let p = p.trim_end_matches('/');
        url == p || url.starts_with(&format!("{p}/"))
    });
    if ok {
        Ok(())
    } else {
        Err((
            Reason::NotAllowed,
            format!("url {url:?} is not under a prefix of remediate.notify_urls"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks() {
        let allowed = vec![
            "http://hooks.local:8080/sco".to_string(),
            "https://chat.example.com/hooks/".to_string(),
        ];
        let cases = [
            ("http://hooks.local:8080/sco", Ok(())),
            ("http://hooks.local:8080/sco/alert", Ok(())),
            ("http://hooks.local:8080/scope", Err(Reason::NotAllowed)),
            ("http://hooks.local:80801/sco", Err(Reason::NotAllowed)),
            (
                "http://evil@hooks.local:8080/sco",
                Err(Reason::InvalidAction),
            ),
            ("https://hooks.local:8080/sco", Err(Reason::NotAllowed)),
            ("https://chat.example.com/hooks/T1/B2", Ok(())),
            (
                "http://chat.example.com/hooks/T1/B2",
                Err(Reason::NotAllowed),
            ),
            ("https://chat.example.com/hooksy", Err(Reason::NotAllowed)),
            ("ftp://hooks.local/sco", Err(Reason::InvalidAction)),
        ];
        for (url, want) in cases {
            assert_eq!(check_webhook(url, &allowed).map_err(|e| e.0), want, "{url}");
        }
    }

    fn write(root: &Path, rel: &str, content: &[u8]) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(path, content).expect("write fixture");
    }

    /// Every lookup goes through the configured procfs: a fake one in a temp
    /// directory (as `/host/proc` in a pod) is what is read.
    #[test]
    fn processes_are_read_from_the_configured_proc_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let stat = |pid: u32, comm: &str, flags: u64, start: u64| {
            format!("{pid} ({comm}) S 1 {pid} {pid} 0 -1 {flags} 0 0 0 0 5 0 0 0 20 0 1 0 {start} 0 0\n")
        };
        write(
            root,
            "4242/stat",
            stat(4242, "nginx", 0x0040_0100, 77).as_bytes(),
        );
        write(root, "4242/comm", b"nginx\n");
        write(root, "4242/cmdline", b"/usr/sbin/nginx\0-g\0daemon off;\0");
        std::os::unix::fs::symlink("/usr/sbin/nginx", root.join("4242/exe")).expect("exe link");
        write(
            root,
            "7/stat",
            stat(7, "kworker/0:1", PF_KTHREAD, 3).as_bytes(),
        );
        write(root, "not-a-pid/stat", b"x");

        let p = read_proc(root, 4242).expect("fixture process");
        assert_eq!(
            (p.pid, p.ppid, p.comm.as_str(), p.name(), p.start_time),
            (4242, 1, "nginx", "nginx", 77)
        );
        assert_eq!(p.cmdline, "/usr/sbin/nginx -g daemon off;");
        assert!(!p.is_kernel_thread());
        let mut pids: Vec<u32> = list_processes(root).iter().map(|p| p.pid).collect();
        pids.sort_unstable();
        assert_eq!(pids, [7, 4242]);
        assert!(!is_gone(root, &p));
        assert!(
            is_gone(
                root,
                &ProcInfo {
                    start_time: 1,
                    ..p.clone()
                }
            ),
            "pid reused"
        );
        assert!(is_gone(root, &ProcInfo { pid: 999, ..p }), "gone");

        let guard = ProcessGuard {
            protected: HashSet::new(),
            self_pid: 1,
            parent_pid: 1,
        };
        let found = resolve_processes(root, &guard, Some("nginx"), None, None, 16).expect("found");
        assert_eq!(found.len(), 1);
        let err = resolve_processes(root, &guard, None, None, Some(7), 16).expect_err("kthread");
        assert_eq!(err.0, Reason::ProtectedProcess);
        // The host's /proc holds none of these: the configured root is what counts.
        assert!(read_proc(Path::new("/proc"), 4242).is_none_or(|p| p.start_time != 77));
    }

    #[test]
    fn signals_need_the_agents_own_pid_namespace() {
        check_pid_namespace(Path::new("/proc")).expect("the agent's own /proc");
        // A bind mount of our own procfs elsewhere agrees on `self`.
        let dir = tempfile::tempdir().expect("tempdir");
        let same = dir.path().join("same");
        std::fs::create_dir_all(&same).expect("mkdir");
        std::os::unix::fs::symlink(std::process::id().to_string(), same.join("self"))
            .expect("self link");
        check_pid_namespace(&same).expect("same namespace");
        // Another namespace numbers us differently (or not at all).
        let other = dir.path().join("other");
        std::fs::create_dir_all(&other).expect("mkdir");
        std::os::unix::fs::symlink("1", other.join("self")).expect("self link");
        for root in [other, dir.path().join("missing")] {
            let (reason, why) = check_pid_namespace(&root).expect_err("other namespace");
            assert_eq!(reason, Reason::Unsupported);
            assert!(
                why.contains("hostPID") && why.contains("agent.proc_root"),
                "{why}"
            );
        }
    }

    #[test]
    fn own_process_is_protected_and_read_correctly() {
        let me = read_proc(Path::new("/proc"), std::process::id()).expect("own /proc entry");
        assert_eq!(me.pid, std::process::id());
        assert!(!me.is_kernel_thread());
        let guard = ProcessGuard {
            protected: HashSet::new(),
            self_pid: std::process::id(),
            parent_pid: std::os::unix::process::parent_id(),
        };
        assert_eq!(
            guard.check(&me).expect_err("self").0,
            Reason::ProtectedProcess
        );
        let kthread = ProcInfo {
            pid: 2,
            ppid: 0,
            comm: "kthreadd".into(),
            exe_name: None,
            argv0_name: String::new(),
            cmdline: String::new(),
            state: 'S',
            flags: PF_KTHREAD,
            start_time: 0,
        };
        assert!(guard.check(&kthread).is_err());
        let truncated = ProcInfo {
            comm: "a-very-long-nam".into(),
            exe_name: Some("python3".into()),
            argv0_name: "python3".into(),
            ..kthread
        };
        assert!(truncated.has_name("a-very-long-name-indeed"));
        assert!(truncated.has_name("python3"));
        assert!(!truncated.has_name("python"));
    }
}
