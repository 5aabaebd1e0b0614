//! Helpers shared by the `remediate_*` tests (included with `#[path]`).
#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sco_agent::config::RemediateSection;
use sco_agent::remediate::{Action, ActionRequest, Lease, Mode};

/// The stand-in for systemctl/journalctl, used in place (never copied, so
/// no test ever executes a file another thread may still hold open).
pub fn fake_systemctl() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bin/fake-systemctl");
    // A checkout that lost the executable bit still runs the tests.
    let mode = std::fs::metadata(&path)
        .expect("fake-systemctl exists")
        .permissions()
        .mode();
    if mode & 0o111 != 0o111 {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    path
}

/// A configuration confined to `dir`: clean root `dir/root`, script dir
/// `dir/scripts`, the fake service manager logging to `dir/argv.log`.
pub fn config(dir: &Path) -> RemediateSection {
    std::fs::create_dir_all(dir.join("root")).expect("root dir");
    let mut c = RemediateSection {
        systemctl: fake_systemctl(),
        journalctl: fake_systemctl(),
        clean_roots: vec![dir.join("root")],
        script_dir: dir.join("scripts"),
        ..RemediateSection::default()
    };
    c.env.insert(
        "FAKE_SYSTEMCTL_LOG".into(),
        dir.join("argv.log").display().to_string(),
    );
    c
}

pub fn argv_log(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join("argv.log")).ok()
}

pub fn lease() -> Option<Lease> {
    Some(Lease {
        token: "lease-test".into(),
        expires_ms: sco_agent::clock::now_ms() + 600_000,
    })
}

pub fn request(rule: &str, action: Action, mode: Mode) -> ActionRequest {
    ActionRequest {
        rule: rule.into(),
        action,
        mode,
        lease: lease(),
        cooldown_secs: 0,
        max_per_hour: 0,
    }
}

pub fn restart(unit: &str) -> Action {
    Action::RestartService { unit: unit.into() }
}

pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A fresh token for names and command lines, unique per call.
pub fn nonce() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}{}",
        std::process::id() % 10_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Copies with `cp` in a child process: the written file is never open in
/// this (multi-threaded, forking) test process, so executing it cannot fail
/// with "text file busy".
pub fn cp(from: &Path, to: &Path) {
    let ok = std::process::Command::new("/bin/cp")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp runs")
        .success();
    assert!(ok, "cp {} {}", from.display(), to.display());
}

/// Writes `text` to `to` through `sh -c 'cat > "$1"'` for the same reason.
pub fn write_via_child(to: &Path, text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", "cat > \"$1\"", "sh"])
        .arg(to)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sh runs");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("write");
    assert!(child.wait().expect("wait").success());
}

/// Reopens after a simulated restart. sled releases its file lock from a
/// background thread shortly after the last handle drops, so an immediate
/// reopen in the same process can briefly fail; a new agent process never
/// sees this.
pub fn reopen(config: RemediateSection, data_dir: &Path) -> sco_agent::remediate::Remediator {
    let mut last = None;
    for _ in 0..100 {
        match sco_agent::remediate::Remediator::open(config.clone(), data_dir) {
            Ok(r) => return r,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("reopen failed: {last:?}");
}
