//! Policy revisions and rollouts: the records, the rollout state machine, and the rollout
//! decisions (canary choice, finish or stop) as pure functions.

use std::collections::BTreeMap;

use sco_policy::Target;
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// One immutable, signed revision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyRevision {
    pub name: String,
    pub revision: i64,
    /// Canonical JSON of the validated document (what is signed).
    pub document: String,
    /// ed25519 signature, hex.
    pub signature: String,
    /// The document as posted (YAML or JSON).
    pub source: String,
    pub created_by: String,
    pub created_at_ms: i64,
}

impl PolicyRevision {
    pub fn parsed(&self) -> Option<sco_policy::Policy> {
        serde_json::from_str(&self.document).ok()
    }

    /// A withdrawal revision (empty document) removes the policy.
    pub fn is_withdrawal(&self) -> bool {
        self.document.is_empty()
    }

    /// Hosts this revision is sent to: those its target selects; a
    /// withdrawal goes to every host.
    pub fn targets(&self, host: &str, labels: &BTreeMap<String, String>) -> bool {
        self.is_withdrawal()
            || self
                .parsed()
                .is_some_and(|p| p.target.matches(host, labels))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rollout {
    pub id: String,
    pub name: String,
    pub revision: i64,
    /// Revision in force before this rollout (0: none); what non-canary
    /// hosts keep and what everyone gets back if the rollout stops.
    pub previous_revision: i64,
    pub canary_percent: i64,
    pub canary_hosts: Vec<String>,
    pub canary_secs: i64,
    /// The rollout stops when canary hosts open more anomaly events than
    /// `baseline_anomalies + max_new_anomalies` during the canary phase.
    pub max_new_anomalies: i64,
    /// Events the canary hosts opened in the same time before the rollout.
    pub baseline_anomalies: i64,
    /// The hosts it is for (model rollouts; every host when empty). A policy selects its
    /// hosts in its document, so its rollouts select every host.
    #[serde(skip_serializing_if = "Target::is_everything")]
    pub target: Target,
    pub state: RolloutState,
    pub reason: String,
    pub started_by: String,
    pub started_at_ms: i64,
    pub updated_at_ms: i64,
}

impl Rollout {
    /// The revision `host` should run according to this rollout (0: none).
    pub fn revision_for(&self, host: &str) -> i64 {
        match self.state {
            RolloutState::Complete => self.revision,
            RolloutState::Canary if self.canary_hosts.iter().any(|h| h == host) => self.revision,
            RolloutState::Canary | RolloutState::Stopped => self.previous_revision,
        }
    }

    /// The revision in force for hosts outside a canary.
    pub fn settled_revision(&self) -> i64 {
        match self.state {
            RolloutState::Complete => self.revision,
            RolloutState::Canary | RolloutState::Stopped => self.previous_revision,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyHostStatus {
    pub name: String,
    pub host_id: String,
    /// Revision the host last reported on.
    pub revision: i64,
    /// Revision in force on the host.
    pub applied_revision: i64,
    pub applied_at_ms: i64,
    /// Why the last reported revision was refused; empty when applied.
    pub error: String,
    pub updated_at_ms: i64,
}

/// An agent's report on a policy revision, as received.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyStatusIn {
    pub seq: i64,
    pub produced_at_ms: i64,
    pub name: String,
    pub revision: i64,
    pub applied: bool,
    pub error: String,
    pub active_revision: i64,
}

/// A rollout as asked for (the REST body, `http/policy.rs`, fills in its defaults).
#[derive(Debug, Clone)]
pub struct RolloutRequest {
    /// Defaults to the newest revision.
    pub revision: Option<i64>,
    /// Share of targeted hosts that get the revision first; 0 goes to all
    /// at once.
    pub canary_percent: i64,
    /// How long the canary runs before everyone gets the revision.
    pub canary_secs: i64,
    pub max_new_anomalies: i64,
}

/// One host's side of a policy: the revision meant for it and what it reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostPolicyState {
    pub host_id: String,
    pub desired_revision: i64,
    /// A canary of the current rollout.
    pub canary: bool,
    pub reported_revision: i64,
    pub applied_revision: i64,
    pub applied_at_ms: i64,
    pub error: String,
    /// Runs the revision meant for it, without error.
    pub in_sync: bool,
}

/// A policy's newest rollout and every host it concerns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyRolloutStatus {
    pub name: String,
    pub rollout: Option<Rollout>,
    pub hosts: Vec<HostPolicyState>,
}

/// Where a rollout is: `canary` (canary hosts run the new revision, the others the previous
/// one) ends in `complete` (everyone runs it) or `stopped` (everyone back on the previous
/// one); both are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    Canary,
    Complete,
    Stopped,
}

impl RolloutState {
    pub const ALL: [RolloutState; 3] = [
        RolloutState::Canary,
        RolloutState::Complete,
        RolloutState::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Canary => "canary",
            RolloutState::Complete => "complete",
            RolloutState::Stopped => "stopped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Only a canary moves, and only to a final state.
    pub fn can_become(self, to: RolloutState) -> bool {
        self == RolloutState::Canary && to != RolloutState::Canary
    }
}

impl std::fmt::Display for RolloutState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The limits of a rollout request (policies and models alike), each error naming its field.
pub fn check_rollout_request(req: &RolloutRequest) -> Result<(), String> {
    if !(0..=100).contains(&req.canary_percent) {
        return Err(format!(
            "canary_percent: {} is outside 0..=100",
            req.canary_percent
        ));
    }
    if !(0..=86_400).contains(&req.canary_secs) {
        return Err(format!(
            "canary_secs: {} is outside 0..=86400",
            req.canary_secs
        ));
    }
    if req.canary_percent > 0 && req.canary_secs == 0 {
        return Err(
            "canary_secs: a canary needs at least 1 s (or canary_percent 0 to go to all at once)"
                .into(),
        );
    }
    if !(0..=10_000).contains(&req.max_new_anomalies) {
        return Err(format!(
            "max_new_anomalies: {} is outside 0..=10000",
            req.max_new_anomalies
        ));
    }
    Ok(())
}

/// Hosts a new rollout may choose canaries from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub connected: bool,
}

/// The canary hosts of a rollout of policy `name` to `percent` % of `targeted` (rounded up):
/// connected hosts first (only they can show how the revision does), each group in a stable
/// order by a hash of policy and host, so the choice is spread and differs between policies.
pub fn choose_canaries(name: &str, targeted: &[Candidate], percent: i64) -> Vec<String> {
    let percent = usize::try_from(percent.clamp(0, 100)).unwrap_or(0);
    let k = (targeted.len() * percent).div_ceil(100);
    let order = |connected: bool| {
        let mut ids: Vec<String> = targeted
            .iter()
            .filter(|c| c.connected == connected)
            .map(|c| c.id.clone())
            .collect();
        ids.sort_by_cached_key(|h| sha2::Sha256::digest(format!("{name}/{h}").as_bytes()));
        ids
    };
    let mut hosts = order(true);
    hosts.extend(order(false));
    hosts.truncate(k);
    hosts
}

/// The state a rollout starts in: without a canary (0 % or no targeted host) it is complete
/// at once.
pub fn initial_state(canary_percent: i64, canary_hosts: &[String]) -> (RolloutState, String) {
    if canary_percent == 0 || canary_hosts.is_empty() {
        (
            RolloutState::Complete,
            "no canary: rolled out to every targeted host".into(),
        )
    } else {
        (RolloutState::Canary, String::new())
    }
}

/// Whether a canary rollout finishes or stops now, and why; `None` while it keeps waiting.
/// It stops when a canary host refused the revision, when canary hosts opened more anomaly
/// events since it started (`opened`) than before it plus `max_new_anomalies`, or when its
/// time is up and no canary host applied the revision; it completes when its time is up and
/// at least one did.
pub fn decide(
    r: &Rollout,
    statuses: &[PolicyHostStatus],
    opened: i64,
    now_ms: i64,
) -> Option<(RolloutState, String)> {
    if r.state != RolloutState::Canary {
        return None;
    }
    let canary = |s: &&PolicyHostStatus| r.canary_hosts.contains(&s.host_id);
    let refused: Vec<String> = statuses
        .iter()
        .filter(canary)
        .filter(|s| s.revision == r.revision && !s.error.is_empty())
        .map(|s| format!("{}: {}", s.host_id, s.error))
        .collect();
    if !refused.is_empty() {
        return Some((
            RolloutState::Stopped,
            format!(
                "canary hosts refused revision {}: {}",
                r.revision,
                refused.join("; ")
            ),
        ));
    }
    if opened > r.baseline_anomalies + r.max_new_anomalies {
        return Some((
            RolloutState::Stopped,
            format!(
                "alarm jump: canary hosts opened {opened} anomaly events since the rollout \
                 started ({} in the same time before, {} more allowed)",
                r.baseline_anomalies, r.max_new_anomalies
            ),
        ));
    }
    if now_ms - r.started_at_ms < r.canary_secs * 1000 {
        return None;
    }
    let applied = statuses
        .iter()
        .filter(canary)
        .filter(|s| s.applied_revision == r.revision && s.error.is_empty())
        .count();
    Some(if applied == 0 {
        (
            RolloutState::Stopped,
            format!(
                "no canary host applied revision {} within {} s",
                r.revision, r.canary_secs
            ),
        )
    } else {
        (
            RolloutState::Complete,
            format!(
                "canary healthy for {} s ({applied} of {} canary hosts applied it): \
                 rolled out to every targeted host",
                r.canary_secs,
                r.canary_hosts.len()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(state: RolloutState) -> Rollout {
        Rollout {
            id: "rollout-1".into(),
            name: "web".into(),
            revision: 2,
            previous_revision: 1,
            canary_percent: 50,
            canary_hosts: vec!["a".into(), "b".into()],
            canary_secs: 60,
            max_new_anomalies: 3,
            baseline_anomalies: 1,
            target: Target::default(),
            state,
            reason: String::new(),
            started_by: "admin".into(),
            started_at_ms: 1_000_000,
            updated_at_ms: 1_000_000,
        }
    }

    /// `host` reported on `revision`, runs `applied`, with `error` if it refused.
    fn status(host: &str, revision: i64, applied: i64, error: &str) -> PolicyHostStatus {
        PolicyHostStatus {
            name: "web".into(),
            host_id: host.into(),
            revision,
            applied_revision: applied,
            applied_at_ms: 0,
            error: error.into(),
            updated_at_ms: 0,
        }
    }

    #[test]
    fn canary_decisions() {
        let start = 1_000_000;
        let early = start + 10_000;
        let due = start + 60_000;
        let ok_a = status("a", 2, 2, "");
        let refused_b = status("b", 2, 1, "signature does not verify");
        let refused_elsewhere = status("c", 2, 1, "bad");
        let old_refusal = status("a", 1, 1, "bad");
        use RolloutState::{Complete, Stopped};
        // (statuses, opened since start, now) -> decision
        type Case = (
            Vec<PolicyHostStatus>,
            i64,
            i64,
            Option<RolloutState>,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (vec![], 0, early, None, "waits while its time runs"),
            (
                vec![ok_a.clone()],
                4,
                early,
                None,
                "baseline 1 + 3 allowed: 4 is fine",
            ),
            (vec![ok_a.clone()], 5, early, Some(Stopped), "alarm jump"),
            (
                vec![refused_b.clone()],
                0,
                early,
                Some(Stopped),
                "a canary refused it",
            ),
            (
                vec![refused_elsewhere, old_refusal],
                0,
                early,
                None,
                "refusals that do not count",
            ),
            (
                vec![ok_a.clone(), status("b", 2, 1, "")],
                0,
                due,
                Some(Complete),
                "one applied",
            ),
            (
                vec![status("c", 2, 2, "")],
                0,
                due,
                Some(Stopped),
                "no canary applied it",
            ),
            (vec![], 0, due, Some(Stopped), "nobody reported"),
            (
                vec![ok_a, refused_b],
                0,
                due,
                Some(Stopped),
                "a refusal beats time",
            ),
        ];
        for (statuses, opened, now, want, why) in cases {
            let got = decide(&rollout(RolloutState::Canary), &statuses, opened, now);
            assert_eq!(got.as_ref().map(|(s, _)| *s), want, "{why}: {got:?}");
            if let Some((_, reason)) = got {
                assert!(!reason.is_empty(), "{why}");
            }
        }
        for done in [Complete, Stopped] {
            assert_eq!(
                decide(&rollout(done), &[], 100, due),
                None,
                "{done} is final"
            );
        }
    }

    #[test]
    fn states_and_revisions() {
        use RolloutState::{Canary, Complete, Stopped};
        // (state, host) -> revision the host should run
        let cases = [
            (Canary, "a", 2),
            (Canary, "z", 1),
            (Complete, "z", 2),
            (Stopped, "a", 1),
        ];
        for (state, host, want) in cases {
            assert_eq!(rollout(state).revision_for(host), want, "{state} {host}");
        }
        assert_eq!(rollout(Canary).settled_revision(), 1);
        assert_eq!(rollout(Complete).settled_revision(), 2);
        for s in RolloutState::ALL {
            assert_eq!(RolloutState::parse(s.as_str()), Some(s));
            for to in RolloutState::ALL {
                assert_eq!(s.can_become(to), s == Canary && to != Canary, "{s} -> {to}");
            }
        }
    }

    #[test]
    fn canaries_prefer_connected_hosts_and_round_up() {
        let hosts: Vec<Candidate> = (0..10)
            .map(|i| Candidate {
                id: format!("h{i}"),
                connected: i % 2 == 0,
            })
            .collect();
        assert!(choose_canaries("web", &hosts, 0).is_empty());
        let five = choose_canaries("web", &hosts, 41);
        assert_eq!(five.len(), 5, "41 % of 10 rounds up to 5");
        let connected: Vec<&str> = hosts
            .iter()
            .filter(|h| h.connected)
            .map(|h| h.id.as_str())
            .collect();
        assert!(
            five.iter().all(|h| connected.contains(&h.as_str())),
            "{five:?}"
        );
        assert_eq!(choose_canaries("web", &hosts, 100).len(), 10);
        assert_eq!(choose_canaries("web", &hosts, 41), five, "stable");
        let twenty: Vec<Candidate> = (0..20)
            .map(|i| Candidate {
                id: format!("host-{i}"),
                connected: true,
            })
            .collect();
        assert_ne!(
            choose_canaries("one", &twenty, 100),
            choose_canaries("two", &twenty, 100),
            "the order differs by policy"
        );
        assert_eq!(
            initial_state(10, &[]).0,
            RolloutState::Complete,
            "no host to be a canary"
        );
        assert_eq!(initial_state(10, &five).0, RolloutState::Canary);
        assert_eq!(initial_state(0, &five).0, RolloutState::Complete);
    }
}
