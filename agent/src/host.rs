//! What the agent says about its host in its hello and enrollment request: host name and
//! kernel release from `uname(2)`, the distribution from `os-release(5)` under the host's root
//! file system (`agent.root_fs`), in the form `Linux (Debian GNU/Linux 12)`.

use std::path::Path;

pub struct HostInfo {
    pub hostname: String,
    pub os: String,
    pub kernel: String,
}

impl HostInfo {
    pub fn read(root_fs: &Path) -> Self {
        let uname = rustix::system::uname();
        let os_release = ["etc/os-release", "usr/lib/os-release"]
            .iter()
            .find_map(|p| std::fs::read_to_string(root_fs.join(p)).ok())
            .unwrap_or_default();
        Self {
            hostname: hostname(),
            os: describe_os(&os_release),
            kernel: uname.release().to_string_lossy().into_owned(),
        }
    }
}

/// The host name alone (enrollment names the host with it).
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// `Linux (NAME VERSION_ID)`, `Linux (NAME)` without a version, `Linux` without a file.
fn describe_os(os_release: &str) -> String {
    let field = |key: &str| {
        os_release.lines().find_map(|line| {
            let value = line.trim().strip_prefix(key)?.strip_prefix('=')?;
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            (!value.is_empty()).then(|| value.to_string())
        })
    };
    match (field("NAME"), field("VERSION_ID")) {
        (Some(name), Some(version)) => format!("Linux ({name} {version})"),
        (Some(name), None) => format!("Linux ({name})"),
        (None, Some(version)) => format!("Linux (unknown {version})"),
        (None, None) => "Linux".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_forms() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
                      VERSION_ID=\"12\"\nID=debian\n";
        assert_eq!(describe_os(debian), "Linux (Debian GNU/Linux 12)");
        assert_eq!(describe_os("NAME=Arch\nID=arch\n"), "Linux (Arch)");
        assert_eq!(describe_os("NAME=\"\"\n"), "Linux");
        assert_eq!(describe_os(""), "Linux");
        // A key that merely starts like another is not it.
        assert_eq!(
            describe_os("NAMEX=no\nNAME='Alpine Linux'\nVERSION_ID=3.20.1\n"),
            "Linux (Alpine Linux 3.20.1)"
        );
    }

    #[test]
    fn reads_this_host() {
        let info = HostInfo::read(Path::new("/"));
        assert!(!info.hostname.is_empty());
        assert!(info
            .kernel
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit()));
        assert!(info.os.starts_with("Linux"));
    }
}
