//! The vocabulary the agent and the control plane share, with nothing of either: the policy
//! document (parse, validate, canonical JSON), signed revisions and their verification, the
//! typed action allowlist with its static checks, the states of a remediation request, the remediation command sent to a host, refusal reasons, severity, metric
//! families, which metrics the agent collects and the detector scores, and the roles of users
//! (the REST API's and ChatOps').
//!
//! It depends on serde and ring only: the control plane links it without the agent's
//! collectors and storage, and the agent without the control plane's database and HTTP.

pub mod action;
pub mod action_state;
pub mod command;
pub mod contributor;
pub mod document;
mod error;
pub mod family;
pub mod feedback;
pub mod lessons;
pub mod metrics;
pub mod reason;
pub mod role;
pub mod severity;
pub mod signed;
pub mod utc;

pub use action::{glob_match, Action, Consumer};
pub use action_state::ActionState;
pub use command::Command;
pub use contributor::Contributor;
pub use document::{
    parse, AnomalyCondition, Condition, DetectionSettings, Op, Policy, PolicyError, Rule, RuleMode,
    StateCondition, Target, VerifySpec, MAX_CANDIDATES, MAX_DOCUMENT_BYTES,
};
pub use family::Family;
pub use feedback::Verdict;
pub use lessons::{Floor, QuietWindow, Recurrence, TimeOfDay, Weekday};
pub use metrics::{check_known_glob, is_scored, KNOWN_METRICS, NOT_SCORED};
pub use reason::Reason;
pub use role::Role;
pub use severity::Severity;
pub use signed::{
    read_key, signed_message, signed_model_message, verify_model_signature, SignedPolicy,
    VerifyError,
};
pub use utc::utc;
