//! `clean_paths` and `run_script` against real files.

#[path = "remediate_support.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use filetime::FileTime;
use sco_agent::remediate::{safety, Action, Decision, Mode, Reason, Remediator};
use support::{config, request};

const DAY: i64 = 86_400;

/// Writes `bytes` bytes to `path` and sets its mtime `age_days` ago.
fn file(path: &Path, bytes: usize, age_days: i64) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, vec![b'x'; bytes]).expect("write");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    filetime::set_file_mtime(path, FileTime::from_unix_time(now - age_days * DAY, 0))
        .expect("mtime");
}

fn clean(root: &Path, max_bytes: u64) -> Action {
    Action::CleanPaths {
        root: root.to_path_buf(),
        patterns: vec!["*.log".into(), "*.log.[0-9]".into()],
        older_than_days: 7,
        max_bytes,
    }
}

#[tokio::test]
async fn clean_paths_deletes_only_old_matching_files_inside_its_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().canonicalize().expect("canonical tempdir");
    let root = base.join("root");
    let outside = base.join("outside");
    let mut r = Remediator::open(config(&base), &base).expect("open");

    file(&root.join("app.log"), 100, 30);
    file(&root.join("app.log.1"), 200, 20);
    file(&root.join("nested/deep.log"), 300, 10);
    file(&root.join("fresh.log"), 400, 1);
    file(&root.join("notes.txt"), 500, 30);
    file(&outside.join("victim.log"), 600, 30);
    file(&outside.join("dir/victim2.log"), 700, 30);
    std::os::unix::fs::symlink(outside.join("victim.log"), root.join("link.log"))
        .expect("symlink to a file outside");
    std::os::unix::fs::symlink(outside.join("dir"), root.join("linkdir"))
        .expect("symlink to a directory outside");

    // Dry run: the exact plan, nothing touched.
    let dry = r
        .request(request("disk-full", clean(&root, 1 << 30), Mode::DryRun))
        .await;
    assert_eq!(dry.decision, Decision::DryRun, "{dry:?}");
    let planned: Vec<PathBuf> = dry.files.iter().map(|f| f.path.clone()).collect();
    assert_eq!(
        planned,
        [
            root.join("app.log"),
            root.join("app.log.1"),
            root.join("nested/deep.log")
        ]
    );
    assert_eq!(dry.bytes, 600);
    assert!(
        dry.notes
            .iter()
            .any(|n| n.contains("2 symlinks not followed")),
        "{dry:?}"
    );
    assert!(root.join("app.log").exists());

    let done = r
        .request(request("disk-full", clean(&root, 1 << 30), Mode::Execute))
        .await;
    assert_eq!(done.decision, Decision::Executed, "{done:?}");
    assert_eq!(done.bytes, 600);
    assert!(
        done.files.iter().all(|f| f.outcome == "deleted"),
        "{done:?}"
    );
    for gone in ["app.log", "app.log.1", "nested/deep.log"] {
        assert!(!root.join(gone).exists(), "{gone} deleted");
    }
    for kept in ["fresh.log", "notes.txt", "link.log", "linkdir"] {
        assert!(
            std::fs::symlink_metadata(root.join(kept)).is_ok(),
            "{kept} kept"
        );
    }
    assert_eq!(
        std::fs::read(outside.join("victim.log"))
            .expect("kept")
            .len(),
        600
    );
    assert_eq!(
        std::fs::read(outside.join("dir/victim2.log"))
            .expect("kept")
            .len(),
        700
    );
}

#[tokio::test]
async fn clean_paths_respects_max_bytes_oldest_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().canonicalize().expect("canonical tempdir");
    let root = base.join("root");
    let mut r = Remediator::open(config(&base), &base).expect("open");
    file(&root.join("a.log"), 100, 30);
    file(&root.join("b.log"), 200, 20);
    file(&root.join("c.log"), 300, 10);
    let done = r
        .request(request("disk-full", clean(&root, 350), Mode::Execute))
        .await;
    assert_eq!(done.decision, Decision::Executed, "{done:?}");
    assert_eq!(done.bytes, 300, "a and b fit in 350, c would not");
    assert!(!root.join("a.log").exists() && !root.join("b.log").exists());
    assert!(root.join("c.log").exists());
}

