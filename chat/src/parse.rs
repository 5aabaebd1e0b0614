//! The deterministic parser: a message, the fleet's [`Lexicon`] and `now` in, one
//! [`Intent`] out. No network, no clock, no randomness, and no panics on any input.
//!
//! It works on words: ids first (confirmation ids, action ids, event ids are unambiguous
//! by shape), then the intent by its keywords in a fixed order of precedence (a command
//! before a question, a specific question before a general one), then that intent's
//! arguments: hosts, label selectors, metrics, time ranges, severities, states.
//! This file holds the tokens, the order of precedence and the commands (confirm, approve or
//! reject, runbooks, explain); `parse/trigger.rs` an allowlisted action and its target,
//! `parse/questions.rs` the questions (ranges, top processes, anomalies, actions, policies,
//! metrics, status), `parse/hosts.rs` which host the words name, and `parse/words.rs` the
//! shapes of words that need no fleet (ids, sizes, severities).

mod hosts;
mod questions;
mod trigger;
mod words;

use hosts::{ambiguous, selector_text, several, unknown_host};

use std::collections::BTreeSet;

use sco_policy::{Action, Consumer};

use crate::intent::{ActionState, ExplainTarget, HostRef, Intent, Scope, Selector};
use crate::lexicon::{Lexicon, Resolution};
use crate::suggest::suggestions;
use crate::time::{range_at, TimeRange};

use words::{
    consumer_word, is_host_shaped, is_label_part, is_plain_id, is_unit_word, reason_of,
    severity_word, size_mb, state_word,
};
pub(crate) use words::{is_action_id, is_confirmation_id, is_event_id};

/// Longest message the parser reads, in characters; longer ones are refused as such.
pub const MAX_MESSAGE_CHARS: usize = 4000;
/// A metric's range when the message names none.
pub const DEFAULT_METRIC_RANGE_MS: i64 = 3_600_000;
/// `journal_vacuum` size when the message names none.
pub const DEFAULT_JOURNAL_MB: u32 = 500;
/// A rejection reason's limit, as the REST API's.
pub const MAX_REASON_CHARS: usize = 500;

/// Understands one chat message against the fleet, at `now_ms` (Unix ms, UTC).
pub fn parse(text: &str, lex: &Lexicon, now_ms: i64) -> Intent {
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return Intent::Unknown {
            reason: format!("the message is longer than {MAX_MESSAGE_CHARS} characters"),
            suggestions: suggestions(&[], lex),
        };
    }
    let ctx = Ctx::new(text, lex, now_ms);
    ctx.intent()
}

/// One word of the message: lowercased, outer punctuation and apostrophes removed (`w`,
/// what keywords are matched against), as written without its outer punctuation (`raw`,
/// for what is case-sensitive: units, process names, ids), and where it ends in the text.
#[derive(Debug, Clone)]
struct Tok {
    w: String,
    raw: String,
    end: usize,
}

