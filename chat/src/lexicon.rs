//! The names a message can use, built by the caller from the live fleet: hosts (by
//! hostname or agent id, with small typos forgiven when only one host is that close),
//! label keys and values, policy names and metric names, plus the built-in metric aliases
//! ("memory", "disk", "load", "network", "pressure", ...) mapped to the metric names the
//! agent sends. An ambiguous or unknown name is reported with its candidates, never guessed.

use std::collections::{BTreeMap, BTreeSet};

use crate::intent::{HostRef, Selector};

/// A host as the lexicon knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub id: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
}

impl HostEntry {
    pub fn host_ref(&self) -> HostRef {
        HostRef {
            id: self.id.clone(),
            hostname: self.hostname.clone(),
        }
    }
}

/// What a name resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution<T> {
    Found(T),
    /// Several equally good matches (their display names, sorted).
    Ambiguous(Vec<String>),
    /// Nothing close enough.
    NotFound,
}

/// Everything a message may name. Build it from the fleet for each message (or keep one
/// and refresh it as hosts and policies change): `Lexicon::new()` knows the metrics of
/// `sco_policy::KNOWN_METRICS` and the aliases; add hosts and policies.
#[derive(Debug, Clone)]
pub struct Lexicon {
    hosts: Vec<HostEntry>,
    policies: BTreeSet<String>,
    metrics: BTreeSet<String>,
}

impl Default for Lexicon {
    fn default() -> Self {
        Self::new()
    }
}

/// Built-in metric aliases, as word sequences: the longest match wins, so "disk io" is
/// not "disk" and "io pressure" is not "io". Names are those of `KNOWN_METRICS`.
const ALIASES: &[(&str, &[&str])] = &[
    ("cpu pressure", &["psi.cpu.some_pct"]),
    ("psi cpu", &["psi.cpu.some_pct"]),
    ("memory pressure", &["psi.memory.some_pct"]),
    ("mem pressure", &["psi.memory.some_pct"]),
    ("ram pressure", &["psi.memory.some_pct"]),
    ("psi memory", &["psi.memory.some_pct"]),
    ("psi mem", &["psi.memory.some_pct"]),
    ("io pressure", &["psi.io.some_pct"]),
    ("i/o pressure", &["psi.io.some_pct"]),
    ("disk pressure", &["psi.io.some_pct"]),
    ("psi io", &["psi.io.some_pct"]),
    (
        "pressure",
        &["psi.cpu.some_pct", "psi.memory.some_pct", "psi.io.some_pct"],
    ),
    (
        "psi",
        &["psi.cpu.some_pct", "psi.memory.some_pct", "psi.io.some_pct"],
    ),
    ("user cpu", &["cpu.user_pct"]),
    ("cpu user", &["cpu.user_pct"]),
    ("system cpu", &["cpu.system_pct"]),
    ("sys cpu", &["cpu.system_pct"]),
    ("cpu system", &["cpu.system_pct"]),
    ("io wait", &["cpu.iowait_pct"]),
    ("iowait", &["cpu.iowait_pct"]),
    ("cpu steal", &["cpu.steal_pct"]),
    ("steal", &["cpu.steal_pct"]),
    ("steal time", &["cpu.steal_pct"]),
    ("cpu", &["cpu.total_pct"]),
    ("cpu usage", &["cpu.total_pct"]),
    ("processor", &["cpu.total_pct"]),
    ("load", &["load.1"]),
    ("load average", &["load.1"]),
    ("loadavg", &["load.1"]),
    ("load 1", &["load.1"]),
    ("load 5", &["load.5"]),
    ("load 15", &["load.15"]),
    ("memory", &["mem.used_pct"]),
    ("memory usage", &["mem.used_pct"]),
    ("mem", &["mem.used_pct"]),
    ("ram", &["mem.used_pct"]),
    ("free memory", &["mem.available_bytes"]),
    ("available memory", &["mem.available_bytes"]),
    ("page cache", &["mem.cached_bytes"]),
    ("cached memory", &["mem.cached_bytes"]),
    ("swap", &["swap.used_pct"]),
    ("swap usage", &["swap.used_pct"]),
    ("disk", &["disk.used_pct"]),
    ("disk space", &["disk.used_pct"]),
    ("disk usage", &["disk.used_pct"]),
    ("storage", &["disk.used_pct"]),
    ("filesystem", &["disk.used_pct"]),
    ("disk io", &["disk.busy_pct"]),
    ("disk i/o", &["disk.busy_pct"]),
    ("io", &["disk.busy_pct"]),
    ("i/o", &["disk.busy_pct"]),
    ("disk busy", &["disk.busy_pct"]),
    ("disk reads", &["disk.read_bytes_per_s"]),
    ("disk writes", &["disk.write_bytes_per_s"]),
    ("reads", &["disk.read_bytes_per_s"]),
    ("writes", &["disk.write_bytes_per_s"]),
    ("iops", &["disk.reads_per_s", "disk.writes_per_s"]),
    ("network", &["net.rx_bytes_per_s", "net.tx_bytes_per_s"]),
    ("net", &["net.rx_bytes_per_s", "net.tx_bytes_per_s"]),
    ("traffic", &["net.rx_bytes_per_s", "net.tx_bytes_per_s"]),
    (
        "network traffic",
        &["net.rx_bytes_per_s", "net.tx_bytes_per_s"],
    ),
    ("bandwidth", &["net.rx_bytes_per_s", "net.tx_bytes_per_s"]),
    ("inbound", &["net.rx_bytes_per_s"]),
    ("ingress", &["net.rx_bytes_per_s"]),
    ("rx", &["net.rx_bytes_per_s"]),
    ("outbound", &["net.tx_bytes_per_s"]),
    ("egress", &["net.tx_bytes_per_s"]),
    ("tx", &["net.tx_bytes_per_s"]),
    (
        "network errors",
        &["net.rx_errors_per_s", "net.tx_errors_per_s"],
    ),
    (
        "net errors",
        &["net.rx_errors_per_s", "net.tx_errors_per_s"],
    ),
    (
        "packet errors",
        &["net.rx_errors_per_s", "net.tx_errors_per_s"],
    ),
    (
        "network drops",
        &["net.rx_drops_per_s", "net.tx_drops_per_s"],
    ),
    (
        "packet drops",
        &["net.rx_drops_per_s", "net.tx_drops_per_s"],
    ),
    (
        "dropped packets",
        &["net.rx_drops_per_s", "net.tx_drops_per_s"],
    ),
    ("drops", &["net.rx_drops_per_s", "net.tx_drops_per_s"]),
    ("packets", &["net.rx_packets_per_s", "net.tx_packets_per_s"]),
    ("process count", &["proc.count"]),
    ("proc count", &["proc.count"]),
    ("number of processes", &["proc.count"]),
];

