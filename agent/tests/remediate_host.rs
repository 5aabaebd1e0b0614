//! What the host cannot do is refused up front: a missing `systemctl` or `journalctl` (an
//! agent in a container without the host's systemd) and a procfs of another pid namespace
//! (a pod reading the node's `/proc` without `hostPID`) refuse before anything is counted,
//! run or fed to the circuit breaker.

#[path = "remediate_support.rs"]
mod support;

use sco_agent::remediate::{Action, Decision, Mode, Reason, Remediator};
use support::{argv_log, config, request, restart};

#[tokio::test]
async fn a_missing_service_manager_is_refused_before_limits_and_breaker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    let missing = dir.path().join("no-such-systemctl");
    c.systemctl = missing.clone();
    c.journalctl = dir.path().join("no-such-journalctl");
    // One failure would open the breaker, one executed action would use up the host budget.
    c.breaker_failures = 1;
    c.host_max_per_hour = 1;
    let mut r = Remediator::open(c, dir.path()).expect("open");

    let vacuum = Action::JournalVacuum { max_size_mb: 100 };
    for (action, key) in [
        (restart("nginx.service"), "remediate.systemctl"),
        (vacuum, "remediate.journalctl"),
    ] {
        for mode in [Mode::Execute, Mode::DryRun, Mode::Precheck, Mode::Execute] {
            let report = r.request(request("svc", action.clone(), mode)).await;
            assert_eq!(report.decision, Decision::Refused, "{report:?}");
            assert_eq!(
                report.reason_code,
                Some(Reason::CommandMissing),
                "{report:?}"
            );
            let reason = report.reason.as_deref().unwrap_or_default();
            assert!(
                reason.contains(key)
                    && reason.contains("does not exist")
                    && reason.contains(action.kind()),
                "{reason}"
            );
            assert!(report.argv.is_empty(), "nothing planned: {report:?}");
            assert!(
                report.notes[0].contains("nothing counted")
                    || report.notes[0].contains("nothing run or counted"),
                "{:?}",
                report.notes
            );
        }
    }
    assert!(reason_names(&mut r, &missing).await, "the path is named");
    let rule = r.rule_state("svc").expect("state");
    assert_eq!(rule.consecutive_failures, 0, "the breaker was not fed");
    assert_eq!(rule.breaker_open_since_ms, None);
    assert!(rule.recent_ms.is_empty(), "nothing counted for the rule");
    assert_eq!(
        r.host_actions_last_hour().expect("state"),
        0,
        "nor for the host"
    );
    assert_eq!(argv_log(dir.path()), None, "nothing ran");
}

async fn reason_names(r: &mut Remediator, path: &std::path::Path) -> bool {
    let report = r
        .request(request("svc", restart("a.service"), Mode::DryRun))
        .await;
    report
        .reason
        .is_some_and(|why| why.contains(&path.display().to_string()))
}

#[tokio::test]
async fn a_service_manager_that_is_not_executable_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    let plain = dir.path().join("systemctl");
    std::fs::write(&plain, "#!/bin/sh\n").expect("write");
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    c.systemctl = plain;
    c.journalctl = dir.path().to_path_buf();
    let mut r = Remediator::open(c, dir.path()).expect("open");
    let report = r
        .request(request("svc", restart("a.service"), Mode::Execute))
        .await;
    assert_eq!(report.reason_code, Some(Reason::CommandMissing));
    assert!(report
        .reason
        .as_deref()
        .unwrap_or_default()
        .contains("is not executable"));
    let report = r
        .request(request(
            "svc",
            Action::JournalVacuum { max_size_mb: 1 },
            Mode::Execute,
        ))
        .await;
    assert_eq!(report.reason_code, Some(Reason::CommandMissing));
    assert!(report
        .reason
        .as_deref()
        .unwrap_or_default()
        .contains("is not a file"));
}

/// The working service manager still runs (the check adds no refusal when the file is there).
#[tokio::test]
async fn a_present_service_manager_still_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut r = Remediator::open(config(dir.path()), dir.path()).expect("open");
    let report = r
        .request(request("svc", restart("a.service"), Mode::Execute))
        .await;
    assert_eq!(report.decision, Decision::Executed, "{report:?}");
}

/// A procfs that numbers processes differently from the agent's own pid namespace (here a
/// fixture whose `self` is pid 1) refuses every `kill_process`, dry runs included: signals go
/// to pids, which would name other processes.
#[tokio::test]
async fn kill_process_needs_a_procfs_of_the_agents_pid_namespace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proc_root = dir.path().join("proc");
    std::fs::create_dir_all(proc_root.join("4242")).expect("mkdir");
    std::os::unix::fs::symlink("1", proc_root.join("self")).expect("self link");
    let mut r = Remediator::open(config(dir.path()), dir.path())
        .expect("open")
        .with_proc_root(proc_root);
    let kill = Action::KillProcess {
        name: None,
        pattern: None,
        pid: Some(4242),
        top_consumer: None,
        grace_secs: 1,
    };
    for mode in [Mode::DryRun, Mode::Execute] {
        let report = r.request(request("kill", kill.clone(), mode)).await;
        assert_eq!(report.reason_code, Some(Reason::Unsupported), "{report:?}");
        let reason = report.reason.as_deref().unwrap_or_default();
        assert!(reason.contains("hostPID"), "{reason}");
    }
    assert_eq!(r.rule_state("kill").expect("state").consecutive_failures, 0);
    assert_eq!(r.host_actions_last_hour().expect("state"), 0);
}
