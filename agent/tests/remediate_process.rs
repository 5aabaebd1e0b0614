//! `kill_process` against real processes started by the test.

#[path = "remediate_support.rs"]
mod support;

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use sco_agent::remediate::{safety, Action, Decision, Mode, Reason, Remediator};
use support::{config, nonce, request};

/// A CPU-burning shell loop whose command line carries `tag`; with
/// `ignore_term` it traps TERM so only KILL stops it.
fn burner(tag: &str, ignore_term: bool) -> Child {
    let script = if ignore_term {
        "trap '' TERM; while :; do :; done"
    } else {
        "while :; do :; done"
    };
    Command::new("/bin/sh")
        .args(["-c", script, tag])
        .spawn()
        .expect("sh starts")
}

fn by_pattern(tag: &str, grace_secs: u64) -> Action {
    Action::KillProcess {
        name: None,
        pattern: Some(format!("*{tag}*")),
        pid: None,
        grace_secs,
    }
}

fn by_pid(pid: u32) -> Action {
    Action::KillProcess {
        name: None,
        pattern: None,
        pid: Some(pid),
        grace_secs: 1,
    }
}

/// Waits for the child to exit and returns the signal that ended it.
fn reap(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.signal();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Waits until /proc shows the child running its loop (not just forked).
fn wait_started(child: &Child, tag: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if safety::read_proc(child.id()).is_some_and(|p| p.cmdline.contains(tag)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("child {} never showed its command line", child.id());
}

#[tokio::test]
async fn cpu_burner_is_stopped_by_term_and_dry_run_leaves_it_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut r = Remediator::open(config(dir.path()), dir.path()).expect("open");
    let tag = format!("sco-burn-{}", nonce());
    let mut child = burner(&tag, false);
    wait_started(&child, &tag);

    let dry = r
        .request(request("cpu-high", by_pattern(&tag, 5), Mode::DryRun))
        .await;
    assert_eq!(dry.decision, Decision::DryRun, "{dry:?}");
    assert_eq!(dry.pids.len(), 1, "{dry:?}");
    assert_eq!(dry.pids[0].pid, child.id());
    assert_eq!(dry.pids[0].outcome, "would_signal");
    assert!(dry.pids[0].cmdline.contains(&tag));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "dry run left it running"
    );

    let done = r
        .request(request("cpu-high", by_pattern(&tag, 5), Mode::Execute))
        .await;
    assert_eq!(done.decision, Decision::Executed, "{done:?}");
    assert_eq!(done.pids[0].outcome, "terminated");
    assert_eq!(reap(&mut child), Some(libc_sigterm()));
}

#[tokio::test]
async fn a_process_ignoring_term_gets_kill_after_the_grace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut r = Remediator::open(config(dir.path()), dir.path()).expect("open");
    let tag = format!("sco-stubborn-{}", nonce());
    let mut child = burner(&tag, true);
    wait_started(&child, &tag);
    // Give the shell time to install its trap.
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let done = r
        .request(request("cpu-high", by_pattern(&tag, 1), Mode::Execute))
        .await;
    assert_eq!(done.decision, Decision::Executed, "{done:?}");
    assert_eq!(done.pids[0].outcome, "killed");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited the grace"
    );
    assert_eq!(reap(&mut child), Some(9));
}

#[tokio::test]
async fn kill_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut r = Remediator::open(config(dir.path()), dir.path()).expect("open");
    // A copy of sleep under a name no other process has (<= 15 bytes).
    let name = format!("scoslp{}", nonce());
    let exe = dir.path().join(&name);
    support::cp(std::path::Path::new("/bin/sleep"), &exe);
    let mut child = Command::new(&exe).arg("300").spawn().expect("copy starts");
    let action = Action::KillProcess {
        name: Some(name),
        pattern: None,
        pid: None,
        grace_secs: 5,
    };
    let done = r
        .request(request("manual:test", action, Mode::Execute))
        .await;
    assert_eq!(done.decision, Decision::Executed, "{done:?}");
    assert_eq!(done.pids.len(), 1);
    assert_eq!(reap(&mut child), Some(libc_sigterm()));
}

#[tokio::test]
async fn protected_targets_are_refused_before_any_signal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.protected_processes.push("sleep".into());
    let mut r = Remediator::open(c, dir.path()).expect("open");
    let tag = format!("3{}", nonce());
    let mut sleeper = Command::new("/bin/sleep").arg(&tag).spawn().expect("sleep");
    let kthread = safety::list_processes()
        .into_iter()
        .find(|p| p.pid > 1 && p.is_kernel_thread() && p.state != 'Z');

    let mut cases: Vec<(&str, Action, Reason)> = vec![
        ("pid 1", by_pid(1), Reason::ProtectedProcess),
        (
            "the agent itself",
            by_pid(std::process::id()),
            Reason::ProtectedProcess,
        ),
        (
            "the agent's parent",
            by_pid(std::os::unix::process::parent_id()),
            Reason::ProtectedProcess,
        ),
        (
            "a protected name",
            Action::KillProcess {
                name: Some("sleep".into()),
                pattern: None,
                pid: None,
                grace_secs: 1,
            },
            Reason::ProtectedProcess,
        ),
        (
            "a pattern reaching a protected name",
            by_pattern(&format!("sleep {tag}"), 1),
            Reason::ProtectedProcess,
        ),
        (
            "a name with shell syntax",
            Action::KillProcess {
                name: Some("nginx; rm -rf /".into()),
                pattern: None,
                pid: None,
                grace_secs: 1,
            },
            Reason::InvalidName,
        ),
        (
            "a pattern matching everything",
            by_pattern("", 1),
            Reason::InvalidName,
        ),
        (
            "no such process",
            by_pattern("no-such-process-xyzzy", 1),
            Reason::NoMatchingProcess,
        ),
    ];
    match &kthread {
        Some(k) => cases.push(("a kernel thread", by_pid(k.pid), Reason::ProtectedProcess)),
        None => eprintln!("no kernel thread visible in this pid namespace; case skipped"),
    }
    for (what, action, want) in cases {
        let report = r
            .request(request("manual:test", action, Mode::Execute))
            .await;
        assert_eq!(report.decision, Decision::Refused, "{what}: {report:?}");
        assert_eq!(report.reason_code, Some(want), "{what}: {report:?}");
        assert!(report.reason.is_some(), "{what}");
        assert!(report.pids.is_empty(), "{what}: nothing was signalled");
    }
    // The same refusals hold in dry run.
    let dry = r
        .request(request("manual:test", by_pid(1), Mode::DryRun))
        .await;
    assert_eq!(dry.reason_code, Some(Reason::ProtectedProcess));
    assert!(
        sleeper.try_wait().expect("try_wait").is_none(),
        "sleep untouched"
    );
    sleeper.kill().expect("cleanup");
    let _ = sleeper.wait();
}

fn libc_sigterm() -> i32 {
    15
}
