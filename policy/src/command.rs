//! A remediation request on its way from the control plane to an agent, as both sides see it
//! (each converts it to and from protobuf at its edge).

/// A request for one host: a manual trigger, a breaker reset, or a proposal that got its
/// approval and lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The control plane's id of the request; the agent's report names it.
    pub id: String,
    /// The typed action ([`crate::Action`]) as JSON; the agent refuses a type or field it does
    /// not know.
    pub action_json: String,
    /// `dry_run`, `execute` or `reset_breaker`.
    pub mode: String,
    /// Fleet lease of an executing action: no lease, no action.
    pub lease_token: String,
    pub lease_expires_ms: i64,
    pub requested_by: String,
    /// The rule the limits are kept under, e.g. `manual` or `policy/rule`.
    pub rule: String,
}
