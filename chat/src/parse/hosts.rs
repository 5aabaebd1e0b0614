//! Which host, selector or unknown name the words give, and the questions back when it is
//! not one clear host.

use super::*;

impl Ctx<'_> {
    /// The host, selector or unknown name the words give, leaving out taken words.
    pub(super) fn find_host(&mut self) -> HostFind {
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
    pub(super) fn host_slot(&self, i: usize) -> bool {
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
    pub(super) fn host_needed(&self, find: HostFind, what: &str) -> Intent {
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

pub(super) fn ambiguous(word: &str, candidates: Vec<String>) -> Intent {
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

pub(super) fn several(names: Vec<String>) -> Intent {
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

pub(super) fn unknown_host(word: &str, lex: &Lexicon) -> Intent {
    let shown: String = word.chars().take(64).collect();
    Intent::Clarify {
        question: format!(
            "no host named {shown:?} in the fleet ({} hosts); `list hosts` shows them",
            lex.hosts().len()
        ),
        candidates: vec![],
    }
}

pub(super) fn selector_text(sel: &Selector) -> String {
    sel.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
