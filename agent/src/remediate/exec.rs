//! Running commands: argv only (never a shell), a scrubbed environment, a
//! timeout that kills the whole process group, and capped output.
//!
//! Also the signal sequence of `kill_process` (TERM, grace, KILL).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rustix::process::{kill_process, kill_process_group, Pid, Signal};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::report::ProcessEntry;
use super::safety::{self, ProcInfo};

/// The only `PATH` a command sees.
pub const CHILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    /// Exit code; `None` when killed by a signal or by the timeout.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    /// True when stdout or stderr was longer than the cap.
    pub truncated: bool,
}

impl ExecOutcome {
    pub fn success(&self) -> bool {
        !self.timed_out && self.exit_code == Some(0)
    }
}

/// Runs `argv` (absolute program path first) with only `PATH`, `LANG` and
/// `env` in its environment, stdin closed, `/` as working directory, in its
/// own process group. After `timeout` the group is killed.
pub async fn run(
    argv: &[String],
    env: &BTreeMap<String, String>,
    timeout: Duration,
    cap: usize,
) -> std::io::Result<ExecOutcome> {
    let Some((program, args)) = argv.split_first() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "empty argv",
        ));
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", CHILD_PATH)
        .env("LANG", "C.UTF-8")
        .envs(env)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id();
    let out = tokio::spawn(read_capped(child.stdout.take(), cap));
    let err = tokio::spawn(read_capped(child.stderr.take(), cap));
    let (exit_code, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => (status?.code(), false),
        Err(_) => {
            // The child is the leader of its own group (process_group(0));
            // never signal group 0 or 1, which would reach far more.
            if let Some(pgid) = pid
                .and_then(|p| i32::try_from(p).ok())
                .filter(|p| *p > 1)
                .and_then(Pid::from_raw)
            {
                let _ = kill_process_group(pgid, Signal::KILL);
            }
            let _ = child.kill().await;
            (None, true)
        }
    };
    // Grandchildren that kept the pipes open are dead too (same group), so
    // the readers end; the bound is for a child that escaped its group.
    let grace = Duration::from_secs(2);
    let (stdout, t1) = tokio::time::timeout(grace, out)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let (stderr, t2) = tokio::time::timeout(grace, err)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    Ok(ExecOutcome {
        exit_code,
        timed_out,
        stdout,
        stderr,
        truncated: t1 || t2,
    })
}

/// Reads a pipe to its end, keeping the first `cap` bytes: draining the rest
/// keeps a chatty child from blocking on a full pipe.
async fn read_capped(pipe: Option<impl AsyncRead + Unpin>, cap: usize) -> (String, bool) {
    let Some(mut pipe) = pipe else {
        return (String::new(), false);
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut truncated = false;
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                truncated |= n > room;
            }
        }
    }
    (String::from_utf8_lossy(&kept).into_owned(), truncated)
}

fn signal(proc_root: &Path, p: &ProcInfo, sig: Signal) -> Result<(), String> {
    // Re-read right before signalling: the pid must still name the process
    // that was checked (same start time), or it was reused.
    if safety::is_gone(proc_root, p) {
        return Ok(());
    }
    let pid = i32::try_from(p.pid)
        .ok()
        .filter(|p| *p > 1)
        .and_then(Pid::from_raw)
        .ok_or_else(|| format!("pid {} cannot be signalled", p.pid))?;
    match kill_process(pid, sig) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(format!("signal to pid {}: {e}", p.pid)),
    }
}

async fn wait_gone(proc_root: &Path, procs: &[&ProcInfo], within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if procs.iter().all(|p| safety::is_gone(proc_root, p)) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// TERM to every process, KILL to those still alive after `grace`. Returns
/// one entry per process, and the errors of signals that could not be sent.
/// Whether a process is still there is read from `proc_root`.
pub async fn terminate(
    proc_root: &Path,
    procs: &[ProcInfo],
    grace: Duration,
) -> (Vec<ProcessEntry>, Vec<String>) {
    let mut errors = Vec::new();
    let mut outcome: Vec<&'static str> = vec!["vanished"; procs.len()];
    for (i, p) in procs.iter().enumerate() {
        if safety::is_gone(proc_root, p) {
            continue;
        }
        match signal(proc_root, p, Signal::TERM) {
            Ok(()) => outcome[i] = "terminated",
            Err(e) => errors.push(e),
        }
    }
    let alive: Vec<&ProcInfo> = procs.iter().collect();
    wait_gone(proc_root, &alive, grace).await;
    let mut killed = Vec::new();
    for (i, p) in procs.iter().enumerate() {
        if !safety::is_gone(proc_root, p) {
            match signal(proc_root, p, Signal::KILL) {
                Ok(()) => outcome[i] = "killed",
                Err(e) => errors.push(e),
            }
            killed.push(p);
        }
    }
    if !killed.is_empty() {
        wait_gone(proc_root, &killed, Duration::from_secs(5)).await;
    }
    let entries = procs
        .iter()
        .zip(outcome)
        .map(|(p, o)| ProcessEntry {
            pid: p.pid,
            name: p.name().to_string(),
            cmdline: p.cmdline.clone(),
            outcome: if safety::is_gone(proc_root, p) {
                o
            } else {
                "survived"
            }
            .to_string(),
        })
        .collect();
    (entries, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn environment_is_scrubbed_and_output_capped() {
        let mut env = BTreeMap::new();
        env.insert("EXTRA".to_string(), "1".to_string());
        let out = run(
            &argv(&["/usr/bin/env"]),
            &env,
            Duration::from_secs(10),
            16 * 1024,
        )
        .await
        .expect("env runs");
        assert!(out.success());
        let mut lines: Vec<&str> = out.stdout.lines().collect();
        lines.sort();
        assert_eq!(
            lines,
            ["EXTRA=1", "LANG=C.UTF-8", &format!("PATH={CHILD_PATH}")]
        );

        let big = run(
            &argv(&["/usr/bin/head", "-c", "100000", "/dev/zero"]),
            &BTreeMap::new(),
            Duration::from_secs(10),
            1000,
        )
        .await
        .expect("head runs");
        assert_eq!(big.stdout.len(), 1000);
        assert!(big.truncated);
    }

    #[tokio::test]
    async fn timeout_kills_the_group() {
        let out = run(
            &argv(&["/bin/sleep", "30"]),
            &BTreeMap::new(),
            Duration::from_millis(200),
            100,
        )
        .await
        .expect("sleep starts");
        assert!(out.timed_out);
        assert!(!out.success());
    }

    #[tokio::test]
    async fn no_shell_metacharacters() {
        let out = run(
            &argv(&["/bin/echo", "a; rm -rf /", "$(id)"]),
            &BTreeMap::new(),
            Duration::from_secs(10),
            100,
        )
        .await
        .expect("echo runs");
        assert_eq!(out.stdout, "a; rm -rf / $(id)\n");
    }
}