#[tokio::test]
async fn clean_paths_refuses_roots_outside_the_allowlist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().canonicalize().expect("canonical tempdir");
    let root = base.join("root");
    let outside = base.join("outside");
    let mut r = Remediator::open(config(&base), &base).expect("open");
    file(&outside.join("victim.log"), 10, 30);
    std::os::unix::fs::symlink(&outside, root.join("escape")).expect("symlink");
    let cases = [
        ("a directory outside", outside.clone()),
        ("dot-dot out of the root", root.join("../outside")),
        ("a symlink in the root pointing out", root.join("escape")),
        ("the file system root", PathBuf::from("/")),
    ];
    for (what, path) in cases {
        let report = r
            .request(request("disk-full", clean(&path, 1 << 30), Mode::Execute))
            .await;
        assert_eq!(report.decision, Decision::Refused, "{what}");
        assert_eq!(
            report.reason_code,
            Some(Reason::OutsideAllowlist),
            "{what}: {report:?}"
        );
    }
    assert!(outside.join("victim.log").exists());
}

#[tokio::test]
async fn run_script_checks_place_owner_mode_and_checksum() {
    if !support::is_root() {
        eprintln!("run_script requires root-owned scripts; run the tests as root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().canonicalize().expect("canonical tempdir");
    let scripts = base.join("scripts");
    let elsewhere = base.join("elsewhere");
    for d in [&scripts, &elsewhere] {
        std::fs::create_dir_all(d).expect("mkdir");
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let body = "#!/bin/sh\necho \"args: $*\"\necho \"home=${HOME:-unset}\"\n";
    let install = |path: &Path, mode: u32| {
        support::write_via_child(path, body);
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    let good = scripts.join("rotate.sh");
    install(&good, 0o755);
    let writable = scripts.join("writable.sh");
    install(&writable, 0o775);
    let foreign = scripts.join("foreign.sh");
    install(&foreign, 0o755);
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).expect("chown");
    let outside = elsewhere.join("rotate.sh");
    install(&outside, 0o755);
    std::os::unix::fs::symlink(&outside, scripts.join("link.sh")).expect("symlink");
    let sha = safety::sha256_file(&good).expect("hash");

    let mut r = Remediator::open(config(&base), &base).expect("open");
    let run = |path: PathBuf, sha256: &str| Action::RunScript {
        path,
        sha256: sha256.to_string(),
        args: vec!["a b".into(), "$(id)".into()],
    };
    let cases = [
        (
            "wrong sha256",
            run(good.clone(), &"0".repeat(64)),
            Reason::ChecksumMismatch,
        ),
        (
            "outside the script dir",
            run(outside.clone(), &sha),
            Reason::OutsideAllowlist,
        ),
        (
            "symlink out of the script dir",
            run(scripts.join("link.sh"), &sha),
            Reason::OutsideAllowlist,
        ),
        (
            "dot-dot out of the script dir",
            run(scripts.join("../elsewhere/rotate.sh"), &sha),
            Reason::OutsideAllowlist,
        ),
        (
            "group writable",
            run(writable.clone(), &sha),
            Reason::UnsafeFile,
        ),
        (
            "not owned by root",
            run(foreign.clone(), &sha),
            Reason::UnsafeFile,
        ),
        (
            "malformed sha256",
            run(good.clone(), "abc"),
            Reason::InvalidAction,
        ),
    ];
    for (what, action, want) in cases {
        let report = r.request(request("script", action, Mode::Execute)).await;
        assert_eq!(report.decision, Decision::Refused, "{what}: {report:?}");
        assert_eq!(report.reason_code, Some(want), "{what}: {report:?}");
        assert!(report.argv.is_empty(), "{what}: nothing ran");
    }

    let report = r
        .request(request("script", run(good.clone(), &sha), Mode::Execute))
        .await;
    assert_eq!(report.decision, Decision::Executed, "{report:?}");
    assert_eq!(
        report.argv,
        [good.display().to_string(), "a b".into(), "$(id)".into()]
    );
    assert_eq!(report.stdout, "args: a b $(id)\nhome=unset\n");
    assert_eq!(report.exit_code, Some(0));
}
