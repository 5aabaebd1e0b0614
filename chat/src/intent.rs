//! What a chat message asks for: one typed [`Intent`] with typed, resolved arguments.
//!
//! Hosts are resolved against the live fleet ([`HostRef`] carries the id the REST API
//! takes), metrics are real metric names, times are Unix milliseconds. The control plane
//! answers an intent with the same services as the REST API, under the caller's role
//! ([`Intent::required_role`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use sco_policy::{Action, Consumer, Severity};

use crate::time::TimeRange;

/// A host of the fleet, resolved: its agent id and its hostname.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HostRef {
    pub id: String,
    pub hostname: String,
}

/// A host label selector: every label must match (as a policy's target).
pub type Selector = BTreeMap<String, String>;

/// Which hosts a question is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scope {
    #[default]
    Fleet,
    Host {
        host: HostRef,
    },
    Selector {
        labels: Selector,
    },
}

/// What "why" is asked about: one anomaly event, or whatever is wrong with a host now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExplainTarget {
    /// An anomaly event id (`<agent id>:<seq>`).
    Event { id: String },
    /// The host's open anomaly events (the newest and most severe first).
    Host { host: HostRef },
}

/// The state of a remediation action, as the REST API names it (the control plane's own
/// type, from `sco-policy`).
pub use sco_policy::ActionState;

/// The least role that may have an intent answered or carried out is the same rule as
/// the REST endpoint the intent stands for, with the control plane's own role type.
pub use sco_policy::Role;

/// Why an intent is not carried out for a caller: the role it needs and the caller's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} needs the {needed} role; you are {have}", needed = .needed.as_str(), have = .have.as_str())]
pub struct Refusal {
    pub what: String,
    pub needed: Role,
    pub have: Role,
}

/// One of the things the chat can do, ranked for an [`Intent::Unknown`] answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    /// The intent's name ([`Intent::name`]).
    pub intent: String,
    /// What to type to get it.
    pub example: String,
    /// Similarity of the question to the example, 0..=1.
    pub score: f64,
}

/// A chat message, understood.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "intent", rename_all = "snake_case")]
pub enum Intent {
    /// The fleet (or the hosts of a label selector): connected, open anomalies, versions.
    FleetStatus {
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        selector: Selector,
    },
    /// One host: connection, latest values, open anomalies (`GET /hosts/{id}`).
    HostStatus { host: HostRef },
    /// Anomaly events (`GET /anomaly`), filtered.
    Anomalies {
        scope: Scope,
        /// Events of this severity or worse.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_severity: Option<Severity>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        range: Option<TimeRange>,
        /// Open events only.
        #[serde(default)]
        open_only: bool,
    },
    /// Why an event fired: contributors, expected ranges, onset context, runbooks.
    Explain { target: ExplainTarget },
    /// A metric's recent behaviour on a host: min/mean/max and the series.
    MetricHistory {
        host: HostRef,
        /// Real metric names, the one asked for first ("network" is received and sent).
        metrics: Vec<String>,
        range: TimeRange,
    },
    /// The top processes of a host by a resource.
    TopProcesses { host: HostRef, by: Consumer },
    /// Remediation actions and proposals (`GET /remediation/actions`).
    Actions {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<HostRef>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<ActionState>,
        /// Actions created in this range.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        range: Option<TimeRange>,
    },
    /// Policies and their rollouts (`GET /policies`, `GET /policies/{name}/status`).
    PolicyStatus {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy: Option<String>,
    },
    /// Approve a proposal (`POST /remediation/actions/{id}/approve`).
    Approve { action_id: String },
    /// Reject a proposal, with an optional one-line reason.
    Reject {
        action_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Ask a host for an allowlisted action. The answer is a dry run or a pending
    /// request with a confirmation id; nothing executes before [`Intent::Confirm`].
    Trigger {
        host: HostRef,
        action: Action,
        /// Only a dry run was asked for.
        #[serde(default)]
        dry_run: bool,
    },
    /// Carry out the pending request a trigger answered with.
    Confirm { confirmation_id: String },
    /// Runbooks matching free text (`GET /runbooks?q=`).
    Runbooks { query: String },
    /// What the chat can do.
    Help,
    /// A name was ambiguous or unknown: the question to ask back, and the candidates.
    Clarify {
        question: String,
        #[serde(default)]
        candidates: Vec<String>,
    },
    /// Not understood: why, and the closest things the chat can do, best first.
    Unknown {
        reason: String,
        suggestions: Vec<Suggestion>,
    },
}

impl Intent {
    /// The intent's name, as its `intent` tag in JSON and in the LLM tool schema.
    pub fn name(&self) -> &'static str {
        match self {
            Intent::FleetStatus { .. } => "fleet_status",
            Intent::HostStatus { .. } => "host_status",
            Intent::Anomalies { .. } => "anomalies",
            Intent::Explain { .. } => "explain",
            Intent::MetricHistory { .. } => "metric_history",
            Intent::TopProcesses { .. } => "top_processes",
            Intent::Actions { .. } => "actions",
            Intent::PolicyStatus { .. } => "policy_status",
            Intent::Approve { .. } => "approve",
            Intent::Reject { .. } => "reject",
            Intent::Trigger { .. } => "trigger",
            Intent::Confirm { .. } => "confirm",
            Intent::Runbooks { .. } => "runbooks",
            Intent::Help => "help",
            Intent::Clarify { .. } => "clarify",
            Intent::Unknown { .. } => "unknown",
        }
    }

