//! The questions: time ranges, top processes, anomalies, actions, policies, a metric's
//! history and status.

use super::*;

impl Ctx<'_> {
    pub(super) fn take_range(&mut self) -> Option<TimeRange> {
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

    pub(super) fn top_processes(&mut self) -> Option<Intent> {
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

    pub(super) fn anomalies(&mut self, range: Option<TimeRange>) -> Option<Intent> {
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

    pub(super) fn actions(&mut self, range: Option<TimeRange>) -> Option<Intent> {
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

    pub(super) fn policies(&mut self) -> Option<Intent> {
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

    pub(super) fn metric(&mut self, range: Option<TimeRange>) -> Option<Intent> {
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
    pub(super) fn status(&mut self) -> Intent {
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
}
