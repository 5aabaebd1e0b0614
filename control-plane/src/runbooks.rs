//! The knowledge base: runbooks (markdown with a title, tags and matching conditions), kept
//! with every revision, searched in full text (SQLite FTS5, PostgreSQL `tsvector`), and matched
//! to anomaly events so an event, and a chat answer about it, cites the runbooks that apply.
//!
//! A runbook's conditions say which events it is for: families, metric globs (matched against
//! the event's contributors), a minimum severity and a host label selector. A runbook without
//! families and metrics is never matched to an event; it is found by search only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ServiceError;

use crate::domain::Anomaly;
use crate::store::{Store, StoreError};
use sco_policy::{glob_match, Family, Severity};

/// Longest markdown body.
pub const MAX_BODY: usize = 64 * 1024;
const MAX_TITLE: usize = 200;
const MAX_TAGS: usize = 20;
const MAX_CONDITIONS: usize = 32;
/// Longest search text.
pub const MAX_QUERY: usize = 200;

/// Which events a runbook is for; every condition that is set must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// Event families (`cpu`, `memory`, `disk_space`, `disk_io`, `network`, `processes`, `host`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub families: Vec<String>,
    /// Metric globs; one of the event's contributors must match one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<String>,
    /// Least severity (`low`, `medium`, `high`, `critical`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<String>,
    /// Host labels that must all be present with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// What a client sends to write a runbook.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunbookIn {
    /// Lowercase letters, digits and `-` (1-64); made from the title when absent (create only).
    #[serde(default)]
    pub id: Option<String>,
    pub title: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, rename = "match")]
    pub conditions: Conditions,
    /// Markdown.
    pub body: String,
    /// Update only: the revision this edit was made from; another edit since is a 409.
    #[serde(default)]
    pub base_revision: Option<i64>,
}

/// A runbook at one revision.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Runbook {
    pub id: String,
    pub revision: i64,
    pub title: String,
    pub tags: Vec<String>,
    #[serde(rename = "match")]
    pub conditions: Conditions,
    pub body: String,
    pub updated_ms: i64,
    pub updated_by: String,
}

/// A runbook cited by an event or a search, with why.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Citation {
    pub id: String,
    pub title: String,
    pub revision: i64,
    /// Higher first: matched family 3, a glob matching the top contributor 2 (another
    /// contributor 1), each label 1; for a search, the full-text rank.
    pub rank: f64,
    /// What matched, in words.
    pub why: String,
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
}

/// `CPU saturation: what to do` → `cpu-saturation-what-to-do`.
fn slug(title: &str) -> String {
    let mut out = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= 64 {
            break;
        }
    }
    out.trim_end_matches('-').to_string()
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

impl Conditions {
    /// Checks every condition; the error names the field.
    pub fn check(&self) -> Result<(), String> {
        if self.families.len() + self.metrics.len() + self.labels.len() > MAX_CONDITIONS {
            return Err(format!("match: more than {MAX_CONDITIONS} conditions"));
        }
        for f in &self.families {
            if Family::parse(f).is_none() {
                let valid: Vec<&str> = Family::ALL.iter().map(|f| f.as_str()).collect();
                return Err(format!(
                    "match.families: {:?} is not a family; valid: {}",
                    clip(f),
                    valid.join(", ")
                ));
            }
        }
        for g in &self.metrics {
            if g.is_empty() || g.len() > 128 || g.chars().any(|c| c.is_control() || c == ' ') {
                return Err(format!("match.metrics: {:?} is not a metric glob", clip(g)));
            }
            sco_policy::check_known_glob(g).map_err(|e| format!("match.metrics: {e}"))?;
        }
        if let Some(s) = &self.min_severity {
            if Severity::parse(s).is_none() {
                return Err(format!(
                    "match.min_severity: {:?} is not low, medium, high or critical",
                    clip(s)
                ));
            }
        }
        for (k, v) in &self.labels {
            if k.is_empty() || k.len() > 64 || v.len() > 128 {
                return Err(format!("match.labels: {:?} is not a label", clip(k)));
            }
        }
        Ok(())
    }

