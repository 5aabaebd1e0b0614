//! The typed allowlist: every action the agent can take, and the static
//! checks on its fields (names, patterns, ranges) that need no host state.
//!
//! Nothing here touches the system: the agent resolves an action against the
//! host and runs it; the control plane checks the same types when a policy or
//! a manual trigger names an action.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Reason;

/// One action of the allowlist. Serialized with a `type` tag, e.g.
/// `{"type": "restart_service", "unit": "nginx.service"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// `<systemctl> restart <unit>`.
    RestartService { unit: String },
    /// Sends TERM to the matching processes, then KILL to those still alive
    /// after `grace_secs`. The target is exactly one of `name` (the process
    /// name, as in `/proc/PID/comm` or the executable's file name), `pid`, or
    /// `top_consumer` (the heaviest process by that resource, chosen by the
    /// agent when the action runs); or `pattern` (a glob over the whole
    /// command line) alone. With `top_consumer`, a `pattern` limits the
    /// choice: the heaviest process whose command line matches it (and that
    /// uses the resource at all) is chosen, or nothing is signalled.
    KillProcess {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pattern: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        top_consumer: Option<Consumer>,
        #[serde(default = "default_grace_secs")]
        grace_secs: u64,
    },
    /// Deletes regular files under `root` whose file name matches one of
    /// `patterns` (globs: `*`, `?`, `[a-z]`, `[!x]`) and whose mtime is older
    /// than `older_than_days`, oldest first, at most `max_bytes` in total.
    CleanPaths {
        root: PathBuf,
        patterns: Vec<String>,
        older_than_days: u32,
        max_bytes: u64,
    },
    /// `<journalctl> --vacuum-size=<max_size_mb>M`.
    JournalVacuum { max_size_mb: u32 },
    /// Runs a root-owned script of the script directory whose content has
    /// the given SHA-256, with `args` as its arguments (no shell).
    RunScript {
        path: PathBuf,
        sha256: String,
        #[serde(default)]
        args: Vec<String>,
    },
    /// HTTP POST of `body` as JSON to an allowlisted webhook (http or https).
    Notify {
        url: String,
        body: serde_json::Value,
    },
}

/// The resource a `top_consumer` kill ranks processes by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consumer {
    /// CPU time over a short measurement.
    Cpu,
    /// Resident memory.
    Memory,
    /// Storage bytes read and written per second over a short measurement.
    Io,
}

impl Consumer {
    pub fn as_str(self) -> &'static str {
        match self {
            Consumer::Cpu => "cpu",
            Consumer::Memory => "memory",
            Consumer::Io => "io",
        }
    }
}

fn default_grace_secs() -> u64 {
    10
}

/// Longest wait between TERM and KILL.
pub const MAX_GRACE_SECS: u64 = 300;
const MAX_SCRIPT_ARGS: usize = 32;
const MAX_ARG_LEN: usize = 1024;
const MAX_PATTERNS: usize = 32;

