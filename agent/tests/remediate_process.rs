//! `kill_process` against real processes started by the test.

#[path = "remediate_support.rs"]
mod support;

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use sco_agent::remediate::{
    safety, Action, ActionReport, Consumer, Decision, Mode, Reason, Remediator,
};
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
        top_consumer: None,
        grace_secs,
    }
}

fn by_pid(pid: u32) -> Action {
    Action::KillProcess {
        name: None,
        pattern: None,
        pid: Some(pid),
        top_consumer: None,
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
        if safety::read_proc(std::path::Path::new("/proc"), child.id())
            .is_some_and(|p| p.cmdline.contains(tag))
        {
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
        top_consumer: None,
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
    let kthread = safety::list_processes(std::path::Path::new("/proc"))
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
                top_consumer: None,
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
                top_consumer: None,
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

fn top_cpu(pattern: &str) -> Action {
    Action::KillProcess {
        name: None,
        pattern: Some(pattern.into()),
        pid: None,
        top_consumer: Some(Consumer::Cpu),
        grace_secs: 2,
    }
}

/// Runs a `top_consumer: cpu` kill. The choice is among processes matching
/// the pattern, so other busy processes on a shared host (builds, other
/// tests) do not matter; a burner starved of CPU during the 0.5 s window
/// (under 5 % of a core) can still be refused, so it is tried a few times.
async fn kill_top_cpu(r: &mut Remediator, pattern: &str, ours: &[u32]) -> ActionReport {
    for _ in 0..10 {
        let report = r
            .request(request("manual:test", top_cpu(pattern), Mode::Execute))
            .await;
        if report.decision != Decision::Refused {
            return report;
        }
        assert_eq!(
            report.reason_code,
            Some(Reason::NoMatchingProcess),
            "{report:?}"
        );
        assert!(report.pids.is_empty(), "nothing signalled: {report:?}");
        assert!(
            report
                .top_consumer
                .as_ref()
                .is_none_or(|c| ours.contains(&c.pid)),
            "only a matching process may be chosen: {report:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("our burners were never chosen in 10 tries");
}

#[tokio::test]
async fn the_top_cpu_consumer_matching_the_pattern_is_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut r = Remediator::open(config(dir.path()), dir.path()).expect("open");
    let tag = format!("sco-top-{}", nonce());
    let mut a = burner(&tag, false);
    let mut b = burner(&tag, false);
    wait_started(&a, &tag);
    wait_started(&b, &tag);
    let ours = [a.id(), b.id()];

    let report = kill_top_cpu(&mut r, &format!("*{tag}*"), &ours).await;
    assert_eq!(report.decision, Decision::Executed, "{report:?}");
    let chosen = report.top_consumer.clone().expect("the choice is reported");
    assert!(ours.contains(&chosen.pid), "{report:?}");
    assert_eq!(chosen.resource, Consumer::Cpu);
    assert!(chosen.cpu_pct > 5.0, "{chosen:?}");
    assert!(chosen.cmdline.contains(&tag), "{chosen:?}");
    assert!((400..=5000).contains(&chosen.window_ms), "{chosen:?}");
    // Exactly that pid was signalled, like a kill by pid.
    assert_eq!(report.pids.len(), 1, "{report:?}");
    assert_eq!(report.pids[0].pid, chosen.pid);
    assert_eq!(report.pids[0].outcome, "terminated");
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.starts_with("top cpu consumer over")
                && n.contains(&format!("pid {}", chosen.pid))),
        "{:?}",
        report.notes
    );
    let (killed, spared) = if chosen.pid == a.id() {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert_eq!(reap(killed), Some(libc_sigterm()));
    assert!(
        spared.try_wait().expect("try_wait").is_none(),
        "the other burner was not touched"
    );
    spared.kill().expect("cleanup");
    let _ = spared.wait();
}

#[tokio::test]
async fn a_top_consumer_kill_with_no_matching_process_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut r = Remediator::open(config(dir.path()), dir.path()).expect("open");
    let tag = format!("sco-top-{}", nonce());
    let mut child = burner(&tag, false);
    wait_started(&child, &tag);

    // No process carries this pattern: nothing is chosen, whatever is heaviest.
    let pattern = format!("*sco-nothing-{}*", nonce());
    let report = r
        .request(request("manual:test", top_cpu(&pattern), Mode::Execute))
        .await;
    assert_eq!(report.decision, Decision::Refused, "{report:?}");
    assert_eq!(
        report.reason_code,
        Some(Reason::NoMatchingProcess),
        "{report:?}"
    );
    let reason = report.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("no unprotected process matching") && reason.contains(&pattern),
        "{reason}"
    );
    assert!(report.top_consumer.is_none(), "nothing was chosen");
    assert!(report.pids.is_empty(), "nothing was signalled");

    // A protected process is passed over even when it is the heaviest: with
    // `sh` protected the burner is never chosen.
    let mut c = config(dir.path());
    c.protected_processes.push("sh".into());
    c.protected_processes.push("dash".into());
    c.protected_processes.push("bash".into());
    let dir2 = tempfile::tempdir().expect("tempdir");
    let mut guarded = Remediator::open(c, dir2.path()).expect("open");
    let report = guarded
        .request(request(
            "manual:test",
            top_cpu(&format!("*{tag}*")),
            Mode::Execute,
        ))
        .await;
    assert_eq!(report.decision, Decision::Refused, "{report:?}");
    assert!(
        report
            .top_consumer
            .as_ref()
            .is_none_or(|t| t.pid != child.id()),
        "{report:?}"
    );
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the burner still runs"
    );
    child.kill().expect("cleanup");
    let _ = child.wait();
}

fn libc_sigterm() -> i32 {
    15
}

#[tokio::test]
async fn a_precheck_of_a_top_consumer_kill_lists_candidates_without_measuring_or_signalling() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut r = Remediator::open(config(dir.path()), dir.path()).expect("open");
    let tag = format!("sco-pre-{}", nonce());
    let (mut a, mut b) = (burner(&tag, false), burner(&tag, false));
    wait_started(&a, &tag);
    wait_started(&b, &tag);

    let pattern = format!("*{tag}*");
    let report = r
        .request(request("manual:test", top_cpu(&pattern), Mode::Precheck))
        .await;
    // Nothing measured (the request measures when it runs), nothing signalled.
    assert_eq!(report.decision, Decision::DryRun, "{report:?}");
    assert!(report.top_consumer.is_none(), "{report:?}");
    let mut listed: Vec<u32> = report.pids.iter().map(|p| p.pid).collect();
    listed.sort_unstable();
    let mut ours = vec![a.id(), b.id()];
    ours.sort_unstable();
    assert_eq!(listed, ours, "{report:?}");
    assert!(report.pids.iter().all(|p| p.outcome == "candidate"));
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.starts_with("2 processes could be chosen")),
        "{:?}",
        report.notes
    );
    for child in [&mut a, &mut b] {
        assert!(child.try_wait().expect("try_wait").is_none(), "untouched");
    }

    // With nothing to choose from, the pre-check refuses as the request would.
    let none = format!("*sco-nothing-{}*", nonce());
    let refused = r
        .request(request("manual:test", top_cpu(&none), Mode::Precheck))
        .await;
    assert_eq!(refused.decision, Decision::Refused, "{refused:?}");
    assert_eq!(refused.reason_code, Some(Reason::NoMatchingProcess));
    for child in [&mut a, &mut b] {
        child.kill().expect("cleanup");
        let _ = child.wait();
    }
}
