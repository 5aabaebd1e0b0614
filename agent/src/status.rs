//! `status.json` in the data directory: what the running agent's detector is doing, for
//! `sco-agent status` (the agent's sled database is locked while it runs, so the state is
//! also written here, atomically, whenever it changes).

use std::path::Path;

use serde::{Deserialize, Serialize};

pub const FILE: &str = "status.json";

/// What the detector is doing: written here, sent in heartbeats, shown by `GET /hosts/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// "warming_up" or "calibrated".
    pub detector: String,
    pub warm_until_ms: i64,
    pub calibrated_at_ms: i64,
    pub restored: bool,
    pub model: String,
}

/// Writes the state (temp file + rename, so a reader never sees half a file); failures are
/// logged, never fatal.
pub fn write(data_dir: &Path, status: &Status) {
    let tmp = data_dir.join(format!("{FILE}.tmp"));
    let result = serde_json::to_vec_pretty(status)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, data_dir.join(FILE)));
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not write {FILE}");
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("{path}: {source} (is the agent running with this data directory?)")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a status file: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
}

pub fn read(data_dir: &Path) -> Result<Status, StatusError> {
    let path = data_dir.join(FILE);
    let text = std::fs::read(&path).map_err(|source| StatusError::Read {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|source| StatusError::Parse {
        path: path.display().to_string(),
        source,
    })
}

/// Human-readable lines, times relative to `now_ms`.
pub fn describe(s: &Status, now_ms: i64) -> String {
    let ago = |ms: i64| format!("{} s ago", ((now_ms - ms) / 1000).max(0));
    match s.detector.as_str() {
        "calibrated" => format!(
            "detector: calibrated ({}{}), model {}",
            ago(s.calibrated_at_ms),
            if s.restored {
                ", restored at start"
            } else {
                ""
            },
            s.model
        ),
        "warming_up" => format!(
            "detector: warming up, no alarms until about {} s from now, model {}",
            ((s.warm_until_ms - now_ms) / 1000).max(0),
            s.model
        ),
        other => format!("detector: {other:?}, model {}", s.model),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_state_reads_back_and_describes_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = Status {
            detector: "warming_up".into(),
            warm_until_ms: 400_000,
            calibrated_at_ms: 0,
            restored: false,
            model: "m@1".into(),
        };
        write(dir.path(), &d);
        let s = read(dir.path()).expect("reads back");
        assert_eq!(s.detector, "warming_up");
        assert_eq!(
            describe(&s, 100_000),
            "detector: warming up, no alarms until about 300 s from now, model m@1"
        );
        let e = read(&dir.path().join("missing")).expect_err("no file");
        assert!(e.to_string().contains("is the agent running"), "{e}");
    }
}