/// The longest alias has this many words.
const MAX_ALIAS_WORDS: usize = 3;

impl Lexicon {
    /// A lexicon with the metrics the agent collects and no hosts or policies.
    pub fn new() -> Self {
        Lexicon {
            hosts: Vec::new(),
            policies: BTreeSet::new(),
            metrics: sco_policy::KNOWN_METRICS
                .iter()
                .map(|m| m.to_string())
                .collect(),
        }
    }

    /// Adds a host (agent id, hostname, labels). Names are matched case-insensitively.
    pub fn add_host(
        &mut self,
        id: impl Into<String>,
        hostname: impl Into<String>,
        labels: BTreeMap<String, String>,
    ) -> &mut Self {
        self.hosts.push(HostEntry {
            id: id.into(),
            hostname: hostname.into(),
            labels,
        });
        self
    }

    pub fn add_policy(&mut self, name: impl Into<String>) -> &mut Self {
        self.policies.insert(name.into());
        self
    }

    /// Adds a metric name the fleet reports beyond the known ones.
    pub fn add_metric(&mut self, name: impl Into<String>) -> &mut Self {
        self.metrics.insert(name.into());
        self
    }

    pub fn hosts(&self) -> &[HostEntry] {
        &self.hosts
    }

    pub fn policies(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(String::as_str)
    }

    /// A host by exact hostname or id (case-insensitive), with nothing forgiven.
    pub fn exact_host(&self, word: &str) -> Option<&HostEntry> {
        self.hosts
            .iter()
            .find(|h| h.id.eq_ignore_ascii_case(word))
            .or_else(|| {
                self.hosts
                    .iter()
                    .find(|h| h.hostname.eq_ignore_ascii_case(word))
            })
    }