    /// How well an event of a host with `labels` matches, or None when it does not.
    pub fn rank(
        &self,
        event: &Anomaly,
        labels: &BTreeMap<String, String>,
    ) -> Option<(f64, String)> {
        if self.families.is_empty() && self.metrics.is_empty() {
            return None;
        }
        let mut rank = 0.0;
        let mut why = Vec::new();
        if !self.families.is_empty() {
            if !self.families.contains(&event.family) {
                return None;
            }
            rank += 3.0;
            why.push(format!("family {}", event.family));
        }
        if let Some(min) = self.min_severity.as_deref().and_then(Severity::parse) {
            if event.severity.rank() < min.rank() {
                return None;
            }
        }
        if !self.metrics.is_empty() {
            let top = &event.top_metric;
            if let Some(g) = self.metrics.iter().find(|g| glob_match(g, top)) {
                rank += 2.0;
                why.push(format!("{top} matches {g}"));
            } else if let Some((g, m)) = self.metrics.iter().find_map(|g| {
                event
                    .contributors
                    .iter()
                    .find(|c| glob_match(g, &c.metric))
                    .map(|c| (g, &c.metric))
            }) {
                rank += 1.0;
                why.push(format!("{m} matches {g}"));
            } else {
                return None;
            }
        }
        for (k, v) in &self.labels {
            if labels.get(k) != Some(v) {
                return None;
            }
            rank += 1.0;
            why.push(format!("label {k}={v}"));
        }
        Some((rank, why.join(", ")))
    }
}

impl RunbookIn {
    /// The checked runbook to store (id given or made from the title).
    fn checked(self, id: Option<&str>) -> Result<(String, RunbookIn), ServiceError> {
        let invalid = |m: String| Err(ServiceError::Invalid(m));
        let title = self.title.trim();
        if title.is_empty() || title.chars().count() > MAX_TITLE || title.contains('\n') {
            return invalid(format!("title: 1 to {MAX_TITLE} characters on one line"));
        }
        if self.body.trim().is_empty() || self.body.len() > MAX_BODY {
            return invalid(format!("body: markdown of 1 byte to {MAX_BODY} bytes"));
        }
        if self.tags.len() > MAX_TAGS {
            return invalid(format!("tags: at most {MAX_TAGS}"));
        }
        for t in &self.tags {
            let ok = (1..=40).contains(&t.len())
                && t.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
            if !ok {
                return invalid(format!(
                    "tags: {:?} is not a tag (lowercase letters, digits, -, _ and ., 1-40)",
                    clip(t)
                ));
            }
        }
        self.conditions.check().map_err(ServiceError::Invalid)?;
        let id = match (id, self.id.as_deref()) {
            (Some(path), Some(body)) if path != body => {
                return invalid(format!(
                    "id: {:?} in the body is not {path:?} of the path",
                    clip(body)
                ))
            }
            (Some(path), _) => path.to_string(),
            (None, Some(given)) => given.to_string(),
            (None, None) => slug(title),
        };
        if !valid_id(&id) {
            return invalid(format!(
                "id: {:?} is not a runbook id (lowercase letters, digits and -, 1-64)",
                clip(&id)
            ));
        }
        let title = title.to_string();
        Ok((id, RunbookIn { title, ..self }))
    }
}

/// The knowledge base service.
pub struct Runbooks {
    store: Store,
}

