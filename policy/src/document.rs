//! The policy document: what the control plane validates, stores and signs, and the agent
//! verifies and enforces.
//!
//! A policy is a YAML or JSON document with a name, a target (a host label
//! selector), detection settings and remediation rules. The control plane
//! validates it with [`parse`], stores the canonical JSON of the parsed
//! document and signs `name`, revision and that JSON with its ed25519 key
//! ([`signed_message`](crate::signed_message)). The agent accepts only a [`SignedPolicy`](crate::SignedPolicy) whose
//! signature verifies against the key it got with its PKI, parses the
//! document again with the same code, and keeps the last good revision.
//!
//! ```yaml
//! name: web-cpu
//! target: { labels: { role: web } }
//! detection: { sensitivity: 1.0, min_duration_secs: 5, ignore_metrics: ["net.*"] }
//! rules:
//!   - name: stop-runaway
//!     when:
//!       anomaly: { metrics: ["cpu.*", "psi.cpu.*"], min_severity: medium }
//!       state: ["cpu.total_pct > 80"]
//!       for_secs: 5
//!     action: { type: kill_process, pattern: "*runaway*" }
//!     mode: auto            # auto | approve | dry_run (default)
//!     cooldown_secs: 300
//!     max_per_hour: 3
//!     max_concurrent: 1     # hosts of the fleet acting at once
//!     verify: { metric: cpu.total_pct, below: 50, within_secs: 60 }
//! ```
//!
//! Instead of `action`, a rule may list `candidates` (at most [`MAX_CANDIDATES`], each
//! checked like `action`, no two the same, and the rule must have `verify`): the control
//! plane runs one of them per incident, the first written until the verified outcomes of
//! the others say otherwise.
//!
//! ```yaml
//!     candidates:
//!       - { type: restart_service, unit: app.service }
//!       - { type: kill_process, top_consumer: cpu }
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::action::Action;
pub use crate::error::PolicyError;
use crate::lessons::{Floor, QuietWindow};
use crate::metrics::{check_known_glob, check_known_metric, check_metric, NOT_SCORED};
use crate::{Family, Severity};

/// Largest policy document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// `^[a-z0-9][a-z0-9._-]{0,63}$`.
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default)]
    pub target: Target,
    #[serde(default)]
    pub detection: DetectionSettings,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// Hosts a policy applies to: every label must match, and the host must be one of `hosts`
/// if any are listed; neither means the whole fleet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Agent ids (what feedback on one host's event applies to).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

/// Host ids one target may list.
pub const MAX_TARGET_HOSTS: usize = 256;

impl Target {
    /// Checks what the types cannot: label sizes, how many hosts, that each is an agent id.
    /// Errors name the field as `target.labels.<key>`, `target.hosts` or `target.hosts[i]`.
    pub fn validate(&self) -> Result<(), PolicyError> {
        for (k, v) in &self.labels {
            if k.is_empty() || k.len() > 64 || v.len() > 128 {
                return Err(PolicyError::new(
                    format!("target.labels.{k}"),
                    "label keys are 1..=64 bytes, values at most 128",
                ));
            }
        }
        if self.hosts.len() > MAX_TARGET_HOSTS {
            return Err(PolicyError::new(
                "target.hosts",
                format!("{} hosts, at most {MAX_TARGET_HOSTS}", self.hosts.len()),
            ));
        }
        for (i, h) in self.hosts.iter().enumerate() {
            let ok = (1..=128).contains(&h.len())
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                return Err(PolicyError::new(
                    format!("target.hosts[{i}]"),
                    format!("{h:?} is not an agent id (1..=128 of a-z, A-Z, 0-9, ., _, -)"),
                ));
            }
        }
        Ok(())
    }

    /// True when it selects every host (no labels, no hosts).
    pub fn is_everything(&self) -> bool {
        self.labels.is_empty() && self.hosts.is_empty()
    }

    pub fn matches(&self, host: &str, host_labels: &BTreeMap<String, String>) -> bool {
        (self.hosts.is_empty() || self.hosts.iter().any(|h| h == host))
            && self
                .labels
                .iter()
                .all(|(k, v)| host_labels.get(k).is_some_and(|h| h == v))
    }
}

