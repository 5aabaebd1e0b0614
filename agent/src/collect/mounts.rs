//! Disk space per mounted file system, from a mount table and `statvfs`, for the agent's own
//! view of the host or for a host seen from a pod (`agent.root_fs`, like node_exporter's
//! `--path.rootfs`).
//!
//! With `root_fs = "/"` (the default) this lists exactly what `sysinfo` listed before it: the
//! agent's own mount table (`<proc_root>/mounts`), the same file systems left out, the same
//! sizes (`f_bsize * f_blocks`, `f_bsize * f_bavail`); a test compares the two on the machine
//! it runs on. With another `root_fs` the table is the host's (`<proc_root>/1/mounts`, the
//! mount namespace of the host's init), each mount is measured at `<root_fs>/<mount point>`
//! and named as the host names it. Without access to pid 1 (`hidepid`), the agent's own
//! table stands in: the mounts it sees under `root_fs`, with that prefix stripped.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::HostPaths;

/// One file system to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mount point as the host names it: the metric's device.
    pub point: String,
    /// Where the agent reaches it (`point` under `root_fs`).
    pub path: PathBuf,
}

/// `(fs_spec, mount point, fs type)` of every line of a `/proc/PID/mounts` file, the mount
/// point's octal escapes (space, tab, newline, backslash) decoded.
pub fn parse_mounts(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let spec = f.next()?;
            let point = f
                .next()?
                .replace("\\134", "\\")
                .replace("\\040", " ")
                .replace("\\011", "\t")
                .replace("\\012", "\n");
            let fstype = f.next().unwrap_or("");
            Some((spec.to_string(), point, fstype.to_string()))
        })
        .collect()
}

/// Whether a mount holds disk space worth reporting: not a pseudo, memory, optical or network
/// file system (`statvfs` on a hard NFS mount can hang), nothing under `/sys`, `/proc` or
/// `/run` (but `/run/media`). The same rule `sysinfo` 0.33 applies, so the default view lists
/// the same mounts as before.
pub fn counted(spec: &str, point: &str, fstype: &str) -> bool {
    let pseudo = matches!(
        fstype,
        "rootfs"
            | "sysfs"
            | "proc"
            | "devtmpfs"
            | "cgroup"
            | "cgroup2"
            | "pstore"
            | "squashfs"
            | "rpc_pipefs"
            | "iso9660"
            | "devpts"
            | "hugetlbfs"
            | "mqueue"
            | "tmpfs"
            | "cifs"
            | "nfs"
            | "nfs4"
    );
    !(pseudo
        || point.starts_with("/sys")
        || point.starts_with("/proc")
        || (point.starts_with("/run") && !point.starts_with("/run/media"))
        || spec.starts_with("sunrpc"))
}

/// The mounts to measure now, each once (the first listing of a mount point wins).
pub fn mounts(host: &HostPaths) -> Vec<Mount> {
    let own_table = || std::fs::read_to_string(host.proc.join("mounts")).unwrap_or_default();
    let listed: Vec<Mount> = if host.root == Path::new("/") {
        parse_mounts(&own_table())
            .into_iter()
            .filter(|(spec, point, fstype)| counted(spec, point, fstype))
            .map(|(_, point, _)| Mount {
                path: PathBuf::from(&point),
                point,
            })
            .collect()
    } else {
        match std::fs::read_to_string(host.proc.join("1/mounts")) {
            Ok(text) => parse_mounts(&text)
                .into_iter()
                .filter(|(spec, point, fstype)| counted(spec, point, fstype))
                .map(|(_, point, _)| Mount {
                    path: under(&host.root, &point),
                    point,
                })
                .collect(),
            Err(_) => parse_mounts(&own_table())
                .into_iter()
                .filter_map(|(spec, point, fstype)| {
                    let rest = Path::new(&point).strip_prefix(&host.root).ok()?;
                    let host_point = Path::new("/").join(rest).display().to_string();
                    counted(&spec, &host_point, &fstype).then(|| Mount {
                        path: PathBuf::from(&point),
                        point: host_point,
                    })
                })
                .collect(),
        }
    };
    let mut seen = HashSet::new();
    listed
        .into_iter()
        .filter(|m| seen.insert(m.point.clone()))
        .collect()
}

/// `point` (absolute, as the host names it) under `root`.
fn under(root: &Path, point: &str) -> PathBuf {
    match point.trim_start_matches('/') {
        "" => root.to_path_buf(),
        rest => root.join(rest),
    }
}

