//! What travels between the control plane and the agent's remediation task, as the agent's
//! own types: requests and signed policies coming down the stream, proposals, reports and
//! policy statuses going up. [`crate::pb`] converts them to and from protobuf.

use crate::policy::SignedPolicy;

/// What the uplink hands the remediation task.
#[derive(Debug, Clone)]
pub enum Inbound {
    Command(Command),
    Policy(SignedPolicy),
}

/// A request from the control plane (the vocabulary both sides share).
pub use sco_policy::Command;

/// What the agent did with a request (or with a signed policy's rule acting on its own).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub command_id: String,
    pub rule: String,
    /// `executed`, `dry_run`, `refused` or `failed`.
    pub decision: String,
    pub reason: String,
    /// The full structured report as JSON.
    pub report_json: String,
}

/// A policy rule that fired, as proposed to the control plane.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub id: String,
    pub policy: String,
    pub revision: u64,
    pub rule: String,
    pub action_json: String,
    /// The rule's mode: `auto`, `approve` or `dry_run`.
    pub mode: String,
    /// `proposed`, `dry_run` or `refused`.
    pub decision: String,
    pub reason: String,
    pub report_json: String,
    pub evidence_json: String,
    pub max_concurrent: u32,
}

/// What the agent did with a signed policy revision.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyStatus {
    pub name: String,
    pub revision: u64,
    pub applied: bool,
    /// Why it was refused; empty when applied.
    pub error: String,
    /// The revision in force after it (0: none).
    pub active_revision: u64,
}

/// What the agent did with a model offer.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelReport {
    pub number: u64,
    pub applied: bool,
    /// Why it was refused; empty when applied.
    pub error: String,
    /// The fleet model running after it (0: the agent's own).
    pub active_number: u64,
    /// Name@version of the model running after it.
    pub active_model: String,
}
