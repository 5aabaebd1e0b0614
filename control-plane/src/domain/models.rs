//! The model registry's records: immutable, signed model versions, what each host reported
//! about the model meant for it, and the per-host view of a model rollout. Model rollouts are
//! [`Rollout`]s with the rules of policy rollouts (`policy::decide`); a rollout's `revision`
//! is the model's registry number, 0 being "the agent's own model" (its configured file or
//! the built-in one).

use std::collections::BTreeMap;

use serde::Serialize;

use super::policy::{PolicyHostStatus, Rollout, RolloutState};

/// The name every model rollout carries (models have one fleet-wide rollout history).
pub const MODEL_ROLLOUT: &str = "model";

/// The largest ONNX file the registry takes.
pub const MAX_MODEL_BYTES: usize = 16 * 1024 * 1024;

/// One stored model version, without its file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelVersion {
    /// Registry number, 1, 2, ...: what rollouts and agents name it by.
    pub number: i64,
    /// The manifest's `name` and `version`; the version is unique in the registry.
    pub name: String,
    pub version: String,
    /// The manifest as uploaded (what is signed, with the number).
    pub manifest: String,
    pub sha256: String,
    pub size_bytes: i64,
    /// ed25519 signature (hex) of `sco_policy::signed_model_message(number, manifest)`.
    pub signature: String,
    /// The reference outputs the upload was checked against.
    pub golden: String,
    /// The model card (Markdown) and evaluation figures (JSON text), as uploaded.
    pub card: String,
    pub evaluation: String,
    pub created_by: String,
    pub created_at_ms: i64,
}

/// An agent's report on a model offer, as received.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelStatusIn {
    pub seq: i64,
    pub produced_at_ms: i64,
    pub number: i64,
    pub applied: bool,
    pub error: String,
    pub active_number: i64,
    pub active_model: String,
}

/// What a host last reported about the fleet's models.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelHostStatus {
    pub host_id: String,
    /// The number the host last reported on.
    pub number: i64,
    /// The fleet model it runs (0: its own).
    pub applied_number: i64,
    /// Name@version of the model it runs.
    pub applied_model: String,
    pub applied_at_ms: i64,
    /// Why the last reported number was refused; empty when applied.
    pub error: String,
    pub updated_at_ms: i64,
}

impl ModelHostStatus {
    /// The same report in the shape the rollout rules judge.
    pub fn as_policy_status(&self) -> PolicyHostStatus {
        PolicyHostStatus {
            name: MODEL_ROLLOUT.into(),
            host_id: self.host_id.clone(),
            revision: self.number,
            applied_revision: self.applied_number,
            applied_at_ms: self.applied_at_ms,
            error: self.error.clone(),
            updated_at_ms: self.updated_at_ms,
        }
    }
}

/// One host's side of the model rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostModelState {
    pub host_id: String,
    /// The model number meant for it (0: its own).
    pub desired_number: i64,
    pub canary: bool,
    pub reported_number: i64,
    pub applied_number: i64,
    pub applied_model: String,
    pub applied_at_ms: i64,
    pub error: String,
    /// Runs the model meant for it, without error.
    pub in_sync: bool,
}

/// A model version's rollouts and every host concerned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRolloutStatus {
    pub number: i64,
    pub version: String,
    /// The newest model rollout (of any version).
    pub rollout: Option<Rollout>,
    pub hosts: Vec<HostModelState>,
}