/// Total and available bytes of the file system at `path`; `None` when it cannot be measured
/// or is empty.
pub fn space(path: &Path) -> Option<(u64, u64)> {
    let s = rustix::fs::statvfs(path).ok()?;
    let total = s.f_bsize.saturating_mul(s.f_blocks);
    (total > 0).then(|| (total, s.f_bsize.saturating_mul(s.f_bavail)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
/dev/root / ext4 rw,relatime 0 0
proc /proc proc rw 0 0
sysfs /sys sysfs rw 0 0
tmpfs /run tmpfs rw 0 0
/dev/sdb1 /run/media/usb vfat rw 0 0
/dev/sda1 /boot ext4 rw 0 0
/dev/sdc1 /srv/my\\040data xfs rw 0 0
server:/export /mnt/nfs nfs4 rw 0 0
sunrpc /var/lib/nfs/rpc_pipefs rpc_pipefs rw 0 0
overlay /var/lib/docker/overlay2/abc/merged overlay rw 0 0
/dev/sda1 /boot ext4 rw 0 0
";

    #[test]
    fn parses_and_filters_like_sysinfo() {
        let kept: Vec<String> = parse_mounts(TABLE)
            .into_iter()
            .filter(|(s, p, t)| counted(s, p, t))
            .map(|(_, p, _)| p)
            .collect();
        assert_eq!(
            kept,
            [
                "/",
                "/run/media/usb",
                "/boot",
                "/srv/my data",
                "/var/lib/docker/overlay2/abc/merged",
                "/boot",
            ]
        );
    }

    fn fixture(dir: &Path, own: &str, host: Option<&str>) -> HostPaths {
        let proc = dir.join("proc");
        std::fs::create_dir_all(proc.join("1")).expect("mkdir");
        std::fs::write(proc.join("mounts"), own).expect("write");
        if let Some(host) = host {
            std::fs::write(proc.join("1/mounts"), host).expect("write");
        }
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("boot")).expect("mkdir");
        HostPaths {
            proc,
            sys: dir.join("sys"),
            root,
        }
    }

    #[test]
    fn default_root_reads_the_agents_own_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut host = fixture(dir.path(), TABLE, Some("/dev/x /elsewhere ext4 rw 0 0\n"));
        host.root = PathBuf::from("/");
        let got: Vec<(String, PathBuf)> = mounts(&host)
            .into_iter()
            .map(|m| (m.point, m.path))
            .collect();
        let want = [
            "/",
            "/run/media/usb",
            "/boot",
            "/srv/my data",
            "/var/lib/docker/overlay2/abc/merged",
        ]
        .map(|p| (p.to_string(), PathBuf::from(p)));
        assert_eq!(got, want, "pid 1's table is not read, each point once");
    }

    #[test]
    fn host_root_reads_pid_1s_table_and_names_mounts_as_the_host_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let own = "overlay / overlay rw 0 0\n/dev/sda2 /host/root ext4 ro 0 0\n";
        let host = fixture(
            dir.path(),
            own,
            Some("/dev/sda2 / ext4 rw 0 0\n/dev/sda1 /boot ext4 rw 0 0\nproc /proc proc rw 0 0\n"),
        );
        let got = mounts(&host);
        assert_eq!(
            got,
            [
                Mount {
                    point: "/".into(),
                    path: host.root.clone()
                },
                Mount {
                    point: "/boot".into(),
                    path: host.root.join("boot")
                },
            ]
        );
        // Measured under root_fs: the fixture's directories are on the temp file system.
        for m in &got {
            assert!(space(&m.path).is_some(), "{m:?}");
        }
    }

    #[test]
    fn without_pid_1_the_own_mounts_under_root_fs_stand_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root").display().to_string();
        let own = format!(
            "overlay / overlay rw 0 0\n/dev/sda2 {root} ext4 ro 0 0\n/dev/sda1 {root}/boot ext4 ro 0 0\n\
             tmpfs {root}/run tmpfs ro 0 0\n/dev/sdb1 /var/lib/sco-agent ext4 rw 0 0\n"
        );
        let host = fixture(dir.path(), &own, None);
        let got: Vec<(String, PathBuf)> = mounts(&host)
            .into_iter()
            .map(|m| (m.point, m.path))
            .collect();
        assert_eq!(
            got,
            [
                ("/".to_string(), PathBuf::from(&root)),
                ("/boot".to_string(), PathBuf::from(format!("{root}/boot"))),
            ]
        );
    }

    /// The default view lists what `sysinfo` (the source before `root_fs` existed) lists on
    /// this machine, with the same sizes.
    #[test]
    fn default_paths_list_what_sysinfo_lists() {
        let ours: Vec<(String, u64)> = mounts(&HostPaths::default())
            .into_iter()
            .filter_map(|m| Some((m.point, space(&m.path)?.0)))
            .collect();
        let disks = sysinfo::Disks::new_with_refreshed_list();
        let mut seen = HashSet::new();
        let theirs: Vec<(String, u64)> = disks
            .list()
            .iter()
            .map(|d| {
                (
                    d.mount_point().to_string_lossy().into_owned(),
                    d.total_space(),
                )
            })
            .filter(|(p, total)| *total > 0 && seen.insert(p.clone()))
            .collect();
        assert_eq!(ours, theirs);
    }
}