    /// The least role allowed to have this intent carried out: deciding, triggering and
    /// confirming need an operator, as their REST endpoints do; everything else is a read.
    pub fn required_role(&self) -> Role {
        if self.changes_something() {
            Role::Operator
        } else {
            Role::Viewer
        }
    }

    /// Whether a caller of `role` may have this intent carried out: the same rule as the
    /// REST endpoint it stands for, so chat never lets anyone do more than REST would.
    pub fn authorize(&self, role: Role) -> Result<(), Refusal> {
        let needed = self.required_role();
        if role >= needed {
            Ok(())
        } else {
            Err(Refusal {
                what: self.summary(),
                needed,
                have: role,
            })
        }
    }

    /// One line saying what was understood, for the answer's echo, logs and the audit
    /// entry (beside the chat text itself).
    pub fn summary(&self) -> String {
        let range = |r: &Option<TimeRange>| {
            r.map(|r| format!(" from {} to {} (ms)", r.from_ms, r.to_ms))
                .unwrap_or_default()
        };
        let selector = |s: &Selector| {
            s.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Intent::FleetStatus { selector: s } if s.is_empty() => "fleet status".into(),
            Intent::FleetStatus { selector: s } => format!("status of hosts {}", selector(s)),
            Intent::HostStatus { host } => format!("status of {}", host.hostname),
            Intent::Anomalies {
                scope,
                min_severity,
                range: r,
                open_only,
            } => {
                let mut out = String::from(if *open_only {
                    "open anomalies"
                } else {
                    "anomalies"
                });
                if let Some(s) = min_severity {
                    out.push_str(&format!(" of severity {} or worse", s.as_str()));
                }
                match scope {
                    Scope::Fleet => {}
                    Scope::Host { host } => out.push_str(&format!(" on {}", host.hostname)),
                    Scope::Selector { labels } => {
                        out.push_str(&format!(" on hosts {}", selector(labels)))
                    }
                }
                out + &range(r)
            }
            Intent::Explain {
                target: ExplainTarget::Event { id },
            } => format!("why anomaly {id} fired"),
            Intent::Explain {
                target: ExplainTarget::Host { host },
            } => format!("what is wrong with {}", host.hostname),
            Intent::MetricHistory {
                host,
                metrics,
                range: r,
            } => format!(
                "{} on {}{}",
                metrics.join(", "),
                host.hostname,
                range(&Some(*r))
            ),
            Intent::TopProcesses { host, by } => {
                format!("top processes by {} on {}", by.as_str(), host.hostname)
            }
            Intent::Actions {
                host,
                state,
                range: r,
            } => {
                let mut out = match state {
                    Some(s) => format!("remediation actions {}", s.as_str()),
                    None => "remediation actions".to_string(),
                };
                if let Some(h) = host {
                    out.push_str(&format!(" on {}", h.hostname));
                }
                out + &range(r)
            }
            Intent::PolicyStatus { policy: None } => "policy rollout status".into(),
            Intent::PolicyStatus { policy: Some(p) } => format!("rollout status of policy {p}"),
            Intent::Approve { action_id } => format!("approve {action_id}"),
            Intent::Reject {
                action_id,
                reason: None,
            } => format!("reject {action_id}"),
            Intent::Reject {
                action_id,
                reason: Some(r),
            } => format!("reject {action_id} because {r}"),
            Intent::Trigger {
                host,
                action,
                dry_run,
            } => {
                let what = match action {
                    Action::RestartService { unit } => format!("restart_service {unit}"),
                    Action::KillProcess {
                        name,
                        pattern,
                        pid,
                        top_consumer,
                        ..
                    } => {
                        let target = match (name, pattern, pid, top_consumer) {
                            (Some(n), ..) => format!("named {n}"),
                            (_, Some(p), ..) => format!("matching {p}"),
                            (_, _, Some(pid), _) => format!("pid {pid}"),
                            (_, _, _, Some(c)) => format!("the top {} consumer", c.as_str()),
                            _ => "?".into(),
                        };
                        format!("kill_process {target}")
                    }
                    Action::JournalVacuum { max_size_mb } => {
                        format!("journal_vacuum to {max_size_mb} MB")
                    }
                    other => other.kind().to_string(),
                };
                let mode = if *dry_run { " (dry run)" } else { "" };
                format!("{what} on {}{mode}", host.hostname)
            }
            Intent::Confirm { confirmation_id } => format!("confirm {confirmation_id}"),
            Intent::Runbooks { query } => format!("runbooks for {query:?}"),
            Intent::Help => "help".into(),
            Intent::Clarify { question, .. } => format!("a question back: {question}"),
            Intent::Unknown { reason, .. } => format!("not understood: {reason}"),
        }
    }