impl Runbooks {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Adds the starter runbooks that were never stored (a deleted one stays deleted: its
    /// revisions remain).
    pub async fn seed(&self, now_ms: i64) -> Result<usize, StoreError> {
        let mut added = 0;
        for s in STARTER {
            if self.store.runbook_ever_existed(s.id).await? {
                continue;
            }
            let rb = Runbook {
                id: s.id.to_string(),
                revision: 1,
                title: s.title.to_string(),
                tags: s.tags.iter().map(|t| t.to_string()).collect(),
                conditions: Conditions {
                    families: s.families.iter().map(|t| t.to_string()).collect(),
                    metrics: s.metrics.iter().map(|t| t.to_string()).collect(),
                    min_severity: None,
                    labels: BTreeMap::new(),
                },
                body: s.body.to_string(),
                updated_ms: now_ms,
                updated_by: "builtin".into(),
            };
            if self.store.create_runbook(&rb).await?.is_some() {
                added += 1;
            }
        }
        Ok(added)
    }

    /// Creates a runbook (revision 1, or the next of a deleted one's history); an existing id
    /// is a conflict.
    pub async fn create(
        &self,
        by: &str,
        input: RunbookIn,
        now_ms: i64,
    ) -> Result<Runbook, ServiceError> {
        if input.base_revision.is_some() {
            return Err(ServiceError::Invalid(
                "base_revision: only for an update (PUT /runbooks/{id})".into(),
            ));
        }
        let (id, input) = input.checked(None)?;
        let rb = to_runbook(id, 1, input, by, now_ms);
        self.store.create_runbook(&rb).await?.ok_or_else(|| {
            ServiceError::Conflict(format!(
                "runbook {:?} exists; change it with PUT /runbooks/{}",
                rb.id, rb.id
            ))
        })
    }

    /// Stores a new revision of an existing runbook.
    pub async fn update(
        &self,
        id: &str,
        by: &str,
        input: RunbookIn,
        now_ms: i64,
    ) -> Result<Runbook, ServiceError> {
        let base = input.base_revision;
        let (id, input) = input.checked(Some(id))?;
        let current = self
            .store
            .runbook(&id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no runbook {id:?}")))?;
        if let Some(b) = base.filter(|&b| b != current.revision) {
            return Err(ServiceError::Conflict(format!(
                "runbook {id:?} is at revision {}, not {b}: reload it and edit again",
                current.revision
            )));
        }
        let rb = to_runbook(id, current.revision + 1, input, by, now_ms);
        if !self.store.update_runbook(&rb, current.revision).await? {
            return Err(ServiceError::Conflict(format!(
                "runbook {:?} changed meanwhile: reload it and edit again",
                rb.id
            )));
        }
        Ok(rb)
    }

    /// Removes a runbook; its revisions stay.
    pub async fn delete(&self, id: &str) -> Result<Runbook, ServiceError> {
        self.store
            .delete_runbook(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no runbook {id:?}")))
    }

    pub async fn get(&self, id: &str) -> Result<Option<Runbook>, StoreError> {
        self.store.runbook(id).await
    }

    pub async fn revisions(&self, id: &str) -> Result<Vec<Runbook>, StoreError> {
        self.store.runbook_revisions(id).await
    }

    /// Every runbook, by title, optionally only those with `tag`.
    pub async fn list(&self, tag: Option<&str>) -> Result<Vec<Runbook>, StoreError> {
        let mut all = self.store.runbooks().await?;
        if let Some(tag) = tag {
            all.retain(|r| r.tags.iter().any(|t| t == tag));
        }
        Ok(all)
    }

    /// Full-text search over title, tags and body, best first.
    pub async fn search(&self, q: &str, limit: i64) -> Result<Vec<Citation>, StoreError> {
        let words = search_words(q);
        if words.is_empty() {
            return Ok(Vec::new());
        }
        self.store.search_runbooks(&words, limit).await
    }

    /// The runbooks that match an event (with its host's labels), best first.
    pub async fn for_event(&self, event: &Anomaly) -> Result<Vec<Citation>, StoreError> {
        let labels = self
            .store
            .host(&event.host_id, i64::MAX / 4, crate::domain::now_ms())
            .await?
            .map(|h| h.labels)
            .unwrap_or_default();
        Ok(rank_for_event(
            &self.store.runbooks().await?,
            event,
            &labels,
        ))
    }
}

/// The matching runbooks of `all` for an event, best first (then by title).
pub fn rank_for_event(
    all: &[Runbook],
    event: &Anomaly,
    labels: &BTreeMap<String, String>,
) -> Vec<Citation> {
    let mut out: Vec<Citation> = all
        .iter()
        .filter_map(|r| {
            let (rank, why) = r.conditions.rank(event, labels)?;
            Some(Citation {
                id: r.id.clone(),
                title: r.title.clone(),
                revision: r.revision,
                rank,
                why,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.rank
            .total_cmp(&a.rank)
            .then_with(|| a.title.cmp(&b.title))
    });
    out
}

/// The words of a search text: letters and digits only (so nothing in it is search syntax),
/// lowercased, at most 16.
pub fn search_words(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .take(16)
        .collect()
}

fn to_runbook(id: String, revision: i64, input: RunbookIn, by: &str, now_ms: i64) -> Runbook {
    Runbook {
        id,
        revision,
        title: input.title,
        tags: input.tags,
        conditions: input.conditions,
        body: input.body,
        updated_ms: now_ms,
        updated_by: by.to_string(),
    }
}

/// A runbook shipped with the control plane.
struct Starter {
    id: &'static str,
    title: &'static str,
    tags: &'static [&'static str],
    families: &'static [&'static str],
    metrics: &'static [&'static str],
    body: &'static str,
}

/// The starter set, for the problems the agent detects.
const STARTER: &[Starter] = &[
    Starter {
        id: "cpu-saturation",
        title: "CPU saturation or a runaway process",
        tags: &["cpu", "runaway", "starter"],
        families: &["cpu"],
        metrics: &[],
        body: include_str!("../runbooks/cpu-saturation.md"),
    },
    Starter {
        id: "memory-pressure",
        title: "Memory pressure and OOM risk",
        tags: &["memory", "oom", "starter"],
        families: &["memory"],
        metrics: &[],
        body: include_str!("../runbooks/memory-pressure.md"),
    },
    Starter {
        id: "disk-filling",
        title: "A file system filling up (disk full)",
        tags: &["disk", "space", "full", "starter"],
        families: &["disk_space"],
        metrics: &[],
        body: include_str!("../runbooks/disk-filling.md"),
    },
    Starter {
        id: "io-saturation",
        title: "Disk I/O saturation",
        tags: &["disk", "io", "starter"],
        families: &["disk_io"],
        metrics: &[],
        body: include_str!("../runbooks/io-saturation.md"),
    },
    Starter {
        id: "network-errors",
        title: "Network errors, drops and traffic changes",
        tags: &["network", "starter"],
        families: &["network"],
        metrics: &[],
        body: include_str!("../runbooks/network-errors.md"),
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Contributor;

    fn event(family: &str, severity: Severity, metrics: &[&str]) -> Anomaly {
        Anomaly {
            id: "h:1".into(),
            host_id: "h".into(),
            status: "open".into(),
            started_ms: 0,
            updated_ms: 0,
            ended_ms: None,
            score: 0.9,
            peak_score: 0.9,
            severity,
            family: family.into(),
            top_metric: metrics.first().copied().unwrap_or_default().into(),
            contributors: metrics
                .iter()
                .map(|m| Contributor {
                    metric: m.to_string(),
                    value: 1.0,
                    expected_low: 0.0,
                    expected_high: 1.0,
                    contribution: 0.5,
                })
                .collect(),
            culprits: Vec::new(),
            model: String::new(),
            close_reason: String::new(),
            recovered_ms: None,
            context: None,
        }
    }

    fn runbook(id: &str, c: Conditions) -> Runbook {
        Runbook {
            id: id.into(),
            revision: 1,
            title: id.into(),
            tags: Vec::new(),
            conditions: c,
            body: "x".into(),
            updated_ms: 0,
            updated_by: "t".into(),
        }
    }

    #[test]
    fn events_get_the_runbooks_whose_every_condition_holds_best_first() {
        let labels: BTreeMap<String, String> = [("role".to_string(), "db".to_string())].into();
        let all = vec![
            runbook(
                "cpu",
                Conditions {
                    families: vec!["cpu".into()],
                    ..Conditions::default()
                },
            ),
            runbook(
                "cpu-user-db",
                Conditions {
                    families: vec!["cpu".into()],
                    metrics: vec!["cpu.user_pct".into()],
                    labels: labels.clone(),
                    ..Conditions::default()
                },
            ),
            runbook(
                "cpu-critical",
                Conditions {
                    families: vec!["cpu".into()],
                    min_severity: Some("critical".into()),
                    ..Conditions::default()
                },
            ),
            runbook(
                "memory",
                Conditions {
                    families: vec!["memory".into()],
                    ..Conditions::default()
                },
            ),
            runbook("search-only", Conditions::default()),
        ];
        let e = event("cpu", Severity::High, &["cpu.user_pct", "cpu.total_pct"]);
        let got = rank_for_event(&all, &e, &labels);
        let ids: Vec<&str> = got.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["cpu-user-db", "cpu"], "{got:?}");
        assert_eq!(got[0].rank, 6.0);
        assert!(
            got[0].why.contains("cpu.user_pct matches cpu.user_pct"),
            "{got:?}"
        );
        // the label selector must hold
        let got = rank_for_event(&all, &e, &BTreeMap::new());
        let ids: Vec<&str> = got.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["cpu"]);
        // a glob on another contributor counts less than on the top one
        let c = Conditions {
            metrics: vec!["cpu.total_pct".into()],
            ..Conditions::default()
        };
        assert_eq!(c.rank(&e, &labels).map(|r| r.0), Some(1.0));
    }

    #[test]
    fn conditions_and_writes_are_checked_naming_the_field() {
        let bad = |c: Conditions| c.check().expect_err("refused");
        assert!(bad(Conditions {
            families: vec!["gpu".into()],
            ..Conditions::default()
        })
        .contains("match.families"));
        assert!(bad(Conditions {
            metrics: vec!["gpu.*".into()],
            ..Conditions::default()
        })
        .contains("match.metrics"));
        assert!(bad(Conditions {
            min_severity: Some("urgent".into()),
            ..Conditions::default()
        })
        .contains("match.min_severity"));
        let input = |title: &str, id: Option<&str>| RunbookIn {
            id: id.map(str::to_string),
            title: title.into(),
            tags: vec!["cpu".into()],
            conditions: Conditions::default(),
            body: "# do this".into(),
            base_revision: None,
        };
        let (id, _) = input("  CPU saturation: what to do! ", None)
            .checked(None)
            .expect("valid");
        assert_eq!(id, "cpu-saturation-what-to-do");
        assert!(matches!(
            input("t", Some("Bad Id")).checked(None),
            Err(ServiceError::Invalid(m)) if m.starts_with("id:")
        ));
        assert!(matches!(
            input("t", Some("a")).checked(Some("b")),
            Err(ServiceError::Invalid(m)) if m.starts_with("id:")
        ));
        assert!(matches!(
            input("", None).checked(None),
            Err(ServiceError::Invalid(m)) if m.starts_with("title:")
        ));
        assert!(matches!(
            input("!!!", None).checked(None),
            Err(ServiceError::Invalid(m)) if m.starts_with("id:")
        ));
    }

    #[test]
    fn search_words_carry_no_search_syntax() {
        assert_eq!(
            search_words("disk \"full\" OR NEAR(x) * -y"),
            ["disk", "full", "or", "near", "x", "y"]
        );
        assert!(search_words("*** ::").is_empty());
    }

    #[test]
    fn every_starter_runbook_is_valid() {
        for s in STARTER {
            let c = Conditions {
                families: s.families.iter().map(|t| t.to_string()).collect(),
                metrics: s.metrics.iter().map(|t| t.to_string()).collect(),
                ..Conditions::default()
            };
            c.check().expect(s.id);
            assert!(valid_id(s.id), "{}", s.id);
            assert!(
                s.body.len() < MAX_BODY && s.body.starts_with("# "),
                "{}",
                s.id
            );
        }
    }
}
