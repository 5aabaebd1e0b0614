//! Fleet policies on the agent. The document, its validation and its signature are
//! `sco-policy`'s (the control plane uses the same code); here the agent keeps the verified
//! revisions in force ([`store`]) and evaluates their rules at each tick ([`engine`]).

pub mod engine;
pub mod store;

pub use sco_policy::document::*;
pub use sco_policy::signed::{read_key, signed_message, SignedPolicy, VerifyError};
pub use sco_policy::Severity;

#[cfg(test)]
pub(crate) use sco_policy::signed::test_keys;