/// A version string usable in a path: 1 to 64 of `[A-Za-z0-9._+-]`.
pub fn valid_version(v: &str) -> bool {
    (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
}

/// The model `host` (with `labels`) should run: that of the newest rollout (`rollouts`
/// newest first) that selects it and has settled for it (complete, or in its canary phase
/// with the host a canary). A rollout that does not select the host, that stopped, or whose
/// canary it is not part of leaves it on what the older rollouts gave it; 0 (its own model)
/// when none did. Without targets this is the newest rollout's own rule: a stopped rollout
/// puts everyone back on what they ran before.
pub fn number_for(rollouts: &[Rollout], host: &str, labels: &BTreeMap<String, String>) -> i64 {
    rollouts
        .iter()
        .filter(|r| r.target.matches(host, labels))
        .find_map(|r| match r.state {
            RolloutState::Complete => Some(r.revision),
            RolloutState::Canary if r.canary_hosts.iter().any(|h| h == host) => Some(r.revision),
            RolloutState::Canary | RolloutState::Stopped => None,
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sco_policy::Target;

    fn rollout(number: i64, state: RolloutState, canaries: &[&str], role: Option<&str>) -> Rollout {
        let mut target = Target::default();
        if let Some(role) = role {
            target.labels.insert("role".into(), role.into());
        }
        Rollout {
            id: format!("rollout-{number}"),
            name: MODEL_ROLLOUT.into(),
            revision: number,
            previous_revision: 0,
            canary_percent: 50,
            canary_hosts: canaries.iter().map(|h| h.to_string()).collect(),
            canary_secs: 60,
            max_new_anomalies: 3,
            baseline_anomalies: 0,
            target,
            state,
            reason: String::new(),
            started_by: "admin".into(),
            started_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn the_model_of_a_host_follows_the_newest_rollout_that_selects_it() {
        use RolloutState::{Canary, Complete, Stopped};
        let web: BTreeMap<String, String> = [("role".to_string(), "web".to_string())].into();
        let db: BTreeMap<String, String> = [("role".to_string(), "db".to_string())].into();
        // (rollouts newest first, host, its labels, expected number)
        type Labels = BTreeMap<String, String>;
        let cases: Vec<(Vec<Rollout>, &str, &Labels, i64)> = vec![
            (vec![], "a", &web, 0),
            (vec![rollout(1, Complete, &[], None)], "a", &web, 1),
            // a canary gets it, the others keep what they had
            (
                vec![
                    rollout(2, Canary, &["a"], None),
                    rollout(1, Complete, &[], None),
                ],
                "a",
                &web,
                2,
            ),
            (
                vec![
                    rollout(2, Canary, &["a"], None),
                    rollout(1, Complete, &[], None),
                ],
                "b",
                &web,
                1,
            ),
            // a stopped rollout puts everyone back, through older stopped ones too
            (
                vec![
                    rollout(3, Stopped, &["a"], None),
                    rollout(2, Stopped, &["a"], None),
                    rollout(1, Complete, &[], None),
                ],
                "a",
                &web,
                1,
            ),
            // a rollout for web hosts leaves db hosts on their model
            (
                vec![
                    rollout(2, Complete, &[], Some("web")),
                    rollout(1, Complete, &[], None),
                ],
                "c",
                &db,
                1,
            ),
            (
                vec![
                    rollout(2, Complete, &[], Some("web")),
                    rollout(1, Complete, &[], None),
                ],
                "a",
                &web,
                2,
            ),
            (
                vec![
                    rollout(3, Canary, &["c"], Some("db")),
                    rollout(2, Complete, &[], Some("web")),
                ],
                "c",
                &db,
                3,
            ),
            (
                vec![
                    rollout(3, Canary, &["c"], Some("db")),
                    rollout(2, Complete, &[], Some("web")),
                ],
                "d",
                &db,
                0,
            ),
            // back to the agents' own model, for everyone
            (
                vec![
                    rollout(0, Complete, &[], None),
                    rollout(2, Complete, &[], Some("web")),
                ],
                "a",
                &web,
                0,
            ),
        ];
        for (i, (rollouts, host, labels, expected)) in cases.iter().enumerate() {
            assert_eq!(
                number_for(rollouts, host, labels),
                *expected,
                "case {i}: {host} {labels:?}"
            );
        }
    }

    #[test]
    fn versions() {
        assert!(valid_version("1.2.0"));
        assert!(valid_version("2026-12-03+pca.8"));
        assert!(!valid_version(""));
        assert!(!valid_version("1.0/../../x"));
        assert!(!valid_version("1 0"));
        assert!(!valid_version(&"9".repeat(65)));
    }
}
