//! The shapes of words the parser recognises without the fleet: ids (confirmation,
//! event, action), names that look like hosts, label parts, sizes, severities, states and
//! resources, and a rejection's reason after its action id.

use sco_policy::{Consumer, Severity};

use crate::intent::ActionState;
use crate::parse::MAX_REASON_CHARS;

pub(crate) fn is_label_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
}

/// Shaped like a hostname: a letter, and a digit or a dash or a dot.
pub(crate) fn is_host_shaped(w: &str) -> bool {
    w.len() <= 253
        && w.bytes().any(|b| b.is_ascii_alphabetic())
        && w.bytes()
            .any(|b| b.is_ascii_digit() || b == b'-' || b == b'.')
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

/// Sizes and durations that look like names: `200mb`, `2h`.
pub(crate) fn is_unit_word(w: &str) -> bool {
    let digits = w.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0
        && matches!(
            &w[digits..],
            "m" | "h"
                | "d"
                | "w"
                | "s"
                | "mb"
                | "gb"
                | "g"
                | "k"
                | "kb"
                | "ms"
                | "min"
                | "mins"
                | "hr"
                | "hrs"
                | "am"
                | "pm"
                | "x"
                | "%"
        )
}

pub(crate) fn consumer_word(w: &str) -> Option<Consumer> {
    match w {
        "cpu" | "processor" => Some(Consumer::Cpu),
        "memory" | "mem" | "ram" | "rss" => Some(Consumer::Memory),
        "io" | "i/o" | "disk" => Some(Consumer::Io),
        _ => None,
    }
}

pub(crate) fn severity_word(w: &str) -> Option<Severity> {
    match w {
        "low" => Some(Severity::Low),
        "medium" | "med" | "moderate" => Some(Severity::Medium),
        "high" | "severe" => Some(Severity::High),
        "critical" | "crit" | "sev1" => Some(Severity::Critical),
        _ => None,
    }
}

pub(crate) fn state_word(w: &str) -> Option<ActionState> {
    use ActionState::*;
    Some(match w {
        "pending" | "proposed" | "waiting" | "awaiting" | "approval" | "approvals" | "open" => {
            Proposed
        }
        "approved" => Approved,
        "rejected" | "denied" | "declined" => Rejected,
        "running" | "executing" | "inflight" | "in-flight" => Running,
        "succeeded" | "successful" | "success" | "completed" | "done" | "worked" => Succeeded,
        "failed" | "failing" | "failures" | "failure" | "errored" => Failed,
        "refused" => Refused,
        "expired" => Expired,
        "dry-run" | "dryrun" | "dry-runs" | "dryruns" => DryRun,
        _ => return None,
    })
}

/// `200mb`, `1g`, `500m`, or `200` followed by `mb`.
pub(crate) fn size_mb(w: &str, next: Option<&str>) -> Option<u32> {
    let digits = w.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 7 {
        return None;
    }
    let n: u32 = w[..digits].parse().ok()?;
    let unit = if digits == w.len() {
        next?
    } else {
        &w[digits..]
    };
    let mb = match unit {
        "m" | "mb" | "mib" | "megabytes" => n,
        "g" | "gb" | "gib" | "gigabytes" => n.checked_mul(1024)?,
        _ => return None,
    };
    (mb > 0).then_some(mb)
}

/// `cf-` and 4 to 32 letters or digits: the shape [`crate::confirmation_id`] gives.
pub(crate) fn is_confirmation_id(w: &str) -> bool {
    w.strip_prefix("cf-").is_some_and(|rest| {
        (4..=32).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// An id given after "confirm": letters, digits and dashes.
pub(crate) fn is_plain_id(w: &str) -> bool {
    (4..=64).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A name with a letter, as agent ids are (`web-1-0a1b2c3d`).
pub(crate) fn is_agent_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes().any(|b| b.is_ascii_alphabetic())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

/// An anomaly event id: `<agent id>:<seq>`.
pub(crate) fn is_event_id(w: &str) -> bool {
    w.rsplit_once(':').is_some_and(|(agent, seq)| {
        is_agent_id(agent)
            && (1..=19).contains(&seq.len())
            && seq.bytes().all(|b| b.is_ascii_digit())
    })
}

/// A remediation action id: `act-<hex>` (manual requests) or `<agent id>:<proposal id>`.
pub(crate) fn is_action_id(w: &str) -> bool {
    if let Some(hex) = w.strip_prefix("act-") {
        return (4..=32).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    w.rsplit_once(':').is_some_and(|(agent, id)| {
        is_agent_id(agent)
            && (17..=64).contains(&id.len())
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !id.bytes().all(|b| b.is_ascii_digit())
    })
}

/// The reason after a rejected action id: "because ...", ": ...", "- ...".
pub(crate) fn reason_of(rest: &str) -> Result<Option<String>, String> {
    let mut r = rest.trim_start_matches(|c: char| c.is_whitespace() || ":-,;.".contains(c));
    for lead in [
        "because of",
        "because",
        "reason:",
        "reason",
        "as",
        "since",
        "due to",
    ] {
        if let Some(after) = r.strip_prefix(lead) {
            if after.is_empty() || after.starts_with(char::is_whitespace) || lead.ends_with(':') {
                r = after;
                break;
            }
        }
    }
    let r = r
        .trim_start_matches(|c: char| c.is_whitespace() || ":-,;".contains(c))
        .trim();
    if r.is_empty() {
        return Ok(None);
    }
    if r.chars().any(char::is_control) {
        return Err("a rejection reason is one line of text without control characters".into());
    }
    let chars = r.chars().count();
    if chars > MAX_REASON_CHARS {
        return Err(format!(
            "a rejection reason is at most {MAX_REASON_CHARS} characters, this one has {chars}"
        ));
    }
    Ok(Some(r.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_shapes() {
        assert!(is_confirmation_id("cf-7k2p9q4x"));
        assert!(!is_confirmation_id("cf-"));
        assert!(!is_confirmation_id("cf-a$bc"));
        assert!(is_event_id("web-1-0a1b2c3d:88"));
        assert!(!is_event_id("13:15"));
        assert!(!is_event_id("web-1:"));
        assert!(is_action_id("act-0123456789abcdef"));
        assert!(is_action_id(
            "db-2-4e5f6071:0123456789abcdef0123456789abcdef"
        ));
        assert!(!is_action_id("web-1-0a1b2c3d:88"));
        assert!(!is_action_id("act-xyz"));
    }

    #[test]
    fn reasons() {
        assert_eq!(reason_of(""), Ok(None));
        assert_eq!(reason_of(": not now"), Ok(Some("not now".into())));
        assert_eq!(
            reason_of(" because asap is not a plan"),
            Ok(Some("asap is not a plan".into()))
        );
        // "assume" starts with "as" but is the reason itself
        assert_eq!(
            reason_of(" assume it's fine"),
            Ok(Some("assume it's fine".into()))
        );
        assert!(reason_of(&format!(" {}", "x".repeat(501))).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(size_mb("200mb", None), Some(200));
        assert_eq!(size_mb("200", Some("mb")), Some(200));
        assert_eq!(size_mb("1g", None), Some(1024));
        assert_eq!(size_mb("0mb", None), None);
        assert_eq!(size_mb("99999999g", None), None);
        assert_eq!(size_mb("200", Some("files")), None);
    }
}