/// Overrides of the agent's `[detect]` settings while the policy applies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionSettings {
    /// Multiplies scores against the calibrated threshold (above 1: more alarms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitivity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_duration_secs: Option<u64>,
    /// Metric globs never scored, e.g. `net.*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_metrics: Vec<String>,
    /// Widened normal bands: a move that stays inside one is not evidence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub floors: Vec<Floor>,
    /// Recurring times (UTC) when some families or metrics are not evidence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quiet_windows: Vec<QuietWindow>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleMode {
    /// Act when a fleet lease is granted.
    Auto,
    /// Propose; act once an operator approves (and a lease is granted).
    Approve,
    /// Record what would happen; never act.
    #[default]
    DryRun,
}

impl RuleMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleMode::Auto => "auto",
            RuleMode::Approve => "approve",
            RuleMode::DryRun => "dry_run",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// `^[a-z0-9][a-z0-9._-]{0,63}$`, unique in the policy.
    pub name: String,
    pub when: Condition,
    /// The one action of the rule; a rule names either this or `candidates`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Allowlisted actions to choose from, preferred in the order written; the control
    /// plane chooses one per incident from their verified outcomes. Needs `verify`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Action>,
    #[serde(default)]
    pub mode: RuleMode,
    #[serde(default = "default_cooldown_secs")]
    pub cooldown_secs: u64,
    /// Executed actions of this rule per host and rolling hour.
    #[serde(default = "default_max_per_hour")]
    pub max_per_hour: u32,
    /// Hosts of the fleet running this rule's action at the same time.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: u32,
    /// The action failed unless this holds within its time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySpec>,
}

/// Candidates one rule may list.
pub const MAX_CANDIDATES: usize = 8;

impl Rule {
    /// The actions this rule may run, in the order written: its `action`, or its
    /// `candidates`. Never empty in a validated policy.
    pub fn actions(&self) -> &[Action] {
        match &self.action {
            Some(a) => std::slice::from_ref(a),
            None => &self.candidates,
        }
    }

    /// The action written first (the one a rule without learnt preferences runs).
    pub fn first_action(&self) -> Option<&Action> {
        self.actions().first()
    }

    /// Whether `action` is one this rule may run.
    pub fn allows(&self, action: &Action) -> bool {
        self.actions().contains(action)
    }
}

fn default_cooldown_secs() -> u64 {
    300
}
fn default_max_per_hour() -> u32 {
    3
}
fn default_max_concurrent() -> u32 {
    1
}

/// Every given part must hold, continuously for `for_secs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<AnomalyCondition>,
    /// Comparisons such as `disk.used_pct:/var > 90` (`metric[:device] op
    /// number`, op one of `>`, `>=`, `<`, `<=`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state: Vec<StateCondition>,
    #[serde(default)]
    pub for_secs: u64,
}

/// An open anomaly event with at least `min_severity`, of one of `families`
/// (empty: any family), whose contributors include a metric matching one of
/// `metrics` (globs; empty: any metric).
///
/// Metric names do not say which event they are part of: `cpu.iowait_pct` is
/// time the CPUs waited on disks, so it is a contributor of `disk_io` events,
/// and `metrics: ["cpu.*"]` alone matches those too. `families: [cpu]` is
/// "a CPU event".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyCondition {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub families: Vec<Family>,
    #[serde(default)]
    pub metrics: Vec<String>,
    #[serde(default = "default_severity")]
    pub min_severity: Severity,
}

fn default_severity() -> Severity {
    Severity::Low
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }

    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
        }
    }
}

/// `metric op value`, kept as the string it was written as.
#[derive(Debug, Clone, PartialEq)]
pub struct StateCondition {
    /// Metric key as the detector names it: `name` or `name:device`.
    pub metric: String,
    pub op: Op,
    pub value: f64,
}

impl fmt::Display for StateCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.metric, self.op.as_str(), self.value)
    }
}

impl std::str::FromStr for StateCondition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        // The first comparison character splits metric and number; metric
        // keys never contain `<` or `>`.
        let at = s
            .find(['<', '>'])
            .ok_or_else(|| format!("{s:?} has no comparison (>, >=, <, <=)"))?;
        let (metric, rest) = (s[..at].trim(), &s[at..]);
        let (op, number) = match rest.as_bytes() {
            [b'>', b'=', ..] => (Op::Ge, &rest[2..]),
            [b'<', b'=', ..] => (Op::Le, &rest[2..]),
            [b'>', ..] => (Op::Gt, &rest[1..]),
            _ => (Op::Lt, &rest[1..]),
        };
        if metric.is_empty() {
            return Err(format!("{s:?} names no metric"));
        }
        check_metric(metric)?;
        let value: f64 = number
            .trim()
            .parse()
            .map_err(|_| format!("{:?} is not a number", number.trim()))?;
        if !value.is_finite() {
            return Err(format!("{value} is not a finite number"));
        }
        Ok(Self {
            metric: metric.to_string(),
            op,
            value,
        })
    }
}