impl Action {
    /// Short name of the action type, as in its `type` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::RestartService { .. } => "restart_service",
            Action::KillProcess { .. } => "kill_process",
            Action::CleanPaths { .. } => "clean_paths",
            Action::JournalVacuum { .. } => "journal_vacuum",
            Action::RunScript { .. } => "run_script",
            Action::Notify { .. } => "notify",
        }
    }

    /// Checks what can be checked without looking at the host.
    pub fn check(&self) -> Result<(), (Reason, String)> {
        let invalid = |msg: String| Err((Reason::InvalidAction, msg));
        match self {
            Action::RestartService { unit } => check_unit(unit),
            Action::KillProcess {
                name,
                pattern,
                pid,
                top_consumer,
                grace_secs,
            } => {
                let given: Vec<&str> = [
                    ("name", name.is_some()),
                    ("pattern", pattern.is_some()),
                    ("pid", pid.is_some()),
                    ("top_consumer", top_consumer.is_some()),
                ]
                .iter()
                .filter(|(_, g)| *g)
                .map(|(f, _)| *f)
                .collect();
                // A pattern narrows a top consumer; beside a name or a pid it
                // would be a second, conflicting target.
                let one_target = matches!(
                    given.as_slice(),
                    ["name"]
                        | ["pattern"]
                        | ["pid"]
                        | ["top_consumer"]
                        | ["pattern", "top_consumer"]
                );
                if !one_target {
                    let got = if given.is_empty() {
                        "none".to_string()
                    } else {
                        given.join(" and ")
                    };
                    return invalid(format!(
                        "kill_process needs one target: `name`, `pid`, `pattern`, or \
                         `top_consumer` (optionally with `pattern`); got {got}"
                    ));
                }
                if *grace_secs > MAX_GRACE_SECS {
                    return invalid(format!(
                        "grace_secs {grace_secs} is more than {MAX_GRACE_SECS}"
                    ));
                }
                if let Some(name) = name {
                    check_process_name(name)?;
                }
                if let Some(pattern) = pattern {
                    check_process_pattern(pattern)?;
                }
                Ok(())
            }
            Action::CleanPaths {
                root,
                patterns,
                max_bytes,
                ..
            } => {
                if !root.is_absolute() {
                    return invalid(format!("root {} is not an absolute path", root.display()));
                }
                if patterns.is_empty() || patterns.len() > MAX_PATTERNS {
                    return invalid(format!(
                        "patterns must hold 1 to {MAX_PATTERNS} globs, not {}",
                        patterns.len()
                    ));
                }
                for p in patterns {
                    if p.is_empty() || p.len() > 128 || p.contains('/') || p.contains('\0') {
                        return invalid(format!(
                            "pattern {p:?} must be a file-name glob of 1 to 128 characters without '/'"
                        ));
                    }
                }
                if *max_bytes == 0 {
                    return invalid("max_bytes must be at least 1".into());
                }
                Ok(())
            }
            Action::JournalVacuum { max_size_mb } => {
                if *max_size_mb == 0 {
                    return invalid("max_size_mb must be at least 1".into());
                }
                Ok(())
            }
            Action::RunScript { path, sha256, args } => {
                if !path.is_absolute() {
                    return invalid(format!("script {} is not an absolute path", path.display()));
                }
                if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                    return invalid(format!("sha256 {sha256:?} is not 64 hex digits"));
                }
                if args.len() > MAX_SCRIPT_ARGS {
                    return invalid(format!(
                        "{} arguments, at most {MAX_SCRIPT_ARGS} allowed",
                        args.len()
                    ));
                }
                if let Some(a) = args
                    .iter()
                    .find(|a| a.len() > MAX_ARG_LEN || a.contains('\0'))
                {
                    return invalid(format!(
                        "argument {:?} is longer than {MAX_ARG_LEN} bytes or holds a NUL",
                        a.chars().take(64).collect::<String>()
                    ));
                }
                Ok(())
            }
            Action::Notify { url, .. } => {
                if url.len() > 2048 {
                    return invalid("url is longer than 2048 bytes".into());
                }
                Ok(())
            }
        }
    }
}

fn strict_name(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@._:-".contains(&b))
}

/// Unit names: `^[A-Za-z0-9@._:-]{1,128}$`, and not starting with `-` (it
/// would read as an option of the service manager).
pub fn check_unit(unit: &str) -> Result<(), (Reason, String)> {
    if strict_name(unit) && !unit.starts_with('-') {
        Ok(())
    } else {
        Err((
            Reason::InvalidName,
            format!("unit {unit:?} does not match ^[A-Za-z0-9@._:-]{{1,128}}$"),
        ))
    }
}

/// Process names follow the unit rule.
pub fn check_process_name(name: &str) -> Result<(), (Reason, String)> {
    if strict_name(name) {
        Ok(())
    } else {
        Err((
            Reason::InvalidName,
            format!("process name {name:?} does not match ^[A-Za-z0-9@._:-]{{1,128}}$"),
        ))
    }
}

/// Command-line patterns: printable, at most 256 bytes, and at least three
/// characters that are not wildcards, so `*` alone cannot match every
/// process.
pub fn check_process_pattern(pattern: &str) -> Result<(), (Reason, String)> {
    let literal = pattern.chars().filter(|c| !"*?[]! ".contains(*c)).count();
    if pattern.len() > 256 || pattern.chars().any(char::is_control) || literal < 3 {
        return Err((
            Reason::InvalidName,
            format!(
                "pattern {pattern:?} must be printable, at most 256 bytes, with at least 3 literal characters"
            ),
        ));
    }
    Ok(())
}