    /// A host by hostname or id; a small typo in a hostname is forgiven when one host is
    /// clearly the closest (at most 2 edits, and at most a third of the name), and several
    /// equally close hosts are reported as ambiguous.
    pub fn resolve_host(&self, word: &str) -> Resolution<HostRef> {
        if let Some(h) = self.exact_host(word) {
            return Resolution::Found(h.host_ref());
        }
        let word = word.to_lowercase();
        let n = word.chars().count();
        if !(2..=253).contains(&n) {
            return Resolution::NotFound;
        }
        let limit = (n / 3).clamp(1, 2);
        let mut best: Option<usize> = None;
        let mut close: Vec<&HostEntry> = Vec::new();
        for h in &self.hosts {
            // the length difference is a lower bound of the distance: most hosts of a
            // large fleet are skipped without computing it
            if h.hostname.chars().count().abs_diff(n) > limit {
                continue;
            }
            let d = edit_distance(&word, &h.hostname.to_lowercase());
            if d > limit {
                continue;
            }
            match best {
                Some(b) if d > b => {}
                Some(b) if d == b => close.push(h),
                _ => {
                    best = Some(d);
                    close = vec![h];
                }
            }
        }
        match close.as_slice() {
            [] => Resolution::NotFound,
            [one] => Resolution::Found(one.host_ref()),
            many => {
                let mut names: Vec<String> = many.iter().map(|h| h.hostname.clone()).collect();
                names.sort();
                names.dedup();
                Resolution::Ambiguous(names)
            }
        }
    }

    /// The hosts whose labels all match `selector`, sorted by hostname.
    pub fn hosts_matching(&self, selector: &Selector) -> Vec<HostRef> {
        let mut out: Vec<HostRef> = self
            .hosts
            .iter()
            .filter(|h| {
                selector
                    .iter()
                    .all(|(k, v)| h.labels.get(k).is_some_and(|hv| hv.eq_ignore_ascii_case(v)))
            })
            .map(HostEntry::host_ref)
            .collect();
        out.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        out
    }

    /// Whether some host has label `key` (case-insensitive).
    pub fn is_label_key(&self, key: &str) -> bool {
        self.hosts
            .iter()
            .any(|h| h.labels.keys().any(|k| k.eq_ignore_ascii_case(key)))
    }

    /// The label key whose value `value` is, when exactly one key has it ("web" is
    /// `role=web`); `None` when no key or several do.
    pub fn label_for_value(&self, value: &str) -> Option<(String, String)> {
        let mut found: BTreeSet<(String, String)> = BTreeSet::new();
        for h in &self.hosts {
            for (k, v) in &h.labels {
                if v.eq_ignore_ascii_case(value) {
                    found.insert((k.clone(), v.clone()));
                }
            }
        }
        let keys: BTreeSet<&String> = found.iter().map(|(k, _)| k).collect();
        if keys.len() == 1 {
            found.into_iter().next()
        } else {
            None
        }
    }

    /// A policy by exact name (case-insensitive), or the one within one edit of it.
    pub fn resolve_policy(&self, word: &str) -> Resolution<String> {
        if let Some(p) = self.policies.iter().find(|p| p.eq_ignore_ascii_case(word)) {
            return Resolution::Found(p.clone());
        }
        if word.chars().count() < 5 {
            return Resolution::NotFound;
        }
        let word = word.to_lowercase();
        let close: Vec<&String> = self
            .policies
            .iter()
            .filter(|p| edit_distance(&word, &p.to_lowercase()) <= 1)
            .collect();
        match close.as_slice() {
            [] => Resolution::NotFound,
            [one] => Resolution::Found((*one).clone()),
            many => Resolution::Ambiguous(many.iter().map(|p| (*p).clone()).collect()),
        }
    }

    /// The metrics named at the start of `words`, by metric name or alias (longest
    /// alias first): the metric names and how many words they took.
    pub fn metric_at(&self, words: &[&str]) -> Option<(Vec<String>, usize)> {
        let first = *words.first()?;
        let name = first.split(':').next().unwrap_or(first);
        if self.metrics.contains(name) {
            return Some((vec![name.to_string()], 1));
        }
        for len in (1..=MAX_ALIAS_WORDS.min(words.len())).rev() {
            let phrase = words[..len].join(" ");
            if let Some((_, metrics)) = ALIASES.iter().find(|(a, _)| *a == phrase) {
                let known: Vec<String> = metrics
                    .iter()
                    .filter(|m| self.metrics.contains(**m))
                    .map(|m| m.to_string())
                    .collect();
                if !known.is_empty() {
                    return Some((known, len));
                }
            }
        }
        None
    }
}