impl Serialize for StateCondition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StateCondition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn check_name(field: &str, name: &str) -> Result<(), PolicyError> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && b"._-".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(PolicyError::new(
            field,
            format!("{name:?} does not match ^[a-z0-9][a-z0-9._-]{{0,63}}$"),
        ))
    }
}

/// Parses and validates a policy written as JSON (first non-blank character
/// `{`) or, with the `yaml` feature, YAML.
pub fn parse(text: &str) -> Result<Policy, PolicyError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(PolicyError::new(
            "document",
            format!(
                "{} bytes is more than the limit of {MAX_DOCUMENT_BYTES}",
                text.len()
            ),
        ));
    }
    let policy: Policy = if text.trim_start().starts_with('{') {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| path_error(e.path(), e.inner()))?
    } else {
        parse_yaml(text)?
    };
    policy.validate()?;
    Ok(policy)
}

#[cfg(feature = "yaml")]
fn parse_yaml(text: &str) -> Result<Policy, PolicyError> {
    // serde-saphyr: a panic-free YAML parser without unsafe code and with budgets on
    // events, nesting and alias expansion (an admin's document cannot blow up the
    // server); errors without source snippets, as they go into one-line API answers.
    let options = serde_saphyr::options! { with_snippet: false };
    let mut at = None;
    let parsed = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            at = Some(path_error(e.path(), e.inner()));
            e.into_inner()
        })
    });
    parsed.map_err(|e| at.unwrap_or_else(|| PolicyError::new("document", e.to_string())))
}

#[cfg(not(feature = "yaml"))]
fn parse_yaml(_: &str) -> Result<Policy, PolicyError> {
    Err(PolicyError::new(
        "document",
        "not JSON (this build reads policies as JSON only; the control plane and scoctl read YAML)",
    ))
}

fn path_error(path: &serde_path_to_error::Path, e: &impl fmt::Display) -> PolicyError {
    let field = path.to_string();
    let field = if field == "." {
        "document".to_string()
    } else {
        field
    };
    PolicyError::new(field, e.to_string())
}