    /// Whether carrying this intent out changes the fleet (and must be audited with the
    /// chat text).
    pub fn changes_something(&self) -> bool {
        matches!(
            self,
            Intent::Approve { .. }
                | Intent::Reject { .. }
                | Intent::Trigger { .. }
                | Intent::Confirm { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_the_rest_endpoints() {
        let host = HostRef {
            id: "web-1-0a1b2c3d".into(),
            hostname: "web-1".into(),
        };
        assert_eq!(Intent::Help.required_role(), Role::Viewer);
        assert_eq!(
            Intent::Approve {
                action_id: "act-1".into()
            }
            .required_role(),
            Role::Operator
        );
        let trigger = Intent::Trigger {
            host,
            action: Action::RestartService {
                unit: "nginx".into(),
            },
            dry_run: true,
        };
        // a dry run is still a request to a host: the REST trigger needs an operator too
        assert_eq!(trigger.required_role(), Role::Operator);
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        // the role matrix of chat: reads for everyone, changes for operators and admins
        let approve = Intent::Approve {
            action_id: "act-0123456789abcdef".into(),
        };
        let refusal = approve
            .authorize(Role::Viewer)
            .expect_err("a viewer cannot approve");
        assert_eq!(
            refusal.to_string(),
            "approve act-0123456789abcdef needs the operator role; you are viewer"
        );
        assert!(approve.authorize(Role::Operator).is_ok());
        assert!(approve.authorize(Role::Admin).is_ok());
        assert!(Intent::Help.authorize(Role::Viewer).is_ok());
        for r in ["viewer", "operator", "admin"] {
            assert_eq!(Role::parse(r).map(Role::as_str), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn intents_serialize_with_their_name_as_tag() {
        let i = Intent::Actions {
            host: None,
            state: Some(ActionState::DryRun),
            range: None,
        };
        let v = serde_json::to_value(&i).expect("serializes");
        assert_eq!(v["intent"], "actions");
        assert_eq!(v["state"], "dry_run");
        let back: Intent = serde_json::from_value(v).expect("parses");
        assert_eq!(back, i);
        for s in ActionState::ALL {
            assert_eq!(ActionState::parse(s.as_str()), Some(s));
        }
    }
}
