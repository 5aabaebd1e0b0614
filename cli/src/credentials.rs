//! The credentials file: one access and refresh token pair per control plane, readable by
//! its owner only.
//!
//! The file is rewritten whole (a temporary file created with mode 0600 in the same
//! directory, then renamed over it), so a reader never sees half of it and the tokens are
//! never readable by others, not even for a moment.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

/// A login at one control plane, as `POST /auth/login` or `/auth/refresh` returned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub username: String,
    pub role: String,
    /// The access token (a JWT).
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub refresh_token: String,
    /// Unix seconds.
    pub refresh_expires_at: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Credentials {
    /// Keyed by the server URL given with `--server` (without a trailing slash).
    #[serde(default)]
    pub servers: BTreeMap<String, Session>,
}

/// `$XDG_CONFIG_HOME/scoctl/credentials.json`, else `~/.config/scoctl/credentials.json`.
pub fn default_path() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => match std::env::var_os("HOME") {
            Some(home) if !home.is_empty() => PathBuf::from(home).join(".config"),
            _ => bail!("neither XDG_CONFIG_HOME nor HOME is set; pass --credentials FILE"),
        },
    };
    Ok(base.join("scoctl").join("credentials.json"))
}

impl Credentials {
    /// Reads the file; a missing file is no credentials.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a scoctl credentials file (remove it and log in again)",
                path.display()
            )
        })
    }

    /// Writes the file with mode 0600, creating its directory with mode 0700.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("create {}", dir.display()))?;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "credentials.json".into());
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let text = serde_json::to_string_pretty(self).context("encode credentials")?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            // The umask cannot widen 0600, but a stale file of ours might exist with
            // other bits: create_new refuses it, so this file is ours and exactly 0600.
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            f.write_all(text.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            anyhow::Error::new(e).context(format!("write {}", path.display()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(token: &str) -> Session {
        Session {
            username: "admin".into(),
            role: "admin".into(),
            token: token.into(),
            expires_at: 10,
            refresh_token: "rt_x".into(),
            refresh_expires_at: 20,
        }
    }

    #[test]
    fn saved_with_mode_0600_in_a_0700_directory_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/scoctl/credentials.json");
        let mut creds = Credentials::load(&path).expect("missing file is empty");
        assert!(creds.servers.is_empty());
        creds
            .servers
            .insert("http://127.0.0.1:8080".into(), session("a"));
        creds.save(&path).expect("save");
        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().expect("dir")), 0o700);

        // Rewritten: still 0600, no temporary file left beside it.
        creds.servers.insert("https://cp:8443".into(), session("b"));
        creds.save(&path).expect("save again");
        assert_eq!(mode(&path), 0o600);
        let names: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("read dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("credentials.json")]);
        let back = Credentials::load(&path).expect("load");
        assert_eq!(back.servers.len(), 2);
        assert_eq!(back.servers["https://cp:8443"], session("b"));
    }

    #[test]
    fn an_existing_wider_file_is_replaced_by_a_0600_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("credentials.json");
        std::fs::write(&path, "{}").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        Credentials::default().save(&path).expect("save");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("credentials.json");
        std::fs::write(&path, "not json").expect("write");
        let err = Credentials::load(&path).expect_err("corrupt");
        assert!(format!("{err:#}").contains("credentials.json"), "{err:#}");
    }
}
