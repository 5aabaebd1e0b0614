//! The deterministic parser: a message, the fleet's [`Lexicon`] and `now` in, one
//! [`Intent`] out. No network, no clock, no randomness, and no panics on any input.
//!
//! It works on words: ids first (confirmation ids, action ids, event ids are unambiguous
//! by shape), then the intent by its keywords in a fixed order of precedence (a command
//! before a question, a specific question before a general one), then that intent's
//! arguments: hosts, label selectors, metrics, time ranges, severities, states.
//! `parse/words.rs` holds the shapes of words that need no fleet (ids, sizes, severities).

mod words;

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

    // ---- trigger ----

    fn trigger(&mut self) -> Option<Intent> {
        const RESTART: &[&str] = &["restart", "bounce", "restarting"];
        const KILL: &[&str] = &["kill", "terminate", "stop", "end", "pkill"];
        const VACUUM: &[&str] = &["vacuum", "shrink", "trim", "clean", "cleanup"];
        let words: Vec<String> = self.words().iter().map(|w| w.to_string()).collect();
        let verb = words.iter().enumerate().find(|(i, w)| {
            RESTART.contains(&w.as_str())
                || (["kill", "pkill"].contains(&w.as_str()))
                || (KILL.contains(&w.as_str()) && self.imperative(*i))
                || (VACUUM.contains(&w.as_str()) && (self.has("journal") || self.has("journald")))
        });
        let (vi, verb) = verb.map(|(i, w)| (i, w.clone()))?;
        // "did anyone restart nginx on web-1?" asks about actions, it does not ask for one
        let asks_about = self
            .toks
            .first()
            .is_some_and(|t| QUESTION_LEADS.contains(&t.w.as_str()));
        if asks_about {
            return Some(match self.find_host() {
                HostFind::Host(host) => Intent::Actions {
                    host: Some(host),
                    state: None,
                    range: None,
                },
                HostFind::None | HostFind::Selector(_) => Intent::Actions {
                    host: None,
                    state: None,
                    range: None,
                },
                other => self.host_needed(other, "actions"),
            });
        }
        if self.negated(vi) {
            return Some(Intent::Clarify {
                question: format!(
                    "that reads as a \"don't {verb}\": nothing was asked of any host"
                ),
                candidates: vec![],
            });
        }
        let dry_run = self.has_any(&["dry-run", "dryrun", "dry_run", "dry"]);
        for (i, w) in words.iter().enumerate() {
            if ["dry-run", "dryrun", "dry_run", "dry"].contains(&w.as_str()) {
                self.used.insert(i);
                if words.get(i + 1).is_some_and(|n| n == "run") {
                    self.used.insert(i + 1);
                }
            }
        }
        self.used.insert(vi);
        let action = if RESTART.contains(&verb.as_str()) {
            self.restart_target(vi)
        } else if KILL.contains(&verb.as_str()) {
            self.kill_target(vi)
        } else {
            Ok(self.journal_size())
        };
        let action = match action {
            Ok(a) => a,
            Err(question) => {
                return Some(Intent::Clarify {
                    question,
                    candidates: vec![],
                })
            }
        };
        Some(match self.find_host() {
            HostFind::Host(host) => Intent::Trigger {
                host,
                action,
                dry_run,
            },
            HostFind::Selector(sel) => {
                let hosts = self.lex.hosts_matching(&sel);
                if let [one] = hosts.as_slice() {
                    Intent::Trigger {
                        host: one.clone(),
                        action,
                        dry_run,
                    }
                } else {
                    Intent::Clarify {
                        question: format!(
                            "{} hosts match {}: an action goes to one host, which one?",
                            hosts.len(),
                            selector_text(&sel)
                        ),
                        candidates: hosts.into_iter().map(|h| h.hostname).collect(),
                    }
                }
            }
            other => self.host_needed(other, action.kind()),
        })
    }

    /// The allowlisted action a command asks for that chat does not offer.
    fn not_in_chat(&self) -> Option<&'static str> {
        let first = self.toks.first().map_or("", |t| t.w.as_str());
        let imperative = |verbs: &[&str]| {
            self.toks
                .iter()
                .enumerate()
                .any(|(i, t)| verbs.contains(&t.w.as_str()) && self.imperative(i))
        };
        if imperative(&["clean", "cleanup", "purge", "prune"]) {
            Some("clean_paths")
        } else if self.has("script") && (first == "run" || imperative(&["run", "execute"])) {
            Some("run_script")
        } else if imperative(&["notify", "webhook", "page"]) {
            Some("notify")
        } else {
            None
        }
    }

    /// Whether word `i` starts the command (after "please", "can you", "dry run", ...).
    fn imperative(&self, i: usize) -> bool {
        const LEAD: &[&str] = &[
            "please", "pls", "can", "could", "would", "you", "now", "ok", "okay", "go", "and",
            "dry", "run", "dry-run", "dryrun", "then", "just",
        ];
        self.toks[..i.min(self.toks.len())]
            .iter()
            .all(|t| LEAD.contains(&t.w.as_str()))
    }

    fn restart_target(&mut self, vi: usize) -> Result<Action, String> {
        const SKIP: &[&str] = &[
            "the", "a", "an", "of", "service", "unit", "daemon", "please",
        ];
        let mut i = vi + 1;
        while self
            .toks
            .get(i)
            .is_some_and(|t| SKIP.contains(&t.w.as_str()))
        {
            i += 1;
        }
        let Some(t) = self
            .toks
            .get(i)
            .filter(|t| !PREPOSITIONS.contains(&t.w.as_str()))
        else {
            return Err("restart which service? e.g. `restart nginx on web-1`".into());
        };
        // systemd unit names are case-sensitive (NetworkManager.service)
        let unit = t.raw.clone();
        if self.lex.exact_host(&unit).is_some() {
            return Err(format!(
                "{unit} is a host: the chat restarts services, not hosts \
                 (e.g. `restart nginx on {unit}`)"
            ));
        }
        sco_policy::action::check_unit(&unit).map_err(|(_, e)| e)?;
        self.used.insert(i);
        Ok(Action::RestartService { unit })
    }

    fn kill_target(&mut self, vi: usize) -> Result<Action, String> {
        const SKIP: &[&str] = &[
            "the", "a", "an", "off", "that", "this", "please", "all", "every", "any",
        ];
        const TOP: &[&str] = &[
            "top",
            "biggest",
            "heaviest",
            "largest",
            "greediest",
            "worst",
            "hungriest",
        ];
        let kill = |name, pattern, pid, top_consumer| Action::KillProcess {
            name,
            pattern,
            pid,
            top_consumer,
            grace_secs: 10,
        };
        let ws: Vec<String> = self.words().iter().map(|w| w.to_string()).collect();
        let word = |i: usize| ws.get(i).map(String::as_str);
        // process names and command lines are case-sensitive (Xorg, java -jar App.jar)
        let raws: Vec<String> = self.toks.iter().map(|t| t.raw.clone()).collect();
        let raw = |i: usize| raws.get(i).map_or("", String::as_str);
        let mut i = vi + 1;
        // articles, and signal flags (`-9`, `-TERM`): the agent sends TERM, then KILL
        while word(i).is_some_and(|w| SKIP.contains(&w) || w.starts_with('-')) {
            i += 1;
        }
        let first = word(i).unwrap_or("");
        // "kill pid 42", "kill process 42", "kill 42"
        let p = if matches!(first, "pid" | "process" | "proc") {
            i + 1
        } else {
            i
        };
        if let Some(pid) = word(p).and_then(|w| w.parse::<u32>().ok()) {
            self.used.extend([i, p]);
            return Ok(kill(None, None, Some(pid), None));
        }
        // "kill the top cpu process", "kill the biggest memory hog", "kill the cpu hog"
        // "kill the process using the most cpu": up to the host
        let window: Vec<(usize, &str)> = (i..i + 6)
            .filter_map(|j| word(j).map(|w| (j, w)))
            .take_while(|(_, w)| !PREPOSITIONS.contains(w) || *w == "with")
            .collect();
        let is_top = TOP.contains(&first)
            || window
                .iter()
                .any(|(_, w)| w.starts_with("hog") || ["consumer", "most", "highest"].contains(w));
        if is_top {
            let by = window
                .iter()
                .find_map(|(_, w)| consumer_word(w))
                .unwrap_or(Consumer::Cpu);
            for (j, w) in &window {
                if TOP.contains(w)
                    || consumer_word(w).is_some()
                    || w.starts_with("hog")
                    || [
                        "process", "consumer", "most", "highest", "using", "with", "the",
                    ]
                    .contains(w)
                {
                    self.used.insert(*j);
                }
            }
            return Ok(kill(None, None, None, Some(by)));
        }
        // "kill process named foo"
        if matches!(first, "process" | "proc" | "processes") {
            i += 1;
        }
        let first = word(i).unwrap_or("");
        if matches!(first, "named" | "called") {
            let name = raw(i + 1).to_string();
            if name.is_empty() {
                return Err("kill a process named what?".into());
            }
            sco_policy::action::check_process_name(&name).map_err(|(_, e)| e)?;
            self.used.extend([i, i + 1]);
            return Ok(kill(Some(name), None, None, None));
        }
        if first.is_empty() || PREPOSITIONS.contains(&first) {
            return Err(
                "kill which process? a name, `pid 1234`, or `the top cpu process`, \
                 e.g. `kill the burner on web-1`"
                    .into(),
            );
        }
        let target = raw(i);
        if !target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@._:-".contains(&b))
        {
            let shown: String = target.chars().take(64).collect();
            return Err(format!(
                "{shown:?} is not a process name: letters, digits and @._:- only"
            ));
        }
        if VOCAB.contains(&first) {
            return Err(format!(
                "kill which process? {first:?} is not a process name; e.g. `kill the burner on web-1`"
            ));
        }
        let pattern = format!("*{target}*");
        sco_policy::action::check_process_pattern(&pattern).map_err(|(_, e)| e)?;
        self.used.insert(i);
        Ok(kill(None, Some(pattern), None, None))
    }

    fn journal_size(&mut self) -> Action {
        let mut size = DEFAULT_JOURNAL_MB;
        for i in 0..self.toks.len() {
            let w = self.toks[i].w.as_str();
            let next = self.toks.get(i + 1).map(|t| t.w.as_str());
            if let Some(mb) = size_mb(w, next) {
                size = mb;
                self.used.insert(i);
                if size_mb(w, None).is_none() {
                    self.used.insert(i + 1);
                }
                break;
            }
        }
        Action::JournalVacuum { max_size_mb: size }
    }

    // ---- questions ----

    fn take_range(&mut self) -> Option<TimeRange> {
        let words: Vec<String> = self.words().iter().map(|w| w.to_string()).collect();
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        for i in 0..refs.len() {
            if self.used.contains(&i) {
                continue;
            }
            if let Some((range, n)) = range_at(&refs[i..], self.now) {
                self.used.extend(i..i + n);
                return Some(range);
            }
        }
        None
    }

    fn top_processes(&mut self) -> Option<Intent> {
        let asks = self.has("top")
            || self.toks.iter().any(|t| t.w.starts_with("hog"))
            || self.has_any(&["heaviest", "eating", "consuming", "greediest", "hungriest"])
            || (self.has("most") && self.has_any(&["using", "uses", "process", "processes"]))
            || (self.has("who") && self.has_any(&["using", "uses", "hogging"]))
            || (self.has_any(&["users", "consumers", "consumer"])
                && self.toks.iter().any(|t| consumer_word(&t.w).is_some()));
        if !asks {
            return None;
        }
        let by = self
            .toks
            .iter()
            .find_map(|t| consumer_word(&t.w))
            .unwrap_or(Consumer::Cpu);
        for (i, t) in self.toks.iter().enumerate() {
            if consumer_word(&t.w).is_some() {
                self.used.insert(i);
            }
        }
        Some(match self.find_host() {
            HostFind::Host(host) => Intent::TopProcesses { host, by },
            other => self.host_needed(other, "top processes"),
        })
    }

    fn anomalies(&mut self, range: Option<TimeRange>) -> Option<Intent> {
        const NOUNS: &[&str] = &[
            "anomaly",
            "anomalies",
            "alert",
            "alerts",
            "alarm",
            "alarms",
            "incident",
            "incidents",
            "issue",
            "issues",
            "problem",
            "problems",
            "fired",
            "firing",
            "fire",
            "events",
            "event",
        ];
        const OPEN: &[&str] = &[
            "open",
            "active",
            "ongoing",
            "current",
            "currently",
            "unresolved",
            "firing",
        ];
        let about_actions = self.has_any(&[
            "action",
            "actions",
            "proposal",
            "proposals",
            "remediation",
            "remediations",
        ]);
        let asks = self.has_any(NOUNS)
            || self.has_any(&["critical", "crit", "sev1", "sev", "severity"])
            || (self.has_any(OPEN) && !about_actions && !self.has_any(&["policy", "policies"]));
        if !asks {
            return None;
        }
        let open_only = self.has_any(OPEN) || self.has_phrase("right now");
        // "critical and high": the least severe one named is the minimum
        let min_severity = self.toks.iter().filter_map(|t| severity_word(&t.w)).min();
        for (i, t) in self.toks.iter().enumerate() {
            if severity_word(&t.w).is_some() {
                self.used.insert(i);
            }
        }
        let scope = match self.find_host() {
            HostFind::Host(host) => Scope::Host { host },
            HostFind::Selector(labels) => Scope::Selector { labels },
            HostFind::Ambiguous(word, candidates) => {
                return Some(ambiguous(&word, candidates));
            }
            HostFind::Several(names) => return Some(several(names)),
            HostFind::Unknown(word) => return Some(unknown_host(&word, self.lex)),
            HostFind::None => Scope::Fleet,
        };
        Some(Intent::Anomalies {
            scope,
            min_severity,
            range,
            open_only,
        })
    }

    fn actions(&mut self, range: Option<TimeRange>) -> Option<Intent> {
        let asks = self.has_any(&[
            "action",
            "actions",
            "proposal",
            "proposals",
            "remediation",
            "remediations",
            "approval",
            "approvals",
            "pending",
            "remediated",
            "remediate",
            "restarted",
            "killed",
            "vacuumed",
        ]) || (self.has("dry") && self.has_any(&["run", "runs"]))
            || self.has_any(&["dry-runs", "dryruns", "dry-run"])
            || (self.has("did") && self.has("do"));
        if !asks {
            return None;
        }
        let state = self.toks.iter().find_map(|t| state_word(&t.w)).or_else(|| {
            if self.has("dry") {
                Some(ActionState::DryRun)
            } else {
                None
            }
        });
        let host = match self.find_host() {
            HostFind::Host(h) => Some(h),
            HostFind::Ambiguous(word, candidates) => return Some(ambiguous(&word, candidates)),
            HostFind::Several(names) => return Some(several(names)),
            HostFind::Unknown(word) => return Some(unknown_host(&word, self.lex)),
            HostFind::Selector(_) | HostFind::None => None,
        };
        Some(Intent::Actions { host, state, range })
    }

    fn policies(&mut self) -> Option<Intent> {
        let mut named = None;
        for (i, t) in self.toks.iter().enumerate() {
            if self.used.contains(&i) || VOCAB.contains(&t.w.as_str()) {
                continue;
            }
            if let Resolution::Found(p) = self.lex.resolve_policy(&t.w) {
                named = Some((i, p));
                break;
            }
        }
        let asks = named.is_some()
            || self.has_any(&[
                "policy", "policies", "rollout", "rollouts", "canary", "canaries",
            ])
            || self.has_phrase("rolling out");
        if !asks {
            return None;
        }
        Some(Intent::PolicyStatus {
            policy: named.map(|(_, p)| p),
        })
    }

    fn metric(&mut self, range: Option<TimeRange>) -> Option<Intent> {
        let words: Vec<String> = self.words().iter().map(|w| w.to_string()).collect();
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        // every metric named, in the order named: "cpu and memory on web-1"
        let mut metrics: Vec<String> = Vec::new();
        let mut i = 0;
        while i < refs.len() {
            if self.used.contains(&i) || self.lex.exact_host(refs[i]).is_some() {
                i += 1;
                continue;
            }
            match self.lex.metric_at(&refs[i..]) {
                Some((found, n)) => {
                    for m in found {
                        if !metrics.contains(&m) {
                            metrics.push(m);
                        }
                    }
                    self.used.extend(i..i + n);
                    i += n;
                }
                None => i += 1,
            }
        }
        if metrics.is_empty() {
            return None;
        }
        let range = range.unwrap_or_else(|| TimeRange::last(self.now, DEFAULT_METRIC_RANGE_MS));
        Some(match self.find_host() {
            HostFind::Host(host) => Intent::MetricHistory {
                host,
                metrics,
                range,
            },
            other => self.host_needed(other, "a metric"),
        })
    }

    /// Host status, fleet status, help, or not understood.
    fn status(&mut self) -> Intent {
        const STATUS: &[&str] = &[
            "status", "health", "healthy", "ok", "okay", "up", "doing", "hows", "describe", "tell",
            "check", "alive", "fine", "state", "stat", "stats", "details", "host", "summary",
            "overview", "down",
        ];
        const FLEET: &[&str] = &[
            "fleet",
            "overview",
            "hosts",
            "servers",
            "machines",
            "nodes",
            "everything",
            "summary",
            "agents",
            "boxes",
            "instances",
        ];
        let helpful = self.has_any(&[
            "help", "hello", "hi", "hey", "commands", "usage", "thanks", "thank", "thx",
        ]) || self.has_phrase("what can you")
            || self.has_phrase("what can i")
            || self.has_phrase("what do you");
        let find = self.find_host();
        let status =
            self.has_any(STATUS) || self.has_phrase("how is") || self.has_phrase("how are");
        let fleet = self.has_any(FLEET);
        match find {
            HostFind::Host(host) => Intent::HostStatus { host },
            HostFind::Ambiguous(word, candidates) => ambiguous(&word, candidates),
            HostFind::Several(names) => several(names),
            HostFind::Selector(selector) => Intent::FleetStatus { selector },
            _ if helpful => Intent::Help,
            _ if fleet => Intent::FleetStatus {
                selector: Selector::new(),
            },
            HostFind::Unknown(word) if status => unknown_host(&word, self.lex),
            _ if status => Intent::FleetStatus {
                selector: Selector::new(),
            },
            _ => self.unknown("not understood"),
        }
    }

    // ---- hosts ----

    /// The host, selector or unknown name the words give, leaving out taken words.
    fn find_host(&mut self) -> HostFind {
        let n = self.toks.len();
        let free = |i: usize, used: &BTreeSet<usize>| !used.contains(&i);
        // exact hostnames and ids
        let mut exact: Vec<(usize, HostRef)> = Vec::new();
        for i in 0..n {
            if !free(i, &self.used) {
                continue;
            }
            if let Some(h) = self.lex.exact_host(&self.toks[i].w) {
                if !exact.iter().any(|(_, e)| e.id == h.id) {
                    exact.push((i, h.host_ref()));
                }
            }
        }
        match exact.as_slice() {
            [(i, h)] => {
                self.used.insert(*i);
                return HostFind::Host(h.clone());
            }
            [] => {}
            many => {
                let names = many.iter().map(|(_, h)| h.hostname.clone()).collect();
                return HostFind::Several(names);
            }
        }
        // label selectors: `key=value` words, "<value> servers", "on <value>"
        let mut selector = Selector::new();
        for i in 0..n {
            if !free(i, &self.used) {
                continue;
            }
            let w = self.toks[i].w.clone();
            if w.contains('=') {
                let mut any = false;
                for pair in w.split(',') {
                    if let Some((k, v)) = pair.split_once('=') {
                        if is_label_part(k) && is_label_part(v) {
                            selector.insert(k.to_string(), v.to_string());
                            any = true;
                        }
                    }
                }
                if any {
                    self.used.insert(i);
                }
                continue;
            }
            let next_is_group = self
                .toks
                .get(i + 1)
                .is_some_and(|t| GROUP_NOUNS.contains(&t.w.as_str()));
            let after_prep = self.host_slot(i);
            if next_is_group || after_prep {
                let singular = w.strip_suffix('s').unwrap_or(&w);
                let label = self
                    .lex
                    .label_for_value(&w)
                    .or_else(|| self.lex.label_for_value(singular));
                if let Some((k, v)) = label {
                    selector.insert(k, v);
                    self.used.insert(i);
                }
            }
        }
        if !selector.is_empty() {
            return HostFind::Selector(selector);
        }
        // a near miss in a host's place, or a word shaped like a hostname; a word that
        // resolves wins over one that does not
        let mut unknown = None;
        for i in 0..n {
            if !free(i, &self.used) {
                continue;
            }
            let w = self.toks[i].w.clone();
            if VOCAB.contains(&w.as_str()) || is_unit_word(&w) {
                continue;
            }
            if !is_host_shaped(&w) && !self.host_slot(i) {
                continue;
            }
            match self.lex.resolve_host(&w) {
                Resolution::Found(h) => {
                    self.used.insert(i);
                    return HostFind::Host(h);
                }
                Resolution::Ambiguous(c) => return HostFind::Ambiguous(w, c),
                Resolution::NotFound => {
                    unknown.get_or_insert(w);
                }
            }
        }
        unknown.map_or(HostFind::None, HostFind::Unknown)
    }

    /// Whether word `i` stands where a host is named: after a preposition (and filler).
    fn host_slot(&self, i: usize) -> bool {
        let mut j = i;
        while j > 0 {
            j -= 1;
            let w = self.toks[j].w.as_str();
            if PREPOSITIONS.contains(&w) || SLOT_LEADERS.contains(&w) {
                return true;
            }
            if !HOST_FILLER.contains(&w) {
                return false;
            }
        }
        false
    }

    /// The answer when an intent needs one host and the words gave none or several.
    fn host_needed(&self, find: HostFind, what: &str) -> Intent {
        match find {
            HostFind::Host(_) | HostFind::None => Intent::Clarify {
                question: format!("{what} on which host? name it, e.g. `... on web-1`"),
                candidates: vec![],
            },
            HostFind::Ambiguous(word, candidates) => ambiguous(&word, candidates),
            HostFind::Several(names) => several(names),
            HostFind::Unknown(word) => unknown_host(&word, self.lex),
            HostFind::Selector(sel) => {
                let hosts = self.lex.hosts_matching(&sel);
                Intent::Clarify {
                    question: format!(
                        "{what} is about one host and {} hosts match {}: which one?",
                        hosts.len(),
                        selector_text(&sel)
                    ),
                    candidates: hosts.into_iter().map(|h| h.hostname).collect(),
                }
            }
        }
    }
}

fn ambiguous(word: &str, candidates: Vec<String>) -> Intent {
    Intent::Clarify {
        question: format!(
            "{word:?} could be {}: which one?",
            candidates
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        candidates,
    }
}

fn several(names: Vec<String>) -> Intent {
    Intent::Clarify {
        question: format!(
            "one host at a time: {}?",
            names
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" or ")
        ),
        candidates: names,
    }
}

fn unknown_host(word: &str, lex: &Lexicon) -> Intent {
    let shown: String = word.chars().take(64).collect();
    Intent::Clarify {
        question: format!(
            "no host named {shown:?} in the fleet ({} hosts); `list hosts` shows them",
            lex.hosts().len()
        ),
        candidates: vec![],
    }
}

fn selector_text(sel: &Selector) -> String {
    sel.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
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