/// Optimal-string-alignment distance: Levenshtein plus the swap of two neighbours
/// ("wbe" is one edit from "web"), over characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // three rolling rows: the one before the previous is for the swap
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(before[j - 2] + 1);
            }
            cur[j] = v;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet() -> Lexicon {
        let mut lex = Lexicon::new();
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        lex.add_host(
            "web-1-0a1b2c3d",
            "web-1",
            labels(&[("role", "web"), ("env", "prod")]),
        )
        .add_host(
            "web-2-1b2c3d4e",
            "web-2",
            labels(&[("role", "web"), ("env", "prod")]),
        )
        .add_host("db-1-3d4e5f60", "db-1", labels(&[("role", "db")]))
        .add_host("cache-1-5f607182", "cache-1", labels(&[("tier", "web")]))
        .add_policy("cpu-guard");
        lex
    }

    fn found(id: &str, hostname: &str) -> Resolution<HostRef> {
        Resolution::Found(HostRef {
            id: id.into(),
            hostname: hostname.into(),
        })
    }

    #[test]
    fn hosts_resolve_exactly_fuzzily_or_not_at_all() {
        let lex = fleet();
        assert_eq!(lex.resolve_host("web-1"), found("web-1-0a1b2c3d", "web-1"));
        assert_eq!(lex.resolve_host("WEB-1"), found("web-1-0a1b2c3d", "web-1"));
        assert_eq!(
            lex.resolve_host("web-2-1b2c3d4e"),
            found("web-2-1b2c3d4e", "web-2")
        );
        // a swap, a dropped dash, a missing letter
        assert_eq!(lex.resolve_host("wbe-1"), found("web-1-0a1b2c3d", "web-1"));
        assert_eq!(lex.resolve_host("web2"), found("web-2-1b2c3d4e", "web-2"));
        assert_eq!(
            lex.resolve_host("cach-1"),
            found("cache-1-5f607182", "cache-1")
        );
        assert_eq!(
            lex.resolve_host("web-3"),
            Resolution::Ambiguous(vec!["web-1".into(), "web-2".into()])
        );
        assert_eq!(lex.resolve_host("zeus"), Resolution::NotFound);
        assert_eq!(lex.resolve_host("d"), Resolution::NotFound);
        assert_eq!(lex.resolve_host(""), Resolution::NotFound);
    }

    #[test]
    fn labels_and_selectors() {
        let lex = fleet();
        assert_eq!(
            lex.label_for_value("db"),
            Some(("role".into(), "db".into()))
        );
        // "web" is a role and a tier: not guessed
        assert_eq!(lex.label_for_value("web"), None);
        assert_eq!(lex.label_for_value("nope"), None);
        let sel: Selector = [("role".to_string(), "web".to_string())].into();
        let names: Vec<String> = lex
            .hosts_matching(&sel)
            .into_iter()
            .map(|h| h.hostname)
            .collect();
        assert_eq!(names, ["web-1", "web-2"]);
        assert!(lex.is_label_key("ENV"));
        assert!(!lex.is_label_key("zone"));
    }

    #[test]
    fn policies_resolve() {
        let lex = fleet();
        assert_eq!(
            lex.resolve_policy("cpu-guard"),
            Resolution::Found("cpu-guard".into())
        );
        assert_eq!(
            lex.resolve_policy("cpu-gaurd"),
            Resolution::Found("cpu-guard".into())
        );
        assert_eq!(lex.resolve_policy("cpu"), Resolution::NotFound);
    }

    #[test]
    fn metric_aliases_name_known_metrics() {
        let lex = Lexicon::new();
        for (alias, metrics) in ALIASES {
            assert!(alias.split(' ').count() <= MAX_ALIAS_WORDS, "{alias}");
            for m in *metrics {
                assert!(sco_policy::KNOWN_METRICS.contains(m), "{alias} -> {m}");
            }
        }
        let at = |s: &str| {
            let w: Vec<&str> = s.split(' ').collect();
            lex.metric_at(&w)
        };
        assert_eq!(at("ram on db-1"), Some((vec!["mem.used_pct".into()], 1)));
        assert_eq!(at("disk io"), Some((vec!["disk.busy_pct".into()], 2)));
        assert_eq!(at("io pressure"), Some((vec!["psi.io.some_pct".into()], 2)));
        assert_eq!(
            at("disk.used_pct:/var"),
            Some((vec!["disk.used_pct".into()], 1))
        );
        assert_eq!(at("load"), Some((vec!["load.1".into()], 1)));
        assert_eq!(at("gpu"), None);
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("wbe", "web"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("ünï", "uni"), 2);
    }
}