impl Policy {
    /// Checks what the types cannot: names, limits, that every rule has a
    /// condition on metrics the agent collects, and the action's own static
    /// checks.
    pub fn validate(&self) -> Result<(), PolicyError> {
        check_name("name", &self.name)?;
        if self.description.len() > 1024 {
            return Err(PolicyError::new("description", "longer than 1024 bytes"));
        }
        self.target.validate()?;
        let d = &self.detection;
        crate::lessons::check(&d.floors, &d.quiet_windows)?;
        if let Some(s) = d.sensitivity {
            if !(0.1..=10.0).contains(&s) {
                return Err(PolicyError::new(
                    "detection.sensitivity",
                    format!("{s} is outside 0.1..=10"),
                ));
            }
        }
        if let Some(m) = d.min_duration_secs {
            if m > 3600 {
                return Err(PolicyError::new(
                    "detection.min_duration_secs",
                    format!("{m} is more than 3600"),
                ));
            }
        }
        for (i, g) in d.ignore_metrics.iter().enumerate() {
            check_metric(g)
                .map_err(|r| PolicyError::new(format!("detection.ignore_metrics[{i}]"), r))?;
        }
        if self.rules.len() > 32 {
            return Err(PolicyError::new("rules", "more than 32 rules"));
        }
        let mut names = HashSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let at = |f: &str| format!("rules[{i}].{f}");
            check_name(&at("name"), &rule.name)?;
            if !names.insert(rule.name.as_str()) {
                return Err(PolicyError::new(
                    at("name"),
                    format!("{:?} is used by an earlier rule", rule.name),
                ));
            }
            let w = &rule.when;
            if w.anomaly.is_none() && w.state.is_empty() {
                return Err(PolicyError::new(
                    at("when"),
                    "needs an anomaly condition, a state condition or both",
                ));
            }
            if w.for_secs > 86_400 {
                return Err(PolicyError::new(at("when.for_secs"), "more than a day"));
            }
            if let Some(a) = &w.anomaly {
                for (j, g) in a.metrics.iter().enumerate() {
                    let field = || at(&format!("when.anomaly.metrics[{j}]"));
                    check_metric(g).map_err(|r| PolicyError::new(field(), r))?;
                    if let Some((p, why, instead)) =
                        NOT_SCORED.iter().find(|(p, _, _)| g.starts_with(*p))
                    {
                        return Err(PolicyError::new(
                            field(),
                            format!(
                                "{g:?} can never be part of an anomaly: the detector does not score \
                                 {p}* ({why}); {instead}"
                            ),
                        ));
                    }
                    check_known_glob(g).map_err(|r| PolicyError::new(field(), r))?;
                }
            }
            for (j, c) in w.state.iter().enumerate() {
                check_known_metric(&c.metric)
                    .map_err(|r| PolicyError::new(at(&format!("when.state[{j}]")), r))?;
            }
            match (&rule.action, rule.candidates.as_slice()) {
                (Some(_), [_, ..]) => {
                    return Err(PolicyError::new(
                        at("candidates"),
                        "a rule names either action or candidates, not both",
                    ))
                }
                (None, []) => {
                    return Err(PolicyError::new(
                        at("action"),
                        "missing: a rule needs an action or a list of candidates",
                    ))
                }
                (Some(a), []) => a
                    .check()
                    .map_err(|(_, reason)| PolicyError::new(at("action"), reason))?,
                (None, candidates) => {
                    if candidates.len() > MAX_CANDIDATES {
                        return Err(PolicyError::new(
                            at("candidates"),
                            format!("{} candidates, at most {MAX_CANDIDATES}", candidates.len()),
                        ));
                    }
                    if rule.verify.is_none() {
                        return Err(PolicyError::new(
                            at("verify"),
                            "missing: candidates are chosen by their verified outcomes, so the \
                             rule needs verify",
                        ));
                    }
                    for (j, a) in candidates.iter().enumerate() {
                        let field = at(&format!("candidates[{j}]"));
                        a.check().map_err(|(_, r)| PolicyError::new(&field, r))?;
                        if candidates[..j].contains(a) {
                            return Err(PolicyError::new(
                                field,
                                "the same action as an earlier candidate",
                            ));
                        }
                    }
                }
            }
            if rule.max_per_hour == 0 || rule.max_per_hour > 60 {
                return Err(PolicyError::new(
                    at("max_per_hour"),
                    format!("{} is outside 1..=60", rule.max_per_hour),
                ));
            }
            if rule.max_concurrent == 0 {
                return Err(PolicyError::new(at("max_concurrent"), "must be at least 1"));
            }
            if rule.cooldown_secs > 7 * 86_400 {
                return Err(PolicyError::new(at("cooldown_secs"), "more than a week"));
            }
            if let Some(v) = &rule.verify {
                check_metric(&v.metric)
                    .and_then(|()| check_known_metric(&v.metric))
                    .map_err(|r| PolicyError::new(at("verify.metric"), r))?;
                if !v.below.is_finite() {
                    return Err(PolicyError::new(at("verify.below"), "not a finite number"));
                }
                // The fleet lease (15 minutes) must outlast the action and
                // its verification.
                if v.within_secs == 0 || v.within_secs > 600 {
                    return Err(PolicyError::new(
                        at("verify.within_secs"),
                        format!("{} is outside 1..=600", v.within_secs),
                    ));
                }
                if v.poll_ms < 100 {
                    return Err(PolicyError::new(at("verify.poll_ms"), "less than 100"));
                }
            }
        }
        Ok(())
    }

    /// The canonical form that is stored, signed and sent.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }
}

/// The condition an action is verified against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    /// Metric name as the collector reports it, e.g. `cpu.busy_pct`.
    pub metric: String,
    /// The action worked when the metric is strictly below this.
    pub below: f64,
    /// Time allowed after the action ended.
    pub within_secs: u64,
    /// How often the metric is read while waiting.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
}