/// Shell-style glob match of a whole string: `*` (any run), `?` (one
/// character), `[abc]`, `[a-z]` and `[!x]`. No escapes, no `/` special case.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, text index).
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi + 1, ti));
                pi += 1;
                continue;
            }
            Some('?') => Some(1),
            Some('[') => class_match(&p[pi..], t[ti]),
            Some(c) if *c == t[ti] => Some(1),
            _ => None,
        };
        match step {
            Some(len) => {
                pi += len;
                ti += 1;
            }
            None => match star {
                Some((sp, st)) => {
                    pi = sp;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Matches `c` against the class at the start of `p` (which begins with
/// `[`). Returns the class length when it matches; an unclosed `[` is a
/// literal.
fn class_match(p: &[char], c: char) -> Option<usize> {
    let Some(end) = p.iter().skip(2).position(|x| *x == ']').map(|i| i + 2) else {
        return (c == '[').then_some(1);
    };
    let body = &p[1..end];
    let (negate, body) = match body.first() {
        Some('!') | Some('^') => (true, &body[1..]),
        _ => (false, body),
    };
    let mut hit = false;
    let mut i = 0;
    while i < body.len() {
        if i + 2 < body.len() && body[i + 1] == '-' {
            hit |= body[i] <= c && c <= body[i + 2];
            i += 3;
        } else {
            hit |= body[i] == c;
            i += 1;
        }
    }
    (hit != negate).then_some(end + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let cases = [
            ("*.log", "app.log", true),
            ("*.log", "app.log.1", false),
            ("*.log*", "app.log.1", true),
            ("app-?.gz", "app-1.gz", true),
            ("app-?.gz", "app-12.gz", false),
            ("[ab]*", "b.txt", true),
            ("[!ab]*", "b.txt", false),
            ("[0-9].old", "7.old", true),
            ("[0-9].old", "x.old", false),
            ("*", "", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("[", "[", true),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob_match(p, t), want, "{p:?} vs {t:?}");
        }
    }

    #[test]
    fn names() {
        let units = [
            ("nginx.service", true),
            ("getty@tty1.service", true),
            ("sys-kernel-debug.mount", true),
            ("nginx; rm -rf /", false),
            ("nginx service", false),
            ("$(reboot)", false),
            ("--force", false),
            ("", false),
            ("a/b", false),
        ];
        for (u, ok) in units {
            assert_eq!(check_unit(u).is_ok(), ok, "{u:?}");
        }
        assert!(check_unit(&"a".repeat(129)).is_err());
        assert!(check_process_pattern("*").is_err());
        assert!(check_process_pattern("* ? *").is_err());
        assert!(check_process_pattern("*worker.py*").is_ok());
    }

    #[test]
    fn actions_parse_with_a_type_tag() {
        let a: Action =
            serde_json::from_str(r#"{"type":"restart_service","unit":"nginx.service"}"#)
                .expect("parses");
        assert_eq!(
            a,
            Action::RestartService {
                unit: "nginx.service".into()
            }
        );
        let k: Action =
            serde_json::from_str(r#"{"type":"kill_process","name":"burn"}"#).expect("parses");
        assert!(matches!(k, Action::KillProcess { grace_secs: 10, .. }));
        assert!(serde_json::from_str::<Action>(r#"{"type":"shell","cmd":"ls"}"#).is_err());
        assert!(serde_json::from_str::<Action>(
            r#"{"type":"restart_service","unit":"x","extra":1}"#
        )
        .is_err());
        let both = Action::KillProcess {
            name: Some("a".into()),
            pid: Some(3),
            pattern: None,
            top_consumer: None,
            grace_secs: 1,
        };
        assert_eq!(
            both.check().expect_err("two targets").0,
            Reason::InvalidAction
        );
    }

    #[test]
    fn kill_targets() {
        // (action JSON, error text or None when valid)
        let cases = [
            (r#"{"name":"burn"}"#, None),
            (r#"{"pid":42}"#, None),
            (r#"{"pattern":"*burn*"}"#, None),
            (r#"{"top_consumer":"cpu"}"#, None),
            (r#"{"top_consumer":"memory","pattern":"*java*"}"#, None),
            (r#"{"top_consumer":"io","grace_secs":2}"#, None),
            (r#"{}"#, Some("got none")),
            (r#"{"name":"a","pid":3}"#, Some("got name and pid")),
            (
                r#"{"name":"a","pattern":"*abc*"}"#,
                Some("got name and pattern"),
            ),
            (
                r#"{"pid":3,"pattern":"*abc*"}"#,
                Some("got pattern and pid"),
            ),
            (
                r#"{"top_consumer":"cpu","pid":3}"#,
                Some("got pid and top_consumer"),
            ),
            (
                r#"{"top_consumer":"cpu","pattern":"*"}"#,
                Some("at least 3 literal"),
            ),
        ];
        for (fields, want) in cases {
            let json = format!(r#"{{"type":"kill_process",{}"#, &fields[1..]);
            let json = json.replace(",}", "}");
            let a: Action = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
            match (a.check(), want) {
                (Ok(()), None) => {}
                (Err((_, e)), Some(w)) => assert!(e.contains(w), "{json}: {e}"),
                (got, _) => panic!("{json}: got {got:?}, wanted {want:?}"),
            }
        }
        assert!(
            serde_json::from_str::<Action>(r#"{"type":"kill_process","top_consumer":"disk"}"#)
                .is_err()
        );
        let round: Action =
            serde_json::from_str(r#"{"type":"kill_process","top_consumer":"memory"}"#)
                .expect("parses");
        assert_eq!(
            serde_json::to_value(&round).expect("serializes")["top_consumer"],
            "memory"
        );
    }
}
