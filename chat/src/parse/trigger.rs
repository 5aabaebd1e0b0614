//! Triggering an allowlisted action: the verb, its target and what chat will not do.

use super::*;

impl Ctx<'_> {
    pub(super) fn trigger(&mut self) -> Option<Intent> {
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
    pub(super) fn not_in_chat(&self) -> Option<&'static str> {
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
    pub(super) fn imperative(&self, i: usize) -> bool {
        const LEAD: &[&str] = &[
            "please", "pls", "can", "could", "would", "you", "now", "ok", "okay", "go", "and",
            "dry", "run", "dry-run", "dryrun", "then", "just",
        ];
        self.toks[..i.min(self.toks.len())]
            .iter()
            .all(|t| LEAD.contains(&t.w.as_str()))
    }

    pub(super) fn restart_target(&mut self, vi: usize) -> Result<Action, String> {
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

    pub(super) fn kill_target(&mut self, vi: usize) -> Result<Action, String> {
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

    pub(super) fn journal_size(&mut self) -> Action {
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
}