fn tokenize(text: &str) -> Vec<Tok> {
    const OUTER: &[char] = &[
        '?', '!', ',', ';', '"', '\'', '(', ')', '[', ']', '{', '}', '<', '>', '`', '.', ':',
        '\u{2018}', '\u{2019}', '\u{201c}', '\u{201d}', '*',
    ];
    let mut out = Vec::new();
    let mut start = None;
    let mut pieces = Vec::new();
    for (i, c) in text.char_indices() {
        if c.is_whitespace() || c.is_control() {
            if let Some(s) = start.take() {
                pieces.push((s, i));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        pieces.push((s, text.len()));
    }
    for (s, e) in pieces {
        let raw = &text[s..e];
        let trimmed = raw.trim_matches(OUTER);
        let mut w = trimmed.to_lowercase();
        // "web-1's" is web-1; "what's" is whats
        for suffix in ["'s", "\u{2019}s"] {
            if let Some(stem) = w.strip_suffix(suffix) {
                if stem.contains(|c: char| c.is_ascii_digit() || c == '-') {
                    w = stem.to_string();
                }
            }
        }
        w.retain(|c| c != '\'' && c != '\u{2019}');
        if !w.is_empty() {
            out.push(Tok {
                w,
                raw: trimmed.to_string(),
                end: e,
            });
        }
    }
    out
}

/// Words that never name a host: the parser's keywords and common filler.
#[rustfmt::skip]
const VOCAB: &[&str] = &[
    "restarted", "killed", "vacuumed", "not", "dont", "never", "anyone", "someone",
    "sev", "users", "consumers", "consumer",
    "a", "about", "above", "act", "acting", "action", "actions", "active", "after", "agent",
    "agents", "ahead", "alarm", "alarms", "alert", "alerts", "alive", "all", "already", "am",
    "an", "and", "anomalies", "anomaly", "any", "anything", "approval", "approvals", "approve",
    "approved", "are", "as", "ask", "at", "awaiting", "be", "because", "been", "best", "biggest",
    "box", "boxes", "broken", "but", "by", "called", "can", "canaries", "canary", "cause",
    "caused", "check", "command", "commands", "completed", "confirm", "consuming", "could",
    "crit", "critical", "current", "currently", "day", "days", "decline", "deny", "describe",
    "details", "did", "do", "does", "doing", "done", "down", "dry", "dry-run", "dryrun", "during",
    "each", "eating", "else", "end", "event", "events", "every", "everything", "executed",
    "expired", "explain", "failed", "failing", "failures", "find", "fine", "fire", "fired",
    "firing", "fix", "fleet", "for", "from", "get", "give", "go", "going", "graph", "greediest",
    "had", "handle", "has", "have", "health", "healthy", "heaviest", "hello", "help", "hey", "hi",
    "high", "hog", "hogging", "hogs", "host", "hosts", "hour", "hours", "how", "hows", "i", "in",
    "incident", "incidents", "instance", "instances", "is", "issue", "issues", "it", "its",
    "journal", "just", "kill", "largest", "last", "latest", "like", "list", "look", "looking",
    "low", "machine", "machines", "me", "med", "medium", "minutes", "more", "most", "much", "my",
    "need", "needs", "new", "node", "nodes", "now", "of", "off", "ok", "okay", "on", "only",
    "open", "or", "our", "out", "over", "overview", "past", "pending", "pid", "playbook",
    "playbooks", "please", "plot", "pls", "policies", "policy", "problem", "problems", "proc",
    "process", "processes", "proposal", "proposals", "proposed", "recent", "recently", "refused",
    "reject", "rejected", "remediate", "remediated", "remediation", "remediations", "restart",
    "right", "rolling", "rollout", "rollouts", "run", "runbook", "runbooks", "running", "runs",
    "search", "see", "server", "servers", "service", "sev1", "severe", "severity", "should",
    "show", "since", "slow", "some", "stat", "state", "stats", "status", "still", "stop", "stuff",
    "succeeded", "success", "successful", "summary", "tell", "terminate", "than", "thank",
    "thanks", "that", "the", "their", "them", "there", "these", "this", "those", "thx", "to",
    "today", "top", "unit", "unresolved", "up", "usage", "use", "used", "uses", "using", "vacuum",
    "waiting", "was", "we", "were", "what", "whats", "when", "where", "which", "who", "why",
    "will", "with", "worse", "worst", "would", "wrong", "yes", "yesterday", "you", "your",
];

/// Words that put a host name after them ("on web-1", "for db-2").
const PREPOSITIONS: &[&str] = &["on", "for", "of", "with", "about", "at", "from", "in"];
/// Words a host name follows in a question ("is web-3 healthy", "describe db-1").
const SLOT_LEADERS: &[&str] = &["is", "hows", "describe", "check", "status", "host"];
/// Words between a preposition and the host ("on the host web-1").
const HOST_FILLER: &[&str] = &[
    "the", "host", "server", "box", "node", "machine", "instance",
];
/// Nouns that make a label value a selector ("web servers").
const GROUP_NOUNS: &[&str] = &[
    "servers",
    "hosts",
    "nodes",
    "boxes",
    "machines",
    "instances",
    "fleet",
];

/// First words of a question about what happened, not a command.
const QUESTION_LEADS: &[&str] = &[
    "did", "has", "have", "was", "were", "who", "when", "is", "are", "how", "does",
];

/// Verbs of actions the allowlist does not have (or the chat does not offer).
const UNSUPPORTED: &[&str] = &[
    "reboot",
    "shutdown",
    "poweroff",
    "delete",
    "remove",
    "rm",
    "drop",
    "wipe",
    "format",
    "deploy",
    "rollback",
    "scale",
    "upgrade",
    "install",
    "uninstall",
    "reinstall",
    "destroy",
    "erase",
];

/// What the words say about hosts.
#[derive(Debug, Clone, PartialEq)]
enum HostFind {
    None,
    Host(HostRef),
    Selector(Selector),
    /// Several hosts fit: what was written and the candidates.
    Ambiguous(String, Vec<String>),
    /// A word in a host's place that names no host.
    Unknown(String),
    /// Several hosts named where one is meant.
    Several(Vec<String>),
}

struct Ctx<'a> {
    text: &'a str,
    toks: Vec<Tok>,
    lex: &'a Lexicon,
    now: i64,
    /// Token positions already taken by an entity (ids, ranges, metrics, targets).
    used: BTreeSet<usize>,
}

impl<'a> Ctx<'a> {
    fn new(text: &'a str, lex: &'a Lexicon, now: i64) -> Self {
        Ctx {
            text,
            toks: tokenize(text),
            lex,
            now,
            used: BTreeSet::new(),
        }
    }

    fn words(&self) -> Vec<&str> {
        self.toks.iter().map(|t| t.w.as_str()).collect()
    }

    fn has(&self, w: &str) -> bool {
        self.toks.iter().any(|t| t.w == w)
    }

    fn has_any(&self, ws: &[&str]) -> bool {
        self.toks.iter().any(|t| ws.contains(&t.w.as_str()))
    }

    /// Whether the words of `phrase` appear in a row.
    fn has_phrase(&self, phrase: &str) -> bool {
        let p: Vec<&str> = phrase.split(' ').collect();
        let w = self.words();
        w.windows(p.len()).any(|win| win == p.as_slice())
    }

    fn intent(mut self) -> Intent {
        if self.toks.is_empty() {
            if self.text.trim() == "?" {
                return Intent::Help;
            }
            return self.unknown("the message is empty");
        }
        if let Some(i) = self.confirm() {
            return i;
        }
        if let Some(i) = self.decide() {
            return i;
        }
        if let Some(i) = self.runbooks() {
            return i;
        }
        if let Some(i) = self.explain() {
            return i;
        }
        if let Some(verb) = self
            .toks
            .iter()
            .find(|t| UNSUPPORTED.contains(&t.w.as_str()))
        {
            let verb = verb.w.clone();
            return self.unknown(&format!(
                "{verb:?} is not something the chat can do: it can ask a host to restart a \
                 service, kill a process or vacuum the journal"
            ));
        }
        if let Some(i) = self.trigger() {
            return i;
        }
        if let Some(kind) = self.not_in_chat() {
            return self.unknown(&format!(
                "{kind} is in the allowlist but needs more than a sentence carries (paths, \
                 patterns, limits, a checksum or a URL): use POST /remediation/trigger or a \
                 policy rule"
            ));
        }
        let range = self.take_range();
        if let Some(i) = self.top_processes() {
            return i;
        }
        if let Some(i) = self.anomalies(range) {
            return i;
        }
        if let Some(i) = self.actions(range) {
            return i;
        }
        if let Some(i) = self.policies() {
            return i;
        }
        if let Some(i) = self.metric(range) {
            return i;
        }
        self.status()
    }

    fn unknown(&self, reason: &str) -> Intent {
        Intent::Unknown {
            reason: reason.to_string(),
            suggestions: suggestions(&self.words(), self.lex),
        }
    }

    // ---- ids ----

    fn confirm(&mut self) -> Option<Intent> {
        if let Some(i) = self.toks.iter().position(|t| is_confirmation_id(&t.w)) {
            return Some(Intent::Confirm {
                confirmation_id: self.toks[i].w.clone(),
            });
        }
        if self.toks.first().is_some_and(|t| t.w == "confirm") {
            return Some(match self.toks.get(1) {
                Some(t) if is_plain_id(&t.w) => Intent::Confirm {
                    confirmation_id: t.raw.clone(),
                },
                _ => Intent::Clarify {
                    question: "confirm which request? name the confirmation id the trigger \
                               answered with, e.g. `confirm cf-7k2p9q4x`"
                        .into(),
                    candidates: vec![],
                },
            });
        }
        None
    }

    fn decide(&mut self) -> Option<Intent> {
        const APPROVE: &[&str] = &["approve", "accept"];
        const REJECT: &[&str] = &["reject", "deny", "decline", "refuse"];
        // the first verb decides: "reject act-… because we cannot approve now" rejects
        let verb_at = self
            .toks
            .iter()
            .position(|t| APPROVE.contains(&t.w.as_str()) || REJECT.contains(&t.w.as_str()))?;
        let reject = REJECT.contains(&self.toks[verb_at].w.as_str());
        let verb = if reject { "reject" } else { "approve" };
        if self.negated(verb_at) {
            return Some(Intent::Clarify {
                question: format!(
                    "that reads as a \"don't\": to {verb} a proposal, say `{verb} <action id>`"
                ),
                candidates: vec![],
            });
        }
        let id_at = self.toks.iter().position(|t| is_action_id(&t.w));
        let Some(i) = id_at else {
            if let Some(event) = self.toks.iter().find(|t| is_event_id(&t.w)) {
                return Some(Intent::Clarify {
                    question: format!(
                        "{} is an anomaly event, not a proposal: `actions on <host>` lists \
                         the proposals to {verb}",
                        event.w
                    ),
                    candidates: vec![],
                });
            }
            return Some(Intent::Clarify {
                question: format!(
                    "{verb} which proposal? name its action id, e.g. `{verb} act-0123456789abcdef` \
                     (`pending proposals` lists them)"
                ),
                candidates: vec![],
            });
        };
        let action_id = self.toks[i].raw.clone();
        if !reject {
            return Some(Intent::Approve { action_id });
        }
        let rest = self.text.get(self.toks[i].end..).unwrap_or("");
        match reason_of(rest) {
            Err(question) => Some(Intent::Clarify {
                question,
                candidates: vec![],
            }),
            Ok(reason) => Some(Intent::Reject { action_id, reason }),
        }
    }

    /// Whether a negation comes before word `i` ("don't approve", "do not restart").
    fn negated(&self, i: usize) -> bool {
        self.toks[..i.min(self.toks.len())].iter().any(|t| {
            matches!(
                t.w.as_str(),
                "not" | "dont" | "never" | "shouldnt" | "wont" | "cant" | "cannot" | "mustnt"
            )
        })
    }

    // ---- runbooks ----

    fn runbooks(&self) -> Option<Intent> {
        const HOW: &[&str] = &[
            "how do i fix",
            "how do i resolve",
            "how do i handle",
            "how do i deal with",
            "how do i troubleshoot",
            "how to fix",
            "how to resolve",
            "how to handle",
            "how to troubleshoot",
            "how should i fix",
            "how can i fix",
        ];
        const NOUNS: &[&str] = &["runbook", "runbooks", "playbook", "playbooks"];
        const LEADING: &[&str] = &[
            "search",
            "find",
            "show",
            "me",
            "the",
            "a",
            "an",
            "for",
            "on",
            "about",
            "any",
            "is",
            "there",
            "get",
            "look",
            "up",
            "please",
            "pls",
            "with",
            "regarding",
            "do",
            "we",
            "have",
            "what",
            "which",
            "to",
            "matching",
            "list",
            "all",
            "in",
            "of",
        ];
        let words = self.words();
        let mut rest: Vec<&str> = if let Some(how) = HOW.iter().find(|h| {
            let p: Vec<&str> = h.split(' ').collect();
            words.starts_with(&p)
        }) {
            words[how.split(' ').count()..].to_vec()
        } else if words.iter().any(|w| NOUNS.contains(w)) {
            words
                .iter()
                .copied()
                .filter(|w| !NOUNS.contains(w))
                .collect()
        } else {
            return None;
        };
        while rest.first().is_some_and(|w| LEADING.contains(w)) {
            rest.remove(0);
        }
        while rest
            .last()
            .is_some_and(|w| ["please", "pls", "thanks"].contains(w))
        {
            rest.pop();
        }
        Some(Intent::Runbooks {
            query: rest.join(" "),
        })
    }

    // ---- explain ----

    fn explain(&mut self) -> Option<Intent> {
        if let Some(i) = self.toks.iter().position(|t| is_event_id(&t.w)) {
            return Some(Intent::Explain {
                target: ExplainTarget::Event {
                    id: self.toks[i].raw.clone(),
                },
            });
        }
        let asks_why = self.has_any(&["why", "explain", "wrong", "cause", "caused", "broken"])
            || self.has_phrase("whats up")
            || self.has_phrase("what is up")
            || self.has_phrase("going on")
            || self.has_phrase("root cause");
        if !asks_why {
            return None;
        }
        let range = self.take_range();
        // "what's wrong?" of no host in particular: what is open, wherever
        let open = |scope| Intent::Anomalies {
            scope,
            min_severity: None,
            range,
            open_only: true,
        };
        Some(match self.find_host() {
            HostFind::Host(host) => Intent::Explain {
                target: ExplainTarget::Host { host },
            },
            HostFind::None => open(Scope::Fleet),
            HostFind::Selector(labels) => open(Scope::Selector { labels }),
            other => self.host_needed(other, "explain"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_chat_does_not_do_is_said() {
        let lex = Lexicon::new();
        for (text, says) in [
            ("clean up old logs in /var/log on web-1", "clean_paths"),
            ("run script /opt/fix.sh on db-1", "run_script"),
            (
                "reboot web-1",
                "\"reboot\" is not something the chat can do",
            ),
            ("delete all the things", "\"delete\""),
        ] {
            match parse(text, &lex, 0) {
                Intent::Unknown { reason, .. } => {
                    assert!(reason.contains(says), "{text}: {reason}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn words_lose_outer_punctuation_only() {
        let toks =
            tokenize("What's wrong with web-1's cpu.total_pct? (act-00ff:) \u{201c}ok\u{201d}");
        let w: Vec<&str> = toks.iter().map(|t| t.w.as_str()).collect();
        assert_eq!(
            w,
            [
                "whats",
                "wrong",
                "with",
                "web-1",
                "cpu.total_pct",
                "act-00ff",
                "ok"
            ]
        );
    }
}
