//! "Did you mean": the things the chat can do, ranked by how close a message that was
//! not understood comes to each of them.

use crate::intent::Suggestion;
use crate::lexicon::{edit_distance, Lexicon};

/// How many suggestions an unknown answer carries.
pub const MAX_SUGGESTIONS: usize = 3;

/// Each intent: its name, an example (`{host}` is a host of the fleet), and the words
/// that point at it.
const CAPABILITIES: &[(&str, &str, &[&str])] = &[
    (
        "fleet_status",
        "fleet status",
        &[
            "fleet", "status", "hosts", "servers", "overview", "all", "down", "up", "list",
        ],
    ),
    (
        "host_status",
        "status of {host}",
        &[
            "status", "host", "healthy", "health", "doing", "describe", "ok", "check",
        ],
    ),
    (
        "anomalies",
        "open anomalies on {host} in the last 2 hours",
        &[
            "anomalies",
            "anomaly",
            "alerts",
            "alert",
            "incidents",
            "issues",
            "problems",
            "open",
            "critical",
            "high",
            "fired",
            "events",
        ],
    ),
    (
        "explain",
        "what's wrong with {host}?",
        &[
            "why", "wrong", "explain", "cause", "caused", "slow", "broken", "fire",
        ],
    ),
    (
        "metric_history",
        "cpu on {host} last hour",
        &[
            "cpu", "memory", "mem", "ram", "disk", "load", "network", "net", "io", "swap",
            "pressure", "graph", "usage", "metric", "metrics", "chart", "trend",
        ],
    ),
    (
        "top_processes",
        "top processes by memory on {host}",
        &[
            "top",
            "processes",
            "process",
            "hog",
            "hogs",
            "most",
            "using",
            "consuming",
        ],
    ),
    (
        "actions",
        "pending proposals",
        &[
            "actions",
            "action",
            "proposals",
            "proposal",
            "remediation",
            "pending",
            "approval",
            "failed",
        ],
    ),
    (
        "policy_status",
        "policy rollout status",
        &[
            "policy", "policies", "rollout", "rollouts", "canary", "revision",
        ],
    ),
    (
        "approve",
        "approve act-0123456789abcdef",
        &["approve", "accept", "allow", "ok", "yes"],
    ),
    (
        "reject",
        "reject act-0123456789abcdef because it is peak time",
        &["reject", "deny", "decline", "refuse", "no"],
    ),
    (
        "trigger",
        "restart nginx on {host}",
        &[
            "restart",
            "kill",
            "stop",
            "reboot",
            "bounce",
            "vacuum",
            "journal",
            "service",
            "terminate",
            "run",
            "fix",
            "start",
            "reload",
        ],
    ),
    (
        "confirm",
        "confirm cf-7k2p9q4x",
        &["confirm", "yes", "go", "ahead", "execute", "do"],
    ),
    (
        "runbooks",
        "runbooks for disk full",
        &[
            "runbook",
            "runbooks",
            "playbook",
            "docs",
            "how",
            "fix",
            "guide",
            "documentation",
        ],
    ),
    (
        "help",
        "help",
        &["help", "what", "can", "you", "commands", "usage", "hello"],
    ),
];

/// The closest capabilities to `words` (the message's normalized words), best first:
/// a word counts when it is one of the capability's words, or (five letters or more) one edit
/// away from one (two for long words). Ties keep the order above, so an empty message gets the most
/// common questions.
pub fn suggestions(words: &[&str], lex: &Lexicon) -> Vec<Suggestion> {
    let host = lex.hosts().first().map_or("web-1", |h| h.hostname.as_str());
    let content: Vec<&str> = words.iter().copied().filter(|w| w.len() <= 64).collect();
    let mut scored: Vec<(f64, usize)> = CAPABILITIES
        .iter()
        .enumerate()
        .map(|(i, (_, _, keys))| {
            let hits = content
                .iter()
                .filter(|w| {
                    keys.iter().any(|k| {
                        let limit = if k.len() >= 7 { 2 } else { 1 };
                        *w == k
                            || (w.len() >= 5
                                && w.len().abs_diff(k.len()) <= limit
                                && edit_distance(w, k) <= limit)
                    })
                })
                .count();
            let score = if content.is_empty() {
                0.0
            } else {
                hits as f64 / content.len() as f64
            };
            (score, i)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored
        .into_iter()
        .take(MAX_SUGGESTIONS)
        .map(|(score, i)| {
            let (intent, example, _) = CAPABILITIES[i];
            Suggestion {
                intent: intent.to_string(),
                example: example.replace("{host}", host),
                score: (score * 100.0).round() / 100.0,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_first() {
        let lex = Lexicon::new();
        let s = suggestions(&["reboot", "everything"], &lex);
        assert_eq!(s[0].intent, "trigger");
        assert_eq!(s[0].example, "restart nginx on web-1");
        let s = suggestions(&["show", "me", "the", "mertics"], &lex);
        assert_eq!(s[0].intent, "metric_history");
        let s = suggestions(&["rollotu"], &lex);
        assert_eq!(s[0].intent, "policy_status");
        let s = suggestions(&[], &lex);
        assert_eq!(s.len(), MAX_SUGGESTIONS);
        assert_eq!(s[0].intent, "fleet_status");
    }
}
