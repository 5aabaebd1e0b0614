//! One error code for every service: each service's error says which [`Code`] it is, and
//! each edge maps codes once (`http/error.rs` to HTTP statuses, `grpc.rs` to gRPC statuses).
//! The messages of [`Code::Unavailable`] errors are logged, never shown: they name storage
//! internals.

use crate::store::StoreError;

/// What kind of failure an error is, whoever asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The request is malformed or names an invalid value (the message says which).
    Invalid,
    /// The caller may not do this (a bad or used-up token, a revoked agent).
    Denied,
    NotFound,
    /// The request conflicts with the current state (it exists, it changed, it is in
    /// progress); retrying the same request will not help until that state changes.
    Conflict,
    /// This control plane is not set up for it (no CA key, no signing key).
    Precondition,
    /// No valid credentials (a bad or expired token, a wrong password).
    Unauthenticated,
    /// Too many attempts; retry after [`Coded::retry_after_secs`].
    Throttled,
    /// Storage failed; retrying later may help.
    Unavailable,
    /// A bug or a failure of this process; logged, never shown.
    Internal,
}

/// An error that knows its [`Code`].
pub trait Coded: std::error::Error {
    fn code(&self) -> Code;

    /// With [`Code::Throttled`]: when to try again.
    fn retry_after_secs(&self) -> Option<u64> {
        None
    }
}

/// The error of the services whose failures are an invalid request, a missing or conflicting
/// resource, or storage: policies, verdicts, notifications and runbooks. One type, one code.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Coded for ServiceError {
    fn code(&self) -> Code {
        match self {
            ServiceError::Invalid(_) => Code::Invalid,
            ServiceError::NotFound(_) => Code::NotFound,
            ServiceError::Conflict(_) => Code::Conflict,
            ServiceError::Store(e) => e.code(),
        }
    }
}

impl Coded for StoreError {
    fn code(&self) -> Code {
        match self {
            StoreError::Conflict(_) => Code::Conflict,
            _ => Code::Unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{DecideError, EnrollError, TriggerError};

    #[test]
    fn store_failures_are_unavailable_and_conflicts_stay_conflicts() {
        let conflict = StoreError::Conflict("policy web revision 2".into());
        let down = StoreError::Url("nope".into());
        assert_eq!(conflict.code(), Code::Conflict);
        assert_eq!(down.code(), Code::Unavailable);
        assert_eq!(
            ServiceError::Store(StoreError::Url("x".into())).code(),
            Code::Unavailable
        );
        assert_eq!(TriggerError::NoHost("h".into()).code(), Code::NotFound);
        assert_eq!(DecideError::Conflict("c".into()).code(), Code::Conflict);
        assert_eq!(EnrollError::UsedUp.code(), Code::Denied);
        assert_eq!(EnrollError::NoCa.code(), Code::Precondition);
        assert_eq!(EnrollError::Csr("bad".into()).code(), Code::Invalid);
    }
}