fn default_poll_ms() -> u64 {
    1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::KeyPair;

    const YAML: &str = r#"
name: web-cpu
target: { labels: { role: web } }
detection: { sensitivity: 1.5, ignore_metrics: ["net.*"] }
rules:
  - name: stop-runaway
    when:
      anomaly: { metrics: ["cpu.*"], min_severity: medium }
      state: ["cpu.total_pct >= 80"]
      for_secs: 5
    action: { type: kill_process, pattern: "*runaway*" }
    mode: auto
    verify: { metric: cpu.total_pct, below: 50, within_secs: 60 }
"#;

    use crate::metrics::{edit_distance, KNOWN_METRICS};
    use crate::signed::test_keys::{keypair, sign};
    use crate::signed::VerifyError;

    #[test]
    fn yaml_and_json_parse_to_the_same_policy() {
        let p = parse(YAML).expect("valid yaml");
        assert_eq!(p.rules[0].mode, RuleMode::Auto);
        assert_eq!(p.rules[0].cooldown_secs, 300);
        assert_eq!(p.rules[0].when.state[0].op, Op::Ge);
        assert_eq!(
            p.rules[0].when.anomaly.as_ref().map(|a| a.min_severity),
            Some(Severity::Medium)
        );
        let again = parse(&p.canonical_json()).expect("canonical json parses");
        assert_eq!(again, p);
        assert_eq!(again.canonical_json(), p.canonical_json());
    }

    #[test]
    fn candidates_instead_of_one_action() {
        let with = |candidates: &str| {
            YAML.replace(
                "action: { type: kill_process, pattern: \"*runaway*\" }",
                &format!("candidates: {candidates}"),
            )
        };
        let p = parse(&with(
            "[{ type: restart_service, unit: app.service }, { type: kill_process, pattern: \"*runaway*\" }]",
        ))
        .expect("two candidates");
        let r = &p.rules[0];
        assert_eq!(r.action, None);
        assert_eq!(r.actions().len(), 2);
        assert!(matches!(
            r.first_action(),
            Some(Action::RestartService { .. })
        ));
        assert!(r.allows(&r.candidates[1]));
        let again = parse(&p.canonical_json()).expect("canonical json parses");
        assert_eq!(again, p);
        assert!(p.canonical_json().contains("\"candidates\""));

        // A rule with one action is as it was: no candidates in its canonical form.
        let one = parse(YAML).expect("one action");
        assert!(!one.canonical_json().contains("candidates"));
        assert_eq!(
            one.rules[0].actions(),
            [one.rules[0].action.clone().expect("action")]
        );

        let nine = format!(
            "[{}]",
            (0..9)
                .map(|i| format!("{{ type: restart_service, unit: a{i}.service }}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (doc, field, says) in [
            (
                YAML.replace("mode: auto", "mode: auto\n    candidates: [{ type: restart_service, unit: a.service }]"),
                "rules[0].candidates",
                "not both",
            ),
            (
                YAML.replace("    action: { type: kill_process, pattern: \"*runaway*\" }\n", ""),
                "rules[0].action",
                "action or a list of candidates",
            ),
            (with("[]"), "rules[0].action", "action or a list of candidates"),
            (with(&nine), "rules[0].candidates", "at most 8"),
            (
                with("[{ type: restart_service, unit: a.service }, { type: kill_process }]"),
                "rules[0].candidates[1]",
                "one target",
            ),
            (
                with("[{ type: rm_rf, path: / }]"),
                "rules[0].candidates[0]",
                "rm_rf",
            ),
            (
                with("[{ type: restart_service, unit: a.service }, { type: restart_service, unit: a.service }]"),
                "rules[0].candidates[1]",
                "earlier candidate",
            ),
            (
                with("[{ type: restart_service, unit: a.service }]").replace(
                    "    verify: { metric: cpu.total_pct, below: 50, within_secs: 60 }\n",
                    "",
                ),
                "rules[0].verify",
                "needs verify",
            ),
        ] {
            let e = parse(&doc).expect_err(&doc);
            assert!(e.field.starts_with(field), "{doc}: {e}");
            assert!(e.reason.contains(says), "{doc}: {e}");
        }
    }

    #[test]
    fn mode_defaults_to_dry_run() {
        let p = parse(
            "name: a\nrules:\n  - name: r\n    when: { state: ['disk.used_pct:/var > 90'] }\n    action: { type: journal_vacuum, max_size_mb: 100 }\n",
        )
        .expect("valid");
        assert_eq!(p.rules[0].mode, RuleMode::DryRun);
        assert_eq!(p.rules[0].when.state[0].metric, "disk.used_pct:/var");
    }

    #[test]
    fn errors_name_the_field() {
        let bad = YAML.replace("mode: auto", "mode: yolo");
        let e = parse(&bad).expect_err("bad mode");
        assert_eq!(e.field, "rules[0].mode");
        assert!(e.reason.contains("yolo"), "{e}");

        let e = parse(&YAML.replace("within_secs: 60", "within_secs: 0")).expect_err("bad");
        assert_eq!(e.field, "rules[0].verify.within_secs");

        let e = parse(&YAML.replace("cpu.total_pct >= 80", "cpu.total_pct ~ 80")).expect_err("bad");
        assert_eq!(e.field, "rules[0].when.state[0]");

        let e = parse(&YAML.replace("pattern: \"*runaway*\"", "unit: \"x; rm -rf /\""))
            .expect_err("bad action");
        assert!(e.field.starts_with("rules[0].action"), "{e}");

        let e = parse(&YAML.replace("metrics: [\"cpu.*\"]", "metrics: [\"cpu.*\", \"load.*\"]"))
            .expect_err("unscored metric");
        assert_eq!(e.field, "rules[0].when.anomaly.metrics[1]");
        assert!(e.reason.contains("psi.cpu.*"), "{e}");
        parse(&YAML.replace("cpu.total_pct >= 80", "load.1 > 8"))
            .expect("load in a state condition");

        let e = parse("{\"name\": \"Bad Name\"}").expect_err("bad name");
        assert_eq!(e.field, "name");

        let e = parse("{\"name\": \"a\", \"extra\": 1}").expect_err("unknown field");
        assert!(e.reason.contains("extra"), "{e}");

        let p = parse(&YAML.replace("anomaly: {", "anomaly: { families: [cpu, disk_io],"))
            .expect("families");
        let a = p.rules[0].when.anomaly.as_ref().expect("anomaly");
        assert_eq!(a.families, [Family::Cpu, Family::DiskIo]);
        let e = parse(&YAML.replace("anomaly: {", "anomaly: { families: [cpus],"))
            .expect_err("unknown family");
        assert!(
            e.reason.contains("cpus") && e.reason.contains("disk_io"),
            "{e}"
        );

        let e = parse("name: a\nrules:\n  - name: r\n    when: {}\n    action: { type: journal_vacuum, max_size_mb: 1 }\n")
            .expect_err("no condition");
        assert_eq!(e.field, "rules[0].when");
    }

    #[test]
    fn hostile_yaml_is_refused_without_expanding_it() {
        // aliases nested ten deep would expand to 10^9 strings
        let mut bomb = String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        let mut prev = 'a';
        for c in 'b'..='j' {
            bomb.push_str(&format!(
                "{c}: &{c} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
            ));
            prev = c;
        }
        bomb.push_str("name: *j\n");
        // refused at once (the budget, or the first field the policy does not have), not
        // expanded: were it expanded, this test would not end
        let e = parse(&bomb).expect_err("alias bomb");
        assert!(!e.reason.is_empty(), "{e}");
        let in_a_field = format!("name: a\nrules:\n{}", bomb.replace("name: *j\n", ""));
        parse(&in_a_field).expect_err("alias bomb inside a field");

        let e = parse("name: a\nname: b\nrules: []\n").expect_err("duplicate key");
        assert!(e.reason.contains("name"), "{e}");

        let e = parse("name: [unclosed\n").expect_err("syntax");
        assert!(!e.reason.is_empty(), "{e}");
    }

    #[test]
    fn unknown_metrics_are_refused_with_the_closest_name() {
        let e = parse(&YAML.replace("cpu.total_pct >= 80", "cpu.totl_pct > 80"))
            .expect_err("misspelt state metric");
        assert_eq!(e.field, "rules[0].when.state[0]");
        assert!(e.reason.contains("\"cpu.totl_pct\""), "{e}");
        assert!(e.reason.contains("did you mean cpu.total_pct?"), "{e}");

        // The device part is free; the name before it is not.
        parse(&YAML.replace("cpu.total_pct >= 80", "disk.used_pct:/srv/data > 90"))
            .expect("any device");
        let e = parse(&YAML.replace("cpu.total_pct >= 80", "disk.usedpct:/var > 90"))
            .expect_err("misspelt name with a device");
        assert_eq!(e.field, "rules[0].when.state[0]");
        assert!(e.reason.contains("did you mean disk.used_pct?"), "{e}");

        // Far from every name: no guess, the families instead.
        let e = parse(&YAML.replace("cpu.total_pct >= 80", "temperature > 80"))
            .expect_err("unknown metric");
        assert!(!e.reason.contains("did you mean"), "{e}");
        assert!(e.reason.contains("cpu.*, load.*"), "{e}");

        // Anomaly globs must match at least one collected metric.
        for ok in ["cpu.*", "psi.cpu.*", "*", "disk.busy_pct:sd*", "net.?x_*"] {
            parse(&YAML.replace("metrics: [\"cpu.*\"]", &format!("metrics: [{ok:?}]")))
                .unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let e = parse(&YAML.replace("metrics: [\"cpu.*\"]", "metrics: [\"cpu.*\", \"gpu.*\"]"))
            .expect_err("glob matching nothing");
        assert_eq!(e.field, "rules[0].when.anomaly.metrics[1]");
        assert!(e.reason.contains("\"gpu.*\""), "{e}");

        let e = parse(&YAML.replace("metric: cpu.total_pct", "metric: cpu.total"))
            .expect_err("misspelt verify metric");
        assert_eq!(e.field, "rules[0].verify.metric");
        assert!(e.reason.contains("did you mean cpu.total_pct?"), "{e}");
    }

    /// Expands shell-style `{a,b}` alternatives: `net.{rx,tx}_x` gives
    /// `net.rx_x` and `net.tx_x`.
    fn expand_braces(s: &str) -> Vec<String> {
        let Some(open) = s.find('{') else {
            return vec![s.to_string()];
        };
        let close = open + s[open..].find('}').expect("closing brace");
        let (head, tail) = (&s[..open], &s[close + 1..]);
        s[open + 1..close]
            .split(',')
            .flat_map(|alt| expand_braces(&format!("{head}{alt}{tail}")))
            .collect()
    }

    #[test]
    fn known_metrics_match_the_readme_table() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("## What the agent collects")
            .nth(1)
            .expect("README has a \"What the agent collects\" section");
        let section = section.split("\n## ").next().unwrap_or(section);
        let mut documented = Vec::new();
        for row in section.lines().filter(|l| l.starts_with('|')) {
            let first_cell = row.trim_start_matches('|').split('|').next().unwrap_or("");
            // Backquoted names sit at odd positions of a split on '`'.
            for quoted in first_cell.split('`').skip(1).step_by(2) {
                documented.extend(expand_braces(quoted));
            }
        }
        assert!(
            documented.len() >= 30,
            "the table was not read: {documented:?}"
        );
        for m in &documented {
            assert!(
                KNOWN_METRICS.contains(&m.as_str()),
                "README lists {m} but KNOWN_METRICS does not"
            );
        }
        for m in KNOWN_METRICS {
            assert!(
                documented.iter().any(|d| d == m),
                "KNOWN_METRICS has {m} but the README table does not"
            );
        }
        assert_eq!(expand_braces("a.{x,y}_{1,2}").len(), 4);
    }

    #[test]
    fn edit_distances() {
        for (a, b, d) in [
            ("", "", 0),
            ("cpu", "cpu", 0),
            ("cpu.totl_pct", "cpu.total_pct", 1),
            ("kitten", "sitting", 3),
            ("", "abc", 3),
        ] {
            assert_eq!(edit_distance(a, b), d, "{a} {b}");
        }
    }

    #[test]
    fn state_conditions_parse_strictly() {
        let c: StateCondition = "disk.used_pct:/ > 90.5".parse().expect("valid");
        assert_eq!(
            (c.metric.as_str(), c.op, c.value),
            ("disk.used_pct:/", Op::Gt, 90.5)
        );
        assert!(c.op.holds(91.0, c.value) && !c.op.holds(90.5, c.value));
        for bad in [
            "> 3",
            "cpu 3",
            "cpu > x",
            "cpu > NaN",
            "cpu > inf",
            "a b > 1",
        ] {
            assert!(bad.parse::<StateCondition>().is_err(), "{bad} accepted");
        }
        assert_eq!(
            c.to_string().parse::<StateCondition>().expect("round trip"),
            c
        );
    }

    #[test]
    fn signatures_verify_and_tampering_is_refused() {
        let k = keypair();
        let public = k.public_key().as_ref().to_vec();
        let p = parse(YAML).expect("valid");
        let signed = sign(&k, &p, 3);
        assert_eq!(signed.verify(Some(&public)).expect("verifies"), p);

        let mut tampered = signed.clone();
        tampered.document = tampered.document.replace("\"auto\"", "\"dry_run\"");
        assert_eq!(
            tampered.verify(Some(&public)),
            Err(VerifyError::BadSignature)
        );

        let mut replayed = signed.clone();
        replayed.revision = 4;
        assert_eq!(
            replayed.verify(Some(&public)),
            Err(VerifyError::BadSignature)
        );

        let mut unsigned = signed.clone();
        unsigned.signature.clear();
        assert_eq!(unsigned.verify(Some(&public)), Err(VerifyError::Unsigned));

        let other = keypair();
        assert_eq!(
            signed.verify(Some(other.public_key().as_ref())),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(signed.verify(None), Err(VerifyError::NoKey));
    }

    #[test]
    fn target_labels_select_hosts() {
        let t = Target {
            labels: [("role".to_string(), "web".to_string())].into(),
            hosts: Vec::new(),
        };
        let mut host = BTreeMap::new();
        assert!(!t.matches("a", &host));
        host.insert("role".to_string(), "web".to_string());
        host.insert("env".to_string(), "prod".to_string());
        assert!(t.matches("a", &host));
        assert!(Target::default().matches("a", &BTreeMap::new()));
        let one = Target {
            hosts: vec!["agent-1".into()],
            ..t
        };
        assert!(one.matches("agent-1", &host));
        assert!(!one.matches("agent-2", &host));
        assert!(!one.matches("agent-1", &BTreeMap::new()));
    }

    #[test]
    fn floors_quiet_windows_and_host_targets_validate() {
        let p = parse(
            "name: fb\ntarget: { hosts: [agent-1] }\ndetection:\n  floors: [{ metrics: ['cpu.user_pct', 'disk.busy_pct:sd*'], max: 80 }]\n  quiet_windows: [{ days: [mon, sun], start: '23:00', end: '01:30', families: [cpu] }]\n",
        )
        .expect("valid");
        assert_eq!(p.target.hosts, ["agent-1"]);
        assert_eq!(p.detection.floors[0].max, Some(80.0));
        let w = &p.detection.quiet_windows[0];
        assert_eq!(w.start.to_string(), "23:00");
        assert_eq!(w.families, [Family::Cpu]);
        assert_eq!(parse(&p.canonical_json()).expect("canonical"), p);

        for (doc, field, says) in [
            ("detection: { floors: [{ metrics: ['cpu.user_pct'] }] }", "detection.floors[0]", "min, max"),
            ("detection: { floors: [{ metrics: [], max: 1 }] }", "detection.floors[0].metrics", "no metric"),
            ("detection: { floors: [{ metrics: ['gpu.*'], max: 1 }] }", "detection.floors[0].metrics[0]", "gpu"),
            ("detection: { floors: [{ metrics: ['cpu.*'], min: 5, max: 1 }] }", "detection.floors[0].min", "above max"),
            ("detection: { floors: [{ metrics: ['cpu.*'], max: .nan }] }", "detection.floors[0].max", "finite"),
            ("detection: { quiet_windows: [{ start: '25:00', end: '01:00' }] }", "detection.quiet_windows[0]", "HH:MM"),
            ("detection: { quiet_windows: [{ start: '01:00', end: '01:00' }] }", "detection.quiet_windows[0].end", "empty"),
            ("detection: { quiet_windows: [{ days: [monday], start: '01:00', end: '02:00' }] }", "detection.quiet_windows[0]", "monday"),
            ("detection: { quiet_windows: [{ start: '01:00', end: '02:00', metrics: ['cpu.totl_pct'] }] }", "detection.quiet_windows[0].metrics[0]", "did you mean"),
            ("target: { hosts: ['a b'] }", "target.hosts[0]", "agent id"),
        ] {
            let e = parse(&format!("name: x\n{doc}\n")).expect_err(doc);
            assert!(e.field.starts_with(field), "{doc}: {e}");
            assert!(e.reason.contains(says), "{doc}: {e}");
        }
    }
}
